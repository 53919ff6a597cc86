//! The TLS transport of a stream: a rustls connection driven through its unbuffered
//! API. The caller hands it the ciphertext it read (in the reactor's shared read
//! buffer), a sink for the plaintext, and the stream's write queue, into whose chunks
//! records are encrypted directly.
//!
//! An idle session holds no buffer: the ciphertext of a record that arrived in part
//! is kept between reads (`cipher_in`, freed once the record is complete), and
//! plaintext written before the handshake completed (`early`) is freed once sent.
//!
//! Cost per record, with rustls 0.23: rustls copies each decrypted record into a
//! buffer of its own (`ReadTraffic::next_record`), and encrypts each record into a
//! buffer of its own before copying it into ours (`WriteTraffic::encrypt`): one
//! allocation per record in each direction is rustls', not ours.

use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedConnectionCommon,
    UnbufferedStatus, WriteTraffic,
};
use rustls::CommonState;

use super::config::{ProtectionLevel, TlsClientOptions, TlsInformation, TlsServerConfig};
use super::verify::tls_error;
use crate::error::{Error, SocketErrorStatus};
use crate::io::outbound::Outbound;
use crate::io::sys;
use crate::io::BufPool;

/// How long a TLS handshake may take by default.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest TLS record on the wire: header, 16 KiB of plaintext and the most
/// expansion TLS 1.2 allows.
pub(crate) const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// The most plaintext rustls puts in one record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Record overhead (header, explicit nonce, tag, content type) of every rustls cipher
/// suite is under this: a record of `n` plaintext bytes is encrypted into room for
/// `n + RECORD_ROOM`, and encrypted again with the exact size if that was short.
const RECORD_ROOM: usize = 64;

/// The most ciphertext a session keeps between reads: a handshake message of 64 KiB
/// (rustls' limit) spread over records, and one record behind it.
const MAX_KEPT: usize = 64 * 1024 + 2 * MAX_RECORD;

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

enum Conn {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

/// The two sides' `process_tls_records`, which rustls implements for each.
trait Side: Sized {
    fn process<'c, 'i>(
        conn: &'c mut UnbufferedConnectionCommon<Self>,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self>;
}

impl Side for ClientConnectionData {
    fn process<'c, 'i>(
        conn: &'c mut UnbufferedConnectionCommon<Self>,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self> {
        conn.process_tls_records(incoming)
    }
}

impl Side for ServerConnectionData {
    fn process<'c, 'i>(
        conn: &'c mut UnbufferedConnectionCommon<Self>,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self> {
        conn.process_tls_records(incoming)
    }
}

/// Where decrypted plaintext goes: the front of the reactor's read buffer, from where
/// it is delivered as plain reads are, or the socket's kept input when it keeps input
/// (or the read buffer is full), or nowhere (a closing socket).
pub(crate) struct Plaintext<'a> {
    area: &'a mut [u8],
    /// Bytes in `area`.
    pub(crate) len: usize,
    kept: &'a mut Vec<u8>,
    /// Bytes appended to `kept`.
    pub(crate) kept_more: usize,
    discard: bool,
}

impl<'a> Plaintext<'a> {
    /// Into `area` (and then `kept`, if it fills up), or straight into `kept` if `keep`.
    pub(crate) fn new(
        area: &'a mut [u8],
        kept: &'a mut Vec<u8>,
        keep: bool,
        discard: bool,
    ) -> Plaintext<'a> {
        let area = if keep { &mut area[..0] } else { area };
        Plaintext {
            area,
            len: 0,
            kept,
            kept_more: 0,
            discard,
        }
    }

    fn put(&mut self, data: &[u8]) {
        if self.discard {
            return;
        }
        if self.kept_more == 0 && self.area.len() - self.len >= data.len() {
            self.area[self.len..self.len + data.len()].copy_from_slice(data);
            self.len += data.len();
            return;
        }
        if self.kept_more == 0 && self.len > 0 {
            // The area is full: what it holds goes first, ahead of the rest.
            self.kept.extend_from_slice(&self.area[..self.len]);
            self.kept_more = self.len;
            self.len = 0;
        }
        self.kept.extend_from_slice(data);
        self.kept_more += data.len();
    }
}

