//! A TLS client: connects to HOST PORT, prints the negotiated version, cipher suite
//! and the server's certificate subject, sends a line, prints the reply.
//!
//! ```text
//! cargo run --example tls_client -- HOST PORT [--ca FILE] [--cert FILE --key FILE]
//! ```
//!
//! Without `--ca` the server's certificate must chain to Mozilla's roots; with it, to
//! the PEM certificates in FILE. `--cert` and `--key` (PEM) present a client
//! certificate to a server that asks for one. Against a local OpenSSL server that answers each
//! line reversed:
//!
//! ```text
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
//!     -subj /CN=localhost -addext subjectAltName=DNS:localhost \
//!     -addext basicConstraints=critical,CA:FALSE \
//!     -keyout key.pem -out cert.pem
//! openssl s_server -rev -accept 4433 -cert cert.pem -key key.pem
//! cargo run --example tls_client -- localhost 4433 --ca cert.pem
//! ```

use std::time::Duration;

use sockloop::{
    ProtectionLevel, Reactor, StreamEvent, StreamSocket, StreamSocketControl, TlsClientOptions,
};

/// The reply, and whether the connection failed.
#[derive(Default)]
struct Client {
    reply: Vec<u8>,
    failed: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = || -> ! {
        eprintln!("usage: tls_client HOST PORT [--ca FILE] [--cert FILE --key FILE]");
        std::process::exit(2);
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, flags @ ..] = args.as_slice() else {
        usage()
    };
    let port: u16 = port.parse()?;
    let (mut ca, mut cert, mut key) = (None, None, None);
    for pair in flags.chunks(2) {
        match pair {
            [flag, file] if flag == "--ca" => ca = Some(std::fs::read(file)?),
            [flag, file] if flag == "--cert" => cert = Some(std::fs::read(file)?),
            [flag, file] if flag == "--key" => key = Some(std::fs::read(file)?),
            _ => usage(),
        }
    }
    let mut options = TlsClientOptions::new();
    if let Some(pem) = ca {
        options = options.root_certificates_pem(&pem)?;
    }
    match (cert, key) {
        (Some(cert), Some(key)) => options = options.client_certificate_pem(&cert, &key)?,
        (None, None) => {}
        _ => usage(),
    }
    let control = StreamSocketControl::new()
        .protection_level(ProtectionLevel::Ssl)
        .connect_timeout(Duration::from_secs(10))
        .tls(options);

    let mut reactor = Reactor::<Client>::new()?;
    let socket = StreamSocket::connect_with(
        &mut reactor,
        host.as_str(),
        port,
        &control,
        |reactor, client: &mut Client, socket, event| match event {
            StreamEvent::Connected => {
                if let Ok(Some(info)) = socket.tls_information(reactor) {
                    println!("version: {:?}", info.protection_level);
                    println!("cipher suite: {}", info.cipher_suite);
                    if let Some(leaf) = info.peer_certificates.first() {
                        println!("peer subject: {}", der::subject(leaf));
                    }
                }
                socket.write(reactor, b"hello from sockloop\n").unwrap();
            }
            StreamEvent::Received(mut input) => {
                client.reply.extend_from_slice(input.bytes());
                input.consume_all();
                if client.reply.contains(&b'\n') {
                    print!("reply: {}", String::from_utf8_lossy(&client.reply));
                    let _ = socket.close(reactor);
                }
            }
            StreamEvent::ReadClosed => {
                let _ = socket.close(reactor);
            }
            StreamEvent::Closed(result) => {
                if let Err(e) = result {
                    eprintln!("closed: {e}");
                    client.failed = true;
                }
                // The give-up timer is all that is left: done.
                reactor.stop();
            }
            _ => {}
        },
    )?;
    // No reply within ten seconds: give up.
    reactor.set_timer(
        Duration::from_secs(10),
        move |reactor, client: &mut Client, _| {
            eprintln!("no reply within 10 s");
            client.failed = true;
            let _ = socket.close(reactor);
        },
    );
    let mut client = Client::default();
    reactor.run(&mut client)?;
    if client.failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Just enough DER to print a certificate's subject.
mod der {
    /// One tag-length-value: the tag, the contents and what follows.
    fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = data.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The subject as `CN=..., O=...`, or `?` if the certificate cannot be read.
    pub fn subject(cert: &[u8]) -> String {
        read_subject(cert).unwrap_or_else(|| "?".to_string())
    }

    fn read_subject(cert: &[u8]) -> Option<String> {
        let (_, cert, _) = tlv(cert)?;
        let (_, tbs, _) = tlv(cert)?;
        let mut rest = tbs;
        // [0] version (optional), serial, signature algorithm, issuer, validity.
        let mut skip = 4;
        if rest.first() == Some(&0xa0) {
            skip += 1;
        }
        for _ in 0..skip {
            rest = tlv(rest)?.2;
        }
        let (_, mut name, _) = tlv(rest)?;
        let mut parts = Vec::new();
        while !name.is_empty() {
            let (_, set, next) = tlv(name)?;
            name = next;
            let (_, pair, _) = tlv(set)?;
            let (_, oid, value) = tlv(pair)?;
            let (_, value, _) = tlv(value)?;
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                _ => continue,
            };
            parts.push(format!("{key}={}", String::from_utf8_lossy(value)));
        }
        Some(parts.join(", "))
    }
}
