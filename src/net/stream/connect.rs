//! Connecting: the constructors, name resolution, and the Happy Eyeballs race.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use mio::Interest;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::state::{Phase, StreamState};
use super::{StreamEvent, StreamSocket};
use crate::error::{Error, SocketErrorStatus};
use crate::net::control::StreamSocketControl;
use crate::net::endpoint::{Destination, Local};
use crate::net::hostname::{interleave_families, IntoHostName};
use crate::net::resolver::ATTEMPT_DELAY;
use crate::net::service::IntoService;
use crate::reactor::{Key, Reactor, Source, SourceTimer};

impl StreamSocket {
    /// Connects to `host` on `service` with the default options; `handler` gets every
    /// event of the socket, starting with `Connected` or ending with `Closed(Err(_))`.
    ///
    /// `host` is anything [`IntoHostName`](crate::IntoHostName) takes: `"example.com"`, `"127.0.0.1"`, a
    /// [`HostName`](crate::HostName), an [`IpAddr`](std::net::IpAddr). `service` is a port (`443`) or
    /// anything [`resolve_service`](crate::resolve_service) reads (`"https"`, `"8080"`).
    ///
    /// An address literal is connected at once. A name is resolved on a pool of helper
    /// threads (the loop never blocks on DNS; at most 4 lookups run at once, the
    /// others queue, and the connect timeout covers the lookup); then the addresses are tried in the order of
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
        #[cfg(feature = "tls")]
        super::tls::for_connect(&mut st, control)?;
        let key = reactor.insert_source(Source::Stream(st))?;
        reactor.begin_connect(key, destination, control);
        Ok(StreamSocket(key))
    }
}

/// One connection attempt: a socket connecting to one address.
pub(crate) struct Attempt {
    io: TcpStream,
    addr: SocketAddr,
}

/// The state of a socket that is resolving or connecting.
pub(crate) struct Connecting {
    control: StreamSocketControl,
    pub(crate) addrs: Vec<SocketAddr>,
    /// The local endpoint to bind before connecting, and its host's addresses.
    local: Option<Local>,
    pub(crate) local_addrs: Vec<SocketAddr>,
    next: usize,
    attempts: Vec<Attempt>,
    last_error: Option<Error>,
    pub(crate) stagger: Option<Key>,
    pub(crate) timeout: Option<Key>,
}

