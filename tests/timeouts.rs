//! Idle, read and write (stall) timeouts: silent, slow and non-reading peers are
//! reclaimed with `ConnectionTimedOut`, busy ones never are, and the listener goes on
//! accepting meanwhile.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sockloop::{
    Reactor, SocketErrorStatus, StreamEvent, StreamSocket, StreamSocketControl,
    StreamSocketListenerControl,
};
use util::{run_for, run_until, serve, Ev, LOCAL_V4, PEER_TIMEOUT};

const LIMIT: Duration = Duration::from_secs(30);

/// What a server saw on its accepted sockets.
#[derive(Default)]
struct Seen {
    events: Vec<Ev>,
    received: usize,
    /// The detail of each `Closed(Err)`.
    details: Vec<String>,
    closed: usize,
    closed_at: Vec<Instant>,
}

fn record(seen: &mut Seen, event: &StreamEvent<'_>) {
    seen.events.push(Ev::of(event));
    if let StreamEvent::Closed(result) = event {
        seen.closed += 1;
        seen.closed_at.push(Instant::now());
        if let Err(e) = result {
            seen.details
                .push(e.detail().map(|d| d.into_owned()).unwrap_or_default());
        }
    }
}

/// Counts and consumes what comes in.
fn sink(_r: &mut Reactor<Seen>, seen: &mut Seen, _s: StreamSocket, event: StreamEvent<'_>) {
    record(seen, &event);
    if let StreamEvent::Received(mut input) = event {
        seen.received += input.len();
        input.consume_all();
    }
}

fn accepting(control: StreamSocketControl) -> StreamSocketListenerControl {
    StreamSocketListenerControl::new().accepted(control)
}

fn timed_out(seen: &Seen) -> usize {
    seen.events
        .iter()
        .filter(|e| **e == Ev::Closed(Err(SocketErrorStatus::ConnectionTimedOut)))
        .count()
}

/// The peer's view of a reset: a read fails with `ConnectionReset` (or, if the reset
/// raced the read, end of file).
#[track_caller]
fn assert_reset(peer: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match peer.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => assert_eq!(n, 0, "the peer got bytes instead of a reset"),
    }
}

#[test]
fn idle_timeout_closes_a_silent_connection() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let control =
        accepting(StreamSocketControl::new().idle_timeout(Some(Duration::from_millis(200))));
    let (_listener, addr) = serve(&mut reactor, &control, sink);
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut peer = util::with_timeouts(TcpStream::connect(addr).unwrap());
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed == 1);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "closed early"
    );
    assert_eq!(
        seen.events,
        [Ev::Closed(Err(SocketErrorStatus::ConnectionTimedOut))]
    );
    assert!(
        seen.details[0].contains("no data was sent or received"),
        "{:?}",
        seen.details
    );
    assert_reset(&mut peer);
}

#[test]
fn read_timeout_counts_from_the_last_byte() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let timeout = Duration::from_millis(800);
    let control = accepting(StreamSocketControl::new().read_timeout(Some(timeout)));
    let (_listener, addr) = serve(&mut reactor, &control, sink);
    let mut seen = Seen::default();
    // A byte every 100 ms for 2.4 s: three times the timeout in all, never a gap of it.
    let done = Arc::new(AtomicBool::new(false));
    let last_byte = Arc::new(std::sync::Mutex::new(Instant::now()));
    let peer = {
        let (done, last_byte) = (done.clone(), last_byte.clone());
        thread::spawn(move || {
            let mut peer = util::with_timeouts(TcpStream::connect(addr).unwrap());
            for _ in 0..24 {
                peer.write_all(b"x").unwrap();
                *last_byte.lock().unwrap() = Instant::now();
                thread::sleep(Duration::from_millis(100));
            }
            done.store(true, Ordering::SeqCst);
            assert_reset(&mut peer);
        })
    };
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed == 1);
    assert!(
        done.load(Ordering::SeqCst),
        "closed while bytes kept coming"
    );
    assert_eq!(seen.received, 24);
    let quiet = seen.closed_at[0] - *last_byte.lock().unwrap();
    assert!(quiet >= timeout, "closed {quiet:?} after the last byte");
    assert_eq!(timed_out(&seen), 1);
    assert!(
        seen.details[0].contains("no data was received"),
        "{:?}",
        seen.details
    );
    peer.join().unwrap();
}

