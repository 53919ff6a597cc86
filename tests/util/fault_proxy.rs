//! A fault-injecting TCP proxy on loopback, for any test: it accepts connections on
//! 127.0.0.1, connects each to an upstream address and pumps bytes both ways on its own
//! threads (`std::net` only), applying [`Faults`] per direction:
//!
//! - segmentation: the stream is cut into writes of 1 to `max` bytes (seeded), with
//!   `TCP_NODELAY` set and a pause between them, so the receiver sees small reads;
//! - a stall: after `n` bytes, nothing for a while;
//! - a reset: after `n` bytes, both connections are closed with `SO_LINGER` 0 (RST);
//! - a half-close: after `n` bytes, FIN to the receiver of this direction; the rest of
//!   this direction is discarded, the other direction goes on;
//! - a truncation: after `n` bytes, the whole proxied connection is closed (FIN to both
//!   ends), the rest discarded;
//! - an injection: extra bytes inserted after the `n`th byte.
//!
//! Without faults, a FIN from one end is passed on (half-close kept), and the proxied
//! connection ends when both directions have ended. Every thread stops by itself: on
//! errors, at end of stream, when the proxy is dropped, or after [`LIFETIME`].
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::Prng;

/// How long any proxy thread lives at most, whatever happens.
pub const LIFETIME: Duration = Duration::from_secs(120);

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// The faults applied to one direction of every proxied connection.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    segment: Option<(usize, Duration)>,
    stall: Option<(u64, Duration)>,
    reset_after: Option<u64>,
    half_close_after: Option<u64>,
    truncate_after: Option<u64>,
    inject: Option<(u64, Vec<u8>)>,
    seed: u64,
}

impl Faults {
    /// Bytes passed on as they come.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Cuts the stream into writes of 1 to `max` bytes (sizes from a PRNG seeded with
    /// [`seed`](Self::seed)), sleeping `delay` between two writes.
    pub fn segments(mut self, max: usize, delay: Duration) -> Faults {
        assert!(max >= 1);
        self.segment = Some((max, delay));
        self
    }

    /// Seeds the segment sizes.
    pub fn seed(mut self, seed: u64) -> Faults {
        self.seed = seed;
        self
    }

    /// Passes nothing on for `pause` once `after` bytes have been.
    pub fn stall(mut self, after: u64, pause: Duration) -> Faults {
        self.stall = Some((after, pause));
        self
    }

    /// Resets both connections (RST) once `after` bytes have been passed on.
    pub fn reset_after(mut self, after: u64) -> Faults {
        self.reset_after = Some(after);
        self
    }

    /// Sends FIN to this direction's receiver once `after` bytes have been passed on.
    pub fn half_close_after(mut self, after: u64) -> Faults {
        self.half_close_after = Some(after);
        self
    }

    /// Closes the whole proxied connection once `after` bytes have been passed on.
    pub fn truncate_after(mut self, after: u64) -> Faults {
        self.truncate_after = Some(after);
        self
    }

    /// Inserts `bytes` once `after` bytes of the stream have been passed on.
    pub fn inject(mut self, after: u64, bytes: &[u8]) -> Faults {
        self.inject = Some((after, bytes.to_vec()));
        self
    }

    /// The first offset at which something happens, after `pos`.
    fn next_event(&self, pos: u64) -> Option<u64> {
        [
            self.stall.as_ref().map(|s| s.0),
            self.reset_after,
            self.half_close_after,
            self.truncate_after,
            self.inject.as_ref().map(|i| i.0),
        ]
        .into_iter()
        .flatten()
        .filter(|&at| at >= pos)
        .min()
    }
}

/// What the proxy saw, for assertions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicUsize,
    /// Bytes of the streams passed on (injected ones not counted), client to server.
    pub up: AtomicU64,
    /// Bytes passed on, server to client.
    pub down: AtomicU64,
    /// Resets made.
    pub resets: AtomicUsize,
}

