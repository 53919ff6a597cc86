//! Datagrams out (the queue, the flush after a handler, errors reported later) and in
//! (to `WouldBlock` within a per-turn budget, through the reactor's scratch buffer),
//! and the datagram socket's side of the reactor's seam.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::Interest;

use super::queue::SendQueue;
use super::{stale, DatagramEvent, DatagramSocket, Message, Phase};
use crate::error::{Error, SocketErrorStatus};
use crate::io::sys;
use crate::net::listener::canonical;
use crate::reactor::{panicked, Key, Kind, Reactor, Source};

/// The largest UDP payload over IPv4: 65,535 bytes less the IPv4 and UDP headers.
pub(crate) const MAX_PAYLOAD_V4: usize = 65_535 - 20 - 8;
/// The largest UDP payload over IPv6 without jumbograms.
const MAX_PAYLOAD_V6: usize = 65_535 - 8;

/// What one datagram counts against the read budget besides its bytes: the cost of
/// the system call and the handler call, so that a flood of empty datagrams ends a
/// turn too.
const PER_DATAGRAM: usize = 256;

/// Errors kept for reporting at most, per socket, until the handler has seen them;
/// later ones are logged.
const MAX_ERRORS: usize = 64;

/// A free slot of a receive batch.
const NOTHING: sys::Received = sys::Received {
    len: 0,
    truncated: false,
    source: SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::UNSPECIFIED,
        0,
    )),
    destination: None,
    segment_size: None,
};

/// The most bytes one GSO send carries: what one IPv4 datagram could.
const GSO_MAX_BYTES: usize = MAX_PAYLOAD_V4;

