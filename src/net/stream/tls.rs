//! TLS on a stream: the session between the socket and the receive and send paths,
//! in-place upgrades (client and server), and what was negotiated.
//!
//! Received ciphertext is read into the reactor's shared read buffer and decrypted
//! there; the plaintext is delivered like a plain read (`Received`, codecs, pause and
//! resume, what the handler leaves kept). Written plaintext is encrypted straight into
//! the write queue's chunks; bytes queued before an upgrade leave first, in clear.

use std::io;
use std::time::Duration;

use super::receive::injected;
use super::state::{writable_state, Cold, Phase, ReadSide, StreamState};
use super::{stale, StreamEvent, StreamSocket};
use crate::error::{Error, SocketErrorStatus};
use crate::io::BufPool;
use crate::net::control::StreamSocketControl;
use crate::net::hostname::HostName;
use crate::reactor::{Key, Reactor, Source, SourceTimer};
use crate::tls::{
    Announce, Plaintext, ProtectionLevel, TlsClientOptions, TlsInformation, TlsServerConfig,
    TlsSession, MAX_RECORD,
};

/// The read buffer TLS needs at least: half of it for ciphertext (two whole records,
/// so that a bulk transfer reads two at a time, each read ending on a record
/// boundary), half for the plaintext decrypted from it.
const TLS_SCRATCH: usize = 2 * 2 * MAX_RECORD;

/// Moves what the session has to send into the stream's write queue.
pub(crate) fn queue_records<S: 'static>(
    st: &mut StreamState<S>,
    pool: &mut BufPool,
) -> Result<(), Error> {
    let out = &mut st.out;
    match st.cold.as_mut().and_then(|c| c.tls.as_mut()) {
        Some(tls) => tls.queue(out, pool),
        None => Ok(()),
    }
}

/// Installs a session on a stream.
pub(crate) fn install<S: 'static>(st: &mut StreamState<S>, session: TlsSession) {
    st.cold().tls = Some(Box::new(session));
    st.tls = true;
}

/// A stream `connect`ed at a TLS level gets its session before it connects, so that
/// writes made before `Connected` are encrypted.
pub(crate) fn for_connect<S: 'static>(
    st: &mut StreamState<S>,
    control: &StreamSocketControl,
) -> Result<(), Error> {
    let level = control.get_protection_level();
    if level == ProtectionLevel::PlainSocket {
        return Ok(());
    }
    let Some(host) = st.cold().host.clone() else {
        return Err(
            Error::new(SocketErrorStatus::InvalidArgument, "tls connect")
                .with_detail("TLS needs the server's name (or address) to verify"),
        );
    };
    let mut session = TlsSession::client(
        level,
        control.get_tls(),
        host.canonical_name(),
        host.ip(),
        Announce::Connected,
    )?;
    session.timeout = control.get_tls_handshake_timeout();
    install(st, session);
    Ok(())
}

/// The session of a socket accepted by a listener with a TLS configuration.
pub(crate) fn for_accept(
    config: Option<&TlsServerConfig>,
    control: &StreamSocketControl,
) -> Result<Option<TlsSession>, Error> {
    let Some(config) = config else {
        return Ok(None);
    };
    let mut session = TlsSession::server(config, Announce::Nothing)?;
    session.timeout = control.get_tls_handshake_timeout();
    Ok(Some(session))
}

/// Encrypts a write of a TLS stream into its queue (or into the session until the
/// handshake completes); `queued` and `limit` as in `write`.
pub(crate) fn write_tls<S: 'static>(
    st: &mut StreamState<S>,
    pool: &mut BufPool,
    data: &[u8],
    limit: usize,
) -> Result<(), Error> {
    let early = st.tls_mut().map_or(0, |t| t.early());
    let queued = st.out.len() + early;
    if queued.saturating_add(data.len()) > limit {
        return Err(super::over_limit(st, "write", queued, data.len(), limit));
    }
    let out = &mut st.out;
    match st.cold.as_mut().and_then(|c| c.tls.as_mut()) {
        Some(tls) => tls.write(data, out, pool),
        None => Ok(()),
    }
}

