//! `StreamSocket`: a TCP connection driven by the reactor.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use mio::Interest;
use socket2::SockRef;

use crate::error::stale_handle;
use crate::error::{Error, SocketErrorStatus};
use crate::framing::{Decoder, Encoder};
use crate::io::inbound::Input;
use crate::io::outbound::Outbound;
use crate::io::sys;
use crate::net::control::{RoundTripTimeStatistics, StreamSocketControl, StreamSocketInformation};
use crate::net::endpoint::Destination;
use crate::net::hostname::{HostName, IntoHostName};
use crate::net::listener::canonical;
use crate::net::resolver::Connecting;
use crate::net::service::IntoService;
use crate::reactor::{panicked, Key, Kind, Reactor, Source, SourceTimer};

/// The stale-handle error of a stream operation.
pub(crate) fn stale(operation: &'static str) -> Error {
    stale_handle("StreamSocket", operation)
}

/// A TCP connection: a `Copy` handle to a socket owned by a [`Reactor`].
///
/// Every call takes the reactor; a handle whose socket is closed gives an
/// `InvalidHandle` error, never another socket's data.
///
/// # Examples
///
/// Connect, send a line, print what comes back:
///
/// ```no_run
/// use sockloop::{Reactor, StreamEvent, StreamSocket};
///
/// let mut reactor = Reactor::<()>::new()?;
/// StreamSocket::connect(&mut reactor, "127.0.0.1", 7,
///     |reactor, _state, socket, event| match event {
///         StreamEvent::Connected => socket.write(reactor, b"hello\n").unwrap(),
///         StreamEvent::Received(mut input) => {
///             println!("{}", String::from_utf8_lossy(input.bytes()));
///             input.consume_all();
///             socket.close(reactor).unwrap();
///         }
///         StreamEvent::Closed(result) => println!("closed: {result:?}"),
///         _ => {}
///     })?;
/// reactor.run(&mut ())?;
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamSocket(pub(crate) Key);

impl fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamSocket({}v{})", self.0.index, self.0.gen)
    }
}

/// What happened on a stream socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamEvent<'a> {
    /// The connection is established (for sockets made with `connect`).
    Connected,
    /// Bytes arrived. Consume what you use; the rest is offered again with the next
    /// bytes.
    Received(Input<'a>),
    /// One whole message, for a socket given a codec with
    /// [`set_framing`](StreamSocket::set_framing): the payload without its header or
    /// terminator. Nothing is copied or allocated for it.
    Message(&'a [u8]),
    /// The peer closed its sending side (end of file). This side may still write;
    /// `close` or `shutdown_write` ends the connection.
    ReadClosed,
    /// The write queue, which had grown over the high watermark, fell to the low one:
    /// writing can resume.
    Drained,
    /// The socket is closed and its handle stale. Always the last event, delivered
    /// exactly once: `Ok` after a local `close`/`abort` or a clean end, `Err` with the
    /// status when the connection failed.
    Closed(Result<(), Error>),
}

pub(crate) type StreamHandler<S> =
    Box<dyn FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Resolving,
    Connecting,
    Open,
    /// `close` was called: sending what is queued, then FIN.
    Closing,
    /// `Closed` is about to be delivered.
    Closed,
}

/// The receiving side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadSide {
    Open,
    /// The kernel reported the peer's FIN (or an error): read on to end of file, past
    /// short reads, since no new edge will come for it.
    Fin,
    /// End of file was read; `ReadClosed` is still to be delivered (after the bytes
    /// kept before it).
    Eof,
    /// `ReadClosed` was delivered.
    Done,
}

/// The sending side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteSide {
    Open,
    /// `shutdown_write` was called: FIN once the queue is sent.
    ShutdownQueued,
    /// FIN sent.
    Shut,
}

