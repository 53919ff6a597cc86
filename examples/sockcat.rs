//! A netcat-like tool: connect to a server (or listen for one client) and copy stdin
//! to the socket and the socket to stdout. Stdin is a foreign fd on the reactor.
//!
//! ```text
//! cargo run --example sockcat -- example.org 80        # connect
//! cargo run --example sockcat -- -l 127.0.0.1 9000     # listen for one client
//! cargo run --example sockcat -- --udp 127.0.0.1 9000   # datagrams to a peer
//! cargo run --example sockcat -- --udp -l 9000          # datagrams from anyone
//! cargo run --example sockcat -- --multicast 239.1.2.3 9000           # a group
//! cargo run --example sockcat -- --multicast 239.1.2.3 --if 1 9000    # on lo
//! ```
//!
//! With `--udp` or `--multicast`, each line of stdin is one datagram and each datagram
//! received is written to stdout. `--udp -l` answers the last sender; `--multicast`
//! shares the port with other programs (`multicast_only`) and sends to the group
//! (looped back, so that the others on this host see it too). When stdin ends, what is
//! queued is sent and the program exits after half a second of listening.
//!
//! When stdin ends, the sending side is shut down (the peer sees end of file); the
//! program exits when the peer closes too.
//!
//! TLS (the negotiated version, cipher suite and peer certificate go to stderr):
//!
//! ```text
//! sockcat --tls example.org 443                      # connect over TLS (Mozilla's roots)
//! sockcat --tls --ca ca.pem localhost 4433           # trusting ca.pem instead
//! sockcat --tls --cert c.pem --key k.pem HOST PORT   # with a client certificate
//! sockcat --tls --insecure-ignore CertificateExpired --insecure-ignore \
//!     CertificateUntrustedRoot HOST PORT               # accept these errors (logged)
//! sockcat --starttls smtp mail.example.org 587       # EHLO, STARTTLS, then TLS in place
//! sockcat -l --tls --cert s.pem --key k.pem 4433     # TLS server for one client
//! sockcat -l --tls --cert s.pem --key k.pem --ca ca.pem 4433  # ... that must
//!                                                    # present a certificate from ca.pem
//! ```

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use sockloop::{
    FdEvent, FdSource, HostName, Interest, ListenerEvent, ProtectionLevel, Reactor,
    SocketErrorStatus, StreamEvent, StreamSocket, StreamSocketControl, StreamSocketListener,
    StreamSocketListenerControl, TlsClientOptions, TlsServerConfig,
};

