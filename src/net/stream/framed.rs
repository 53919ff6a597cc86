//! Stream sockets with a codec: whole messages in, frames out.

use crate::error::{Error, SocketErrorStatus};
use crate::framing::{Decoded, Decoder, Encoder};
use crate::net::stream::{stale, Phase, StreamEvent, StreamSocket};
use crate::reactor::{Key, Reactor, Source};

impl StreamSocket {
    /// Gives the socket a codec (a decoder and, from a clone, an encoder): from now on its handler receives one
    /// [`StreamEvent::Message`] per frame instead of [`StreamEvent::Received`] bytes,
    /// and [`write_frame`](Self::write_frame) encodes into the write queue. Bytes
    /// already received and not consumed are decoded with it.
    /// [`clear_framing`](Self::clear_framing) goes back to raw bytes.
    ///
    /// A malformed or over-long frame closes the connection: `Closed(Err(_))` with
    /// status `ProtocolError` or `MessageTooLong`; nothing is allocated for a frame
    /// before its length has been checked against the codec's maximum.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sockloop::{LengthPrefixed, ListenerEvent, Reactor, StreamEvent, StreamSocketListener};
    ///
    /// // An echo server for 4-byte-length-prefixed messages.
    /// let mut reactor = Reactor::<()>::new()?;
    /// StreamSocketListener::bind_any(&mut reactor, 7008, |reactor, _, _, event| {
    ///     if let ListenerEvent::ConnectionReceived(conn) = event {
    ///         let socket = conn.socket;
    ///         socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
    ///         socket.set_handler(reactor, |reactor, _, socket, event| {
    ///             if let StreamEvent::Message(message) = event {
    ///                 let _ = socket.write_frame(reactor, message);
    ///             }
    ///         }).unwrap();
    ///     }
    /// })?;
    /// reactor.run(&mut ())?;
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn set_framing<S: 'static, C>(self, reactor: &mut Reactor<S>, codec: C) -> Result<(), Error>
    where
        C: Decoder + Encoder + Clone + 'static,
    {
        let st = reactor.stream_mut(self.0, "set framing")?;
        let cold = st.cold();
        cold.encoder = Some(Box::new(codec.clone()));
        cold.decoder = Some(Box::new(codec));
        cold.framing_gen = cold.framing_gen.wrapping_add(1);
        if st.input_changed() && st.reoffer {
            reactor.mark_ready(self.0);
        }
        Ok(())
    }

    /// Removes the codec: the handler gets raw `Received` bytes again, starting with
    /// any the codec had not consumed.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the socket is closed.
    pub fn clear_framing<S: 'static>(self, reactor: &mut Reactor<S>) -> Result<(), Error> {
        let st = reactor.stream_mut(self.0, "clear framing")?;
        if let Some(cold) = st.cold.as_mut() {
            cold.decoder = None;
            cold.encoder = None;
            cold.framing_gen = cold.framing_gen.wrapping_add(1);
        }
        if st.input_changed() && st.reoffer {
            reactor.mark_ready(self.0);
        }
        Ok(())
    }

    /// Encodes `payload` as one frame with the socket's codec, straight into the write
    /// queue: header and payload are copied once, side by side, and leave in the same
    /// `send` or `writev` as the socket's other writes.
    ///
    /// # Errors
    ///
    /// - `InvalidState` if the socket has no codec, is closing or its sending side is
    ///   shut down; `InvalidHandle` if closed.
    /// - `MessageTooLong` if the codec refuses the frame (over its maximum), or the frame
    ///   is longer than the write queue's hard limit; nothing is queued.
    /// - `NoBufferSpaceAvailable` if the frame does not fit in the queue now: nothing is
    ///   queued; wait for `Drained`.
    pub fn write_frame<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        payload: &[u8],
    ) -> Result<(), Error> {
        let (limit, high) = (reactor.config.write_limit, reactor.config.high_watermark);
        let Some((Source::Stream(st), pool, mut queue)) = reactor.source_for_write(self.0) else {
            return Err(stale("write frame"));
        };
        if st.phase == Phase::Closed {
            return Err(stale("write frame"));
        }
        crate::net::stream::writable_state(st, "write frame")?;
        let Some(codec) = st.cold.as_mut().and_then(|c| c.encoder.as_mut()) else {
            return Err(Error::new(SocketErrorStatus::InvalidState, "write frame")
                .with_detail("the socket has no codec: call set_framing first"));
        };
        // A frame the codec refuses reports its own error from `encode` below.
        let announced = codec.encoded_len(payload.len());
        let size = announced.unwrap_or(payload.len());
        let queued = st.out.len();
        if queued.saturating_add(size) > limit {
            return Err(crate::net::stream::over_limit(
                st,
                "write frame",
                queued,
                size,
                limit,
            ));
        }
        // What the encoder really writes is checked, not trusted: no more than it
        // announced, and never past the limit.
        let queued = st.out.len();
        let max = announced.unwrap_or(limit - queued).min(limit - queued);
        #[cfg(feature = "tls")]
        if st.tls {
            // Encoded apart, then encrypted into the queue.
            let mut frame = Vec::with_capacity(size);
            codec.encode(payload, &mut frame)?;
            if frame.len() > max {
                return Err(encoder_overran(frame.len(), announced, queued, limit));
            }
            crate::net::stream::tls::write_tls(st, pool, &frame, limit)?;
            if st.out.len() > high {
                st.over_high = true;
            }
            if !queue.defer(self.0, &mut st.dirty) {
                reactor.flush_stream(self.0);
            }
            return Ok(());
        }
        let pushed = st.out.push_with(
            pool,
            size,
            max,
            |dst| codec.encode(payload, dst),
            |written| encoder_overran(written, announced, queued, limit),
        );
        if let Err(e) = pushed {
            if e.status() == SocketErrorStatus::NoBufferSpaceAvailable {
                st.over_high = true;
            }
            return Err(e);
        }
        if st.out.len() > high {
            st.over_high = true;
        }
        if !queue.defer(self.0, &mut st.dirty) {
            reactor.flush_stream(self.0);
        }
        Ok(())
    }
}

