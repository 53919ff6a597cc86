//! Foreign file descriptors (a pipe, stdin, a serial port, a timerfd) on the reactor.

use std::fmt;
use std::os::fd::RawFd;

use mio::unix::SourceFd;

use super::{stale, Key, Reactor, Source};
use crate::error::Error;

/// Sets or clears `O_NONBLOCK` on a descriptor, so that an edge-triggered handler can
/// read it until `WouldBlock` (stdin and pipes are blocking by default).
///
/// The flag belongs to the open file description: it is shared with every process
/// using the same terminal or pipe. Clear it again before exiting.
///
/// # Errors
///
/// When `fcntl` fails.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// let (reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
/// sockloop::set_nonblocking(reader.as_fd(), true)?;
/// # Ok::<(), sockloop::Error>(())
/// ```
pub fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> Result<(), Error> {
    crate::io::sys::set_nonblocking(fd, on).map_err(|e| Error::from_io("set non-blocking", e))
}

/// Which readiness to wait for on a foreign fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable.
    Readable,
    /// Writable.
    Writable,
    /// Both.
    Both,
}

impl Interest {
    fn to_mio(self) -> mio::Interest {
        match self {
            Interest::Readable => mio::Interest::READABLE,
            Interest::Writable => mio::Interest::WRITABLE,
            Interest::Both => mio::Interest::READABLE | mio::Interest::WRITABLE,
        }
    }
}

/// Readiness of a foreign fd, as reported by the kernel.
///
/// Readiness is edge-triggered: after an event, read (or write) until the call returns
/// `WouldBlock`, or no new event will come for data that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FdEvent {
    /// Data can be read (or a read returns end of file).
    pub readable: bool,
    /// Data can be written.
    pub writable: bool,
    /// The other end closed (hang-up or end of file).
    pub closed: bool,
    /// An error is pending on the fd.
    pub error: bool,
}

impl FdEvent {
    pub(crate) fn from_mio(e: &mio::event::Event) -> FdEvent {
        FdEvent {
            readable: e.is_readable(),
            writable: e.is_writable(),
            closed: e.is_read_closed() || e.is_write_closed(),
            error: e.is_error(),
        }
    }
}

/// A handle to a foreign fd registered with [`Reactor::register_fd`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdSource(pub(crate) Key);

impl fmt::Debug for FdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FdSource({}v{})", self.0.index, self.0.gen)
    }
}

type FdHandler<S> = Box<dyn FnMut(&mut Reactor<S>, &mut S, FdSource, FdEvent)>;

pub(crate) struct FdState<S: 'static> {
    fd: RawFd,
    handler: Option<FdHandler<S>>,
}

impl<S: 'static> FdState<S> {
    pub(crate) fn deregister(&self, poll: &mio::Poll) {
        let _ = poll.registry().deregister(&mut SourceFd(&self.fd));
    }
}

impl<S: 'static> Reactor<S> {
    /// Watches a file descriptor the reactor does not own (a pipe, stdin, a serial
    /// port, an eventfd) and calls `handler` when it becomes ready.
    ///
    /// The caller keeps `fd` open until [`deregister_fd`](Reactor::deregister_fd).
    /// Readiness is edge-triggered: the handler reads until `WouldBlock`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::fd::AsRawFd;
    /// use std::os::unix::net::UnixStream;
    /// use sockloop::{Interest, Reactor};
    ///
    /// let (mut a, b) = UnixStream::pair().unwrap();
    /// b.set_nonblocking(true).unwrap();
    /// let mut reactor = Reactor::<Vec<u8>>::new()?;
    /// reactor.register_fd(b.as_raw_fd(), Interest::Readable, move |reactor, got, source, _event| {
    ///     let mut buf = [0; 64];
    ///     while let Ok(n) = (&b).read(&mut buf) {
    ///         if n == 0 { break; }
    ///         got.extend_from_slice(&buf[..n]);
    ///     }
    ///     reactor.deregister_fd(source).unwrap();
    /// })?;
    /// a.write_all(b"ping").unwrap();
    /// let mut got = Vec::new();
    /// reactor.run(&mut got)?;
    /// assert_eq!(got, b"ping");
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When epoll refuses the fd (a regular file, a closed fd: `NotSupported`, `InvalidHandle`).
    pub fn register_fd(
        &mut self,
        fd: RawFd,
        interest: Interest,
        handler: impl FnMut(&mut Reactor<S>, &mut S, FdSource, FdEvent) + 'static,
    ) -> Result<FdSource, Error> {
        let key = self.sources.insert(Source::Fd(FdState {
            fd,
            handler: Some(Box::new(handler)),
        }));
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), key.token(), interest.to_mio())
        {
            self.sources.remove(key);
            return Err(Error::from_io("register fd", e).with_detail(format!("fd {fd}")));
        }
        self.live += 1;
        Ok(FdSource(key))
    }

    /// Stops watching a foreign fd; the fd itself stays open.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if it was already deregistered.
    pub fn deregister_fd(&mut self, source: FdSource) -> Result<(), Error> {
        match self.sources.get(source.0) {
            Some(Source::Fd(_)) => {
                if let Some(Source::Fd(fd)) = self.sources.remove(source.0) {
                    fd.deregister(&self.poll);
                    self.live -= 1;
                }
                Ok(())
            }
            _ => Err(stale("deregister fd")),
        }
    }

    pub(crate) fn fd_event(&mut self, state: &mut S, key: Key, event: FdEvent) {
        let Some(Source::Fd(fd)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(mut handler) = fd.handler.take() else {
            return;
        };
        let returned = self
            .in_handler(|r| handler(r, state, FdSource(key), event))
            .is_some();
        if let Some(Source::Fd(fd)) = self.sources.get_mut(key) {
            fd.handler.get_or_insert(handler);
            if !returned {
                // Deregistered, as if its handler had called `deregister_fd`.
                self.deferred.push_back(super::Deferred::Finish(
                    key,
                    Err(super::panicked("fd handler")),
                ));
            }
        }
    }
}