/// The session's state besides the rustls connection.
struct Flags {
    /// Plaintext written before the handshake completed.
    early: Vec<u8>,
    handshaking: bool,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// close_notify is to be sent (once the handshake completes, if it has not).
    close: bool,
    /// close_notify was queued.
    closed: bool,
    /// rustls reported an error: only its alert may still be sent.
    failed: bool,
}

pub(crate) struct TlsSession {
    conn: Conn,
    flags: Flags,
    /// Ciphertext of a record (or handshake message) that arrived in part; no
    /// allocation while empty.
    cipher_in: Vec<u8>,
    /// The size of the first record of the last read: reads are sized to end where
    /// records of that size would, so that none is left in part.
    record_len: usize,
    /// What to tell the handler when the handshake completes; `None` once done.
    pub(crate) announce: Option<Announce>,
    /// The name sent as SNI (client side) or received (server side).
    sni: Option<String>,
    /// Server side: the ClientHello was looked at for its SNI.
    hello_seen: bool,
    /// How long the handshake may take once the connection is open.
    pub(crate) timeout: Duration,
}

/// What one read did.
pub(crate) struct ReadOutcome {
    /// Bytes the socket gave (0: end of file).
    pub(crate) read: usize,
    /// Bytes asked for: a read shorter than this drained the socket.
    pub(crate) wanted: usize,
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
        let conn = UnbufferedClientConnection::new(config, server_name)
            .map_err(|e| tls_error(operation, &e))?;
        Ok(TlsSession::new(Conn::Client(conn), announce, sni))
    }

    /// A server session.
    pub(crate) fn server(
        config: &TlsServerConfig,
        announce: Announce,
    ) -> Result<TlsSession, Error> {
        let conn = UnbufferedServerConnection::new(Arc::clone(&config.rustls()))
            .map_err(|e| tls_error("tls accept", &e))?;
        Ok(TlsSession::new(Conn::Server(conn), announce, None))
    }

    fn new(conn: Conn, announce: Announce, sni: Option<String>) -> TlsSession {
        TlsSession {
            conn,
            flags: Flags {
                early: Vec::new(),
                handshaking: true,
                peer_closed: false,
                close: false,
                closed: false,
                failed: false,
            },
            cipher_in: Vec::new(),
            record_len: 0,
            announce: Some(announce),
            hello_seen: sni.is_some(),
            sni,
            timeout: HANDSHAKE_TIMEOUT,
        }
    }

    fn common(&self) -> &CommonState {
        match &self.conn {
            Conn::Client(c) => c,
            Conn::Server(s) => s,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.flags.handshaking
    }

    /// Plaintext written and held until the handshake completes (it counts against
    /// the stream's write limit).
    pub(crate) fn early(&self) -> usize {
        self.flags.early.len()
    }

    /// The peer sent close_notify (and all plaintext before it was taken).
    pub(crate) fn peer_closed(&self) -> bool {
        self.flags.peer_closed
    }

    /// Encrypts `data` into `out`, or holds it until the handshake completes; also
    /// queues what the session has to send.
    pub(crate) fn write(
        &mut self,
        data: &[u8],
        out: &mut Outbound,
        pool: &mut BufPool,
    ) -> Result<(), Error> {
        if self.flags.handshaking || self.flags.failed {
            self.flags.early.extend_from_slice(data);
            return Ok(());
        }
        self.pump_kept(data, out, pool)
    }

    /// Queues what the session has to send (handshake records, plaintext held until
    /// now, close_notify).
    pub(crate) fn queue(&mut self, out: &mut Outbound, pool: &mut BufPool) -> Result<(), Error> {
        if self.flags.failed {
            return Ok(());
        }
        self.pump_kept(&[], out, pool)
    }

    /// Drives the connection without new input. rustls is given the ciphertext kept
    /// from earlier reads, as it must be: a handshake message spread over records
    /// it has seen in part is still read from there.
    fn pump_kept(
        &mut self,
        app: &[u8],
        out: &mut Outbound,
        pool: &mut BufPool,
    ) -> Result<(), Error> {
        let mut kept = std::mem::take(&mut self.cipher_in);
        let result = self.pump(&mut kept, app, None, out, pool);
        if let Ok(used) = result {
            kept.drain(..used);
        }
        self.cipher_in = kept;
        result.map(|_| ())
    }

    /// Queues close_notify: now, or once the handshake completes.
    pub(crate) fn close_notify(&mut self, out: &mut Outbound, pool: &mut BufPool) {
        self.flags.close = true;
        let _ = self.queue(out, pool);
    }

    /// Reads once from `io` (at most `room` bytes, into `area` — the reactor's shared
    /// buffer — behind the ciphertext kept from earlier reads, or onto the kept
    /// ciphertext if that is too long to move), processes every complete record,
    /// and keeps the rest. Plaintext goes to `plain`, records to send to `out`.
    ///
    /// # Errors
    ///
    /// The read's error (nothing was read: what was kept stays), or, as `Ok(Err)`, the
    /// session's (an alert for the peer may be ready, see `queue_alert`).
    pub(crate) fn read<R: Read + AsFd>(
        &mut self,
        io: &mut R,
        area: &mut [u8],
        room: usize,
        plain: &mut Plaintext<'_>,
        out: &mut Outbound,
        pool: &mut BufPool,
    ) -> io::Result<Result<ReadOutcome, Error>> {
        let kept = self.cipher_in.len();
        let done = if kept <= area.len() / 2 {
            // The usual case: ciphertext is read into the shared buffer, behind what
            // was kept (moved there first), and processed in place.
            let wanted =
                read_size(&self.cipher_in, area.len() - kept, self.record_len).min(room.max(1));
            let read = io.read(&mut area[kept..kept + wanted])?;
            area[..kept].copy_from_slice(&self.cipher_in);
            self.cipher_in.clear();
            let filled = kept + read;
            if let Some(len) = record_len(&area[..filled]) {
                self.record_len = len;
            }
            self.look_for_sni(&area[..filled]);
            let result = self.pump(&mut area[..filled], &[], Some(plain), out, pool);
            if let Ok(used) = result {
                self.cipher_in.extend_from_slice(&area[used..filled]);
            }
            result.map(|_| ReadOutcome { read, wanted })
        } else {
            // A long message under way (a certificate chain over several records):
            // read onto what is kept.
            let wanted = MAX_KEPT
                .saturating_sub(kept)
                .min(room.max(1))
                .min(area.len());
            if wanted == 0 {
                self.flags.failed = true;
                return Ok(Err(Error::new(
                    SocketErrorStatus::ProtocolError,
                    "tls receive",
                )
                .with_detail(format!(
                    "{kept} bytes of ciphertext received and none of it a complete record"
                ))));
            }
            let read = sys::read_append(io.as_fd(), &mut self.cipher_in, wanted)?;
            let mut buf = std::mem::take(&mut self.cipher_in);
            self.look_for_sni(&buf);
            let result = self.pump(&mut buf, &[], Some(plain), out, pool);
            if let Ok(used) = result {
                buf.drain(..used);
            }
            self.cipher_in = buf;
            result.map(|_| ReadOutcome { read, wanted })
        };
        if self.cipher_in.is_empty() && self.cipher_in.capacity() > 0 {
            // Idle: no buffer of its own.
            self.cipher_in = Vec::new();
        }
        Ok(done)
    }

    /// Server side, before the first record is processed: the SNI of the ClientHello
    /// (rustls' unbuffered server does not tell it). Reported only once rustls has
    /// accepted the ClientHello it came from.
    fn look_for_sni(&mut self, incoming: &[u8]) {
        if self.hello_seen || !matches!(self.conn, Conn::Server(_)) {
            return;
        }
        // A ClientHello in one record (as every client sends it) is looked at once
        // complete; one over several records is not looked into.
        match client_hello_sni(incoming) {
            Hello::Partial => {}
            Hello::Done(name) => {
                self.hello_seen = true;
                self.sni = name;
            }
        }
    }

    /// Drives the connection over `incoming`: handshake, decryption (plaintext to
    /// `plain`), records to send into `out`; encrypts `app` (or holds it until the
    /// handshake completes). Returns how much of `incoming` was used.
    fn pump(
        &mut self,
        incoming: &mut [u8],
        app: &[u8],
        plain: Option<&mut Plaintext<'_>>,
        out: &mut Outbound,
        pool: &mut BufPool,
    ) -> Result<usize, Error> {
        let result = match &mut self.conn {
            Conn::Client(c) => pump(c, &mut self.flags, incoming, app, plain, out, pool),
            Conn::Server(s) => pump(s, &mut self.flags, incoming, app, plain, out, pool),
        };
        if result.is_err() {
            self.flags.failed = true;
        }
        result
    }

    /// The negotiated version as a level; `Ssl` while handshaking.
    pub(crate) fn level(&self) -> ProtectionLevel {
        if self.flags.handshaking {
            return ProtectionLevel::Ssl;
        }
        ProtectionLevel::of_version(self.common().protocol_version())
    }

    /// What was negotiated, once the handshake is complete.
    pub(crate) fn information(&self) -> Option<TlsInformation> {
        if self.flags.handshaking {
            return None;
        }
        let common = self.common();
        let suite = common.negotiated_cipher_suite()?;
        // Server side: the SNI of a ClientHello rustls accepted (the handshake is
        // complete).
        Some(TlsInformation {
            protection_level: ProtectionLevel::of_version(common.protocol_version()),
            cipher_suite: format!("{:?}", suite.suite()),
            alpn_protocol: common.alpn_protocol().map(<[u8]>::to_vec),
            server_name: self.sni.clone(),
            peer_certificates: common
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
            resumed: common.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }
}

/// What the first bytes of a server's input say of the client's SNI.
#[derive(Debug, PartialEq, Eq)]
enum Hello {
    /// The first record is not complete yet.
    Partial,
    /// The first record is complete: the host name it asks for, if any (and if it is
    /// a valid DNS name, lower-cased, as rustls takes it).
    Done(Option<String>),
}

/// The SNI host name of the ClientHello in the first TLS record of `data`.
fn client_hello_sni(data: &[u8]) -> Hello {
    if data.first().is_some_and(|&kind| kind != 22) {
        return Hello::Done(None); // not a handshake record
    }
    let Some(header) = data.get(..5) else {
        return Hello::Partial;
    };
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let Some(record) = data.get(5..5 + len) else {
        return Hello::Partial;
    };
    Hello::Done(parse_hello(record).and_then(|name| {
        let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        let valid = matches!(
            ServerName::try_from(name.as_str()),
            Ok(ServerName::DnsName(_))
        );
        valid.then_some(name)
    }))
}

/// A reader of big-endian, length-prefixed fields; `None` past the end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self, bytes: usize) -> Option<usize> {
        Some(
            self.take(bytes)?
                .iter()
                .fold(0, |n, &b| n << 8 | usize::from(b)),
        )
    }

    fn vec(&mut self, bytes: usize) -> Option<&'a [u8]> {
        let n = self.len(bytes)?;
        self.take(n)
    }
}

