//! The end of stream sockets: delivering `Closed`, and lingering after a graceful
//! close so that it does not turn into a reset.

use std::io::{self, Read};
use std::time::Duration;

use mio::net::TcpStream;
use mio::Interest;
use socket2::SockRef;

use crate::error::{Error, SocketErrorStatus};
use crate::net::stream::{reset, Phase, ReadSide, StreamEvent, StreamSocket, WriteSide};
use crate::reactor::{Key, Kind, Reactor, Source, SourceTimer};

/// A stream closed by its owner, reading the peer's last bytes until end of file so
/// that closing does not reset the connection while the peer is still sending.
pub(crate) struct Lingering {
    io: TcpStream,
    timer: Option<Key>,
}

/// Lingering streams, as the loop sees them.
pub(crate) struct LingeringKind;

impl<S: 'static> Kind<S> for LingeringKind {
    fn ready(r: &mut Reactor<S>, _state: &mut S, key: Key, _event: &mio::event::Event) {
        r.linger_ready(key);
    }

    fn timer(r: &mut Reactor<S>, _state: &mut S, key: Key, _timer: SourceTimer) {
        r.end_linger(key);
    }

    fn finish(r: &mut Reactor<S>, _state: &mut S, key: Key, _result: Result<(), Error>) {
        r.end_linger(key);
    }
}

impl<S: 'static> Reactor<S> {
    /// Removes a stream and delivers `Closed`. A socket closed gracefully whose peer
    /// has not finished sending stays registered (handle-less) to read the rest, so
    /// the close does not turn into a reset.
    pub(crate) fn finish_stream(&mut self, state: &mut S, key: Key, result: Result<(), Error>) {
        let Some(Source::Stream(mut st)) = self.remove_source(key) else {
            return;
        };
        if let Some(mut cold) = st.cold.take() {
            self.cancel_internal_timer(cold.timer.take());
            self.unwatch(cold.watch.take());
            #[cfg(feature = "tls")]
            self.cancel_internal_timer(cold.handshake_timer.take());
            // A lookup still queued or running for it goes (a connect timeout takes
            // the plan before this).
            self.cancel_resolution(key);
            self.accepted_connection_gone(cold.listener);
            if let Some(plan) = cold.connect.take() {
                self.cancel_internal_timer(plan.stagger);
                self.cancel_internal_timer(plan.timeout);
            }
        }
        st.out.release(&mut self.pool);
        if let Some(io) = st.io.take() {
            if result.is_ok()
                && st.write == WriteSide::Shut
                && matches!(st.read, ReadSide::Open | ReadSide::Fin)
            {
                self.linger(io);
            } else if result.is_err() {
                let _ = SockRef::from(&io).set_linger(Some(Duration::ZERO));
            }
        }
        match &result {
            Ok(()) => log::debug!("stream {key:?} closed"),
            Err(e) => log::debug!("stream {key:?} closed: {e}"),
        }
        if let Some(mut handler) = st.handler.take() {
            self.in_handler(|r| handler(r, state, StreamSocket(key), StreamEvent::Closed(result)));
        }
    }

    fn linger(&mut self, io: TcpStream) {
        // Without a slot, the socket is closed at once (its FIN is already sent).
        let Ok(key) = self.insert_source(Source::Lingering(Lingering { io, timer: None })) else {
            return;
        };
        let Some(Source::Lingering(l)) = self.sources.get_mut(key) else {
            return;
        };
        if self
            .poll
            .registry()
            .reregister(&mut l.io, key.token(), Interest::READABLE)
            .is_err()
        {
            self.remove_source(key);
            return;
        }
        let timer = self.set_source_timer(self.config.linger, key, SourceTimer::Linger);
        if let Some(Source::Lingering(l)) = self.sources.get_mut(key) {
            l.timer = Some(timer);
        }
        self.linger_ready(key);
    }

    /// Reads and discards the last bytes of a closed connection until end of file.
    fn linger_ready(&mut self, key: Key) {
        let Some(Source::Lingering(Lingering { io, .. })) = self.sources.get_mut(key) else {
            return;
        };
        // A peer still sending more than a read budget after we closed is not going to
        // stop: reset it rather than spend the loop's time reading for it.
        let mut budget = self.config.read_budget;
        loop {
            match io.read(&mut self.scratch) {
                Ok(0) => break,
                Ok(n) if n >= budget => {
                    log::debug!("stream {key:?}: peer kept sending after close; resetting");
                    let _ = SockRef::from(&*io).set_linger(Some(Duration::ZERO));
                    break;
                }
                Ok(n) => budget -= n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.end_linger(key);
    }

    fn end_linger(&mut self, key: Key) {
        if let Some(Source::Lingering(l)) = self.remove_source(key) {
            self.cancel_internal_timer(l.timer);
        }
    }

    /// The linger timer of a closing socket: it could not send its queue in time.
    pub(crate) fn linger_expired(&mut self, key: Key) {
        match self.sources.get_mut(key) {
            Some(Source::Stream(st)) if st.phase == Phase::Closing => {
                if let Some(cold) = st.cold.as_mut() {
                    cold.timer = None;
                }
                let unsent = st.out.len();
                reset(st);
                let err = Error::new(SocketErrorStatus::ConnectionTimedOut, "close").with_detail(
                    format!("{unsent} bytes still queued when the linger time ran out"),
                );
                self.finish_later(key, Err(err));
            }
            _ => {}
        }
    }
}