#[derive(Default)]
struct Cat {
    socket: Option<StreamSocket>,
    stdin: Option<FdSource>,
    /// Stdin bytes the socket's queue could not take yet (backpressure).
    pending: Vec<u8>,
    stdin_done: bool,
    failed: bool,
    /// `--starttls smtp`: the negotiation before the upgrade (`None` once upgraded).
    smtp: Option<Smtp>,
    /// What TLS negotiated was printed.
    tls_shown: bool,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: sockcat [TLS] HOST PORT | sockcat -l [TLS] [HOST] PORT\n       \
         sockcat --udp HOST PORT | sockcat --udp -l [HOST] PORT\n       \
         sockcat --multicast GROUP [--if INDEX] PORT\n\
         TLS: --tls | --starttls smtp, --ca FILE, --cert FILE --key FILE, \
         --insecure-ignore STATUS (repeatable)"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let tls = match Tls::take_flags(&mut args) {
        Ok(tls) => tls,
        Err(why) => {
            eprintln!("sockcat: {why}");
            return usage();
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if tls.is_none() {
        if let Some(code) = datagram_main(&args) {
            return code;
        }
    }
    let result = match (args.as_slice(), &tls) {
        (["-l", port], Some(tls)) => tls.listen("::", port),
        (["-l", host, port], Some(tls)) => tls.listen(host, port),
        ([host, port], Some(tls)) => tls.connect(host, port),
        (["-l", port], None) => listen("::", port),
        (["-l", host, port], None) => listen(host, port),
        ([host, port], None) => connect(host, port),
        _ => return usage(),
    };
    let _ = sockloop::set_nonblocking(io::stdin().as_fd(), false);
    match result {
        Ok(cat) if !cat.failed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sockcat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn connect(host: &str, port: &str) -> Result<Cat, sockloop::Error> {
    let mut reactor = Reactor::<Cat>::new()?;
    let socket = StreamSocket::connect(&mut reactor, host, port, on_socket)?;
    let mut cat = Cat {
        socket: Some(socket),
        ..Cat::default()
    };
    reactor.run(&mut cat)?;
    Ok(cat)
}

fn listen(host: &str, port: &str) -> Result<Cat, sockloop::Error> {
    listen_with(host, port, &StreamSocketListenerControl::new())
}

fn listen_with(
    host: &str,
    port: &str,
    control: &StreamSocketListenerControl,
) -> Result<Cat, sockloop::Error> {
    let mut reactor = Reactor::<Cat>::new()?;
    let listener = StreamSocketListener::bind_with(
        &mut reactor,
        host,
        port,
        control,
        |reactor, cat: &mut Cat, listener, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                eprintln!("sockcat: connection from {}", conn.remote);
                let _ = listener.close(reactor); // one client only
                if conn.socket.set_handler(reactor, on_socket).is_ok() {
                    cat.socket = Some(conn.socket);
                    start_stdin(reactor, cat);
                }
            }
        },
    )?;
    eprintln!(
        "sockcat: listening on {}",
        listener.local_address(&reactor)?
    );
    let mut cat = Cat::default();
    reactor.run(&mut cat)?;
    Ok(cat)
}

fn start_stdin(reactor: &mut Reactor<Cat>, cat: &mut Cat) {
    let stdin = io::stdin();
    if sockloop::set_nonblocking(stdin.as_fd(), true).is_err() {
        eprintln!("sockcat: stdin cannot be made non-blocking; not sending");
        cat.stdin_done = true;
        return;
    }
    match reactor.register_fd(stdin, Interest::Readable, on_stdin) {
        Ok(source) => cat.stdin = Some(source),
        Err(e) => {
            // A regular file (`< file`) cannot be polled: send it whole instead.
            log::debug!("stdin not pollable ({e}); reading it at once");
            pump_stdin(reactor, cat);
        }
    }
}

fn on_socket(
    reactor: &mut Reactor<Cat>,
    cat: &mut Cat,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    let event = match smtp_event(reactor, cat, socket, event) {
        Some(event) => event,
        None => return,
    };
    match event {
        StreamEvent::Connected => {
            if let Ok(info) = socket.information(reactor) {
                eprintln!("sockcat: connected to {:?}", info.remote_address);
            }
            print_tls(reactor, cat, socket);
            if cat.smtp.is_none() {
                start_stdin(reactor, cat);
            }
        }
        StreamEvent::TlsUpgraded => {
            print_tls(reactor, cat, socket);
            start_stdin(reactor, cat);
        }
        StreamEvent::Received(mut input) => {
            if !cat.tls_shown {
                // An accepted TLS socket's first bytes follow its handshake.
                print_tls(reactor, cat, socket);
            }
            let mut out = io::stdout().lock();
            let _ = out.write_all(input.bytes()).and_then(|()| out.flush());
            input.consume_all();
        }
        StreamEvent::ReadClosed if cat.stdin_done && cat.pending.is_empty() => {
            let _ = socket.close(reactor);
        }
        StreamEvent::Drained => {
            send_pending(reactor, cat);
            pump_stdin(reactor, cat);
        }
        StreamEvent::Closed(result) => {
            if let Err(e) = result {
                eprintln!("sockcat: {e}");
                cat.failed = true;
            }
            cat.socket = None;
            if let Some(stdin) = cat.stdin.take() {
                let _ = reactor.deregister_fd(stdin);
            }
        }
        _ => {}
    }
}

fn on_stdin(
    reactor: &mut Reactor<Cat>,
    cat: &mut Cat,
    _source: FdSource,
    _stdin: &mut io::Stdin,
    _event: FdEvent,
) {
    pump_stdin(reactor, cat);
}

/// Reads stdin until it would block, ends, or the socket's queue is full.
fn pump_stdin(reactor: &mut Reactor<Cat>, cat: &mut Cat) {
    if cat.stdin_done {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    while cat.pending.is_empty() {
        match io::stdin().lock().read(&mut buf) {
            Ok(0) => {
                cat.stdin_done = true;
                if let Some(stdin) = cat.stdin.take() {
                    let _ = reactor.deregister_fd(stdin);
                }
                if let Some(socket) = cat.socket {
                    let _ = socket.shutdown_write(reactor);
                }
                return;
            }
            Ok(n) => {
                cat.pending.extend_from_slice(&buf[..n]);
                send_pending(reactor, cat);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return, // WouldBlock: wait for the next readiness event
        }
    }
}

/// Moves pending stdin bytes into the socket's queue, keeping them when it is full
/// (`Drained` brings them back).
fn send_pending(reactor: &mut Reactor<Cat>, cat: &mut Cat) {
    let Some(socket) = cat.socket else { return };
    if !cat.pending.is_empty() && socket.write(reactor, &cat.pending).is_ok() {
        cat.pending.clear();
    }
}

// ---------------------------------------------------------------- TLS

/// The TLS flags: how to protect the connection, with what.
struct Tls {
    /// `--starttls smtp`: plain first, upgraded in place after the SMTP exchange.
    starttls: bool,
    /// `--ca FILE`: the client's trust roots, or the roots a listener asks client
    /// certificates to chain to.
    ca: Option<Vec<u8>>,
    /// `--cert FILE --key FILE`: the client's certificate, or the listener's.
    identity: Option<(Vec<u8>, Vec<u8>)>,
    /// `--insecure-ignore STATUS`.
    ignore: Vec<SocketErrorStatus>,
}

impl Tls {
    /// Removes the TLS flags from `args`; `None` without `--tls` or `--starttls`.
    fn take_flags(args: &mut Vec<String>) -> Result<Option<Tls>, String> {
        let mut tls = Tls {
            starttls: false,
            ca: None,
            identity: None,
            ignore: Vec::new(),
        };
        let (mut on, mut cert, mut key) = (false, None, None);
        let mut rest = Vec::new();
        let mut it = std::mem::take(args).into_iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
            let read = |file: String| std::fs::read(&file).map_err(|e| format!("{file}: {e}"));
            match arg.as_str() {
                "--tls" => on = true,
                "--starttls" => match value("--starttls")?.as_str() {
                    "smtp" => (on, tls.starttls) = (true, true),
                    other => return Err(format!("--starttls {other}: only smtp is known")),
                },
                "--ca" => tls.ca = Some(read(value("--ca")?)?),
                "--cert" => cert = Some(read(value("--cert")?)?),
                "--key" => key = Some(read(value("--key")?)?),
                "--insecure-ignore" => tls.ignore.push(status(&value("--insecure-ignore")?)?),
                _ => rest.push(arg),
            }
        }
        *args = rest;
        tls.identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("--cert and --key go together".into()),
        };
        let used = tls.ca.is_some() || tls.identity.is_some() || !tls.ignore.is_empty();
        match (on, used) {
            (true, _) => Ok(Some(tls)),
            (false, true) => Err("--ca, --cert, --key and --insecure-ignore need --tls".into()),
            (false, false) => Ok(None),
        }
    }

    fn client_options(&self) -> Result<TlsClientOptions, sockloop::Error> {
        let mut options = TlsClientOptions::new();
        if let Some(ca) = &self.ca {
            options = options.root_certificates_pem(ca)?;
        }
        if let Some((cert, key)) = &self.identity {
            options = options.client_certificate_pem(cert, key)?;
        }
        options.ignorable_server_certificate_errors(self.ignore.iter().copied())
    }

    fn connect(&self, host: &str, port: &str) -> Result<Cat, sockloop::Error> {
        let options = self.client_options()?;
        let mut control = StreamSocketControl::new().tls(options.clone());
        if !self.starttls {
            control = control.protection_level(ProtectionLevel::Ssl);
        }
        let mut reactor = Reactor::<Cat>::new()?;
        let socket = StreamSocket::connect_with(&mut reactor, host, port, &control, on_socket)?;
        let mut cat = Cat {
            socket: Some(socket),
            ..Cat::default()
        };
        if self.starttls {
            cat.smtp = Some(Smtp {
                step: SmtpStep::Greeting,
                line: Vec::new(),
                host: HostName::new(host)?,
                options,
            });
        }
        reactor.run(&mut cat)?;
        Ok(cat)
    }

    fn listen(&self, host: &str, port: &str) -> Result<Cat, sockloop::Error> {
        if self.starttls || !self.ignore.is_empty() {
            return Err(
                sockloop::Error::new(SocketErrorStatus::InvalidArgument, "sockcat -l")
                    .with_detail("a listener takes --tls, --cert, --key and --ca only"),
            );
        }
        let Some((cert, key)) = &self.identity else {
            return Err(sockloop::Error::new(
                SocketErrorStatus::InvalidArgument,
                "sockcat -l --tls",
            )
            .with_detail("a TLS listener needs its certificate: --cert FILE --key FILE"));
        };
        let mut server = TlsServerConfig::from_pem(cert, key)?;
        if let Some(ca) = &self.ca {
            server = server.client_authentication_pem(ca, true)?;
        }
        listen_with(host, port, &StreamSocketListenerControl::new().tls(server))
    }
}

/// A status by its name (`CertificateExpired`), for `--insecure-ignore`.
fn status(name: &str) -> Result<SocketErrorStatus, String> {
    use SocketErrorStatus::*;
    let known = [
        CertificateExpired,
        CertificateUntrustedRoot,
        CertificateCommonNameIsIncorrect,
        CertificateWrongUsage,
        CertificateRevoked,
        CertificateIsInvalid,
    ];
    known
        .into_iter()
        .find(|s| format!("{s:?}").eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("--insecure-ignore {name}: not a certificate status ({known:?})"))
}

/// What the connection negotiated, on stderr.
fn print_tls(reactor: &Reactor<Cat>, cat: &mut Cat, socket: StreamSocket) {
    let Ok(Some(info)) = socket.tls_information(reactor) else {
        return;
    };
    cat.tls_shown = true;
    eprintln!(
        "sockcat: {:?}, {}{}",
        info.protection_level,
        info.cipher_suite,
        if info.resumed { ", resumed" } else { "" }
    );
    if let Some(leaf) = info.peer_certificates.first() {
        eprintln!("sockcat: peer certificate, {} bytes (DER)", leaf.len());
    }
}

/// `--starttls smtp`: greeting, `EHLO`, `STARTTLS`, then the upgrade in place.
struct Smtp {
    step: SmtpStep,
    /// The reply line being read.
    line: Vec<u8>,
    host: HostName,
    options: TlsClientOptions,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SmtpStep {
    /// Waiting for the server's `220` greeting.
    Greeting,
    /// `EHLO` sent: waiting for the last `250` line.
    Ehlo,
    /// `STARTTLS` sent: waiting for `220`.
    StartTls,
    /// Upgrading: the server must say nothing more in clear.
    Upgrading,
}

/// The SMTP exchange before the upgrade: consumes the events it handles (`None`) and
/// passes on the others. Replies are echoed to stderr.
fn smtp_event<'a>(
    reactor: &mut Reactor<Cat>,
    cat: &mut Cat,
    socket: StreamSocket,
    event: StreamEvent<'a>,
) -> Option<StreamEvent<'a>> {
    let Some(smtp) = cat.smtp.as_mut() else {
        return Some(event);
    };
    let mut input = match event {
        StreamEvent::Received(input) => input,
        StreamEvent::TlsUpgraded => {
            cat.smtp = None;
            eprintln!("sockcat: TLS in place; type SMTP commands (EHLO again first)");
            return Some(StreamEvent::TlsUpgraded);
        }
        StreamEvent::Closed(_) => {
            cat.smtp = None;
            return Some(event);
        }
        other => return Some(other),
    };
    let fail = |reactor: &mut Reactor<Cat>, cat: &mut Cat, why: String| {
        eprintln!("sockcat: STARTTLS failed: {why}");
        cat.failed = true;
        let _ = socket.abort(reactor);
    };
    let bytes = input.bytes();
    let mut used = 0;
    while let Some(end) = bytes[used..].iter().position(|&b| b == b'\n') {
        smtp.line.extend_from_slice(&bytes[used..used + end + 1]);
        used += end + 1;
        let line = std::mem::take(&mut smtp.line);
        eprint!("sockcat: < {}", String::from_utf8_lossy(&line));
        // "250-..." continues, "250 ..." is the last line of a reply.
        let last = line.get(3) != Some(&b'-');
        let code = line.get(..3).unwrap_or_default();
        let (want, send, next) = match smtp.step {
            SmtpStep::Greeting => (&b"220"[..], &b"EHLO sockcat\r\n"[..], SmtpStep::Ehlo),
            SmtpStep::Ehlo => (&b"250"[..], &b"STARTTLS\r\n"[..], SmtpStep::StartTls),
            SmtpStep::StartTls => (&b"220"[..], &b""[..], SmtpStep::Upgrading),
            SmtpStep::Upgrading => {
                input.consume(used);
                fail(
                    reactor,
                    cat,
                    "the server said more before the handshake".into(),
                );
                return None;
            }
        };
        if code != want {
            input.consume(used);
            fail(
                reactor,
                cat,
                format!("expected {}", String::from_utf8_lossy(want)),
            );
            return None;
        }
        if !last {
            continue;
        }
        smtp.step = next;
        if next == SmtpStep::Upgrading {
            if used != bytes.len() {
                // Plaintext after the 220 would be taken as protected: refused.
                input.consume(used);
                fail(reactor, cat, "the server said more after its 220".into());
                return None;
            }
            let (host, options) = (smtp.host.clone(), smtp.options.clone());
            input.consume(used);
            if let Err(e) =
                socket.upgrade_to_tls_with(reactor, ProtectionLevel::Ssl, &host, &options)
            {
                fail(reactor, cat, e.to_string());
            }
            return None;
        }
        eprint!("sockcat: > {}", String::from_utf8_lossy(send));
        let _ = socket.write(reactor, send);
    }
    // A partial line waits for the rest.
    smtp.line.extend_from_slice(&bytes[used..]);
    input.consume_all();
    None
}

