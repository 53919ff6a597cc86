//! sockloop: a synchronous, single-threaded socket reactor.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

pub mod error;
pub mod framing;
mod io;
pub mod net;
mod reactor;

pub use error::{Error, Result, SocketErrorStatus};
pub use io::inbound::Input;
pub use net::control::{
    KeepAlive, QualityOfService, RoundTripTimeStatistics, StreamSocketControl,
    StreamSocketInformation, StreamSocketListenerControl,
};
pub use net::hostname::{HostName, HostNameType};
pub use net::listener::{ConnectionReceived, ListenerEvent, StreamSocketListener};
pub use net::service::resolve_service;
pub use net::stream::{StreamEvent, StreamSocket};
pub use reactor::{
    set_nonblocking, Builder, FdEvent, FdSource, Interest, Reactor, Remote, Stats, TimerId,
};
