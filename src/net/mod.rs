//! The sockets the user sees, and host names.

pub mod control;
pub mod hostname;
pub mod listener;
pub(crate) mod resolver;
pub mod stream;