// ---- UDP and multicast (`--udp`, `--multicast`) ----

/// What the datagram mode's handlers share.
#[derive(Default)]
struct UdpCat {
    socket: Option<sockloop::DatagramSocket>,
    /// Where lines go: the group, or the last sender (`--udp -l`); `None` for a
    /// connected socket.
    to: Option<std::net::SocketAddr>,
    /// Answer the last sender (`--udp -l`).
    reply: bool,
    stdin: Option<FdSource>,
    /// Stdin bytes not yet ending in a newline.
    line: Vec<u8>,
    failed: bool,
}

/// Runs the datagram modes; `None` when the arguments ask for a stream.
fn datagram_main(args: &[&str]) -> Option<ExitCode> {
    let result = match args {
        ["--udp", "-l", port] => udp_bind("::", port),
        ["--udp", "-l", host, port] => udp_bind(host, port),
        ["--udp", host, port] => udp_connect(host, port),
        ["--multicast", group, port] => udp_multicast(group, 0, port),
        ["--multicast", group, "--if", index, port] => match index.parse() {
            Ok(index) => udp_multicast(group, index, port),
            Err(_) => return Some(usage()),
        },
        ["--udp" | "--multicast", ..] => return Some(usage()),
        _ => return None,
    };
    let _ = sockloop::set_nonblocking(io::stdin().as_fd(), false);
    Some(match result {
        Ok(cat) if !cat.failed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sockcat: {e}");
            ExitCode::FAILURE
        }
    })
}

