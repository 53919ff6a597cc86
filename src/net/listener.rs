//! `StreamSocketListener`: accepts TCP connections.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use mio::net::TcpListener;
use mio::Interest;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::error::stale_handle;
use crate::error::Error;
use crate::io::sys;
use crate::net::control::{OverLimit, StreamSocketControl, StreamSocketListenerControl};
use crate::net::hostname::{resolve_blocking, IntoHostName};
use crate::net::service::IntoService;
use crate::net::stream::StreamSocket;
use crate::reactor::{Key, Kind, Reactor, Source, SourceTimer};
#[cfg(feature = "tls")]
use crate::tls::TlsServerConfig;

/// How long to wait before accepting again after running out of file descriptors.
const FD_RETRY: Duration = Duration::from_millis(100);

/// A TCP listener: a `Copy` handle to a listening socket owned by a [`Reactor`].
///
/// # Examples
///
/// An echo server:
///
/// ```no_run
/// use sockloop::{ListenerEvent, Reactor, StreamEvent, StreamSocketListener};
///
/// let mut reactor = Reactor::<()>::new()?;
/// StreamSocketListener::bind_any(&mut reactor, 7007, |reactor, _, _listener, event| {
///     if let ListenerEvent::ConnectionReceived(conn) = event {
///         conn.socket.set_handler(reactor, |reactor, _, socket, event| {
///             if let StreamEvent::Received(mut input) = event {
///                 let _ = socket.write(reactor, input.bytes());
///                 input.consume_all();
///             }
///         }).unwrap();
///     }
/// })?;
/// reactor.run(&mut ())?;
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamSocketListener(pub(crate) Key);

impl fmt::Debug for StreamSocketListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamSocketListener({}v{})", self.0.index, self.0.gen)
    }
}

/// A connection accepted by a listener.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ConnectionReceived {
    /// The new socket. It has no handler yet: give it one with
    /// [`StreamSocket::set_handler`]. Bytes that arrive before are kept (up to the
    /// reactor's inbound limit) and delivered to it.
    pub socket: StreamSocket,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The local address the connection came in on.
    pub local: SocketAddr,
}

/// What happened on a listener.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A connection came in (`ConnectionReceived` on Windows).
    ConnectionReceived(ConnectionReceived),
    /// The listener is closed; the last event.
    Closed(Result<(), Error>),
}

pub(crate) type ListenerHandler<S> =
    Box<dyn FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent)>;

pub(crate) struct ListenerState<S: 'static> {
    io: TcpListener,
    handler: Option<ListenerHandler<S>>,
    accepted: StreamSocketControl,
    #[cfg(feature = "tls")]
    tls: Option<TlsServerConfig>,
    local: SocketAddr,
    /// Out of file descriptors: waiting for the retry timer.
    retry: Option<Key>,
    /// `close` was called: accept nothing more.
    closing: bool,
    queued_ready: bool,
    limit: Option<Limit>,
}

/// A listener's count of its live accepted connections, against its maximum.
struct Limit {
    max: usize,
    policy: OverLimit,
    live: usize,
    /// At the maximum with [`OverLimit::Pause`]: out of the poller.
    paused: bool,
    rejected: u64,
}

impl StreamSocketListener {
    /// Listens on one local address (`"127.0.0.1"`, `"::1"`, an interface's address,
    /// or a name such as `"localhost"`) and `service` (a port, `0` for any, or a
    /// service name such as `"http"`), with the default options
    /// (`BindEndpointAsync` on Windows). A name is resolved at once, blocking (it is
    /// meant for `localhost`): use an address literal in latency-sensitive code.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an invalid host name or unknown service name; resolution
    /// errors; `AddressAlreadyInUse` (port taken), `AccessDenied` (privileged port),
    /// `CannotAssignRequestedAddress` (an address that is not local).
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{Reactor, StreamSocketListener};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let listener = StreamSocketListener::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, event| {
    ///     println!("{event:?}");
    /// })?;
    /// assert_ne!(listener.local_address(&reactor)?.port(), 0);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn bind<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent) + 'static,
    ) -> Result<StreamSocketListener, Error> {
        let control = StreamSocketListenerControl::default();
        Self::bind_with(reactor, host, service, &control, handler)
    }