pub(crate) struct StreamState<S: 'static> {
    pub(crate) io: Option<TcpStream>,
    pub(crate) handler: Option<StreamHandler<S>>,
    pub(crate) phase: Phase,
    pub(crate) read: ReadSide,
    pub(crate) write: WriteSide,
    pub(crate) out: Outbound,
    /// What an established, idle socket does not use, allocated on first use.
    pub(crate) cold: Option<Box<Cold>>,
    /// The owner asked to stop receiving for now.
    pub(crate) receive_paused: bool,
    /// Received bytes are being handed to the handler (they live outside `inbuf`).
    pub(crate) delivering: bool,
    /// While `delivering`: the handler changed how the input is read (codec set or
    /// cleared, handler replaced); the rest is delivered again the new way.
    pub(crate) reinterpret: bool,
    /// Kept input (and a pending `ReadClosed`) must be offered again without waiting
    /// for new bytes: what held it back changed (a handler was set, receiving resumed,
    /// the codec changed).
    pub(crate) reoffer: bool,
    pub(crate) over_high: bool,
    pub(crate) dirty: bool,
    pub(crate) queued_ready: bool,
}

/// The rarely used part of a stream's state: unconsumed input, the codec, the connect
/// plan, the name connected to and the linger timer. An accepted connection that only
/// echoes never allocates it, which keeps an idle socket to a few dozen bytes; once
/// allocated it stays until the socket is closed, so nothing is allocated per message.
#[derive(Default)]
pub(crate) struct Cold {
    /// Bytes the handler left unconsumed, or received before it had a handler.
    pub(crate) inbuf: Vec<u8>,
    /// With a decoder, the handler gets `Message`s instead of `Received`.
    pub(crate) decoder: Option<Box<dyn Decoder>>,
    pub(crate) encoder: Option<Box<dyn Encoder>>,
    /// Changes when framing is set or cleared, so a delivery loop knows its decoder
    /// was replaced by the handler.
    pub(crate) framing_gen: u32,
    pub(crate) connect: Option<Box<Connecting>>,
    /// The name given to `connect`.
    pub(crate) host: Option<HostName>,
    /// The linger timer of a closing socket.
    pub(crate) timer: Option<Key>,
}

impl<S: 'static> StreamState<S> {
    pub(crate) fn new(
        io: Option<TcpStream>,
        phase: Phase,
        handler: Option<StreamHandler<S>>,
    ) -> StreamState<S> {
        StreamState {
            io,
            handler,
            phase,
            out: Outbound::default(),
            read: ReadSide::Open,
            write: WriteSide::Open,
            cold: None,
            receive_paused: false,
            delivering: false,
            reinterpret: false,
            reoffer: false,
            over_high: false,
            dirty: false,
            queued_ready: false,
        }
    }

    /// The cold part, allocated if this is its first use.
    pub(crate) fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    /// Bytes kept unconsumed.
    pub(crate) fn inbuf_len(&self) -> usize {
        self.cold.as_ref().map_or(0, |c| c.inbuf.len())
    }

    /// The framing generation (0 until a codec is first set).
    pub(crate) fn framing_gen(&self) -> u32 {
        self.cold.as_ref().map_or(0, |c| c.framing_gen)
    }

    /// Whether the handler can be given input now.
    pub(crate) fn accepts_input(&self) -> bool {
        self.phase == Phase::Open && self.handler.is_some() && !self.receive_paused
    }

    /// Something that decides how (or whether) input is delivered changed. Inside its
    /// own delivery, the delivery loop offers the rest again at once; elsewhere, kept
    /// input and a pending `ReadClosed` are offered on the next turn. Returns whether
    /// the socket must be served again without a kernel event.
    #[must_use]
    pub(crate) fn input_changed(&mut self) -> bool {
        if self.delivering {
            self.reinterpret = true;
            return false;
        }
        if self.inbuf_len() > 0 || self.read == ReadSide::Eof {
            self.reoffer = true;
        }
        true
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.io.as_ref().and_then(|io| io.peer_addr().ok())
    }

    pub(crate) fn error(&self, operation: &'static str, e: io::Error) -> Error {
        let err = Error::from_io(operation, e);
        match self.peer() {
            Some(addr) => err.with_address(addr),
            None => err,
        }
    }
}