impl DatagramSocket {
    /// Sends `data` as one datagram to `to`. Inside a handler, datagrams sent during
    /// the call leave, in order, when it returns; outside one, at once. When the
    /// kernel's send buffer is full, they wait in the socket's queue, bounded by the
    /// reactor's watermarks (see [`Builder::watermarks`](crate::Builder::watermarks)).
    /// The kernel's refusal of a queued datagram (an unreachable network, say) is
    /// reported to the handler as [`DatagramEvent::Error`] with the destination.
    ///
    /// # Errors
    ///
    /// - `MessageTooLong` if `data` cannot be one UDP datagram (over 65,507 bytes to
    ///   IPv4, 65,527 to IPv6);
    /// - `NoBufferSpaceAvailable` if the queue is at its limit: nothing is queued, and
    ///   [`DatagramEvent::Drained`] comes once it has room;
    /// - `AddressFamilyNotSupported` for an IPv6 destination on an IPv4 socket;
    /// - `InvalidState` while a socket made with [`connect`](Self::connect) resolves
    ///   its peer's name ([`send`](Self::send) queues meanwhile);
    /// - `InvalidHandle` if closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{DatagramSocket, Reactor};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let socket = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, _| {})?;
    /// let to = socket.information(&reactor)?.local_address.unwrap();
    /// socket.send_to(&mut reactor, to, b"to myself")?;
    /// let err = socket.send_to(&mut reactor, to, &vec![0; 65_536]).unwrap_err();
    /// assert_eq!(err.status(), sockloop::SocketErrorStatus::MessageTooLong);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn send_to<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        to: SocketAddr,
        data: &[u8],
    ) -> Result<(), Error> {
        reactor.datagram_send_in_call(self.0, Some(to), data, "send to")
    }

    /// [`send_to`](Self::send_to) from the local address `from`: the way a server
    /// bound to a wildcard answers from the address a request came to
    /// ([`Message::local`]), so that the client sees the reply come from where it sent.
    ///
    /// # Errors
    ///
    /// As [`send_to`](Self::send_to). A `from` that is not local is refused by the
    /// kernel and reported as [`DatagramEvent::Error`] (`CannotAssignRequestedAddress`
    /// or `InvalidArgument`).
    pub fn send_to_from<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        to: SocketAddr,
        from: IpAddr,
        data: &[u8],
    ) -> Result<(), Error> {
        reactor.datagram_send(self.0, Some(to), Some(from), data, "send to")
    }

    /// Sends `data` as one datagram to the peer of a connected socket (made with
    /// [`connect`](Self::connect)), as [`send_to`](Self::send_to) does.
    ///
    /// # Errors
    ///
    /// As [`send_to`](Self::send_to); `InvalidState` if the socket is not connected.
    pub fn send<S: 'static>(self, reactor: &mut Reactor<S>, data: &[u8]) -> Result<(), Error> {
        reactor.datagram_send_in_call(self.0, None, data, "send")
    }

    /// Sends `data` to `to` as a train of datagrams of `segment_size` bytes each (the
    /// last may be shorter): the same datagrams as `send_to` with each of
    /// `data.chunks(segment_size)`, in order, queued in one step — for a sender that
    /// builds its datagrams one after the other in one buffer (QUIC packets, media
    /// frames). Such a train leaves with one UDP GSO `sendmsg` where the kernel has it
    /// (at most 64 datagrams, and 65,507 bytes, a call). When nothing is queued before
    /// it on an unconnected socket, it leaves during the call, from `data` itself (no
    /// copy); what the kernel does not take then is queued as usual. Empty `data`
    /// sends nothing.
    ///
    /// # Errors
    ///
    /// - `InvalidArgument` if `segment_size` is 0;
    /// - `MessageTooLong` if `segment_size` is over one UDP datagram's payload;
    /// - otherwise as [`send_to`](Self::send_to), for the whole of `data`: either every
    ///   datagram of it is queued, or none.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{DatagramSocket, Reactor};
    ///
    /// let mut reactor = Reactor::<()>::new()?;
    /// let socket = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, _| {})?;
    /// let to = socket.information(&reactor)?.local_address.unwrap();
    /// // Three datagrams: 100, 100 and 50 bytes.
    /// socket.send_segments_to(&mut reactor, to, &[7; 250], 100)?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn send_segments_to<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        to: SocketAddr,
        data: &[u8],
        segment_size: usize,
    ) -> Result<(), Error> {
        reactor.datagram_send_segments(self.0, Some(to), data, segment_size, "send segments to")
    }

    /// [`send_segments_to`](Self::send_segments_to) the peer of a connected socket.
    ///
    /// # Errors
    ///
    /// As [`send_segments_to`](Self::send_segments_to); `InvalidState` if the socket is
    /// not connected.
    pub fn send_segments<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        data: &[u8],
        segment_size: usize,
    ) -> Result<(), Error> {
        reactor.datagram_send_segments(self.0, None, data, segment_size, "send segments")
    }

    /// Sends what is queued now, even inside a handler.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn flush<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        reactor.datagram_mut(self.0, "flush")?;
        reactor.flush_datagram(self.0);
        Ok(())
    }
}

/// Errors the kernel reports for an earlier datagram (ICMP answers, kept on the
/// socket until the next call): they fail a call without saying anything about it.
fn is_deferred_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

/// Where a datagram goes, as the socket sends it: `None` to the peer of a connected
/// socket (or of one resolving its name); an IPv4 address mapped on an IPv6 socket,
/// an IPv4-mapped one made plain on an IPv4 socket.
#[inline]
fn destination(
    ipv6: bool,
    phase: Phase,
    remote: Option<SocketAddr>,
    to: Option<SocketAddr>,
    operation: &'static str,
) -> Result<Option<SocketAddr>, Error> {
    // The usual cases first, without building anything.
    if destination_as_is(ipv6, phase, remote, to) {
        return Ok(to);
    }
    destination_other(ipv6, phase, remote, to, operation)
}

