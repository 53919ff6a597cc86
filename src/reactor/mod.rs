//! The loop: poll, dispatch, timers, cross-thread wake-ups.

mod clock;
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
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};

use crate::error::{stale_handle, Error, SocketErrorStatus};
use crate::io::BufPool;
use crate::net::resolver::Resolver;

use clock::{Clock, CLOCK};
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
/// | writes | queued during a handler call, sent with one `send` or `writev` per socket when it returns |
pub struct Reactor<S: 'static = ()> {
    pub(crate) poll: Poll,
    events: Option<Events>,
    pub(crate) sources: Registry<Source<S>>,
    timers: Timers<TimerAction<S>>,
    /// Wakes the poll at deadlines finer than a millisecond.
    clock: Clock,
    pub(crate) config: Config,
    pub(crate) scratch: Vec<u8>,
    pub(crate) pool: BufPool,
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
            pool: BufPool::new(config.pool_chunks),
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
        loop {
            // Work deferred outside any handler (a `close` made before `run`) may end
            // the last source: do it before deciding to wait.
            self.after_dispatch(state);
            self.resume_panic();
            if self.stopped || self.shared.take_stop() || self.live == 0 {
                break;
            }
            self.turn(state, None)?;
        }
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
    /// (50 µs by default, or 0.1% of the wait if more). A signal interrupting the poll
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
        let immediate =
            no_wait || had_deferred || !self.ready.is_empty() || !self.deferred.is_empty();
        // Sources that went over their budget last turn are served after this turn's
        // events; those that go over budget now wait for the next turn, so a budget is
        // per turn.
        let carried = std::mem::take(&mut self.ready);
        let mut events = self
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(self.config.event_capacity));
        let polled = self.poll_and_dispatch(state, &mut events, until, immediate);
        self.events = Some(events);
        let count = match polled {
            Ok(count) => count,
            Err(e) => {
                self.ready = carried;
                if e.kind() == std::io::ErrorKind::Interrupted {
                    return Ok(0);
                }
                return Err(Error::from_io("poll", e));
            }
        };
        self.stats.events += count as u64;
        self.serve_ready(state, carried);
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

    /// Polls until kernel events come or a deadline (`until`, or the earliest timer's)
    /// is reached, and dispatches the events; returns how many there were. The clock's
    /// own event is not one: a wake-up by the clock alone before any deadline (an arming
    /// left by a cancelled timer) polls again, so a turn never ends early.
    fn poll_and_dispatch(
        &mut self,
        state: &mut S,
        events: &mut Events,
        until: Option<Instant>,
        immediate: bool,
    ) -> std::io::Result<usize> {
        loop {
            let wait = if immediate {
                Some(Duration::ZERO)
            } else {
                let deadline = match (until, self.timers.next_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.clock
                    .wait_for(&self.poll, deadline, &mut self.stats.timer_arms)
            };
            self.stats.turns += 1;
            self.poll.poll(events, wait)?;
            let mut count = 0;
            for event in events.iter() {
                if event.token() != CLOCK {
                    count += 1;
                    self.dispatch(state, event);
                }
            }
            if count > 0 || immediate {
                return Ok(count);
            }
            let now = Instant::now();
            let reached = |d: Option<Instant>| d.is_some_and(|d| d <= now);
            if reached(until) || reached(self.timers.next_deadline()) {
                return Ok(0);
            }
        }
    }

    fn dispatch(&mut self, state: &mut S, event: &mio::event::Event) {
        let token = event.token();
        if token == WAKER {
            self.woken(state);
            return;
        }
        match self.sources.key_of(token) {
            Some(key) if self.source_ready(state, key, event) => self.after_dispatch(state),
            _ => self.stats.stale_events += 1,
        }
    }

    /// Serves the sources that used up their budget last turn.
    fn serve_ready(&mut self, state: &mut S, mut ready: Vec<Key>) {
        if ready.is_empty() {
            return;
        }
        for key in ready.drain(..) {
            self.source_serve(state, key);
            self.after_dispatch(state);
        }
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn fire_timers(&mut self, state: &mut S) {
        // No clock read on turns without timers (the common case for a busy socket).
        if self.timers.next_deadline().is_none() {
            return;
        }
        let now = Instant::now();
        while let Some((key, action)) = self.timers.pop_expired(now) {
            match action {
                TimerAction::User(mut f) => {
                    let returned = self.in_handler(|r| f(r, state, TimerId(key))).is_some();
                    if !self.timers.contains(key, Owner::User) {
                        // Cancelled from inside its own callback.
                    } else if !returned {
                        // A timer whose callback panicked is dropped, even if re-armed.
                        self.timers.cancel(key, Owner::User);
                        self.live -= 1;
                    } else if self.timers.deadline(key, Owner::User).is_none() {
                        self.live -= 1;
                    }
                    self.timers.finish(key, TimerAction::User(f));
                }
                TimerAction::Source(source, timer) => {
                    self.timers.finish(key, TimerAction::Source(source, timer));
                    self.source_timer(state, source, timer);
                }
            }
            self.after_dispatch(state);
        }
    }

    /// Sends what handlers queued and runs deferred work, until neither is left.
    #[inline]
    pub(crate) fn after_dispatch(&mut self, state: &mut S) {
        // Called after every handler and several times a turn, usually with nothing
        // to do: keep that check out of the call.
        if !self.dirty.is_empty() || !self.deferred.is_empty() {
            self.run_after_dispatch(state);
        }
    }

    fn run_after_dispatch(&mut self, state: &mut S) {
        loop {
            if let Some(key) = self.dirty.pop() {
                self.source_flush(key);
            } else if let Some(work) = self.deferred.pop_front() {
                match work {
                    Deferred::Finish(key, result) => self.source_finish(state, key, result),
                    Deferred::Drained(key) => self.source_drained(state, key),
                }
            } else {
                return;
            }
        }
    }

    fn woken(&mut self, state: &mut S) {
        self.resolved();
        // Only the jobs posted so far: a job that posts another (a "yield") must not
        // keep this turn going forever; the later one runs next turn (its post woke
        // the poller again).
        // Taken through a kept list, so that a wake-up allocates nothing.
        let mut jobs = std::mem::take(&mut self.jobs);
        jobs.extend(self.posted_rx.try_iter());
        for job in jobs.drain(..) {
            self.in_handler(|r| job(r, state));
            self.after_dispatch(state);
        }
        self.jobs = jobs;
        if self.shared.take_stop() {
            self.stopped = true;
        }
    }

    /// Runs `call` (a user handler) with the reactor marked as dispatching, so that
    /// writes made inside are batched and `turn`/`run` are refused. A panic is caught
    /// here, at the handler's boundary, so that every frame of the dispatch below puts
    /// back what it took out: `None` tells the caller to close the source whose
    /// handler panicked. The panic itself is resumed at the end of the turn, or logged
    /// (see [`Builder::catch_handler_panics`]).
    pub(crate) fn in_handler<R>(&mut self, call: impl FnOnce(&mut Self) -> R) -> Option<R> {
        let was = std::mem::replace(&mut self.dispatching, true);
        let result = catch_unwind(AssertUnwindSafe(|| call(self)));
        self.dispatching = was;
        match result {
            Ok(r) => Some(r),
            Err(payload) => {
                self.handler_panicked(payload);
                None
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn handler_panicked(&mut self, payload: Box<dyn Any + Send>) {
        self.stats.handler_panics += 1;
        if self.config.catch_panics || self.panic.is_some() {
            log::error!("a handler panicked: {}", panic_message(&*payload));
        } else {
            self.panic = Some(payload);
        }
    }

    /// Resumes a handler's panic, once nothing of the turn is left half done.
    #[inline]
    fn resume_panic(&mut self) {
        if let Some(payload) = self.panic.take() {
            resume_unwind(payload);
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

/// The message of a panic's payload, if it has one.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The error a source whose handler panicked is closed with.
#[cold]
pub(crate) fn panicked(operation: &'static str) -> Error {
    Error::new(SocketErrorStatus::HandlerPanicked, operation)
        .with_detail("the handler panicked; the socket was closed")
}

fn inside_handler(operation: &'static str) -> Error {
    Error::new(SocketErrorStatus::InvalidState, operation)
        .with_detail("called from inside a handler, which would run handlers inside handlers")
}