    /// Listens on `service` on every local address, IPv6 and IPv4
    /// (`BindServiceNameAsync` on Windows).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), name resolution aside.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sockloop::{Reactor, StreamSocketListener};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// StreamSocketListener::bind_any(&mut reactor, "http", |_, _, _, event| println!("{event:?}"))?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn bind_any<S: 'static>(
        reactor: &mut Reactor<S>,
        service: impl IntoService,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent) + 'static,
    ) -> Result<StreamSocketListener, Error> {
        let control = StreamSocketListenerControl::default();
        Self::bind_any_with(reactor, service, &control, handler)
    }

    /// [`bind`](Self::bind) with explicit options: backlog, `SO_REUSEPORT`, IPv6 only,
    /// options of accepted sockets.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{Reactor, StreamSocketListener, StreamSocketListenerControl};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let control = StreamSocketListenerControl::new().backlog(16);
    /// StreamSocketListener::bind_with(&mut reactor, "::1", 0, &control, |_, _, _, _| {})?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn bind_with<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        control: &StreamSocketListenerControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent) + 'static,
    ) -> Result<StreamSocketListener, Error> {
        let host = host.into_host_name()?;
        let port = service.into_port()?;
        let addr = resolve_blocking(&host, port)?[0];
        let listener = bind_socket(addr, control)
            .map_err(|e| Error::from_io("listen", e).with_address(addr))?;
        reactor.add_listener(listener, control, Box::new(handler))
    }

    /// [`bind_any`](Self::bind_any) with explicit options.
    ///
    /// # Errors
    ///
    /// As [`bind_any`](Self::bind_any).
    pub fn bind_any_with<S: 'static>(
        reactor: &mut Reactor<S>,
        service: impl IntoService,
        control: &StreamSocketListenerControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent) + 'static,
    ) -> Result<StreamSocketListener, Error> {
        let port = service.into_port()?;
        let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let listener = match bind_socket(addr, control) {
            // No IPv6 on this machine: fall back to the IPv4 wildcard.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => bind_socket(
                SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
                control,
            ),
            other => other,
        }
        .map_err(|e| Error::from_io("listen", e).with_address(addr))?;
        reactor.add_listener(listener, control, Box::new(handler))
    }

    /// Adopts a listening `std` socket (made non-blocking here). Accepted sockets get
    /// the default [`StreamSocketControl`].
    ///
    /// # Errors
    ///
    /// When the socket cannot be made non-blocking or registered.
    pub fn from_std<S: 'static>(
        reactor: &mut Reactor<S>,
        listener: std::net::TcpListener,
        handler: impl FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent) + 'static,
    ) -> Result<StreamSocketListener, Error> {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::from_io("adopt listener", e))?;
        reactor.add_listener(
            listener,
            &StreamSocketListenerControl::default(),
            Box::new(handler),
        )
    }

    /// Adopts the listening sockets a service manager passed to this process
    /// (systemd socket activation: `LISTEN_PID` names this process, `LISTEN_FDS`
    /// counts descriptors from 3 on). Each gets a clone of `handler`. Returns an empty
    /// list when the variables are absent or meant for another process, and on every
    /// call after the first: the descriptors have one owner.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if a passed descriptor is not a listening TCP socket.
    pub fn from_listen_fds<S: 'static, H>(
        reactor: &mut Reactor<S>,
        handler: H,
    ) -> Result<Vec<StreamSocketListener>, Error>
    where
        H: FnMut(&mut Reactor<S>, &mut S, StreamSocketListener, ListenerEvent) + Clone + 'static,
    {
        let listeners = sys::listen_fds().map_err(|(fd, e)| {
            Error::from_io("adopt inherited listener", e)
                .with_detail(format!("LISTEN_FDS descriptor {fd}"))
        })?;
        let mut out = Vec::with_capacity(listeners.len());
        for listener in listeners {
            out.push(Self::from_std(reactor, listener, handler.clone())?);
        }
        Ok(out)
    }

    /// The local address, with the port the system chose for `"0"`.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn local_address<S: 'static>(self, reactor: &Reactor<S>) -> Result<SocketAddr, Error> {
        match reactor.sources.get(self.0) {
            Some(Source::Listener(l)) => Ok(l.local),
            _ => Err(stale_handle("StreamSocketListener", "local address")),
        }
    }

    /// How many connections it accepted are live (not yet `Closed`), when it was
    /// given a [`max_connections`](StreamSocketListenerControl::max_connections)
    /// limit; `None` without one (connections are not counted then).
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{Reactor, StreamSocketListener, StreamSocketListenerControl};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let control = StreamSocketListenerControl::new().max_connections(Some(100));
    /// let listener =
    ///     StreamSocketListener::bind_with(&mut reactor, "127.0.0.1", 0, &control, |_, _, _, _| {})?;
    /// assert_eq!(listener.live_connections(&reactor)?, Some(0));
    /// assert_eq!(listener.rejected_connections(&reactor)?, 0);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn live_connections<S: 'static>(
        self,
        reactor: &Reactor<S>,
    ) -> Result<Option<usize>, Error> {
        match reactor.sources.get(self.0) {
            Some(Source::Listener(l)) => Ok(l.limit.as_ref().map(|m| m.live)),
            _ => Err(stale_handle("StreamSocketListener", "live connections")),
        }
    }

    /// How many connections it reset at once, over its limit with
    /// [`OverLimit::Reject`](crate::OverLimit::Reject).
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn rejected_connections<S: 'static>(self, reactor: &Reactor<S>) -> Result<u64, Error> {
        match reactor.sources.get(self.0) {
            Some(Source::Listener(l)) => Ok(l.limit.as_ref().map_or(0, |m| m.rejected)),
            _ => Err(stale_handle("StreamSocketListener", "rejected connections")),
        }
    }

    /// Stops listening; the handler gets `Closed(Ok(()))`. Accepted sockets are not
    /// affected.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn close<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        match reactor.sources.get_mut(self.0) {
            Some(Source::Listener(l)) => {
                if !l.closing {
                    l.closing = true;
                    reactor.finish_later(self.0, Ok(()));
                }
                Ok(())
            }
            _ => Err(stale_handle("StreamSocketListener", "close listener")),
        }
    }
}

