//! Other file descriptors (a pipe, stdin, a serial port, a timerfd) on the reactor,
//! owned by it while registered.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use mio::unix::SourceFd;

use super::{Key, Kind, Reactor, Source};
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

/// A registered value and its handler, boxed together: the reactor owns both.
trait OwnedFd<S: 'static> {
    /// The descriptor, borrowed from the owned value.
    fn fd(&self) -> BorrowedFd<'_>;
    fn call(&mut self, reactor: &mut Reactor<S>, state: &mut S, source: FdSource, event: FdEvent);
}

struct Owned<F, H> {
    io: F,
    handler: H,
}

impl<S, F, H> OwnedFd<S> for Owned<F, H>
where
    S: 'static,
    F: AsFd,
    H: FnMut(&mut Reactor<S>, &mut S, FdSource, &mut F, FdEvent),
{
    fn fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }

    fn call(&mut self, reactor: &mut Reactor<S>, state: &mut S, source: FdSource, event: FdEvent) {
        (self.handler)(reactor, state, source, &mut self.io, event);
    }
}

pub(crate) struct FdState<S: 'static> {
    /// `None` while its handler runs (dispatch holds it).
    owned: Option<Box<dyn OwnedFd<S>>>,
}

impl<S: 'static> FdState<S> {
    /// Stops watching and drops the owned value (closing its descriptor, if it was the
    /// last owner). While the handler runs, the dispatch does both when it returns.
    pub(crate) fn close(self, poll: &mio::Poll) {
        if let Some(owned) = self.owned {
            deregister(poll, &*owned);
        }
    }
}

/// Deregisters through the owned value, so the number is one the reactor holds open:
/// never a descriptor that was closed and reused by another socket since.
fn deregister<S: 'static>(poll: &mio::Poll, owned: &dyn OwnedFd<S>) {
    let raw = owned.fd().as_raw_fd();
    let _ = poll.registry().deregister(&mut SourceFd(&raw));
}

impl<S: 'static> Reactor<S> {
    /// Watches a file descriptor (a pipe, stdin, a serial port, an eventfd) and calls
    /// `handler` when it becomes ready.
    ///
    /// The reactor takes `io`, the value that owns the descriptor, and keeps it until
    /// [`deregister_fd`](Reactor::deregister_fd) (or until the handler panics, or the
    /// reactor is dropped), then drops it, closing the descriptor if `io` was its last
    /// owner; the handler gets `&mut io` with each event. Whatever happens to the
    /// descriptor meanwhile, the reactor never acts on a number it does not hold open.
    /// To keep the descriptor past deregistration, register a shared owner (an
    /// `Rc<UnixStream>`, `&'static T`, or `std::io::Stdin`, which never closes fd 0).
    ///
    /// Readiness is edge-triggered: the handler reads until `WouldBlock`. A value that
    /// epoll refuses is dropped with the error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use sockloop::{Interest, Reactor};
    ///
    /// let (mut a, b) = UnixStream::pair().unwrap();
    /// b.set_nonblocking(true).unwrap();
    /// let mut reactor = Reactor::<Vec<u8>>::new()?;
    /// reactor.register_fd(b, Interest::Readable, |reactor, got, source, b, _event| {
    ///     let mut buf = [0; 64];
    ///     while let Ok(n) = b.read(&mut buf) {
    ///         if n == 0 { break; }
    ///         got.extend_from_slice(&buf[..n]);
    ///     }
    ///     reactor.deregister_fd(source).unwrap(); // drops `b`, closing it
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
    /// When epoll refuses the descriptor (a regular file: `NotSupported`; one already
    /// registered on this reactor).
    pub fn register_fd<F>(
        &mut self,
        io: F,
        interest: Interest,
        handler: impl FnMut(&mut Reactor<S>, &mut S, FdSource, &mut F, FdEvent) + 'static,
    ) -> Result<FdSource, Error>
    where
        F: AsFd + 'static,
    {
        let raw = io.as_fd().as_raw_fd();
        let owned: Box<dyn OwnedFd<S>> = Box::new(Owned { io, handler });
        let key = self.insert_source(Source::Fd(FdState { owned: None }))?;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&raw), key.token(), interest.to_mio())
        {
            self.remove_source(key);
            return Err(Error::from_io("register fd", e).with_detail(format!("fd {raw}")));
        }
        if let Some(Source::Fd(fd)) = self.sources.get_mut(key) {
            fd.owned = Some(owned);
        }
        Ok(FdSource(key))
    }

    /// Stops watching a registered descriptor and drops the value that owns it.
    ///
    /// From inside the descriptor's own handler, the value is dropped when the handler
    /// returns (it is borrowed until then).
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if it was already deregistered.
    pub fn deregister_fd(&mut self, source: FdSource) -> Result<(), Error> {
        match self.sources.get(source.0) {
            Some(Source::Fd(_)) => {
                if let Some(Source::Fd(fd)) = self.remove_source(source.0) {
                    fd.close(&self.poll);
                }
                Ok(())
            }
            _ => Err(crate::error::stale_handle("FdSource", "deregister fd")),
        }
    }

    fn fd_event(&mut self, state: &mut S, key: Key, event: FdEvent) {
        let Some(Source::Fd(fd)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(mut owned) = fd.owned.take() else {
            return;
        };
        let returned = self
            .in_handler(|r| owned.call(r, state, FdSource(key), event))
            .is_some();
        if let Some(Source::Fd(fd)) = self.sources.get_mut(key) {
            fd.owned = Some(owned);
            if !returned {
                // Deregistered, as if its handler had called `deregister_fd`.
                self.finish_later(key, Err(super::panicked("fd handler")));
            }
        } else {
            // Deregistered by its own handler: finish the job with the value in hand.
            deregister(&self.poll, &*owned);
        }
    }
}

/// Descriptors registered with [`Reactor::register_fd`], as the loop sees them.
pub(crate) struct FdKind;

impl<S: 'static> Kind<S> for FdKind {
    fn ready(r: &mut Reactor<S>, state: &mut S, key: Key, event: &mio::event::Event) {
        r.fd_event(state, key, FdEvent::from_mio(event));
    }

    fn finish(r: &mut Reactor<S>, _state: &mut S, key: Key, _result: Result<(), Error>) {
        if let Some(Source::Fd(fd)) = r.remove_source(key) {
            fd.close(&r.poll);
        }
    }
}
