//! TLS over loopback: our client against our server (TLS 1.2 and 1.3), certificate
//! failures with their statuses, STARTTLS both ways and its injection guard, clean and
//! truncated closes, a large checksummed transfer under backpressure, and a handshake
//! against `openssl s_server` where it is installed. Certificates are made here, with
//! rcgen, at test time.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use sockloop::{
    HostName, LengthPrefixed, Lines, ProtectionLevel, Reactor, SocketErrorStatus, StreamEvent,
    StreamSocket, StreamSocketControl, StreamSocketListenerControl, TlsClientOptions,
    TlsServerConfig,
};
use util::harness::ChildGuard;
use util::{run_until, serve, Prng, StreamHash, LOCAL_V4};

const LIMIT: Duration = Duration::from_secs(20);

/// A test CA and a leaf it signed.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_der: Vec<u8>,
    key_pem: String,
}

/// A number for each CA, so that no two share a name (a CA of the same name would
/// make a signature failure, not an unknown issuer).
fn next_ca() -> usize {
    static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Pki {
    /// A CA, and a leaf for `names` (DNS names or IP addresses) signed by it.
    fn new(names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("sockloop test CA {}", next_ca()),
        );
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sockloop test server");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        Pki {
            ca_pem: ca.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    fn server(&self) -> TlsServerConfig {
        TlsServerConfig::from_pem(self.leaf_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    /// The same configuration, from DER.
    fn server_der(&self) -> TlsServerConfig {
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .unwrap()
            .secret_der()
            .to_vec();
        TlsServerConfig::from_der([self.leaf_der.clone()], key).unwrap()
    }

    fn client(&self) -> TlsClientOptions {
        TlsClientOptions::new()
            .root_certificates_pem(self.ca_pem.as_bytes())
            .unwrap()
    }

    fn rustls_server(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![CertificateDer::from(self.leaf_der.clone())];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }
}

fn tls_control(level: ProtectionLevel, options: TlsClientOptions) -> StreamSocketControl {
    StreamSocketControl::new()
        .protection_level(level)
        .tls(options)
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    connected: bool,
    upgraded: bool,
    received: Vec<u8>,
    messages: Vec<Vec<u8>>,
    read_closed: bool,
    closed: Option<Result<(), SocketErrorStatus>>,
    info: Option<sockloop::TlsInformation>,
    level: Option<ProtectionLevel>,
}

fn status(result: &Result<(), sockloop::Error>) -> Result<(), SocketErrorStatus> {
    result.as_ref().map(|_| ()).map_err(|e| e.status())
}

/// A TLS listener that echoes what it receives and closes when the client does.
fn echo_server(reactor: &mut Reactor<Seen>, pki: &Pki) -> SocketAddr {
    let server = pki.server().alpn_protocols(["sockloop/1", "http/1.1"]);
    let control = StreamSocketListenerControl::new().tls(server);
    let (_listener, addr) = serve(reactor, &control, |reactor, _, socket, event| match event {
        StreamEvent::Received(mut input) => {
            socket.write(reactor, input.bytes()).unwrap();
            input.consume_all();
        }
        StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
        _ => {}
    });
    addr
}

fn echo_once(level: ProtectionLevel) -> Seen {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let addr = echo_server(&mut reactor, &pki);
    let control = tls_control(level, pki.client().alpn_protocols(["sockloop/1"]));
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &control,
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                seen.connected = true;
                seen.info = socket.tls_information(reactor).unwrap();
                seen.level = Some(socket.information(reactor).unwrap().protection_level);
                socket.write(reactor, b"hello over tls\n").unwrap();
            }
            StreamEvent::Received(mut input) => {
                seen.received.extend_from_slice(input.bytes());
                input.consume_all();
                if seen.received.ends_with(b"\n") {
                    socket.close(reactor).unwrap();
                }
            }
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    assert_eq!(seen.closed, Some(Ok(())));
    assert!(seen.connected);
    assert_eq!(seen.received, b"hello over tls\n");
    let info = seen.info.as_ref().expect("TLS information once connected");
    assert_eq!(info.peer_certificates.first(), Some(&pki.leaf_der));
    assert!(!info.cipher_suite.is_empty());
    assert_eq!(info.alpn_protocol.as_deref(), Some(&b"sockloop/1"[..]));
    // An IP address is verified, not sent as SNI.
    assert_eq!(info.server_name, None);
    assert_eq!(seen.level, Some(info.protection_level));
    seen
}

#[test]
fn echo_over_tls13() {
    let seen = echo_once(ProtectionLevel::Tls13);
    let info = seen.info.unwrap();
    assert_eq!(info.protection_level, ProtectionLevel::Tls13);
    assert!(info.cipher_suite.starts_with("TLS13_"), "{info:?}");
}

#[test]
fn echo_over_tls12() {
    let seen = echo_once(ProtectionLevel::Tls12);
    let info = seen.info.unwrap();
    assert_eq!(info.protection_level, ProtectionLevel::Tls12);
    assert!(info.cipher_suite.starts_with("TLS_ECDHE_"), "{info:?}");
}

#[test]
fn best_level_negotiates_tls13() {
    let seen = echo_once(ProtectionLevel::Ssl);
    assert_eq!(seen.info.unwrap().protection_level, ProtectionLevel::Tls13);
}

#[test]
fn insecure_levels_are_refused() {
    let mut reactor = Reactor::<()>::new().unwrap();
    for level in [
        ProtectionLevel::Tls10,
        ProtectionLevel::Tls11,
        ProtectionLevel::SslAllowNullEncryption,
    ] {
        let control = tls_control(level, TlsClientOptions::new());
        let err =
            StreamSocket::connect_with(&mut reactor, "127.0.0.1", 9, &control, |_, _, _, _| {})
                .unwrap_err();
        assert_eq!(
            err.status(),
            SocketErrorStatus::InvalidArgument,
            "{level:?}"
        );
        assert!(err.detail().is_some());
    }
    assert_eq!(
        StreamSocketControl::new()
            .protection_level(ProtectionLevel::Tls13)
            .get_protection_level(),
        ProtectionLevel::Tls13
    );
}

/// Connects with `options` to our TLS echo server and returns how it closed.
fn handshake_status(pki: &Pki, options: TlsClientOptions) -> Seen {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let addr = echo_server(&mut reactor, pki);
    let control = tls_control(ProtectionLevel::Ssl, options);
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &control,
        |_, seen: &mut Seen, _, event| match event {
            StreamEvent::Connected => seen.connected = true,
            StreamEvent::Closed(r) => {
                if let Err(e) = &r {
                    println!("closed: {e}");
                }
                seen.closed = Some(status(&r));
            }
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    seen
}

#[test]
fn untrusted_root_is_reported() {
    let pki = Pki::new(&["127.0.0.1"]);
    // The default roots (webpki) do not know the test CA.
    let seen = handshake_status(&pki, TlsClientOptions::new());
    assert!(!seen.connected);
    assert_eq!(
        seen.closed,
        Some(Err(SocketErrorStatus::CertificateUntrustedRoot))
    );
    // Nor does another CA.
    let other = Pki::new(&["127.0.0.1"]);
    let seen = handshake_status(&pki, other.client());
    assert_eq!(
        seen.closed,
        Some(Err(SocketErrorStatus::CertificateUntrustedRoot))
    );
}

#[test]
fn wrong_name_is_reported() {
    let pki = Pki::new(&["elsewhere.example"]);
    let seen = handshake_status(&pki, pki.client());
    assert!(!seen.connected);
    assert_eq!(
        seen.closed,
        Some(Err(SocketErrorStatus::CertificateCommonNameIsIncorrect))
    );
}

/// An SMTP-like server: lines until `STARTTLS`, answered `220 ready` in clear, then
/// TLS in place and length-prefixed frames echoed back.
fn starttls_server(reactor: &mut Reactor<Seen>, pki: &Pki) -> SocketAddr {
    let config = pki.server_der();
    let (_listener, addr) = serve(
        reactor,
        &StreamSocketListenerControl::new(),
        move |reactor, _, socket, event| match event {
            // The first bytes: read them as lines from now on (delivered again at once).
            StreamEvent::Received(_) => socket.set_framing(reactor, Lines::new()).unwrap(),
            StreamEvent::Message(line) if line == b"STARTTLS" => {
                socket.write_frame(reactor, b"220 ready").unwrap();
                socket.upgrade_to_tls_server(reactor, &config).unwrap();
                socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
            }
            StreamEvent::Message(line) if line.starts_with(b"EHLO") => {
                socket.write_frame(reactor, b"250 hello").unwrap();
            }
            StreamEvent::Message(frame) => {
                let info = socket.tls_information(reactor).unwrap();
                assert!(info.is_some(), "a protected frame before the handshake");
                let mut reply = b"echo: ".to_vec();
                reply.extend_from_slice(frame);
                socket.write_frame(reactor, &reply).unwrap();
            }
            StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
            _ => {}
        },
    );
    addr
}

#[test]
fn starttls_both_ways_lines_then_length_prefixed() {
    let pki = Pki::new(&["127.0.0.1"]);
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let addr = starttls_server(&mut reactor, &pki);
    let options = pki.client();
    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        move |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                socket.set_framing(reactor, Lines::new()).unwrap();
                socket.write_frame(reactor, b"STARTTLS").unwrap();
            }
            StreamEvent::Message(line) if !seen.upgraded && line == b"220 ready" => {
                seen.messages.push(line.to_vec());
                let host = HostName::new("127.0.0.1").unwrap();
                socket
                    .upgrade_to_tls_with(reactor, ProtectionLevel::Ssl, &host, &options)
                    .unwrap();
                socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
                // Written before the handshake completes: held, then encrypted.
                socket.write_frame(reactor, b"secret one").unwrap();
            }
            StreamEvent::TlsUpgraded => {
                seen.upgraded = true;
                seen.info = socket.tls_information(reactor).unwrap();
                socket.write_frame(reactor, b"secret two").unwrap();
            }
            StreamEvent::Message(frame) => {
                assert!(seen.upgraded, "protected frame before TlsUpgraded");
                seen.messages.push(frame.to_vec());
                if seen.messages.len() == 3 {
                    socket.close(reactor).unwrap();
                }
            }
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    assert_eq!(seen.closed, Some(Ok(())));
    assert!(seen.upgraded);
    assert_eq!(
        seen.messages,
        [
            b"220 ready".to_vec(),
            b"echo: secret one".to_vec(),
            b"echo: secret two".to_vec()
        ]
    );
    assert!(seen.info.is_some());
}

/// A plain server thread: reads the client's `STARTTLS` line and answers `reply`, then
/// `later` after a pause, then waits for the client to go.
fn injecting_server(
    reply: &'static [u8],
    later: &'static [u8],
) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind(LOCAL_V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"STARTTLS\n");
        s.write_all(reply).unwrap();
        if !later.is_empty() {
            thread::sleep(Duration::from_millis(100));
            let _ = s.write_all(later);
        }
        // Until the client closes (its ClientHello is read and dropped).
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    (addr, peer)
}

fn starttls_against(addr: SocketAddr) -> Seen {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                socket.set_framing(reactor, Lines::new()).unwrap();
                socket.write_frame(reactor, b"STARTTLS").unwrap();
            }
            StreamEvent::Message(line) => {
                seen.messages.push(line.to_vec());
                if line.starts_with(b"220") {
                    let host = HostName::new("127.0.0.1").unwrap();
                    // May fail at once if the injected bytes are already kept.
                    let _ = socket.upgrade_to_tls(reactor, ProtectionLevel::Ssl, &host);
                }
            }
            StreamEvent::Received(input) => seen.received.extend_from_slice(input.bytes()),
            StreamEvent::TlsUpgraded => seen.upgraded = true,
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    seen
}

