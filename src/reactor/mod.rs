//! The loop: poll, dispatch, timers, cross-thread wake-ups.

mod builder;
mod clock;
mod dispatch;
mod fd;
pub(crate) mod registry;
mod remote;
mod source;
#[cfg(test)]
mod tests;
pub(crate) mod timer;

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};

use crate::error::{stale_handle, Error, SocketErrorStatus};
use crate::io::stage::Stage;
use crate::io::BufPool;
use crate::net::resolver::Resolver;

pub(crate) use builder::Config;
pub use builder::{Builder, Stats};
use clock::Clock;
pub(crate) use dispatch::panicked;
pub use fd::{set_nonblocking, FdEvent, FdSource, Interest};
pub(crate) use registry::Key;
use registry::{Registry, WAKER};
pub use remote::Remote;
use remote::{Posted, Shared};
pub(crate) use source::{Kind, Source, SourceTimer};
use timer::{Owner, Timers};

/// A timer handle: a slot index and the slot's version, `Copy`, cheap to store.
///
/// Returned by [`Reactor::set_timer`]; stale once the timer has fired (unless it was
/// re-armed from its own callback) or was cancelled. A stale id never names a later
/// timer, and no id ever reaches the reactor's own timers (connect timeouts, linger).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) Key);

impl fmt::Debug for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerId({}v{})", self.0.index, self.0.gen)
    }
}

type TimerFn<S> = Box<dyn FnMut(&mut Reactor<S>, &mut S, TimerId)>;

/// What a timer does when it fires: a user callback, or one of a source's own.
pub(crate) enum TimerAction<S: 'static> {
    User(TimerFn<S>),
    Source(Key, SourceTimer),
}

/// Work that must wait until no handler is running.
enum Deferred {
    /// Remove a socket and deliver its `Closed` event.
    Finish(Key, Result<(), Error>),
    /// Deliver `Drained`.
    Drained(Key),
}

/// The event loop: owns the poller, every socket, timer and handler.
///
/// `S` is the application state, passed to every handler as `&mut S` by
/// [`run`](Reactor::run) and [`turn`](Reactor::turn), so handlers share state without
/// `Rc<RefCell<_>>`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sockloop::Reactor;
///
/// let mut reactor = Reactor::<u32>::new()?;
/// reactor.set_timer(Duration::from_millis(1), |_reactor, fired, _id| *fired += 1);
/// let mut fired = 0;
/// reactor.run(&mut fired)?; // returns when nothing is left to wait for
/// assert_eq!(fired, 1);
/// # Ok::<(), sockloop::Error>(())
/// ```
///
/// # Implementation notes
///
/// | what | how |
/// | --- | --- |
/// | readiness | edge-triggered (epoll through mio); sockets are read to `WouldBlock`, or to a short read, within a per-turn budget |
/// | spurious events | harmless: a read or write that would block just ends the step |
/// | stale events | tokens carry a generation; an event for a closed socket is dropped |
/// | writes | queued during a handler call, sent with one `send` or `writev` per socket when it returns; the writes of a socket's handler to that socket, while nothing else is queued on it, are staged in one reactor-wide buffer rather than the socket's queue (one copy, no lookup) |
pub struct Reactor<S: 'static = ()> {
    pub(crate) poll: Poll,
    events: Option<Events>,
    pub(crate) sources: Registry<Source<S>>,
    timers: Timers<TimerAction<S>>,
    /// Wakes the poll at deadlines finer than a millisecond.
    clock: Clock,
    pub(crate) config: Config,
    pub(crate) scratch: Vec<u8>,
    /// Batched datagram receives: `sys::RECV_BATCH` slots of the scratch buffer's
    /// size, allocated by the first datagram socket that batches.
    pub(crate) datagram_slots: Vec<u8>,
    /// What each batched receive read into the slots (filled once, reused).
    pub(crate) datagram_received: Vec<crate::io::sys::Received>,
    /// The headers of batched receives, made with the slots and reused.
    pub(crate) datagram_headers: Option<Box<crate::io::sys::RecvHeaders>>,
    pub(crate) pool: BufPool,
    /// Writes of the stream being served, staged until its handler returns.
    pub(crate) stage: Stage,
    /// Sources to serve again next turn without a kernel event.
    ready: Vec<Key>,
    /// Streams written during the current handler call.
    dirty: Vec<Key>,
    deferred: VecDeque<Deferred>,
    pub(crate) resolver: Option<Resolver>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    posted_tx: mpsc::Sender<Posted<S>>,
    posted_rx: mpsc::Receiver<Posted<S>>,
    /// The jobs being run by a wake-up (empty between wake-ups, capacity kept).
    jobs: Vec<Posted<S>>,
    /// Sources visible to the user (sockets, fds) plus user timers.
    live: usize,
    dispatching: bool,
    stopped: bool,
    stats: Stats,
    /// A handler's panic, to resume once the turn's work is done.
    panic: Option<Box<dyn Any + Send>>,
}

