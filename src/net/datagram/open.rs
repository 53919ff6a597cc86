//! Making a datagram socket: bind, connect (names resolved off the loop), adopt.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;
use mio::Interest;
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    DatagramEvent, DatagramHandler, DatagramSocket, DatagramSocketControl, DatagramState, Pending,
    Phase,
};
use crate::error::{Error, SocketErrorStatus};
use crate::io::sys;
use crate::net::endpoint::Destination;
use crate::net::hostname::{resolve_blocking, IntoHostName};
use crate::net::listener::canonical;
use crate::net::resolver::Found;
use crate::net::service::IntoService;
use crate::reactor::{Key, Reactor, Source};

impl DatagramSocket {
    /// Binds to `host` (an address literal, or a local name resolved at once) and
    /// `service` (a port, `0` for one the system chooses, or a service name)
    /// (`BindEndpointAsync` on Windows).
    ///
    /// # Errors
    ///
    /// `AddressAlreadyInUse` (another socket has the port and neither asked for
    /// [`multicast_only`](DatagramSocketControl::multicast_only)),
    /// `CannotAssignRequestedAddress` (not a local address), name errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{DatagramSocket, Reactor};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let socket = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, event| {
    ///     println!("{event:?}");
    /// })?;
    /// let info = socket.information(&reactor)?;
    /// assert_ne!(info.local_address.unwrap().port(), 0);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn bind<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        Self::bind_with(
            reactor,
            host,
            service,
            &DatagramSocketControl::new(),
            handler,
        )
    }

    /// Binds to `service` on every local address, IPv6 and IPv4
    /// (`BindServiceNameAsync` on Windows).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind), name resolution aside.
    pub fn bind_any<S: 'static>(
        reactor: &mut Reactor<S>,
        service: impl IntoService,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        Self::bind_any_with(reactor, service, &DatagramSocketControl::new(), handler)
    }

    /// [`bind`](Self::bind) with options.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind); an option the system refuses.
    pub fn bind_with<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        control: &DatagramSocketControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        let host = host.into_host_name()?;
        let port = service.into_port()?;
        let addr = resolve_blocking(&host, port)?[0];
        let socket = open(addr, None, control)
            .map_err(|e| Error::from_io("bind datagram socket", e).with_address(addr))?;
        reactor.add_datagram(socket, None, control.get_batching(), Box::new(handler))
    }

    /// [`bind_any`](Self::bind_any) with options.
    ///
    /// # Errors
    ///
    /// As [`bind_any`](Self::bind_any).
    pub fn bind_any_with<S: 'static>(
        reactor: &mut Reactor<S>,
        service: impl IntoService,
        control: &DatagramSocketControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        let port = service.into_port()?;
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let socket = match open(v6, None, control) {
            // No IPv6 on this machine: the IPv4 wildcard.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => open(
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                None,
                control,
            ),
            other => other,
        }
        .map_err(|e| Error::from_io("bind datagram socket", e).with_address(v6))?;
        reactor.add_datagram(socket, None, control.get_batching(), Box::new(handler))
    }

    /// A socket connected to `host` and `service` (`ConnectAsync` on Windows): it
    /// sends with [`send`](Self::send), receives from that peer only, and learns of
    /// ICMP errors ([`DatagramEvent::Error`] with `ConnectionRefused` when nothing
    /// listens there). An address literal is connected at once; a name is resolved
    /// off the loop, and datagrams sent meanwhile wait in the queue.
    ///
    /// # Errors
    ///
    /// Name syntax errors at once; a lookup failure is reported as `Closed(Err)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{DatagramSocket, Reactor};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let socket = DatagramSocket::connect(&mut reactor, "127.0.0.1", 9, |_, _, _, _| {})?;
    /// socket.send(&mut reactor, b"discard me")?;
    /// socket.close(&mut reactor)?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn connect<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        Self::connect_with(
            reactor,
            host,
            service,
            &DatagramSocketControl::new(),
            handler,
        )
    }

    /// [`connect`](Self::connect) with options.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with<S: 'static>(
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
        control: &DatagramSocketControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        let destination = Destination::name(host.into_host_name()?, service.into_port()?);
        Self::connect_to_with(reactor, destination, control, handler)
    }

    /// A socket connected to a [`Destination`]: a socket address, a list of them (the
    /// first a socket can be made for is used), or an [`EndpointPair`](crate::EndpointPair)
    /// (`ConnectAsync(EndpointPair)` on Windows), which also says where the socket is
    /// bound before it connects. Names, remote and local, are resolved off the loop;
    /// the local address bound is the local host's first of the remote address's
    /// family (the wildcard of that family when the pair leaves the local host to the
    /// system).
    ///
    /// # Errors
    ///
    /// With addresses only: at once, the error of the last address tried
    /// (`AddressFamilyNotSupported` when no local address has a remote address's
    /// family, `CannotAssignRequestedAddress` for a local address that is not this
    /// host's, `AddressAlreadyInUse` for a local port taken). With names, the same
    /// are reported as `Closed(Err)`.
    ///
    /// # Examples
    ///
    /// From 127.0.0.2, any port, to port 9 of 127.0.0.1:
    ///
    /// ```
    /// use sockloop::{DatagramSocket, EndpointPair, Reactor};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let pair = EndpointPair::new("127.0.0.2", 0, "127.0.0.1", 9)?;
    /// let socket = DatagramSocket::connect_to(&mut reactor, pair, |_, _, _, _| {})?;
    /// let local = socket.information(&reactor)?.local_address.unwrap();
    /// assert_eq!(local.ip().to_string(), "127.0.0.2");
    /// socket.send(&mut reactor, b"discard me")?;
    /// socket.close(&mut reactor)?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn connect_to<S: 'static>(
        reactor: &mut Reactor<S>,
        destination: impl Into<Destination>,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        Self::connect_to_with(reactor, destination, &DatagramSocketControl::new(), handler)
    }

    /// [`connect_to`](Self::connect_to) with options.
    ///
    /// # Errors
    ///
    /// As [`connect_to`](Self::connect_to).
    pub fn connect_to_with<S: 'static>(
        reactor: &mut Reactor<S>,
        destination: impl Into<Destination>,
        control: &DatagramSocketControl,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        let destination = destination.into();
        destination.check()?;
        let mut st = DatagramState::new(Box::new(handler));
        st.host = destination.host_name();
        st.batching = control.get_batching();
        let split = destination.split();
        let resolved = split.resolved();
        st.pending = Some(Box::new(Pending {
            control: control.clone(),
            addrs: split.addrs,
            local: split.local,
            local_addrs: split.local_addrs,
        }));
        let key = reactor.insert_source(Source::Datagram(Box::new(st)))?;
        let result = if resolved {
            reactor.connect_datagram(key)
        } else {
            reactor.request_resolution(key, split.lookup)
        };
        match result {
            Ok(()) => Ok(DatagramSocket(key)),
            Err(e) => {
                reactor.remove_source(key);
                Err(e)
            }
        }
    }

    /// Adopts a `std` UDP socket, bound or connected (made non-blocking here). On a
    /// socket bound to a wildcard, the local address of each datagram is asked for;
    /// the other options stay as they are.
    ///
    /// # Errors
    ///
    /// When the socket cannot be made non-blocking or registered.
    pub fn from_std<S: 'static>(
        reactor: &mut Reactor<S>,
        socket: std::net::UdpSocket,
        handler: impl FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>) + 'static,
    ) -> Result<DatagramSocket, Error> {
        let adopt = |e| Error::from_io("adopt datagram socket", e);
        socket.set_nonblocking(true).map_err(adopt)?;
        let local = socket.local_addr().map_err(adopt)?;
        if canonical(local).ip().is_unspecified() {
            sys::set_packet_info(&socket, local.is_ipv6(), true).map_err(adopt)?;
        }
        let remote = socket.peer_addr().ok();
        reactor.add_datagram(socket, remote, true, Box::new(handler))
    }
}

