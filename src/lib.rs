//! A synchronous, single-threaded socket reactor: no async runtime, no futures, no
//! hidden threads on the hot path.
//!
//! One [`Reactor`] owns a `mio::Poll`. TCP streams ([`StreamSocket`]), listeners
//! ([`StreamSocketListener`]), UDP sockets ([`DatagramSocket`]), timers and foreign
//! file descriptors are registered on it
//! and call back into handlers — closures that get `&mut Reactor<S>`, `&mut S` (the
//! application state, passed to [`Reactor::run`]), the socket's handle and the event.
//! The programming model is that of the Windows `Windows.Networking.Sockets` API
//! (StreamSocket, StreamSocketListener and its ConnectionReceived event, DatagramSocket
//! and its MessageReceived event,
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
//! # Naming the state type
//!
//! `Reactor::new()` alone does not say what state the handlers share, and Rust cannot
//! always work it out from the handlers (`error[E0282]: type annotations needed for
//! Reactor<_>`). Name it where the reactor is made: `Reactor::<State>::new()`, or
//! `Reactor::<()>::new()` when there is none. A closure handler may also need its
//! state parameter named (`|reactor, state: &mut State, socket, event|`) when it is
//! written before the reactor's type is known.
//!
//! # Where things are
//!
//! Everything is at the crate root: `use sockloop::{Reactor, StreamSocket, Lines};`.
//!
//! - [`Reactor`]: `run`, `turn` (one poll, for embedding), `stop`, timers, [`Remote`]
//!   for other threads, foreign fds ([`Reactor::register_fd`]).
//! - [`StreamSocket`] and [`StreamEvent`]: connections; writes made in one handler call
//!   leave in one `send`/`writev`; watermarks give backpressure ([`StreamEvent::Drained`]).
//! - [`StreamSocketListener`] and [`ListenerEvent`]: accepting.
//! - [`DatagramSocket`] and [`DatagramEvent`]: UDP, bound or connected; each datagram
//!   a [`Message`] with its sender and the local address it came to; datagrams sent in
//!   one handler call leave together (`sendmmsg`, UDP GSO); multicast groups and port
//!   sharing through [`DatagramSocketControl`].
//! - Names: [`HostName`], services ([`IntoService`]: a port or a name such as
//!   `"https"`), [`EndpointPair`] and [`Destination`].
//! - Framing: [`DataReader`] / [`DataWriter`] and codecs ([`LengthPrefixed`], [`Lines`],
//!   your own with [`Decoder`] and [`Encoder`]) that [`StreamSocket::set_framing`] turns
//!   into one [`StreamEvent::Message`] per frame. This layer is pure code, bounded and
//!   fuzzed: malformed input is a `ProtocolError`, an over-long frame `MessageTooLong`.
//! - [`Error`] and [`SocketErrorStatus`]: every failure says what, where and which status.
//!
//! # Coming from Windows.Networking.Sockets
//!
//! | Windows | sockloop |
//! | --- | --- |
//! | `StreamSocket` | [`StreamSocket`], a `Copy` handle; the reactor owns the socket |
//! | `StreamSocket.ConnectAsync(HostName, String)` | [`StreamSocket::connect`]`(&mut reactor, host, service, handler)`; [`connect_with`](StreamSocket::connect_with) adds a control; the handler gets [`StreamEvent::Connected`] |
//! | `StreamSocket.ConnectAsync(EndpointPair)` | [`StreamSocket::connect_to`]`(&mut reactor, pair, handler)` (also a `SocketAddr` or a list) |
//! | `StreamSocket.Control` ([`StreamSocketControl`]: NoDelay, KeepAlive, OutboundBufferSizeInBytes, OutboundUnicastHopLimit, QualityOfService, SerializeConnectionAttempts) | [`StreamSocketControl`], given to `connect_with` / `connect_to_with` |
//! | `StreamSocket.Information` | [`StreamSocket::information`]`(&reactor)` → [`StreamSocketInformation`] |
//! | `WriteAsync` × N, then `FlushAsync` | [`StreamSocket::write`] × N in one handler call: one `send`/`writev`; [`StreamSocket::flush`] |
//! | `StreamSocketListener` | [`StreamSocketListener`] |
//! | `StreamSocketListener.BindServiceNameAsync(service)` | [`StreamSocketListener::bind_any`]`(&mut reactor, service, handler)` |
//! | `StreamSocketListener.BindEndpointAsync(host, service)` | [`StreamSocketListener::bind`]`(&mut reactor, host, service, handler)` |
//! | `StreamSocketListener.Control` | [`StreamSocketListenerControl`], given to [`bind_with`](StreamSocketListener::bind_with) / [`bind_any_with`](StreamSocketListener::bind_any_with) |
//! | `StreamSocketListener.ConnectionReceived` | the listener's handler, called with [`ListenerEvent::ConnectionReceived`] |
//! | `HostName` | [`HostName::new`]`(&str) -> Result<HostName, Error>`; text, `IpAddr` and `HostName` are all accepted as a host ([`IntoHostName`]) |
//! | `EndpointPair` | [`EndpointPair`] |
//! | `SocketError.GetStatus(hresult)` → `SocketErrorStatus` | [`Error::status`], [`SocketErrorStatus::from_io`] (same names and numbers, plus ours from 100) |
//! | `DataReader` / `DataWriter` | [`DataReader`] / [`DataWriter`] over byte buffers; codecs ([`Lines`], [`LengthPrefixed`]) deliver whole messages |
//! | Socket broker, `TransferOwnership` | [`StreamSocket::from_std`] / [`into_std`](StreamSocket::into_std), [`StreamSocketListener::from_std`] / [`from_listen_fds`](StreamSocketListener::from_listen_fds) |
//! | `DatagramSocket` | [`DatagramSocket`], a `Copy` handle |
//! | `DatagramSocket.BindEndpointAsync(host, service)` / `BindServiceNameAsync(service)` | [`DatagramSocket::bind`] / [`bind_any`](DatagramSocket::bind_any) |
//! | `DatagramSocket.ConnectAsync(host, service)` | [`DatagramSocket::connect`]; ICMP errors come as [`DatagramEvent::Error`] |
//! | `DatagramSocket.ConnectAsync(EndpointPair)` | [`DatagramSocket::connect_to`]`(&mut reactor, pair, handler)` (also a `SocketAddr` or a list) |
//! | `DatagramSocket.MessageReceived` | the handler, called with [`DatagramEvent::MessageReceived`]; [`Message::reader`] gives a [`DataReader`] |
//! | `GetOutputStreamAsync(host, service)` + writes | [`DatagramSocket::send_to`] (and [`send_to_from`](DatagramSocket::send_to_from) to pick the local address); sends in one handler call leave together when it returns |
//! | `DatagramSocket.Control` ([`DatagramSocketControl`]: MulticastOnly, DontFragment, buffer sizes, hop limit, QualityOfService) | [`DatagramSocketControl`], given to `bind_with` / `connect_with` |
//! | `JoinMulticastGroup(HostName)` | [`DatagramSocket::join_multicast_group`] (and `_on` an interface, `leave_…`) |
//! | `SocketProtectionLevel` | [`ProtectionLevel`], set with [`StreamSocketControl::protection_level`]: TLS with rustls, `Connected` after the handshake; trust roots and ALPN in [`TlsClientOptions`] |
//! | `StreamSocket.UpgradeToSslAsync(level, host)` | [`StreamSocket::upgrade_to_tls`]`(&mut reactor, level, &host)`, same handle and handler, then [`StreamEvent::TlsUpgraded`]; servers too: [`upgrade_to_tls_server`](StreamSocket::upgrade_to_tls_server) |
//! | `StreamSocketInformation.ProtectionLevel`, `ServerCertificate` | [`StreamSocketInformation::protection_level`], [`StreamSocket::tls_information`] → [`TlsInformation`] (version, cipher suite, ALPN, peer chain) |
//! | `StreamSocketControl.ClientCertificate`, `IgnorableServerCertificateErrors` | [`TlsClientOptions::client_certificate_pem`], [`TlsClientOptions::ignorable_server_certificate_errors`] (expired, untrusted root, wrong name; each logged, the other checks kept) |
//! | (the Windows listener cannot do TLS) | [`StreamSocketListenerControl::tls`] with a [`TlsServerConfig`] terminates TLS on accepted sockets |
//!
//! # One builder convention
//!
//! Every options struct ([`StreamSocketControl`], [`StreamSocketListenerControl`],
//! [`DatagramSocketControl`], the reactor's [`Builder`]) is built the same way:
//!
//! - `new()` and `Default` give the defaults (the reactor's: [`Reactor::builder`]);
//! - each option is a `#[must_use]` method named after it (the Windows property in
//!   snake case: `no_delay`, `keep_alive`, `outbound_buffer_size`) that takes the
//!   struct by value and returns it, so options chain;
//! - the control structs read an option back with `get_<option>`, as
//!   `std::process::Command` does, since the plain name is the setter;
//! - the struct is borrowed by the call that applies it (`connect_with(.., &control, ..)`),
//!   so one value serves many sockets.
//!
//! ```
//! use std::time::Duration;
//! use sockloop::{KeepAlive, StreamSocketControl, StreamSocketListenerControl};
//!
//! let control = StreamSocketControl::new()
//!     .keep_alive(Some(KeepAlive::default()))
//!     .connect_timeout(Duration::from_secs(5));
//! assert_eq!(control.get_connect_timeout(), Duration::from_secs(5));
//! let listener = StreamSocketListenerControl::new().backlog(64).accepted(control);
//! assert_eq!(listener.get_backlog(), 64);
//! ```
//!
//! # How a program ends
//!
//! [`Reactor::run`] returns when [`Reactor::stop`] is called (from a handler, or through
//! a [`Remote`] from another thread), or when nothing is left registered: no socket,
//! listener, datagram socket, foreign fd or user timer. A server runs until stopped; a
//! client ends by itself once its sockets are closed, as in the example above.
//!
//! # Portability
//!
//! Linux only (epoll, `TCP_INFO`, `SO_REUSEPORT`, `IP_PKTINFO`, systemd socket
//! activation).
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod framing;
mod io;
mod net;
mod reactor;
#[cfg(feature = "tls")]
mod tls;

