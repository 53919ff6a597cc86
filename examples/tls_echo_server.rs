//! A TLS echo server: terminates TLS on every accepted connection and writes back what
//! it receives, saying what happens (connections, negotiated version and cipher suite,
//! bytes echoed, how each connection ended).
//!
//! ```text
//! cargo run --example tls_echo_server -- [--host HOST] [--port PORT] [--cert FILE --key FILE]
//! cargo run --example tls_echo_server -- --self-check
//! ```
//!
//! With `--cert` and `--key` (PEM: the chain, leaf first, and a PKCS#8, PKCS#1 or SEC1
//! key) it serves that certificate. Without them it makes a self-signed ECDSA P-256
//! certificate for `localhost` and 127.0.0.1 with rcgen and writes it to a file it names,
//! for clients to trust:
//!
//! ```text
//! cargo run --example tls_echo_server -- --port 4433
//! #   tls_echo_server: certificate for clients to trust: /tmp/sockloop-tls-echo-4433.pem
//! echo hello | openssl s_client -connect 127.0.0.1:4433 -CAfile /tmp/sockloop-tls-echo-4433.pem -brief
//! cargo run --example tls_client -- localhost 4433 --ca /tmp/sockloop-tls-echo-4433.pem
//! ```
//!
//! `--self-check` serves on a free port of 127.0.0.1 with a generated certificate,
//! connects to itself with a sockloop TLS client that trusts only that certificate,
//! checks that a line comes back over TLS 1.3, and exits (0 if it did).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sockloop::{
    ListenerEvent, ProtectionLevel, Reactor, StreamEvent, StreamSocket, StreamSocketControl,
    StreamSocketListener, StreamSocketListenerControl, TlsClientOptions, TlsServerConfig,
};

/// What the self-check's client saw.
#[derive(Default)]
struct Check {
    reply: Vec<u8>,
    version: Option<ProtectionLevel>,
    failed: Option<String>,
    /// The client's connection ended.
    done: bool,
}

const LINE: &[u8] = b"hello over TLS\n";

fn usage() -> ExitCode {
    eprintln!(
        "usage: tls_echo_server [--host HOST] [--port PORT] [--cert FILE --key FILE] \
         | tls_echo_server --self-check"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut host, mut port, mut cert, mut key, mut check) =
        ("127.0.0.1".to_string(), 4433u16, None, None, false);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.clone().next()) {
            ("--self-check", _) => check = true,
            ("--host", Some(v)) => host = v.clone(),
            ("--port", Some(v)) => match v.parse() {
                Ok(p) => port = p,
                Err(_) => return usage(),
            },
            ("--cert", Some(v)) => cert = Some(PathBuf::from(v)),
            ("--key", Some(v)) => key = Some(PathBuf::from(v)),
            _ => return usage(),
        }
        if flag != "--self-check" {
            it.next();
        }
    }
    if check {
        host = "127.0.0.1".into();
        port = 0;
    }
    let result = match (cert, key) {
        (Some(cert), Some(key)) if !check => {
            given(&cert, &key).and_then(|server| run(&host, port, server, None))
        }
        (None, None) => generated(port, check)
            .and_then(|(server, pem)| run(&host, port, server, check.then_some(pem))),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn std::error::Error>;

/// The certificate and key in the files given.
fn given(cert: &PathBuf, key: &PathBuf) -> Result<TlsServerConfig, Failure> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let server = TlsServerConfig::from_pem(&read(cert)?, &read(key)?)?;
    println!(
        "tls_echo_server: serving the certificate in {}",
        cert.display()
    );
    Ok(server)
}

/// A self-signed certificate for localhost and 127.0.0.1, written out for clients
/// (unless this is the self-check); the configuration and the certificate's PEM.
fn generated(port: u16, check: bool) -> Result<(TlsServerConfig, String), Failure> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names)?;
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let server = TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes())?;
    if !check {
        let path = std::env::temp_dir().join(format!("sockloop-tls-echo-{port}.pem"));
        std::fs::write(&path, &cert).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "tls_echo_server: generated a self-signed certificate for localhost and \
             127.0.0.1; certificate for clients to trust: {}",
            path.display()
        );
    }
    Ok((server, cert))
}