impl StreamSocket {
    /// Connects to `host` on `service` with the default options; `handler` gets every
    /// event of the socket, starting with `Connected` or ending with `Closed(Err(_))`.
    ///
    /// `host` is anything [`IntoHostName`] takes: `"example.com"`, `"127.0.0.1"`, a
    /// [`HostName`], an [`IpAddr`](std::net::IpAddr). `service` is a port (`443`) or
    /// anything [`resolve_service`](crate::resolve_service) reads (`"https"`, `"8080"`).
    ///
    /// An address literal is connected at once. A name is resolved on a helper thread
    /// (the loop never blocks on DNS); then the addresses are tried in the order of
    /// RFC 8305 (Happy Eyeballs v2): IPv6 and IPv4 interleaved (starting with the family
    /// of the first address the system's sorted answer gives), a new attempt started
    /// every 250 ms while the earlier ones are still running, the first to connect
    /// winning — or one after the other with
    /// [`serialize_connection_attempts`](StreamSocketControl::serialize_connection_attempts).
    /// Bytes written before `Connected` are queued and sent once connected.
    ///
    /// # Errors
    ///
    /// At once for an invalid host name (`"example.com:443"` included: the port goes in
    /// `service`) or an unknown service name, both `InvalidArgument`; every connection
    /// failure comes later, as `Closed(Err(_))` (`ConnectionRefused`, `HostNotFound`,
    /// `ConnectionTimedOut`...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sockloop::{Reactor, StreamEvent, StreamSocket};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// StreamSocket::connect(&mut reactor, "localhost", 8080, |reactor, _, socket, event| {
    ///     if let StreamEvent::Connected = event {
    ///         socket.write(reactor, b"hello\n").unwrap();
    ///     }
    /// })?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn connect<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<StreamSocket, Error> {
        Self::connect_with(
            reactor,
            host,
            service,
            &StreamSocketControl::default(),
            handler,
        )
    }

    /// [`connect`](Self::connect) with the options in `control` (Nagle, keep-alive,
    /// buffer sizes, connect timeout, serialized attempts...).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sockloop::{Reactor, StreamSocket, StreamSocketControl};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let control = StreamSocketControl::new().connect_timeout(Duration::from_secs(2));
    /// StreamSocket::connect_with(&mut reactor, "example.com", "https", &control,
    ///     |_, _, _, event| println!("{event:?}"))?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn connect_with<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        control: &StreamSocketControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<StreamSocket, Error> {
        let host = host.into_host_name()?;
        let port = service.into_port()?;
        let destination = Destination::name(host, port);
        Self::connect_to_with(reactor, destination, control, handler)
    }

    /// Connects to a [`Destination`]: a [`SocketAddr`], a list of addresses (raced as
    /// [`connect`](Self::connect) races a name's, starting with the family of the
    /// first), or an [`EndpointPair`](crate::EndpointPair), whose local endpoint is
    /// bound before connecting (Windows' `ConnectAsync(EndpointPair)`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an empty list of addresses. Connection failures come as
    /// `Closed(Err(_))`; with an `EndpointPair`, also `AddressFamilyNotSupported` when
    /// the local and remote hosts have no address family in common, and the bind error
    /// (`AddressAlreadyInUse`, `CannotAssignRequestedAddress`) when the local endpoint
    /// cannot be bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sockloop::{EndpointPair, Reactor, StreamSocket};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// // From 127.0.0.2 (any port) to 127.0.0.1:8080.
    /// let pair = EndpointPair::new("127.0.0.2", 0, "127.0.0.1", 8080)?;
    /// StreamSocket::connect_to(&mut reactor, pair, |_, _, _, event| println!("{event:?}"))?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn connect_to<S: 'static>(
        reactor: &mut Reactor<S>,
        destination: impl Into<Destination>,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<StreamSocket, Error> {
        Self::connect_to_with(
            reactor,
            destination,
            &StreamSocketControl::default(),
            handler,
        )
    }

    /// [`connect_to`](Self::connect_to) with the options in `control`.
    ///
    /// # Errors
    ///
    /// As [`connect_to`](Self::connect_to).
    pub fn connect_to_with<S: 'static>(
        reactor: &mut Reactor<S>,
        destination: impl Into<Destination>,
        control: &StreamSocketControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<StreamSocket, Error> {
        let destination = destination.into();
        destination.check()?;
        let mut st = StreamState::new(None, Phase::Resolving, Some(Box::new(handler)));
        st.cold().host = destination.host_name();
        let key = reactor.insert_source(Source::Stream(st))?;
        reactor.begin_connect(key, destination, control);
        Ok(StreamSocket(key))
    }

    /// Adopts a connected `std` socket (made non-blocking here).
    ///
    /// # Errors
    ///
    /// When the socket cannot be made non-blocking or registered.
    pub fn from_std<S: 'static>(
        reactor: &mut Reactor<S>,
        stream: std::net::TcpStream,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<StreamSocket, Error> {
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::from_io("adopt stream", e))?;
        let key = reactor.add_stream(TcpStream::from_std(stream), Some(Box::new(handler)))?;
        Ok(StreamSocket(key))
    }

    /// Gives the handler to a socket that has none (an accepted one) or replaces it.
    /// Bytes that arrived before are delivered to it on the next turn.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_handler<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + 'static,
    ) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "set handler")?;
        st.handler = Some(Box::new(handler));
        if st.input_changed() && st.reoffer {
            reactor.mark_ready(self.0);
        }
        Ok(())
    }

    /// Queues `data` for sending. Inside a handler, everything written during the
    /// call leaves in one `send`/`writev` when it returns; outside one, it is sent at once.
    ///
    /// # Errors
    ///
    /// - `NoBufferSpaceAvailable` if the queue would exceed its hard limit: nothing of
    ///   `data` is queued. Wait for `Drained`.
    /// - `MessageTooLong` if `data` alone is longer than the hard limit: it could never
    ///   be queued (and no `Drained` would come for it); split it.
    /// - `InvalidState` after `close` or `shutdown_write`; `InvalidHandle` if closed.
    pub fn write<S: 'static>(self, reactor: &mut Reactor<S>, data: &[u8]) -> Result<(), Error> {
        let (limit, high) = (reactor.config.write_limit, reactor.config.high_watermark);
        let Some((Source::Stream(st), pool, mut queue)) = reactor.source_for_write(self.0) else {
            return Err(stale("write"));
        };
        writable_state(st, "write")?;
        let queued = st.out.len();
        if queued.saturating_add(data.len()) > limit {
            return Err(over_limit(st, "write", queued, data.len(), limit));
        }
        st.out.push(data, pool);
        if st.out.len() > high {
            st.over_high = true;
        }
        // With the state at hand rather than through `mark_dirty`, which would look the
        // socket up again: a handler writing many small messages pays one lookup each.
        if !queue.defer(self.0, &mut st.dirty) {
            reactor.flush_stream(self.0);
        }
        Ok(())
    }

    /// Stops (`true`) or resumes (`false`) reading from the socket. While paused, the
    /// kernel's receive buffer fills and TCP flow control slows the peer down: the way
    /// to push back when the data received cannot be handled (or forwarded) as fast as
    /// it arrives — for instance, pause when `write` reports `NoBufferSpaceAvailable`
    /// and resume on `Drained`. While paused, no `Received` or `Message` event is
    /// delivered (a handler that pauses while given several messages gets the next one
    /// only after resuming) and `ReadClosed` waits. Resuming offers what was kept
    /// (bytes left unconsumed, messages not delivered yet) on the next turn, or at once
    /// if the handler pauses and resumes within one call, before any new byte or
    /// `ReadClosed`.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_receive_paused<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        paused: bool,
    ) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "pause receive")?;
        let resumed = st.receive_paused && !paused;
        st.receive_paused = paused;
        // Even with nothing kept: edges that came while paused were not read.
        if resumed && st.input_changed() {
            reactor.mark_ready(self.0);
        }
        Ok(())
    }

    /// Sends what is queued now, even inside a handler.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed. Write errors close the socket and are
    /// reported with `Closed`.
    pub fn flush<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        reactor.stream_mut(self.0, "flush")?;
        reactor.flush_stream(self.0);
        Ok(())
    }

    /// Sends what is queued, then a FIN: the peer sees end of file; reading goes on.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed; `InvalidState` after `close`.
    pub fn shutdown_write<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "shutdown write")?;
        writable_state(st, "shutdown write")?;
        st.write = WriteSide::ShutdownQueued;
        reactor.mark_dirty(self.0);
        Ok(())
    }

    /// Closes gracefully: what is queued is sent, then a FIN, then the handler gets
    /// `Closed(Ok(()))`. If the queue is not sent within the reactor's linger time, the
    /// connection is reset and `Closed` reports `ConnectionTimedOut`. Bytes that
    /// arrive meanwhile are discarded. A socket still connecting is just dropped.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn close<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "close")?;
        match st.phase {
            Phase::Closing => return Ok(()),
            Phase::Resolving | Phase::Connecting => {
                st.phase = Phase::Closed;
                reactor.finish_later(self.0, Ok(()));
                return Ok(());
            }
            _ => {}
        }
        // The linger timer is armed by the flush, only if the queue does not drain at
        // once: closing an idle socket touches neither the heap nor the timers.
        st.phase = Phase::Closing;
        reactor.mark_dirty(self.0);
        Ok(())
    }

    /// Resets the connection (RST) at once, dropping what is queued in both
    /// directions. The handler gets `Closed(Ok(()))`.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn abort<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        let Some(Source::Stream(st)) = reactor.sources.get_mut(self.0) else {
            return Err(stale("abort"));
        };
        if st.phase == Phase::Closed {
            return Err(stale("abort"));
        }
        // A connecting socket's plan owns timers: cancel them with it, or they would
        // stay armed (the connect timeout for up to 30 s) after the socket is gone.
        let plan = st.cold.as_mut().and_then(|c| c.connect.take());
        reset(st);
        st.out.release(&mut reactor.pool);
        if let Some(plan) = plan {
            reactor.cancel_internal_timer(plan.stagger);
            reactor.cancel_internal_timer(plan.timeout);
        }
        reactor.finish_later(self.0, Ok(()));
        Ok(())
    }

    /// Addresses, host name, round-trip-time statistics and queue length.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn information<S: 'static>(
        self,
        reactor: &Reactor<S>,
    ) -> Result<StreamSocketInformation, Error> {
        let st = reactor.stream_ref(self.0, "information")?;
        let io = st.io.as_ref();
        // IPv4 peers of dual-stack sockets as IPv4, as `ConnectionReceived` has them.
        let remote_address = io.and_then(|s| s.peer_addr().ok()).map(canonical);
        Ok(StreamSocketInformation {
            local_address: io.and_then(|s| s.local_addr().ok()).map(canonical),
            remote_address,
            // The name given to `connect`, else the peer's address (accepted and
            // adopted sockets).
            remote_host_name: st
                .cold
                .as_ref()
                .and_then(|c| c.host.clone())
                .or_else(|| remote_address.map(|a| HostName::from(a.ip()))),
            round_trip_time: io.and_then(|s| sys::tcp_info(s).ok()).map(|i| {
                RoundTripTimeStatistics {
                    smoothed: Duration::from_micros(i.rtt_us.into()),
                    variance: Duration::from_micros(i.rttvar_us.into()),
                    retransmissions: i.total_retrans,
                }
            }),
            queued_bytes: st.out.len(),
        })
    }

    /// Bytes accepted by `write` and not yet taken by the kernel.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn queued_len<S: 'static>(self, reactor: &Reactor<S>) -> Result<usize, Error> {
        Ok(reactor.stream_ref(self.0, "queued len")?.out.len())
    }

    /// Takes the socket out of the reactor and returns it (still non-blocking). The
    /// handler is dropped without a `Closed` event: the connection is not closed.
    ///
    /// # Errors
    ///
    /// `InvalidState` if the socket is not connected, if called from the handler while it
    /// is given received bytes, or if bytes are still queued in
    /// either direction (they would be lost); `InvalidHandle` if closed.
    pub fn into_std<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
    ) -> Result<std::net::TcpStream, Error> {
        let st = reactor.stream_mut(self.0, "into std")?;
        if st.phase != Phase::Open || st.io.is_none() {
            return Err(Error::new(SocketErrorStatus::InvalidState, "into std")
                .with_detail("not connected"));
        }
        if st.delivering {
            return Err(Error::new(SocketErrorStatus::InvalidState, "into std").with_detail(
                "called while received bytes are being delivered; call it after the handler returns",
            ));
        }
        if !st.out.is_empty() || st.inbuf_len() > 0 {
            return Err(
                Error::new(SocketErrorStatus::InvalidState, "into std").with_detail(format!(
                    "{} bytes queued to send and {} received but unconsumed",
                    st.out.len(),
                    st.inbuf_len()
                )),
            );
        }
        let Some(Source::Stream(mut st)) = reactor.remove_source(self.0) else {
            return Err(stale("into std"));
        };
        let mut io = st.io.take().ok_or_else(|| stale("into std"))?;
        let _ = reactor.poll.registry().deregister(&mut io);
        Ok(std::net::TcpStream::from(io))
    }
}