/// The error of an encoder that wrote more than it announced, or more than fits.
#[cold]
fn encoder_overran(written: usize, announced: Option<usize>, queued: usize, limit: usize) -> Error {
    match announced {
        Some(n) if written > n => Error::new(SocketErrorStatus::ProtocolError, "write frame")
            .with_detail(format!(
                "the codec broke its contract: it announced {n} bytes and wrote {written}"
            )),
        _ => Error::refused("write frame", queued, written, limit),
    }
}

impl<S: 'static> Reactor<S> {
    /// Decodes `data` with the socket's codec (taken out for the duration) and delivers
    /// each frame; returns how many bytes were consumed. With `at_eof`, decodes with
    /// `decode_eof` (the stream has ended).
    pub(crate) fn deliver_frames(
        &mut self,
        state: &mut S,
        key: Key,
        data: &[u8],
        mut codec: Box<dyn Decoder>,
        at_eof: bool,
    ) -> usize {
        let generation = match self.sources.get(key) {
            Some(Source::Stream(st)) => st.framing_gen(),
            _ => return data.len(),
        };
        let mut off = 0;
        loop {
            let rest = &data[off..];
            let decoded = if at_eof {
                codec.decode_eof(rest)
            } else {
                codec.decode(rest)
            };
            match decoded {
                Ok(Decoded::Frame { frame, consumed })
                    if consumed > 0
                        && consumed <= rest.len()
                        && frame.end <= consumed
                        && frame.start <= frame.end =>
                {
                    off += consumed;
                    self.call_stream(state, key, StreamEvent::Message(&rest[frame]));
                    match self.sources.get_mut(key) {
                        Some(Source::Stream(st))
                            if st.phase == Phase::Open
                                && st.framing_gen() == generation
                                && !st.receive_paused
                                && !st.upgrade_point => {}
                        // Closed, paused, upgraded to TLS or given another codec by the
                        // handler: stop here (the codec goes back below unless it was
                        // replaced).
                        _ => break,
                    }
                }
                Ok(Decoded::NeedMore { consumed }) if consumed <= rest.len() => {
                    off += consumed;
                    break;
                }
                Ok(other) => {
                    let err = Error::new(SocketErrorStatus::ProtocolError, "decode").with_detail(
                        format!(
                            "the codec broke its contract: {other:?} for {} bytes",
                            rest.len()
                        ),
                    );
                    self.fail_stream(key, err);
                    return data.len();
                }
                Err(e) => {
                    self.fail_stream(key, e);
                    return data.len();
                }
            }
        }
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.framing_gen() == generation {
                st.cold().decoder = Some(codec);
            }
        }
        off
    }

    pub(crate) fn fail_stream(&mut self, key: Key, err: Error) {
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            if st.phase != Phase::Closed {
                log::debug!("stream {key:?}: {err}");
                st.phase = Phase::Closed;
                self.finish_later(key, Err(err));
            }
        }
    }
}
