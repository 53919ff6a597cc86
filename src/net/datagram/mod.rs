//! `DatagramSocket`: UDP, unicast and multicast, driven by the reactor.
//!
//! - `mod.rs`: the handle, its events and state, information, closing, multicast groups;
//! - `open.rs`: binding, connecting (names resolved off the loop), adopting;
//! - `transfer.rs`: sending (the queue, the flush after a handler) and receiving (the
//!   per-turn budget, `recvmmsg` into the reactor's datagram slots), and the kind's
//!   side of the reactor's seam;
//! - `queue.rs`: the send queue;
//! - `output.rs`: destination handles (`output_to`), names resolved off the loop;
//! - `control.rs`: options, information, multicast groups.

mod control;
mod open;
mod output;
mod queue;
mod transfer;

pub use control::{DatagramSocketControl, DatagramSocketInformation};
pub use output::DatagramOutput;
pub(crate) use transfer::DatagramKind;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use mio::net::UdpSocket;
use socket2::{InterfaceIndexOrAddress, SockRef};

use crate::error::{stale_handle, Error, SocketErrorStatus};
use crate::framing::DataReader;
use crate::io::sys;
use crate::net::hostname::{HostName, IntoHostName};
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
/// call leave when it returns, in the order sent and in as few system calls as the
/// kernel allows — except a train given to
/// [`send_segments_to`](DatagramSocket::send_segments_to) on an unconnected socket
/// with nothing queued, which leaves during the call (and so leaves even if the
/// handler then panics, when what is queued is dropped).
///
/// # Implementation notes
///
/// | what | how |
/// | --- | --- |
/// | receive | `recvmmsg` (16 a call) to `WouldBlock` within the reactor's read budget, into slots of the read buffer's size that the reactor allocates once (1 MiB at most): nothing allocated per datagram; each datagram its own message |
/// | local address | `IP_PKTINFO` / `IPV6_RECVPKTINFO` on a socket bound to a wildcard; one bound to an address, or connected, receives only what is sent to its own address |
/// | truncation | `MSG_TRUNC`, reported as [`Message::truncated`] |
/// | send | queued whole, then `sendmmsg` (32 a call), or one `sendmsg` with UDP GSO for a run of same-size datagrams to one destination |
/// | full send buffer | what the kernel refuses stays queued (bounded: [`Builder::watermarks`](crate::Builder::watermarks)), and the socket is registered for writability until the queue is empty: a UDP socket is woken as writable whenever the kernel frees one of its datagrams, which would cost an event a turn to a socket that only sends |
/// | trains | [`send_segments_to`](DatagramSocket::send_segments_to) with nothing queued on an unconnected socket: GSO sends from the caller's buffer during the call |
/// | coalesced receive | UDP GRO when the read buffer holds 64 KiB; each datagram still its own message |
/// | without batching | [`DatagramSocketControl::batching`]`(false)`: one `sendmsg` / `recvmsg` per datagram, into the read buffer |
/// | counts | [`DatagramSocketInformation`] counts datagrams and the system calls that carried them |
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
    /// What a socket still resolving its peer's name (or its local one) connects
    /// with.
    pending: Option<Box<Pending>>,
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
    /// Registered for writability: only while datagrams wait in `out`. A UDP
    /// socket is woken as writable each time the kernel frees one of its sent
    /// datagrams, so that a socket registered for it always would get an event a
    /// turn while it sends.
    pub(crate) write_interest: bool,
    /// Queued to be served next turn (it went over its read budget).
    pub(crate) queued_ready: bool,
    /// `sendmmsg` and GSO allowed ([`DatagramSocketControl::batching`]).
    pub(crate) batching: bool,
    /// GSO sends: allowed, and not refused by the kernel so far.
    pub(crate) gso: bool,
    /// The kernel may coalesce received datagrams (`UDP_GRO` is on).
    pub(crate) gro: bool,
    pub(crate) counters: Counters,
    /// Destinations given by name ([`DatagramSocket::output_to`]).
    pub(crate) outputs: Vec<output::Named>,
    /// Those of `outputs` waiting for the resolver, oldest first.
    pub(crate) resolving: std::collections::VecDeque<u32>,
}

/// A connect waiting for names: its options, the remote addresses to try in order,
/// and the local endpoint to bind with its host's addresses.
pub(crate) struct Pending {
    control: DatagramSocketControl,
    addrs: Vec<SocketAddr>,
    local: Option<crate::net::endpoint::Local>,
    local_addrs: Vec<SocketAddr>,
}