/// The error of a write that does not fit: `MessageTooLong` if it never could,
/// `NoBufferSpaceAvailable` (and the socket flagged for `Drained`) if it could once the
/// queue drains. Kept out of line: the write path only tests the limit.
#[cold]
#[inline(never)]
pub(crate) fn over_limit<S: 'static>(
    st: &mut StreamState<S>,
    operation: &'static str,
    queued: usize,
    size: usize,
    limit: usize,
) -> Error {
    if size <= limit {
        st.over_high = true;
    }
    Error::refused(operation, queued, size, limit)
}

pub(crate) fn writable_state<S: 'static>(
    st: &StreamState<S>,
    operation: &'static str,
) -> Result<(), Error> {
    let why = match st.phase {
        Phase::Closing | Phase::Closed => "the socket is closing",
        _ if st.write != WriteSide::Open => "the sending side is shut down",
        _ => return Ok(()),
    };
    Err(Error::new(SocketErrorStatus::InvalidState, operation).with_detail(why))
}

/// Drops the connection with a reset (SO_LINGER 0) and everything in flight.
pub(crate) fn reset<S: 'static>(st: &mut StreamState<S>) {
    if let Some(io) = st.io.take() {
        let _ = SockRef::from(&io).set_linger(Some(Duration::ZERO));
    }
    if let Some(cold) = st.cold.as_mut() {
        cold.connect = None;
    }
    st.phase = Phase::Closed;
}

