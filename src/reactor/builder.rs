//! Tuning a reactor: the builder, its configuration, and the counters a reactor keeps.

use std::time::Duration;

use super::Reactor;
use crate::error::Error;

/// Tuning of a [`Reactor`], made with [`Reactor::builder`].
///
/// # Examples
///
/// ```
/// let reactor: sockloop::Reactor<()> = sockloop::Reactor::<()>::builder()
///     .event_capacity(256)
///     .read_budget(64 * 1024)
///     .watermarks(16 * 1024, 128 * 1024, 1024 * 1024)
///     .build()?;
/// # let _ = reactor;
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) config: Config,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) event_capacity: usize,
    pub(crate) read_budget: usize,
    pub(crate) accept_budget: usize,
    pub(crate) scratch_size: usize,
    pub(crate) low_watermark: usize,
    pub(crate) high_watermark: usize,
    pub(crate) write_limit: usize,
    pub(crate) inbound_limit: usize,
    pub(crate) linger: Duration,
    pub(crate) pool_chunks: usize,
    pub(crate) catch_panics: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            config: Config {
                event_capacity: 1024,
                read_budget: 256 * 1024,
                accept_budget: 128,
                scratch_size: 64 * 1024,
                low_watermark: 64 * 1024,
                high_watermark: 256 * 1024,
                // Room for one frame of the default codec's maximum (8 MiB) plus its
                // header: any frame the defaults accept can be written back.
                write_limit: 16 * 1024 * 1024,
                inbound_limit: 8 * 1024 * 1024,
                linger: Duration::from_secs(10),
                pool_chunks: 64,
                catch_panics: false,
            },
        }
    }
}

impl Builder {
    /// Events taken from the kernel per poll (default 1024).
    #[must_use]
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.config.event_capacity = n.max(1);
        self
    }

    /// Bytes one socket may read per turn before the others get their go (default
    /// 256 KiB). A socket over budget is served again on the next turn without waiting
    /// for a new kernel event.
    #[must_use]
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.config.read_budget = bytes.max(1);
        self
    }

    /// Connections one listener may accept per turn (default 128).
    #[must_use]
    pub fn accept_budget(mut self, n: usize) -> Self {
        self.config.accept_budget = n.max(1);
        self
    }

    /// Size of the one read buffer all sockets share (default 64 KiB).
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.scratch_size = bytes.max(64);
        self
    }

    /// Write-queue watermarks: over `high`, the socket is flagged; when it falls to
    /// `low` again, the handler gets `Drained`. Over `limit`, `write` fails with
    /// `NoBufferSpaceAvailable` and queues nothing. Defaults: 64 KiB, 256 KiB, 16 MiB
    /// (a frame of [`LengthPrefixed`](crate::framing::LengthPrefixed)'s default maximum,
    /// 8 MiB, fits with room to spare).
    /// All three are capped at 2 GiB per socket.
    #[must_use]
    pub fn watermarks(mut self, low: usize, high: usize, limit: usize) -> Self {
        // Half the queue's range: an encoder that writes more than it announced
        // cannot overflow the count.
        let cap = crate::io::outbound::MAX_QUEUED / 2;
        let high = high.clamp(1, cap);
        self.config.high_watermark = high;
        self.config.low_watermark = low.min(high - 1);
        self.config.write_limit = limit.max(high).min(cap);
        self
    }

    /// The most bytes a socket keeps unconsumed (left by its handler, or received
    /// before it has one); default 8 MiB. A handler that leaves this much without
    /// consuming any gets the socket closed with `MessageTooLong`.
    #[must_use]
    pub fn inbound_limit(mut self, bytes: usize) -> Self {
        self.config.inbound_limit = bytes.max(1);
        self
    }

    /// How long `close` may take to send what is queued (default 10 s). Past it, the
    /// connection is reset and `Closed` reports `ConnectionTimedOut`.
    #[must_use]
    pub fn linger(mut self, timeout: Duration) -> Self {
        self.config.linger = timeout;
        self
    }

    /// What a panicking handler does to the program (default `false`).
    ///
    /// Whatever the setting, a handler that panics (socket, listener, fd, timer or
    /// posted job) never leaves the reactor half-updated: the panic is caught at the
    /// handler's boundary, what the dispatch took out (the read buffer, the socket's
    /// input and handler) is put back, and the source whose handler panicked is closed
    /// with status [`HandlerPanicked`](crate::SocketErrorStatus::HandlerPanicked),
    /// delivered as its one `Closed` event to the same handler (a timer is cancelled,
    /// a registered fd deregistered). Every other socket carries on.
    ///
    /// - `false`: once the turn's work is done, the panic goes on out of
    ///   [`turn`](Reactor::turn) or [`run`](Reactor::run), as if nothing had caught it.
    ///   A caller that catches it (`std::panic::catch_unwind`) may go on using the
    ///   reactor.
    /// - `true`: the panic is logged at error level and counted in
    ///   [`Stats::handler_panics`]; `turn` and `run` go on. What servers usually want:
    ///   one bad connection does not take the others down.
    ///
    /// Either way, what the handler had changed in the application state before it
    /// panicked stays as it was left.
    #[must_use]
    pub fn catch_handler_panics(mut self, catch: bool) -> Self {
        self.config.catch_panics = catch;
        self
    }

    /// Builds the reactor.
    ///
    /// # Errors
    ///
    /// When the system refuses an epoll instance or an eventfd (too many open files).
    pub fn build<S: 'static>(self) -> Result<Reactor<S>, Error> {
        Reactor::with_config(self.config)
    }
}

/// Counters of what the reactor did, for tests and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Polls made.
    pub turns: u64,
    /// Kernel events received.
    pub events: u64,
    /// Events dropped because their socket was closed (and its slot perhaps reused)
    /// before they were dispatched.
    pub stale_events: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// `accept` calls that failed for lack of file descriptors.
    pub accept_fd_exhausted: u64,
    /// Handlers that panicked (each closed its socket, see
    /// [`Builder::catch_handler_panics`]).
    pub handler_panics: u64,
    /// Times the precise clock (a timerfd) was armed: once each time the earliest
    /// deadline changes, unless that deadline is far (20 ms or more) and a whole number
    /// of milliseconds away.
    /// See [`Reactor::turn`].
    pub timer_arms: u64,
}
