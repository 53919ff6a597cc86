//! `DatagramSocket`: UDP, unicast and multicast, driven by the reactor.
//!
//! - `mod.rs`: the handle, its events, binding, connecting, adopting and closing;
//! - `transfer.rs`: sending (the queue, the flush after a handler) and receiving (the
//!   per-turn budget, the scratch buffer), and the kind's side of the reactor's seam;
//! - `queue.rs`: the send queue;
//! - `control.rs`: options, information, multicast groups.

mod control;
mod queue;
mod transfer;

pub use control::{DatagramSocketControl, DatagramSocketInformation};
pub(crate) use transfer::DatagramKind;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::UdpSocket;
use mio::Interest;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockRef, Socket, Type};

use crate::error::{stale_handle, Error, SocketErrorStatus};
use crate::framing::DataReader;
use crate::io::sys;
use crate::net::hostname::{resolve_blocking, HostName, IntoHostName};
use crate::net::listener::canonical;
use crate::net::resolver::Lookup;
use crate::net::service::IntoService;
use crate::reactor::{Key, Reactor, Source};
use queue::SendQueue;

/// The stale-handle error of a datagram socket operation.
fn stale(operation: &'static str) -> Error {
    stale_handle("DatagramSocket", operation)
}

/// A UDP socket: a `Copy` handle to a socket owned by a [`Reactor`]
/// (`DatagramSocket` on Windows).
///
/// Every call takes the reactor; a handle whose socket is closed gives an
/// `InvalidHandle` error, never another socket's data. Datagrams arrive in the
/// handler as [`DatagramEvent::MessageReceived`]; datagrams sent during one handler
/// call leave when it returns, one after the other in the order sent.
///
/// # Examples
///
/// A server that answers each datagram with the same bytes, from the address it was
/// reached on:
///
/// ```no_run
/// use sockloop::{DatagramEvent, DatagramSocket, Reactor};
///
/// let mut reactor = Reactor::<()>::new()?;
/// DatagramSocket::bind_any(&mut reactor, 7007, |reactor, _, socket, event| {
///     if let DatagramEvent::MessageReceived(message) = event {
///         let _ = socket.send_to_from(reactor, message.remote, message.local.ip(), message.data);
///     }
/// })?;
/// reactor.run(&mut ())?;
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatagramSocket(pub(crate) Key);

impl fmt::Debug for DatagramSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatagramSocket({}v{})", self.0.index, self.0.gen)
    }
}

/// One datagram received (`DatagramSocketMessageReceivedEventArgs` on Windows).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Message<'a> {
    /// The sender.
    pub remote: SocketAddr,
    /// The local address the datagram was sent to (from `IP_PKTINFO` /
    /// `IPV6_PKTINFO`) with the socket's port: on a socket bound to a wildcard, the
    /// address to answer from ([`DatagramSocket::send_to_from`]). For a multicast
    /// datagram, the group.
    pub local: SocketAddr,
    /// The payload; empty for a zero-length datagram. It lives in the reactor's
    /// shared read buffer: copy what you keep.
    pub data: &'a [u8],
    /// The datagram was longer than the reactor's read buffer
    /// ([`Builder::read_buffer_size`](crate::Builder::read_buffer_size)): `data` is
    /// its beginning, the rest was discarded by the kernel.
    pub truncated: bool,
}

impl<'a> Message<'a> {
    /// A [`DataReader`] over the payload (`GetDataReader` on Windows).
    pub fn reader(&self) -> DataReader<'a> {
        DataReader::new(self.data)
    }
}

/// What happened on a datagram socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum DatagramEvent<'a> {
    /// A datagram arrived (`MessageReceived` on Windows).
    MessageReceived(Message<'a>),
    /// The send queue, which had grown over the high watermark, fell to the low one:
    /// sending can resume.
    Drained,
    /// A datagram could not be delivered, and the socket stays open: the peer of a
    /// connected socket answered with ICMP port unreachable (`ConnectionRefused`), a
    /// host or network was unreachable, or the kernel refused a queued datagram (the
    /// error then carries its destination). Later datagrams are not affected.
    Error(Error),
    /// The socket is closed and its handle stale. Always the last event, delivered
    /// exactly once: `Ok` after `close`, `Err` when the socket failed, when name
    /// resolution for `connect` failed, when datagrams queued were discarded by
    /// `close`, or when the handler panicked.
    Closed(Result<(), Error>),
}

