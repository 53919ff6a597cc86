//! `StreamSocketListener`: binding, accepting, closing, fd exhaustion, inherited
//! sockets. Clients are plain `std` sockets on loopback.

mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sockloop::{
    ConnectionReceived, HostName, ListenerEvent, Reactor, SocketErrorStatus, StreamEvent,
    StreamSocket, StreamSocketListener, StreamSocketListenerControl,
};
use util::harness::{exact_test_args, ChildGuard};
use util::{run_bounded, run_until};

const LIMIT: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);
/// Set in child processes to the name of the scenario they run.
const CHILD_ENV: &str = "SOCKLOOP_LISTENER_TEST_CHILD";

#[derive(Default)]
struct Server {
    conns: Vec<ConnectionReceived>,
    received: Vec<u8>,
    events: Vec<&'static str>,
    listener_closed: Vec<Result<(), sockloop::Error>>,
    sockets_closed: usize,
    /// Close the listener after this many connections (from its handler).
    close_after: Option<usize>,
    accepts_per_turn: BTreeMap<u64, usize>,
    infos: Vec<sockloop::StreamSocketInformation>,
}

fn localhost() -> HostName {
    HostName::new("127.0.0.1").unwrap()
}

/// The listener handler of most tests: records, then echoes on the new socket.
fn on_listener(
    r: &mut Reactor<Server>,
    s: &mut Server,
    listener: StreamSocketListener,
    event: ListenerEvent,
) {
    match event {
        ListenerEvent::ConnectionReceived(conn) => {
            *s.accepts_per_turn.entry(r.stats().turns).or_default() += 1;
            s.conns.push(conn);
            s.infos.push(conn.socket.information(r).unwrap());
            conn.socket.set_handler(r, echo).unwrap();
            if s.close_after == Some(s.conns.len()) {
                listener.close(r).unwrap();
            }
        }
        ListenerEvent::Closed(result) => s.listener_closed.push(result),
        _ => {}
    }
}

/// Echoes what it receives; closes when the peer has finished sending.
fn echo(r: &mut Reactor<Server>, s: &mut Server, socket: StreamSocket, event: StreamEvent<'_>) {
    match event {
        StreamEvent::Received(mut input) => {
            s.events.push("received");
            s.received.extend_from_slice(input.bytes());
            socket.write(r, input.bytes()).unwrap();
            input.consume_all();
        }
        StreamEvent::ReadClosed => {
            s.events.push("read closed");
            socket.close(r).unwrap();
        }
        StreamEvent::Closed(result) => {
            result.unwrap();
            s.events.push("closed");
            s.sockets_closed += 1;
        }
        _ => {}
    }
}

fn client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    c.set_write_timeout(Some(LIMIT)).unwrap();
    c
}

/// Sends `data`, half-closes, and returns everything the server sends back.
fn send_and_finish(mut c: &TcpStream, data: &[u8]) {
    c.write_all(data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
}

fn read_all(mut c: &TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    got
}

/// Connects to a child process, sends `data`, half-closes and reads the answer; errors
/// are returned, so that the child's own report can be shown first.
fn exchange(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut c = TcpStream::connect_timeout(&addr, LIMIT)?;
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    c.write_all(data)?;
    c.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    c.read_to_end(&mut got)?;
    Ok(got)
}

fn ipv6_loopback_available() -> bool {
    match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        Ok(_) => true,
        Err(e) => {
            println!("skipping the ::1 part: cannot bind [::1]:0 ({e})");
            false
        }
    }
}

// ---------------------------------------------------------------- accepting

#[test]
fn accept_and_echo_with_addresses() {
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, on_listener).unwrap();
    let addr = l.local_address(&r).unwrap();
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);

    let c = client(addr);
    send_and_finish(&c, b"hello, listener");
    let mut s = Server::default();
    let (client_local, client_peer) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == 1);
    assert_eq!(read_all(&c), b"hello, listener");
    assert_eq!(s.conns.len(), 1);
    assert_eq!(s.conns[0].remote, client_local);
    assert_eq!(s.conns[0].local, client_peer);
    assert_eq!(s.conns[0].local, addr);
    assert_eq!(r.stats().accepted, 1);

    l.close(&mut r).unwrap();
    run_bounded(&mut r, &mut s, LIMIT);
    assert_eq!(s.listener_closed.len(), 1);
}