/// Whether [`destination`] is `to` as given (its usual cases): an IPv4 address from
/// an open IPv4 socket, or none from a connected one.
#[inline]
fn destination_as_is(
    ipv6: bool,
    phase: Phase,
    remote: Option<SocketAddr>,
    to: Option<SocketAddr>,
) -> bool {
    match (to, phase) {
        (Some(SocketAddr::V4(_)), Phase::Open) => !ipv6,
        (None, Phase::Open) => remote.is_some(),
        _ => false,
    }
}

#[inline(never)]
fn destination_other(
    ipv6: bool,
    phase: Phase,
    remote: Option<SocketAddr>,
    to: Option<SocketAddr>,
    operation: &'static str,
) -> Result<Option<SocketAddr>, Error> {
    let invalid =
        |detail| Error::new(SocketErrorStatus::InvalidState, operation).with_detail(detail);
    match (to.map(canonical), phase) {
        (None, Phase::Resolving) => Ok(None),
        (None, _) if remote.is_some() => Ok(None),
        (None, _) => Err(invalid("the socket is not connected; use send_to")),
        (Some(_), Phase::Resolving) => Err(invalid(
            "the socket is resolving its peer's name; send queues for the peer, \
             send_to must wait until it is connected",
        )),
        (Some(SocketAddr::V4(v4)), _) if ipv6 => Ok(Some(SocketAddr::new(
            IpAddr::V6(v4.ip().to_ipv6_mapped()),
            v4.port(),
        ))),
        (Some(v6 @ SocketAddr::V6(_)), _) if !ipv6 => Err(Error::new(
            SocketErrorStatus::AddressFamilyNotSupported,
            operation,
        )
        .with_address(v6)
        .with_detail("an IPv4 socket cannot send to an IPv6 address")),
        (Some(addr), _) => Ok(Some(addr)),
    }
}

/// For a datagram of `segment` bytes, over IPv4's limit, going to `to` (`None`: the
/// peer is being resolved, checked as IPv4): its refusal, unless the path is IPv6 and
/// it fits.
#[cold]
#[inline(never)]
fn too_long(segment: usize, to: Option<SocketAddr>, operation: &'static str) -> Option<Error> {
    let v6_path = match to {
        Some(addr) => addr.is_ipv6() && !addr.ip().to_canonical().is_ipv4(),
        None => false,
    };
    let max = if v6_path {
        MAX_PAYLOAD_V6
    } else {
        MAX_PAYLOAD_V4
    };
    if segment <= max {
        return None;
    }
    let err = Error::new(SocketErrorStatus::MessageTooLong, operation).with_detail(format!(
        "{segment} bytes; one UDP datagram over IPv{} carries at most {max}",
        if v6_path { 6 } else { 4 }
    ));
    Some(match to {
        Some(addr) => err.with_address(canonical(addr)),
        None => err,
    })
}

