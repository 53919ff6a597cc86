//! Connection limits on listeners (`StreamSocketListenerControl::max_connections`):
//! at the limit a listener pauses (out of the poller until a connection closes) or
//! rejects (accepts and resets at once, counted); either way it does not spin, and it
//! accepts again once connections close.

mod util;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sockloop::{
    ListenerEvent, OverLimit, Reactor, StreamEvent, StreamSocket, StreamSocketListener,
    StreamSocketListenerControl,
};
use util::harness::thread_cpu_time;
use util::{run_for, run_until};

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Server {
    accepted: Vec<StreamSocket>,
    closed: usize,
}

fn listen(
    reactor: &mut Reactor<Server>,
    control: &StreamSocketListenerControl,
) -> (StreamSocketListener, SocketAddr) {
    let listener = StreamSocketListener::bind_with(
        reactor,
        "127.0.0.1",
        0,
        control,
        |reactor, server: &mut Server, _, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                server.accepted.push(conn.socket);
                conn.socket
                    .set_handler(reactor, |_, server: &mut Server, _, event| {
                        if let StreamEvent::Closed(_) = event {
                            server.closed += 1;
                        }
                    })
                    .unwrap();
            }
        },
    )
    .unwrap();
    let addr = listener.local_address(reactor).unwrap();
    (listener, addr)
}

fn clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| util::with_timeouts(TcpStream::connect(addr).unwrap()))
        .collect()
}

/// Turns the reactor for `span` and returns the CPU time this thread used meanwhile.
fn cpu_over(reactor: &mut Reactor<Server>, server: &mut Server, span: Duration) -> Duration {
    let before = thread_cpu_time();
    run_for(reactor, server, span);
    thread_cpu_time() - before
}

#[test]
fn at_the_limit_a_pausing_listener_waits_without_spinning_and_resumes_on_close() {
    let mut reactor = Reactor::<Server>::new().unwrap();
    let control = StreamSocketListenerControl::new().max_connections(Some(3));
    assert_eq!(control.get_over_limit(), OverLimit::Pause);
    let (listener, addr) = listen(&mut reactor, &control);
    let mut server = Server::default();
    let _clients = clients(addr, 6);
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 3);

    // Three more wait in the backlog; a second of turning accepts none of them and
    // costs (almost) no CPU: the listener is out of the poller.
    let cpu = cpu_over(&mut reactor, &mut server, Duration::from_secs(1));
    assert_eq!(server.accepted.len(), 3);
    assert_eq!(listener.live_connections(&reactor).unwrap(), Some(3));
    assert!(
        cpu < Duration::from_millis(300),
        "{cpu:?} of CPU in 1 s while paused"
    );

    // Two close: two of the waiting ones are accepted, the third still waits.
    for socket in [server.accepted[0], server.accepted[1]] {
        socket.close(&mut reactor).unwrap();
    }
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 5);
    run_for(&mut reactor, &mut server, Duration::from_millis(200));
    assert_eq!(server.accepted.len(), 5);
    assert_eq!(listener.live_connections(&reactor).unwrap(), Some(3));

    // One aborted: the last is accepted.
    server.accepted[2].abort(&mut reactor).unwrap();
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 6);
    assert_eq!(listener.live_connections(&reactor).unwrap(), Some(3));
    assert_eq!(listener.rejected_connections(&reactor).unwrap(), 0);
}

#[test]
fn a_connection_closed_by_its_peer_frees_its_place() {
    let mut reactor = Reactor::<Server>::new().unwrap();
    let control = StreamSocketListenerControl::new().max_connections(Some(1));
    let (listener, addr) = listen(&mut reactor, &control);
    let mut server = Server::default();
    let mut clients = clients(addr, 2);
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 1);
    run_for(&mut reactor, &mut server, Duration::from_millis(200));
    assert_eq!(server.accepted.len(), 1);
    // The first client goes (reset): the server's socket is Closed, the second is
    // accepted.
    let first = clients.remove(0);
    socket2::SockRef::from(&first)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(first);
    run_until(&mut reactor, &mut server, LIMIT, |s| {
        s.accepted.len() == 2 && s.closed == 1
    });
    assert_eq!(listener.live_connections(&reactor).unwrap(), Some(1));
}

#[test]
fn at_the_limit_a_rejecting_listener_resets_new_connections_and_counts_them() {
    let mut reactor = Reactor::<Server>::new().unwrap();
    let control = StreamSocketListenerControl::new()
        .max_connections(Some(2))
        .over_limit(OverLimit::Reject);
    let (listener, addr) = listen(&mut reactor, &control);
    let mut server = Server::default();
    let kept = clients(addr, 2);
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 2);
    let refused = clients(addr, 5);
    let deadline = Instant::now() + LIMIT;
    while listener.rejected_connections(&reactor).unwrap() < 5 {
        assert!(Instant::now() < deadline, "not all rejected");
        run_for(&mut reactor, &mut server, Duration::from_millis(10));
    }
    assert_eq!(
        server.accepted.len(),
        2,
        "the handler saw a rejected connection"
    );
    for mut c in refused {
        let mut buf = [0u8; 1];
        let err = c
            .read(&mut buf)
            .expect_err("a rejected client reads a reset");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    }
    // Nothing more to do: no spin.
    let cpu = cpu_over(&mut reactor, &mut server, Duration::from_secs(1));
    assert!(cpu < Duration::from_millis(300), "{cpu:?} of CPU in 1 s");

    // One closes: the next client is accepted.
    server.accepted[0].close(&mut reactor).unwrap();
    run_until(&mut reactor, &mut server, LIMIT, |s| s.closed == 1);
    let _next = clients(addr, 1);
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 3);
    assert_eq!(listener.rejected_connections(&reactor).unwrap(), 5);
    assert_eq!(listener.live_connections(&reactor).unwrap(), Some(2));
    drop(kept);
}

#[test]
fn a_socket_taken_out_with_into_std_frees_its_place() {
    let mut reactor = Reactor::<Server>::new().unwrap();
    let control = StreamSocketListenerControl::new().max_connections(Some(1));
    let (listener, addr) = listen(&mut reactor, &control);
    let mut server = Server::default();
    let _clients = clients(addr, 2);
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 1);
    let taken = server.accepted[0].into_std(&mut reactor).unwrap();
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 2);
    assert_eq!(listener.live_connections(&reactor).unwrap(), Some(1));
    drop(taken);
}

#[test]
fn without_a_limit_nothing_is_counted() {
    let mut reactor = Reactor::<Server>::new().unwrap();
    let (listener, addr) = listen(&mut reactor, &StreamSocketListenerControl::new());
    let mut server = Server::default();
    let _clients = clients(addr, 3);
    run_until(&mut reactor, &mut server, LIMIT, |s| s.accepted.len() == 3);
    assert_eq!(listener.live_connections(&reactor).unwrap(), None);
}
