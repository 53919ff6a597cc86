//! A netcat-like tool: connect to a server (or listen for one client) and copy stdin
//! to the socket and the socket to stdout. Stdin is a foreign fd on the reactor.
//!
//! ```text
//! cargo run --example sockcat -- example.org 80        # connect
//! cargo run --example sockcat -- -l 127.0.0.1 9000     # listen for one client
//! ```
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
    eprintln!("usage: sockcat HOST PORT | sockcat -l [HOST] PORT");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