impl<S: 'static> Reactor<S> {
    /// A datagram sent from a handler call whose flush is already queued (the usual
    /// case: the call sent one before): queued at once, without the general path's
    /// work for a first send (staging, flush scheduling, direct trains), when what
    /// that path would check holds — the socket open, the destination usable as is,
    /// the length under IPv4's limit and the queue under its high watermark. Anything
    /// else takes the general path.
    #[inline]
    fn datagram_send_in_call(
        &mut self,
        key: Key,
        to: Option<SocketAddr>,
        data: &[u8],
        operation: &'static str,
    ) -> Result<(), Error> {
        let (limit, high) = (self.config.write_limit, self.config.high_watermark);
        if let Some(Source::Datagram(st)) = self.sources.get_mut(key) {
            let len = st.out.len() + data.len();
            // (`destination_as_is` holds only for an open socket.)
            if st.dirty
                && destination_as_is(st.ipv6, st.phase, st.remote, to)
                && data.len() <= MAX_PAYLOAD_V4
                && len <= limit
                && len <= high
            {
                st.out.push(data, to, None);
                return Ok(());
            }
        }
        self.datagram_send(key, to, None, data, operation)
    }

    #[inline]
    fn datagram_send(
        &mut self,
        key: Key,
        to: Option<SocketAddr>,
        from: Option<IpAddr>,
        data: &[u8],
        operation: &'static str,
    ) -> Result<(), Error> {
        self.datagram_queue(key, to, from, data, data.len(), operation)
    }

    fn datagram_send_segments(
        &mut self,
        key: Key,
        to: Option<SocketAddr>,
        data: &[u8],
        segment_size: usize,
        operation: &'static str,
    ) -> Result<(), Error> {
        if segment_size == 0 {
            return Err(Error::new(SocketErrorStatus::InvalidArgument, operation)
                .with_detail("a segment size of 0"));
        }
        if data.is_empty() {
            // Checked as a send of nothing would be: a closed socket still says so.
            self.datagram_mut(key, operation)?;
            return Ok(());
        }
        self.datagram_queue(key, to, None, data, segment_size.min(data.len()), operation)
    }

    /// Queues `data` as datagrams of `segment` bytes (one datagram when `segment` is
    /// its length), all or none.
    fn datagram_queue(
        &mut self,
        key: Key,
        to: Option<SocketAddr>,
        from: Option<IpAddr>,
        data: &[u8],
        segment: usize,
        operation: &'static str,
    ) -> Result<(), Error> {
        let (limit, high) = (self.config.write_limit, self.config.high_watermark);
        let Some((Source::Datagram(st), _, mut queue)) = self.source_for_write(key) else {
            return Err(stale(operation));
        };
        if st.phase == Phase::Closed {
            return Err(stale(operation));
        }
        let to = destination(st.ipv6, st.phase, st.remote, to, operation)?;
        // Under IPv4's limit every datagram fits; over it, the path decides, out of
        // line.
        if segment > MAX_PAYLOAD_V4 {
            if let Some(err) = too_long(segment, to.or(st.remote), operation) {
                return Err(err);
            }
        }
        let queued = st.out.len();
        if queued.saturating_add(data.len()) > limit {
            st.over_high = true;
            return Err(Error::refused(operation, queued, data.len(), limit));
        }
        // A train given whole, with nothing queued before it, leaves at once from the
        // caller's buffer in GSO sends (what a flush would make of it, without the
        // copy); what the kernel does not take is queued below. Only on an
        // unconnected socket, which learns of no ICMP errors: a failure here is then
        // the train's own, and the queue tries again and reports it as for any
        // datagram.
        let mut data = data;
        if segment < data.len()
            && st.gso
            && st.out.is_empty()
            && st.remote.is_none()
            && from.is_none()
            && st.phase == Phase::Open
        {
            if let (Some(to), Some(io)) = (to, st.io.as_ref()) {
                data = &data[send_trains_now(io, data, segment, to, &mut st.counters)..];
                if data.is_empty() {
                    return Ok(());
                }
            }
        }
        if segment >= data.len() {
            st.out.push(data, to, from);
        } else {
            st.out.push_segments(data, segment, to, from);
        }
        if st.out.len() > high {
            st.over_high = true;
        }
        if !queue.defer(key, &mut st.dirty) {
            self.flush_datagram(key);
        }
        Ok(())
    }

    /// Sends queued datagrams until the kernel's buffer is full, up to
    /// [`sys::SEND_BATCH`] per `sendmmsg`. Errors and `Drained` are reported once no
    /// handler runs.
    pub(crate) fn flush_datagram(&mut self, key: Key) {
        let low = self.config.low_watermark;
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.dirty = false;
        let Some(io) = st.io.as_ref() else {
            return; // still resolving
        };
        // An error that may be an earlier datagram's (an ICMP answer kept on a
        // connected socket): reported once the retry of the datagram it failed tells
        // whose it was.
        let mut held: Option<Error> = None;
        while let Some((item, _)) = st.out.front() {
            match send_front(io, &st.out, st.batching, &mut st.gso, &mut st.counters) {
                Ok(sent) => {
                    st.counters.datagrams_sent += sent as u64;
                    // The retried datagram went: the error was an earlier one's.
                    st.errors.extend(held.take());
                    st.out.pop_n(sent);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let earlier = st.remote.is_some() && is_deferred_error(&e) && !item.retried;
                    let mut err = Error::from_io("send", e);
                    if let Some(address) = item.to.or(st.remote) {
                        err = err.with_address(canonical(address));
                    }
                    if earlier {
                        // Taken off the socket now: this datagram is tried again, once.
                        st.out.set_front_retried();
                        held = Some(err);
                        continue;
                    }
                    // Failed again, or refused for itself: its own error, reported
                    // once.
                    held = None;
                    st.out.pop();
                    if st.errors.len() < MAX_ERRORS {
                        st.errors.push(err);
                    } else {
                        log::debug!("datagram socket {key:?}: {err} (not reported: too many)");
                    }
                }
            }
        }
        st.errors.extend(held);
        // Writability is asked of the kernel only while datagrams wait.
        let waiting = !st.out.is_empty();
        if waiting != st.write_interest {
            let interest = if waiting {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Some(io) = st.io.as_mut() {
                match self.poll.registry().reregister(io, key.token(), interest) {
                    Ok(()) => st.write_interest = waiting,
                    // Tried again at the next flush; the handler is told, as the
                    // queue may wait until then.
                    Err(e) if st.errors.len() < MAX_ERRORS => {
                        st.errors
                            .push(Error::from_io("register for writability", e));
                    }
                    Err(e) => log::debug!("datagram socket {key:?}: reregister: {e}"),
                }
            }
        }
        let mut report = !st.errors.is_empty();
        if st.over_high && st.out.len() <= low {
            st.over_high = false;
            st.drained_due = true;
            report = true;
        }
        if report && !st.report_queued {
            st.report_queued = true;
            self.drained_later(key);
        }
    }

    /// Reports the errors of queued datagrams, then `Drained` if due.
    fn datagram_report(&mut self, state: &mut S, key: Key) {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.report_queued = false;
        if st.phase == Phase::Closed {
            return; // `Closed` is on its way, and is the last event
        }
        let errors = std::mem::take(&mut st.errors);
        for err in errors {
            if !self.call_datagram(state, key, DatagramEvent::Error(err)) {
                return;
            }
        }
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.drained_due && !st.over_high {
            st.drained_due = false;
            self.call_datagram(state, key, DatagramEvent::Drained);
        }
    }

    /// Reads datagrams until `WouldBlock` or the budget, each delivered as its own
    /// message: with `recvmmsg` into the reactor's datagram slots when the socket
    /// batches, else with `recvmsg` into its scratch buffer. Nothing is allocated.
    fn datagram_read(&mut self, state: &mut S, key: Key) {
        let budget = self.config.read_budget;
        let slot = self.scratch.len();
        let mut used = 0usize;
        // One datagram at a time needs no array; a batch reuses the reactor's.
        let mut one = [NOTHING];
        loop {
            let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
                return;
            };
            let (Phase::Open, Some(io), Some(local)) = (st.phase, st.io.as_ref(), st.local) else {
                return;
            };
            if used >= budget {
                if !st.queued_ready {
                    st.queued_ready = true;
                    self.serve_next_turn(key);
                }
                return;
            }
            let batched = st.batching
                && self.datagram_slots.len() >= 2 * slot
                && self.datagram_headers.is_some();
            if batched && self.datagram_received.len() < sys::RECV_BATCH {
                self.datagram_received.resize(sys::RECV_BATCH, NOTHING);
            }
            let headers = self.datagram_headers.as_deref_mut().filter(|_| batched);
            let result = if let Some(headers) = headers {
                sys::recv_mmsg(
                    io,
                    headers,
                    &mut self.datagram_slots,
                    slot,
                    &mut self.datagram_received,
                )
            } else {
                // Control messages to read (the GRO segment size, or the destination a
                // socket bound to a wildcard asks for) need `recvmsg`.
                let rx = if st.gro || local.ip().is_unspecified() {
                    sys::recv_msg(io, &mut self.scratch)
                } else {
                    sys::recv_from(io, &mut self.scratch)
                };
                rx.map(|rx| {
                    one[0] = rx;
                    1
                })
            };
            st.counters.receive_calls += 1;
            match result {
                Ok(n) => {
                    // Out of the reactor for the calls, so that the handler can have
                    // the reactor and the bytes at once.
                    let buffer = if batched {
                        std::mem::take(&mut self.datagram_slots)
                    } else {
                        std::mem::take(&mut self.scratch)
                    };
                    let received = if batched {
                        std::mem::take(&mut self.datagram_received)
                    } else {
                        Vec::new()
                    };
                    let infos = if batched { &received[..] } else { &one[..] };
                    let mut open = true;
                    for (i, rx) in infos.iter().take(n).enumerate() {
                        let bytes = &buffer[i * slot..][..rx.len];
                        let (count, open_now) = self.deliver_datagram(state, key, local, rx, bytes);
                        used = used.saturating_add(rx.len + PER_DATAGRAM * count);
                        if !open_now {
                            open = false;
                            break;
                        }
                    }
                    if batched {
                        self.datagram_slots = buffer;
                        self.datagram_received = received;
                    } else {
                        self.scratch = buffer;
                    }
                    if !open {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_deferred_error(&e) => {
                    used = used.saturating_add(PER_DATAGRAM);
                    let remote = st.remote;
                    let mut err = Error::from_io("receive", e);
                    if let Some(remote) = remote {
                        err = err.with_address(remote);
                    }
                    self.call_datagram(state, key, DatagramEvent::Error(err));
                }
                Err(e) => {
                    let err = Error::from_io("receive", e).with_address(local);
                    st.phase = Phase::Closed;
                    self.finish_later(key, Err(err));
                    return;
                }
            }
        }
    }

    /// Delivers one received buffer: one message, or one per segment of a coalesced
    /// receive (GRO: several datagrams of `segment` bytes each, the last maybe
    /// shorter). Returns the messages delivered and whether the socket is still open.
    fn deliver_datagram(
        &mut self,
        state: &mut S,
        key: Key,
        local: SocketAddr,
        rx: &sys::Received,
        bytes: &[u8],
    ) -> (usize, bool) {
        let len = rx.len;
        // (A segment size of 0 would be the kernel's mistake: the buffer is then one
        // datagram.)
        let segment = rx
            .segment_size
            .filter(|s| *s > 0 && *s < len)
            .unwrap_or(len);
        let local = SocketAddr::new(
            rx.destination.map_or(local.ip(), |ip| ip.to_canonical()),
            local.port(),
        );
        let remote = canonical(rx.source);
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return (0, false);
        };
        let count = len.div_ceil(segment.max(1)).max(1);
        st.counters.datagrams_received += count as u64;
        let Some(mut handler) = st.handler.take() else {
            return (0, false);
        };
        // The segments of a coalesced receive go to the handler within one call of the
        // panic boundary, the handler taken out once; after each, a look at the slot:
        // a socket closed by its handler gets no more.
        let mut delivered = 0;
        let returned = self
            .in_handler(|r| {
                let mut rest = bytes;
                loop {
                    let (data, after) = rest.split_at(segment.min(rest.len()));
                    let last = after.is_empty();
                    let message = Message {
                        remote,
                        local,
                        data,
                        truncated: last && rx.truncated,
                    };
                    handler(
                        r,
                        state,
                        DatagramSocket(key),
                        DatagramEvent::MessageReceived(message),
                    );
                    delivered += 1;
                    if last {
                        break;
                    }
                    rest = after;
                    match r.sources.get(key) {
                        Some(Source::Datagram(st)) if st.phase != Phase::Closed => {}
                        _ => break,
                    }
                }
            })
            .is_some();
        if !self.datagram_handler_back(key, handler, returned) {
            return (delivered, false);
        }
        (count, true)
    }

    /// Calls the socket's handler (taken out of its slot for the call and put back
    /// after). Returns whether the socket is still open.
    fn call_datagram(&mut self, state: &mut S, key: Key, event: DatagramEvent<'_>) -> bool {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return false;
        };
        let Some(mut handler) = st.handler.take() else {
            return false;
        };
        let returned = self
            .in_handler(|r| handler(r, state, DatagramSocket(key), event))
            .is_some();
        self.datagram_handler_back(key, handler, returned)
    }

    /// Puts a handler back after a call (unless it was replaced meanwhile) and closes
    /// the socket if the call panicked. Returns whether the socket is still open.
    fn datagram_handler_back(
        &mut self,
        key: Key,
        handler: super::DatagramHandler<S>,
        returned: bool,
    ) -> bool {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return false;
        };
        st.handler.get_or_insert(handler);
        if returned {
            return st.phase != Phase::Closed;
        }
        if st.phase != Phase::Closed {
            // The same handler gets the one `Closed` event; nothing else of this
            // socket is delivered or sent.
            st.phase = Phase::Closed;
            st.out.clear();
            self.finish_later(key, Err(panicked("datagram handler")));
        }
        false
    }

    fn finish_datagram(&mut self, state: &mut S, key: Key, result: Result<(), Error>) {
        let Some(Source::Datagram(mut st)) = self.remove_source(key) else {
            return;
        };
        // Its lookups (the peer's name, or destinations given by name) give up their
        // places in the pool.
        self.cancel_resolution(key);
        if let Some(io) = st.io.as_mut() {
            let _ = self.poll.registry().deregister(io);
        }
        log::debug!("datagram socket {key:?} closed: {result:?}");
        if let Some(mut handler) = st.handler.take() {
            self.in_handler(|r| {
                handler(r, state, DatagramSocket(key), DatagramEvent::Closed(result))
            });
        }
    }
}