#[test]
fn bytes_sent_before_the_handler_is_set_are_delivered() {
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, |r, s, _, ev| {
        if let ListenerEvent::ConnectionReceived(conn) = ev {
            s.conns.push(conn);
            // Claim the socket only 50 ms later.
            r.set_timer(50 * MS, move |r, s: &mut Server, _| {
                s.events.push("handler set");
                conn.socket.set_handler(r, echo).unwrap();
            });
        }
    })
    .unwrap();
    let addr = l.local_address(&r).unwrap();
    // Everything is sent, and the sending side closed, before the server even runs.
    let c = client(addr);
    send_and_finish(&c, b"early bytes");
    let mut s = Server::default();
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == 1);
    assert_eq!(s.received, b"early bytes");
    let first_received = s.events.iter().position(|e| *e == "received").unwrap();
    assert_eq!(s.events[0], "handler set");
    assert!(s.events[first_received..].ends_with(&["read closed", "closed"]));
    assert_eq!(read_all(&c), b"early bytes");
    l.close(&mut r).unwrap();
    run_bounded(&mut r, &mut s, LIMIT);
}

#[test]
fn bind_service_name_accepts_ipv4_and_ipv6() {
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::bind_any(&mut r, 0, on_listener).unwrap();
    let addr = l.local_address(&r).unwrap();
    assert!(addr.ip().is_unspecified(), "{addr}");
    let port = addr.port();

    let mut clients = vec![client(SocketAddr::from(([127, 0, 0, 1], port)))];
    if ipv6_loopback_available() && addr.is_ipv6() {
        clients.push(client(SocketAddr::from((Ipv6Addr::LOCALHOST, port))));
    }
    let addrs: Vec<_> = clients
        .iter()
        .map(|c| (c.local_addr().unwrap(), c.peer_addr().unwrap()))
        .collect();
    for c in &clients {
        send_and_finish(c, b"dual");
    }
    let mut s = Server::default();
    let n = clients.len();
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == n);
    for (c, (local, peer)) in clients.iter().zip(addrs) {
        assert_eq!(read_all(c), b"dual");
        let conn = s
            .conns
            .iter()
            .find(|conn| conn.remote.port() == local.port())
            .expect("the client's connection");
        // An IPv4 peer is reported with its IPv4 address, not as ::ffff:127.0.0.1.
        assert_eq!(conn.remote, local);
        assert_eq!(conn.local, peer);
    }
    // `information` agrees (taken while the sockets were open).
    assert_eq!(s.infos.len(), n);
    for (conn, info) in s.conns.iter().zip(&s.infos) {
        assert_eq!(info.remote_address, Some(conn.remote));
        assert_eq!(info.local_address, Some(conn.local));
        assert_eq!(
            info.remote_host_name.as_ref().map(|h| h.to_string()),
            Some(conn.remote.ip().to_string())
        );
    }
    l.close(&mut r).unwrap();
    run_bounded(&mut r, &mut s, LIMIT);
}

#[test]
fn only_ipv6_refuses_ipv4() {
    let mut r = Reactor::<Server>::new().unwrap();
    let control = StreamSocketListenerControl::new().only_ipv6(true);
    let l = match StreamSocketListener::bind_any_with(&mut r, 0, &control, on_listener) {
        Ok(l) => l,
        Err(e) => {
            println!("skipping: no IPv6 wildcard listener on this machine ({e})");
            return;
        }
    };
    let addr = l.local_address(&r).unwrap();
    if !addr.is_ipv6() {
        println!("skipping: the listener fell back to IPv4 ({addr})");
        return;
    }
    let e = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], addr.port())), LIMIT)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    if ipv6_loopback_available() {
        let c = client(SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())));
        send_and_finish(&c, b"v6");
        let mut s = Server::default();
        run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == 1);
        assert_eq!(read_all(&c), b"v6");
        assert!(s.conns[0].remote.is_ipv6());
    }
    l.close(&mut r).unwrap();
    run_bounded(&mut r, &mut Server::default(), LIMIT);
}