/// A running proxy; stops (and closes every proxied connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy to `upstream`: `up` applies to what clients send, `down` to what the
    /// upstream sends back.
    pub fn start(upstream: SocketAddr, up: Faults, down: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let acceptor = {
            let (stop, stats) = (stop.clone(), stats.clone());
            thread::Builder::new()
                .name("fault-proxy".into())
                .spawn(move || accept_loop(listener, upstream, up, down, stop, stats))
                .expect("spawn proxy")
        };
        FaultProxy {
            addr,
            stop,
            stats,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    up: Faults,
    down: Faults,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    let born = Instant::now();
    let mut pumps = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && born.elapsed() < LIFETIME {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => break,
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(upstream) else {
            let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
            continue;
        };
        n += 1;
        let conn = Arc::new(Conn {
            client,
            server,
            done: AtomicBool::new(false),
        });
        for s in [&conn.client, &conn.server] {
            let _ = s.set_nonblocking(false);
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(POLL));
            let _ = s.set_write_timeout(Some(POLL));
        }
        for (dir, faults) in [(Dir::Up, &up), (Dir::Down, &down)] {
            let mut faults = faults.clone();
            faults.seed = faults.seed.wrapping_add(n * 2 + dir as u64);
            let (conn, stop, stats) = (conn.clone(), stop.clone(), stats.clone());
            pumps.push(thread::spawn(move || {
                Pump {
                    conn,
                    dir,
                    faults,
                    stop,
                    stats,
                    born,
                }
                .run()
            }));
        }
        pumps.retain(|p: &thread::JoinHandle<()>| !p.is_finished());
    }
    stop.store(true, Ordering::SeqCst);
    for p in pumps {
        let _ = p.join();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up = 0,
    Down = 1,
}

struct Conn {
    client: TcpStream,
    server: TcpStream,
    /// Set once the connection was reset or truncated: both pumps stop.
    done: AtomicBool,
}

impl Conn {
    fn reset(&self) {
        for s in [&self.client, &self.server] {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        self.done.store(true, Ordering::SeqCst);
        // Shutting down the reading side wakes the other pump; the RST goes out
        // when the last clone of the sockets is dropped (with the Conn).
        for s in [&self.client, &self.server] {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    fn close_both(&self) {
        self.done.store(true, Ordering::SeqCst);
        for s in [&self.client, &self.server] {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

struct Pump {
    conn: Arc<Conn>,
    dir: Dir,
    faults: Faults,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    born: Instant,
}

enum Next {
    Go,
    End,
}

impl Next {
    fn is_end(&self) -> bool {
        matches!(self, Next::End)
    }
}

impl Pump {
    fn ends(&self) -> (&TcpStream, &TcpStream) {
        match self.dir {
            Dir::Up => (&self.conn.client, &self.conn.server),
            Dir::Down => (&self.conn.server, &self.conn.client),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
            || self.conn.done.load(Ordering::SeqCst)
            || self.born.elapsed() >= LIFETIME
    }

    fn run(mut self) {
        let mut prng = Prng::new(self.faults.seed ^ 0x5eed);
        let mut pos = 0u64;
        let mut discarding = false;
        let mut buf = vec![0u8; 16 * 1024];
        'pump: loop {
            if self.stopped() {
                break;
            }
            // Faults due at this offset, before any byte past it.
            if !discarding && self.faults.next_event(pos) == Some(pos) {
                if self.at_offset(pos).is_end() {
                    break;
                }
                discarding = self.faults.half_close_after == Some(pos);
            }
            let n = match self.ends().0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(_) => break,
            };
            let mut data = &buf[..n];
            while !discarding && !data.is_empty() {
                // Up to the next fault offset, one segment at a time.
                let room = self.faults.next_event(pos + 1).map_or(usize::MAX, |at| {
                    usize::try_from(at - pos).unwrap_or(usize::MAX)
                });
                let mut take = data.len().min(room);
                if let Some((max, _)) = self.faults.segment {
                    take = take.min(prng.range(1, max));
                }
                if !self.write(&data[..take]) {
                    break 'pump;
                }
                pos += take as u64;
                data = &data[take..];
                if let Some((_, delay)) = self.faults.segment {
                    if !delay.is_zero() {
                        thread::sleep(delay);
                    }
                }
                if self.faults.next_event(pos) == Some(pos) {
                    if self.at_offset(pos).is_end() {
                        break 'pump;
                    }
                    discarding = self.faults.half_close_after == Some(pos);
                }
            }
        }
        // Pass the end of this direction on, unless the connection was reset or
        // truncated (then the sockets are left as the fault made them).
        if !self.conn.done.load(Ordering::SeqCst) {
            let _ = self.ends().1.shutdown(Shutdown::Write);
        }
    }

    /// Applies the faults placed exactly at `pos` (stall, inject, reset, truncate);
    /// each only once (the offset is passed once).
    fn at_offset(&mut self, pos: u64) -> Next {
        if let Some((at, pause)) = self.faults.stall {
            if at == pos {
                self.faults.stall = None;
                let until = Instant::now() + pause;
                while Instant::now() < until && !self.stopped() {
                    thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
                }
            }
        }
        if let Some((at, _)) = &self.faults.inject {
            if *at == pos {
                let (_, bytes) = self.faults.inject.take().expect("inject");
                if !self.write_raw(&bytes) {
                    return Next::End;
                }
            }
        }
        if self.faults.reset_after == Some(pos) {
            self.faults.reset_after = None;
            self.stats.resets.fetch_add(1, Ordering::SeqCst);
            self.conn.reset();
            return Next::End;
        }
        if self.faults.half_close_after == Some(pos) {
            let _ = self.ends().1.shutdown(Shutdown::Write);
        }
        if self.faults.truncate_after == Some(pos) {
            self.faults.truncate_after = None;
            self.conn.close_both();
            return Next::End;
        }
        Next::Go
    }

    fn write(&self, data: &[u8]) -> bool {
        let counter = match self.dir {
            Dir::Up => &self.stats.up,
            Dir::Down => &self.stats.down,
        };
        // Counted before the bytes leave: once the receiver has them, a test that
        // reads the counter must find them counted.
        counter.fetch_add(data.len() as u64, Ordering::SeqCst);
        if !self.write_raw(data) {
            counter.fetch_sub(data.len() as u64, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn write_raw(&self, mut data: &[u8]) -> bool {
        let mut to = self.ends().1;
        while !data.is_empty() {
            if self.stopped() {
                return false;
            }
            match to.write(data) {
                Ok(0) => return false,
                Ok(n) => data = &data[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    }
}
