//! The TLS servers of B4: sockloop with a TLS listener, tokio-rustls on tokio's
//! current_thread runtime, and a hand-written mio + rustls loop in the shape of rustls'
//! `tlsserver-mio` example. All three take the same certificate and key (PEM files the
//! parent made with rcgen) and the same rustls settings (ring provider, TLS 1.3 and 1.2,
//! rustls' default session cache and two TLS 1.3 tickets per handshake).
//!
//! Each serves in one of two modes: `echo` writes back what it receives; `sink` counts
//! what it receives and writes one byte (`k`) each time the count crosses a MiB, which
//! is how the bulk client knows the server has decrypted everything it sent.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use sockloop::rustls::pki_types::pem::PemObject;
use sockloop::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sockloop::rustls::{self, ServerConfig, ServerConnection};
use sockloop::{
    ListenerEvent, Reactor, StreamEvent, StreamSocketListener, StreamSocketListenerControl,
    TlsServerConfig,
};

/// What a server does with what it receives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Echo,
    Sink,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "echo" => Some(Mode::Echo),
            "sink" => Some(Mode::Sink),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Sink => "sink",
        }
    }
}

/// A sink acknowledges every MiB received with one byte.
pub const ACK_EVERY: u64 = 1 << 20;

/// The acknowledgements due when `received` bytes were counted after `before`.
pub fn acks(before: u64, received: u64) -> u64 {
    received / ACK_EVERY - before / ACK_EVERY
}

/// The server's certificate chain and key, as PEM.
pub struct Identity {
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Identity {
    /// The same rustls configuration as sockloop's `TlsServerConfig::from_pem` builds.
    pub fn rustls(&self) -> Arc<ServerConfig> {
        let chain = CertificateDer::pem_slice_iter(&self.chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate chain");
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).expect("private key");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("certificate"),
        )
    }
}

/// One TLS competitor: its name, what it is, and its server.
pub struct TlsCompetitor {
    pub name: &'static str,
    /// The plain-TCP competitor it corresponds to (for `--competitors`).
    pub base: &'static str,
    pub describe: &'static str,
    pub serve: fn(Sender<SocketAddr>, &Identity, Mode),
}

pub const ALL: &[TlsCompetitor] = &[
    TlsCompetitor {
        name: "sockloop",
        base: "sockloop",
        describe: "sockloop Reactor, TLS listener (`StreamSocketListenerControl::tls`), one \
                   handler per connection",
        serve: serve_sockloop,
    },
    TlsCompetitor {
        name: "tokio-rustls",
        base: "tokio",
        describe: "tokio-rustls 0.26 `TlsAcceptor` on tokio's current_thread runtime, one task \
                   per connection, 4 KiB buffer per task",
        serve: serve_tokio,
    },
    TlsCompetitor {
        name: "mio-rustls",
        base: "mio",
        describe: "hand-written mio 1.0 + rustls loop in the shape of rustls' `tlsserver-mio` \
                   (buffered `ServerConnection`, `read_tls` until `WouldBlock`), connections in \
                   a HashMap, one shared 16 KiB plaintext buffer, interest changed only when it \
                   changes",
        serve: serve_mio,
    },
];

pub fn find(name: &str) -> Option<&'static TlsCompetitor> {
    ALL.iter().find(|c| c.name == name)
}

fn serve_sockloop(ready: Sender<SocketAddr>, identity: &Identity, mode: Mode) {
    let mut reactor = Reactor::<()>::new().expect("reactor");
    let config = TlsServerConfig::from_pem(&identity.chain_pem, &identity.key_pem).expect("tls");
    let control = StreamSocketListenerControl::new().tls(config);
    let listener = StreamSocketListener::bind_with(
        &mut reactor,
        "127.0.0.1",
        0,
        &control,
        move |reactor, _, _, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                let mut received = 0u64;
                let _ = conn
                    .socket
                    .set_handler(reactor, move |reactor, _, socket, event| match event {
                        StreamEvent::Received(mut input) => {
                            match mode {
                                Mode::Echo => {
                                    if socket.write(reactor, input.bytes()).is_err() {
                                        return;
                                    }
                                }
                                Mode::Sink => {
                                    let n = input.bytes().len() as u64;
                                    for _ in 0..acks(received, received + n) {
                                        let _ = socket.write(reactor, b"k");
                                    }
                                    received += n;
                                }
                            }
                            input.consume_all();
                        }
                        StreamEvent::ReadClosed => {
                            let _ = socket.close(reactor);
                        }
                        _ => {}
                    });
            }
        },
    )
    .expect("bind");
    ready
        .send(listener.local_address(&reactor).expect("address"))
        .expect("ready");
    reactor.run(&mut ()).expect("run");
}