impl<S: 'static> Reactor<S> {
    /// Starts connecting a socket in the `Resolving` phase: at once for addresses and
    /// literals, after a lookup on the resolver thread for names.
    pub(crate) fn begin_connect(
        &mut self,
        key: Key,
        destination: Destination,
        control: &StreamSocketControl,
    ) {
        if control.timeouts().any() {
            self.set_timeouts(key, control.timeouts());
        }
        let timeout = self.set_source_timer(
            control.get_connect_timeout(),
            key,
            SourceTimer::ConnectTimeout,
        );
        let split = destination.split();
        let resolved = split.resolved();
        // The caller's first address says which family goes first (RFC 8305 §4).
        let first_is_v6 = split.addrs.first().is_some_and(SocketAddr::is_ipv6);
        let plan = Box::new(Connecting {
            control: control.clone(),
            addrs: interleave_families(split.addrs, first_is_v6),
            local: split.local,
            local_addrs: split.local_addrs,
            next: 0,
            attempts: Vec::new(),
            last_error: None,
            stagger: None,
            timeout: Some(timeout),
        });
        let lookup = split.lookup;
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.cold().connect = Some(plan);
        }
        if resolved {
            self.start_connecting(key);
            return;
        }
        log::debug!(
            "stream {key:?}: resolving {:?} (local {:?})",
            lookup.remote,
            lookup.local
        );
        if let Err(e) = self.request_resolution(key, lookup) {
            self.fail_connect(key, e);
        }
    }

    pub(crate) fn start_connecting(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.phase = Phase::Connecting;
        if let Some(plan) = st.cold.as_mut().and_then(|c| c.connect.as_mut()) {
            if let Err(e) = plan.keep_reachable_from_local() {
                return self.fail_connect(key, e);
            }
        }
        self.next_attempt(key);
    }

    /// Starts the next attempt (and, when racing, arms the timer for the one after).
    /// With no address left and no attempt running, the connection fails.
    fn next_attempt(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(plan) = st.cold.as_mut().and_then(|c| c.connect.as_mut()) else {
            return;
        };
        while plan.next < plan.addrs.len() {
            let addr = plan.addrs[plan.next];
            plan.next += 1;
            let local = plan
                .local
                .as_ref()
                .and_then(|l| l.for_remote(&plan.local_addrs, addr));
            match start_attempt(&plan.control, addr, local, self.poll.registry(), key) {
                Ok(io) => {
                    log::debug!("stream {key:?}: connecting to {addr}");
                    plan.attempts.push(Attempt { io, addr });
                    break;
                }
                Err(e) => plan.last_error = Some(e),
            }
        }
        let more = plan.next < plan.addrs.len();
        let race = !plan.control.get_serialize_connection_attempts();
        if plan.attempts.is_empty() {
            let err = plan.last_error.take().unwrap_or_else(|| {
                Error::new(SocketErrorStatus::NoAddressesFound, "connect")
                    .with_detail("no address to connect to")
            });
            self.fail_connect(key, err);
        } else if more && race {
            let timer = self.set_source_timer(ATTEMPT_DELAY, key, SourceTimer::ConnectStagger);
            if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
                if let Some(plan) = st.cold.as_mut().and_then(|c| c.connect.as_mut()) {
                    plan.stagger = Some(timer);
                }
            }
        }
    }

    pub(crate) fn fail_connect(&mut self, key: Key, err: Error) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.phase != Phase::Closed {
                st.phase = Phase::Closed;
                self.finish_later(key, Err(err));
            }
        }
    }

    /// The stagger timer fired: race one more address.
    pub(crate) fn connect_stagger(&mut self, key: Key) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if let (Phase::Connecting, Some(plan)) =
                (st.phase, st.cold.as_mut().and_then(|c| c.connect.as_mut()))
            {
                plan.stagger = None;
                self.next_attempt(key);
            }
        }
    }

    pub(crate) fn connect_timed_out(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if !matches!(st.phase, Phase::Resolving | Phase::Connecting) {
            return;
        }
        let mut err = Error::new(SocketErrorStatus::ConnectionTimedOut, "connect");
        if let Some(plan) = st.cold.as_mut().and_then(|c| c.connect.as_mut()) {
            plan.timeout = None;
            let tried: Vec<String> = plan.addrs[..plan.next]
                .iter()
                .map(|a| a.to_string())
                .collect();
            err = err.with_detail(format!(
                "no connection within {:?} (tried: {})",
                plan.control.get_connect_timeout(),
                tried.join(", ")
            ));
            if let Some(a) = plan.attempts.first() {
                err = err.with_address(a.addr);
            }
        }
        let stagger = st
            .cold
            .as_mut()
            .and_then(|c| c.connect.take())
            .and_then(|plan| plan.stagger);
        self.cancel_internal_timer(stagger);
        self.fail_connect(key, err);
    }

    /// A connecting socket became ready: see which attempts failed or won.
    pub(crate) fn check_connect(&mut self, state: &mut S, key: Key, readable: bool) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(plan) = st.cold.as_mut().and_then(|c| c.connect.as_mut()) else {
            return;
        };
        let mut winner = None;
        let mut i = 0;
        while i < plan.attempts.len() {
            match attempt_status(&plan.attempts[i]) {
                Ok(true) => {
                    winner = Some(plan.attempts.swap_remove(i));
                    break;
                }
                Ok(false) => i += 1,
                Err(e) => {
                    let mut failed = plan.attempts.swap_remove(i);
                    log::debug!("stream {key:?}: attempt to {} failed: {e}", failed.addr);
                    let _ = self.poll.registry().deregister(&mut failed.io);
                    plan.last_error = Some(Error::from_io("connect", e).with_address(failed.addr));
                }
            }
        }
        let Some(won) = winner else {
            if plan.attempts.is_empty() {
                // Every running attempt failed: RFC 8305 starts the next one at once.
                let stagger = plan.stagger.take();
                self.cancel_internal_timer(stagger);
                self.next_attempt(key);
            }
            return;
        };
        let plan = st.cold.as_mut().and_then(|c| c.connect.take());
        if let Some(plan) = &plan {
            for loser in &plan.attempts {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut mio::unix::SourceFd(&loser.io.as_raw_fd()));
            }
        }
        if let Err(e) = plan.as_ref().map_or(Ok(()), |p| {
            p.control.apply_connected(SockRef::from(&won.io))
        }) {
            log::debug!("stream {key:?}: could not apply socket options: {e}");
        }
        log::debug!("stream {key:?}: connected to {}", won.addr);
        st.io = Some(won.io);
        st.phase = Phase::Open;
        let queued = !st.out.is_empty();
        if let Some(plan) = plan {
            self.cancel_internal_timer(plan.stagger);
            self.cancel_internal_timer(plan.timeout);
        }
        self.connected(state, key, queued, readable);
    }

    fn connected(&mut self, state: &mut S, key: Key, queued: bool, readable: bool) {
        self.watch_connected(key);
        #[cfg(feature = "tls")]
        let tls = self.tls_connected(key);
        #[cfg(not(feature = "tls"))]
        let tls = false;
        if queued || tls {
            self.flush_stream(key);
        }
        if !tls {
            self.call_stream(state, key, StreamEvent::Connected);
        }
        if readable {
            self.stream_read(state, key);
        }
    }
}

