//! The only `unsafe` of the crate: Linux calls that neither std, mio nor socket2 offer.
//!
//! What a backend must provide:
//! - [`tcp_info`]: round-trip-time statistics from `getsockopt(TCP_INFO)`.
//! - [`listen_fds`]: adopt the listening sockets passed by a service manager
//!   (`LISTEN_FDS`), once per process, each checked to be one; built on the
//!   `unsafe` [`inherited_listener`], whose caller vouches for ownership.
//! - [`set_nonblocking`]: `O_NONBLOCK` on foreign descriptors (stdin, pipes).
//! - [`timerfd_monotonic`], [`timerfd_arm_at`]: a timer descriptor that wakes the poller
//!   at an exact `Instant`, for deadlines finer than epoll's millisecond timeout.
//! - [`recv_msg`], [`recv_mmsg`], [`send_msg`], [`send_mmsg`]: datagrams in or out
//!   with `recvmsg`, `recvmmsg`, `sendmsg` and `sendmmsg`, with the truncation flag and the local address
//!   (`IP_PKTINFO`, `IPV6_PKTINFO`);
//!   [`set_packet_info`], [`set_multicast_if_v4_index`] and [`set_int_option`] for
//!   the options that go with them; [`source_membership`] for source-specific
//!   multicast joins; [`enable_gro`] and [`Outgoing::segment`] for UDP GRO and GSO.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The part of `struct tcp_info` sockloop reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpInfo {
    pub(crate) rtt_us: u32,
    pub(crate) rttvar_us: u32,
    pub(crate) total_retrans: u32,
}

/// Reads `TCP_INFO` from a TCP socket.
pub(crate) fn tcp_info(socket: &impl AsRawFd) -> io::Result<TcpInfo> {
    // SAFETY: tcp_info is a plain C struct of integers; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a live, writable tcp_info and `len` holds its exact size, so the
    // kernel writes at most `len` bytes into it; the fd is borrowed for the call only.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpInfo {
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        total_retrans: info.tcpi_total_retrans,
    })
}

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The most descriptors [`listen_fds`] adopts, whatever `LISTEN_FDS` says.
const LISTEN_FDS_MAX: i32 = 1024;

/// Adopts the listening sockets a service manager passed to this process (systemd
/// socket activation): `LISTEN_PID` must name this process, and `LISTEN_FDS` counts
/// descriptors from 3 on. Empty when the variables are absent, malformed or meant for
/// another process (a parent's, inherited through `fork`), and on every call after the
/// first: the descriptors get one owner.
///
/// This is the safe way in to [`inherited_listener`]: by the protocol, those
/// descriptors were opened for this process and nothing in it owns them before it
/// reads the variables; the once-per-process flag keeps sockloop from adopting one
/// twice. (Code that also claims them through another socket-activation library,
/// such as libsystemd's `sd_listen_fds`, breaks that protocol.)
///
/// # Errors
///
/// The descriptor and why it was refused, at the first one that is not an open
/// listening stream socket. Those adopted before it are closed again; those after it
/// are left alone.
pub(crate) fn listen_fds() -> Result<Vec<std::net::TcpListener>, (RawFd, io::Error)> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<i32>().ok());
    let (true, Some(count)) = (pid_ok, count) else {
        return Ok(Vec::new());
    };
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::AcqRel) {
        return Ok(Vec::new());
    }
    let end = LISTEN_FDS_START.saturating_add(count.clamp(0, LISTEN_FDS_MAX));
    (LISTEN_FDS_START..end)
        .map(|fd| {
            // SAFETY: `fd` is one of the descriptors the service manager passed to this
            // process (LISTEN_PID is ours), adopted here once per process (ADOPTED),
            // so nothing else in the process owns it (see above).
            unsafe { inherited_listener(fd) }.map_err(|e| (fd, e))
        })
        .collect()
}