impl StreamSocket {
    /// Upgrades an open plain connection to TLS in place, as a client (STARTTLS,
    /// Windows' `UpgradeToSslAsync`), verifying the server's certificate for `host`
    /// against the webpki roots; see [`upgrade_to_tls_with`](Self::upgrade_to_tls_with).
    ///
    /// # Errors
    ///
    /// As [`upgrade_to_tls_with`](Self::upgrade_to_tls_with).
    pub fn upgrade_to_tls<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        level: ProtectionLevel,
        host: &HostName,
    ) -> Result<(), Error> {
        self.upgrade_to_tls_with(reactor, level, host, &TlsClientOptions::default())
    }

    /// Upgrades an open plain connection to TLS in place, as a client, with `options`
    /// (trust roots, ALPN, a rustls configuration).
    ///
    /// The handle and handler stay. Bytes written before the call leave first, in
    /// plaintext; bytes written after it are encrypted (held until the handshake
    /// completes). When it completes the handler gets
    /// [`TlsUpgraded`](StreamEvent::TlsUpgraded); if it fails, `Closed(Err)` with the
    /// status (`CertificateUntrustedRoot`, `CertificateCommonNameIsIncorrect`, ...).
    ///
    /// Call it from the handler, on the reply that says the peer is ready (`220` to
    /// `STARTTLS`), and consume that reply first: input left unconsumed then, or any
    /// other plaintext received after that point, came before the peer's handshake —
    /// injected by someone else (CVE-2011-0411). It is never delivered: the upgrade
    /// fails with `ProtocolError` and the connection closes.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a level that is not TLS or is refused; `InvalidState` if
    /// the socket is not open, already runs TLS, or its peer closed its side;
    /// `ProtocolError` (and the socket closes) if plaintext is kept unconsumed;
    /// `InvalidHandle` if closed.
    pub fn upgrade_to_tls_with<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        level: ProtectionLevel,
        host: &HostName,
        options: &TlsClientOptions,
    ) -> Result<(), Error> {
        let operation = "tls upgrade";
        upgradable(reactor.stream_ref(self.0, operation)?, operation)?;
        let session = TlsSession::client(
            level,
            options,
            host.canonical_name(),
            host.ip(),
            Announce::Upgraded,
        )?;
        reactor.upgrade(self.0, session)
    }

    /// Upgrades an open plain connection to TLS in place, as the server (an SMTP or
    /// IMAP server answering `STARTTLS`): as
    /// [`upgrade_to_tls_with`](Self::upgrade_to_tls_with), with `config`'s
    /// certificate. Write the go-ahead (`220`) before calling it, so it leaves in
    /// clear; the handler gets `TlsUpgraded` when the client's handshake completes.
    ///
    /// # Errors
    ///
    /// As [`upgrade_to_tls_with`](Self::upgrade_to_tls_with).
    pub fn upgrade_to_tls_server<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        config: &TlsServerConfig,
    ) -> Result<(), Error> {
        let operation = "tls upgrade";
        upgradable(reactor.stream_ref(self.0, operation)?, operation)?;
        let session = TlsSession::server(config, Announce::Upgraded)?;
        reactor.upgrade(self.0, session)
    }

    /// Gives the TLS handshake under way `timeout`, counted from now, instead of what
    /// it had: for an in-place upgrade, whose handshake otherwise gets the default
    /// 10 s (the control's
    /// [`tls_handshake_timeout`](crate::StreamSocketControl::tls_handshake_timeout)
    /// applies to `connect` and to accepted sockets). A handshake not complete by
    /// then closes the socket with `ConnectionTimedOut`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use sockloop::{HostName, ProtectionLevel, Reactor, StreamSocket};
    /// # #[allow(dead_code)]
    /// # fn on_go_ahead(reactor: &mut Reactor<()>, socket: StreamSocket) -> Result<(), sockloop::Error> {
    /// // The server said `220` to `STARTTLS`:
    /// let host = HostName::new("mail.example.com")?;
    /// socket.upgrade_to_tls(reactor, ProtectionLevel::Ssl, &host)?;
    /// socket.set_tls_handshake_timeout(reactor, Duration::from_secs(3))?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidState` if the socket does not run TLS or its handshake is complete;
    /// `InvalidHandle` if closed.
    pub fn set_tls_handshake_timeout<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let operation = "set tls handshake timeout";
        let st = reactor.stream_mut(self.0, operation)?;
        let Some(tls) = st.tls_mut().filter(|t| t.is_handshaking()) else {
            return Err(Error::new(SocketErrorStatus::InvalidState, operation)
                .with_detail("no TLS handshake under way"));
        };
        tls.timeout = timeout;
        let armed = st
            .cold
            .as_ref()
            .is_some_and(|c| c.handshake_timer.is_some());
        if armed {
            // Counted from now; a socket still connecting gets it once connected.
            reactor.arm_handshake_timer(self.0);
        }
        Ok(())
    }

    /// What the TLS session negotiated: version, cipher suite, ALPN, SNI and the
    /// peer's certificates. `None` for a plain socket or before the handshake
    /// completes.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if closed.
    pub fn tls_information<S: 'static>(
        self,
        reactor: &Reactor<S>,
    ) -> Result<Option<TlsInformation>, Error> {
        let st = reactor.stream_ref(self.0, "tls information")?;
        Ok(st
            .cold
            .as_ref()
            .and_then(|c| c.tls.as_ref())
            .and_then(|t| t.information()))
    }
}

