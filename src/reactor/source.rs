//! The seam between the loop and the kinds of sources registered on it.
//!
//! The loop (dispatch of kernel events, sources served again after their budget,
//! internal timers, the flush after a handler, deferred `Drained` and `Closed`) never
//! names a kind: it calls the `source_*` methods below, which delegate to the kind's
//! [`Kind`] implementation. A new kind of socket is a variant of [`Source`], an
//! implementation of [`Kind`] next to its code, and one line in the `kinds!` list at
//! the end of this file.
//!
//! Sockets reach the reactor through a small surface, also here: insert and remove a
//! source (which keeps the count of live sources), finish one later (from inside a
//! handler), serve one again next turn, flush one after the running handler, deliver
//! `Drained` later, and arm or cancel a timer of its own.

use std::time::Duration;

use mio::event::Event;

use super::fd::{FdKind, FdState};
use super::timer::Owner;
use super::{deadline_after, Deferred, Key, Reactor, TimerAction};
use crate::error::{Error, SocketErrorStatus};
use crate::io::BufPool;
use crate::net::datagram::{DatagramKind, DatagramState};
use crate::net::listener::{ListenerKind, ListenerState};
use crate::net::stream::{Lingering, LingeringKind, StreamKind, StreamState};

/// Everything registered with the poller.
pub(crate) enum Source<S: 'static> {
    Stream(StreamState<S>),
    Listener(Box<ListenerState<S>>),
    Fd(FdState<S>),
    Datagram(Box<DatagramState<S>>),
    /// A stream closed by its owner, reading the peer's last bytes until EOF so that
    /// closing does not reset the connection while the peer is still sending.
    Lingering(Lingering),
}

impl<S: 'static> Source<S> {
    /// Whether the source counts as live: it has a handle or a handler the user is
    /// waiting on. A lingering stream is the reactor's own business.
    fn is_live(&self) -> bool {
        !matches!(self, Source::Lingering(_))
    }
}

/// Which of a source's own timers fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceTimer {
    /// Start the next Happy Eyeballs attempt of a connecting stream.
    ConnectStagger,
    /// Give up connecting.
    ConnectTimeout,
    /// A graceful close or a lingering drain took too long.
    Linger,
    /// A stream's idle, read or write timeout may have passed.
    Watch,
    /// Try `accept` again after running out of file descriptors.
    AcceptRetry,
    /// A TLS handshake took too long.
    #[cfg(feature = "tls")]
    TlsHandshake,
}

/// What a kind of source does when the loop calls on it. Each method gets the key of
/// a source of this kind (checked by the caller); the source may have gone meanwhile
/// only where a method says so.
pub(crate) trait Kind<S: 'static> {
    /// The poller reported readiness.
    fn ready(r: &mut Reactor<S>, state: &mut S, key: Key, event: &Event);

    /// The source asked to be served again ([`Reactor::serve_next_turn`]) after it
    /// used up its budget, or because input it keeps can be delivered now.
    fn serve(_r: &mut Reactor<S>, _state: &mut S, _key: Key) {}

    /// One of its timers ([`Reactor::set_source_timer`]) fired.
    fn timer(_r: &mut Reactor<S>, _state: &mut S, _key: Key, _timer: SourceTimer) {}

    /// A handler queued bytes on it ([`Reactor::flush_after_handler`]): send them.
    fn flush(_r: &mut Reactor<S>, _key: Key) {}

    /// Its write queue fell under the low watermark ([`Reactor::drained_later`]).
    fn drained(_r: &mut Reactor<S>, _state: &mut S, _key: Key) {}

    /// Remove it ([`Reactor::remove_source`]) and deliver its last event.
    fn finish(r: &mut Reactor<S>, state: &mut S, key: Key, result: Result<(), Error>);
}