/// Takes ownership of descriptor `fd` if it is a listening TCP socket.
///
/// # Safety
///
/// On success the returned listener owns `fd` and closes it when dropped, so nothing
/// else may own `fd`: no `OwnedFd`, `File`, socket or other wrapper may hold it, now
/// or later, and no other code may close it. In practice `fd` must have been passed to
/// this process to be adopted (systemd's `LISTEN_FDS` protocol, see [`listen_fds`])
/// and be adopted once. An `fd` that is not open, or not a listening stream socket, is
/// refused with an error and left as it was.
pub(crate) unsafe fn inherited_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table; an invalid fd gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and stays open for the borrow, which ends
    // before this function returns.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    if sock.r#type()? != socket2::Type::STREAM || !sock.is_listener()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited fd {fd} is not a listening stream socket"),
        ));
    }
    // SAFETY: the fd is an open listening stream socket (checked above) that nothing
    // else owns (this function's contract); from here on the TcpListener is its only
    // owner and closes it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    // SAFETY: FD_CLOEXEC keeps the adopted socket from leaking into child processes;
    // F_SETFD on an owned, open fd has no other effect.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(listener)
}

/// Sets or clears `O_NONBLOCK` on a descriptor.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL only reads the flags of an fd that `fd` keeps open.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with the flags just read, O_NONBLOCK changed, on the same open fd.
    if new != flags && unsafe { libc::fcntl(raw, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads at most `max` bytes from `fd` onto the end of `buf`, straight into its spare
/// capacity: bytes a socket keeps are not first read elsewhere and then copied.
pub(crate) fn read_append(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = &mut buf.spare_capacity_mut()[..max];
    // SAFETY: `spare` is valid for writes of `max` bytes (reserved above) and outlives
    // the call; `read` writes at most `max` bytes there and does not keep the pointer.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), max) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` (≤ `max`) bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// A new one-shot timer descriptor on `CLOCK_MONOTONIC` (the clock of `Instant`),
/// non-blocking and close-on-exec, disarmed.
pub(crate) fn timerfd_monotonic() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms timer descriptor `fd` (from [`timerfd_monotonic`]) to expire once, at `deadline`
/// or later, never earlier; a deadline already past expires at once. Replaces any
/// earlier arming and clears an expiry not yet read.
///
/// `Instant` does not expose its `CLOCK_MONOTONIC` value, so the absolute time is the
/// clock read now plus what is left until `deadline` measured from an `Instant` read
/// just before: the clock read comes second, so the sum can only err late (by the
/// nanoseconds between the two reads).
pub(crate) fn timerfd_arm_at(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<()> {
    let before = Instant::now();
    let left = deadline.saturating_duration_since(before);
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a live, writable timespec; clock_gettime writes only into it.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let nanos = i128::from(now.tv_nsec) + i128::from(left.subsec_nanos());
    let secs = i128::from(now.tv_sec) + i128::from(left.as_secs()) + nanos / 1_000_000_000;
    let value = libc::timespec {
        // A deadline beyond the clock's range (centuries away) is clamped: it never comes.
        tv_sec: secs.min(i128::from(libc::time_t::MAX / 2)) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        // Never all zero (that would disarm): the monotonic clock is past its epoch.
        it_value: value,
    };
    // SAFETY: `spec` is a valid itimerspec that outlives the call; the old value is not
    // asked for (null); `fd` stays open for the borrow.
    let rc = unsafe {
        libc::timerfd_settime(
            fd.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME,
            &spec,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram read by [`recv_msg`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Bytes written to the buffer.
    pub(crate) len: usize,
    /// The datagram was longer than the buffer (`MSG_TRUNC`): its end was discarded.
    pub(crate) truncated: bool,
    /// The sender.
    pub(crate) source: SocketAddr,
    /// The address the datagram was sent to (`IP_PKTINFO` / `IPV6_PKTINFO`), if the
    /// socket asked for it.
    pub(crate) destination: Option<IpAddr>,
    /// With [`enable_gro`]: the kernel coalesced several datagrams of one flow, each
    /// this long (the last may be shorter), into the buffer.
    pub(crate) segment_size: Option<usize>,
}

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a GSO send, as a control message.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): the socket option, and the control message with the
/// segment size of a coalesced receive.
const UDP_GRO: libc::c_int = 104;

/// The most segments one GSO send may carry (`UDP_MAX_SEGMENTS`).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;

/// Asks the kernel to coalesce datagrams of one flow on receive (`UDP_GRO`): one
/// [`recv_msg`] may then return several, with their [`Received::segment_size`]. The
/// buffer must hold 64 KiB, or segments would be cut.
pub(crate) fn enable_gro(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_option(socket, libc::SOL_UDP, UDP_GRO, 1)
}

/// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message (and some to spare),
/// aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuf([u8; 128]);

/// Sets an integer socket option.
pub(crate) fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int and its exact size is passed; the fd is
    // borrowed for the call only.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an integer socket option.
#[cfg(test)]
pub(crate) fn int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live c_int and `len` its exact size, both written by the
    // kernel within that size; the fd is borrowed for the call only.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Whether the socket asks for each datagram's destination address.
#[cfg(test)]
pub(crate) fn packet_info_enabled(socket: &impl AsRawFd, ipv6: bool) -> io::Result<bool> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    Ok(int_option(socket, level, name)? != 0)
}

/// Asks for the destination address of each datagram (`IP_PKTINFO`, and
/// `IPV6_RECVPKTINFO` on IPv6 sockets, which may also receive IPv4 datagrams), or
/// stops asking (`on` false).
pub(crate) fn set_packet_info(socket: &impl AsRawFd, ipv6: bool, on: bool) -> io::Result<()> {
    let value = libc::c_int::from(on);
    if ipv6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, value)?;
        // IPv4 datagrams reaching a dual-stack socket; refused on an IPv6-only one.
        let _ = set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, value);
        Ok(())
    } else {
        set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, value)
    }
}

/// Sends IPv4 multicast through the interface with index `index` (`IP_MULTICAST_IF`
/// with an `ip_mreqn`, which socket2 offers only by address).
pub(crate) fn set_multicast_if_v4_index(socket: &impl AsRawFd, index: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as libc::c_int,
    };
    // SAFETY: `mreqn` is a live ip_mreqn and its exact size is passed; the fd is
    // borrowed for the call only.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An IP address (port 0) as a `sockaddr_storage`.
fn ip_to_storage(ip: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain integers; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match ip {
        IpAddr::V4(ip) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin);
            }
        }
        IpAddr::V6(ip) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6);
            }
        }
    }
    storage
}

