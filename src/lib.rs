//! sockloop: a synchronous, single-threaded socket reactor.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

pub mod error;
pub mod framing;

pub use error::{Error, Result, SocketErrorStatus};
