//! TLS on a stream: the session between the socket and the receive and send paths,
//! in-place upgrades (client and server), and what was negotiated.
//!
//! Received ciphertext is read by the session, decrypted, and the plaintext appended
//! to the socket's kept input, from where it is delivered like any other input
//! (`Received`, codecs, pause and resume). Written plaintext is encrypted into the
//! write queue; bytes queued before an upgrade leave first, in clear.

use std::io::{self, Write};

use super::receive::injected;
use super::state::{writable_state, Phase, ReadSide, StreamState};
use super::{stale, StreamEvent, StreamSocket};
use crate::error::{Error, SocketErrorStatus};
use crate::io::outbound::Outbound;
use crate::io::BufPool;
use crate::net::control::StreamSocketControl;
use crate::net::hostname::HostName;
use crate::reactor::{Key, Reactor, Source, SourceTimer};
use crate::tls::{
    Announce, ProtectionLevel, TlsClientOptions, TlsInformation, TlsServerConfig, TlsSession,
};

/// The write queue as a `Write` for the session's records.
struct QueueWriter<'a> {
    out: &'a mut Outbound,
    pool: &'a mut BufPool,
}

impl Write for QueueWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.out.push(data, self.pool);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Moves the session's records into the stream's write queue.
pub(crate) fn queue_records<S: 'static>(st: &mut StreamState<S>, pool: &mut BufPool) {
    let out = &mut st.out;
    if let Some(tls) = st.cold.as_mut().and_then(|c| c.tls.as_mut()) {
        // Writing to the queue cannot fail.
        let _ = tls.send_tls(&mut QueueWriter { out, pool });
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
    let early = st.tls_mut().map_or(0, |t| t.early);
    let queued = st.out.len() + early;
    if queued.saturating_add(data.len()) > limit {
        return Err(super::over_limit(st, "write", queued, data.len(), limit));
    }
    if let Some(tls) = st.tls_mut() {
        tls.write_plain(data)
            .map_err(|e| Error::from_io("tls write", e))?;
    }
    queue_records(st, pool);
    Ok(())
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
        match self.source_for_write(key) {
            Some((Source::Stream(st), pool, _)) if st.tls => queue_records(st, pool),
            _ => return false,
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
        queue_records(st, pool);
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

    /// Reads ciphertext until `WouldBlock`, end of file or the budget, hands the
    /// plaintext to the handler, and moves the handshake on.
    pub(crate) fn tls_read(&mut self, state: &mut S, key: Key, mut budget: usize) {
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
            let room = limit.max(hint).saturating_sub(held);
            let (Some(io), Some(cold)) = (st.io.as_mut(), st.cold.as_mut()) else {
                return;
            };
            let Some(tls) = cold.tls.as_mut() else { return };
            // Plaintext already decrypted goes first.
            if closing {
                tls.discard_plaintext();
            } else if room > 0 && tls.take_plaintext(&mut cold.inbuf, room) > 0 {
                self.kept_more(state, key);
                continue;
            }
            if tls.peer_closed() {
                return self.read_eof(state, key);
            }
            if room == 0 && !closing {
                if st.handler.is_some() {
                    let err = Error::new(SocketErrorStatus::MessageTooLong, "receive").with_detail(
                        format!("the handler left {held} bytes unconsumed, the inbound limit"),
                    );
                    self.fail_stream(key, err);
                }
                return;
            }
            match tls.read_tls(io) {
                Ok(0) => return self.tls_eof(state, key),
                Ok(n) => {
                    if st.watched {
                        if let Some(w) = cold.watch.as_deref_mut() {
                            w.received();
                        }
                    }
                    if let Err(err) = tls.process() {
                        return self.tls_failed(key, err);
                    }
                    self.tls_progress(state, key);
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return self.mark_ready(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = st.error("receive", e);
                    return self.fail_stream(key, err);
                }
            }
        }
    }

    /// After records were processed: sends what the session has to send, and tells
    /// the handler when the handshake has just completed.
    fn tls_progress(&mut self, state: &mut S, key: Key) {
        let Some((Source::Stream(st), pool, _)) = self.source_for_write(key) else {
            return;
        };
        queue_records(st, pool);
        let done = match st.tls_mut() {
            Some(tls) if !tls.is_handshaking() => tls.announce.take(),
            _ => None,
        };
        let timer = match done {
            Some(_) => st.cold.as_mut().and_then(|c| c.handshake_timer.take()),
            None => None,
        };
        if !st.out.is_empty() {
            self.mark_dirty(key);
        }
        let Some(announce) = done else { return };
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

    /// The session failed: its alert is sent if the socket takes it at once, and the
    /// socket closes with the error.
    fn tls_failed(&mut self, key: Key, err: Error) {
        if let Some((Source::Stream(st), pool, _)) = self.source_for_write(key) {
            queue_records(st, pool);
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
            if let Some(tls) = st.tls_mut() {
                tls.close_notify();
                queue_records(st, pool);
            }
        }
    }
}