fn udp_connect(host: &str, port: &str) -> Result<UdpCat, sockloop::Error> {
    let mut reactor = Reactor::<UdpCat>::new()?;
    let socket = sockloop::DatagramSocket::connect(&mut reactor, host, port, on_datagram)?;
    udp_run(reactor, socket, None, false)
}

fn udp_bind(host: &str, port: &str) -> Result<UdpCat, sockloop::Error> {
    let mut reactor = Reactor::<UdpCat>::new()?;
    let socket = sockloop::DatagramSocket::bind(&mut reactor, host, port, on_datagram)?;
    if let Some(local) = socket.information(&reactor)?.local_address {
        eprintln!("sockcat: receiving on {local}");
    }
    udp_run(reactor, socket, None, true)
}

fn udp_multicast(group: &str, interface: u32, port: &str) -> Result<UdpCat, sockloop::Error> {
    let mut reactor = Reactor::<UdpCat>::new()?;
    let group_ip: std::net::IpAddr = group.parse().map_err(|_| {
        sockloop::Error::new(sockloop::SocketErrorStatus::InvalidArgument, "multicast")
            .with_detail(format!("{group:?} is not an IP address"))
    })?;
    let control = sockloop::DatagramSocketControl::new()
        .multicast_only(true)
        .multicast_loopback(true)
        .multicast_interface((interface != 0).then_some(interface));
    let wildcard = if group_ip.is_ipv4() { "0.0.0.0" } else { "::" };
    let socket =
        sockloop::DatagramSocket::bind_with(&mut reactor, wildcard, port, &control, on_datagram)?;
    socket.join_multicast_group_on(&mut reactor, group, interface)?;
    let local = socket.information(&reactor)?.local_address;
    let to = local.map(|l| std::net::SocketAddr::new(group_ip, l.port()));
    eprintln!("sockcat: joined {group} on port {port} (interface index {interface})");
    udp_run(reactor, socket, to, false)
}