/// The host name in the server_name extension of a ClientHello handshake message.
fn parse_hello(record: &[u8]) -> Option<&[u8]> {
    let mut r = Fields(record);
    if r.len(1)? != 1 {
        return None; // not a ClientHello
    }
    let mut hello = Fields(r.vec(3)?);
    hello.take(2 + 32)?; // version, random
    hello.vec(1)?; // session id
    hello.vec(2)?; // cipher suites
    hello.vec(1)?; // compression methods
    let mut extensions = Fields(hello.vec(2)?);
    while !extensions.0.is_empty() {
        let kind = extensions.len(2)?;
        let body = extensions.vec(2)?;
        if kind == 0 {
            let mut list = Fields(Fields(body).vec(2)?);
            while !list.0.is_empty() {
                let name_type = list.len(1)?;
                let name = list.vec(2)?;
                if name_type == 0 {
                    return Some(name);
                }
            }
            return None;
        }
    }
    None
}

/// The size of the record starting `buf`, if its header is there.
fn record_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..5)?;
    Some(5 + usize::from(u16::from_be_bytes([header[3], header[4]])))
}

/// How much to read behind the ciphertext `kept`, with `space` free: the rest of the
/// record it ends with, and then as many records of `record_len` bytes (the size the
/// peer's records had) as fit. A read that ends on a record boundary leaves nothing
/// to keep and to move (a peer sending full records, as in a bulk transfer, sends
/// them all the same size). Anything else is still read and kept correctly.
fn read_size(kept: &[u8], space: usize, record_len: usize) -> usize {
    // The record `kept` ends in (it starts on a record boundary).
    let mut at = 0;
    let mut missing = 0;
    while let Some(len) = kept.get(at..).and_then(self::record_len) {
        if at + len > kept.len() {
            missing = at + len - kept.len();
            break;
        }
        at += len;
    }
    if (at < kept.len() && missing == 0) || missing > space {
        return space; // a header in part, or a record longer than the room
    }
    let records = match record_len {
        0 => 0,
        len => (space - missing) / len * len,
    };
    match missing + records {
        0 => space,
        n => n,
    }
}