/// The GSO train at the front of the queue: how many datagrams (a run of same-size
/// datagrams to one destination, of which the last may be shorter) and their size;
/// `(0, 0)` when the front datagram cannot start one.
fn gso_run(out: &SendQueue) -> (usize, usize) {
    let Some(run) = out.front_run() else {
        return (0, 0);
    };
    let size = run.size;
    if size == 0 || size > usize::from(u16::MAX) {
        return (0, 0);
    }
    let most = sys::GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / size);
    let full = run.full();
    if full >= most {
        return (most, size);
    }
    // The whole run, its shorter last datagram included if it fits.
    let fits = (full * size + run.last) <= GSO_MAX_BYTES;
    if run.count > full && full < most && fits {
        (run.count, size)
    } else {
        (full, size)
    }
}

/// Sends `data` to `to` as GSO trains of `segment`-byte datagrams, each as long as
/// the kernel takes in one send (at most [`sys::GSO_MAX_SEGMENTS`] datagrams and one
/// IPv4 datagram's bytes), until one does not leave. Returns how many bytes left, a
/// whole number of datagrams.
fn send_trains_now(
    io: &mio::net::UdpSocket,
    data: &[u8],
    segment: usize,
    to: SocketAddr,
    counters: &mut super::Counters,
) -> usize {
    let Ok(size) = u16::try_from(segment) else {
        return 0;
    };
    let per_send = sys::GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / segment.max(1));
    if per_send < 2 {
        return 0;
    }
    let mut sent = 0;
    for train in data.chunks(per_send * segment) {
        let outgoing = sys::Outgoing {
            data: train,
            to: Some(to),
            from: None,
            segment: (train.len() > segment).then_some(size),
        };
        counters.send_calls += 1;
        if sys::send_msg(io, &outgoing).is_err() {
            break;
        }
        counters.datagrams_sent += train.len().div_ceil(segment) as u64;
        sent += train.len();
    }
    sent
}

