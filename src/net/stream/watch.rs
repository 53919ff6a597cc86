//! Idle, read and write (stall) timeouts of a stream.
//!
//! A watched stream has one internal timer, armed for its earliest deadline. Reading
//! or sending bytes only stamps the time in the stream's rarely used part: nothing is
//! pushed into the timer heap per message. When the timer fires, the deadlines are
//! computed again from the stamps; if none has passed, the timer is armed again for
//! the earliest one, so a busy socket costs one timer insertion per timeout period,
//! not one per message.

use std::time::{Duration, Instant};

use super::state::{reset, Cold, Phase, ReadSide, StreamState};
use crate::error::{Error, SocketErrorStatus};
use crate::reactor::{Key, Reactor, Source, SourceTimer};

/// The timeouts of a stream; `None` (or a zero duration) is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) idle: Option<Duration>,
    pub(crate) read: Option<Duration>,
    pub(crate) write: Option<Duration>,
}

impl Timeouts {
    pub(crate) fn any(&self) -> bool {
        self.idle.is_some() || self.read.is_some() || self.write.is_some()
    }
}

/// A zero duration turns a timeout off.
pub(crate) fn nonzero(timeout: Option<Duration>) -> Option<Duration> {
    timeout.filter(|t| !t.is_zero())
}

/// Which timeout, for the error's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Idle,
    Read,
    Write,
}

/// The stamps of a watched stream.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) limits: Timeouts,
    /// When bytes were last received (or receiving resumed, or watching started).
    last_read: Instant,
    /// When the kernel last took bytes of the queue, or the queue stopped being empty.
    last_write: Instant,
    /// The queue was not empty after the last flush: a write stall is being timed.
    pending: bool,
    timer: Option<Key>,
}

impl Watch {
    fn new(limits: Timeouts, now: Instant) -> Watch {
        Watch {
            limits,
            last_read: now,
            last_write: now,
            pending: false,
            timer: None,
        }
    }

    /// The earliest deadline that applies now, and which timeout it is.
    fn next(&self, reading: bool) -> Option<(Instant, Which)> {
        let candidates = [
            self.limits
                .idle
                .map(|t| (self.last_read.max(self.last_write) + t, Which::Idle)),
            self.limits
                .read
                .filter(|_| reading)
                .map(|t| (self.last_read + t, Which::Read)),
            self.limits
                .write
                .filter(|_| self.pending)
                .map(|t| (self.last_write + t, Which::Write)),
        ];
        candidates.into_iter().flatten().min_by_key(|(at, _)| *at)
    }

    /// Bytes were received.
    pub(crate) fn received(&mut self) {
        self.last_read = Instant::now();
    }

    /// The shortest timeout set: how often a watched socket with no deadline in force
    /// (paused, or with nothing queued) is looked at again.
    fn shortest(&self) -> Option<Duration> {
        [self.limits.idle, self.limits.read, self.limits.write]
            .into_iter()
            .flatten()
            .min()
    }
}

impl<S: 'static> StreamState<S> {
    /// Whether the read timeout runs: open, not at end of file, not paused.
    fn reading(&self) -> bool {
        self.phase == Phase::Open && self.read == ReadSide::Open && !self.receive_paused
    }

    /// Whether timeouts are set: a test of the cold part's pointer for the sockets
    /// that have none (most), with no flag in the hot part.
    #[inline]
    pub(crate) fn watched(&self) -> bool {
        self.cold.as_ref().is_some_and(|c| c.watch.is_some())
    }

    fn watch_mut(&mut self) -> Option<&mut Watch> {
        self.cold.as_mut().and_then(|c| c.watch.as_deref_mut())
    }

    /// Bytes were received.
    #[inline]
    pub(crate) fn note_read(&mut self) {
        if self.watched() {
            self.stamp_read();
        }
    }

    #[cold]
    fn stamp_read(&mut self) {
        if let Some(w) = self.watch_mut() {
            w.received();
        }
    }
}

/// A flush ran: `before` bytes were queued, `left` are left. Only a test of the cold
/// part's pointer for a stream without timeouts.
#[inline]
pub(crate) fn note_flush(cold: Option<&mut Cold>, before: usize, left: usize) {
    if let Some(w) = cold.and_then(|c| c.watch.as_deref_mut()) {
        flushed(w, before, left);
    }
}

