//! Load: thousands of concurrent connections on one reactor, each echoing.
//!
//! A server reactor (on its own thread) accepts `--connections N` connections from a
//! client reactor (on the main thread); once all of them are open at the same time,
//! every client sends `--rounds R` messages of `--size B` bytes, one at a time, and
//! checks each echo byte for byte. Prints one summary line (connections served, peak
//! concurrent connections on the server, round-trip p50/p99/max) and exits non-zero if
//! a connection failed, an echo was wrong or the run took longer than `--limit` seconds.
//!
//! ```text
//! cargo run --release --example load -- --connections 9000 --rounds 20
//! ```
//!
//! Both ends are in this process: it needs two descriptors per connection plus a few
//! (the open-files limit is checked first).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sockloop::{
    ListenerEvent, Reactor, StreamEvent, StreamSocket, StreamSocketListener,
    StreamSocketListenerControl,
};

struct Options {
    connections: usize,
    rounds: usize,
    size: usize,
    limit: Duration,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        connections: 9000,
        rounds: 20,
        size: 64,
        limit: Duration::from_secs(300),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--connections" => o.connections = value("--connections")?,
            "--rounds" => o.rounds = value("--rounds")?,
            "--size" => o.size = value("--size")?.max(1),
            "--limit" => o.limit = Duration::from_secs(value("--limit")? as u64),
            _ => {
                return Err(format!(
                "unknown argument {arg}; usage: load [--connections N] [--rounds R] [--size B] [--limit SECONDS]"
            ))
            }
        }
    }
    Ok(o)
}

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The server: echoes, and counts live connections.
#[derive(Default)]
struct Server {
    live: usize,
    peak: usize,
    accepted: usize,
}

fn serve(addr_tx: std::sync::mpsc::Sender<(SocketAddr, sockloop::Remote<Server>)>) -> Server {
    let mut reactor = Reactor::<Server>::new().expect("server reactor");
    let control = StreamSocketListenerControl::new().backlog(4096);
    let listener = StreamSocketListener::bind_with(
        &mut reactor,
        "127.0.0.1",
        0,
        &control,
        |r, server, _, event| {
            if let ListenerEvent::ConnectionReceived(c) = event {
                server.accepted += 1;
                server.live += 1;
                server.peak = server.peak.max(server.live);
                let claimed = c
                    .socket
                    .set_handler(r, |r, server: &mut Server, socket, event| match event {
                        StreamEvent::Received(mut input)
                            if socket.write(r, input.bytes()).is_ok() =>
                        {
                            input.consume_all();
                        }
                        StreamEvent::ReadClosed => {
                            let _ = socket.close(r);
                        }
                        StreamEvent::Closed(_) => server.live -= 1,
                        _ => {}
                    });
                if let Err(e) = claimed {
                    eprintln!("load: server: {e}");
                }
            }
        },
    )
    .expect("bind");
    let addr = listener.local_address(&reactor).expect("address");
    addr_tx
        .send((addr, reactor.remote()))
        .expect("send address");
    let mut server = Server::default();
    reactor.run(&mut server).expect("server run");
    server
}

/// One client connection's progress.
struct Conn {
    socket: Option<StreamSocket>,
    round: usize,
    /// Bytes of the current echo received so far.
    got: usize,
    sent_at: Instant,
}

struct Client {
    size: usize,
    rounds: usize,
    conns: Vec<Conn>,
    connected: usize,
    finished: usize,
    failed: usize,
    wrong: usize,
    /// Round-trip times, in microseconds.
    rtts: Vec<u32>,
}

/// The message of round `round` of connection `i`: recognisable bytes, so an echo of
/// another connection's or another round's bytes shows.
fn message(i: usize, round: usize, size: usize) -> impl Iterator<Item = u8> {
    (0..size).map(move |k| (i.wrapping_mul(31) ^ round.wrapping_mul(7) ^ k) as u8)
}

fn send(r: &mut Reactor<Client>, client: &mut Client, i: usize) {
    let size = client.size;
    let conn = &mut client.conns[i];
    let Some(socket) = conn.socket else { return };
    let bytes: Vec<u8> = message(i, conn.round, size).collect();
    conn.got = 0;
    conn.sent_at = Instant::now();
    if let Err(e) = socket.write(r, &bytes) {
        eprintln!("load: connection {i}: {e}");
        client.failed += 1;
        let _ = socket.abort(r);
    }
}