/// The state machine over `incoming`, until it needs more input.
fn pump<D: Side>(
    conn: &mut UnbufferedConnectionCommon<D>,
    flags: &mut Flags,
    incoming: &mut [u8],
    mut app: &[u8],
    mut plain: Option<&mut Plaintext<'_>>,
    out: &mut Outbound,
    pool: &mut BufPool,
) -> Result<usize, Error> {
    let mut used = 0;
    // Bounds the loop should rustls keep asking for the same thing.
    for _ in 0..incoming.len() + 64 {
        let operation = if flags.handshaking {
            "tls handshake"
        } else {
            "tls receive"
        };
        // Plaintext leaves only once the handshake is complete (with client
        // certificates, the client is authenticated only then).
        let complete = !conn.is_handshaking();
        let status = D::process(conn, &mut incoming[used..]);
        let discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => {
                queue_alert(conn, &mut incoming[used + discard..], out, pool);
                return Err(tls_error(operation, &e));
            }
        };
        let mut stop = false;
        match state {
            ConnectionState::ReadTraffic(mut records) => {
                let Some(plain) = plain.as_deref_mut() else {
                    // Kept ciphertext is never whole records of data (they are
                    // decrypted when read): never dropped, but refused.
                    return Err(Error::new(SocketErrorStatus::ProtocolError, operation)
                        .with_detail("application data outside a read"));
                };
                while let Some(record) = records.next_record() {
                    let record = record.map_err(|e| tls_error(operation, &e))?;
                    plain.put(record.payload);
                }
            }
            ConnectionState::ReadEarlyData(_) => {
                // Our server configurations do not accept 0-RTT data.
                return Err(Error::new(SocketErrorStatus::ProtocolError, operation)
                    .with_detail("0-RTT data received, which was not offered"));
            }
            ConnectionState::EncodeTlsData(mut encode) => encode_into(&mut encode, out, pool)?,
            ConnectionState::TransmitTlsData(mut transmit) => {
                if let (true, Some(mut writer)) = (complete, transmit.may_encrypt_app_data()) {
                    write_held(&mut writer, flags, &mut app, out, pool)?;
                }
                // Queued: the stream sends it.
                transmit.done();
            }
            ConnectionState::WriteTraffic(mut writer) => {
                if complete {
                    write_held(&mut writer, flags, &mut app, out, pool)?;
                }
                stop = true;
            }
            ConnectionState::PeerClosed => flags.peer_closed = true,
            ConnectionState::BlockedHandshake | ConnectionState::Closed => stop = true,
            _ => stop = true,
        }
        used += discard;
        if flags.handshaking && !conn.is_handshaking() {
            flags.handshaking = false;
            if !complete {
                // Completed just now: what was held can go, on the next round.
                continue;
            }
        }
        if stop {
            if !app.is_empty() {
                flags.early.extend_from_slice(app);
            }
            return Ok(used);
        }
    }
    Err(Error::new(SocketErrorStatus::ProtocolError, "tls receive")
        .with_detail("the TLS state machine made no progress"))
}

