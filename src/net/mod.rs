//! The sockets the user sees, and the names they are given: [`HostName`] and service
//! names.

pub(crate) mod control;
pub(crate) mod datagram;
pub(crate) mod endpoint;
pub(crate) mod hostname;
pub(crate) mod listener;
pub(crate) mod resolver;
pub(crate) mod service;
pub(crate) mod stream;