/// Slowloris: a thousand connections that send one byte and then nothing are all
/// reclaimed, and a new connection is served while they are held.
#[test]
fn slow_connections_are_reclaimed_and_new_ones_still_served() {
    const SLOW: usize = 1000;
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let control = accepting(StreamSocketControl::new().read_timeout(Some(Duration::from_secs(2))));
    // Echoes, so the fresh client can see it is served.
    let (_listener, addr) = serve(&mut reactor, &control, |r, seen, socket, event| {
        record(seen, &event);
        if let StreamEvent::Received(mut input) = event {
            seen.received += input.len();
            socket.write(r, input.bytes()).unwrap();
            input.consume_all();
        } else if let StreamEvent::ReadClosed = event {
            socket.close(r).unwrap();
        }
    });
    let mut seen = Seen::default();
    let slow = thread::spawn(move || {
        (0..SLOW)
            .map(|_| {
                let mut s = util::with_timeouts(TcpStream::connect(addr).unwrap());
                s.write_all(b"G").unwrap();
                s
            })
            .collect::<Vec<_>>()
    });
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.received >= SLOW);
    // All of them held (none has been silent for 2 s yet, unless the machine is very
    // slow): a new client is served at once.
    let fresh = thread::spawn(move || {
        let mut s = util::with_timeouts(TcpStream::connect(addr).unwrap());
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    });
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.received >= SLOW + 5);
    fresh.join().unwrap();
    let mut slow = slow.join().unwrap();
    // Every slow one is reclaimed; the fresh one closed when its client did.
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed == SLOW + 1);
    assert_eq!(timed_out(&seen), SLOW);
    for s in &mut slow {
        let mut echo = [0u8; 1];
        s.read_exact(&mut echo).unwrap();
        assert_reset(s);
    }
}

/// A peer that stops reading is reclaimed by the write timeout; one that reads slowly
/// but steadily is not, even though its transfer takes longer than the timeout.
#[test]
fn write_timeout_reclaims_a_peer_that_stopped_reading_only() {
    let timeout = Duration::from_millis(500);
    let data_len = 4 << 20;
    for reads in [false, true] {
        let mut reactor = Reactor::<Seen>::new().unwrap();
        let control = StreamSocketListenerControl::new()
            .accepted(
                StreamSocketControl::new()
                    .write_timeout(Some(timeout))
                    .outbound_buffer_size(Some(16 * 1024)),
            )
            .backlog(8);
        let len = if reads { 512 * 1024 } else { data_len };
        let (_listener, addr) = serve(&mut reactor, &control, move |r, seen, socket, event| {
            record(seen, &event);
            if let StreamEvent::Received(mut input) = event {
                input.consume_all();
                socket.write(r, &vec![7u8; len]).unwrap();
                socket.close(r).unwrap();
            }
        });
        let mut seen = Seen::default();
        let peer = thread::spawn(move || {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(16 * 1024).unwrap();
            sock.connect(&addr.into()).unwrap();
            let mut peer = util::with_timeouts(TcpStream::from(sock));
            peer.write_all(b"go").unwrap();
            if !reads {
                // Never reads; waits for the reset.
                thread::sleep(Duration::from_millis(1500));
                let mut got = 0;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match peer.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
                            break;
                        }
                    }
                }
                return got;
            }
            // 8 KiB every 20 ms: some 1.3 s for 512 KiB, progress every 20 ms.
            let mut got = 0;
            let mut buf = vec![0u8; 8 * 1024];
            loop {
                let n = peer.read(&mut buf).unwrap();
                if n == 0 {
                    return got;
                }
                got += n;
                thread::sleep(Duration::from_millis(20));
            }
        });
        run_until(&mut reactor, &mut seen, LIMIT, |s| s.closed == 1);
        let got = peer.join().unwrap();
        if reads {
            assert_eq!(
                seen.events.last(),
                Some(&Ev::Closed(Ok(()))),
                "{:?}",
                seen.details
            );
            assert_eq!(got, len);
        } else {
            assert_eq!(timed_out(&seen), 1);
            assert!(
                seen.details[0].contains("accepted none of the queued data"),
                "{:?}",
                seen.details
            );
            assert!(got < len, "the peer got everything without reading");
        }
    }
}

