//! In-place upgrades to TLS (STARTTLS) over loopback: both sides upgrading with a
//! line protocol before and length-prefixed frames after, and the injection guard —
//! plaintext sent after the upgrade point is never delivered, and nothing written
//! after it leaves in clear.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use sockloop::{
    HostName, LengthPrefixed, Lines, ProtectionLevel, Reactor, SocketErrorStatus, StreamEvent,
    StreamSocket, StreamSocketControl, StreamSocketListenerControl,
};
use util::tls::{status, Pki, Seen};
use util::{run_until, serve, LOCAL_V4};

const LIMIT: Duration = Duration::from_secs(20);

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

/// An upgrade called outside the handler's delivery (here from a timer) while input is
/// kept unconsumed: refused with `ProtocolError`, and the socket closes without
/// delivering it.
#[test]
fn kept_plaintext_refuses_an_upgrade_made_later() {
    let (addr, peer) = injecting_server(b"220 ready\r\n250 INJECTED\r\n", b"");
    let mut reactor = Reactor::<Seen>::new().unwrap();
    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => socket.write(reactor, b"STARTTLS\n").unwrap(),
            StreamEvent::Received(input) if seen.received.is_empty() => {
                // Keep it all, and upgrade a little later.
                seen.received.extend_from_slice(input.bytes());
                socket.set_receive_paused(reactor, true).unwrap();
                reactor.set_timer(Duration::from_millis(50), move |reactor, seen, _| {
                    let host = HostName::new("127.0.0.1").unwrap();
                    let err = socket
                        .upgrade_to_tls(reactor, ProtectionLevel::Ssl, &host)
                        .unwrap_err();
                    seen.messages
                        .push(format!("{:?}", err.status()).into_bytes());
                    let _ = socket.set_receive_paused(reactor, false);
                });
            }
            StreamEvent::Received(input) => panic!("delivered again: {:?}", input.bytes()),
            StreamEvent::TlsUpgraded => seen.upgraded = true,
            StreamEvent::Closed(r) => seen.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed.is_some());
    assert_eq!(seen.messages, [b"ProtocolError".to_vec()]);
    assert_eq!(seen.closed, Some(Err(SocketErrorStatus::ProtocolError)));
    assert!(!seen.upgraded);
    peer.join().unwrap();
}

/// An upgrade's handshake gets the time set with `set_tls_handshake_timeout`, rather
/// than the default 10 s: here against a server that says `220` and then never
/// answers the ClientHello.
#[test]
fn an_upgrade_takes_the_handshake_timeout_it_is_given() {
    #[derive(Default)]
    struct Outcome {
        plain_refused: Option<SocketErrorStatus>,
        closed: Option<String>,
        status: Option<SocketErrorStatus>,
    }
    let (addr, peer) = injecting_server(b"220 ready\r\n", b"");
    let mut reactor = Reactor::<Outcome>::new().unwrap();
    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        |reactor, outcome: &mut Outcome, socket, event| match event {
            StreamEvent::Connected => {
                let refused = socket
                    .set_tls_handshake_timeout(reactor, Duration::from_millis(300))
                    .unwrap_err();
                outcome.plain_refused = Some(refused.status());
                socket.set_framing(reactor, Lines::new()).unwrap();
                socket.write_frame(reactor, b"STARTTLS").unwrap();
            }
            StreamEvent::Message(line) if line.starts_with(b"220") => {
                let host = HostName::new("127.0.0.1").unwrap();
                socket
                    .upgrade_to_tls(reactor, ProtectionLevel::Ssl, &host)
                    .unwrap();
                socket
                    .set_tls_handshake_timeout(reactor, Duration::from_millis(300))
                    .unwrap();
            }
            StreamEvent::Closed(r) => {
                let err = r.unwrap_err();
                outcome.status = Some(err.status());
                outcome.closed = Some(err.to_string());
            }
            _ => {}
        },
    )
    .unwrap();
    let mut outcome = Outcome::default();
    run_until(&mut reactor, &mut outcome, LIMIT, |o| o.closed.is_some());
    assert_eq!(outcome.plain_refused, Some(SocketErrorStatus::InvalidState));
    assert_eq!(outcome.status, Some(SocketErrorStatus::ConnectionTimedOut));
    let closed = outcome.closed.unwrap();
    assert!(closed.contains("within 300ms"), "{closed}");
    peer.join().unwrap();
}

/// A server that answers `220` and closes its side at once: the upgrade cannot
/// succeed — refused at once if the end of file was read already (`InvalidState`),
/// else failed by the handshake that meets it — and nothing after the `220` is
/// delivered.
#[test]
fn an_upgrade_meeting_the_end_of_file_fails() {
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
        s.write_all(b"220 ready\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    #[derive(Default)]
    struct Outcome {
        messages: Vec<Vec<u8>>,
        refused: Option<SocketErrorStatus>,
        upgraded: bool,
        other: usize,
        closed: Option<Result<(), SocketErrorStatus>>,
    }
    let mut reactor = Reactor::<Outcome>::new().unwrap();
    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        |reactor, outcome: &mut Outcome, socket, event| match event {
            StreamEvent::Connected => {
                socket.set_framing(reactor, Lines::new()).unwrap();
                socket.write_frame(reactor, b"STARTTLS").unwrap();
            }
            StreamEvent::Message(line) => {
                outcome.messages.push(line.to_vec());
                let host = HostName::new("127.0.0.1").unwrap();
                if let Err(e) = socket.upgrade_to_tls(reactor, ProtectionLevel::Ssl, &host) {
                    outcome.refused = Some(e.status());
                    socket.close(reactor).unwrap();
                }
            }
            StreamEvent::TlsUpgraded => outcome.upgraded = true,
            StreamEvent::Received(_) => outcome.other += 1,
            StreamEvent::Closed(r) => outcome.closed = Some(status(&r)),
            _ => {}
        },
    )
    .unwrap();
    let mut outcome = Outcome::default();
    run_until(&mut reactor, &mut outcome, LIMIT, |o| o.closed.is_some());
    assert_eq!(outcome.messages, [b"220 ready".to_vec()]);
    assert!(!outcome.upgraded);
    assert_eq!(outcome.other, 0);
    match outcome.refused {
        Some(status) => assert_eq!(status, SocketErrorStatus::InvalidState),
        None => assert_eq!(
            outcome.closed,
            Some(Err(SocketErrorStatus::ConnectionResetByPeer))
        ),
    }
    peer.join().unwrap();
}