fn udp_run(
    mut reactor: Reactor<UdpCat>,
    socket: sockloop::DatagramSocket,
    to: Option<std::net::SocketAddr>,
    reply: bool,
) -> Result<UdpCat, sockloop::Error> {
    let mut cat = UdpCat {
        socket: Some(socket),
        to,
        reply,
        ..UdpCat::default()
    };
    let stdin = io::stdin();
    if sockloop::set_nonblocking(stdin.as_fd(), true).is_ok() {
        match reactor.register_fd(stdin, Interest::Readable, |r, cat: &mut UdpCat, _, _, _| {
            udp_pump_stdin(r, cat)
        }) {
            Ok(source) => cat.stdin = Some(source),
            // A regular file cannot be polled: send it whole now.
            Err(_) => udp_pump_stdin(&mut reactor, &mut cat),
        }
    }
    reactor.run(&mut cat)?;
    Ok(cat)
}

fn on_datagram(
    reactor: &mut Reactor<UdpCat>,
    cat: &mut UdpCat,
    _socket: sockloop::DatagramSocket,
    event: sockloop::DatagramEvent<'_>,
) {
    match event {
        sockloop::DatagramEvent::MessageReceived(m) => {
            if cat.reply {
                cat.to = Some(m.remote);
            }
            if m.truncated {
                eprintln!("sockcat: a datagram from {} was truncated", m.remote);
            }
            let mut out = io::stdout().lock();
            let _ = out.write_all(m.data).and_then(|()| out.flush());
        }
        sockloop::DatagramEvent::Error(e) => eprintln!("sockcat: {e}"),
        sockloop::DatagramEvent::Closed(result) => {
            if let Err(e) = result {
                eprintln!("sockcat: {e}");
                cat.failed = true;
            }
            cat.socket = None;
            if let Some(stdin) = cat.stdin.take() {
                let _ = reactor.deregister_fd(stdin);
            }
        }
        _ => {}
    }
}

