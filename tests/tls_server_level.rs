//! A server's minimum protection level (`TlsServerConfig::minimum_protection_level`):
//! a TLS 1.3-only server refuses a TLS 1.2 client with a clear status on both sides,
//! and still serves TLS 1.3 clients. Certificates are made at test time.

mod util;

use std::time::Duration;

use sockloop::{
    ProtectionLevel, Reactor, SocketErrorStatus, StreamEvent, StreamSocket,
    StreamSocketListenerControl, TlsServerConfig,
};
use util::tls::{status, tls_control, Pki};
use util::{run_until, serve};

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Seen {
    client: Option<Result<(), SocketErrorStatus>>,
    client_detail: String,
    connected_as: Option<ProtectionLevel>,
    server: Option<Result<(), SocketErrorStatus>>,
    server_detail: String,
    echoed: Vec<u8>,
}

/// A client at `level` against an echo server with `server`; what both saw.
fn exchange(server: TlsServerConfig, level: ProtectionLevel, pki: &Pki) -> Seen {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (_listener, addr) = serve(
        &mut reactor,
        &StreamSocketListenerControl::new().tls(server),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Received(mut input) => {
                let _ = socket.write(reactor, input.bytes());
                input.consume_all();
            }
            StreamEvent::ReadClosed => {
                let _ = socket.close(reactor);
            }
            StreamEvent::Closed(r) => {
                if let Err(e) = &r {
                    seen.server_detail = e.to_string();
                }
                seen.server = Some(status(&r));
            }
            _ => {}
        },
    );
    StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &tls_control(level, pki.client()),
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Connected => {
                seen.connected_as = socket
                    .tls_information(reactor)
                    .unwrap()
                    .map(|i| i.protection_level);
                socket.write(reactor, b"level\n").unwrap();
            }
            StreamEvent::Received(mut input) => {
                seen.echoed.extend_from_slice(input.bytes());
                input.consume_all();
                if seen.echoed.ends_with(b"\n") {
                    socket.close(reactor).unwrap();
                }
            }
            StreamEvent::Closed(r) => {
                if let Err(e) = &r {
                    seen.client_detail = e.to_string();
                }
                seen.client = Some(status(&r));
            }
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        s.client.is_some() && s.server.is_some()
    });
    seen
}

#[test]
fn tls13_minimum_refuses_a_tls12_client() {
    let pki = Pki::new(&["127.0.0.1"]);
    let server = pki
        .server()
        .minimum_protection_level(ProtectionLevel::Tls13)
        .unwrap();
    assert_eq!(
        server.get_minimum_protection_level(),
        Some(ProtectionLevel::Tls13)
    );
    let seen = exchange(server, ProtectionLevel::Tls12, &pki);
    assert_eq!(seen.connected_as, None, "the handshake must not complete");
    assert!(seen.echoed.is_empty());
    assert_eq!(
        seen.client,
        Some(Err(SocketErrorStatus::ProtocolError)),
        "{}",
        seen.client_detail
    );
    // The client is told why: the server's protocol_version alert.
    assert!(
        seen.client_detail.contains("ProtocolVersion"),
        "{}",
        seen.client_detail
    );
    assert_eq!(
        seen.server,
        Some(Err(SocketErrorStatus::ProtocolError)),
        "{}",
        seen.server_detail
    );
}

#[test]
fn tls13_minimum_serves_tls13_clients() {
    let pki = Pki::new(&["127.0.0.1"]);
    let server = pki
        .server()
        .alpn_protocols(["x/1"])
        .minimum_protection_level(ProtectionLevel::Tls13)
        .unwrap();
    for level in [ProtectionLevel::Tls13, ProtectionLevel::Ssl] {
        let seen = exchange(server.clone(), level, &pki);
        assert_eq!(
            seen.client,
            Some(Ok(())),
            "{level:?}: {}",
            seen.client_detail
        );
        assert_eq!(seen.connected_as, Some(ProtectionLevel::Tls13), "{level:?}");
        assert_eq!(seen.echoed, b"level\n");
    }
}

#[test]
fn default_minimum_accepts_tls12_and_is_kept_by_client_authentication() {
    let pki = Pki::new(&["127.0.0.1"]);
    let server = pki.server();
    assert_eq!(
        server.get_minimum_protection_level(),
        Some(ProtectionLevel::Tls12)
    );
    let seen = exchange(server, ProtectionLevel::Tls12, &pki);
    assert_eq!(seen.client, Some(Ok(())), "{}", seen.client_detail);
    assert_eq!(seen.connected_as, Some(ProtectionLevel::Tls12));

    // Asking for client certificates afterwards keeps the minimum.
    let strict = pki
        .server()
        .minimum_protection_level(ProtectionLevel::Tls13)
        .unwrap()
        .client_authentication_pem(pki.ca_pem.as_bytes(), false)
        .unwrap();
    assert_eq!(
        strict.get_minimum_protection_level(),
        Some(ProtectionLevel::Tls13)
    );
    let seen = exchange(strict, ProtectionLevel::Tls12, &pki);
    assert_eq!(seen.client, Some(Err(SocketErrorStatus::ProtocolError)));
}

#[test]
fn minimum_levels_that_are_not_tls_are_refused() {
    let pki = Pki::new(&["127.0.0.1"]);
    for level in [
        ProtectionLevel::PlainSocket,
        ProtectionLevel::Tls10,
        ProtectionLevel::Tls11,
        ProtectionLevel::SslAllowNullEncryption,
    ] {
        let err = pki.server().minimum_protection_level(level).unwrap_err();
        assert_eq!(
            err.status(),
            SocketErrorStatus::InvalidArgument,
            "{level:?}"
        );
    }
    let rustls = TlsServerConfig::from_rustls(pki.rustls_server());
    assert_eq!(rustls.get_minimum_protection_level(), None);
    let err = rustls
        .minimum_protection_level(ProtectionLevel::Tls13)
        .unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidState);
}