/// Encrypts what was held, then `app`, then close_notify if asked for.
fn write_held<D>(
    writer: &mut WriteTraffic<'_, D>,
    flags: &mut Flags,
    app: &mut &[u8],
    out: &mut Outbound,
    pool: &mut BufPool,
) -> Result<(), Error> {
    if !flags.early.is_empty() {
        let early = std::mem::take(&mut flags.early);
        encrypt_into(writer, &early, out, pool)?;
    }
    if !app.is_empty() {
        encrypt_into(writer, app, out, pool)?;
        *app = &[];
    }
    if flags.close && !flags.closed {
        flags.closed = true;
        encrypt_with(out, pool, RECORD_ROOM, |buf| writer.queue_close_notify(buf))?;
    }
    Ok(())
}

/// Encrypts `data` into `out`, a record of up to 16 KiB at a time, each straight into
/// a chunk of the queue.
fn encrypt_into<D>(
    writer: &mut WriteTraffic<'_, D>,
    data: &[u8],
    out: &mut Outbound,
    pool: &mut BufPool,
) -> Result<(), Error> {
    for piece in data.chunks(MAX_FRAGMENT) {
        encrypt_with(out, pool, piece.len() + RECORD_ROOM, |buf| {
            writer.encrypt(piece, buf)
        })?;
    }
    Ok(())
}