/// Joins (or leaves) multicast `group` for datagrams from `source` only, on the
/// interface with index `interface` (0: the kernel's choice): a source-specific join
/// (`MCAST_JOIN_SOURCE_GROUP` / `MCAST_LEAVE_SOURCE_GROUP`, RFC 3678), IPv4 or IPv6.
pub(crate) fn source_membership(
    socket: &impl AsRawFd,
    join: bool,
    interface: u32,
    group: IpAddr,
    source: IpAddr,
) -> io::Result<()> {
    let request = libc::group_source_req {
        gsr_interface: interface,
        gsr_group: ip_to_storage(group),
        gsr_source: ip_to_storage(source),
    };
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    let name = if join {
        libc::MCAST_JOIN_SOURCE_GROUP
    } else {
        libc::MCAST_LEAVE_SOURCE_GROUP
    };
    // SAFETY: `request` is a live group_source_req and its exact size is passed; the
    // fd is borrowed for the call only.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&request as *const libc::group_source_req).cast(),
            mem::size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one datagram into `buf` with `recvmsg`: its length, whether it was cut to
/// fit, its sender and (with [`set_packet_info`]) the address it was sent to.
pub(crate) fn recv_msg(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_storage is plain integers; all-zero is a valid value.
    let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut control = ControlBuf([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain integers and pointers; all-zero (null, 0) is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: every pointer in `msg` points to a live buffer of the length given next
    // to it (the name, one iovec over `buf`, the control buffer), all outliving the
    // call; the kernel writes within those lengths only.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let source = sockaddr_to_std(&name, msg.msg_namelen).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram from an unknown family",
        )
    })?;
    Ok(Received {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        source,
        destination: packet_info(&msg),
        segment_size: gro_segment(&msg),
    })
}

