//! Name resolution that cannot be held hostage: lookups run on a bounded pool of
//! threads (4), a name that never resolves holds one place only, address literals
//! never wait for the pool, a socket closed while resolving frees its place (its answer
//! is dropped), and the connect timeout covers resolution.
//!
//! The lookup function is replaced through the test-only seam
//! `Reactor::set_name_lookup` (behind the `fuzzing` feature, which the tests enable):
//! names starting with `hang` block until the test releases them (or 60 s pass), every
//! other name is resolved by the system (`getaddrinfo`).

mod util;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sockloop::{
    DatagramSocket, Error, HostName, Reactor, SocketErrorStatus, StreamEvent, StreamSocket,
    StreamSocketControl,
};
use util::{run_for, run_until, Ev};

const LIMIT: Duration = Duration::from_secs(30);

/// A lookup that hangs for `hang*` names until released, and counts its calls.
#[derive(Clone, Default)]
struct Hang {
    gate: Arc<(Mutex<bool>, Condvar)>,
    started: Arc<AtomicUsize>,
    hanging: Arc<AtomicUsize>,
}

impl Hang {
    fn install<S: 'static>(&self, reactor: &mut Reactor<S>) {
        let me = self.clone();
        reactor.set_name_lookup(move |host: &HostName, port| me.lookup(host, port));
    }

    fn lookup(&self, host: &HostName, port: u16) -> Result<Vec<SocketAddr>, Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let name = host.canonical_name();
        if !name.starts_with("hang") {
            return (name, port)
                .to_socket_addrs()
                .map(|a| a.collect())
                .map_err(|e| Error::from_io("resolve host name", e));
        }
        self.hanging.fetch_add(1, Ordering::SeqCst);
        let (lock, cond) = &*self.gate;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut released = lock.lock().unwrap();
        while !*released && Instant::now() < deadline {
            released = cond
                .wait_timeout(released, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        self.hanging.fetch_sub(1, Ordering::SeqCst);
        Err(
            Error::new(SocketErrorStatus::HostNotFound, "resolve host name")
                .with_detail(format!("'{name}': released by the test")),
        )
    }

    fn release(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    fn hanging(&self) -> usize {
        self.hanging.load(Ordering::SeqCst)
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        // The last test handle gone: let any thread still inside a lookup go.
        if Arc::strong_count(&self.gate) == 1 {
            self.release();
        }
    }
}

/// Each socket's events, by the index given at connect.
#[derive(Default)]
struct Seen {
    events: Vec<Vec<Ev>>,
}

fn recorder(
    i: usize,
) -> impl FnMut(&mut Reactor<Seen>, &mut Seen, StreamSocket, StreamEvent<'_>) + 'static {
    move |reactor, seen, socket, event| {
        seen.events[i].push(Ev::of(&event));
        if let StreamEvent::Connected = event {
            socket.close(reactor).unwrap();
        }
    }
}

fn connect(
    reactor: &mut Reactor<Seen>,
    seen: &mut Seen,
    host: &str,
    port: u16,
    control: &StreamSocketControl,
) -> (usize, StreamSocket) {
    let i = seen.events.len();
    seen.events.push(Vec::new());
    let socket = StreamSocket::connect_with(reactor, host, port, control, recorder(i)).unwrap();
    (i, socket)
}

/// Waits (turning the reactor) until `n` lookups hang in the hook.
#[track_caller]
fn wait_hanging(reactor: &mut Reactor<Seen>, seen: &mut Seen, hang: &Hang, n: usize) {
    let deadline = Instant::now() + LIMIT;
    while hang.hanging() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} lookups hang",
            hang.hanging()
        );
        run_for(reactor, seen, Duration::from_millis(5));
    }
}

#[test]
fn a_name_that_never_resolves_does_not_delay_localhost_or_literals() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let hang = Hang::default();
    hang.install(&mut reactor);
    let mut seen = Seen::default();
    let control = StreamSocketControl::new();
    let stuck: Vec<usize> = (0..3)
        .map(|n| {
            connect(
                &mut reactor,
                &mut seen,
                &format!("hang{n}.test"),
                port,
                &control,
            )
            .0
        })
        .collect();
    wait_hanging(&mut reactor, &mut seen, &hang, 3);

    // With three lookups stuck, a name and a literal still connect.
    let (by_name, _) = connect(&mut reactor, &mut seen, "localhost", port, &control);
    let (literal, _) = connect(&mut reactor, &mut seen, "127.0.0.1", port, &control);
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        util::closed(&s.events[by_name]) && util::closed(&s.events[literal])
    });
    for i in [by_name, literal] {
        assert_eq!(seen.events[i], [Ev::Connected, Ev::Closed(Ok(()))]);
    }
    for &i in &stuck {
        assert!(seen.events[i].is_empty(), "{:?}", seen.events[i]);
    }
    assert_eq!(hang.hanging(), 3);

    // Released, the stuck ones fail with what the lookup said.
    hang.release();
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        stuck.iter().all(|&i| util::closed(&s.events[i]))
    });
    for &i in &stuck {
        assert_eq!(
            seen.events[i],
            [Ev::Closed(Err(SocketErrorStatus::HostNotFound))]
        );
    }
    assert!(reactor.resolver_threads() <= 4);
}

