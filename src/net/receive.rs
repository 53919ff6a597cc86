//! The receive path of stream sockets: reading to `WouldBlock` within a budget, and
//! handing bytes (or, with a codec, messages) to the handler.

use std::io::{self, Read};

use crate::error::{Error, SocketErrorStatus};
use crate::io::inbound::Input;
use crate::net::stream::{Phase, StreamEvent};
use crate::reactor::{Deferred, Key, Reactor, Source};

/// The largest emptied unconsumed-bytes buffer a socket keeps for reuse.
const KEPT_INBUF: usize = 64 * 1024;

impl<S: 'static> Reactor<S> {
    /// Reads until `WouldBlock`, a short read (unless the peer's FIN was reported),
    /// end of file or the budget.
    pub(crate) fn stream_read(&mut self, state: &mut S, key: Key) {
        self.deliver_pending(state, key);
        let mut budget = self.config.read_budget;
        loop {
            let limit = self.config.inbound_limit;
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                return;
            };
            if !matches!(st.phase, Phase::Open | Phase::Closing)
                || st.read_closed
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
                    self.deferred.push_back(Deferred::Finish(key, Err(err)));
                }
                return;
            }
            let to_eof = st.peer_fin;
            let Some(io) = st.io.as_mut() else { return };
            let want = room.min(self.scratch.len());
            match io.read(&mut self.scratch[..want]) {
                Ok(0) => return self.read_eof(state, key),
                Ok(n) => {
                    self.received(state, key, n);
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
                    self.deferred.push_back(Deferred::Finish(key, Err(err)));
                    return;
                }
            }
        }
    }

    /// Delivers what arrived before the socket had a handler.
    fn deliver_pending(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.handler.is_none() || st.phase != Phase::Open {
            return;
        }
        if st.input_pending {
            st.input_pending = false;
            if st.inbuf_len() > 0 {
                self.deliver_inbuf(state, key);
            }
        }
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.read_closed && !st.eof_delivered {
                self.read_eof(state, key);
            }
        }
    }

    /// `n` new bytes are at the start of the scratch buffer.
    fn received(&mut self, state: &mut S, key: Key, n: usize) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if st.phase != Phase::Open {
            return; // closing: the owner is no longer interested
        }
        if st.handler.is_none() || st.inbuf_len() > 0 {
            st.cold().inbuf.extend_from_slice(&self.scratch[..n]);
            if st.handler.is_none() {
                st.input_pending = true;
            } else {
                self.deliver_inbuf(state, key);
            }
            return;
        }
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
    /// codec; returns how many were consumed.
    fn deliver(&mut self, state: &mut S, key: Key, data: &[u8]) -> usize {
        let decoder = match self.sources.get_mut(key) {
            Some(Source::Stream(st)) => {
                st.delivering = true;
                st.cold.as_mut().and_then(|c| c.decoder.take())
            }
            _ => return data.len(),
        };
        let consumed = match decoder {
            Some(decoder) => self.deliver_frames(state, key, data, decoder, false),
            None => {
                let mut consumed = 0;
                let input = Input::new(data, &mut consumed);
                if !self.call_stream(state, key, StreamEvent::Received(input)) {
                    consumed = data.len();
                }
                consumed
            }
        };
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            st.delivering = false;
        }
        consumed
    }

    fn deliver_inbuf(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(cold) = st.cold.as_mut() else {
            return;
        };
        let mut buf = std::mem::take(&mut cold.inbuf);
        let consumed = self.deliver(state, key, &buf);
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.phase == Phase::Open {
                buf.drain(..consumed.min(buf.len()));
                // An emptied buffer keeps its capacity (up to a read's worth), so that
                // a peer whose messages straddle reads costs no allocation per read.
                if !buf.is_empty() || buf.capacity() <= KEPT_INBUF {
                    let cold = st.cold();
                    // Nothing is added while the bytes are out, but keep the order if so.
                    buf.extend_from_slice(&cold.inbuf);
                    cold.inbuf = buf;
                }
            }
        }
    }

    fn read_eof(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        st.read_closed = true;
        if st.phase != Phase::Open || st.handler.is_none() {
            return;
        }
        st.eof_delivered = true;
        let framed = st.cold.as_ref().is_some_and(|c| c.decoder.is_some());
        if framed && !self.decode_at_eof(state, key) {
            return;
        }
        self.call_stream(state, key, StreamEvent::ReadClosed);
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.phase == Phase::Open && st.write_shut {
                st.phase = Phase::Closed;
                self.deferred.push_back(Deferred::Finish(key, Ok(())));
            }
        }
    }
}