/// Reads one datagram into `buf` with `recvfrom`, for a socket that needs no control
/// message (no destination address asked for, no GRO): as [`recv_msg`], without
/// `destination` and `segment_size`, and without a message header for the kernel to
/// copy in and out. `MSG_TRUNC` makes the call return the datagram's whole length,
/// which tells a cut one.
pub(crate) fn recv_from(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_storage is plain integers; all-zero is a valid value.
    let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` is a live, writable buffer of the length passed; `name` and
    // `namelen` are live and say how much the kernel may write into `name`. The fd is
    // borrowed for the call only.
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            (&mut name as *mut libc::sockaddr_storage).cast(),
            &mut namelen,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let source = sockaddr_to_std(&name, namelen).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram from an unknown family",
        )
    })?;
    let whole = n as usize;
    Ok(Received {
        len: whole.min(buf.len()),
        truncated: whole > buf.len(),
        source,
        destination: None,
        segment_size: None,
    })
}

/// Sends one datagram with `sendto`: no source address and no GSO, so no message
/// header for the kernel to copy in.
fn send_to_plain(socket: &impl AsRawFd, data: &[u8], to: Option<SocketAddr>) -> io::Result<usize> {
    let name = to.map(RawAddr::new);
    let (ptr, len) = match &name {
        Some((name, len)) => (name.as_ptr(), *len),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `data` is live for its length; `ptr` is null with a length of 0, or
    // points to `name`, a live socket address of `len` bytes; the kernel only reads
    // them. The fd is borrowed for the call only.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
            ptr,
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The most datagrams [`recv_mmsg`] reads in one call.
pub(crate) const RECV_BATCH: usize = 16;

/// The headers [`recv_mmsg`] hands to the kernel: a name, a control buffer, an iovec
/// and a message header per datagram. Made once (zeroed) and reused, so that a call
/// sets the few fields the kernel reads instead of clearing some 5 KiB; the kernel
/// writes only within the lengths each call sets.
pub(crate) struct RecvHeaders {
    names: [libc::sockaddr_storage; RECV_BATCH],
    controls: [ControlBuf; RECV_BATCH],
    iovs: [libc::iovec; RECV_BATCH],
    msgs: [libc::mmsghdr; RECV_BATCH],
}

impl RecvHeaders {
    pub(crate) fn new() -> Box<RecvHeaders> {
        // SAFETY: every field is plain integers, byte arrays, or structs of integers
        // and pointers; all-zero (0, null) is a valid value of each.
        Box::new(unsafe { mem::zeroed() })
    }
}

impl fmt::Debug for RecvHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecvHeaders")
    }
}

/// Reads up to `out.len()` (at most [`RECV_BATCH`]) datagrams with one `recvmmsg`,
/// datagram `i` into `buf[i * slot..][..slot]`, each described as [`recv_msg`] would
/// (length, truncation to `slot` bytes, sender, destination, GRO segment size) in
/// `out[i]`. Returns how many were read (at least 1; `WouldBlock` if none were there).
pub(crate) fn recv_mmsg(
    socket: &impl AsRawFd,
    headers: &mut RecvHeaders,
    buf: &mut [u8],
    slot: usize,
    out: &mut [Received],
) -> io::Result<usize> {
    let vlen = out.len().min(RECV_BATCH).min(buf.len() / slot.max(1));
    if vlen == 0 || slot == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no room for a datagram",
        ));
    }
    let base = buf.as_mut_ptr();
    let RecvHeaders {
        names,
        controls,
        iovs,
        msgs,
    } = headers;
    for i in 0..vlen {
        iovs[i] = libc::iovec {
            iov_base: base.wrapping_add(i * slot).cast(),
            iov_len: slot,
        };
        let m = &mut msgs[i];
        m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_iov = &mut iovs[i];
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_control = controls[i].0.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = controls[i].0.len() as _;
        m.msg_hdr.msg_flags = 0;
        m.msg_len = 0;
    }
    // SAFETY: the first `vlen` headers were just pointed at live buffers of the
    // lengths given next to them: a name, a control buffer and one iovec each, the
    // iovecs over disjoint `slot`-byte parts of `buf` (vlen × slot ≤ buf.len()); all
    // are borrowed for the whole call, and the kernel writes within those lengths and
    // each header's msg_len and flags only. No timeout: on a non-blocking socket the
    // call returns what is there.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            vlen as _,
            0,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (m, (name, rx)) in msgs.iter().zip(names.iter().zip(out.iter_mut())).take(n) {
        let source = sockaddr_to_std(name, m.msg_hdr.msg_namelen).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram from an unknown family",
            )
        })?;
        *rx = Received {
            len: (m.msg_len as usize).min(slot),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            source,
            destination: packet_info(&m.msg_hdr),
            segment_size: gro_segment(&m.msg_hdr),
        };
    }
    Ok(n)
}

/// The destination address in the control messages `recvmsg` filled in.
fn packet_info(msg: &libc::msghdr) -> Option<IpAddr> {
    let mut found = None;
    // SAFETY: `msg` was filled in by a successful recvmsg: msg_control and
    // msg_controllen describe the control bytes the kernel wrote, which is all the
    // CMSG_* macros read. The payloads are read unaligned, by value, and only when
    // their level, type and length say they are of the type read.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = cmsg.read_unaligned();
            let data = libc::CMSG_DATA(cmsg);
            let len = header.cmsg_len as usize;
            match (header.cmsg_level, header.cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
                    if len
                        >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as usize =>
                {
                    let info = data.cast::<libc::in_pktinfo>().read_unaligned();
                    let addr = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                    found = Some(IpAddr::V4(addr));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if len
                        >= libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as usize =>
                {
                    let info = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    found = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    found
}

/// The segment size of a coalesced receive, in the control messages `recvmsg` filled
/// in.
fn gro_segment(msg: &libc::msghdr) -> Option<usize> {
    let mut found = None;
    // SAFETY: as in `packet_info`: the control bytes are the kernel's, walked with the
    // CMSG_* macros within msg_controllen, the payload read unaligned by value when
    // level, type and length say it is an int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = cmsg.read_unaligned();
            let size = libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize;
            if header.cmsg_level == libc::SOL_UDP
                && header.cmsg_type == UDP_GRO
                && header.cmsg_len as usize >= size
            {
                let segment = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                found = usize::try_from(segment).ok().filter(|s| *s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    found
}

/// A `sockaddr_storage` the kernel filled in, as a std address.
fn sockaddr_to_std(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say the storage holds a sockaddr_in; the
            // storage is larger and suitably aligned for it.
            let sin =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// One datagram to send: its bytes, where to (`None` on a connected socket), and from
/// which local address (`None`: the kernel's choice).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) to: Option<SocketAddr>,
    pub(crate) from: Option<IpAddr>,
    /// GSO (`UDP_SEGMENT`): `data` is several datagrams of this size (the last may be
    /// shorter), sent with one call and split by the kernel or the device.
    pub(crate) segment: Option<u16>,
}

/// The most datagrams [`send_mmsg`] passes in one call.
pub(crate) const SEND_BATCH: usize = 32;

/// A socket address as the kernel takes it, written in place: a `sockaddr_in` or a
/// `sockaddr_in6`, not a 128-byte storage to clear for each datagram.
#[repr(C)]
#[derive(Clone, Copy)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    /// `addr` and the length of its form.
    #[inline]
    fn new(addr: SocketAddr) -> (RawAddr, libc::socklen_t) {
        match addr {
            SocketAddr::V4(a) => (
                RawAddr {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*a.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    },
                },
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SocketAddr::V6(a) => (
                RawAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (self as *const RawAddr).cast()
    }
}

/// Points `msg` at `control` holding an `IP_PKTINFO` / `IPV6_PKTINFO` control message
/// for `from` and a `UDP_SEGMENT` one for `segment`; leaves `msg` without control
/// messages (and `control` untouched) when neither is given. `control` must stay
/// where it is while `msg` is used.
fn set_control(
    msg: &mut libc::msghdr,
    control: &mut mem::MaybeUninit<ControlBuf>,
    from: Option<IpAddr>,
    segment: Option<u16>,
) {
    if from.is_none() && segment.is_none() {
        return;
    }
    let control = control.write(ControlBuf([0; 128]));
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    let mut used = 0;
    // SAFETY: msg_control points to the 128-byte, 8-aligned control buffer and
    // msg_controllen says so while the messages are written; a pktinfo and a
    // UDP_SEGMENT message take at most 40 + 24 bytes, so each header and payload
    // written through CMSG_FIRSTHDR / CMSG_NXTHDR / CMSG_DATA stays in it (the buffer
    // is zeroed, as CMSG_NXTHDR expects).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        if let Some(from) = from {
            used += write_pktinfo(cmsg, from);
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
        if let Some(segment) = segment {
            let size = mem::size_of::<u16>() as u32;
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
            libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(segment);
            used += libc::CMSG_SPACE(size);
        }
    }
    msg.msg_controllen = used as _;
}

/// A `msghdr` for one outgoing datagram: its destination in `name` (none on a
/// connected socket), its bytes through `iov`, its control messages in `control`.
/// The three must stay where they are while the header is used.
fn out_msghdr(
    out: &Outgoing<'_>,
    name: &mut mem::MaybeUninit<RawAddr>,
    iov: &mut mem::MaybeUninit<libc::iovec>,
    control: &mut mem::MaybeUninit<ControlBuf>,
) -> libc::msghdr {
    // SAFETY: msghdr is plain integers and pointers; all-zero (null, 0) is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    if let Some(to) = out.to {
        let (addr, len) = RawAddr::new(to);
        msg.msg_name = name.write(addr) as *mut RawAddr as *mut libc::c_void;
        msg.msg_namelen = len;
    }
    msg.msg_iov = iov.write(libc::iovec {
        iov_base: out.data.as_ptr().cast_mut().cast(),
        iov_len: out.data.len(),
    });
    msg.msg_iovlen = 1;
    set_control(&mut msg, control, out.from, out.segment);
    msg
}

/// Writes an `IP_PKTINFO` or `IPV6_PKTINFO` control message asking for source
/// address `from` at `cmsg`; returns the room it takes.
///
/// # Safety
///
/// `cmsg` must point to a control-message header in a writable buffer with room for
/// `CMSG_SPACE(size_of::<in6_pktinfo>())` bytes from it.
unsafe fn write_pktinfo(cmsg: *mut libc::cmsghdr, from: IpAddr) -> u32 {
    // SAFETY: the caller provides the room; the payload is written unaligned.
    unsafe {
        match from {
            IpAddr::V4(ip) => {
                let size = mem::size_of::<libc::in_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::in_pktinfo>()
                    .write_unaligned(info);
                libc::CMSG_SPACE(size)
            }
            IpAddr::V6(ip) => {
                let size = mem::size_of::<libc::in6_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::in6_pktinfo>()
                    .write_unaligned(info);
                libc::CMSG_SPACE(size)
            }
        }
    }
}

/// Sends one datagram (or, with `segment`, a GSO train): to `to` (`None` on a
/// connected socket), from the local address `from` when given (an `IP_PKTINFO` /
/// `IPV6_PKTINFO` control message: the reply of a wildcard-bound server leaves from
/// the address the request came to). With neither a source nor a segment size it is a
/// plain `sendto`; else a `sendmsg` with its control messages.
pub(crate) fn send_msg(socket: &impl AsRawFd, out: &Outgoing<'_>) -> io::Result<usize> {
    if out.from.is_none() && out.segment.is_none() {
        return send_to_plain(socket, out.data, out.to);
    }
    let (mut name, mut iov, mut control) = (
        mem::MaybeUninit::uninit(),
        mem::MaybeUninit::uninit(),
        mem::MaybeUninit::uninit(),
    );
    let msg = out_msghdr(out, &mut name, &mut iov, &mut control);
    // SAFETY: every pointer in `msg` points into `name`, `iov`, `control` (written by
    // `out_msghdr` where it points) or `out.data`, with the lengths given next to them,
    // all outliving the call; the kernel only reads them.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// An array whose elements are written before they are read.
fn uninit_array<T, const N: usize>() -> [mem::MaybeUninit<T>; N] {
    // SAFETY: an array of `MaybeUninit` is valid uninitialized: each element says
    // itself whether it holds a value.
    unsafe { mem::MaybeUninit::uninit().assume_init() }
}

/// Sends up to [`SEND_BATCH`] datagrams of `batch` with one `sendmmsg`, each as
/// [`send_msg`] would. Returns how many the kernel took, from the first on; an error
/// means the first was not sent (the error of a later one comes back with the next
/// call). The headers are on the stack and only what each datagram uses is written:
/// its address in its own form, its iovec, and control messages only when it has a
/// source address or a segment size.
pub(crate) fn send_mmsg<'a>(
    socket: &impl AsRawFd,
    batch: impl IntoIterator<Item = Outgoing<'a>>,
) -> io::Result<usize> {
    let mut names = uninit_array::<RawAddr, SEND_BATCH>();
    let mut iovs = uninit_array::<libc::iovec, SEND_BATCH>();
    let mut controls = uninit_array::<ControlBuf, SEND_BATCH>();
    let mut msgs = uninit_array::<libc::mmsghdr, SEND_BATCH>();
    let mut n = 0;
    for (i, out) in batch.into_iter().take(SEND_BATCH).enumerate() {
        let msg_hdr = out_msghdr(&out, &mut names[i], &mut iovs[i], &mut controls[i]);
        msgs[i].write(libc::mmsghdr {
            msg_hdr,
            msg_len: 0,
        });
        n = i + 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` headers are initialized and point into `names`, `iovs`,
    // `controls` (each written where it is pointed at) and the batch's data, which stay
    // in place and alive for the call; the kernel reads those and writes only each
    // header's `msg_len`.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
            n as _,
            libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_info_on_a_loopback_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let info = tcp_info(&c).unwrap();
        assert!(info.rtt_us > 0 && info.rtt_us < 1_000_000, "{info:?}");
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(tcp_info(&f).is_err());
    }

    #[test]
    fn inherited_listener_rejects_other_fds() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // SAFETY: none of these is adopted: each is refused (asserted) and stays with
        // its owner, or is not open at all.
        unsafe {
            assert!(inherited_listener(f.as_raw_fd()).is_err());
            assert!(inherited_listener(100_000).is_err());
            assert!(inherited_listener(c.as_raw_fd()).is_err());
        }
    }

    #[test]
    fn inherited_listener_adopts_a_listener_it_is_given() {
        use std::os::fd::IntoRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let fd = l.into_raw_fd();
        // SAFETY: `into_raw_fd` gave up the only owner of `fd`.
        let adopted = unsafe { inherited_listener(fd) }.unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
        assert_eq!(adopted.as_raw_fd(), fd);
    }

    #[test]
    fn listen_fds_ignores_variables_meant_for_another_process() {
        // This test process never sets LISTEN_PID to its own id (the adopting path runs
        // in a child: tests/listener.rs), so nothing is adopted here.
        if std::env::var("LISTEN_PID").ok().as_deref() == Some(&std::process::id().to_string()) {
            println!("skipping: this process was given LISTEN_FDS");
            return;
        }
        assert!(listen_fds().unwrap().is_empty());
    }

    #[test]
    fn timerfd_expires_at_the_deadline_not_before() {
        use std::os::fd::AsFd;
        use std::time::Duration;
        let fd = timerfd_monotonic().unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_micros(300);
        timerfd_arm_at(fd.as_fd(), deadline).unwrap();
        let mut ticks = [0u8; 8];
        let mut file = std::fs::File::from(fd);
        loop {
            match std::io::Read::read(&mut file, &mut ticks) {
                Ok(8) => break,
                Ok(n) => panic!("short read of {n}"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(Instant::now() >= deadline);
        assert_eq!(u64::from_ne_bytes(ticks), 1);
    }
}