#[test]
fn plaintext_injected_with_the_go_ahead_fails_the_upgrade() {
    let (addr, peer) = injecting_server(b"220 ready\r\n250 INJECTED\r\n", b"");
    let seen = starttls_against(addr);
    assert_eq!(seen.closed, Some(Err(SocketErrorStatus::ProtocolError)));
    assert!(!seen.upgraded);
    assert_eq!(
        seen.messages,
        [b"220 ready".to_vec()],
        "injected line delivered"
    );
    assert!(seen.received.is_empty());
    peer.join().unwrap();
}

#[test]
fn plaintext_injected_before_the_server_hello_fails_the_upgrade() {
    let (addr, peer) = injecting_server(b"220 ready\r\n", b"250 INJECTED\r\n");
    let seen = starttls_against(addr);
    assert_eq!(seen.closed, Some(Err(SocketErrorStatus::ProtocolError)));
    assert!(!seen.upgraded);
    assert_eq!(
        seen.messages,
        [b"220 ready".to_vec()],
        "injected line delivered"
    );
    assert!(seen.received.is_empty());
    peer.join().unwrap();
}

/// A rustls server thread: handshake, `payload`, then close_notify and FIN, or a FIN
/// alone (a truncation).
fn rustls_server(pki: &Pki, notify: bool) -> (SocketAddr, thread::JoinHandle<()>) {
    let config = pki.rustls_server();
    let listener = TcpListener::bind(LOCAL_V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut s).unwrap();
        }
        conn.writer().write_all(b"payload").unwrap();
        if notify {
            conn.send_close_notify();
        }
        while conn.wants_write() {
            conn.write_tls(&mut s).unwrap();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 256];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    (addr, peer)
}