/// Reads stdin until it would block or ends; each complete line is one datagram.
fn udp_pump_stdin(reactor: &mut Reactor<UdpCat>, cat: &mut UdpCat) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match io::stdin().lock().read(&mut buf) {
            Ok(0) => {
                let rest = std::mem::take(&mut cat.line);
                udp_send(reactor, cat, &rest);
                if let Some(stdin) = cat.stdin.take() {
                    let _ = reactor.deregister_fd(stdin);
                }
                // Listen a little longer for answers, then close.
                reactor.set_timer(std::time::Duration::from_millis(500), |r, cat, _| {
                    if let Some(socket) = cat.socket {
                        let _ = socket.close(r);
                    }
                });
                return;
            }
            Ok(n) => {
                cat.line.extend_from_slice(&buf[..n]);
                while let Some(end) = cat.line.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = cat.line.drain(..=end).collect();
                    udp_send(reactor, cat, &line);
                }
                // A "line" too long for one datagram goes in pieces.
                while cat.line.len() > 65_000 {
                    let piece: Vec<u8> = cat.line.drain(..65_000).collect();
                    udp_send(reactor, cat, &piece);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return, // WouldBlock: wait for the next readiness event
        }
    }
}

fn udp_send(reactor: &mut Reactor<UdpCat>, cat: &mut UdpCat, data: &[u8]) {
    let Some(socket) = cat.socket else { return };
    if data.is_empty() {
        return;
    }
    let result = match cat.to {
        Some(to) => socket.send_to(reactor, to, data),
        None if cat.reply => {
            eprintln!("sockcat: no datagram received yet, nobody to answer; line dropped");
            return;
        }
        None => socket.send(reactor, data),
    };
    if let Err(e) = result {
        eprintln!("sockcat: {e}");
    }
}
