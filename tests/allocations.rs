//! Events that are frequent under load must not touch the heap: a write refused by
//! the write limit (backpressure is an ordinary event), and closing a socket whose
//! queue is empty. Counted with a per-thread counting allocator, so tests running in
//! parallel do not disturb each other's counts.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::time::Duration;

use sockloop::{Reactor, SocketErrorStatus, StreamEvent, StreamSocket};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated by this thread and not freed (frees of another thread's
    /// blocks make it wrap; only differences are used).
    static LIVE: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the slot may be gone while the thread is being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn live(add: usize, sub: usize) {
    let _ = LIVE.try_with(|c| c.set(c.get().wrapping_add(add as u64).wrapping_sub(sub as u64)));
}

// SAFETY: every method forwards to `System` with the arguments it was given, so the
// `GlobalAlloc` contract is System's; the counter is a const-initialised thread-local
// `Cell` (no allocation, no destructor), so counting cannot re-enter the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        live(layout.size(), 0);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        live(layout.size(), 0);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(0, layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        live(new_size, layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    (ALLOCATIONS.with(Cell::get) - before, r)
}

#[derive(Default)]
struct Seen {
    closed: u32,
}

fn counting_handler(
) -> impl FnMut(&mut Reactor<Seen>, &mut Seen, StreamSocket, StreamEvent<'_>) + 'static {
    |_, seen, _, event| {
        if let StreamEvent::Closed(result) = event {
            assert!(result.is_ok(), "{result:?}");
            seen.closed += 1;
        }
    }
}

#[test]
fn a_refused_write_does_not_allocate() {
    const LIMIT: usize = 64 * 1024;
    let mut reactor = Reactor::<Seen>::builder()
        .watermarks(1024, 32 * 1024, LIMIT)
        .build()
        .unwrap();
    let (ours, _peer) = util::loopback_pair();
    let socket = StreamSocket::from_std(&mut reactor, ours, counting_handler()).unwrap();
    let chunk = vec![7u8; 16 * 1024];
    // The peer reads nothing: fill the kernel's buffers, then the queue up to its limit.
    let mut written = 0usize;
    let full = loop {
        match socket.write(&mut reactor, &chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written < 256 << 20, "the write limit never refused a write");
    };
    assert_eq!(
        full.status(),
        SocketErrorStatus::NoBufferSpaceAvailable,
        "{full}"
    );

    let (n, refused) = allocations_in(|| socket.write(&mut reactor, &chunk));
    let refused = refused.unwrap_err();
    assert_eq!(refused.status(), SocketErrorStatus::NoBufferSpaceAvailable);
    assert_eq!(n, 0, "a refused write allocated {n} times");
    // The error still says what happened, in numbers.
    assert!(
        refused.to_string().contains("wait for Drained"),
        "{refused}"
    );

    let never = vec![0u8; LIMIT + 1];
    let (n, too_long) = allocations_in(|| socket.write(&mut reactor, &never));
    let too_long = too_long.unwrap_err();
    assert_eq!(too_long.status(), SocketErrorStatus::MessageTooLong);
    assert_eq!(n, 0, "a write over the limit allocated {n} times");
    assert!(
        too_long.to_string().contains("split the write"),
        "{too_long}"
    );
}

#[test]
fn closing_an_idle_socket_does_not_allocate() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let mut seen = Seen::default();
    // One close first, so the registry's pages and the timer heap exist.
    let mut peers = Vec::new();
    for round in 0..2 {
        let (ours, mut peer) = util::loopback_pair();
        let socket = StreamSocket::from_std(&mut reactor, ours, counting_handler()).unwrap();
        util::run_for(&mut reactor, &mut seen, Duration::from_millis(5));
        let (n, closing) = allocations_in(|| {
            let r = socket.close(&mut reactor);
            let closed = seen.closed;
            while seen.closed == closed {
                reactor
                    .turn(&mut seen, Some(Duration::from_millis(100)))
                    .expect("turn");
            }
            r
        });
        closing.unwrap();
        // The peer sees the FIN: the close was graceful.
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).expect("peer read");
        assert!(rest.is_empty());
        if round == 1 {
            assert_eq!(n, 0, "closing an idle socket allocated {n} times");
        }
        peers.push(peer);
    }
    assert_eq!(seen.closed, 2);
}