#[test]
fn reuse_port_lets_two_listeners_share_a_port() {
    let mut r = Reactor::<Server>::new().unwrap();
    let control = StreamSocketListenerControl::new().reuse_port(true);
    let host = localhost();
    let a = StreamSocketListener::bind_with(&mut r, &host, 0, &control, on_listener).unwrap();
    let port = a.local_address(&r).unwrap().port();
    let b = StreamSocketListener::bind_with(&mut r, &host, port, &control, on_listener).unwrap();
    assert_eq!(b.local_address(&r).unwrap().port(), port);
    // Without the option, the port is taken.
    let e = StreamSocketListener::bind(&mut r, &host, port, on_listener).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::AddressAlreadyInUse);

    let clients: Vec<_> = (0..8)
        .map(|_| client(SocketAddr::from(([127, 0, 0, 1], port))))
        .collect();
    for c in &clients {
        send_and_finish(c, b"shared");
    }
    let mut s = Server::default();
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == clients.len());
    for c in &clients {
        assert_eq!(read_all(c), b"shared");
    }
    a.close(&mut r).unwrap();
    b.close(&mut r).unwrap();
    run_bounded(&mut r, &mut s, LIMIT);
    assert_eq!(s.listener_closed.len(), 2);
}

#[test]
fn binding_a_taken_port_fails_with_address_already_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut r = Reactor::<Server>::new().unwrap();
    let e = StreamSocketListener::bind(&mut r, localhost(), port, on_listener).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::AddressAlreadyInUse, "{e}");
    assert_eq!(e.address(), Some(taken.local_addr().unwrap()));
    // Nothing half-registered is left: run returns at once.
    let t = Instant::now();
    run_bounded(&mut r, &mut Server::default(), LIMIT);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn unknown_service_is_an_invalid_argument() {
    let mut r = Reactor::<Server>::new().unwrap();
    for service in ["no-such-service-here", "", "70000", "-1", "http x"] {
        let e = StreamSocketListener::bind_any(&mut r, service, on_listener).unwrap_err();
        assert_eq!(
            e.status(),
            SocketErrorStatus::InvalidArgument,
            "{service:?}: {e}"
        );
    }
    run_bounded(&mut r, &mut Server::default(), LIMIT);
}

#[test]
fn bind_endpoint_localhost_by_name() {
    let mut r = Reactor::<Server>::new().unwrap();
    let host = HostName::new("localhost").unwrap();
    let l = StreamSocketListener::bind(&mut r, &host, "0", on_listener).unwrap();
    let addr = l.local_address(&r).unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let c = client(addr);
    send_and_finish(&c, b"by name");
    let mut s = Server::default();
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == 1);
    assert_eq!(read_all(&c), b"by name");
    l.close(&mut r).unwrap();
    run_bounded(&mut r, &mut s, LIMIT);
}

// ---------------------------------------------------------------- closing

#[test]
fn close_delivers_closed_once_and_the_handle_goes_stale() {
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, on_listener).unwrap();
    let addr = l.local_address(&r).unwrap();
    l.close(&mut r).unwrap();
    let mut s = Server::default();
    for _ in 0..3 {
        r.turn(&mut s, Some(10 * MS)).unwrap();
    }
    assert_eq!(s.listener_closed.len(), 1);
    assert!(s.listener_closed[0].is_ok());
    for e in [
        l.local_address(&r).unwrap_err(),
        l.close(&mut r).unwrap_err(),
    ] {
        assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
    }
    // Nobody listens there any more.
    let e = TcpStream::connect_timeout(&addr, LIMIT).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    r.turn(&mut s, Some(10 * MS)).unwrap();
    assert_eq!(s.listener_closed.len(), 1);
    assert!(s.conns.is_empty());
}

#[test]
fn run_returns_after_a_close_made_outside_any_handler() {
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, on_listener).unwrap();
    l.close(&mut r).unwrap();
    let mut s = Server::default();
    run_bounded(&mut r, &mut s, Duration::from_secs(3));
    assert_eq!(s.listener_closed.len(), 1);
}

#[test]
fn close_inside_connection_received_stops_accepting() {
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, on_listener).unwrap();
    let addr = l.local_address(&r).unwrap();
    let clients: Vec<_> = (0..5).map(|_| client(addr)).collect();
    let mut s = Server {
        close_after: Some(1),
        ..Server::default()
    };
    run_until(&mut r, &mut s, LIMIT, |s| !s.listener_closed.is_empty());
    assert_eq!(s.conns.len(), 1, "connections delivered after close");
    assert_eq!(s.listener_closed.len(), 1);
    drop(clients);
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == 1);
    run_bounded(&mut r, &mut s, LIMIT);
}

// ---------------------------------------------------------------- budget