#[cold]
fn flushed(w: &mut Watch, before: usize, left: usize) {
    {
        // Progress, or a queue that was empty and is not: the stall clock (re)starts.
        if left < before || (left > 0 && !w.pending) {
            w.last_write = Instant::now();
        }
        w.pending = left > 0;
    }
}

impl<S: 'static> Reactor<S> {
    /// Sets a stream's timeouts (replacing the ones it had) and arms or disarms its
    /// timer. The clocks start now.
    pub(crate) fn set_timeouts(&mut self, key: Key, limits: Timeouts) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let old = st.cold.as_mut().and_then(|c| c.watch.take());
        let old_timer = old.and_then(|w| w.timer);
        if limits.any() {
            let mut watch = Watch::new(limits, Instant::now());
            watch.pending = !st.out.is_empty();
            st.cold().watch = Some(Box::new(watch));
        }
        self.cancel_internal_timer(old_timer);
        self.arm_watch(key);
    }

    /// The stream's timeouts (all off if it is not watched).
    pub(crate) fn timeouts(&self, key: Key) -> Option<Timeouts> {
        match self.sources.get(key) {
            Some(Source::Stream(st)) => Some(
                st.cold
                    .as_ref()
                    .and_then(|c| c.watch.as_ref())
                    .map_or_else(Timeouts::default, |w| w.limits),
            ),
            _ => None,
        }
    }

    /// Arms the watch timer for the earliest deadline in force (or, with none in
    /// force, for a look after the shortest timeout).
    fn arm_watch(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let (reading, live) = (
            st.reading(),
            matches!(st.phase, Phase::Open | Phase::Closing),
        );
        let Some(w) = st.cold.as_ref().and_then(|c| c.watch.as_deref()) else {
            return;
        };
        // Still connecting (the connect timeout is in force): the clocks start when
        // the connection is established.
        let next = if live { w.next(reading) } else { None };
        let after = match next {
            Some((at, _)) => at.saturating_duration_since(Instant::now()),
            None => match w.shortest() {
                Some(t) => t,
                None => return,
            },
        };
        let timer = self.set_source_timer(after, key, SourceTimer::Watch);
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if let Some(w) = st.watch_mut() {
                let old = w.timer.replace(timer);
                self.cancel_internal_timer(old);
            }
        }
    }

    /// The watch timer fired: close the stream if a deadline has passed, else arm
    /// the timer again for the earliest one.
    pub(crate) fn watch_expired(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let (reading, live) = (
            st.reading(),
            matches!(st.phase, Phase::Open | Phase::Closing),
        );
        let Some(w) = st.cold.as_mut().and_then(|c| c.watch.as_deref_mut()) else {
            return;
        };
        // This timer has fired: its key is no longer in the heap.
        w.timer = None;
        let (limits, next) = (w.limits, if live { w.next(reading) } else { None });
        match next {
            Some((at, which)) if at <= Instant::now() => {
                let (timeout, what) = match which {
                    Which::Idle => (limits.idle, "no data was sent or received"),
                    Which::Read => (limits.read, "no data was received"),
                    Which::Write => (limits.write, "the peer accepted none of the queued data"),
                };
                let timeout = timeout.unwrap_or_default();
                log::debug!("stream {key:?}: {what} for {timeout:?}");
                let err = Error::new(SocketErrorStatus::ConnectionTimedOut, "timeout")
                    .with_detail(format!("{what} for {timeout:?}"));
                let err = match st.io.as_ref().and_then(|io| io.peer_addr().ok()) {
                    Some(addr) => err.with_address(addr),
                    None => err,
                };
                reset(st);
                self.finish_later(key, Err(err));
            }
            _ => self.arm_watch(key),
        }
    }

    /// The connection is established: the clocks of a watched stream start now.
    pub(crate) fn watch_connected(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if !st.watched() {
            return;
        }
        let pending = !st.out.is_empty();
        if let Some(w) = st.watch_mut() {
            let now = Instant::now();
            (w.last_read, w.last_write, w.pending) = (now, now, pending);
        }
        self.arm_watch(key);
    }

    /// Cancels a finished stream's watch timer.
    pub(crate) fn unwatch(&mut self, watch: Option<Box<Watch>>) {
        if let Some(w) = watch {
            self.cancel_internal_timer(w.timer);
        }
    }
}