pub(crate) type DatagramHandler<S> =
    Box<dyn FnMut(&mut Reactor<S>, &mut S, DatagramSocket, DatagramEvent<'_>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `connect` waits for the resolver; sends are queued.
    Resolving,
    Open,
    /// Closed; `Closed` is queued.
    Closed,
}

/// A datagram socket, as the reactor keeps it.
pub(crate) struct DatagramState<S: 'static> {
    pub(crate) io: Option<UdpSocket>,
    pub(crate) handler: Option<DatagramHandler<S>>,
    pub(crate) phase: Phase,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    /// The name given to `connect`.
    host: Option<HostName>,
    /// The options of a socket still resolving its peer's name.
    control: Option<Box<DatagramSocketControl>>,
    /// Whether the socket is IPv6 (IPv4 destinations are then sent mapped).
    pub(crate) ipv6: bool,
    pub(crate) out: SendQueue,
    /// Errors of queued datagrams, to report once no handler runs.
    pub(crate) errors: Vec<Error>,
    pub(crate) over_high: bool,
    /// `Drained` is due.
    pub(crate) drained_due: bool,
    /// A `drained_later` is queued (it also reports `errors`).
    pub(crate) report_queued: bool,
    /// Queued to be flushed when the running handler returns.
    pub(crate) dirty: bool,
    /// Queued to be served next turn (it went over its read budget).
    pub(crate) queued_ready: bool,
}