fn read_until_closed(pki: &Pki, addr: SocketAddr) -> Seen {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &tls_control(ProtectionLevel::Tls13, pki.client()),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => seen.connected = true,
            StreamEvent::Received(mut input) => {
                seen.received.extend_from_slice(input.bytes());
                input.consume_all();
            }
            StreamEvent::ReadClosed => {
                seen.read_closed = true;
                socket.close(reactor).unwrap();
            }
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    seen
}

#[test]
fn close_notify_is_a_clean_end_and_a_bare_fin_a_truncation() {
    let pki = Pki::new(&["127.0.0.1"]);
    let (addr, peer) = rustls_server(&pki, true);
    let clean = read_until_closed(&pki, addr);
    peer.join().unwrap();
    assert_eq!(clean.received, b"payload");
    assert!(clean.read_closed);
    assert_eq!(clean.closed, Some(Ok(())));

    let (addr, peer) = rustls_server(&pki, false);
    let cut = read_until_closed(&pki, addr);
    peer.join().unwrap();
    assert_eq!(cut.received, b"payload");
    assert!(!cut.read_closed, "a truncation reported as a clean end");
    assert_eq!(
        cut.closed,
        Some(Err(SocketErrorStatus::ConnectionResetByPeer))
    );
}

/// Our close sends close_notify: a rustls peer sees a clean end.
#[test]
fn close_sends_close_notify() {
    let pki = Pki::new(&["127.0.0.1"]);
    let config = pki.rustls_server();
    let listener = TcpListener::bind(LOCAL_V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut got = Vec::new();
        // `read_to_end` fails with UnexpectedEof unless close_notify came.
        tls.read_to_end(&mut got).map(|_| got)
    });
    let mut reactor = Reactor::<Seen>::new().unwrap();
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &tls_control(ProtectionLevel::Ssl, pki.client()),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                socket.write(reactor, b"last words").unwrap();
                socket.close(reactor).unwrap();
            }
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    assert_eq!(seen.closed, Some(Ok(())));
    assert_eq!(peer.join().unwrap().unwrap(), b"last words");
}