#[test]
fn with_every_place_taken_names_queue_and_closing_a_stuck_socket_frees_its_place() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let hang = Hang::default();
    hang.install(&mut reactor);
    let mut seen = Seen::default();
    let control = StreamSocketControl::new();
    let stuck: Vec<(usize, StreamSocket)> = (0..5)
        .map(|n| {
            connect(
                &mut reactor,
                &mut seen,
                &format!("hang{n}.test"),
                port,
                &control,
            )
        })
        .collect();
    wait_hanging(&mut reactor, &mut seen, &hang, 4);
    let (by_name, _) = connect(&mut reactor, &mut seen, "localhost", port, &control);
    let (literal, _) = connect(&mut reactor, &mut seen, "127.0.0.1", port, &control);

    // The literal does not go through the pool; the fifth name and localhost wait in
    // the queue while four lookups hold the four places.
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        util::closed(&s.events[literal])
    });
    run_for(&mut reactor, &mut seen, Duration::from_millis(300));
    assert_eq!(seen.events[literal], [Ev::Connected, Ev::Closed(Ok(()))]);
    assert_eq!(hang.started.load(Ordering::SeqCst), 4, "lookups started");
    assert_eq!(reactor.resolver_threads(), 4);
    assert!(
        seen.events[by_name].is_empty(),
        "{:?}",
        seen.events[by_name]
    );

    // Closing two stuck sockets frees their places: the fifth name and localhost
    // start at once, though the two closed lookups are still inside the hook.
    for &(i, socket) in &stuck[..2] {
        socket.close(&mut reactor).unwrap();
        run_until(&mut reactor, &mut seen, LIMIT, |s| {
            util::closed(&s.events[i])
        });
    }
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        util::closed(&s.events[by_name])
    });
    assert_eq!(seen.events[by_name], [Ev::Connected, Ev::Closed(Ok(()))]);
    wait_hanging(&mut reactor, &mut seen, &hang, 5);
    assert_eq!(hang.started.load(Ordering::SeqCst), 6);
    assert!(reactor.resolver_threads() <= 16);

    // Released: the closed sockets hear nothing more; the others fail.
    hang.release();
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        stuck.iter().all(|&(i, _)| util::closed(&s.events[i]))
    });
    run_until(&mut reactor, &mut seen, LIMIT, |_| hang.hanging() == 0);
    run_for(&mut reactor, &mut seen, Duration::from_millis(100));
    for &(i, _) in &stuck[..2] {
        assert_eq!(seen.events[i], [Ev::Closed(Ok(()))], "socket {i}");
    }
    for &(i, _) in &stuck[2..] {
        assert_eq!(
            seen.events[i],
            [Ev::Closed(Err(SocketErrorStatus::HostNotFound))],
            "socket {i}"
        );
    }
    // The surplus threads (started for freed places) end once idle.
    let deadline = Instant::now() + LIMIT;
    while reactor.resolver_threads() > 4 {
        assert!(
            Instant::now() < deadline,
            "{} threads",
            reactor.resolver_threads()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_connect_timeout_covers_resolution_and_frees_the_place() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let hang = Hang::default();
    hang.install(&mut reactor);
    let mut seen = Seen::default();
    let short = StreamSocketControl::new().connect_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let stuck: Vec<usize> = (0..4)
        .map(|n| {
            connect(
                &mut reactor,
                &mut seen,
                &format!("hang{n}.test"),
                port,
                &short,
            )
            .0
        })
        .collect();
    let (by_name, _) = connect(
        &mut reactor,
        &mut seen,
        "localhost",
        port,
        &StreamSocketControl::new(),
    );
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        stuck.iter().all(|&i| util::closed(&s.events[i]))
    });
    assert!(started.elapsed() >= Duration::from_millis(300));
    for &i in &stuck {
        assert_eq!(
            seen.events[i],
            [Ev::Closed(Err(SocketErrorStatus::ConnectionTimedOut))]
        );
    }
    // The four places were freed by the timeouts: localhost gets one.
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        util::closed(&s.events[by_name])
    });
    assert_eq!(seen.events[by_name], [Ev::Connected, Ev::Closed(Ok(()))]);
    assert_eq!(
        hang.hanging(),
        4,
        "the timed-out lookups still hang in the hook"
    );
    hang.release();
}

