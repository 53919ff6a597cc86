//! The send path of stream sockets: queueing writes and flushing the queue.

use std::io::{self, Write};
use std::net::Shutdown;

use super::state::{writable_state, Phase, ReadSide, StreamState, WriteSide};
use super::{stale, StreamEvent, StreamSocket};
use crate::error::Error;
use crate::io::BufPool;
use crate::reactor::{Key, Reactor, Source, SourceTimer};

impl StreamSocket {
    /// Queues `data` for sending. Inside a handler, everything written during the
    /// call leaves in one `send`/`writev` when it returns; outside one, it is sent at once.
    ///
    /// # Errors
    ///
    /// - `NoBufferSpaceAvailable` if the queue would exceed its hard limit: nothing of
    ///   `data` is queued. Wait for `Drained`.
    /// - `MessageTooLong` if `data` alone is longer than the hard limit: it could never
    ///   be queued (and no `Drained` would come for it); split it.
    /// - `InvalidState` after `close` or `shutdown_write`; `InvalidHandle` if closed.
    #[inline]
    pub fn write<S: 'static>(self, reactor: &mut Reactor<S>, data: &[u8]) -> Result<(), Error> {
        // The handler of this socket answers what it was given: staged, sent as it
        // returns.
        if reactor.stage.take(self.0, data) {
            return Ok(());
        }
        self.write_queued(reactor, data)
    }

    /// [`write`](Self::write) through the socket's queue.
    #[inline(never)]
    fn write_queued<S: 'static>(self, reactor: &mut Reactor<S>, data: &[u8]) -> Result<(), Error> {
        let (limit, high) = (reactor.config.write_limit, reactor.config.high_watermark);
        let Some((Source::Stream(st), pool, mut queue)) = reactor.source_for_write(self.0) else {
            return Err(stale("write"));
        };
        writable_state(st, "write")?;
        #[cfg(feature = "tls")]
        let encrypted = st.tls;
        #[cfg(not(feature = "tls"))]
        let encrypted = false;
        if encrypted {
            #[cfg(feature = "tls")]
            super::tls::write_tls(st, pool, data, limit)?;
        } else {
            let queued = st.out.len();
            if queued.saturating_add(data.len()) > limit {
                return Err(over_limit(st, "write", queued, data.len(), limit));
            }
            st.out.push(data, pool);
        }
        if st.out.len() > high {
            st.over_high = true;
        }
        // With the state at hand rather than through `mark_dirty`, which would look the
        // socket up again: a handler writing many small messages pays one lookup each.
        if !queue.defer(self.0, &mut st.dirty) {
            reactor.flush_stream(self.0);
        }
        Ok(())
    }

    /// Sends what is queued now, even inside a handler.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed. Write errors close the socket and are
    /// reported with `Closed`.
    pub fn flush<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        reactor.stream_mut(self.0, "flush")?;
        reactor.flush_stream(self.0);
        Ok(())
    }

    /// Sends what is queued (then, with TLS, close_notify), then a FIN: the peer sees
    /// end of file; reading goes on.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed; `InvalidState` after `close`.
    pub fn shutdown_write<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "shutdown write")?;
        writable_state(st, "shutdown write")?;
        #[cfg(feature = "tls")]
        if st.tls {
            // close_notify is TLS' end of file.
            reactor.tls_close_notify(self.0);
        }
        let st = reactor.stream_mut(self.0, "shutdown write")?;
        st.write = WriteSide::ShutdownQueued;
        reactor.mark_dirty(self.0);
        Ok(())
    }
}

/// The error of a write that does not fit: `MessageTooLong` if it never could,
/// `NoBufferSpaceAvailable` (and the socket flagged for `Drained`) if it could once the
/// queue drains. Kept out of line: the write path only tests the limit.
#[cold]
#[inline(never)]
pub(crate) fn over_limit<S: 'static>(
    st: &mut StreamState<S>,
    operation: &'static str,
    queued: usize,
    size: usize,
    limit: usize,
) -> Error {
    if size <= limit {
        st.over_high = true;
    }
    Error::refused(operation, queued, size, limit)
}

/// Sends a stream's queue when that is all its flush has to do (open both ways, no
/// `Drained` owed), with the socket at hand; `Ok(false)` leaves the flush to
/// [`Reactor::flush_stream`]. A send error closes the socket and is returned, for
/// the caller to finish it with.
#[inline(always)]
pub(crate) fn send_queued<S: 'static>(
    st: &mut StreamState<S>,
    pool: &mut BufPool,
) -> Result<bool, Error> {
    if st.phase != Phase::Open || st.write != WriteSide::Open || st.over_high {
        return Ok(false);
    }
    let Some(io) = st.io.as_mut() else {
        return Ok(false);
    };
    st.dirty = false;
    let before = st.out.len();
    if let Err(e) = st.out.flush(io, pool) {
        let err = st.error("send", e);
        st.phase = Phase::Closed;
        return Err(err);
    }
    // As in `flush_stream`: the write (stall) timeout sees the progress.
    super::watch::note_flush(st.cold.as_deref_mut(), before, st.out.len());
    Ok(true)
}