/// Both ends of a bulk transfer.
#[derive(Default)]
struct Bulk {
    sent: usize,
    shut: bool,
    sent_hash: StreamHash,
    received: usize,
    received_hash: StreamHash,
    pauses: usize,
    reply: Vec<u8>,
    closed: Option<Result<(), SocketErrorStatus>>,
    rng: Option<Prng>,
}

const BULK: usize = 6 * 1024 * 1024;

/// Writes random-sized pieces until the queue refuses, then waits for `Drained`.
fn pump(reactor: &mut Reactor<Bulk>, bulk: &mut Bulk, socket: StreamSocket) {
    while bulk.sent < BULK {
        let rng = bulk.rng.get_or_insert_with(|| Prng::new(7));
        let n = rng.range(1, 40_000).min(BULK - bulk.sent);
        let piece = rng.bytes(n);
        match socket.write(reactor, &piece) {
            Ok(()) => {
                bulk.sent_hash.update(&piece);
                bulk.sent += n;
            }
            Err(e) if e.status() == SocketErrorStatus::NoBufferSpaceAvailable => return,
            Err(e) => panic!("{e}"),
        }
    }
    if !bulk.shut {
        bulk.shut = true;
        socket.shutdown_write(reactor).unwrap();
    }
}

#[test]
fn megabytes_through_tls_with_backpressure() {
    let pki = Pki::new(&["127.0.0.1"]);
    let mut reactor = Reactor::<Bulk>::builder()
        .watermarks(16 * 1024, 64 * 1024, 128 * 1024)
        .build()
        .unwrap();
    let control = StreamSocketListenerControl::new().tls(pki.server());
    let (_listener, addr) = serve(
        &mut reactor,
        &control,
        |reactor, bulk: &mut Bulk, socket, event| {
            match event {
                StreamEvent::Received(mut input) => {
                    bulk.received_hash.update(input.bytes());
                    bulk.received += input.len();
                    input.consume_all();
                    // Every ~512 KiB, stop reading for a moment.
                    if bulk.received / (512 * 1024) > bulk.pauses {
                        bulk.pauses += 1;
                        socket.set_receive_paused(reactor, true).unwrap();
                        reactor.set_timer(Duration::from_millis(2), move |reactor, _, _| {
                            let _ = socket.set_receive_paused(reactor, false);
                        });
                    }
                }
                StreamEvent::ReadClosed => {
                    let digest = format!("{:?}", bulk.received_hash.finish());
                    socket.write(reactor, digest.as_bytes()).unwrap();
                    socket.close(reactor).unwrap();
                }
                _ => {}
            }
        },
    );
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &tls_control(ProtectionLevel::Tls13, pki.client()),
        |reactor, bulk: &mut Bulk, socket, event| match event {
            StreamEvent::Connected | StreamEvent::Drained => pump(reactor, bulk, socket),
            StreamEvent::Received(mut input) => {
                bulk.reply.extend_from_slice(input.bytes());
                input.consume_all();
            }
            StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
            StreamEvent::Closed(r) => bulk.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut bulk = Bulk::default();
    run_until(&mut reactor, &mut bulk, Duration::from_secs(60), |b| {
        b.closed.is_some()
    });
    assert_eq!(bulk.closed, Some(Ok(())));
    assert_eq!(bulk.sent, BULK);
    assert!(bulk.pauses >= 8, "paused {} times", bulk.pauses);
    assert_eq!(
        String::from_utf8(bulk.reply).unwrap(),
        format!("{:?}", bulk.sent_hash.finish())
    );
}

/// Our client against `openssl s_server -rev` (which answers each line reversed).
#[test]
fn handshake_with_openssl_s_server() {
    if openssl_missing() {
        return;
    }
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let dir = std::env::temp_dir().join(format!("sockloop-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("leaf.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pki.leaf_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let port = TcpListener::bind(LOCAL_V4)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = ChildGuard::new(
        Command::new("openssl")
            .args(["s_server", "-rev", "-naccept", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    server.expect_line("ACCEPT", LIMIT);
    let mut reactor = Reactor::<Seen>::new().unwrap();
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        port,
        &tls_control(ProtectionLevel::Ssl, pki.client()),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                seen.info = socket.tls_information(reactor).unwrap();
                socket.write(reactor, b"sockloop\n").unwrap();
            }
            StreamEvent::Received(mut input) => {
                seen.received.extend_from_slice(input.bytes());
                input.consume_all();
                if seen.received.ends_with(b"\n") {
                    socket.close(reactor).unwrap();
                }
            }
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(seen.closed, Some(Ok(())));
    assert_eq!(seen.received, b"poolkcos\n");
    let info = seen.info.unwrap();
    assert_eq!(info.protection_level, ProtectionLevel::Tls13);
    assert_eq!(info.peer_certificates[0], pki.leaf_der);
}

/// A server that accepts TCP but never answers the ClientHello, and a client that
/// connects to a TLS listener and sends nothing: both handshakes time out.
#[test]
fn handshakes_time_out() {
    let pki = Pki::new(&["127.0.0.1"]);
    let silent = TcpListener::bind(LOCAL_V4).unwrap();
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let control = tls_control(ProtectionLevel::Ssl, pki.client())
        .tls_handshake_timeout(Duration::from_millis(200));
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        silent.local_addr().unwrap().port(),
        &control,
        |_, seen: &mut Seen, _, event| match event {
            StreamEvent::Connected => seen.connected = true,
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    assert!(!seen.connected);
    assert_eq!(
        seen.closed,
        Some(Err(SocketErrorStatus::ConnectionTimedOut))
    );

    let listener_control = StreamSocketListenerControl::new()
        .tls(pki.server())
        .accepted(StreamSocketControl::new().tls_handshake_timeout(Duration::from_millis(200)));
    let (_listener, addr) = serve(
        &mut reactor,
        &listener_control,
        |_, seen: &mut Seen, _, event| {
            if let StreamEvent::Closed(r) = event {
                seen.closed = Some(status(&r));
            }
        },
    );
    let _quiet_client = std::net::TcpStream::connect(addr).unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    assert_eq!(
        seen.closed,
        Some(Err(SocketErrorStatus::ConnectionTimedOut))
    );
}

/// `write(STARTTLS)`, `upgrade_to_tls`, `write(secret)` back to back, with a tiny send
/// buffer: the peer sees the command in clear, then only TLS records — the secret never
/// crosses in clear.
#[test]
fn nothing_written_after_the_upgrade_leaves_in_clear() {
    let listener = TcpListener::bind(LOCAL_V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut wire = Vec::new();
        let mut buf = [0u8; 4096];
        // Everything the client sends until it goes quiet (it waits for a ServerHello).
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            wire.extend_from_slice(&buf[..n]);
        }
        wire
    });
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let control = StreamSocketControl::new().outbound_buffer_size(Some(1024));
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &control,
        |reactor, _: &mut Seen, socket, event| {
            if let StreamEvent::Connected = event {
                socket.write(reactor, b"STARTTLS\r\n").unwrap();
                let host = HostName::new("127.0.0.1").unwrap();
                socket
                    .upgrade_to_tls(reactor, ProtectionLevel::Ssl, &host)
                    .unwrap();
                socket.write(reactor, &[b'S'; 8192]).unwrap();
                socket.write(reactor, b"SECRET").unwrap();
            }
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    let wire = loop {
        reactor
            .turn(&mut seen, Some(Duration::from_millis(10)))
            .unwrap();
        if peer.is_finished() {
            break peer.join().unwrap();
        }
    };
    assert!(wire.starts_with(b"STARTTLS\r\n"), "{wire:?}");
    let after = &wire[b"STARTTLS\r\n".len()..];
    // A TLS handshake record (the ClientHello) follows the command at once.
    assert_eq!(&after[..2], [0x16, 0x03]);
    assert!(!after.windows(6).any(|w| w == b"SECRET"));
    assert!(!after.windows(64).any(|w| w.iter().all(|&b| b == b'S')));
}

/// What our server saw of an `openssl s_client`.
#[derive(Default)]
struct Served {
    upgraded: bool,
    echoed: Option<Vec<u8>>,
}

fn openssl_missing() -> bool {
    let missing = Command::new("openssl").arg("version").output().is_err();
    if missing {
        println!("skipped: openssl is not installed (.ci/run installs it)");
    }
    missing
}

/// Runs `openssl s_client ARGS -connect addr`, sends a line, turns the reactor until
/// the server echoed it, and checks that s_client printed the echo.
fn s_client_echo(reactor: &mut Reactor<Served>, addr: SocketAddr, args: &[&str]) -> Served {
    let mut client = Command::new("openssl")
        .arg("s_client")
        .args(args)
        .args(["-quiet", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let mut client = ChildGuard::new(client);
    stdin.write_all(b"hello from s_client\n").unwrap();
    let mut served = Served::default();
    run_until(reactor, &mut served, LIMIT, |s| s.echoed.is_some());
    util::run_for(reactor, &mut served, Duration::from_millis(50));
    assert_eq!(client.expect_line("echo: ", LIMIT), "hello from s_client");
    drop(stdin);
    served
}

/// `openssl s_client` against our TLS listener, then with `-starttls smtp` against our
/// server-side upgrade.
#[test]
fn openssl_s_client_against_our_servers() {
    if openssl_missing() {
        return;
    }
    let pki = Pki::new(&["127.0.0.1"]);
    let mut reactor = Reactor::<Served>::new().unwrap();
    let echo =
        |reactor: &mut Reactor<Served>, served: &mut Served, socket: StreamSocket, line: &[u8]| {
            let mut reply = b"echo: ".to_vec();
            reply.extend_from_slice(line);
            reply.push(b'\n');
            socket.write(reactor, &reply).unwrap();
            served.echoed = Some(line.to_vec());
        };

    let control = StreamSocketListenerControl::new().tls(pki.server());
    let (tls_listener, addr) = serve(
        &mut reactor,
        &control,
        move |reactor, served, socket, event| match event {
            StreamEvent::Received(_) => socket.set_framing(reactor, Lines::new()).unwrap(),
            StreamEvent::Message(line) => echo(reactor, served, socket, line),
            _ => {}
        },
    );
    let served = s_client_echo(&mut reactor, addr, &[]);
    assert_eq!(served.echoed.as_deref(), Some(&b"hello from s_client"[..]));
    tls_listener.close(&mut reactor).unwrap();

    let config = pki.server();
    let smtp = move |reactor: &mut Reactor<Served>,
                     served: &mut Served,
                     socket: StreamSocket,
                     event: StreamEvent<'_>| match event {
        StreamEvent::Message(line) if !served.upgraded && line.starts_with(b"EHLO") => {
            socket
                .write(reactor, b"250-sockloop\r\n250 STARTTLS\r\n")
                .unwrap();
        }
        StreamEvent::Message(line) if !served.upgraded && line == b"STARTTLS" => {
            socket.write(reactor, b"220 go ahead\r\n").unwrap();
            socket.upgrade_to_tls_server(reactor, &config).unwrap();
        }
        StreamEvent::TlsUpgraded => served.upgraded = true,
        StreamEvent::Message(line) if served.upgraded => echo(reactor, served, socket, line),
        _ => {}
    };
    let listener = sockloop::StreamSocketListener::bind(
        &mut reactor,
        "127.0.0.1",
        0,
        move |reactor, _, _, event| {
            if let sockloop::ListenerEvent::ConnectionReceived(conn) = event {
                let socket = conn.socket;
                socket.set_handler(reactor, smtp.clone()).unwrap();
                socket.set_framing(reactor, Lines::new()).unwrap();
                socket.write(reactor, b"220 sockloop ESMTP\r\n").unwrap();
            }
        },
    )
    .unwrap();
    let addr = listener.local_address(&reactor).unwrap();
    let served = s_client_echo(&mut reactor, addr, &["-starttls", "smtp"]);
    assert!(served.upgraded);
    assert_eq!(served.echoed.as_deref(), Some(&b"hello from s_client"[..]));
}
