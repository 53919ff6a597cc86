//! sockloop: a synchronous, single-threaded socket reactor.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

pub mod error;
pub mod net;

pub use error::{Error, Result, SocketErrorStatus};
pub use net::hostname::{HostName, HostNameType};
pub use net::service::resolve_service;
