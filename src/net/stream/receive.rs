//! The receive path of stream sockets: reading to `WouldBlock` within a budget, and
//! handing bytes (or, with a codec, messages) to the handler.
//!
//! The rule this file keeps: input a socket keeps — bytes its handler left
//! unconsumed, bytes received before it had a handler or while it was paused, a
//! `ReadClosed` not delivered yet — is offered again whenever what held it back
//! changes, before any new byte and before `ReadClosed`:
//!
//! - a change made by the handler while its own input is out of the slot (codec set
//!   or cleared, handler replaced) re-delivers the rest the new way within the same
//!   call ([`StreamState::reinterpret`](crate::net::stream::StreamState));
//! - any other change (a handler set, receiving resumed, a codec changed from
//!   elsewhere) marks the socket to be served on the next turn with its kept input
//!   offered first (`reoffer`).

use std::io::{self, Read};
use std::os::fd::AsFd;

use mio::event::Event;

use crate::error::{Error, SocketErrorStatus};
use crate::io::inbound::Input;
use crate::io::sys;
use crate::net::stream::{
    send_queued, send_staged, Phase, ReadSide, StreamEvent, StreamSocket, WriteSide,
};
use crate::reactor::{Key, Reactor, Source};

/// The largest emptied unconsumed-bytes buffer a socket keeps for reuse.
const KEPT_INBUF: usize = 64 * 1024;

/// How many times in a row one delivery re-offers the rest after a change of
/// interpretation that consumed nothing; past it the rest waits for the next turn, so
/// a handler that changes its codec on every call without consuming cannot hold the
/// loop.
const IDLE_REDELIVERIES: u32 = 8;

