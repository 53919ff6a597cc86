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

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use sockloop::{
    FdEvent, FdSource, Interest, ListenerEvent, Reactor, StreamEvent, StreamSocket,
    StreamSocketListener,
};

#[derive(Default)]
struct Cat {
    socket: Option<StreamSocket>,
    stdin: Option<FdSource>,
    /// Stdin bytes the socket's queue could not take yet (backpressure).
    pending: Vec<u8>,
    stdin_done: bool,
    failed: bool,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: sockcat HOST PORT | sockcat -l [HOST] PORT\n       \
         sockcat --udp HOST PORT | sockcat --udp -l [HOST] PORT\n       \
         sockcat --multicast GROUP [--if INDEX] PORT"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(code) = datagram_main(&args) {
        return code;
    }
    let result = match args.as_slice() {
        ["-l", port] => listen("::", port),
        ["-l", host, port] => listen(host, port),
        [host, port] => connect(host, port),
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
    let mut reactor = Reactor::<Cat>::new()?;
    let listener = StreamSocketListener::bind(
        &mut reactor,
        host,
        port,
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
    match event {
        StreamEvent::Connected => {
            if let Ok(info) = socket.information(reactor) {
                eprintln!("sockcat: connected to {:?}", info.remote_address);
            }
            start_stdin(reactor, cat);
        }
        StreamEvent::Received(mut input) => {
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
