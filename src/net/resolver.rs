//! Name resolution off the loop, and connection plans (RFC 8305, Happy Eyeballs v2).
//!
//! Names are resolved by `getaddrinfo` on one helper thread, started the first time a
//! name (not an address literal) is connected to; results come back through a channel
//! and the reactor's waker, so the loop never blocks on DNS. The thread ends when the
//! reactor is dropped.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Waker};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::error::{Error, SocketErrorStatus};
use crate::net::control::StreamSocketControl;
use crate::net::endpoint::{Destination, Local, Remote};
use crate::net::hostname::{interleave_families, resolve_blocking, HostName};
use crate::net::stream::{Phase, StreamEvent};
use crate::reactor::{Key, Reactor, Source, SourceTimer};

/// The delay between two connection attempts (RFC 8305 §5 recommends 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// What to look up for one socket: the remote name, and the local one of an
/// [`EndpointPair`](crate::EndpointPair) (literals come back at once).
struct Lookup {
    remote: Option<(HostName, u16)>,
    local: Option<(HostName, u16)>,
}

/// The addresses found: remote, then local.
type Found = (Option<Vec<SocketAddr>>, Option<Vec<SocketAddr>>);

type Answer = (Key, Result<Found, Error>);

pub(crate) struct Resolver {
    requests: Sender<(Key, Box<Lookup>)>,
    answers: Receiver<Answer>,
}

impl Lookup {
    fn run(&self) -> Result<Found, Error> {
        let resolve = |name: &Option<(HostName, u16)>| {
            name.as_ref()
                .map(|(host, port)| resolve_blocking(host, *port))
                .transpose()
        };
        Ok((resolve(&self.remote)?, resolve(&self.local)?))
    }
}

impl Resolver {
    fn start(waker: Arc<Waker>) -> io::Result<Resolver> {
        let (requests, jobs) = mpsc::channel::<(Key, Box<Lookup>)>();
        let (done, answers) = mpsc::channel();
        thread::Builder::new()
            .name("sockloop-resolver".into())
            .spawn(move || {
                for (key, lookup) in jobs {
                    let answer = lookup.run();
                    if done.send((key, answer)).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Resolver { requests, answers })
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
    addrs: Vec<SocketAddr>,
    /// The local endpoint to bind before connecting, and its host's addresses.
    local: Option<Local>,
    local_addrs: Vec<SocketAddr>,
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
        let timeout = self.set_source_timer(
            control.get_connect_timeout(),
            key,
            SourceTimer::ConnectTimeout,
        );
        let mut plan = Box::new(Connecting {
            control: control.clone(),
            addrs: Vec::new(),
            local: destination.local,
            local_addrs: Vec::new(),
            next: 0,
            attempts: Vec::new(),
            last_error: None,
            stagger: None,
            timeout: Some(timeout),
        });
        let mut lookup = Lookup {
            remote: None,
            local: None,
        };
        match destination.remote {
            Remote::Name(host, port) => match host.socket_addr(port) {
                Some(addr) => plan.addrs.push(addr),
                None => lookup.remote = Some((host, port)),
            },
            Remote::Addresses(addrs) => {
                // The caller's first address says which family goes first (RFC 8305 §4).
                let first_is_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
                plan.addrs = interleave_families(addrs, first_is_v6);
            }
        }
        if let Some(Local {
            host: Some(host),
            port,
        }) = &plan.local
        {
            match host.socket_addr(*port) {
                Some(addr) => plan.local_addrs.push(addr),
                None => lookup.local = Some((host.clone(), *port)),
            }
        }
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.cold().connect = Some(plan);
        }
        if lookup.remote.is_none() && lookup.local.is_none() {
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

    fn request_resolution(&mut self, key: Key, lookup: Lookup) -> Result<(), Error> {
        if self.resolver.is_none() {
            let resolver = Resolver::start(self.waker())
                .map_err(|e| Error::from_io("start resolver thread", e))?;
            self.resolver = Some(resolver);
        }
        let sent = self
            .resolver
            .as_ref()
            .map(|r| r.requests.send((key, Box::new(lookup))));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => {
                self.resolver = None;
                Err(Error::new(SocketErrorStatus::Unknown, "resolve host name")
                    .with_detail("the resolver thread is gone"))
            }
        }
    }

    /// Takes the resolver's answers and starts connecting.
    pub(crate) fn resolved(&mut self) {
        loop {
            let Some(resolver) = &self.resolver else {
                return;
            };
            let Ok((key, answer)) = resolver.answers.try_recv() else {
                return;
            };
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                continue;
            };
            if st.phase != Phase::Resolving {
                continue;
            }
            match (answer, st.cold.as_mut().and_then(|c| c.connect.as_mut())) {
                (Ok((remote, local)), Some(plan)) => {
                    log::debug!("stream {key:?}: resolved to {remote:?} (local {local:?})");
                    if let Some(addrs) = remote {
                        // getaddrinfo sorted them (RFC 6724): the family of the first
                        // goes first (RFC 8305 §4).
                        let first_is_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
                        plan.addrs = interleave_families(addrs, first_is_v6);
                    }
                    if let Some(addrs) = local {
                        plan.local_addrs = addrs;
                    }
                    self.start_connecting(key);
                }
                (Err(e), _) => self.fail_connect(key, e),
                (Ok(_), None) => {}
            }
        }
    }

    fn start_connecting(&mut self, key: Key) {
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

    fn fail_connect(&mut self, key: Key, err: Error) {
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
        if queued {
            self.flush_stream(key);
        }
        self.call_stream(state, key, StreamEvent::Connected);
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
