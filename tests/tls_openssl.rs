//! TLS against OpenSSL, where it is installed (.ci/run installs it): our client
//! against `openssl s_server`, `openssl s_client` against our TLS listener and, with
//! `-starttls smtp`, against our server-side upgrade.

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use sockloop::{
    Lines, ProtectionLevel, Reactor, StreamEvent, StreamSocket, StreamSocketListenerControl,
};
use util::harness::ChildGuard;
use util::tls::{status, tls_control, Pki, Seen};
use util::{run_until, serve, LOCAL_V4};

const LIMIT: Duration = Duration::from_secs(20);

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
