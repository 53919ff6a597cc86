//! The sockets the user sees, and the names they are given: [`HostName`] and service
//! names.

pub mod hostname;
pub mod service;

pub use hostname::{HostName, HostNameType};
pub use service::resolve_service;
