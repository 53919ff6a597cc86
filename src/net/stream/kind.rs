//! The stream's side of the reactor's seam: events, handler calls, lookups.

use mio::net::TcpStream;
use mio::Interest;

use super::state::{reset, Phase, ReadSide, StreamState};
use super::{stale, StreamEvent, StreamHandler, StreamSocket};
use crate::error::Error;
use crate::reactor::{panicked, Key, Kind, Reactor, Source, SourceTimer};

impl<S: 'static> Reactor<S> {
    pub(crate) fn stream_ref(
        &self,
        key: Key,
        operation: &'static str,
    ) -> Result<&StreamState<S>, Error> {
        match self.sources.get(key) {
            Some(Source::Stream(st)) if st.phase != Phase::Closed => Ok(st),
            _ => Err(stale(operation)),
        }
    }

    pub(crate) fn stream_mut(
        &mut self,
        key: Key,
        operation: &'static str,
    ) -> Result<&mut StreamState<S>, Error> {
        self.unstage(key);
        match self.sources.get_mut(key) {
            Some(Source::Stream(st)) if st.phase != Phase::Closed => Ok(st),
            _ => Err(stale(operation)),
        }
    }

    /// Registers a connected stream; `handler` may be `None` (accepted, not claimed yet).
    pub(crate) fn add_stream(
        &mut self,
        mut io: TcpStream,
        handler: Option<StreamHandler<S>>,
    ) -> Result<Key, Error> {
        let key = self.insert_source(Source::Stream(StreamState::new(None, Phase::Open, None)))?;
        if let Err(e) = self.poll.registry().register(
            &mut io,
            key.token(),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.remove_source(key);
            return Err(Error::from_io("register stream", e));
        }
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.io = Some(io);
            st.handler = handler;
        }
        Ok(key)
    }

    pub(crate) fn mark_ready(&mut self, key: Key) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if !st.queued_ready {
                st.queued_ready = true;
                self.serve_next_turn(key);
            }
        }
    }

    /// Inside a handler: remember to flush when it returns. Outside: flush now.
    pub(crate) fn mark_dirty(&mut self, key: Key) {
        let deferred = match self.source_for_write(key) {
            Some((Source::Stream(st), _, mut queue)) => queue.defer(key, &mut st.dirty),
            _ => false,
        };
        if !deferred {
            self.flush_stream(key);
        }
    }

    /// Calls a stream's handler (taken out of its slot for the call and put back
    /// after, unless the socket was closed or given another handler meanwhile).
    /// Returns `false` if the socket has no handler.
    pub(crate) fn call_stream(&mut self, state: &mut S, key: Key, event: StreamEvent<'_>) -> bool {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return false;
        };
        let Some(mut handler) = st.handler.take() else {
            return false;
        };
        let returned = self
            .in_handler(|r| handler(r, state, StreamSocket(key), event))
            .is_some();
        self.handler_back(key, handler, returned);
        true
    }

    /// After a handler's call: puts the handler back (unless the socket was closed or
    /// given another handler meanwhile) and closes the socket if it panicked (the
    /// same handler gets the one `Closed` event). Returns the socket's state, so that
    /// the caller goes on without looking it up again.
    #[inline]
    pub(crate) fn handler_back(
        &mut self,
        key: Key,
        handler: StreamHandler<S>,
        returned: bool,
    ) -> Option<&mut StreamState<S>> {
        let handler = if returned {
            Some(handler)
        } else {
            self.handler_panicked_close(key, handler);
            None
        };
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return None;
        };
        if let Some(handler) = handler {
            st.handler.get_or_insert(handler);
        }
        Some(st)
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn handler_panicked_close(&mut self, key: Key, handler: StreamHandler<S>) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.handler.get_or_insert(handler);
            if st.phase != Phase::Closed {
                reset(st);
                self.finish_later(key, Err(panicked("stream handler")));
            }
        }
    }

    /// A kernel event that [`plain_event`](Reactor::plain_event) left alone.
    #[inline(never)]
    pub(crate) fn stream_event(&mut self, state: &mut S, key: Key, event: &mio::event::Event) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if (event.is_read_closed() || event.is_error()) && st.read == ReadSide::Open {
            // Also while connecting: the peer may send and close before `Connected`
            // is delivered, in the very event that completes the connection. (If the
            // event came from a failed attempt instead, an extra read is all it costs.)
            st.read = ReadSide::Fin;
        }
        // A flush with nothing queued, nothing owed and both sides open would do
        // nothing: the usual writable edge of a ping-pong costs no call.
        let flush = (event.is_writable() || event.is_write_closed() || event.is_error())
            && !st.nothing_to_flush();
        match st.phase {
            Phase::Connecting => self.check_connect(state, key, event.is_readable()),
            Phase::Open | Phase::Closing => {
                if flush {
                    self.flush_stream(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.stream_read(state, key);
                }
                if event.is_error() {
                    self.take_socket_error(key);
                }
            }
            Phase::Resolving | Phase::Closed => {}
        }
    }

    fn take_socket_error(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.phase == Phase::Closed {
            return;
        }
        let pending = st.io.as_ref().map(|io| io.take_error());
        if let Some(Ok(Some(e)) | Err(e)) = pending {
            let err = st.error("receive", e);
            st.phase = Phase::Closed;
            self.finish_later(key, Err(err));
        }
    }
}

/// Streams, as the loop sees them.
pub(crate) struct StreamKind;

impl<S: 'static> Kind<S> for StreamKind {
    #[inline(always)]
    fn ready(r: &mut Reactor<S>, state: &mut S, key: Key, event: &mio::event::Event) {
        // The fast path (plain input, nothing else to do) in the loop itself; anything
        // else in a call.
        if !r.plain_event(state, key, event) {
            r.stream_event(state, key, event);
        }
    }

    fn serve(r: &mut Reactor<S>, state: &mut S, key: Key) {
        if let Some(Source::Stream(st)) = r.sources.get_mut(key) {
            st.queued_ready = false;
        }
        r.stream_read(state, key);
    }

    fn timer(r: &mut Reactor<S>, _state: &mut S, key: Key, timer: SourceTimer) {
        match timer {
            SourceTimer::ConnectStagger => r.connect_stagger(key),
            SourceTimer::ConnectTimeout => r.connect_timed_out(key),
            SourceTimer::Linger => r.linger_expired(key),
            #[cfg(feature = "tls")]
            SourceTimer::TlsHandshake => r.tls_handshake_timed_out(key),
            SourceTimer::Watch => r.watch_expired(key),
            SourceTimer::AcceptRetry => {}
        }
    }

    fn flush(r: &mut Reactor<S>, key: Key) {
        r.flush_stream(key);
    }

    fn drained(r: &mut Reactor<S>, state: &mut S, key: Key) {
        r.deliver_drained(state, key);
    }

    fn finish(r: &mut Reactor<S>, state: &mut S, key: Key, result: Result<(), Error>) {
        r.finish_stream(state, key, result);
    }
}
