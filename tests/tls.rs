//! TLS over loopback: our client against our server (TLS 1.2 and 1.3), certificate
//! failures with their statuses, clean and truncated closes, a large checksummed
//! transfer under backpressure, and handshake timeouts. Certificates are made at test
//! time (tests/util/tls.rs).

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use sockloop::{
    ProtectionLevel, Reactor, SocketErrorStatus, StreamEvent, StreamSocket, StreamSocketControl,
    StreamSocketListenerControl, TlsClientOptions,
};
use util::tls::{status, tls_control, Pki, Seen};
use util::{run_until, serve, Prng, StreamHash, LOCAL_V4};

const LIMIT: Duration = Duration::from_secs(20);

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

/// The server reports the name the client sent as SNI (a DNS name; an address is
/// not sent), as the client does.
#[test]
fn both_sides_report_the_sni() {
    #[derive(Default)]
    struct Names {
        server: Option<Option<String>>,
        client: Option<Option<String>>,
        closed: bool,
    }
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let mut reactor = Reactor::<Names>::new().unwrap();
    let control = StreamSocketListenerControl::new().tls(pki.server());
    let (_listener, addr) = serve(
        &mut reactor,
        &control,
        |reactor, names: &mut Names, socket, event| {
            if let StreamEvent::Received(mut input) = event {
                let info = socket.tls_information(reactor).unwrap();
                names.server = Some(info.expect("information once data flows").server_name);
                socket.write(reactor, input.bytes()).unwrap();
                input.consume_all();
            }
        },
    );
    let control = tls_control(ProtectionLevel::Tls13, pki.client());
    StreamSocket::connect_with(
        &mut reactor,
        "localhost",
        addr.port(),
        &control,
        |reactor, names: &mut Names, socket, event| match event {
            StreamEvent::Connected => {
                let info = socket.tls_information(reactor).unwrap().unwrap();
                names.client = Some(info.server_name);
                socket.write(reactor, b"hi\n").unwrap();
            }
            StreamEvent::Received(_) => socket.close(reactor).unwrap(),
            StreamEvent::Closed(r) => {
                r.unwrap();
                names.closed = true;
            }
            _ => {}
        },
    )
    .unwrap();
    let mut names = Names::default();
    run_until(&mut reactor, &mut names, LIMIT, |n| n.closed);
    assert_eq!(names.client, Some(Some("localhost".to_string())));
    assert_eq!(names.server, Some(Some("localhost".to_string())));
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
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                seen.connected = true;
                socket.close(reactor).unwrap();
            }
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