#[test]
fn no_resolver_thread_runs_until_a_name_is_resolved() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let mut seen = Seen::default();
    let control = StreamSocketControl::new();
    for host in ["127.0.0.1", "::ffff:127.0.0.1"] {
        let (i, _) = connect(&mut reactor, &mut seen, host, port, &control);
        run_until(&mut reactor, &mut seen, LIMIT, |s| {
            util::closed(&s.events[i])
        });
    }
    assert_eq!(reactor.resolver_threads(), 0);
    // One name (the system's getaddrinfo): one thread.
    let (i, _) = connect(&mut reactor, &mut seen, "localhost", port, &control);
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        util::closed(&s.events[i])
    });
    assert_eq!(seen.events[i], [Ev::Connected, Ev::Closed(Ok(()))]);
    assert_eq!(reactor.resolver_threads(), 1);
}

#[test]
fn a_datagram_socket_closed_while_resolving_hears_nothing_more() {
    let mut reactor = Reactor::<Vec<String>>::new().unwrap();
    let hang = Hang::default();
    let me = hang.clone();
    reactor.set_name_lookup(move |host: &HostName, port| me.lookup(host, port));
    let mut events: Vec<String> = Vec::new();
    let socket = DatagramSocket::connect(
        &mut reactor,
        "hang.test",
        9,
        |_, events: &mut Vec<String>, _, event| events.push(format!("{event:?}")),
    )
    .unwrap();
    socket.send(&mut reactor, b"queued").unwrap();
    let deadline = Instant::now() + LIMIT;
    while hang.hanging() < 1 {
        assert!(Instant::now() < deadline);
        run_for(&mut reactor, &mut events, Duration::from_millis(5));
    }
    socket.close(&mut reactor).unwrap();
    run_for(&mut reactor, &mut events, Duration::from_millis(50));
    // Closed, with the datagram queued meanwhile reported as not sent.
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("Closed(Err"), "{events:?}");
    assert!(events[0].contains("OperationAborted"), "{events:?}");
    hang.release();
    let deadline = Instant::now() + LIMIT;
    while hang.hanging() > 0 {
        assert!(Instant::now() < deadline);
        run_for(&mut reactor, &mut events, Duration::from_millis(5));
    }
    run_for(&mut reactor, &mut events, Duration::from_millis(100));
    assert_eq!(events.len(), 1, "an event after Closed: {events:?}");
}

/// An open datagram socket's destinations given by name hold places in the pool while
/// they resolve; closing the socket frees them all, so a lookup made afterwards does not
/// wait behind names nobody wants any more.
#[test]
fn closing_a_datagram_socket_frees_the_places_of_its_named_destinations() {
    let mut reactor = Reactor::<Vec<String>>::new().unwrap();
    let hang = Hang::default();
    hang.install(&mut reactor);
    let mut events: Vec<String> = Vec::new();
    let socket = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    for i in 0..4 {
        socket
            .output_to(&mut reactor, format!("hang{i}.test").as_str(), 9)
            .unwrap();
    }
    let deadline = Instant::now() + LIMIT;
    while hang.hanging() < 4 {
        assert!(Instant::now() < deadline);
        run_for(&mut reactor, &mut events, Duration::from_millis(5));
    }
    socket.close(&mut reactor).unwrap();
    run_for(&mut reactor, &mut events, Duration::from_millis(20));
    // Every place was held by the closed socket's names: a new name resolves at once.
    let started = Instant::now();
    let other = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    let out = other.output_to(&mut reactor, "localhost", 9).unwrap();
    while out.destination(&reactor).unwrap().is_none() {
        assert!(started.elapsed() < LIMIT, "localhost never resolved");
        run_for(&mut reactor, &mut events, Duration::from_millis(5));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a lookup waited {:?} behind a closed socket's names",
        started.elapsed()
    );
    assert_eq!(
        hang.hanging(),
        4,
        "the abandoned lookups still run on their threads"
    );
    hang.release();
}