fn client_handler(
    i: usize,
) -> impl FnMut(&mut Reactor<Client>, &mut Client, StreamSocket, StreamEvent<'_>) + 'static {
    move |r, client, socket, event| match event {
        StreamEvent::Connected => client.connected += 1,
        StreamEvent::Received(mut input) => {
            let (size, rounds) = (client.size, client.rounds);
            let conn = &mut client.conns[i];
            let bytes = input.bytes();
            let take = bytes.len().min(size - conn.got);
            let expected = message(i, conn.round, size).skip(conn.got).take(take);
            if !bytes[..take].iter().copied().eq(expected) {
                client.wrong += 1;
            }
            conn.got += take;
            input.consume(take);
            if conn.got < size {
                return;
            }
            let rtt = conn.sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            client.rtts.push(rtt);
            conn.round += 1;
            if conn.round == rounds {
                let _ = socket.close(r);
            } else {
                send(r, client, i);
            }
        }
        StreamEvent::Closed(result) => {
            client.finished += 1;
            client.conns[i].socket = None;
            if let Err(e) = result {
                eprintln!("load: connection {i}: {e}");
                client.failed += 1;
            } else if client.conns[i].round != client.rounds {
                eprintln!(
                    "load: connection {i} closed after {} rounds",
                    client.conns[i].round
                );
                client.failed += 1;
            }
        }
        _ => {}
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::from(2);
        }
    };
    let needed = 2 * o.connections as u64 + 64;
    match open_files_limit() {
        Some(limit) if limit < needed => {
            eprintln!(
                "load: {} connections need {needed} open files, the limit is {limit} \
                 (raise it with `ulimit -n`)",
                o.connections
            );
            return ExitCode::from(2);
        }
        _ => {}
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let server_thread = thread::spawn(move || serve(tx));
    let (addr, server_remote) = rx.recv().expect("server address");

    let mut reactor = Reactor::<Client>::new().expect("client reactor");
    let mut client = Client {
        size: o.size,
        rounds: o.rounds,
        conns: Vec::with_capacity(o.connections),
        connected: 0,
        finished: 0,
        failed: 0,
        wrong: 0,
        rtts: Vec::with_capacity(o.connections * o.rounds),
    };
    let started = Instant::now();
    let deadline = started + o.limit;
    for i in 0..o.connections {
        let socket = StreamSocket::connect_to(&mut reactor, addr, client_handler(i));
        let socket = match socket {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("load: connection {i}: {e}");
                client.failed += 1;
                client.finished += 1;
                None
            }
        };
        client.conns.push(Conn {
            socket,
            round: 0,
            got: 0,
            sent_at: started,
        });
    }
    let turn = |reactor: &mut Reactor<Client>, client: &mut Client| {
        reactor
            .turn(client, Some(Duration::from_millis(100)))
            .expect("client turn");
        Instant::now() < deadline
    };
    // Every connection open at once, then every one echoing.
    while client.connected + client.failed < o.connections {
        if !turn(&mut reactor, &mut client) {
            break;
        }
    }
    let connected_in = started.elapsed();
    let concurrent = client.connected;
    let echo_started = Instant::now();
    for i in 0..o.connections {
        send(&mut reactor, &mut client, i);
    }
    let mut in_time = true;
    while client.finished < o.connections {
        if !turn(&mut reactor, &mut client) {
            in_time = false;
            break;
        }
    }
    let echo_time = echo_started.elapsed();
    let _ = server_remote.stop();
    let server = server_thread.join().expect("server thread");

    client.rtts.sort_unstable();
    let messages = client.rtts.len();
    println!(
        "load: {} connections ({} open at once on the server), {} round trips of {} bytes in \
         {:.2} s ({:.0}/s; connecting took {:.2} s); round trip p50 {} µs, p99 {} µs, max {} µs; \
         {} failed, {} wrong echoes",
        concurrent,
        server.peak,
        messages,
        o.size,
        echo_time.as_secs_f64(),
        messages as f64 / echo_time.as_secs_f64(),
        connected_in.as_secs_f64(),
        percentile(&client.rtts, 50.0),
        percentile(&client.rtts, 99.0),
        client.rtts.last().copied().unwrap_or(0),
        client.failed,
        client.wrong,
    );
    let mut ok = true;
    if !in_time {
        eprintln!("load: not finished within {:?}", o.limit);
        ok = false;
    }
    if client.failed > 0 || client.wrong > 0 {
        ok = false;
    }
    if messages != o.connections * o.rounds {
        eprintln!(
            "load: {messages} round trips instead of {}",
            o.connections * o.rounds
        );
        ok = false;
    }
    if server.peak != o.connections || server.accepted != o.connections {
        eprintln!(
            "load: the server had {} connections open at once ({} accepted), not {}",
            server.peak, server.accepted, o.connections
        );
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
