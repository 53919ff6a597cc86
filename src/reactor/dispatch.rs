//! One turn of the loop: poll, dispatch to the sources' kinds, serve what is ready, fire
//! timers, run deferred work; and the handler boundary, where panics are caught.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mio::Events;

use super::clock::{CLOCK, LENIENCE};
use super::registry::WAKER;
use super::timer::Owner;
use super::{Deferred, Key, Reactor, TimerAction, TimerId};
use crate::error::{Error, SocketErrorStatus};

impl<S: 'static> Reactor<S> {
    /// Polls until kernel events come or a deadline (`until`, or the earliest timer's)
    /// is reached, and dispatches the events; returns how many there were. The clock's
    /// own event is not one: a wake-up by the clock alone before any deadline (an arming
    /// left by a cancelled timer) polls again, so a turn never ends early.
    #[inline(always)]
    pub(super) fn poll_and_dispatch(
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
                // The reactor's own timers (timeouts, retries) may fire up to a
                // millisecond late when they are the only deadline that near: a
                // far one then needs no timerfd arming.
                let (deadline, lenient) = match (until, self.timers.next_deadline()) {
                    (Some(a), Some(b)) => (
                        Some(a.min(b)),
                        !self.timers.has_user_timers() && b + LENIENCE <= a,
                    ),
                    (None, Some(b)) => (Some(b), !self.timers.has_user_timers()),
                    (a, None) => (a, false),
                };
                self.clock
                    .wait_for(&self.poll, deadline, lenient, &mut self.stats.timer_arms)
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

    #[inline(always)]
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
    #[inline(never)]
    pub(super) fn serve_ready(&mut self, state: &mut S, mut ready: Vec<Key>) {
        for key in ready.drain(..) {
            self.source_serve(state, key);
            self.after_dispatch(state);
        }
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    #[inline(always)]
    pub(super) fn fire_timers(&mut self, state: &mut S) {
        // No clock read on turns without timers (the common case for a busy socket).
        if self.timers.next_deadline().is_some() {
            self.fire_expired(state);
        }
    }

    #[inline(never)]
    fn fire_expired(&mut self, state: &mut S) {
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
    #[inline(always)]
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
    #[inline(always)]
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
    pub(super) fn resume_panic(&mut self) {
        // Tested without `take`, which would write the field back on every turn.
        if self.panic.is_some() {
            self.resume_panic_now();
        }
    }

    #[cold]
    #[inline(never)]
    fn resume_panic_now(&mut self) {
        if let Some(payload) = self.panic.take() {
            resume_unwind(payload);
        }
    }
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