#[test]
fn pushing_a_timer_back_does_not_allocate() {
    // The idle-timeout pattern: a timer reset to a later deadline on every message.
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let id = reactor.set_timer(Duration::from_secs(60), |_, _, _| {});
    let (n, ()) = allocations_in(|| {
        for i in 0..10_000u64 {
            reactor
                .reset_timer(id, Duration::from_secs(60) + Duration::from_micros(i))
                .unwrap();
        }
    });
    assert_eq!(n, 0, "10,000 resets allocated {n} times");
    reactor.cancel_timer(id).unwrap();
}

/// Idle, read and write timeouts cost nothing per message: an echo on a socket with
/// all three set allocates nothing once warm.
#[test]
fn timeouts_do_not_allocate_per_message() {
    use std::io::Write;
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (ours, mut peer) = util::loopback_pair();
    let socket = StreamSocket::from_std(&mut reactor, ours, |r, _: &mut Seen, socket, event| {
        if let StreamEvent::Received(mut input) = event {
            socket.write(r, input.bytes()).unwrap();
            input.consume_all();
        }
    })
    .unwrap();
    for set in [
        StreamSocket::set_idle_timeout::<Seen>,
        StreamSocket::set_read_timeout::<Seen>,
        StreamSocket::set_write_timeout::<Seen>,
    ] {
        set(socket, &mut reactor, Some(Duration::from_secs(60))).unwrap();
    }
    let mut seen = Seen::default();
    let mut round_trips = |reactor: &mut Reactor<Seen>, n: usize| {
        let mut buf = [0u8; 64];
        for i in 0..n {
            buf[0] = i as u8;
            peer.write_all(&buf).unwrap();
            let mut got = 0;
            while got < buf.len() {
                reactor
                    .turn(&mut seen, Some(Duration::from_millis(100)))
                    .expect("turn");
                let mut echo = [0u8; 64];
                peer.set_nonblocking(true).unwrap();
                match peer.read(&mut echo) {
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("peer read: {e}"),
                }
                peer.set_nonblocking(false).unwrap();
            }
        }
    };
    round_trips(&mut reactor, 100);
    let (n, ()) = allocations_in(|| round_trips(&mut reactor, 1000));
    assert_eq!(n, 0, "1,000 round trips with timeouts allocated {n} times");
}

/// Both ends of a TLS transfer in one reactor: bytes sent and bytes the sink received.
#[derive(Default)]
struct TlsFlow {
    connected: bool,
    received: usize,
}