/// The address with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) made IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn bind_socket(
    addr: SocketAddr,
    control: &StreamSocketListenerControl,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if control.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(control.only_ipv6)?;
    }
    socket.bind(&addr.into())?;
    // Inherited by accepted sockets; only effective before `listen`.
    control.accepted.apply_buffer_sizes(&socket)?;
    socket.listen(control.backlog)?;
    Ok(socket.into())
}

impl<S: 'static> Reactor<S> {
    fn add_listener(
        &mut self,
        listener: std::net::TcpListener,
        control: &StreamSocketListenerControl,
        handler: ListenerHandler<S>,
    ) -> Result<StreamSocketListener, Error> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::from_io("listen", e))?;
        let state = ListenerState {
            io: TcpListener::from_std(listener),
            handler: Some(handler),
            accepted: control.accepted.clone(),
            #[cfg(feature = "tls")]
            tls: control.tls.clone(),
            local,
            retry: None,
            closing: false,
            queued_ready: false,
            limit: control.max_connections.map(|max| Limit {
                max,
                policy: control.over_limit,
                live: 0,
                paused: false,
                rejected: 0,
            }),
        };
        let key = self.insert_source(Source::Listener(Box::new(state)))?;
        if let Some(Source::Listener(l)) = self.sources.get_mut(key) {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut l.io, key.token(), Interest::READABLE)
            {
                self.remove_source(key);
                return Err(Error::from_io("register listener", e).with_address(local));
            }
        }
        log::debug!("listener {key:?} on {local}");
        Ok(StreamSocketListener(key))
    }

    /// A kernel event. A listener queued to be served this turn (it went over its
    /// budget last turn) is served from the queue only, so that it does not accept
    /// twice its budget in one turn.
    fn listener_event(&mut self, state: &mut S, key: Key) {
        if let Some(Source::Listener(l)) = self.sources.get(key) {
            if l.queued_ready {
                return;
            }
        }
        self.listener_ready(state, key);
    }

    /// Accepts until `WouldBlock`, the per-turn budget, or fd exhaustion.
    fn listener_ready(&mut self, state: &mut S, key: Key) {
        for _ in 0..self.config.accept_budget {
            let Some(Source::Listener(l)) = self.sources.get_mut(key) else {
                return;
            };
            if l.retry.is_some() || l.closing {
                return; // waiting for file descriptors (the retry timer resumes), or closed
            }
            let mut reject = false;
            if let Some(limit) = l.limit.as_mut().filter(|m| m.live >= m.max) {
                if limit.policy == OverLimit::Pause {
                    // Out of the poller until a connection goes: no event, no spin.
                    limit.paused = true;
                    let _ = self.poll.registry().deregister(&mut l.io);
                    log::debug!("listener {key:?}: {} connections, paused", limit.live);
                    return;
                }
                reject = true;
            }
            match l.io.accept() {
                Ok((io, remote)) if reject => {
                    log::debug!("listener {key:?}: over its limit, {remote} reset");
                    let _ = SockRef::from(&io).set_linger(Some(Duration::ZERO));
                    if let Some(limit) = l.limit.as_mut() {
                        limit.rejected += 1;
                    }
                }
                Ok((io, remote)) => self.accepted(state, key, io, remote),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.raw_os_error() == Some(libc::EMFILE)
                        || e.raw_os_error() == Some(libc::ENFILE) =>
                {
                    log::warn!(
                        "listener on {}: {e}; accepting again in {FD_RETRY:?}",
                        l.local
                    );
                    self.stats_mut().accept_fd_exhausted += 1;
                    let timer = self.set_source_timer(FD_RETRY, key, SourceTimer::AcceptRetry);
                    if let Some(Source::Listener(l)) = self.sources.get_mut(key) {
                        l.retry = Some(timer);
                    }
                    return;
                }
                // The connection died in the backlog, or a transient kernel shortage:
                // skip it and go on.
                Err(e) => log::debug!("listener on {}: accept: {e}", l.local),
            }
        }
        self.mark_listener_ready(key);
    }

    fn mark_listener_ready(&mut self, key: Key) {
        if let Some(Source::Listener(l)) = self.sources.get_mut(key) {
            if !l.queued_ready {
                l.queued_ready = true;
                self.serve_next_turn(key);
            }
        }
    }

    fn listener_served(&mut self, key: Key) {
        if let Some(Source::Listener(l)) = self.sources.get_mut(key) {
            l.queued_ready = false;
        }
    }

    /// A connection accepted by the listener `key` (if it limits them) is gone: count
    /// it, and accept again if the limit paused the listener.
    pub(crate) fn accepted_connection_gone(&mut self, key: Option<Key>) {
        let Some(key) = key else { return };
        let Some(Source::Listener(l)) = self.sources.get_mut(key) else {
            return; // the listener was closed first
        };
        let Some(limit) = l.limit.as_mut() else {
            return;
        };
        limit.live = limit.live.saturating_sub(1);
        if limit.paused && limit.live < limit.max && !l.closing {
            limit.paused = false;
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut l.io, key.token(), Interest::READABLE)
            {
                log::warn!("listener {key:?}: cannot resume accepting: {e}");
                return self.finish_later(key, Err(Error::from_io("register listener", e)));
            }
            // Connections waiting in the backlog raise no new edge: accept them now.
            self.mark_listener_ready(key);
        }
    }

    fn accept_retry(&mut self, state: &mut S, key: Key) {
        if let Some(Source::Listener(l)) = self.sources.get_mut(key) {
            l.retry = None;
            self.listener_ready(state, key);
        }
    }

    fn accepted(&mut self, state: &mut S, key: Key, io: mio::net::TcpStream, remote: SocketAddr) {
        let Some(Source::Listener(l)) = self.sources.get_mut(key) else {
            return;
        };
        // A listener bound to one address takes connections on that address only: its
        // own. A wildcard one asks which address the peer reached.
        let local = if l.local.ip().is_unspecified() {
            io.local_addr().unwrap_or(l.local)
        } else {
            l.local
        };
        let timeouts = l.accepted.timeouts();
        #[cfg(feature = "tls")]
        let session = match crate::net::stream::tls::for_accept(l.tls.as_ref(), &l.accepted) {
            Ok(session) => session,
            Err(e) => return log::debug!("accepted {remote}: {e}"),
        };
        if let Err(e) = l.accepted.apply_accepted(SockRef::from(&io), &remote) {
            log::debug!("accepted {remote}: could not apply socket options: {e}");
        }
        // An IPv4 peer of a dual-stack listener is reported as IPv4 (127.0.0.1), not
        // as an IPv4-mapped IPv6 address (::ffff:127.0.0.1).
        let (remote, local) = (canonical(remote), canonical(local));
        let socket = match self.add_stream(io, None) {
            Ok(socket) => socket,
            Err(e) => return log::debug!("accepted {remote}: {e}"),
        };
        self.count_accepted(key, socket);
        #[cfg(feature = "tls")]
        if let (Some(session), Some(Source::Stream(st))) = (session, self.sources.get_mut(socket)) {
            crate::net::stream::tls::install(st, session);
            self.arm_handshake_timer(socket);
        }
        if timeouts.any() {
            self.set_timeouts(socket, timeouts);
        }
        self.stats_mut().accepted += 1;
        let event = ListenerEvent::ConnectionReceived(ConnectionReceived {
            socket: StreamSocket(socket),
            remote,
            local,
        });
        self.call_listener(state, key, event);
    }

    /// Counts `socket` against the limit of the listener `key`, if it has one.
    fn count_accepted(&mut self, key: Key, socket: Key) {
        let Some(Source::Listener(l)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(limit) = l.limit.as_mut() else {
            return;
        };
        limit.live += 1;
        if let Some(Source::Stream(st)) = self.sources.get_mut(socket) {
            st.cold().listener = Some(key);
        }
    }

    fn call_listener(&mut self, state: &mut S, key: Key, event: ListenerEvent) {
        let Some(Source::Listener(l)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(mut handler) = l.handler.take() else {
            return;
        };
        let returned = self
            .in_handler(|r| handler(r, state, StreamSocketListener(key), event))
            .is_some();
        if let Some(Source::Listener(l)) = self.sources.get_mut(key) {
            l.handler.get_or_insert(handler);
            if !returned {
                self.finish_later(key, Err(crate::reactor::panicked("listener handler")));
            }
        }
    }

    fn finish_listener(&mut self, state: &mut S, key: Key, result: Result<(), Error>) {
        let Some(Source::Listener(mut l)) = self.remove_source(key) else {
            return;
        };
        self.cancel_internal_timer(l.retry.take());
        let _ = self.poll.registry().deregister(&mut l.io);
        if let Some(mut handler) = l.handler.take() {
            self.in_handler(|r| {
                handler(
                    r,
                    state,
                    StreamSocketListener(key),
                    ListenerEvent::Closed(result),
                )
            });
        }
    }
}

/// Listeners, as the loop sees them.
pub(crate) struct ListenerKind;

impl<S: 'static> Kind<S> for ListenerKind {
    fn ready(r: &mut Reactor<S>, state: &mut S, key: Key, _event: &mio::event::Event) {
        r.listener_event(state, key);
    }

    fn serve(r: &mut Reactor<S>, state: &mut S, key: Key) {
        r.listener_served(key);
        r.listener_ready(state, key);
    }

    fn timer(r: &mut Reactor<S>, state: &mut S, key: Key, timer: SourceTimer) {
        if timer == SourceTimer::AcceptRetry {
            r.accept_retry(state, key);
        }
    }

    fn finish(r: &mut Reactor<S>, state: &mut S, key: Key, result: Result<(), Error>) {
        r.finish_listener(state, key, result);
    }
}