/// What a socket's system calls carried, for [`DatagramSocketInformation`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) datagrams_sent: u64,
    pub(crate) send_calls: u64,
    pub(crate) datagrams_received: u64,
    pub(crate) receive_calls: u64,
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
            pending: None,
            ipv6: false,
            out: SendQueue::default(),
            errors: Vec::new(),
            over_high: false,
            drained_due: false,
            report_queued: false,
            dirty: false,
            write_interest: false,
            queued_ready: false,
            batching: true,
            gso: false,
            gro: false,
            counters: Counters::default(),
            outputs: Vec::new(),
            resolving: std::collections::VecDeque::new(),
        }
    }
}

impl DatagramSocket {
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
        if st.phase != Phase::Open || !st.out.is_empty() || !st.resolving.is_empty() {
            return Err(
                Error::new(SocketErrorStatus::InvalidState, "into std").with_detail(format!(
                    "{} datagrams queued to send, or a name is being resolved",
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
            datagrams_sent: st.counters.datagrams_sent,
            send_calls: st.counters.send_calls,
            datagrams_received: st.counters.datagrams_received,
            receive_calls: st.counters.receive_calls,
        })
    }

    /// Closes the socket; the handler gets `Closed`. Datagrams still queued are sent
    /// if the kernel takes them now; those it does not, and those written to a
    /// [`DatagramOutput`] whose name is still being resolved, are discarded and
    /// `Closed` reports `OperationAborted` with their count.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if already closed.
    pub fn close<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        reactor.datagram_mut(self.0, "close")?;
        reactor.flush_datagram(self.0);
        let st = reactor.datagram_mut(self.0, "close")?;
        let left = st.out.clear() + st.discard_waiting();
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
        self.membership(reactor, group, None, 0, true)
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
        self.membership(reactor, group, None, interface, true)
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
        self.membership(reactor, group, None, 0, false)
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
        self.membership(reactor, group, None, interface, false)
    }

    /// Joins a multicast group for datagrams from `source` only (a source-specific
    /// join, `IP_ADD_SOURCE_MEMBERSHIP` / RFC 3678 `MCAST_JOIN_SOURCE_GROUP`), on the
    /// interface with index `interface` (0: the kernel's choice). IPv4 or IPv6; the
    /// group is usually in the source-specific ranges 232.0.0.0/8 and ff3x::/32.
    /// Several sources of one group are several joins.
    ///
    /// # Errors
    ///
    /// As [`join_multicast_group`](Self::join_multicast_group); `InvalidArgument` if
    /// `source` is not an address of the group's family.
    pub fn join_multicast_group_from<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
        source: IpAddr,
        interface: u32,
    ) -> Result<(), Error> {
        self.membership(reactor, group, Some(source), interface, true)
    }

    /// Leaves a source-specific membership made with
    /// [`join_multicast_group_from`](Self::join_multicast_group_from).
    ///
    /// # Errors
    ///
    /// As [`join_multicast_group_from`](Self::join_multicast_group_from).
    pub fn leave_multicast_group_from<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
        source: IpAddr,
        interface: u32,
    ) -> Result<(), Error> {
        self.membership(reactor, group, Some(source), interface, false)
    }

    fn membership<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        group: impl IntoHostName,
        source: Option<IpAddr>,
        interface: u32,
        join: bool,
    ) -> Result<(), Error> {
        let operation = if join {
            "join multicast group"
        } else {
            "leave multicast group"
        };
        let group = control::multicast_group(&group.into_host_name()?)?;
        if source.is_some_and(|s| s.is_ipv4() != group.is_ipv4()) {
            return Err(
                Error::new(SocketErrorStatus::InvalidArgument, operation).with_detail(format!(
                    "source {source:?} is not of group {group}'s family"
                )),
            );
        }
        let st = reactor.datagram_ref(self.0, operation)?;
        let Some(io) = st.io.as_ref() else {
            return Err(Error::new(SocketErrorStatus::InvalidState, operation)
                .with_detail("the socket is still resolving its peer's name"));
        };
        membership(io, group, source, interface, join).map_err(|e| {
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

/// Joins or leaves `group`, from any source or from `source` only.
fn membership(
    io: &UdpSocket,
    group: IpAddr,
    source: Option<IpAddr>,
    interface: u32,
    join: bool,
) -> std::io::Result<()> {
    if let Some(source) = source {
        return sys::source_membership(io, join, interface, group, source);
    }
    let socket = SockRef::from(io);
    let index = InterfaceIndexOrAddress::Index(interface);
    match (group, join) {
        (IpAddr::V4(g), true) => socket.join_multicast_v4_n(&g, &index),
        (IpAddr::V4(g), false) => socket.leave_multicast_v4_n(&g, &index),
        (IpAddr::V6(g), true) => socket.join_multicast_v6(&g, interface),
        (IpAddr::V6(g), false) => socket.leave_multicast_v6(&g, interface),
    }
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
}