impl<S: 'static> Reactor<S> {
    pub(crate) fn stream_ref(
        &self,
        key: Key,
        operation: &'static str,
    ) -> Result<&StreamState<S>, Error> {
        match self.sources.get(key) {
            Some(Source::Stream(st)) if st.phase != Phase::Closed => Ok(st),
            _ => Err(stale(operation)),
        }
    }

    pub(crate) fn stream_mut(
        &mut self,
        key: Key,
        operation: &'static str,
    ) -> Result<&mut StreamState<S>, Error> {
        match self.sources.get_mut(key) {
            Some(Source::Stream(st)) if st.phase != Phase::Closed => Ok(st),
            _ => Err(stale(operation)),
        }
    }

    /// Registers a connected stream; `handler` may be `None` (accepted, not claimed yet).
    pub(crate) fn add_stream(
        &mut self,
        mut io: TcpStream,
        handler: Option<StreamHandler<S>>,
    ) -> Result<Key, Error> {
        let key = self.insert_source(Source::Stream(StreamState::new(None, Phase::Open, None)))?;
        if let Err(e) = self.poll.registry().register(
            &mut io,
            key.token(),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.remove_source(key);
            return Err(Error::from_io("register stream", e));
        }
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.io = Some(io);
            st.handler = handler;
        }
        Ok(key)
    }

    pub(crate) fn mark_ready(&mut self, key: Key) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if !st.queued_ready {
                st.queued_ready = true;
                self.serve_next_turn(key);
            }
        }
    }

    /// Inside a handler: remember to flush when it returns. Outside: flush now.
    pub(crate) fn mark_dirty(&mut self, key: Key) {
        let deferred = match self.source_for_write(key) {
            Some((Source::Stream(st), _, mut queue)) => queue.defer(key, &mut st.dirty),
            _ => false,
        };
        if !deferred {
            self.flush_stream(key);
        }
    }

    /// Calls a stream's handler (taken out of its slot for the call and put back
    /// after, unless the socket was closed or given another handler meanwhile).
    /// Returns `false` if the socket has no handler.
    pub(crate) fn call_stream(&mut self, state: &mut S, key: Key, event: StreamEvent<'_>) -> bool {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return false;
        };
        let Some(mut handler) = st.handler.take() else {
            return false;
        };
        let returned = self
            .in_handler(|r| handler(r, state, StreamSocket(key), event))
            .is_some();
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.handler.get_or_insert(handler);
            if !returned && st.phase != Phase::Closed {
                // The same handler gets the one `Closed` event.
                reset(st);
                self.finish_later(key, Err(panicked("stream handler")));
            }
        }
        true
    }

    pub(crate) fn stream_event(&mut self, state: &mut S, key: Key, event: &mio::event::Event) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if (event.is_read_closed() || event.is_error()) && st.read == ReadSide::Open {
            // Also while connecting: the peer may send and close before `Connected`
            // is delivered, in the very event that completes the connection. (If the
            // event came from a failed attempt instead, an extra read is all it costs.)
            st.read = ReadSide::Fin;
        }
        match st.phase {
            Phase::Connecting => self.check_connect(state, key, event.is_readable()),
            Phase::Open | Phase::Closing => {
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    self.flush_stream(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.stream_read(state, key);
                }
                if event.is_error() {
                    self.take_socket_error(key);
                }
            }
            Phase::Resolving | Phase::Closed => {}
        }
    }

    fn take_socket_error(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.phase == Phase::Closed {
            return;
        }
        let pending = st.io.as_ref().map(|io| io.take_error());
        if let Some(Ok(Some(e)) | Err(e)) = pending {
            let err = st.error("receive", e);
            st.phase = Phase::Closed;
            self.finish_later(key, Err(err));
        }
    }

    /// Writes what is queued. Outcomes that call the handler (`Drained`, `Closed`)
    /// are deferred until no handler runs.
    pub(crate) fn flush_stream(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.dirty = false;
        if !matches!(st.phase, Phase::Open | Phase::Closing) {
            return;
        }
        let Some(io) = st.io.as_mut() else { return };
        if !st.out.is_empty() {
            if let Err(e) = st.out.flush(io, &mut self.pool) {
                let err = st.error("send", e);
                st.phase = Phase::Closed;
                self.finish_later(key, Err(err));
                return;
            }
        }
        // `Drained` is queued before a `Closed` this flush may queue.
        let drained = st.over_high && st.out.len() <= self.config.low_watermark && {
            st.over_high = false;
            st.phase == Phase::Open
        };
        if !st.out.is_empty() {
            let arm =
                st.phase == Phase::Closing && st.cold.as_ref().map_or(true, |c| c.timer.is_none());
            if drained {
                self.drained_later(key);
            }
            if arm {
                // What is queued gets the linger time to leave, counted from here.
                let timer = self.set_source_timer(self.config.linger, key, SourceTimer::Linger);
                if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
                    st.cold().timer = Some(timer);
                }
            }
            return;
        }
        if st.write != WriteSide::Shut
            && (st.write == WriteSide::ShutdownQueued || st.phase == Phase::Closing)
        {
            st.write = WriteSide::Shut;
            let _ = io.shutdown(Shutdown::Write);
        }
        let finished = st.phase == Phase::Closing
            || (st.write == WriteSide::Shut && st.read == ReadSide::Done);
        if finished {
            st.phase = Phase::Closed;
        }
        if drained {
            self.drained_later(key);
        }
        if finished {
            self.finish_later(key, Ok(()));
        }
    }

    pub(crate) fn deliver_drained(&mut self, state: &mut S, key: Key) {
        if let Some(Source::Stream(st)) = self.sources.get(key) {
            if st.phase == Phase::Open && !st.over_high {
                self.call_stream(state, key, StreamEvent::Drained);
            }
        }
    }
}