impl<S: 'static> Reactor<S> {
    /// Offers what was kept, then reads until `WouldBlock`, a short read (unless the
    /// peer's FIN was reported), end of file or the budget.
    pub(crate) fn stream_read(&mut self, state: &mut S, key: Key) {
        self.read_on(state, key, self.config.read_budget, true);
    }

    /// The usual readiness event of an open socket, handled with one look-up of the
    /// socket before its handler runs and one after: readable, with the peer still
    /// sending, nothing to flush, no codec, nothing kept or owed, a handler that takes
    /// input, called from the loop. Reads once into the shared buffer, delivers it,
    /// sends what the handler wrote, and goes on like [`stream_read`] after a full
    /// read. Returns `false`, having done nothing, for any other event or socket: the
    /// general path handles it.
    ///
    /// [`stream_read`]: Reactor::stream_read
    #[inline(always)]
    pub(crate) fn plain_event(&mut self, state: &mut S, key: Key, event: &Event) -> bool {
        if !event.is_readable() || event.is_read_closed() || event.is_error() || self.in_dispatch()
        {
            return false;
        }
        let flush_edge = event.is_writable() || event.is_write_closed();
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return false;
        };
        if !st.plain_input() || (flush_edge && !st.nothing_to_flush()) {
            return false;
        }
        let want = self.config.inbound_limit.min(self.scratch.len());
        let Some(io) = st.io.as_mut() else {
            return false;
        };
        if want == 0 {
            return false;
        }
        let n = match io.read(&mut self.scratch[..want]) {
            Ok(0) => {
                self.read_eof(state, key);
                return true;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.read_on(state, key, self.config.read_budget, false);
                return true;
            }
            Err(e) => {
                let err = st.error("receive", e);
                st.phase = Phase::Closed;
                self.finish_later(key, Err(err));
                return true;
            }
        };
        // As on the general path: a socket with timeouts stamps the read.
        st.note_read();
        // `deliver`'s first round, with the socket at hand.
        st.delivering = true;
        st.reinterpret = false;
        // Nothing queued: what the handler writes to this socket is staged, and sent
        // as it returns.
        let staged = st.nothing_to_flush();
        let Some(mut handler) = st.handler.take() else {
            unreachable!("plain_input checked the handler")
        };
        if staged {
            self.stage.open(key);
        }
        let scratch = std::mem::take(&mut self.scratch);
        let mut consumed = 0;
        let input = Input::new(&scratch[..n], &mut consumed);
        let returned = self
            .in_handler(|r| handler(r, state, StreamSocket(key), StreamEvent::Received(input)))
            .is_some();
        // Still staged: nothing but writes that fit was done to the socket.
        let staged = staged && self.stage.key.take().is_some();
        let handler = if returned {
            Some(handler)
        } else {
            // Reset: what it wrote is dropped with the rest of the queue.
            self.stage.buf.clear();
            self.handler_panicked_close(key, handler);
            None
        };
        let mut failed = None;
        let off = match self.sources.get_mut(key) {
            Some(Source::Stream(st)) => {
                if st.handler.is_none() {
                    st.handler = handler;
                }
                if staged && !self.stage.buf.is_empty() {
                    if let Err(err) = send_staged(st, &mut self.stage.buf, &mut self.pool) {
                        failed = Some(err);
                    }
                }
                if st.upgrade_point || st.reinterpret {
                    // The handler changed how its input is read: the general rounds.
                    self.deliver_from(state, key, &scratch[..n], Some(consumed))
                } else {
                    st.delivering = false;
                    if st.dirty {
                        let sent = send_queued(st, &mut self.pool);
                        self.sent_after_handler(key, sent);
                    }
                    consumed
                }
            }
            _ => {
                self.stage.buf.clear();
                n
            }
        };
        if let Some(err) = failed {
            self.finish_later(key, Err(err));
        }
        if off < n {
            if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
                if st.phase == Phase::Open {
                    st.cold().inbuf.extend_from_slice(&scratch[off..n]);
                }
            }
        }
        self.scratch = scratch;
        if n == want {
            // A full read: there may be more.
            match self.config.read_budget.saturating_sub(n) {
                0 => self.mark_ready(key),
                budget => self.read_on(state, key, budget, false),
            }
        }
        true
    }

    /// Reads until `WouldBlock`, a short read (unless the peer's FIN was reported),
    /// end of file or `budget`; with `first`, offers what was kept before.
    fn read_on(&mut self, state: &mut S, key: Key, mut budget: usize, mut first: bool) {
        loop {
            let limit = self.config.inbound_limit;
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                return;
            };
            if std::mem::take(&mut first) && st.reoffer && st.accepts_input() {
                self.offer_kept(state, key);
                continue;
            }
            #[cfg(feature = "tls")]
            if st.tls {
                // Also after an upgrade made by the handler of bytes read just now.
                return self.tls_read(state, key, budget);
            }
            if !matches!(st.phase, Phase::Open | Phase::Closing)
                || matches!(st.read, ReadSide::Eof | ReadSide::Done)
                || (st.receive_paused && st.phase == Phase::Open)
            {
                return;
            }
            let (hint, held) = match st.cold.as_ref() {
                Some(cold) => (
                    cold.decoder.as_ref().map_or(0, |c| c.size_hint()),
                    cold.inbuf.len(),
                ),
                None => (0, 0),
            };
            let room = limit.max(hint).saturating_sub(held);
            if room == 0 {
                if st.handler.is_some() && st.phase == Phase::Open {
                    let err = Error::new(SocketErrorStatus::MessageTooLong, "receive").with_detail(
                        format!("the handler left {held} bytes unconsumed, the inbound limit"),
                    );
                    st.phase = Phase::Closed;
                    self.finish_later(key, Err(err));
                }
                return;
            }
            let to_eof = st.read == ReadSide::Fin;
            // Bytes that will be kept anyway (behind kept ones, or for a handler
            // that cannot take them now) are read straight into the socket's buffer;
            // the rest into the shared one, and only what is left unconsumed is
            // copied.
            let direct = st.phase == Phase::Open && (!st.accepts_input() || st.inbuf_len() > 0);
            let want = room.min(self.scratch.len());
            let open = st.phase == Phase::Open;
            let Some(io) = st.io.as_mut() else { return };
            let read = if direct {
                let cold = st.cold.get_or_insert_with(Box::default);
                sys::read_append(io.as_fd(), &mut cold.inbuf, want)
            } else {
                io.read(&mut self.scratch[..want])
            };
            if matches!(read, Ok(n) if n > 0) {
                st.note_read();
            }
            match read {
                Ok(0) => return self.read_eof(state, key),
                Ok(n) => {
                    if direct {
                        self.kept_more(state, key);
                    } else if open {
                        self.received(state, key, n);
                    }
                    // (Closing: the owner is no longer interested.)
                    budget = budget.saturating_sub(n);
                    if n < want && !to_eof {
                        return;
                    }
                    if budget == 0 {
                        return self.mark_ready(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = st.error("receive", e);
                    st.phase = Phase::Closed;
                    self.finish_later(key, Err(err));
                    return;
                }
            }
        }
    }

    /// Offers kept input, and a `ReadClosed` that waited behind it, if something that
    /// held them back changed and the handler can take them now.
    fn offer_kept(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if !st.reoffer || !st.accepts_input() {
            return;
        }
        st.reoffer = false;
        if st.inbuf_len() > 0 {
            self.deliver_inbuf(state, key);
        }
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.read == ReadSide::Eof && st.accepts_input() && !st.reoffer {
                self.deliver_eof(state, key);
            }
        }
    }

    /// New bytes were read onto the end of the socket's kept input.
    pub(crate) fn kept_more(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.accepts_input() {
            self.deliver_inbuf(state, key);
        } else {
            st.reoffer = true;
        }
    }

    /// `n` new bytes are at the start of the scratch buffer, the socket is open, and
    /// it keeps nothing that comes before them.
    pub(crate) fn received(&mut self, state: &mut S, key: Key, n: usize) {
        let scratch = std::mem::take(&mut self.scratch);
        let consumed = self.deliver(state, key, &scratch[..n]);
        if consumed < n {
            if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
                if st.phase == Phase::Open {
                    st.cold().inbuf.extend_from_slice(&scratch[consumed..n]);
                }
            }
        }
        self.scratch = scratch;
    }

    /// Hands bytes to the handler, as they are or cut into messages by the socket's
    /// codec, and again the new way for as long as the handler changes how its input
    /// is read; returns how many were consumed. Stops when the handler pauses.
    ///
    /// Called from the loop (not from inside a handler), it sends what the handler
    /// wrote as soon as it returns, with the socket at hand, instead of leaving it to
    /// the flush after dispatch, which would look the socket up twice more.
    fn deliver(&mut self, state: &mut S, key: Key, data: &[u8]) -> usize {
        self.deliver_from(state, key, data, None)
    }

    /// [`deliver`](Reactor::deliver), or its continuation after a first round made
    /// elsewhere whose handler consumed `resumed` bytes.
    fn deliver_from(
        &mut self,
        state: &mut S,
        key: Key,
        data: &[u8],
        mut resumed: Option<usize>,
    ) -> usize {
        let top = !self.in_dispatch();
        let mut off = 0;
        let mut idle = 0;
        loop {
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                return data.len();
            };
            let rest = &data[off..];
            let decoder = if resumed.is_some() {
                None
            } else {
                st.delivering = true;
                st.reinterpret = false;
                st.cold.as_mut().and_then(|c| c.decoder.take())
            };
            let (used, st) = match decoder {
                Some(decoder) => {
                    let used = self.deliver_frames(state, key, rest, decoder, false);
                    match self.sources.get_mut(key) {
                        Some(Source::Stream(st)) => (used, st),
                        _ => return data.len(),
                    }
                }
                None if resumed.is_some() => (resumed.take().unwrap_or(0), st),
                None => match st.handler.take() {
                    Some(mut handler) => {
                        let mut consumed = 0;
                        let input = Input::new(rest, &mut consumed);
                        let returned = self
                            .in_handler(|r| {
                                handler(r, state, StreamSocket(key), StreamEvent::Received(input))
                            })
                            .is_some();
                        let handler = if returned {
                            Some(handler)
                        } else {
                            self.handler_panicked_close(key, handler);
                            None
                        };
                        // Looked up here rather than through `handler_back`, so that
                        // the borrow is of the registry alone and the flush below can
                        // take the buffer pool beside it.
                        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                            return data.len();
                        };
                        if st.handler.is_none() {
                            st.handler = handler;
                        }
                        (consumed, st)
                    }
                    None => (0, st),
                },
            };
            off += used;
            st.delivering = false;
            if std::mem::take(&mut st.upgrade_point) && off < data.len() {
                // Bytes that came in clear after the point where the handler turned to
                // TLS: never delivered, as plaintext or as protected data.
                self.fail_stream(key, injected(data.len() - off));
                return data.len();
            }
            let again =
                std::mem::take(&mut st.reinterpret) && off < data.len() && st.accepts_input();
            if !again {
                if top && st.dirty {
                    let sent = send_queued(st, &mut self.pool);
                    self.sent_after_handler(key, sent);
                }
                return off;
            }
            if used == 0 {
                idle += 1;
                if idle == IDLE_REDELIVERIES {
                    st.reoffer = true;
                    self.mark_ready(key);
                    return off;
                }
            }
        }
    }

    /// What [`send_queued`] did after a handler's call from the loop: the socket
    /// leaves the flush queue if it was sent, and a send error finishes it.
    #[inline(always)]
    fn sent_after_handler(&mut self, key: Key, sent: Result<bool, Error>) {
        match sent {
            Ok(false) => {}
            Ok(true) => self.flushed(key),
            Err(err) => self.send_failed(key, err),
        }
    }

    #[cold]
    #[inline(never)]
    fn send_failed(&mut self, key: Key, err: Error) {
        self.flushed(key);
        self.finish_later(key, Err(err));
    }

    fn deliver_inbuf(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(cold) = st.cold.as_mut() else {
            return;
        };
        let buf = std::mem::take(&mut cold.inbuf);
        let consumed = self.deliver(state, key, &buf);
        self.keep_rest(key, buf, consumed);
    }

    /// Puts what was not consumed of a taken-out `inbuf` back in front of anything
    /// kept meanwhile.
    fn keep_rest(&mut self, key: Key, mut buf: Vec<u8>, consumed: usize) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.phase == Phase::Open {
                buf.drain(..consumed.min(buf.len()));
                // An emptied buffer keeps its capacity (up to a read's worth), so that
                // a peer whose messages straddle reads costs no allocation per read.
                if !buf.is_empty() || buf.capacity() <= KEPT_INBUF {
                    let cold = st.cold();
                    buf.extend_from_slice(&cold.inbuf);
                    cold.inbuf = buf;
                }
            }
        }
    }

    /// End of file was read: `ReadClosed` is delivered now if the handler can take it
    /// and nothing kept is waiting to be offered, else once that is done.
    pub(crate) fn read_eof(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.read != ReadSide::Done {
            st.read = ReadSide::Eof;
        }
        if st.read == ReadSide::Eof && st.accepts_input() && !st.reoffer {
            self.deliver_eof(state, key);
        }
    }

    /// Delivers the frames a codec can still make of what is kept (failing the socket
    /// if one was cut short), then `ReadClosed`. If the handler pauses or changes its
    /// codec on one of those last frames, the rest is kept and `ReadClosed` waits.
    fn deliver_eof(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if let Some(codec) = st.cold.as_mut().and_then(|c| c.decoder.take()) {
            let buf = std::mem::take(&mut st.cold().inbuf);
            st.delivering = true;
            st.reinterpret = false;
            let consumed = self.deliver_frames(state, key, &buf, codec, true);
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                return;
            };
            st.delivering = false;
            let changed = std::mem::take(&mut st.reinterpret);
            if st.phase != Phase::Open {
                return;
            }
            if consumed < buf.len() {
                if !changed && st.accepts_input() {
                    // Neither paused nor given another codec: the codec left bytes it
                    // will never make a frame of.
                    let left = buf.len() - consumed;
                    let err = Error::new(SocketErrorStatus::ProtocolError, "decode")
                        .with_detail(format!("{left} bytes left at the end of the stream"));
                    return self.fail_stream(key, err);
                }
                let ready = changed && st.accepts_input();
                st.reoffer = true;
                self.keep_rest(key, buf, consumed);
                if ready {
                    self.mark_ready(key);
                }
                return;
            }
        }
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.read = ReadSide::Done;
        self.call_stream(state, key, StreamEvent::ReadClosed);
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.phase == Phase::Open && st.write == WriteSide::Shut {
                st.phase = Phase::Closed;
                self.finish_later(key, Ok(()));
            }
        }
    }
}

/// The error of an upgrade to TLS with plaintext received after its point.
pub(crate) fn injected(bytes: usize) -> Error {
    Error::new(SocketErrorStatus::ProtocolError, "tls upgrade").with_detail(format!(
        "{bytes} bytes received in plaintext after the upgrade point; \
         refused (command injection), not delivered"
    ))
}