#[test]
fn accept_budget_is_per_turn_and_the_listener_is_revisited() {
    const CLIENTS: usize = 50;
    let mut r = Reactor::<Server>::builder()
        .accept_budget(4)
        .build()
        .unwrap();
    let l = StreamSocketListener::bind_with(
        &mut r,
        localhost(),
        0,
        &StreamSocketListenerControl::new().backlog(128),
        on_listener,
    )
    .unwrap();
    let addr = l.local_address(&r).unwrap();
    // All connected (in the backlog) before the reactor looks: one kernel event.
    let clients: Vec<_> = (0..CLIENTS).map(|_| client(addr)).collect();
    for c in &clients {
        send_and_finish(c, b"b");
    }
    let mut s = Server {
        close_after: Some(CLIENTS),
        ..Server::default()
    };
    run_until(&mut r, &mut s, LIMIT, |s| s.sockets_closed == CLIENTS);
    assert_eq!(r.stats().accepted, CLIENTS as u64);
    let max = s.accepts_per_turn.values().max().copied().unwrap();
    assert!(
        max <= 4,
        "{max} accepts in one turn: {:?}",
        s.accepts_per_turn
    );
    for c in &clients {
        assert_eq!(read_all(c), b"b");
    }
    run_bounded(&mut r, &mut s, LIMIT);
    assert_eq!(s.listener_closed.len(), 1);
}

// ---------------------------------------------------------------- fd exhaustion

/// The child of `accept_survives_fd_exhaustion`, run with `ulimit -n 64`.
#[test]
fn emfile_child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("emfile") {
        return;
    }
    use std::os::unix::fs::FileExt;

    struct Child {
        files: Vec<std::fs::File>,
        stat: std::fs::File,
        watch: Option<sockloop::TimerId>,
        watchdog: Option<sockloop::TimerId>,
        listener: Option<StreamSocketListener>,
        /// Turns and CPU ticks while out of descriptors.
        measured: Option<(u64, u32)>,
        echoed: Vec<u8>,
        done: bool,
    }

    /// The process's CPU ticks, re-read through a file opened before the
    /// descriptors ran out.
    fn cpu_ticks(stat: &std::fs::File) -> u32 {
        let mut buf = [0u8; 1024];
        let n = stat.read_at(&mut buf, 0).expect("read /proc/self/stat");
        util::harness::cpu_ticks_of(&String::from_utf8_lossy(&buf[..n]))
    }

    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    let mut r = Reactor::<Child>::new().unwrap();
    let listener = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, |r, c, l, ev| {
        if let ListenerEvent::ConnectionReceived(conn) = ev {
            l.close(r).unwrap();
            conn.socket
                .set_handler(r, |r, c: &mut Child, socket, ev| match ev {
                    StreamEvent::Received(mut input) => {
                        c.echoed.extend_from_slice(input.bytes());
                        socket.write(r, input.bytes()).unwrap();
                        input.consume_all();
                    }
                    StreamEvent::ReadClosed => socket.close(r).unwrap(),
                    StreamEvent::Closed(result) => {
                        result.unwrap();
                        c.done = true;
                        if let Some(w) = c.watchdog.take() {
                            r.cancel_timer(w).unwrap();
                        }
                    }
                    _ => {}
                })
                .unwrap();
            let _ = c;
        }
    })
    .unwrap();
    let port = listener.local_address(&r).unwrap().port();

    // Use up every descriptor.
    let mut files = Vec::new();
    let err = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(24), "expected EMFILE: {err}");
    assert!(!files.is_empty());
    println!("exhausted after {} more descriptors", files.len());
    println!("PORT {port}");

    let watch = r.set_timer(10 * MS, |r, c: &mut Child, id| {
        if r.stats().accept_fd_exhausted == 0 {
            return r.reset_timer(id, 10 * MS).unwrap();
        }
        // Out of descriptors with a connection pending: watch the loop for 500 ms.
        c.watch = None;
        let (turns, ticks) = (r.stats().turns, cpu_ticks(&c.stat));
        r.set_timer(500 * MS, move |r, c: &mut Child, _| {
            c.measured = Some((r.stats().turns - turns, cpu_ticks(&c.stat) - ticks));
            // Give some descriptors back: the retry timer accepts.
            c.files.truncate(c.files.len() - 8);
        });
    });
    let watchdog = r.set_timer(Duration::from_secs(20), |_, _, _| {
        panic!("the child did not finish in time")
    });
    let mut c = Child {
        files,
        stat,
        watch: Some(watch),
        watchdog: Some(watchdog),
        listener: Some(listener),
        measured: None,
        echoed: Vec::new(),
        done: false,
    };
    r.run(&mut c).unwrap();
    assert!(c.done);
    assert!(c.watch.is_none());
    let _ = c.listener.take();
    let (turns, ticks) = c.measured.expect("measured while exhausted");
    let stats = r.stats();
    println!("while exhausted: {turns} turns, {ticks} CPU ticks; {stats:?}");
    assert!(
        turns < 50,
        "{turns} turns in 500 ms without descriptors: busy loop"
    );
    assert!(
        ticks < 25,
        "{ticks} CPU ticks in 500 ms without descriptors"
    );
    assert!(stats.accept_fd_exhausted >= 1);
    assert_eq!(stats.accepted, 1);
    assert_eq!(c.echoed, b"ping");
    println!("DONE");
}