/// The wildcard address of `addr`'s family, port 0.
fn wildcard(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// A new non-blocking UDP socket with `control` applied, bound to `local` and, if
/// `remote` is given, connected to it.
fn open(
    local: SocketAddr,
    remote: Option<SocketAddr>,
    control: &DatagramSocketControl,
) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(local),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    control.apply(&socket, &local)?;
    socket.bind(&local.into())?;
    if let Some(remote) = remote {
        socket.connect(&remote.into())?;
    }
    Ok(socket.into())
}

/// The most memory the reactor's batched-receive slots take.
const RECV_SLOTS_BYTES: usize = 1024 * 1024;

impl<S: 'static> Reactor<S> {
    /// Registers a new socket.
    fn add_datagram(
        &mut self,
        socket: std::net::UdpSocket,
        remote: Option<SocketAddr>,
        batching: bool,
        handler: DatagramHandler<S>,
    ) -> Result<DatagramSocket, Error> {
        let mut st = DatagramState::new(handler);
        st.batching = batching;
        let key = self.insert_source(Source::Datagram(Box::new(st)))?;
        if let Err(e) = self.open_datagram(key, socket, remote) {
            self.remove_source(key);
            return Err(e);
        }
        Ok(DatagramSocket(key))
    }

    /// Registers the socket of source `key` with the poller and marks it open.
    fn open_datagram(
        &mut self,
        key: Key,
        socket: std::net::UdpSocket,
        remote: Option<SocketAddr>,
    ) -> Result<(), Error> {
        let local = socket
            .local_addr()
            .map_err(|e| Error::from_io("bind datagram socket", e))?;
        let remote = remote.or_else(|| socket.peer_addr().ok());
        // Bound to the wildcard and then connected, the socket has one local address
        // now, which every datagram it receives is sent to: no need to ask for it.
        if remote.is_some() && !canonical(local).ip().is_unspecified() {
            let _ = sys::set_packet_info(&socket, local.is_ipv6(), false);
        }
        // Coalesced receives need room for 64 KiB in the read buffer, or segments
        // would be cut.
        let batching = matches!(self.sources.get(key), Some(Source::Datagram(st)) if st.batching);
        let gro = batching && self.scratch.len() >= 64 * 1024 && sys::enable_gro(&socket).is_ok();
        // Batched receives: slots of the read buffer's size, up to 1 MiB in all,
        // allocated once per reactor (zero pages until datagrams land in them).
        let slots = (RECV_SLOTS_BYTES / self.scratch.len().max(1)).min(sys::RECV_BATCH);
        if batching && slots >= 2 && self.datagram_slots.is_empty() {
            self.datagram_slots = vec![0; slots * self.scratch.len()];
            self.datagram_headers = Some(sys::RecvHeaders::new());
        }
        let mut io = UdpSocket::from_std(socket);
        self.poll
            .registry()
            .register(&mut io, key.token(), Interest::READABLE)
            .map_err(|e| Error::from_io("register datagram socket", e).with_address(local))?;
        if let Some(Source::Datagram(st)) = self.sources.get_mut(key) {
            st.ipv6 = local.is_ipv6();
            st.local = Some(canonical(local));
            st.remote = remote.map(canonical);
            st.io = Some(io);
            st.gso = st.batching;
            st.gro = gro;
            st.phase = Phase::Open;
            st.pending = None;
        }
        log::debug!("datagram socket {key:?} on {local} (peer {remote:?})");
        Ok(())
    }

    /// The resolver's answer for a socket: a destination given by name
    /// ([`output_to`](DatagramSocket::output_to)) once open, else the names of the
    /// socket's own connect, after which it connects.
    pub(crate) fn datagram_resolved(&mut self, key: Key, tag: u32, answer: Result<Found, Error>) {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.phase == Phase::Open {
            let answer = answer.map(|(remote, _)| remote.unwrap_or_default());
            self.output_resolved(key, tag, answer);
            return;
        }
        if st.phase != Phase::Resolving {
            return;
        }
        let result = match (answer, st.pending.as_mut()) {
            (Ok((remote, local)), Some(pending)) => {
                if let Some(addrs) = remote {
                    pending.addrs = addrs;
                }
                if let Some(addrs) = local {
                    pending.local_addrs = addrs;
                }
                self.connect_datagram(key)
            }
            (Ok(_), None) => return,
            (Err(e), _) => Err(e),
        };
        if let Err(failure) = result {
            if let Some(Source::Datagram(st)) = self.sources.get_mut(key) {
                st.phase = Phase::Closed;
                st.pending = None;
                st.out.clear();
            }
            self.finish_later(key, Err(failure));
        }
    }

    /// Connects a resolving socket whose addresses are known: to the first remote
    /// address a socket can be made for, bound to the local endpoint asked for (the
    /// local host's first address of that family) or to the wildcard. What was sent
    /// meanwhile leaves then. Returns the last failure when none works.
    fn connect_datagram(&mut self, key: Key) -> Result<(), Error> {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return Ok(());
        };
        let Some(pending) = st.pending.take() else {
            return Ok(());
        };
        let mut failure = Error::new(
            SocketErrorStatus::NoAddressesFound,
            "connect datagram socket",
        );
        for &addr in &pending.addrs {
            let local = match &pending.local {
                None => wildcard(&addr),
                Some(local) => match local.for_remote(&pending.local_addrs, addr) {
                    Some(local) => local,
                    None => {
                        failure = Error::new(
                            SocketErrorStatus::AddressFamilyNotSupported,
                            "connect datagram socket",
                        )
                        .with_address(addr)
                        .with_detail("the local host has no address of this family");
                        continue;
                    }
                },
            };
            match open(local, Some(addr), &pending.control) {
                Ok(socket) => match self.open_datagram(key, socket, Some(addr)) {
                    Ok(()) => {
                        self.flush_datagram(key);
                        return Ok(());
                    }
                    Err(e) => failure = e,
                },
                Err(e) => {
                    failure = Error::from_io("connect datagram socket", e).with_address(addr);
                }
            }
        }
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as StdUdpSocket;
    use std::time::{Duration, Instant};

    use super::*;

    /// Whether the socket of `socket` asks the kernel for each datagram's destination.
    fn asks_for_destination(r: &Reactor<Vec<SocketAddr>>, socket: DatagramSocket) -> bool {
        let Some(Source::Datagram(st)) = r.sources.get(socket.0) else {
            panic!("no such socket");
        };
        let io = st.io.as_ref().expect("open");
        sys::packet_info_enabled(io, st.ipv6).expect("getsockopt")
    }

    /// Sends one datagram from a plain socket to `to` and returns the `local` address
    /// of the message the reactor delivered.
    fn local_of_a_message(
        r: &mut Reactor<Vec<SocketAddr>>,
        socket: DatagramSocket,
        to: SocketAddr,
    ) -> SocketAddr {
        let peer = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"where", to).unwrap();
        let mut seen = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while seen.is_empty() && Instant::now() < until {
            r.turn(&mut seen, Some(Duration::from_millis(50))).unwrap();
        }
        let _ = socket.close(r);
        seen.pop().expect("the datagram arrived")
    }

    fn record(
    ) -> impl FnMut(&mut Reactor<Vec<SocketAddr>>, &mut Vec<SocketAddr>, DatagramSocket, DatagramEvent<'_>)
    {
        |_, seen, _, event| {
            if let DatagramEvent::MessageReceived(m) = event {
                seen.push(m.local);
            }
        }
    }

    #[test]
    fn a_socket_bound_to_one_address_does_not_ask_for_destinations() {
        let mut r = Reactor::<Vec<SocketAddr>>::new().unwrap();
        let socket = DatagramSocket::bind(&mut r, "127.0.0.2", 0, record()).unwrap();
        assert!(!asks_for_destination(&r, socket));
        let addr = socket.information(&r).unwrap().local_address.unwrap();
        assert_eq!(local_of_a_message(&mut r, socket, addr), addr);
    }

    #[test]
    fn a_wildcard_socket_asks_for_destinations() {
        let mut r = Reactor::<Vec<SocketAddr>>::new().unwrap();
        let socket = DatagramSocket::bind_any(&mut r, 0, record()).unwrap();
        assert!(asks_for_destination(&r, socket));
        let port = socket
            .information(&r)
            .unwrap()
            .local_address
            .unwrap()
            .port();
        let to = SocketAddr::from(([127, 0, 0, 3], port));
        assert_eq!(local_of_a_message(&mut r, socket, to), to);
    }

    #[test]
    fn a_connected_socket_stops_asking_once_its_local_address_is_known() {
        let mut r = Reactor::<Vec<SocketAddr>>::new().unwrap();
        let peer = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = DatagramSocket::connect(
            &mut r,
            "127.0.0.1",
            peer.local_addr().unwrap().port(),
            record(),
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while socket.information(&r).unwrap().local_address.is_none() && Instant::now() < until {
            r.turn(&mut Vec::new(), Some(Duration::from_millis(10)))
                .unwrap();
        }
        assert!(!asks_for_destination(&r, socket));
        let local = socket.information(&r).unwrap().local_address.unwrap();
        assert_eq!(local.ip(), std::net::Ipv4Addr::LOCALHOST);
        peer.send_to(b"back", local).unwrap();
        let mut seen = Vec::new();
        while seen.is_empty() && Instant::now() < until {
            r.turn(&mut seen, Some(Duration::from_millis(50))).unwrap();
        }
        assert_eq!(seen, vec![local]);
    }
}