/// Sends what the handler of a socket staged (see [`Stage`](crate::io::stage::Stage))
/// as it returns, with the socket at hand: one `send`; what the kernel does not take
/// goes to the socket's queue. A send error closes the socket and is returned, for
/// the caller to finish it with.
#[inline(always)]
pub(crate) fn send_staged<S: 'static>(
    st: &mut StreamState<S>,
    staged: &mut Vec<u8>,
    pool: &mut BufPool,
) -> Result<(), Error> {
    let Some(io) = st.io.as_mut() else {
        staged.clear();
        return Ok(());
    };
    let written = io.write(staged);
    if matches!(written, Ok(n) if n == staged.len()) {
        // As after a queue's flush: the write (stall) timeout sees the progress.
        super::watch::note_flush(st.cold.as_deref_mut(), staged.len(), 0);
        staged.clear();
        return Ok(());
    }
    send_staged_rest(st, staged, written, pool)
}

/// [`send_staged`] after a `send` that did not take everything: the rest is queued
/// (a short write means the kernel's buffer is full: the writable edge sends it).
#[cold]
#[inline(never)]
fn send_staged_rest<S: 'static>(
    st: &mut StreamState<S>,
    staged: &mut Vec<u8>,
    written: io::Result<usize>,
    pool: &mut BufPool,
) -> Result<(), Error> {
    let len = staged.len();
    let result = match written {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => {
            st.out.push(&staged[n..], pool);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            st.out.push(staged, pool);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            st.out.push(staged, pool);
            match st.io.as_mut() {
                Some(io) => st.out.flush(io, pool).map(drop),
                None => Ok(()),
            }
        }
        Err(e) => Err(e),
    };
    staged.clear();
    match result {
        Ok(()) => {
            super::watch::note_flush(st.cold.as_deref_mut(), len, st.out.len());
            Ok(())
        }
        Err(e) => {
            let err = st.error("send", e);
            st.phase = Phase::Closed;
            Err(err)
        }
    }
}

impl<S: 'static> Reactor<S> {
    /// Writes what is queued. Outcomes that call the handler (`Drained`, `Closed`)
    /// are deferred until no handler runs.
    pub(crate) fn flush_stream(&mut self, key: Key) {
        debug_assert!(self.stage.key != Some(key), "flush of a staged stream");
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.dirty = false;
        if !matches!(st.phase, Phase::Open | Phase::Closing) {
            return;
        }
        let Some(io) = st.io.as_mut() else { return };
        let before = st.out.len();
        if before > 0 {
            if let Err(e) = st.out.flush(io, &mut self.pool) {
                let err = st.error("send", e);
                st.phase = Phase::Closed;
                self.finish_later(key, Err(err));
                return;
            }
        }
        super::watch::note_flush(st.cold.as_deref_mut(), before, st.out.len());
        // `Drained` is queued before a `Closed` this flush may queue.
        let drained = st.over_high && st.out.len() <= self.config.low_watermark && {
            st.over_high = false;
            st.phase == Phase::Open
        };
        if !st.out.is_empty() {
            let arm =
                st.phase == Phase::Closing && st.cold.as_ref().map_or(true, |c| c.timer.is_none());
            if drained {
                self.drained_later(key);
            }
            if arm {
                // What is queued gets the linger time to leave, counted from here.
                let timer = self.set_source_timer(self.config.linger, key, SourceTimer::Linger);
                if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
                    st.cold().timer = Some(timer);
                }
            }
            return;
        }
        if st.write != WriteSide::Shut
            && (st.write == WriteSide::ShutdownQueued || st.phase == Phase::Closing)
        {
            st.write = WriteSide::Shut;
            let _ = io.shutdown(Shutdown::Write);
        }
        let finished = st.phase == Phase::Closing
            || (st.write == WriteSide::Shut && st.read == ReadSide::Done);
        if finished {
            st.phase = Phase::Closed;
        }
        if drained {
            self.drained_later(key);
        }
        if finished {
            self.finish_later(key, Ok(()));
        }
    }

    pub(crate) fn deliver_drained(&mut self, state: &mut S, key: Key) {
        if let Some(Source::Stream(st)) = self.sources.get(key) {
            if st.phase == Phase::Open && !st.over_high {
                self.call_stream(state, key, StreamEvent::Drained);
            }
        }
    }
}