/// Streams, as the loop sees them.
pub(crate) struct StreamKind;

impl<S: 'static> Kind<S> for StreamKind {
    fn ready(r: &mut Reactor<S>, state: &mut S, key: Key, event: &mio::event::Event) {
        r.stream_event(state, key, event);
    }

    fn serve(r: &mut Reactor<S>, state: &mut S, key: Key) {
        if let Some(Source::Stream(st)) = r.sources.get_mut(key) {
            st.queued_ready = false;
        }
        r.stream_read(state, key);
    }

    fn timer(r: &mut Reactor<S>, _state: &mut S, key: Key, timer: SourceTimer) {
        match timer {
            SourceTimer::ConnectStagger => r.connect_stagger(key),
            SourceTimer::ConnectTimeout => r.connect_timed_out(key),
            SourceTimer::Linger => r.linger_expired(key),
            SourceTimer::AcceptRetry => {}
        }
    }

    fn flush(r: &mut Reactor<S>, key: Key) {
        r.flush_stream(key);
    }

    fn drained(r: &mut Reactor<S>, state: &mut S, key: Key) {
        r.deliver_drained(state, key);
    }

    fn finish(r: &mut Reactor<S>, state: &mut S, key: Key, result: Result<(), Error>) {
        r.finish_stream(state, key, result);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::net::listener::{ListenerEvent, StreamSocketListener};

    /// An accepted connection that echoes and goes idle keeps no out-of-line state and
    /// no chunk: its whole cost is its slot.
    #[test]
    fn idle_echoing_connection_holds_no_cold_state() {
        let mut reactor = Reactor::<Vec<StreamSocket>>::new().unwrap();
        let listener = StreamSocketListener::bind(
            &mut reactor,
            "127.0.0.1",
            0,
            |reactor, accepted: &mut Vec<StreamSocket>, _, event| {
                if let ListenerEvent::ConnectionReceived(conn) = event {
                    accepted.push(conn.socket);
                    let _ = conn
                        .socket
                        .set_handler(reactor, |reactor, _, socket, event| {
                            if let StreamEvent::Received(mut input) = event {
                                socket.write(reactor, input.bytes()).unwrap();
                                input.consume_all();
                            }
                        });
                }
            },
        )
        .unwrap();
        let addr = listener.local_address(&reactor).unwrap();
        let mut accepted = Vec::new();
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client.write_all(&[i; 100]).unwrap();
            let mut echo = [0u8; 100];
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            client.set_nonblocking(true).unwrap();
            while got < echo.len() {
                assert!(Instant::now() < deadline, "no echo");
                reactor
                    .turn(&mut accepted, Some(Duration::from_millis(10)))
                    .unwrap();
                match client.read(&mut echo[got..]) {
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(echo, [i; 100]);
            clients.push(client);
        }
        assert_eq!(accepted.len(), 3);
        for socket in &accepted {
            let Some(Source::Stream(st)) = reactor.sources.get(socket.0) else {
                panic!("socket gone");
            };
            assert!(st.cold.is_none(), "cold state allocated for an echo");
            assert!(st.out.is_empty());
        }
        // One chunk served all three echoes and waits in the pool.
        assert_eq!(reactor.pool.idle(), 1);
        // The name of an accepted peer is its address, made on demand.
        let info = accepted[0].information(&reactor).unwrap();
        assert_eq!(
            info.remote_host_name,
            Some(HostName::from(clients[0].local_addr().unwrap().ip()))
        );
    }
}