/// Serves until interrupted; with `check` (the certificate to trust), until the
/// self-check's client is done.
fn run(
    host: &str,
    port: u16,
    server: TlsServerConfig,
    check: Option<String>,
) -> Result<(), Failure> {
    let mut reactor = Reactor::<Check>::new()?;
    let control = StreamSocketListenerControl::new().tls(server);
    let listener = StreamSocketListener::bind_with(
        &mut reactor,
        host,
        port,
        &control,
        |reactor, _, _, event| match event {
            ListenerEvent::ConnectionReceived(conn) => {
                println!("server: connection from {}", conn.remote);
                let remote = conn.remote;
                let mut echoed = 0usize;
                let handler = move |reactor: &mut Reactor<Check>,
                                    _: &mut Check,
                                    socket: StreamSocket,
                                    event: StreamEvent<'_>| {
                    match event {
                        StreamEvent::Received(mut input) => {
                            // An accepted socket's first bytes come after its handshake.
                            if echoed == 0 {
                                if let Ok(Some(info)) = socket.tls_information(reactor) {
                                    println!(
                                        "server: {remote}: {:?}, {}, SNI {:?}",
                                        info.protection_level, info.cipher_suite, info.server_name
                                    );
                                }
                            }
                            if socket.write(reactor, input.bytes()).is_ok() {
                                echoed += input.bytes().len();
                                input.consume_all();
                            }
                        }
                        StreamEvent::ReadClosed => {
                            let _ = socket.close(reactor);
                        }
                        StreamEvent::Closed(result) => match result {
                            Ok(()) => println!("server: {remote}: closed, {echoed} bytes echoed"),
                            Err(e) => {
                                println!("server: {remote}: closed after {echoed} bytes: {e}")
                            }
                        },
                        _ => {}
                    }
                };
                if let Err(e) = conn.socket.set_handler(reactor, handler) {
                    println!("server: {e}");
                }
            }
            ListenerEvent::Closed(Err(e)) => println!("server: listener closed: {e}"),
            _ => {}
        },
    )?;
    let addr = listener.local_address(&reactor)?;
    println!("tls_echo_server: listening on {addr} (TLS 1.3 and 1.2)");
    let mut state = Check::default();
    let Some(cert) = check else {
        reactor.run(&mut state)?;
        return Ok(());
    };

    // The self-check: a client that trusts only the generated certificate.
    let control = StreamSocketControl::new()
        .protection_level(ProtectionLevel::Tls13)
        .tls(TlsClientOptions::new().root_certificates_pem(cert.as_bytes())?);
    StreamSocket::connect_with(
        &mut reactor,
        "localhost",
        addr.port(),
        &control,
        |reactor, check: &mut Check, socket, event| match event {
            StreamEvent::Connected => {
                check.version = socket
                    .tls_information(reactor)
                    .ok()
                    .flatten()
                    .map(|i| i.protection_level);
                println!(
                    "client: connected, sending {:?}",
                    String::from_utf8_lossy(LINE)
                );
                let _ = socket.write(reactor, LINE);
            }
            StreamEvent::Received(mut input) => {
                check.reply.extend_from_slice(input.bytes());
                input.consume_all();
                if check.reply.len() >= LINE.len() {
                    println!("client: reply {:?}", String::from_utf8_lossy(&check.reply));
                    let _ = socket.close(reactor);
                }
            }
            StreamEvent::Closed(result) => {
                if let Err(e) = result {
                    check.failed = Some(e.to_string());
                }
                check.done = true;
                reactor.stop();
            }
            _ => {}
        },
    )?;
    reactor.set_timer(Duration::from_secs(20), |reactor, check: &mut Check, _| {
        if !check.done {
            check.failed = Some("no reply within 20 s".into());
            reactor.stop();
        }
    });
    reactor.run(&mut state)?;
    if let Some(why) = state.failed {
        return Err(why.into());
    }
    if state.reply != LINE || state.version != Some(ProtectionLevel::Tls13) {
        return Err(format!(
            "self-check failed: reply {:?}, version {:?}",
            String::from_utf8_lossy(&state.reply),
            state.version
        )
        .into());
    }
    println!("tls_echo_server: self-check passed");
    Ok(())
}
