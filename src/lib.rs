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
//! use sockloop::{HostName, ListenerEvent, Reactor, StreamEvent, StreamSocket,
//!     StreamSocketControl, StreamSocketListener};
//!
//! #[derive(Default)]
//! struct State { listener: Option<StreamSocketListener>, reply: Vec<u8> }
//!
//! let mut reactor = Reactor::<State>::new()?;
//! let localhost = HostName::new("127.0.0.1")?;
//!
//! // A server that echoes what it receives.
//! let listener = StreamSocketListener::bind_endpoint(&mut reactor, &localhost, "0",
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
//! let port = listener.local_address(&mut reactor)?.port().to_string();
//!
//! // A client that sends "ping", waits for the echo and closes.
//! StreamSocket::connect(&mut reactor, &localhost, &port, &StreamSocketControl::new(),
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
//! - [`framing`]: [`DataReader`](framing::DataReader) / [`DataWriter`](framing::DataWriter)
//!   and codecs ([`LengthPrefixed`](framing::LengthPrefixed), [`Lines`](framing::Lines))
//!   that [`StreamSocket::set_framing`] turns into one [`StreamEvent::Message`] per frame.
//! - [`Error`] and [`SocketErrorStatus`]: every failure says what, where and which status.
//!
//! # Portability
//!
//! Linux only (epoll, `TCP_INFO`, `SO_REUSEPORT`, systemd socket activation).
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
