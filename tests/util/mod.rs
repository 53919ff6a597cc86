//! Helpers of `tests/stream.rs`: bounded loops, loopback peers, a listener that never
//! answers, a seeded PRNG and a streaming checksum.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod harness;
pub mod tls;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use sockloop::{
    ListenerEvent, Reactor, SocketErrorStatus, StreamEvent, StreamSocket, StreamSocketListener,
    StreamSocketListenerControl,
};

/// The IPv4 loopback address with port 0.
pub const LOCAL_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Timeouts set on blocking `std` peers, so a helper thread never hangs a test.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(20);

/// Turns the reactor until `done(state)` holds; panics after `limit`.
#[track_caller]
pub fn run_until<S: 'static>(
    reactor: &mut Reactor<S>,
    state: &mut S,
    limit: Duration,
    mut done: impl FnMut(&S) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(state) {
        let now = Instant::now();
        assert!(
            now < deadline,
            "condition not reached within {limit:?}; {reactor:?}"
        );
        reactor
            .turn(state, Some(deadline - now))
            .expect("turn failed");
    }
}

/// `reactor.run(state)`, stopped through a `Remote` by a watchdog thread if it has
/// not returned after `limit`; then the test fails. Checks that the reactor knows when
/// nothing is left (no socket, listener, fd or user timer).
#[track_caller]
pub fn run_bounded<S: 'static>(reactor: &mut Reactor<S>, state: &mut S, limit: Duration) {
    let remote = reactor.remote();
    let (quit_tx, quit_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = thread::spawn(move || match quit_rx.recv_timeout(limit) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            let _ = remote.stop();
            true
        }
        _ => false,
    });
    let result = reactor.run(state);
    drop(quit_tx);
    let fired = watchdog.join().expect("watchdog thread");
    result.expect("run failed");
    assert!(!fired, "run did not return within {limit:?}");
}

/// Turns the reactor for `span` whatever happens (to see that nothing more comes).
pub fn run_for<S>(reactor: &mut Reactor<S>, state: &mut S, span: Duration) {
    let deadline = Instant::now() + span;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        reactor
            .turn(state, Some(deadline - now))
            .expect("turn failed");
    }
}

/// What a stream handler saw, in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Connected,
    Received(usize),
    ReadClosed,
    Drained,
    Closed(Result<(), SocketErrorStatus>),
    Other,
}

impl Ev {
    pub fn of(event: &StreamEvent<'_>) -> Ev {
        match event {
            StreamEvent::Connected => Ev::Connected,
            StreamEvent::Received(input) => Ev::Received(input.len()),
            StreamEvent::ReadClosed => Ev::ReadClosed,
            StreamEvent::Drained => Ev::Drained,
            StreamEvent::Closed(r) => Ev::Closed(r.as_ref().map(|_| ()).map_err(|e| e.status())),
            _ => Ev::Other,
        }
    }
}

/// Checks the lifecycle rules on one socket's events: `Closed` is there exactly once,
/// and last; `Connected` at most once, first.
#[track_caller]
pub fn assert_lifecycle(events: &[Ev]) {
    let closed = events.iter().filter(|e| matches!(e, Ev::Closed(_))).count();
    assert_eq!(closed, 1, "Closed must come exactly once: {events:?}");
    assert!(
        matches!(events.last(), Some(Ev::Closed(_))),
        "Closed must be last: {events:?}"
    );
    let connected: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| **e == Ev::Connected)
        .map(|(i, _)| i)
        .collect();
    assert!(
        connected.is_empty() || connected == [0],
        "Connected must come at most once, first: {events:?}"
    );
}

/// The slot index of a handle, from its `Debug` form (`StreamSocket(3v7)`).
pub fn slot_index(socket: StreamSocket) -> u32 {
    let text = format!("{socket:?}");
    let inner = text
        .strip_prefix("StreamSocket(")
        .and_then(|s| s.split('v').next())
        .unwrap_or_else(|| panic!("unexpected Debug form {text}"));
    inner.parse().expect("slot index")
}

/// A listener on 127.0.0.1 (port chosen by the system) that gives every accepted
/// socket a clone of `handler`.
pub fn serve<S: 'static, H>(
    reactor: &mut Reactor<S>,
    control: &StreamSocketListenerControl,
    handler: H,
) -> (StreamSocketListener, SocketAddr)
where
    H: FnMut(&mut Reactor<S>, &mut S, StreamSocket, StreamEvent<'_>) + Clone + 'static,
{
    let listener = StreamSocketListener::bind_with(
        reactor,
        "127.0.0.1",
        0,
        control,
        move |reactor, _state, _listener, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                conn.socket
                    .set_handler(reactor, handler.clone())
                    .expect("set handler on an accepted socket");
            }
        },
    )
    .expect("bind listener");
    let addr = listener.local_address(reactor).expect("local address");
    (listener, addr)
}