/// How many of the oldest `limit` queued datagrams come before the first one that
/// starts a run worth a GSO send (two or more of one size to one destination).
fn next_run(out: &SendQueue, limit: usize) -> usize {
    let mut before = 0;
    for run in out.runs() {
        if before >= limit {
            break;
        }
        let worth = run.full() >= 2 && run.size > 0 && 2 * run.size <= GSO_MAX_BYTES;
        if worth && before > 0 {
            return before.min(limit);
        }
        before += run.count;
    }
    before.min(limit)
}

/// Sends the oldest queued datagrams and returns how many left: a run of same-size
/// datagrams with one GSO `sendmsg` when `gso` (turned off for good if the kernel
/// refuses it), else up to [`sys::SEND_BATCH`] in one `sendmmsg` when `batching`, else
/// one with `sendmsg`.
fn send_front(
    io: &mio::net::UdpSocket,
    out: &SendQueue,
    batching: bool,
    gso: &mut bool,
    counters: &mut super::Counters,
) -> io::Result<usize> {
    if *gso {
        let (count, size) = gso_run(out);
        if count >= 2 {
            let (first, _) = out.front().expect("a run has a first datagram");
            let train = sys::Outgoing {
                data: out.contiguous(count),
                to: first.to,
                from: first.from,
                segment: u16::try_from(size).ok(),
            };
            counters.send_calls += 1;
            match sys::send_msg(io, &train) {
                Ok(_) => return Ok(count),
                // Refused as such: never again on this socket; the run goes below.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) =>
                {
                    log::debug!("UDP GSO refused ({e}); sending without it");
                    *gso = false;
                }
                // Any other error is the first datagram's (or an earlier one's), as
                // for a single send: the caller reports it, drops or retries that one,
                // and the rest go on.
                Err(e) => return Err(e),
            }
        }
    }
    let mut limit = if batching { sys::SEND_BATCH } else { 1 };
    if *gso {
        // Up to the next run worth a GSO send, which the next call sends whole.
        limit = limit.min(next_run(out, limit));
    }
    if limit == 1 || out.count() == 1 {
        // One datagram: no batch array to fill.
        let Some((queued, data)) = out.front() else {
            return Ok(0);
        };
        counters.send_calls += 1;
        let one = sys::Outgoing {
            data,
            to: queued.to,
            from: queued.from,
            segment: None,
        };
        return sys::send_msg(io, &one).map(|_| 1);
    }
    // (Two at least: a single datagram went above.)
    counters.send_calls += 1;
    sys::send_mmsg(
        io,
        out.first(limit).map(|(queued, data)| sys::Outgoing {
            data,
            to: queued.to,
            from: queued.from,
            segment: None,
        }),
    )
}

