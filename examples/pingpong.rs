//! Measures what one echoed message costs a sockloop server: heap allocations (with a
//! counting global allocator) and, run under `strace -c`, system calls.
//!
//! The server runs on the main thread; the client is a plain blocking `std::net`
//! client on another thread, so `strace -c` (which follows only the main thread
//! unless given `-f`) counts the server's calls alone.
//!
//! ```text
//! cargo run --release --example pingpong -- 100000 64
//! strace -c ./target/release/examples/pingpong 100000 64
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sockloop::{ListenerEvent, Reactor, StreamEvent, StreamSocket, StreamSocketListener};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Round trips before measuring starts.
const WARM_UP: u64 = 1000;

struct Server {
    echoed: u64,
    total: u64,
    allocations_at_warm_up: u64,
    allocations_at_end: u64,
}

/// The server's handler: echo, and note the allocation count at the marks.
fn echo(
    reactor: &mut Reactor<Server>,
    server: &mut Server,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(mut input) => {
            if socket.write(reactor, input.bytes()).is_err() {
                return;
            }
            input.consume_all();
            server.echoed += 1;
            if server.echoed == WARM_UP {
                server.allocations_at_warm_up = ALLOCATIONS.load(Ordering::Relaxed);
            }
            if server.echoed == server.total {
                server.allocations_at_end = ALLOCATIONS.load(Ordering::Relaxed);
            }
        }
        StreamEvent::ReadClosed => {
            let _ = socket.close(reactor);
        }
        _ => {}
    }
}

fn main() -> Result<(), sockloop::Error> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let size: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let total = total.max(WARM_UP + 1);

    let mut reactor = Reactor::<Server>::new()?;
    let listener = StreamSocketListener::bind(
        &mut reactor,
        "127.0.0.1",
        0,
        |reactor, _, listener, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                let _ = listener.close(reactor);
                let _ = conn.socket.set_handler(reactor, echo);
            }
        },
    )?;
    let addr = listener.local_address(&reactor)?;

    let client = std::thread::spawn(move || -> std::io::Result<f64> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let message = vec![0x5a; size];
        let mut reply = vec![0; size];
        let start = Instant::now();
        for _ in 0..total {
            stream.write_all(&message)?;
            stream.read_exact(&mut reply)?;
        }
        Ok(start.elapsed().as_secs_f64())
    });

    let mut server = Server {
        echoed: 0,
        total,
        allocations_at_warm_up: 0,
        allocations_at_end: 0,
    };
    reactor.run(&mut server)?;
    let secs = client
        .join()
        .expect("client thread")
        .map_err(|e| sockloop::Error::from_io("client", e))?;
    let measured = total - WARM_UP;
    let allocations = server.allocations_at_end - server.allocations_at_warm_up;
    let stats = reactor.stats();
    println!("round trips:            {total} x {size} B");
    println!("round trips per second: {:.0}", total as f64 / secs);
    println!("allocations in steady state: {allocations} over {measured} echoes");
    println!(
        "reactor turns per echo: {:.3}",
        stats.turns as f64 / total as f64
    );
    if allocations != 0 {
        std::process::exit(1);
    }
    Ok(())
}