impl Connecting {
    /// With a local endpoint, drops the remote addresses of a family the local host has
    /// no address of; an error if none is left.
    fn keep_reachable_from_local(&mut self) -> Result<(), Error> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let all = std::mem::take(&mut self.addrs);
        let (kept, dropped): (Vec<_>, Vec<_>) = all
            .iter()
            .partition(|a| local.for_remote(&self.local_addrs, **a).is_some());
        if kept.is_empty() && !dropped.is_empty() {
            let list = |addrs: &[SocketAddr]| {
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(
                Error::new(SocketErrorStatus::AddressFamilyNotSupported, "connect").with_detail(
                    format!(
                        "the local endpoint ({}) and the remote addresses ({}) have no \
                         address family in common",
                        list(&self.local_addrs),
                        list(&dropped)
                    ),
                ),
            );
        }
        if !dropped.is_empty() {
            log::debug!("skipping {dropped:?}: not of the local endpoint's family");
        }
        self.addrs = kept;
        Ok(())
    }
}

/// `Ok(true)` connected, `Ok(false)` still connecting, `Err` failed.
fn attempt_status(attempt: &Attempt) -> io::Result<bool> {
    if let Some(e) = attempt.io.take_error()? {
        return Err(e);
    }
    match attempt.io.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

fn start_attempt(
    control: &StreamSocketControl,
    addr: SocketAddr,
    local: Option<SocketAddr>,
    registry: &mio::Registry,
    key: Key,
) -> Result<TcpStream, Error> {
    let fail = |e: io::Error| Error::from_io("connect", e).with_address(addr);
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(fail)?;
    control.apply_before_connect(&socket, &addr).map_err(fail)?;
    if let Some(local) = local {
        let bind = |e: io::Error| {
            Error::from_io("bind local endpoint", e)
                .with_address(local)
                .with_detail(format!("before connecting to {addr}"))
        };
        if local.port() != 0 {
            // Racing attempts share the port; so does a reconnection in TIME_WAIT.
            socket.set_reuse_address(true).map_err(bind)?;
        }
        socket.bind(&local.into()).map_err(bind)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(fail(e)),
    }
    let mut io = TcpStream::from_std(socket.into());
    registry
        .register(
            &mut io,
            key.token(),
            Interest::READABLE | Interest::WRITABLE,
        )
        .map_err(fail)?;
    Ok(io)
}