/// The surface sockets reach the reactor through.
impl<S: 'static> Reactor<S> {
    /// Stores a new source (registering it with the poller is the caller's) and
    /// counts it as live if it is.
    ///
    /// # Errors
    ///
    /// `TooManyOpenFiles` when the registry has no slot left (every index taken or
    /// retired; see the registry's layout).
    pub(crate) fn insert_source(&mut self, source: Source<S>) -> Result<Key, Error> {
        let live = source.is_live();
        let key = self.sources.try_insert(source).map_err(|_| {
            Error::new(SocketErrorStatus::TooManyOpenFiles, "register")
                .with_detail("the reactor has no free slot for another source")
        })?;
        if live {
            self.live += 1;
        }
        Ok(key)
    }

    /// Takes a source out (deregistering it from the poller is the caller's).
    pub(crate) fn remove_source(&mut self, key: Key) -> Option<Source<S>> {
        let source = self.sources.remove(key)?;
        if source.is_live() {
            self.live -= 1;
        }
        Some(source)
    }

    /// Ends a source once no handler runs: its kind's [`Kind::finish`], then its
    /// `Closed` with `result`.
    pub(crate) fn finish_later(&mut self, key: Key, result: Result<(), Error>) {
        self.deferred.push_back(Deferred::Finish(key, result));
    }

    /// Delivers `Drained` to a source once no handler runs.
    pub(crate) fn drained_later(&mut self, key: Key) {
        self.deferred.push_back(Deferred::Drained(key));
    }

    /// Serves a source again on the next turn without a kernel event. The caller
    /// keeps it from being queued twice.
    pub(crate) fn serve_next_turn(&mut self, key: Key) {
        self.ready.push(key);
    }

    /// A source with what its write path needs besides: the buffer pool and the
    /// queue of sources to flush after the running handler.
    pub(crate) fn source_for_write(
        &mut self,
        key: Key,
    ) -> Option<(&mut Source<S>, &mut BufPool, FlushQueue<'_>)> {
        self.unstage(key);
        let source = self.sources.get_mut(key)?;
        let queue = FlushQueue {
            dirty: &mut self.dirty,
            dispatching: self.dispatching,
        };
        Some((source, &mut self.pool, queue))
    }

    /// If `key` is the stream whose writes are staged, moves the staged bytes to its
    /// queue (to be sent when the handler returns) and stops staging: anything done to
    /// a socket other than a write that fits the stage sees its whole queue.
    #[inline]
    pub(crate) fn unstage(&mut self, key: Key) {
        if self.stage.key == Some(key) {
            self.unstage_now(key);
        }
    }

    #[cold]
    #[inline(never)]
    fn unstage_now(&mut self, key: Key) {
        self.stage.key = None;
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if !self.stage.buf.is_empty() {
                st.out.push(&self.stage.buf, &mut self.pool);
                let mut queue = FlushQueue {
                    dirty: &mut self.dirty,
                    dispatching: self.dispatching,
                };
                // Staging happens inside a handler only: this queues the flush.
                if !queue.defer(key, &mut st.dirty) {
                    self.stage.buf.clear();
                    self.flush_stream(key);
                }
            }
        }
        self.stage.buf.clear();
    }

    /// Whether a handler is running (writes are being queued for the flush after it).
    #[inline]
    pub(crate) fn in_dispatch(&self) -> bool {
        self.dispatching
    }

    /// The source queued last for the flush after the running handler was flushed by
    /// its kind already: it leaves the queue. (Queued earlier, it stays: a second
    /// flush finds nothing to do.)
    #[inline]
    pub(crate) fn flushed(&mut self, key: Key) {
        if self.dirty.last() == Some(&key) {
            self.dirty.pop();
        }
    }

    /// Arms one of a source's own timers; cancel it with
    /// [`cancel_internal_timer`](Reactor::cancel_internal_timer).
    pub(crate) fn set_source_timer(
        &mut self,
        after: Duration,
        key: Key,
        timer: SourceTimer,
    ) -> Key {
        self.timers.insert(
            deadline_after(after),
            Owner::Reactor,
            TimerAction::Source(key, timer),
        )
    }
}

/// The sources to flush when the running handler returns.
pub(crate) struct FlushQueue<'a> {
    dirty: &'a mut Vec<Key>,
    dispatching: bool,
}

impl FlushQueue<'_> {
    /// Inside a handler, queues `key` (once: `queued` is its flag) to be flushed when
    /// the handler returns and answers `true`; outside one, answers `false`: the
    /// caller flushes at once.
    #[inline]
    pub(crate) fn defer(&mut self, key: Key, queued: &mut bool) -> bool {
        if !self.dispatching {
            return false;
        }
        if !*queued {
            *queued = true;
            self.dirty.push(key);
        }
        true
    }
}

/// Generates the loop's side of the seam: one `match` per call, over the kinds listed.
macro_rules! kinds {
    ($($variant:ident => $kind:ty),* $(,)?) => {
        impl<S: 'static> Reactor<S> {
            /// A kernel event for `key`; `false` if no source has that key (a stale
            /// event). In the loop itself: the stream's fast path is a kernel event's
            /// whole work.
            #[inline(always)]
            pub(super) fn source_ready(&mut self, state: &mut S, key: Key, event: &Event) -> bool {
                match self.sources.get(key) {
                    $(Some(Source::$variant(..)) => <$kind as Kind<S>>::ready(self, state, key, event),)*
                    None => return false,
                }
                true
            }

            pub(super) fn source_serve(&mut self, state: &mut S, key: Key) {
                match self.sources.get(key) {
                    $(Some(Source::$variant(..)) => <$kind as Kind<S>>::serve(self, state, key),)*
                    None => {}
                }
            }

            pub(super) fn source_timer(&mut self, state: &mut S, key: Key, timer: SourceTimer) {
                match self.sources.get(key) {
                    $(Some(Source::$variant(..)) => <$kind as Kind<S>>::timer(self, state, key, timer),)*
                    None => {}
                }
            }

            pub(super) fn source_flush(&mut self, key: Key) {
                match self.sources.get(key) {
                    $(Some(Source::$variant(..)) => <$kind as Kind<S>>::flush(self, key),)*
                    None => {}
                }
            }

            pub(super) fn source_drained(&mut self, state: &mut S, key: Key) {
                match self.sources.get(key) {
                    $(Some(Source::$variant(..)) => <$kind as Kind<S>>::drained(self, state, key),)*
                    None => {}
                }
            }

            pub(super) fn source_finish(&mut self, state: &mut S, key: Key, result: Result<(), Error>) {
                match self.sources.get(key) {
                    $(Some(Source::$variant(..)) => <$kind as Kind<S>>::finish(self, state, key, result),)*
                    None => {}
                }
            }
        }
    };
}

kinds! {
    Stream => StreamKind,
    Listener => ListenerKind,
    Fd => FdKind,
    Lingering => LingeringKind,
    Datagram => DatagramKind,
}