/// While receiving is paused the read clock stands still; it starts again on resume.
#[test]
fn paused_receive_stops_the_read_clock() {
    #[derive(Default)]
    struct St {
        seen: Seen,
        socket: Option<StreamSocket>,
    }
    let mut reactor = Reactor::<St>::new().unwrap();
    let control = StreamSocketControl::new().read_timeout(Some(Duration::from_millis(300)));
    let listener = TcpListener::bind(LOCAL_V4).unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = StreamSocket::connect_with(
        &mut reactor,
        addr.ip(),
        addr.port(),
        &control,
        |r, st: &mut St, socket, event| {
            record(&mut st.seen, &event);
            if let StreamEvent::Connected = event {
                socket.set_receive_paused(r, true).unwrap();
            }
        },
    )
    .unwrap();
    let (_peer, _) = listener.accept().unwrap();
    let mut st = St {
        socket: Some(socket),
        ..St::default()
    };
    run_until(&mut reactor, &mut st, LIMIT, |st| {
        st.seen.events.contains(&Ev::Connected)
    });
    // Paused three times the timeout: still open.
    run_for(&mut reactor, &mut st, Duration::from_millis(900));
    assert_eq!(st.seen.events, [Ev::Connected]);
    let resumed = Instant::now();
    st.socket
        .unwrap()
        .set_receive_paused(&mut reactor, false)
        .unwrap();
    run_until(&mut reactor, &mut st, LIMIT, |st| st.seen.closed == 1);
    assert!(resumed.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        st.seen.events,
        [
            Ev::Connected,
            Ev::Closed(Err(SocketErrorStatus::ConnectionTimedOut))
        ]
    );
}

/// A connecting socket's timeouts start with the connection, not before: a connect
/// that takes longer than the idle timeout is not cut short by it.
#[test]
fn idle_timeout_of_a_client_starts_when_connected() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    // The listener's accept queue is full until a helper thread accepts one: the
    // connection is established only then, 600 ms after the connect call.
    let hanging = util::hanging_listener(LOCAL_V4.ip());
    let addr: SocketAddr = hanging.addr;
    let control = StreamSocketControl::new().idle_timeout(Some(Duration::from_millis(300)));
    StreamSocket::connect_with(&mut reactor, addr.ip(), addr.port(), &control, sink).unwrap();
    let started = Instant::now();
    let mut seen = Seen::default();
    run_for(&mut reactor, &mut seen, Duration::from_millis(600));
    assert!(seen.events.is_empty(), "{:?}", seen.events);
    drop(hanging);
    // The listener is gone: the SYN retry is refused (or still pending at the connect
    // timeout). Either way the result is a connect failure, never an idle timeout.
    run_until(&mut reactor, &mut seen, Duration::from_secs(40), |s| {
        s.closed == 1
    });
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(!seen.events.contains(&Ev::Connected), "{:?}", seen.events);
    assert!(
        seen.details.iter().all(|d| !d.contains("no data")),
        "{:?}",
        seen.details
    );
}

/// Set on an open socket, and cleared again: the clock starts at the call.
#[test]
fn timeouts_set_and_cleared_on_an_open_socket() {
    #[derive(Default)]
    struct St {
        seen: Seen,
        sockets: Vec<StreamSocket>,
    }
    let mut reactor = Reactor::<St>::new().unwrap();
    let (_listener, addr) = serve(
        &mut reactor,
        &StreamSocketListenerControl::new(),
        |r, st: &mut St, socket, event| {
            record(&mut st.seen, &event);
            if let StreamEvent::Received(mut input) = event {
                let clear = input.bytes() == b"keep";
                input.consume_all();
                socket
                    .set_idle_timeout(r, Some(Duration::from_millis(200)))
                    .unwrap();
                if clear {
                    socket.set_idle_timeout(r, None).unwrap();
                }
                st.sockets.push(socket);
            }
        },
    );
    let mut st = St::default();
    let mut a = util::with_timeouts(TcpStream::connect(addr).unwrap());
    let mut b = util::with_timeouts(TcpStream::connect(addr).unwrap());
    // No timeout yet: both stay open however long they are silent.
    run_for(&mut reactor, &mut st, Duration::from_millis(400));
    assert!(st.seen.events.is_empty());
    a.write_all(b"drop").unwrap();
    b.write_all(b"keep").unwrap();
    run_until(&mut reactor, &mut st, LIMIT, |st| st.seen.closed == 1);
    run_for(&mut reactor, &mut st, Duration::from_millis(600));
    assert_eq!(st.seen.closed, 1, "{:?}", st.seen.events);
    assert_eq!(timed_out(&st.seen), 1);
    assert_reset(&mut a);
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 1];
    let e = b.read(&mut buf).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    b.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
    let sockets = st.sockets.clone();
    assert_eq!(
        sockets[1]
            .set_idle_timeout(&mut reactor, Some(Duration::from_millis(100)))
            .map_err(|e| e.status()),
        Ok(())
    );
    run_until(&mut reactor, &mut st, LIMIT, |st| st.seen.closed == 2);
    assert_eq!(timed_out(&st.seen), 2);
    // A closed socket's handle is refused.
    assert_eq!(
        sockets[0]
            .set_read_timeout(&mut reactor, Some(Duration::from_secs(1)))
            .map_err(|e| e.status()),
        Err(SocketErrorStatus::InvalidHandle)
    );
}
