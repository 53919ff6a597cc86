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
#![allow(unsafe_code)]

use std::io;
use std::mem;
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
