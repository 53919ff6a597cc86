//! The sockets the user sees, and the names they are given: [`HostName`] and service
//! names.

mod close;
pub mod control;
mod framed;
pub mod hostname;
pub mod listener;
mod receive;
pub(crate) mod resolver;
pub mod service;
pub mod stream;

pub use hostname::{HostName, HostNameType};
pub use service::resolve_service;