impl<S: 'static> fmt::Debug for Reactor<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("sources", &self.sources.len())
            .field("timers", &self.timers.len())
            .field("live", &self.live)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S: 'static> Reactor<S> {
    /// A reactor with the default tuning.
    ///
    /// # Errors
    ///
    /// When the system refuses an epoll instance or an eventfd.
    pub fn new() -> Result<Reactor<S>, Error> {
        Builder::default().build()
    }

    /// A builder to tune buffer sizes, budgets and watermarks.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn with_config(config: Config) -> Result<Reactor<S>, Error> {
        let poll = Poll::new().map_err(|e| Error::from_io("create poller", e))?;
        let waker =
            Waker::new(poll.registry(), WAKER).map_err(|e| Error::from_io("create waker", e))?;
        let (posted_tx, posted_rx) = mpsc::channel();
        Ok(Reactor {
            poll,
            events: Some(Events::with_capacity(config.event_capacity)),
            sources: Registry::new(),
            timers: Timers::new(),
            clock: Clock::default(),
            scratch: vec![0; config.scratch_size],
            datagram_slots: Vec::new(),
            datagram_received: Vec::new(),
            datagram_headers: None,
            pool: BufPool::new(config.pool_chunks),
            stage: Stage::new(config.high_watermark, config.write_limit),
            config,
            ready: Vec::new(),
            dirty: Vec::new(),
            deferred: VecDeque::new(),
            resolver: None,
            waker: Arc::new(waker),
            shared: Arc::new(Shared::default()),
            posted_tx,
            posted_rx,
            jobs: Vec::new(),
            live: 0,
            dispatching: false,
            stopped: false,
            stats: Stats::default(),
            panic: None,
        })
    }

    /// Runs until [`stop`](Reactor::stop) is called (here or through a [`Remote`]) or
    /// nothing is left to wait for: no socket, no registered fd, no timer.
    ///
    /// # Errors
    ///
    /// When polling fails, or when called from inside a handler.
    pub fn run(&mut self, state: &mut S) -> Result<(), Error> {
        if self.dispatching {
            return Err(inside_handler("run"));
        }
        // Work deferred outside any handler (a `close` made before `run`) may end
        // the last source: do it before deciding to wait. Each turn ends the same
        // way (a turn cut short by a signal dispatched nothing), so the loop does
        // not do it again.
        self.after_dispatch(state);
        self.resume_panic();
        // The event list stays here for the whole run rather than going back to the
        // reactor after each turn.
        let mut events = self.take_events();
        let mut result = Ok(());
        loop {
            if self.stopped || self.shared.take_stop() || self.live == 0 {
                break;
            }
            if let Err(e) = self.poll_turn(state, &mut events, None, false) {
                result = Err(e);
                break;
            }
        }
        self.events = Some(events);
        result?;
        self.stopped = false;
        Ok(())
    }

    /// Polls once, waiting at most `timeout` (`None`: until something happens), and
    /// dispatches what happened. Returns the number of kernel events handled.
    ///
    /// # Timing
    ///
    /// A turn that nothing wakes returns once `timeout` has passed, never before; a
    /// timer fires once its deadline has passed, never before. Both are precise to
    /// microseconds, not rounded up to epoll's milliseconds: a wait shorter than 20 ms,
    /// or whose end falls between two milliseconds, is timed by a timerfd, armed once
    /// each time the earliest deadline changes ([`Stats::timer_arms`]). A longer wait
    /// of whole milliseconds (`turn(Some(Duration::from_millis(100)))`) uses epoll's
    /// own timeout and costs nothing extra; the kernel may add its timer slack to it
    /// (50 µs by default, or 0.1% of the wait if more). The reactor's own timers
    /// (connect, linger, idle/read/write and TLS handshake timeouts) are not held to
    /// microseconds: when one is the nearest deadline, at least 20 ms away, and no
    /// timer of the application is set, the wait takes epoll's timeout and may end up
    /// to a millisecond late, costing no arming. A signal interrupting the poll
    /// ends the turn early,
    /// with 0 events.
    ///
    /// For embedding in another loop: wait on [`as_raw_fd`](AsRawFd::as_raw_fd) for
    /// readability and at most [`timeout`](Reactor::timeout), then call
    /// `turn(state, Some(Duration::ZERO))`.
    ///
    /// # Errors
    ///
    /// When polling fails, or when called from inside a handler (which would run
    /// handlers inside handlers).
    pub fn turn(&mut self, state: &mut S, timeout: Option<Duration>) -> Result<usize, Error> {
        if self.dispatching {
            return Err(inside_handler("turn"));
        }
        // The turn's own deadline, from its start: it never returns before it (unless
        // something happens).
        let no_wait = timeout == Some(Duration::ZERO);
        let until = timeout.filter(|t| !t.is_zero()).map(deadline_after);
        // Work left by calls made outside any handler (a `close` or `abort` between
        // turns) runs first. If there was some, handlers may have run (a `Closed` was
        // delivered) and the caller's condition changed: do not block this turn.
        let had_deferred = !self.deferred.is_empty();
        self.after_dispatch(state);
        self.resume_panic();
        let mut events = self.take_events();
        let turned = self.poll_turn(state, &mut events, until, no_wait || had_deferred);
        self.events = Some(events);
        turned
    }

    /// The event list, taken out for a turn or a run (and put back by the caller).
    fn take_events(&mut self) -> Events {
        self.events
            .take()
            .unwrap_or_else(|| Events::with_capacity(self.config.event_capacity))
    }

    /// A turn once the caller has checked that no handler runs and has done the
    /// deferred work: polls (without waiting if `no_wait`, or something is ready or
    /// deferred), dispatches, serves what is ready, fires timers, and ends with the
    /// deferred work. [`run`](Reactor::run)'s loop calls it directly: the previous
    /// turn ended with that work, so its checks would find nothing.
    #[inline(always)]
    fn poll_turn(
        &mut self,
        state: &mut S,
        events: &mut Events,
        until: Option<Instant>,
        no_wait: bool,
    ) -> Result<usize, Error> {
        let immediate = no_wait || !self.ready.is_empty() || !self.deferred.is_empty();
        // Sources that went over their budget last turn are served after this turn's
        // events; those that go over budget now wait for the next turn, so a budget is
        // per turn.
        // (Taken only when there is something: an empty list keeps its capacity in
        // place instead of being dropped with it.)
        let carried = if self.ready.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.ready))
        };
        let polled = self.poll_and_dispatch(state, events, until, immediate);
        let count = match polled {
            Ok(count) => count,
            Err(e) => {
                if let Some(mut carried) = carried {
                    carried.append(&mut self.ready);
                    self.ready = carried;
                }
                if e.kind() == std::io::ErrorKind::Interrupted {
                    return Ok(0);
                }
                return Err(Error::from_io("poll", e));
            }
        };
        self.stats.events += count as u64;
        if let Some(carried) = carried {
            self.serve_ready(state, carried);
        }
        self.fire_timers(state);
        self.after_dispatch(state);
        self.resume_panic();
        Ok(count)
    }

    /// Makes [`run`](Reactor::run) return after the current turn.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// A handle to post work to this reactor and stop it from other threads.
    pub fn remote(&self) -> Remote<S> {
        Remote::new(
            self.posted_tx.clone(),
            self.waker.clone(),
            self.shared.clone(),
        )
    }

    /// How long the reactor may sleep before it has work: until the next timer, zero if
    /// something is ready now, `None` if only kernel events can wake it.
    pub fn timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() || !self.deferred.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadline = self.timers.next_deadline()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Counters of what the reactor did.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Sets a one-shot timer that calls `handler` once `after` has passed, measured
    /// from now. The handler may re-arm the same timer with
    /// [`reset_timer`](Reactor::reset_timer).
    pub fn set_timer(
        &mut self,
        after: Duration,
        handler: impl FnMut(&mut Reactor<S>, &mut S, TimerId) + 'static,
    ) -> TimerId {
        self.set_timer_at(deadline_after(after), handler)
    }

    /// Sets a one-shot timer for an instant.
    pub fn set_timer_at(
        &mut self,
        deadline: Instant,
        handler: impl FnMut(&mut Reactor<S>, &mut S, TimerId) + 'static,
    ) -> TimerId {
        self.live += 1;
        TimerId(
            self.timers
                .insert(deadline, Owner::User, TimerAction::User(Box::new(handler))),
        )
    }

    /// Moves a timer's deadline to `after` from now; from inside its own callback this
    /// re-arms it.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the timer fired (and was not re-armed) or was cancelled.
    pub fn reset_timer(&mut self, id: TimerId, after: Duration) -> Result<(), Error> {
        if self.timers.reset(id.0, Owner::User, deadline_after(after)) {
            Ok(())
        } else {
            Err(stale_handle("TimerId", "reset timer"))
        }
    }

    /// Cancels a timer.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the timer already fired or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> Result<(), Error> {
        match self.timers.cancel(id.0, Owner::User) {
            Some(_) => {
                self.live -= 1;
                Ok(())
            }
            None => Err(stale_handle("TimerId", "cancel timer")),
        }
    }

    /// When a timer is due, or `None` if it is not pending.
    pub fn timer_deadline(&self, id: TimerId) -> Option<Instant> {
        self.timers.deadline(id.0, Owner::User)
    }

    pub(crate) fn cancel_internal_timer(&mut self, key: Option<Key>) {
        if let Some(key) = key {
            self.timers.cancel(key, Owner::Reactor);
        }
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }
}

impl<S: 'static> AsRawFd for Reactor<S> {
    /// The epoll descriptor: readable when the reactor has events to dispatch.
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

impl<S: 'static> AsFd for Reactor<S> {
    /// The epoll descriptor, borrowed from the poller (mio's `AsFd` for `Registry`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.registry().as_fd()
    }
}

/// `after` from now; a duration too long for an `Instant` (`Duration::MAX`: "never")
/// gives a deadline a century away instead of panicking.
fn deadline_after(after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(after.min(CENTURY))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn inside_handler(operation: &'static str) -> Error {
    Error::new(SocketErrorStatus::InvalidState, operation)
        .with_detail("called from inside a handler, which would run handlers inside handlers")
}