/// Appends what `fill` writes into a buffer of `size` bytes: the queue's last chunk if
/// it has the room, else a fresh one; again with the size `fill` asks for if short.
fn encrypt_with(
    out: &mut Outbound,
    pool: &mut BufPool,
    size: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), Error> {
    let mut size = size;
    for _ in 0..2 {
        let result = out.push_with(
            pool,
            size,
            usize::MAX,
            |buf| {
                let start = buf.len();
                buf.resize(start + size, 0);
                match fill(&mut buf[start..]) {
                    Ok(n) => {
                        buf.truncate(start + n);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            },
            |_| EncryptError::EncryptExhausted,
        );
        match result {
            Ok(_) => return Ok(()),
            Err(EncryptError::InsufficientSize(e)) => size = e.required_size,
            Err(e) => {
                return Err(Error::new(SocketErrorStatus::ProtocolError, "tls send")
                    .with_detail(e.to_string()))
            }
        }
    }
    Err(Error::new(SocketErrorStatus::ProtocolError, "tls send")
        .with_detail("record larger than announced"))
}

/// Encodes a handshake record into `out`.
fn encode_into<D>(
    encode: &mut EncodeTlsData<'_, D>,
    out: &mut Outbound,
    pool: &mut BufPool,
) -> Result<(), Error> {
    // Most handshake records are short; a longer one is encoded again with its size.
    let mut size = 4096;
    for _ in 0..2 {
        let result = out.push_with(
            pool,
            size,
            usize::MAX,
            |buf| {
                let start = buf.len();
                buf.resize(start + size, 0);
                let n = encode.encode(&mut buf[start..])?;
                buf.truncate(start + n);
                Ok(())
            },
            |_| EncodeError::AlreadyEncoded,
        );
        match result {
            Ok(_) => return Ok(()),
            Err(EncodeError::InsufficientSize(e)) => size = e.required_size,
            Err(e) => {
                return Err(Error::new(SocketErrorStatus::ProtocolError, "tls send")
                    .with_detail(e.to_string()))
            }
        }
    }
    Err(Error::new(SocketErrorStatus::ProtocolError, "tls send")
        .with_detail("handshake record larger than announced"))
}

/// After an error: queues the alert rustls has for the peer, if any. `incoming` is
/// what is left of the buffer the error came from (rustls still refers to it).
///
/// Only records rustls holds are taken: once they are, it is not asked again (it would
/// look at the input that failed once more).
fn queue_alert<D: Side>(
    conn: &mut UnbufferedConnectionCommon<D>,
    incoming: &mut [u8],
    out: &mut Outbound,
    pool: &mut BufPool,
) {
    let mut used = 0;
    for _ in 0..8 {
        if !conn.wants_write() {
            return;
        }
        let status = D::process(conn, &mut incoming[used..]);
        let discard = status.discard;
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                if encode_into(&mut encode, out, pool).is_err() {
                    return;
                }
            }
            _ => return,
        }
        used += discard;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a session holds besides rustls' connection (the handshake's options, the
    /// flags, two empty buffers) stays small: an idle session's memory is rustls'.
    #[test]
    fn sni_of_a_client_hello() {
        // A ClientHello made by rustls for "Example.COM".
        let config = crate::tls::TlsClientOptions::default()
            .client_config(ProtectionLevel::Ssl, "test")
            .unwrap();
        let name = ServerName::try_from("Example.COM").unwrap();
        let mut conn = UnbufferedClientConnection::new(config, name).unwrap();
        let mut hello = vec![0u8; 4096];
        let status = conn.process_tls_records(&mut []);
        let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state else {
            panic!("no ClientHello");
        };
        let n = encode.encode(&mut hello).unwrap();
        hello.truncate(n);
        assert_eq!(
            client_hello_sni(&hello),
            Hello::Done(Some("example.com".into()))
        );
        // Cut anywhere inside the record: not complete yet.
        for cut in [0, 3, 5, n / 2, n - 1] {
            assert_eq!(client_hello_sni(&hello[..cut]), Hello::Partial, "{cut}");
        }
        // Garbled (every byte in turn set to 0xff or 0): never a panic.
        for i in 5..n {
            for b in [0xff, 0] {
                let mut bad = hello.clone();
                bad[i] = b;
                let _ = client_hello_sni(&bad);
            }
        }
        // Not a handshake record.
        assert_eq!(client_hello_sni(b"EHLO x\r\n"), Hello::Done(None));
    }

    #[test]
    fn reads_end_on_record_boundaries() {
        let record = |len: usize| {
            let mut r = vec![23, 3, 3];
            r.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            r.resize(5 + len, 0);
            r
        };
        // Nothing kept: as many records of the last size as fit, else all the room.
        assert_eq!(read_size(&[], 40_000, 16_406), 32_812);
        assert_eq!(read_size(&[], 10_000, 16_406), 10_000);
        assert_eq!(read_size(&[], 10_000, 0), 10_000);
        // Part of a record kept: its rest, then whole records.
        let full = record(16_401);
        assert_eq!(read_size(&full[..1000], 39_000, 16_406), 15_406 + 16_406);
        assert_eq!(read_size(&full[..1000], 20_000, 16_406), 15_406);
        // Its rest does not fit: all the room.
        assert_eq!(read_size(&full[..1000], 10_000, 16_406), 10_000);
        // A header in part: all the room.
        assert_eq!(read_size(&full[..3], 40_000, 16_406), 40_000);
        // Whole records, then part of one (a handshake message over records).
        let mut two = record(100);
        two.extend_from_slice(&record(200)[..50]);
        assert_eq!(read_size(&two, 1000, 0), 155);
    }

    #[test]
    fn a_session_is_the_rustls_connection_and_a_few_words() {
        let ours = std::mem::size_of::<TlsSession>() - std::mem::size_of::<Conn>();
        assert!(ours <= 128, "{ours} bytes of our own per session");
    }
}
