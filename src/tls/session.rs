//! The TLS transport of a stream: a rustls connection (buffered API) fed the
//! ciphertext read from the socket, giving the plaintext to deliver, and encrypting
//! what is written into the stream's queue.
//!
//! Cost, with rustls' buffered API: received records are decrypted in rustls' own
//! buffer and copied once into the stream's input buffer; written plaintext is
//! encrypted into a buffer rustls allocates per record, then copied into the write
//! queue's chunks.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use super::config::{ProtectionLevel, TlsClientOptions, TlsInformation, TlsServerConfig};
use super::verify::tls_error;
use crate::error::{Error, SocketErrorStatus};

/// How long a TLS handshake may take by default.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handler is told when the handshake completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    /// A socket made with `connect` at a TLS level: `Connected`.
    Connected,
    /// A socket upgraded in place: `TlsUpgraded`.
    Upgraded,
    /// A socket accepted by a TLS listener: nothing (its handler sees data).
    Nothing,
}

pub(crate) struct TlsSession {
    conn: Connection,
    /// What to tell the handler when the handshake completes; `None` once done.
    pub(crate) announce: Option<Announce>,
    /// Plaintext written before the handshake completed, held by rustls (it counts
    /// against the stream's write limit).
    pub(crate) early: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// Decrypted bytes rustls holds, as of the last `process` and reads since.
    plaintext: usize,
    /// The name sent as SNI (client side).
    sni: Option<String>,
    /// How long the handshake may take once the connection is open.
    pub(crate) timeout: Duration,
}

impl TlsSession {
    /// A client session verifying the server's certificate for `ip` if given, else
    /// for `name` (a DNS name in ASCII), which is then sent as SNI.
    pub(crate) fn client(
        level: ProtectionLevel,
        options: &TlsClientOptions,
        name: &str,
        ip: Option<IpAddr>,
        announce: Announce,
    ) -> Result<TlsSession, Error> {
        let operation = "tls connect";
        let config = options.client_config(level, operation)?;
        let server_name = match ip {
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => ServerName::try_from(name.to_owned()).map_err(|e| {
                Error::new(SocketErrorStatus::InvalidArgument, operation)
                    .with_detail(format!("{name}: {e}"))
            })?,
        };
        let sni = ip.is_none().then(|| name.to_owned());
        let conn =
            ClientConnection::new(config, server_name).map_err(|e| tls_error(operation, &e))?;
        Ok(TlsSession::new(conn.into(), announce, sni))
    }

    /// A server session.
    pub(crate) fn server(
        config: &TlsServerConfig,
        announce: Announce,
    ) -> Result<TlsSession, Error> {
        let conn = ServerConnection::new(Arc::clone(&config.rustls()))
            .map_err(|e| tls_error("tls accept", &e))?;
        Ok(TlsSession::new(conn.into(), announce, None))
    }

    fn new(mut conn: Connection, announce: Announce, sni: Option<String>) -> TlsSession {
        // The stream's write limit bounds what is written; rustls' own limit would
        // make a write short.
        conn.set_buffer_limit(None);
        TlsSession {
            conn,
            announce: Some(announce),
            early: 0,
            peer_closed: false,
            plaintext: 0,
            sni,
            timeout: HANDSHAKE_TIMEOUT,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Encrypts `data` (or holds it until the handshake completes).
    pub(crate) fn write_plain(&mut self, data: &[u8]) -> io::Result<()> {
        if self.conn.is_handshaking() {
            self.early += data.len();
        }
        self.conn.writer().write_all(data)
    }

    /// Moves every record ready to leave into `out`.
    pub(crate) fn send_tls(&mut self, out: &mut impl Write) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        if !self.conn.is_handshaking() {
            self.early = 0;
        }
        Ok(())
    }

    /// Reads ciphertext from `io` (one read).
    pub(crate) fn read_tls(&mut self, io: &mut impl Read) -> io::Result<usize> {
        self.conn.read_tls(io)
    }

    /// Processes what was read: handshake, decryption, alerts.
    ///
    /// # Errors
    ///
    /// A mapped rustls error; an alert for the peer may then be ready to send.
    pub(crate) fn process(&mut self) -> Result<(), Error> {
        let operation = if self.conn.is_handshaking() {
            "tls handshake"
        } else {
            "tls receive"
        };
        let io = self
            .conn
            .process_new_packets()
            .map_err(|e| tls_error(operation, &e))?;
        if io.peer_has_closed() {
            self.peer_closed = true;
        }
        self.plaintext = io.plaintext_bytes_to_read();
        Ok(())
    }

    /// Appends up to `max` bytes of decrypted plaintext to `buf`; returns how many.
    pub(crate) fn take_plaintext(&mut self, buf: &mut Vec<u8>, max: usize) -> usize {
        let mut total = 0;
        while total < max && self.plaintext > 0 {
            let start = buf.len();
            let want = (max - total).min(self.plaintext);
            buf.resize(start + want, 0);
            let got = self.conn.reader().read(&mut buf[start..]).unwrap_or(0);
            buf.truncate(start + got);
            if got == 0 {
                self.plaintext = 0;
                break;
            }
            self.plaintext -= got;
            total += got;
        }
        total
    }

    /// Drops the plaintext received (a closing socket's).
    pub(crate) fn discard_plaintext(&mut self) {
        let mut sink = [0u8; 1024];
        while matches!(self.conn.reader().read(&mut sink), Ok(n) if n > 0) {}
        self.plaintext = 0;
    }

    /// The peer sent close_notify (and all plaintext before it was taken).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues close_notify (sent with the next `send_tls`).
    pub(crate) fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// The negotiated version as a level; `Ssl` while handshaking.
    pub(crate) fn level(&self) -> ProtectionLevel {
        if self.conn.is_handshaking() {
            return ProtectionLevel::Ssl;
        }
        ProtectionLevel::of_version(self.conn.protocol_version())
    }

    /// What was negotiated, once the handshake is complete.
    pub(crate) fn information(&self) -> Option<TlsInformation> {
        if self.conn.is_handshaking() {
            return None;
        }
        let suite = self.conn.negotiated_cipher_suite()?;
        let server_name = match &self.conn {
            Connection::Client(_) => self.sni.clone(),
            Connection::Server(s) => s.server_name().map(str::to_owned),
        };
        Some(TlsInformation {
            protection_level: ProtectionLevel::of_version(self.conn.protocol_version()),
            cipher_suite: format!("{:?}", suite.suite()),
            alpn_protocol: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            server_name,
            peer_certificates: self
                .conn
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
            resumed: self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }
}
