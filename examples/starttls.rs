//! An SMTP-like exchange in one process: a plain greeting, `STARTTLS`, `220`, an
//! in-place upgrade on both sides, then the rest encrypted. Prints each step.
//!
//! ```text
//! cargo run --example starttls
//! ```
//!
//! The server's certificate is made at start (rcgen) for `localhost`; the client
//! trusts exactly it.

use sockloop::{
    HostName, Lines, ListenerEvent, ProtectionLevel, Reactor, StreamEvent, StreamSocket,
    StreamSocketListener, TlsClientOptions, TlsServerConfig,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cert = rcgen::generate_simple_self_signed(["localhost".to_string()])?;
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let server_config = TlsServerConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    let client_options = TlsClientOptions::new().root_certificates_pem(cert_pem.as_bytes())?;

    let mut reactor = Reactor::<()>::new()?;
    let listener =
        StreamSocketListener::bind(&mut reactor, "127.0.0.1", 0, move |reactor, _, _, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                let config = server_config.clone();
                let socket = conn.socket;
                socket
                    .set_handler(reactor, move |reactor, _, socket, event| {
                        server(reactor, socket, event, &config)
                    })
                    .unwrap();
                socket.set_framing(reactor, Lines::new()).unwrap();
                say(reactor, socket, "server", "220 localhost ESMTP sockloop");
            }
        })?;
    let port = listener.local_address(&reactor)?.port();

    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        port,
        move |reactor, _, socket, event| {
            if let StreamEvent::Closed(result) = &event {
                println!("client: closed {result:?}");
                let _ = listener.close(reactor);
            }
            client(reactor, socket, event, &client_options);
        },
    )?;
    reactor.run(&mut ())?;
    Ok(())
}

/// Writes a line and prints it.
fn say(reactor: &mut Reactor<()>, socket: StreamSocket, who: &str, line: &str) {
    println!("{who} > {line}");
    socket.write_frame(reactor, line.as_bytes()).unwrap();
}

fn server(
    reactor: &mut Reactor<()>,
    socket: StreamSocket,
    event: StreamEvent<'_>,
    config: &TlsServerConfig,
) {
    match event {
        StreamEvent::Message(line) => {
            let line = String::from_utf8_lossy(line).into_owned();
            let tls = socket.tls_information(reactor).unwrap().is_some();
            match line.as_str() {
                "STARTTLS" => {
                    say(reactor, socket, "server", "220 go ahead");
                    // The go-ahead leaves in clear; what follows is TLS.
                    socket.upgrade_to_tls_server(reactor, config).unwrap();
                }
                "QUIT" => {
                    say(reactor, socket, "server", "221 bye");
                    socket.close(reactor).unwrap();
                }
                _ if line.starts_with("EHLO") && tls => {
                    say(reactor, socket, "server", "250 localhost, over TLS")
                }
                _ if line.starts_with("EHLO") => {
                    say(reactor, socket, "server", "250-localhost");
                    say(reactor, socket, "server", "250 STARTTLS");
                }
                _ => say(reactor, socket, "server", "500 what?"),
            }
        }
        StreamEvent::TlsUpgraded => {
            let info = socket.tls_information(reactor).unwrap().unwrap();
            println!(
                "server: TLS up ({:?}, {})",
                info.protection_level, info.cipher_suite
            );
        }
        StreamEvent::ReadClosed => {
            let _ = socket.close(reactor);
        }
        _ => {}
    }
}

fn client(
    reactor: &mut Reactor<()>,
    socket: StreamSocket,
    event: StreamEvent<'_>,
    options: &TlsClientOptions,
) {
    match event {
        StreamEvent::Connected => socket.set_framing(reactor, Lines::new()).unwrap(),
        StreamEvent::Message(line) => {
            let line = String::from_utf8_lossy(line).into_owned();
            println!("client < {line}");
            match line.as_str() {
                l if l.starts_with("220 localhost") => {
                    say(reactor, socket, "client", "EHLO client")
                }
                "250 STARTTLS" => say(reactor, socket, "client", "STARTTLS"),
                "220 go ahead" => {
                    // The reply is consumed: anything after it would have been injected.
                    let host = HostName::new("localhost").unwrap();
                    socket
                        .upgrade_to_tls_with(reactor, ProtectionLevel::Tls13, &host, options)
                        .unwrap();
                }
                l if l.ends_with("over TLS") => say(reactor, socket, "client", "QUIT"),
                l if l.starts_with("221") => {
                    let _ = socket.close(reactor);
                }
                _ => {}
            }
        }
        StreamEvent::TlsUpgraded => {
            let info = socket.tls_information(reactor).unwrap().unwrap();
            println!(
                "client: TLS up ({:?}, {}), server certificate verified for localhost",
                info.protection_level, info.cipher_suite
            );
            say(reactor, socket, "client", "EHLO client");
        }
        _ => {}
    }
}