/// The protection level a stream has now: `PlainSocket`, `Ssl` while handshaking,
/// else the negotiated version.
pub(crate) fn protection_level<S: 'static>(st: &StreamState<S>) -> ProtectionLevel {
    match st.cold.as_ref().and_then(|c| c.tls.as_ref()) {
        None => ProtectionLevel::PlainSocket,
        Some(tls) => tls.level(),
    }
}

fn upgradable<S: 'static>(st: &StreamState<S>, operation: &'static str) -> Result<(), Error> {
    let why = if st.phase != Phase::Open {
        "the socket is not connected"
    } else if st.tls {
        "the socket already runs TLS"
    } else if !matches!(st.read, ReadSide::Open | ReadSide::Fin) {
        "the peer closed its sending side"
    } else {
        return writable_state(st, operation);
    };
    Err(Error::new(SocketErrorStatus::InvalidState, operation).with_detail(why))
}

impl<S: 'static> Reactor<S> {
    /// TCP is connected: a TLS stream sends its ClientHello and starts the handshake
    /// timer (`Connected` waits for the handshake). Returns whether it runs TLS.
    pub(crate) fn tls_connected(&mut self, key: Key) -> bool {
        let queued = match self.source_for_write(key) {
            Some((Source::Stream(st), pool, _)) if st.tls => queue_records(st, pool),
            _ => return false,
        };
        if let Err(err) = queued {
            self.tls_failed(key, err);
            return true;
        }
        self.arm_handshake_timer(key);
        true
    }

    /// Starts an upgrade: bytes queued so far stay in clear, ahead of the session's.
    fn upgrade(&mut self, key: Key, session: TlsSession) -> Result<(), Error> {
        let Some((Source::Stream(st), pool, _)) = self.source_for_write(key) else {
            return Err(stale("tls upgrade"));
        };
        let kept = st.inbuf_len();
        install(st, session);
        if st.delivering {
            // Whatever the handler leaves of its input is checked when it returns.
            st.upgrade_point = true;
            let _ = st.input_changed();
        } else if kept > 0 {
            self.fail_stream(key, injected(kept));
            return Err(injected(kept));
        }
        if let Err(err) = queue_records(st, pool) {
            let copy = Error::new(err.status(), "tls upgrade").with_detail(err.to_string());
            self.tls_failed(key, err);
            return Err(copy);
        }
        log::debug!("stream {key:?}: upgrading to TLS");
        self.arm_handshake_timer(key);
        let Some((Source::Stream(st), _, mut queue)) = self.source_for_write(key) else {
            return Err(stale("tls upgrade"));
        };
        let delivering = st.delivering;
        if !queue.defer(key, &mut st.dirty) {
            self.flush_stream(key);
        }
        if !delivering {
            self.mark_ready(key);
        }
        Ok(())
    }

    /// Reads ciphertext until a short read (the socket is drained, as for plain
    /// streams, unless the peer's FIN was reported), end of file or the budget; hands
    /// the plaintext to the handler, and moves the handshake on.
    ///
    /// Ciphertext is read into the upper half of the reactor's read buffer and
    /// decrypted there; plaintext goes to its lower half and is delivered from there
    /// like a plain read (what the handler leaves is kept). A record that arrived in
    /// part is kept by the session until the rest comes.
    pub(crate) fn tls_read(&mut self, state: &mut S, key: Key, mut budget: usize) {
        if self.scratch.len() < TLS_SCRATCH {
            self.scratch.resize(TLS_SCRATCH, 0);
        }
        loop {
            let limit = self.config.inbound_limit;
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                return;
            };
            if !matches!(st.phase, Phase::Open | Phase::Closing)
                || matches!(st.read, ReadSide::Eof | ReadSide::Done)
                || (st.receive_paused && st.phase == Phase::Open)
            {
                return;
            }
            let closing = st.phase == Phase::Closing;
            let held = st.inbuf_len();
            let hint = st
                .cold
                .as_ref()
                .and_then(|c| c.decoder.as_ref())
                .map_or(0, |c| c.size_hint());
            let room = if closing {
                usize::MAX
            } else {
                limit.max(hint).saturating_sub(held)
            };
            if room == 0 {
                if st.handler.is_some() {
                    let err = Error::new(SocketErrorStatus::MessageTooLong, "receive").with_detail(
                        format!("the handler left {held} bytes unconsumed, the inbound limit"),
                    );
                    self.fail_stream(key, err);
                }
                return;
            }
            let to_eof = st.read == ReadSide::Fin;
            // Plaintext that will be kept anyway (behind kept input, or for a handler
            // that cannot take it now) goes straight to the kept input.
            let keep = !st.accepts_input() || held > 0;
            let half = self.scratch.len() / 2;
            let (area, ciphertext) = self.scratch.split_at_mut(half);
            let (Some(io), Some(cold)) = (st.io.as_mut(), st.cold.as_mut()) else {
                return;
            };
            let Cold { inbuf, tls, .. } = &mut **cold;
            let Some(tls) = tls.as_deref_mut() else {
                return;
            };
            let mut plain = Plaintext::new(area, inbuf, keep, closing);
            let outcome = tls.read(
                io,
                ciphertext,
                room,
                &mut plain,
                &mut st.out,
                &mut self.pool,
            );
            let (len, kept_more) = (plain.len, plain.kept_more);
            let peer_closed = tls.peer_closed();
            let announce = match tls.is_handshaking() {
                false => tls.announce.take(),
                true => None,
            };
            let outcome = match outcome {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(err)) => return self.tls_failed(key, err),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let err = st.error("receive", e);
                    return self.fail_stream(key, err);
                }
            };
            if outcome.read > 0 {
                st.note_read();
            }
            // What the session queued (a handshake flight, session tickets, an
            // alert) leaves now, or — when the handler is about to be called — with
            // what it answers, in one send.
            let queued = !st.out.is_empty();
            let handler_next = announce.is_some() || len > 0 || kept_more > 0;
            if queued && !handler_next {
                self.mark_dirty(key);
            }
            if let Some(announce) = announce {
                self.tls_handshake_done(state, key, announce);
            }
            if len > 0 {
                // The handshake's handler call may have closed the socket meanwhile.
                let open = matches!(
                    self.sources.get(key),
                    Some(Source::Stream(st)) if st.phase == Phase::Open
                );
                if open {
                    self.received(state, key, len);
                }
            } else if kept_more > 0 {
                self.kept_more(state, key);
            }
            if queued && handler_next {
                self.mark_dirty(key);
            }
            if peer_closed {
                return self.read_eof(state, key);
            }
            if outcome.read == 0 {
                return self.tls_eof(state, key);
            }
            budget = budget.saturating_sub(outcome.read);
            if outcome.read < outcome.wanted && !to_eof {
                return;
            }
            if budget == 0 {
                return self.mark_ready(key);
            }
        }
    }

    /// The handshake has just completed: the handler is told.
    fn tls_handshake_done(&mut self, state: &mut S, key: Key, announce: Announce) {
        let timer = match self.sources.get_mut(key) {
            Some(Source::Stream(st)) => st.cold.as_mut().and_then(|c| c.handshake_timer.take()),
            _ => None,
        };
        log::debug!("stream {key:?}: TLS handshake complete");
        self.cancel_internal_timer(timer);
        match announce {
            Announce::Connected => {
                self.call_stream(state, key, StreamEvent::Connected);
            }
            Announce::Upgraded => {
                self.call_stream(state, key, StreamEvent::TlsUpgraded);
            }
            Announce::Nothing => {}
        }
    }

    /// The session failed: its alert (queued by the session) is sent if the socket
    /// takes it at once, and the socket closes with the error.
    fn tls_failed(&mut self, key: Key, err: Error) {
        if let Some((Source::Stream(st), pool, _)) = self.source_for_write(key) {
            if let Some(io) = st.io.as_mut() {
                let _ = st.out.flush(io, pool);
            }
        }
        self.fail_stream(key, err);
    }

    /// End of file on a TLS stream: after close_notify, or while closing, a clean end;
    /// during the handshake, or after it without close_notify (a truncation attack
    /// cannot be told from a peer that crashed), an error.
    fn tls_eof(&mut self, state: &mut S, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let closing = st.phase == Phase::Closing;
        let why = match st.tls_mut() {
            _ if closing => None,
            Some(tls) if tls.is_handshaking() => {
                Some("the peer closed the connection during the TLS handshake")
            }
            Some(tls) if !tls.peer_closed() => Some(
                "the peer closed the connection without close_notify: the data may be truncated",
            ),
            _ => None,
        };
        match why {
            Some(why) => {
                let err = Error::new(SocketErrorStatus::ConnectionResetByPeer, "tls receive")
                    .with_detail(why);
                let err = match st.io.as_ref().and_then(|io| io.peer_addr().ok()) {
                    Some(addr) => err.with_address(addr),
                    None => err,
                };
                self.fail_stream(key, err);
            }
            None => self.read_eof(state, key),
        }
    }

    /// Gives the handshake of a stream that is now connected its time.
    pub(crate) fn arm_handshake_timer(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(timeout) = st.tls_mut().map(|t| t.timeout) else {
            return;
        };
        let timer = self.set_source_timer(timeout, key, SourceTimer::TlsHandshake);
        if let Some(Source::Stream(st)) = self.sources.get_mut(key) {
            let old = st.cold().handshake_timer.replace(timer);
            self.cancel_internal_timer(old);
        }
    }

    /// The handshake timer fired: the handshake had not completed.
    pub(crate) fn tls_handshake_timed_out(&mut self, key: Key) {
        let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
            return;
        };
        if let Some(cold) = st.cold.as_mut() {
            cold.handshake_timer = None;
        }
        let Some(timeout) = st
            .tls_mut()
            .filter(|t| t.is_handshaking())
            .map(|t| t.timeout)
        else {
            return;
        };
        let err = Error::new(SocketErrorStatus::ConnectionTimedOut, "tls handshake").with_detail(
            format!("the TLS handshake did not complete within {timeout:?}"),
        );
        self.fail_stream(key, err);
    }

    /// `close` or `shutdown_write` on a TLS stream: close_notify goes after what is
    /// queued, before the FIN.
    pub(crate) fn tls_close_notify(&mut self, key: Key) {
        if let Some((Source::Stream(st), pool, _)) = self.source_for_write(key) {
            let out = &mut st.out;
            if let Some(tls) = st.cold.as_mut().and_then(|c| c.tls.as_mut()) {
                tls.close_notify(out, pool);
            }
        }
    }
}