fn serve_tokio(ready: Sender<SocketAddr>, identity: &Identity, mode: Mode) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let acceptor = tokio_rustls::TlsAcceptor::from(identity.rustls());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        ready.send(listener.local_addr().unwrap()).expect("ready");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let mut received = 0u64;
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let sent = match mode {
                        Mode::Echo => stream.write_all(&buf[..n]).await,
                        Mode::Sink => {
                            let due = acks(received, received + n as u64);
                            received += n as u64;
                            let mut r = Ok(());
                            for _ in 0..due {
                                r = r.and(stream.write_all(b"k").await);
                            }
                            r
                        }
                    };
                    // tokio-rustls encrypts into its buffer on write; flush sends it.
                    if sent.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A connection of the mio loop.
struct Conn {
    socket: mio::net::TcpStream,
    tls: ServerConnection,
    received: u64,
    writable_interest: bool,
}

impl Conn {
    /// Reads and decrypts until the socket would block; handles the plaintext. Returns
    /// false when the connection is over.
    fn read(&mut self, mode: Mode, buf: &mut [u8]) -> bool {
        loop {
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
            if self.tls.process_new_packets().is_err() {
                // Send the alert, then give up.
                let _ = self.tls.write_tls(&mut self.socket);
                return false;
            }
            loop {
                match self.tls.reader().read(buf) {
                    Ok(0) => return false, // close_notify
                    Ok(n) => match mode {
                        Mode::Echo => {
                            let _ = self.tls.writer().write_all(&buf[..n]);
                        }
                        Mode::Sink => {
                            for _ in 0..acks(self.received, self.received + n as u64) {
                                let _ = self.tls.writer().write_all(b"k");
                            }
                            self.received += n as u64;
                        }
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
            }
        }
    }

    /// Sends what rustls has; false on a socket error.
    fn write(&mut self) -> bool {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

fn serve_mio(ready: Sender<SocketAddr>, identity: &Identity, mode: Mode) {
    use mio::{Events, Interest, Poll, Token};

    const LISTENER: Token = Token(usize::MAX);
    let config = identity.rustls();
    let mut poll = Poll::new().expect("poll");
    let mut listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register");
    ready.send(listener.local_addr().unwrap()).expect("ready");
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("poll: {e}");
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut socket, _)) => {
                            let _ = socket.set_nodelay(true);
                            let token = next;
                            next += 1;
                            poll.registry()
                                .register(&mut socket, Token(token), Interest::READABLE)
                                .expect("register");
                            let tls = ServerConnection::new(config.clone()).expect("session");
                            conns.insert(
                                token,
                                Conn {
                                    socket,
                                    tls,
                                    received: 0,
                                    writable_interest: false,
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
                continue;
            }
            let token = event.token().0;
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            let mut open = true;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                open = conn.read(mode, &mut buf);
            }
            // What is due goes out now, also after a close_notify (rustls answers it).
            let sent = conn.write();
            if !open || !sent {
                if let Some(mut conn) = conns.remove(&token) {
                    let _ = poll.registry().deregister(&mut conn.socket);
                }
                continue;
            }
            let want = conn.tls.wants_write();
            if want != conn.writable_interest {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry()
                    .reregister(&mut conn.socket, Token(token), interest)
                    .expect("reregister");
                conn.writable_interest = want;
            }
        }
    }
}