/// A caller's rustls configuration is used as it is (here: TLS 1.2 only, though the
/// level asks for the best), and DER roots work like PEM ones.
#[test]
fn caller_config_and_der_roots() {
    let pki = Pki::new(&["127.0.0.1"]);
    let mut roots = sockloop::rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap();
    roots.add(ca.clone()).unwrap();
    let config = sockloop::rustls::ClientConfig::builder_with_provider(util::tls::provider())
        .with_protocol_versions(&[&sockloop::rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    for (options, version) in [
        (
            TlsClientOptions::new().config(std::sync::Arc::new(config)),
            ProtectionLevel::Tls12,
        ),
        (
            TlsClientOptions::new()
                .root_certificates_der([ca.to_vec()])
                .unwrap(),
            ProtectionLevel::Tls13,
        ),
    ] {
        let mut reactor = Reactor::<Seen>::new().unwrap();
        let addr = echo_server(&mut reactor, &pki);
        StreamSocket::connect_with(
            &mut reactor,
            "127.0.0.1",
            addr.port(),
            &tls_control(ProtectionLevel::Ssl, options),
            |reactor, seen: &mut Seen, socket, event| match event {
                StreamEvent::Connected => {
                    seen.info = socket.tls_information(reactor).unwrap();
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
        assert_eq!(seen.info.unwrap().protection_level, version);
    }
}

/// Mutual TLS: a server that requires a client certificate accepts one from the
/// client CA (and sees its chain), and refuses a client without one.
#[test]
fn mutual_tls_accepted_and_refused() {
    let pki = Pki::new(&["127.0.0.1"]);
    let client_pki = Pki::new(&["client.example"]);
    let server = pki
        .server()
        .client_authentication_pem(client_pki.ca_pem.as_bytes(), true)
        .unwrap();
    let with_cert = pki
        .client()
        .client_certificate_pem(
            client_pki.leaf_pem.as_bytes(),
            client_pki.key_pem.as_bytes(),
        )
        .unwrap();
    for (options, accepted) in [(with_cert, true), (pki.client(), false)] {
        let mut reactor = Reactor::<(Seen, Seen)>::new().unwrap();
        let control = StreamSocketListenerControl::new().tls(server.clone());
        let (_listener, addr) = serve(
            &mut reactor,
            &control,
            |reactor, (_, server): &mut (Seen, Seen), socket, event| match event {
                StreamEvent::Received(mut input) => {
                    server.info = socket.tls_information(reactor).unwrap();
                    socket.write(reactor, input.bytes()).unwrap();
                    input.consume_all();
                }
                StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
                StreamEvent::Closed(r) => server.closed = Some(status(&r)),
                _ => {}
            },
        );
        StreamSocket::connect_with(
            &mut reactor,
            "127.0.0.1",
            addr.port(),
            &tls_control(ProtectionLevel::Ssl, options),
            |reactor, (client, _): &mut (Seen, Seen), socket, event| match event {
                StreamEvent::Connected => socket.write(reactor, b"mutual\n").unwrap(),
                StreamEvent::Received(mut input) => {
                    client.received.extend_from_slice(input.bytes());
                    input.consume_all();
                    socket.close(reactor).unwrap();
                }
                StreamEvent::Closed(r) => client.closed = Some(status(&r)),
                _ => {}
            },
        )
        .unwrap();
        let mut seen = (Seen::default(), Seen::default());
        run_until(&mut reactor, &mut seen, LIMIT, |(c, s)| {
            c.closed.is_some() && s.closed.is_some()
        });
        let (client, server) = seen;
        if accepted {
            assert_eq!(client.closed, Some(Ok(())));
            assert_eq!(client.received, b"mutual\n");
            let info = server.info.expect("the server saw data");
            assert_eq!(
                info.peer_certificates,
                std::slice::from_ref(&client_pki.leaf_der)
            );
        } else {
            assert!(matches!(client.closed, Some(Err(_))), "{:?}", client.closed);
            assert!(matches!(server.closed, Some(Err(_))), "{:?}", server.closed);
            assert!(client.received.is_empty());
            assert!(server.info.is_none());
        }
    }
}

/// Certificate errors let through when listed as ignorable, and only then; the other
/// checks still run.
#[test]
fn ignorable_certificate_errors() {
    use SocketErrorStatus::{
        CertificateCommonNameIsIncorrect as Name, CertificateExpired as Expired,
        CertificateUntrustedRoot as Untrusted,
    };
    let good = Pki::new(&["127.0.0.1"]);
    let expired = Pki::expired(&["127.0.0.1"]);
    let elsewhere = Pki::new(&["elsewhere.example"]);
    let webpki = TlsClientOptions::new;
    let ignoring = |options: TlsClientOptions, statuses: &[SocketErrorStatus]| {
        options
            .ignorable_server_certificate_errors(statuses.iter().copied())
            .unwrap()
    };
    let cases: [(&Pki, TlsClientOptions, Result<(), SocketErrorStatus>); 9] = [
        (&expired, expired.client(), Err(Expired)),
        (&expired, ignoring(expired.client(), &[Expired]), Ok(())),
        (&elsewhere, ignoring(elsewhere.client(), &[Name]), Ok(())),
        (
            &elsewhere,
            ignoring(elsewhere.client(), &[Expired]),
            Err(Name),
        ),
        (&good, ignoring(webpki(), &[Untrusted]), Ok(())),
        // Untrusted and ignored: the name is still checked.
        (&elsewhere, ignoring(webpki(), &[Untrusted]), Err(Name)),
        // Expired and ignored: trust is still checked, at a time it was valid.
        (&expired, ignoring(webpki(), &[Expired]), Err(Untrusted)),
        (&expired, ignoring(webpki(), &[Expired, Untrusted]), Ok(())),
        // An empty list is full verification again.
        (&good, ignoring(webpki(), &[]), Err(Untrusted)),
    ];
    for (i, (pki, options, expected)) in cases.into_iter().enumerate() {
        let seen = handshake_status(pki, options);
        assert_eq!(seen.closed, Some(expected), "case {i}");
        assert_eq!(seen.connected, expected.is_ok(), "case {i}");
    }
    let refused = TlsClientOptions::new()
        .ignorable_server_certificate_errors([SocketErrorStatus::CertificateIsInvalid])
        .unwrap_err();
    assert_eq!(refused.status(), SocketErrorStatus::InvalidArgument);
}

/// A second connection with the same options resumes the session; the first is full.
#[test]
fn sessions_are_resumed() {
    let pki = Pki::new(&["127.0.0.1"]);
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let addr = echo_server(&mut reactor, &pki);
    let control = tls_control(ProtectionLevel::Tls13, pki.client());
    let mut resumed = Vec::new();
    for _ in 0..2 {
        StreamSocket::connect_with(
            &mut reactor,
            "127.0.0.1",
            addr.port(),
            &control,
            |reactor, seen: &mut Seen, socket, event| match event {
                StreamEvent::Connected => {
                    seen.info = socket.tls_information(reactor).unwrap();
                    socket.write(reactor, b"again\n").unwrap();
                }
                StreamEvent::Received(mut input) => {
                    // The echo comes after the session tickets: the client has them.
                    input.consume_all();
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
        resumed.push(seen.info.unwrap().resumed);
    }
    assert_eq!(resumed, [false, true]);
}

/// The ends of the TLS records in `bytes` (whole records only).
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]));
        if at + 5 + len > bytes.len() {
            break;
        }
        at += 5 + len;
        ends.push(at);
    }
    ends
}

/// A client that closes while the server's certificate (over 16 KiB, so spread over
/// two records) has arrived in part: rustls holds the first part of that message in
/// the ciphertext the session kept, which must be given back to it, not an empty
/// buffer (rustls would panic). The close is clean and queued behind the handshake.
#[test]
fn closing_in_the_middle_of_a_certificate_spread_over_records() {
    let mut names: Vec<String> = (0..700)
        .map(|i| format!("host-{i:04}.a-long-name.example"))
        .collect();
    names.push("127.0.0.1".into());
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    let chain = vec![cert.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(util::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let listener = TcpListener::bind(LOCAL_V4).unwrap();
    let port = listener.local_addr().unwrap().port();
    // The server sends its flight up to a few bytes into its second encrypted record,
    // then the rest only once the client has closed.
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
        while !conn.wants_write() {
            assert!(conn.read_tls(&mut s).unwrap() > 0, "no ClientHello");
            conn.process_new_packets().unwrap();
        }
        let mut flight = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut flight).unwrap();
        }
        let ends = record_ends(&flight);
        // ServerHello, ChangeCipherSpec, then the first encrypted record, full.
        assert!(ends.len() >= 4, "a flight of {} records", ends.len());
        assert!(
            flight.len() > 16 * 1024 + 1024,
            "a flight of {} bytes",
            flight.len()
        );
        let part = ends[2] + 10;
        s.write_all(&flight[..part]).unwrap();
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        let _ = s.write_all(&flight[part..]);
    });
    #[derive(Default)]
    struct Outcome {
        connected: bool,
        closed: Option<Result<(), SocketErrorStatus>>,
    }
    let mut reactor = Reactor::<Outcome>::new().unwrap();
    let options = TlsClientOptions::new()
        .root_certificates_pem(cert.cert.pem().as_bytes())
        .unwrap();
    let control = tls_control(ProtectionLevel::Tls13, options);
    let socket = StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        port,
        &control,
        |_, outcome: &mut Outcome, _, event| match event {
            StreamEvent::Connected => outcome.connected = true,
            StreamEvent::Closed(r) => outcome.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut outcome = Outcome::default();
    // Time for the first part to arrive and be processed.
    util::run_for(&mut reactor, &mut outcome, Duration::from_millis(500));
    assert!(outcome.closed.is_none(), "{:?}", outcome.closed);
    socket.close(&mut reactor).unwrap();
    run_until(&mut reactor, &mut outcome, LIMIT, |o| o.closed.is_some());
    assert_eq!(outcome.closed, Some(Ok(())));
    assert!(!outcome.connected);
    server.join().unwrap();
}