/// Datagram sockets, as the loop sees them.
pub(crate) struct DatagramKind;

impl<S: 'static> Kind<S> for DatagramKind {
    fn ready(r: &mut Reactor<S>, state: &mut S, key: Key, event: &mio::event::Event) {
        if event.is_writable() || event.is_error() {
            r.flush_datagram(key);
        }
        // A socket queued to be served this turn (over its budget last turn) is read
        // from the queue only, so that it does not read twice its budget in a turn.
        let queued = matches!(r.sources.get(key), Some(Source::Datagram(st)) if st.queued_ready);
        if !queued && (event.is_readable() || event.is_error()) {
            r.datagram_read(state, key);
        }
    }

    fn serve(r: &mut Reactor<S>, state: &mut S, key: Key) {
        if let Some(Source::Datagram(st)) = r.sources.get_mut(key) {
            st.queued_ready = false;
        }
        r.datagram_read(state, key);
    }

    fn flush(r: &mut Reactor<S>, key: Key) {
        r.flush_datagram(key);
    }

    fn drained(r: &mut Reactor<S>, state: &mut S, key: Key) {
        r.datagram_report(state, key);
    }

    fn finish(r: &mut Reactor<S>, state: &mut S, key: Key, result: Result<(), Error>) {
        r.finish_datagram(state, key, result);
    }
}