/// A connected pair of blocking `std` sockets on 127.0.0.1, with timeouts set.
pub fn loopback_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(LOCAL_V4).expect("bind");
    let a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (b, _) = listener.accept().expect("accept");
    for s in [&a, &b] {
        s.set_read_timeout(Some(PEER_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(PEER_TIMEOUT)).expect("timeout");
    }
    (a, b)
}

/// Sets the peer timeouts on an accepted or connected `std` socket.
pub fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(PEER_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(PEER_TIMEOUT)).expect("timeout");
    s
}

/// An address nothing listens on: a listener's port, the listener closed.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind(LOCAL_V4).expect("bind");
    listener.local_addr().expect("addr")
}

/// A listener that never accepts, with its accept queue full: the kernel drops the
/// SYNs of further connections (on Linux, a full accept queue makes new SYNs be
/// ignored), so connecting to it hangs until the client gives up.
#[derive(Debug)]
pub struct Hanging {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

/// A [`Hanging`] listener on `ip` (a loopback address). Fills the queue until a
/// connection attempt does not complete within 100 ms, which proves the trick works.
pub fn hanging_listener(ip: IpAddr) -> Hanging {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = SocketAddr::new(ip, 0);
    let listener =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    listener.bind(&addr.into()).expect("bind");
    listener.listen(1).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fillers.push(s),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Hanging {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                }
            }
            Err(e) => panic!("filling the backlog of {addr}: {e}"),
        }
    }
    panic!("{addr}: the accept queue never filled, connections do not hang here");
}

/// Reads until end of file (or `limit` bytes) on a helper thread.
pub fn read_to_end_thread(mut s: TcpStream) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("peer read");
        got
    })
}

/// Writes `data` and shuts down the sending side, on a helper thread.
pub fn write_all_thread(mut s: TcpStream, data: Vec<u8>) -> thread::JoinHandle<TcpStream> {
    thread::spawn(move || {
        s.write_all(&data).expect("peer write");
        s
    })
}

/// xorshift64*: a small seeded PRNG, enough for test data and sizes.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// An order-sensitive checksum of a byte stream that does not depend on how the
/// stream is cut into pieces; works eight bytes at a time (fast enough in debug).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHash {
    h: u64,
    len: u64,
    pending: [u8; 8],
    npending: usize,
}

impl StreamHash {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.npending = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(29);
    }

    /// The checksum and the length of everything seen.
    pub fn finish(&self) -> (u64, u64) {
        let mut last = [0u8; 8];
        last[..self.npending].copy_from_slice(&self.pending[..self.npending]);
        let h = (self.h ^ u64::from_le_bytes(last)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.len;
        (h, self.len)
    }
}

/// A long pseudo-random pattern that a stream is cut from: byte `i` of the stream is
/// `pattern[i % PERIOD]`, and `PERIOD` is odd so write sizes never line up with it.
pub struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    pub const PERIOD: usize = 1_000_003;

    /// `extra` bytes past the period let any slice of up to `extra` bytes be taken
    /// without wrapping.
    pub fn new(seed: u64, extra: usize) -> Pattern {
        let mut bytes = Prng::new(seed).bytes(Self::PERIOD);
        let head = bytes[..extra].to_vec();
        bytes.extend_from_slice(&head);
        Pattern { bytes }
    }

    /// The `len` bytes of the stream from `pos` (`len` at most `extra`).
    pub fn at(&self, pos: u64, len: usize) -> &[u8] {
        let start = (pos % Self::PERIOD as u64) as usize;
        &self.bytes[start..start + len]
    }

    /// Whether `data` is the stream from `pos`; compares piece by piece.
    pub fn matches(&self, mut pos: u64, mut data: &[u8]) -> bool {
        let piece = self.bytes.len() - Self::PERIOD;
        while !data.is_empty() {
            let n = data.len().min(piece);
            if self.at(pos, n) != &data[..n] {
                return false;
            }
            pos += n as u64;
            data = &data[n..];
        }
        true
    }
}

/// Whether `events` holds a `Closed`.
pub fn closed(events: &[Ev]) -> bool {
    events.iter().any(|e| matches!(e, Ev::Closed(_)))
}

/// An example's binary, next to the test's (`target/<profile>/examples/<name>`): built
/// by `cargo test` before the tests run. `None`, with the reason printed, when it is not
/// built (`cargo test --test X` alone does not build examples).
pub fn example(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    if path.exists() {
        Some(path)
    } else {
        println!(
            "SKIP: {} is not built (cargo build --example {name})",
            path.display()
        );
        None
    }
}