/// TLS records are encrypted straight into the write queue's chunks and decrypted in
/// the reactor's read buffer: nothing of ours is allocated per record. rustls 0.23
/// itself allocates once per record in each direction (the sender's record before it
/// is copied out, the receiver's plaintext before it is copied out): with both ends
/// in this process, two per record, and not one more.
#[test]
fn tls_allocations_per_record_are_bounded() {
    use sockloop::{
        ProtectionLevel, StreamSocketControl, StreamSocketListenerControl, TlsClientOptions,
        TlsServerConfig,
    };
    let cert = rcgen::generate_simple_self_signed(["127.0.0.1".to_string()]).unwrap();
    let server = TlsServerConfig::from_pem(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let client = TlsClientOptions::new()
        .root_certificates_pem(cert.cert.pem().as_bytes())
        .unwrap();
    let mut reactor = Reactor::<TlsFlow>::new().unwrap();
    let (_listener, addr) = util::serve(
        &mut reactor,
        &StreamSocketListenerControl::new().tls(server),
        |_, flow: &mut TlsFlow, _, event| {
            if let StreamEvent::Received(mut input) = event {
                flow.received += input.len();
                input.consume_all();
            }
        },
    );
    let control = StreamSocketControl::new()
        .protection_level(ProtectionLevel::Tls13)
        .tls(client);
    let socket = StreamSocket::connect_with(
        &mut reactor,
        "127.0.0.1",
        addr.port(),
        &control,
        |_, flow: &mut TlsFlow, _, event| {
            if let StreamEvent::Connected = event {
                flow.connected = true;
            }
        },
    )
    .unwrap();
    let mut flow = TlsFlow::default();
    util::run_until(&mut reactor, &mut flow, Duration::from_secs(10), |f| {
        f.connected
    });
    const RECORD: usize = 16 * 1024;
    let data = vec![7u8; RECORD];
    let mut sent = 0;
    let mut send = |reactor: &mut Reactor<TlsFlow>, flow: &mut TlsFlow, n: usize| {
        for _ in 0..n {
            socket.write(reactor, &data).unwrap();
            sent += RECORD;
            util::run_until(reactor, flow, Duration::from_secs(10), |f| {
                f.received == sent
            });
        }
    };
    send(&mut reactor, &mut flow, 50);
    const N: u64 = 200;
    let (allocations, ()) = allocations_in(|| send(&mut reactor, &mut flow, N as usize));
    let per_record = allocations as f64 / N as f64;
    println!("TLS 1.3, 16 KiB writes: {per_record:.2} allocations per record (both ends)");
    assert!(per_record <= 2.0, "{per_record} allocations per record");
}

/// Connections of the idle-memory measurement, each end of each pair in one reactor.
#[derive(Default)]
struct Idle {
    connected: usize,
    /// Bytes received, by the servers' and the clients' handlers together.
    received: usize,
}

const IDLE_PAIRS: usize = 16;
const IDLE_MESSAGE: usize = 16 * 1024;

/// Heap bytes held per end by `IDLE_PAIRS` connections that each carried a 16 KiB
/// message both ways and are now idle, over what the reactor held before them (one
/// connection made and closed first, so that the write pool, the read buffer and the
/// session caches already exist).
fn idle_heap_per_end(tls: bool) -> f64 {
    use sockloop::{
        ProtectionLevel, StreamSocketControl, StreamSocketListenerControl, TlsClientOptions,
        TlsServerConfig,
    };
    let cert = rcgen::generate_simple_self_signed(["127.0.0.1".to_string()]).unwrap();
    let mut listener_control = StreamSocketListenerControl::new();
    let mut control = StreamSocketControl::new();
    if tls {
        let server = TlsServerConfig::from_pem(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let client = TlsClientOptions::new()
            .root_certificates_pem(cert.cert.pem().as_bytes())
            .unwrap();
        listener_control = listener_control.tls(server);
        control = control.protection_level(ProtectionLevel::Tls13).tls(client);
    }
    let mut reactor = Reactor::<Idle>::new().unwrap();
    // The server answers each message with one of the same size.
    let (_listener, addr) = util::serve(
        &mut reactor,
        &listener_control,
        |reactor, idle: &mut Idle, socket, event| {
            if let StreamEvent::Received(mut input) = event {
                let n = input.len();
                idle.received += n;
                input.consume_all();
                socket.write(reactor, &vec![1u8; n]).unwrap();
            }
        },
    );
    let mut idle = Idle::default();
    let open = |reactor: &mut Reactor<Idle>, idle: &mut Idle| {
        let socket = StreamSocket::connect_with(
            reactor,
            "127.0.0.1",
            addr.port(),
            &control,
            |_, idle: &mut Idle, _, event| match event {
                StreamEvent::Connected => idle.connected += 1,
                StreamEvent::Received(mut input) => {
                    idle.received += input.len();
                    input.consume_all();
                }
                _ => {}
            },
        )
        .unwrap();
        let (connected, received) = (idle.connected, idle.received);
        util::run_until(reactor, idle, Duration::from_secs(20), |i| {
            i.connected > connected
        });
        socket.write(reactor, &[2u8; IDLE_MESSAGE]).unwrap();
        util::run_until(reactor, idle, Duration::from_secs(20), |i| {
            i.received == received + 2 * IDLE_MESSAGE
        });
        socket
    };
    let first = open(&mut reactor, &mut idle);
    first.close(&mut reactor).unwrap();
    util::run_for(&mut reactor, &mut idle, Duration::from_millis(50));
    let before = LIVE.with(Cell::get);
    let sockets: Vec<StreamSocket> = (0..IDLE_PAIRS)
        .map(|_| open(&mut reactor, &mut idle))
        .collect();
    util::run_for(&mut reactor, &mut idle, Duration::from_millis(50));
    let held = LIVE.with(Cell::get).wrapping_sub(before) as i64;
    drop(sockets);
    held as f64 / (2 * IDLE_PAIRS) as f64
}

/// An idle TLS connection holds no buffer of its own: what it holds over an idle plain
/// connection is rustls' session state (keys, the peer's certificate, the connection
/// object), which this bounds and prints.
#[test]
fn an_idle_tls_connection_holds_no_buffers() {
    let plain = idle_heap_per_end(false);
    let tls = idle_heap_per_end(true);
    println!(
        "heap per idle end: plain {plain:.0} B, TLS 1.3 {tls:.0} B (TLS adds {:.0} B)",
        tls - plain
    );
    assert!(
        tls - plain <= 8192.0,
        "{tls} B per idle TLS end, {plain} B plain"
    );
}
