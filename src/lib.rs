//! A synchronous, single-threaded socket reactor: no async runtime, no futures, no
//! hidden threads on the hot path.
//!
//! One [`Reactor`] owns a `mio::Poll`. TCP streams ([`StreamSocket`]), listeners
//! ([`StreamSocketListener`]), timers and foreign file descriptors are registered on it
//! and call back into handlers — closures that get `&mut Reactor<S>`, `&mut S` (the
//! application state, passed to [`Reactor::run`]), the socket's handle and the event.
//! The programming model is that of the Windows `Windows.Networking.Sockets` API
//! (StreamSocket, StreamSocketListener and its ConnectionReceived event,
//! [`SocketErrorStatus`], [`HostName`], batched sends), rebuilt for Linux.
//!
//! ```
//! use sockloop::{ListenerEvent, Reactor, StreamEvent, StreamSocket, StreamSocketListener};
//!
//! #[derive(Default)]
//! struct State { listener: Option<StreamSocketListener>, reply: Vec<u8> }
//!
//! let mut reactor = Reactor::<State>::new()?;
//!
//! // A server that echoes what it receives.
//! let listener = StreamSocketListener::bind(&mut reactor, "127.0.0.1", 0,
//!     |reactor, _, _, event| {
//!         if let ListenerEvent::ConnectionReceived(conn) = event {
//!             conn.socket.set_handler(reactor, |reactor, _, socket, event| match event {
//!                 StreamEvent::Received(mut input) => {
//!                     socket.write(reactor, input.bytes()).unwrap();
//!                     input.consume_all();
//!                 }
//!                 StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
//!                 _ => {}
//!             }).unwrap();
//!         }
//!     })?;
//! let port = listener.local_address(&reactor)?.port();
//!
//! // A client that sends "ping", waits for the echo and closes.
//! StreamSocket::connect(&mut reactor, "127.0.0.1", port,
//!     |reactor, state: &mut State, socket, event| match event {
//!         StreamEvent::Connected => socket.write(reactor, b"ping").unwrap(),
//!         StreamEvent::Received(mut input) => {
//!             state.reply.extend_from_slice(input.bytes());
//!             input.consume_all();
//!             if state.reply.len() == 4 {
//!                 socket.close(reactor).unwrap();
//!             }
//!         }
//!         StreamEvent::Closed(_) => {
//!             // Done: stop listening, and `run` returns as nothing is left.
//!             let listener = state.listener.take().unwrap();
//!             listener.close(reactor).unwrap();
//!         }
//!         _ => {}
//!     })?;
//!
//! let mut state = State { listener: Some(listener), ..State::default() };
//! reactor.run(&mut state)?;
//! assert_eq!(state.reply, b"ping");
//! # Ok::<(), sockloop::Error>(())
//! ```
//!
//! # Where things are
//!
//! - [`Reactor`]: `run`, `turn` (one poll, for embedding), timers, [`Remote`] for other
//!   threads, foreign fds ([`Reactor::register_fd`]).
//! - [`StreamSocket`] and [`StreamEvent`]: connections; writes made in one handler call
//!   leave in one `send`/`writev`; watermarks give backpressure ([`StreamEvent::Drained`]).
//! - [`StreamSocketListener`] and [`ListenerEvent`]: accepting.
//! - Framing: [`DataReader`] / [`DataWriter`] and codecs ([`LengthPrefixed`], [`Lines`],
//!   your own with [`Decoder`] and [`Encoder`])
//!   that [`StreamSocket::set_framing`] turns into one [`StreamEvent::Message`] per frame.
//! - [`Error`] and [`SocketErrorStatus`]: every failure says what, where and which status.
//!
//! # Portability
//!
//! Linux only (epoll, `TCP_INFO`, `SO_REUSEPORT`, systemd socket activation).
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod framing;
mod io;
mod net;
mod reactor;

pub use error::{Error, Result, SocketErrorStatus};
pub use framing::{
    ByteOrder, Codec, DataReader, DataWriter, DateTime, Decoded, Decoder, Encoder, Guid,
    LengthField, LengthPrefixed, LineEnding, Lines, TimeSpan, UnicodeEncoding,
};
pub use io::inbound::Input;
pub use net::control::{
    KeepAlive, QualityOfService, RoundTripTimeStatistics, StreamSocketControl,
    StreamSocketInformation, StreamSocketListenerControl,
};
pub use net::endpoint::{Destination, EndpointPair};
pub use net::hostname::{HostName, HostNameType, IntoHostName};
pub use net::listener::{ConnectionReceived, ListenerEvent, StreamSocketListener};
pub use net::service::{resolve_service, IntoService};
pub use net::stream::{StreamEvent, StreamSocket};
pub use reactor::{
    set_nonblocking, Builder, FdEvent, FdSource, Interest, Reactor, Remote, Stats, TimerId,
};

/// The fuzz targets' oracles (`fuzz/`) and the tests' decoding helpers. Not part of
/// the API: behind the `fuzzing` feature, and it may change at any time.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use framing::fuzzing;