#[test]
fn accept_survives_fd_exhaustion() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(&exe)
        .args(exact_test_args("emfile_child"))
        .env(CHILD_ENV, "emfile")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard::new(child);
    let port: u16 = child.expect_line("PORT ", LIMIT).parse().unwrap();
    let echoed = exchange(SocketAddr::from(([127, 0, 0, 1], port)), b"ping");
    let (status, stderr) = child.wait(Duration::from_secs(30));
    assert!(status.success(), "child failed ({status}):\n{stderr}");
    assert_eq!(echoed.unwrap(), b"ping");
}

// ---------------------------------------------------------------- LISTEN_FDS

#[test]
fn from_listen_fds_without_the_variables_is_empty() {
    if std::env::var_os("LISTEN_FDS").is_some() {
        println!("skipping: this process was given LISTEN_FDS");
        return;
    }
    let mut r = Reactor::<Server>::new().unwrap();
    let got = StreamSocketListener::from_listen_fds(&mut r, on_listener).unwrap();
    assert!(got.is_empty());
    run_bounded(&mut r, &mut Server::default(), LIMIT);
}

/// The child of `from_listen_fds_adopts_an_inherited_listener`, exec'd by python
/// with a listening socket on fd 3.
#[test]
fn listen_fds_child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("listen_fds") {
        return;
    }
    let mut r = Reactor::<Server>::new().unwrap();
    let listeners = StreamSocketListener::from_listen_fds(&mut r, on_listener).unwrap();
    assert_eq!(listeners.len(), 1);
    let addr = listeners[0].local_address(&r).unwrap();
    println!("ADOPTED {addr}");
    // The descriptors belong to the first caller only.
    let again = StreamSocketListener::from_listen_fds(&mut r, on_listener).unwrap();
    assert!(again.is_empty(), "fd 3 adopted twice");
    let mut s = Server {
        close_after: Some(1),
        ..Server::default()
    };
    run_bounded(&mut r, &mut s, Duration::from_secs(20));
    assert_eq!(s.received, b"inherited");
    assert_eq!(s.listener_closed.len(), 1);
    println!("DONE");
}

#[test]
fn from_listen_fds_adopts_an_inherited_listener() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    const SCRIPT: &str = r#"
import os, socket, sys
exe, args = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
port = s.getsockname()[1]
fd = s.detach()
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
print("PORT", port, flush=True)
os.execve(exe, [exe] + args, env)
"#;
    let exe = std::env::current_exe().unwrap();
    let spawned = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&exe)
        .args(exact_test_args("listen_fds_child"))
        .env(CHILD_ENV, "listen_fds")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("skipping: python3 is not installed");
            return;
        }
        Err(e) => panic!("spawn python3: {e}"),
    };
    let mut child = ChildGuard::new(child);
    let port: u16 = child.expect_line("PORT ", LIMIT).parse().unwrap();
    let adopted = child.expect_line("ADOPTED ", LIMIT);
    assert_eq!(adopted, format!("127.0.0.1:{port}"));
    let echoed = exchange(SocketAddr::from(([127, 0, 0, 1], port)), b"inherited");
    let (status, stderr) = child.wait(Duration::from_secs(30));
    assert!(status.success(), "child failed ({status}):\n{stderr}");
    assert_eq!(echoed.unwrap(), b"inherited");
}

#[test]
fn from_std_adopts_a_blocking_listener() {
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let mut r = Reactor::<Server>::new().unwrap();
    let l = StreamSocketListener::from_std(&mut r, std_listener, on_listener).unwrap();
    assert_eq!(l.local_address(&r).unwrap(), addr);
    let c = client(addr);
    send_and_finish(&c, b"adopted");
    let mut s = Server {
        close_after: Some(1),
        ..Server::default()
    };
    run_bounded(&mut r, &mut s, LIMIT);
    assert_eq!(read_all(&c), b"adopted");
    assert_eq!(s.sockets_closed, 1);
    assert_eq!(s.listener_closed.len(), 1);
}