impl<S: 'static> DatagramState<S> {
    fn new(handler: DatagramHandler<S>) -> DatagramState<S> {
        DatagramState {
            io: None,
            handler: Some(handler),
            phase: Phase::Resolving,
            local: None,
            remote: None,
            host: None,
            control: None,
            ipv6: false,
            out: SendQueue::default(),
            errors: Vec::new(),
            over_high: false,
            drained_due: false,
            report_queued: false,
            dirty: false,
            queued_ready: false,
        }
    }
}

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
        reactor.add_datagram(socket, None, Box::new(handler))
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
        reactor.add_datagram(socket, None, Box::new(handler))
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
        let host = host.into_host_name()?;
        let port = service.into_port()?;
        if let Some(addr) = host.socket_addr(port) {
            let socket = open(wildcard(&addr), Some(addr), control)
                .map_err(|e| Error::from_io("connect datagram socket", e).with_address(addr))?;
            let socket = reactor.add_datagram(socket, None, Box::new(handler))?;
            if let Some(Source::Datagram(st)) = reactor.sources.get_mut(socket.0) {
                st.host = Some(host);
            }
            return Ok(socket);
        }
        let mut st = DatagramState::new(Box::new(handler));
        st.host = Some(host.clone());
        st.control = Some(Box::new(control.clone()));
        let key = reactor.insert_source(Source::Datagram(Box::new(st)))?;
        let lookup = Lookup {
            remote: Some((host, port)),
            local: None,
        };
        if let Err(e) = reactor.request_resolution(key, lookup) {
            reactor.remove_source(key);
            return Err(e);
        }
        Ok(DatagramSocket(key))
    }

    /// Adopts a `std` UDP socket, bound or connected (made non-blocking here). The
    /// local address of each datagram is asked for; the other options stay as they are.
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
        sys::enable_packet_info(&socket, local.is_ipv6()).map_err(adopt)?;
        let remote = socket.peer_addr().ok();
        reactor.add_datagram(socket, remote, Box::new(handler))
    }

    /// Takes the socket out of the reactor, without a `Closed` event.
    ///
    /// # Errors
    ///
    /// `InvalidState` while datagrams are queued or the peer's name is being
    /// resolved; `InvalidHandle` if closed.
    pub fn into_std<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
    ) -> Result<std::net::UdpSocket, Error> {
        let st = reactor.datagram_mut(self.0, "into std")?;
        if st.phase != Phase::Open || !st.out.is_empty() {
            return Err(
                Error::new(SocketErrorStatus::InvalidState, "into std").with_detail(format!(
                    "{} datagrams queued to send, or the peer's name is being resolved",
                    st.out.count()
                )),
            );
        }
        let Some(Source::Datagram(mut st)) = reactor.remove_source(self.0) else {
            return Err(stale("into std"));
        };
        let mut io = st.io.take().ok_or_else(|| stale("into std"))?;
        let _ = reactor.poll.registry().deregister(&mut io);
        Ok(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(io)))
    }

    /// The socket's addresses and queue (`DatagramSocket.Information` on Windows).
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn information<S: 'static>(
        self,
        reactor: &Reactor<S>,
    ) -> Result<DatagramSocketInformation, Error> {
        let st = reactor.datagram_ref(self.0, "information")?;
        Ok(DatagramSocketInformation {
            local_address: st.local,
            remote_address: st.remote,
            remote_host_name: st
                .host
                .clone()
                .or_else(|| st.remote.map(|a| HostName::from(a.ip()))),
            queued_bytes: st.out.len(),
            queued_datagrams: st.out.count(),
        })
    }

    /// Closes the socket; the handler gets `Closed`. Datagrams still queued are sent
    /// if the kernel takes them now; those it does not are discarded and `Closed`
    /// reports `OperationAborted` with their count.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn close<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        reactor.datagram_mut(self.0, "close")?;
        reactor.flush_datagram(self.0);
        let st = reactor.datagram_mut(self.0, "close")?;
        let left = st.out.clear();
        st.phase = Phase::Closed;
        let result = if left == 0 {
            Ok(())
        } else {
            Err(Error::new(SocketErrorStatus::OperationAborted, "close")
                .with_detail(format!("{left} queued datagrams were not sent")))
        };
        reactor.finish_later(self.0, result);
        Ok(())
    }

    /// Joins a multicast group (IPv4 or IPv6, `JoinMulticastGroup` on Windows) on the
    /// interface the routing table picks for it. Where no route covers multicast (a
    /// namespace with only `lo`), name the interface with
    /// [`join_multicast_group_on`](Self::join_multicast_group_on).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `group` is not a multicast address; the kernel's error
    /// otherwise (`ENODEV`, no route for multicast: `Unknown` with the detail).
    pub fn join_multicast_group<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
    ) -> Result<(), Error> {
        self.membership(reactor, group, 0, true)
    }

    /// Joins a multicast group on the interface with index `interface` (as in
    /// `/sys/class/net/NAME/ifindex`; 0 lets the kernel choose).
    ///
    /// # Errors
    ///
    /// As [`join_multicast_group`](Self::join_multicast_group).
    pub fn join_multicast_group_on<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
        interface: u32,
    ) -> Result<(), Error> {
        self.membership(reactor, group, interface, true)
    }

    /// Leaves a group joined with
    /// [`join_multicast_group`](Self::join_multicast_group).
    ///
    /// # Errors
    ///
    /// As [`join_multicast_group`](Self::join_multicast_group); `EADDRNOTAVAIL` if it
    /// was not joined.
    pub fn leave_multicast_group<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
    ) -> Result<(), Error> {
        self.membership(reactor, group, 0, false)
    }

    /// Leaves a group joined with
    /// [`join_multicast_group_on`](Self::join_multicast_group_on).
    ///
    /// # Errors
    ///
    /// As [`leave_multicast_group`](Self::leave_multicast_group).
    pub fn leave_multicast_group_on<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
        interface: u32,
    ) -> Result<(), Error> {
        self.membership(reactor, group, interface, false)
    }

    fn membership<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
        interface: u32,
        join: bool,
    ) -> Result<(), Error> {
        let operation = if join {
            "join multicast group"
        } else {
            "leave multicast group"
        };
        let group = control::multicast_group(&group.into_host_name()?)?;
        let st = reactor.datagram_ref(self.0, operation)?;
        let Some(io) = st.io.as_ref() else {
            return Err(Error::new(SocketErrorStatus::InvalidState, operation)
                .with_detail("the socket is still resolving its peer's name"));
        };
        let socket = SockRef::from(io);
        let done = match (group, join) {
            (IpAddr::V4(g), true) => {
                socket.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(interface))
            }
            (IpAddr::V4(g), false) => {
                socket.leave_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(interface))
            }
            (IpAddr::V6(g), true) => socket.join_multicast_v6(&g, interface),
            (IpAddr::V6(g), false) => socket.leave_multicast_v6(&g, interface),
        };
        done.map_err(|e| {
            let detail = match e.raw_os_error() {
                Some(libc::ENODEV) => format!(
                    "group {group}: no interface for multicast (no route covers it); name one"
                ),
                _ => format!("group {group}, interface index {interface}"),
            };
            Error::from_io(operation, e).with_detail(detail)
        })
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