pub use error::{Error, Result, SocketErrorStatus};
pub use framing::{
    ByteOrder, Codec, DataReader, DataWriter, DateTime, Decoded, Decoder, Encoder, Guid,
    LengthField, LengthPrefixed, LineEnding, Lines, TimeSpan, UnicodeEncoding,
};
pub use io::inbound::Input;
pub use net::control::{
    KeepAlive, OverLimit, QualityOfService, RoundTripTimeStatistics, StreamSocketControl,
    StreamSocketInformation, StreamSocketListenerControl,
};
pub use net::datagram::{
    DatagramEvent, DatagramOutput, DatagramSocket, DatagramSocketControl,
    DatagramSocketInformation, Message,
};
pub use net::endpoint::{Destination, EndpointPair};
pub use net::hostname::{HostName, HostNameType, IntoHostName};
pub use net::listener::{ConnectionReceived, ListenerEvent, StreamSocketListener};
pub use net::service::{resolve_service, IntoService};
pub use net::stream::{StreamEvent, StreamSocket};
pub use reactor::{
    set_nonblocking, Builder, FdEvent, FdSource, Interest, Reactor, Remote, Stats, TimerId,
};
/// The rustls this crate is built with, for [`TlsClientOptions::config`] and
/// [`TlsServerConfig::from_rustls`].
#[cfg(feature = "tls")]
pub use rustls;
#[cfg(feature = "tls")]
pub use tls::{ProtectionLevel, TlsClientOptions, TlsInformation, TlsServerConfig, TrustRoots};

/// The fuzz targets' oracles (`fuzz/`) and the tests' decoding helpers. Not part of
/// the API: behind the `fuzzing` feature, and it may change at any time.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use framing::fuzzing;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
