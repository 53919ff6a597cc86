//! The sockets the user sees, and the names they are given: [`HostName`] and service
//! names.

pub(crate) mod close;
pub(crate) mod control;
pub(crate) mod endpoint;
mod framed;
pub(crate) mod hostname;
pub(crate) mod listener;
mod receive;
pub(crate) mod resolver;
pub(crate) mod service;
pub(crate) mod stream;