impl<S: 'static> Reactor<S> {
    pub(crate) fn datagram_ref(
        &self,
        key: Key,
        operation: &'static str,
    ) -> Result<&DatagramState<S>, Error> {
        match self.sources.get(key) {
            Some(Source::Datagram(st)) if st.phase != Phase::Closed => Ok(st),
            _ => Err(stale(operation)),
        }
    }

    pub(crate) fn datagram_mut(
        &mut self,
        key: Key,
        operation: &'static str,
    ) -> Result<&mut DatagramState<S>, Error> {
        match self.sources.get_mut(key) {
            Some(Source::Datagram(st)) if st.phase != Phase::Closed => Ok(st),
            _ => Err(stale(operation)),
        }
    }

    /// Registers a new socket.
    fn add_datagram(
        &mut self,
        socket: std::net::UdpSocket,
        remote: Option<SocketAddr>,
        handler: DatagramHandler<S>,
    ) -> Result<DatagramSocket, Error> {
        let key = self.insert_source(Source::Datagram(Box::new(DatagramState::new(handler))))?;
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
        let mut io = UdpSocket::from_std(socket);
        self.poll
            .registry()
            .register(
                &mut io,
                key.token(),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| Error::from_io("register datagram socket", e).with_address(local))?;
        if let Some(Source::Datagram(st)) = self.sources.get_mut(key) {
            st.ipv6 = local.is_ipv6();
            st.local = Some(canonical(local));
            st.remote = remote.map(canonical);
            st.io = Some(io);
            st.phase = Phase::Open;
            st.control = None;
        }
        log::debug!("datagram socket {key:?} on {local} (peer {remote:?})");
        Ok(())
    }

    /// The resolver's answer for a connecting socket: connect to the first address
    /// a socket can be made for.
    pub(crate) fn datagram_resolved(&mut self, key: Key, answer: Result<Vec<SocketAddr>, Error>) {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.phase != Phase::Resolving {
            return;
        }
        let control = st.control.take().unwrap_or_default();
        let mut failure = Error::new(
            SocketErrorStatus::NoAddressesFound,
            "connect datagram socket",
        );
        match answer {
            Ok(addrs) => {
                for addr in addrs {
                    match open(wildcard(&addr), Some(addr), &control) {
                        Ok(socket) => match self.open_datagram(key, socket, Some(addr)) {
                            Ok(()) => {
                                // What was sent while resolving leaves now.
                                self.flush_datagram(key);
                                return;
                            }
                            Err(e) => failure = e,
                        },
                        Err(e) => {
                            failure =
                                Error::from_io("connect datagram socket", e).with_address(addr)
                        }
                    }
                }
            }
            Err(e) => failure = e,
        }
        if let Some(Source::Datagram(st)) = self.sources.get_mut(key) {
            st.phase = Phase::Closed;
            st.out.clear();
        }
        self.finish_later(key, Err(failure));
    }
}
