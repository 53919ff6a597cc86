//! Soak: many connections churning on one reactor for a given time, then checks.
//!
//! An echo server and `--connections` clients (1,000 by default) share one reactor.
//! The server listens twice: in the clear, and with TLS (a certificate generated for
//! 127.0.0.1 at start); `--tls-percent` of the clients (20 by default) connect over
//! TLS 1.3, verifying that certificate. Each client connects to the server, sends random-sized frames cut from a
//! pseudo-random pattern (at most 32 KiB in flight), checks every echoed byte against
//! the pattern as it arrives (a lost, repeated or reordered byte is caught at once, at
//! its offset), then closes once all is echoed — or, one time in four, aborts at a
//! random point. Each closed client is replaced at once until `--seconds` (60 by
//! default) have passed; then the last ones finish and the listener is closed.
//!
//! At the end it checks that:
//! - every gracefully closed client got back exactly what it sent (byte count and an
//!   order-sensitive checksum of each direction), with `Closed(Ok)` and no error;
//! - every accepted socket got `Closed` exactly once, and no server socket closed with
//!   an error other than the reset of an aborting client;
//! - the open file descriptors (`/proc/self/fd`) are back to those open before the
//!   listener was made (the reactor's own, made on first need, such as the timer
//!   descriptor of sub-millisecond waits, are made before that count);
//! - resident memory (`VmRSS`) grew by at most 16 MiB between the end of the warm-up
//!   (a sixth of the run, at least 2 s: buffers and pools at their working size) and
//!   the end.
//!
//! It prints one summary line and exits with status 1 on any violation (listed on
//! stderr).
//!
//! ```text
//! cargo run --release --example soak -- --seconds 60 [--connections 1000] [--tls-percent 20]
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sockloop::{
    ListenerEvent, ProtectionLevel, Reactor, SocketErrorStatus, StreamEvent, StreamSocket,
    StreamSocketControl, StreamSocketListener, StreamSocketListenerControl, TlsClientOptions,
    TlsServerConfig,
};

/// The pattern every client's stream is cut from (from a random offset).
const PATTERN_LEN: usize = 1 << 20;
const MAX_FRAME: usize = 16 * 1024;
const WINDOW: u64 = 32 * 1024;
/// The most a client sends before closing.
const MAX_BUDGET: u64 = 256 * 1024;
/// Allowed growth of resident memory after the warm-up.
const RSS_GROWTH_BOUND: u64 = 16 * 1024 * 1024;
/// How long the last clients and lingering sockets may take after the deadline.
const WIND_DOWN: Duration = Duration::from_secs(30);

/// xorshift64*: seeded, small and fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An order-sensitive checksum (FNV-1a over the bytes, with the length at the end).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Checksum(u64, u64);

impl Checksum {
    fn new() -> Checksum {
        Checksum(0xcbf2_9ce4_8422_2325, 0)
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.1 += data.len() as u64;
    }
}

/// What the handlers share.
struct Soak {
    pattern: Vec<u8>,
    rng: Rng,
    active: usize,
    started: u64,
    /// Clients started over TLS.
    tls_started: u64,
    tls_percent: u64,
    /// How TLS clients connect: TLS 1.3, trusting the generated certificate only.
    tls_control: StreamSocketControl,
    tls_addr: std::net::SocketAddr,
    graceful: u64,
    aborted: u64,
    bytes: u64,
    accepted: u64,
    server_closed: u64,
    server_resets: u64,
    violations: Vec<String>,
}

impl Soak {
    fn violation(&mut self, what: String) {
        if self.violations.len() < 100 {
            self.violations.push(what);
        }
    }

    /// The `len` bytes (at most `MAX_FRAME`) of the pattern from `pos`.
    fn slice(&self, pos: u64, len: usize) -> &[u8] {
        let start = (pos % PATTERN_LEN as u64) as usize;
        &self.pattern[start..start + len]
    }

    /// Where the first bytes of `data` are in the pattern (for a violation's report).
    fn find(&self, data: &[u8]) -> Option<usize> {
        let probe = &data[..data.len().min(16)];
        self.pattern[..PATTERN_LEN + probe.len()]
            .windows(probe.len())
            .position(|w| w == probe)
    }

    /// Whether `data` is the pattern from `pos`.
    fn matches(&self, mut pos: u64, data: &[u8]) -> bool {
        for piece in data.chunks(MAX_FRAME) {
            if piece != self.slice(pos, piece.len()) {
                return false;
            }
            pos += piece.len() as u64;
        }
        true
    }
}

/// One client's state, owned by its handler.
struct Client {
    id: u64,
    /// Where its stream starts in the pattern.
    origin: u64,
    budget: u64,
    abort_at: Option<u64>,
    sent: u64,
    received: u64,
    sent_sum: Checksum,
    received_sum: Checksum,
    rng: Rng,
    closing: bool,
    aborted: bool,
    connected: bool,
}

impl Client {
    fn on_event(
        &mut self,
        reactor: &mut Reactor<Soak>,
        soak: &mut Soak,
        socket: StreamSocket,
        event: StreamEvent<'_>,
    ) {
        match event {
            StreamEvent::Connected => {
                self.connected = true;
                self.pump(reactor, soak, socket);
            }
            StreamEvent::Received(mut input) => {
                let bytes = input.bytes();
                if self.received + bytes.len() as u64 > self.sent {
                    soak.violation(format!(
                        "client {}: {} bytes echoed, {} sent",
                        self.id,
                        self.received + bytes.len() as u64,
                        self.sent
                    ));
                } else if !soak.matches(self.origin + self.received, bytes) {
                    let at = soak.find(bytes);
                    soak.violation(format!(
                        "client {}: echoed bytes at offset {} differ from those sent \
                         ({} bytes, sent {}, expected pattern offset {}, found at {at:?}, \
                         first bad byte {:?})",
                        self.id,
                        self.received,
                        bytes.len(),
                        self.sent,
                        (self.origin + self.received) % PATTERN_LEN as u64,
                        (0..bytes.len()).find(|&i| {
                            bytes[i] != soak.slice(self.origin + self.received + i as u64, 1)[0]
                        }),
                    ));
                }
                self.received_sum.update(bytes);
                self.received += bytes.len() as u64;
                input.consume_all();
                self.pump(reactor, soak, socket);
            }
            StreamEvent::Drained => self.pump(reactor, soak, socket),
            StreamEvent::ReadClosed if !self.closing => {
                soak.violation(format!("client {}: end of file before closing", self.id));
            }
            StreamEvent::Closed(result) => {
                soak.active -= 1;
                soak.bytes += self.received;
                if self.aborted {
                    soak.aborted += 1;
                    return;
                }
                soak.graceful += 1;
                if let Err(e) = result {
                    soak.violation(format!(
                        "client {}: closed with {e} (connected: {}, {} of {} bytes echoed)",
                        self.id, self.connected, self.received, self.budget
                    ));
                } else if self.received != self.budget || self.received_sum != self.sent_sum {
                    soak.violation(format!(
                        "client {}: {} of {} bytes echoed (checksums {:?} / {:?})",
                        self.id, self.received, self.budget, self.received_sum, self.sent_sum
                    ));
                }
            }
            _ => {}
        }
    }

    /// Sends frames while the window allows; aborts or closes when it is time.
    fn pump(&mut self, reactor: &mut Reactor<Soak>, soak: &mut Soak, socket: StreamSocket) {
        if self.closing || self.aborted {
            return;
        }
        while self.sent < self.budget && self.sent - self.received < WINDOW {
            if self.abort_at.is_some_and(|at| self.sent >= at) {
                self.aborted = true;
                if let Err(e) = socket.abort(reactor) {
                    soak.violation(format!("client {}: abort: {e}", self.id));
                }
                return;
            }
            let left = self.budget - self.sent;
            let len = (1 + self.rng.below(MAX_FRAME as u64)).min(left) as usize;
            let frame = soak.slice(self.origin + self.sent, len);
            match socket.write(reactor, frame) {
                Ok(()) => {
                    self.sent_sum.update(frame);
                    self.sent += len as u64;
                }
                Err(e) if e.status() == SocketErrorStatus::NoBufferSpaceAvailable => return,
                Err(e) => {
                    soak.violation(format!("client {}: write: {e}", self.id));
                    return;
                }
            }
        }
        if self.received == self.budget {
            self.closing = true;
            if let Err(e) = socket.close(reactor) {
                soak.violation(format!("client {}: close: {e}", self.id));
            }
        }
    }
}

/// The echo server's side of one connection.
fn server_socket(
    reactor: &mut Reactor<Soak>,
    soak: &mut Soak,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(mut input) => match socket.write(reactor, input.bytes()) {
            Ok(()) => input.consume_all(),
            // The queue is full: keep the input, wait for `Drained`.
            Err(e) if e.status() == SocketErrorStatus::NoBufferSpaceAvailable => {
                let _ = socket.set_receive_paused(reactor, true);
            }
            Err(e) => soak.violation(format!("server: write: {e}")),
        },
        StreamEvent::Drained => {
            let _ = socket.set_receive_paused(reactor, false);
        }
        StreamEvent::ReadClosed => {
            if let Err(e) = socket.close(reactor) {
                soak.violation(format!("server: close: {e}"));
            }
        }
        StreamEvent::Closed(result) => {
            soak.server_closed += 1;
            match result {
                Ok(()) => {}
                Err(e) if e.status() == SocketErrorStatus::ConnectionResetByPeer => {
                    soak.server_resets += 1;
                }
                Err(e) => soak.violation(format!("server: socket closed with {e}")),
            }
        }
        _ => {}
    }
}

fn start_client(reactor: &mut Reactor<Soak>, soak: &mut Soak, addr: std::net::SocketAddr) {
    let id = soak.started;
    let mut rng = Rng(soak.rng.next() | 1);
    let budget = 1 + rng.below(MAX_BUDGET);
    let abort_at = (rng.below(4) == 0).then(|| rng.below(budget));
    let mut client = Client {
        id,
        origin: rng.below(PATTERN_LEN as u64),
        budget,
        abort_at,
        sent: 0,
        received: 0,
        sent_sum: Checksum::new(),
        received_sum: Checksum::new(),
        rng,
        closing: false,
        aborted: false,
        connected: false,
    };
    let tls = soak.rng.below(100) < soak.tls_percent;
    let handler =
        move |reactor: &mut Reactor<Soak>,
              soak: &mut Soak,
              socket: StreamSocket,
              event: StreamEvent<'_>| { client.on_event(reactor, soak, socket, event) };
    let connected = if tls {
        let (ip, port) = (soak.tls_addr.ip(), soak.tls_addr.port());
        let control = soak.tls_control.clone();
        StreamSocket::connect_with(reactor, ip, port, &control, handler)
    } else {
        StreamSocket::connect_to(reactor, addr, handler)
    };
    match connected {
        Ok(_) => {
            soak.started += 1;
            soak.tls_started += u64::from(tls);
            soak.active += 1;
        }
        Err(e) => soak.violation(format!("client {id}: connect: {e}")),
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The open descriptors by kind (`socket`, `anon_inode:[eventpoll]`, a path, ...) and
/// how many of each: what a leak report names.
fn fd_kinds() -> std::collections::BTreeMap<String, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return kinds;
    };
    for entry in dir.flatten() {
        let target = std::fs::read_link(entry.path()).map_or_else(
            |_| "(closed while listed)".to_string(),
            |t| t.to_string_lossy().into_owned(),
        );
        let kind = match target.find(":[") {
            Some(at) if target.starts_with("socket") || target.starts_with("pipe") => {
                target[..at].to_string()
            }
            _ => target,
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

/// Makes the reactor's descriptors that are made on first need (the timer descriptor
/// that wakes sub-millisecond waits) before the descriptors are counted.
fn warm_reactor(reactor: &mut Reactor<Soak>, soak: &mut Soak) -> Result<(), sockloop::Error> {
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = fired.clone();
    reactor.set_timer(Duration::from_micros(1_500), move |_, _, _| flag.set(true));
    let until = Instant::now() + Duration::from_secs(1);
    while !fired.get() && Instant::now() < until {
        reactor.turn(soak, Some(Duration::from_millis(10)))?;
    }
    Ok(())
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Args {
    seconds: u64,
    connections: usize,
    tls_percent: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 60,
        connections: 1000,
        tls_percent: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        let bad = |_| format!("{arg}: not a number: {value}");
        match arg.as_str() {
            "--seconds" => args.seconds = value.parse().map_err(bad)?,
            "--connections" => args.connections = value.parse().map_err(bad)?,
            "--tls-percent" => args.tls_percent = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if args.tls_percent > 100 {
        return Err("--tls-percent is at most 100".into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("soak: {e}\nusage: soak [--seconds N] [--connections N] [--tls-percent P]");
            return ExitCode::from(2);
        }
    };
    match soak(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A certificate for 127.0.0.1: the TLS listener's configuration, and the client
/// options that trust it (and nothing else).
fn tls_pair() -> Result<(TlsServerConfig, TlsClientOptions), String> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .map_err(|e| format!("generate a certificate: {e}"))?;
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let server =
        TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string())?;
    let client = TlsClientOptions::new()
        .root_certificates_pem(cert.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok((server, client))
}

fn soak(args: &Args) -> Result<bool, sockloop::Error> {
    let mut reactor = Reactor::<Soak>::new()?;
    let (tls_server, tls_client) = tls_pair().map_err(|e| {
        sockloop::Error::new(SocketErrorStatus::Unknown, "soak TLS setup").with_detail(e)
    })?;
    let mut seed = Rng(0x50a6_2026);
    // Periodic: the bytes past `PATTERN_LEN` repeat its start, so a slice may run over.
    let mut pattern: Vec<u8> = (0..PATTERN_LEN / 8)
        .flat_map(|_| seed.next().to_le_bytes())
        .collect();
    pattern.extend_from_within(..MAX_FRAME);
    let mut soak = Soak {
        pattern,
        rng: Rng(seed.next() | 1),
        active: 0,
        started: 0,
        tls_started: 0,
        tls_percent: args.tls_percent,
        tls_control: StreamSocketControl::new()
            .protection_level(ProtectionLevel::Tls13)
            .tls(tls_client),
        tls_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        graceful: 0,
        aborted: 0,
        bytes: 0,
        accepted: 0,
        server_closed: 0,
        server_resets: 0,
        violations: Vec::new(),
    };
    warm_reactor(&mut reactor, &mut soak)?;
    let fds_before = open_fds();
    let kinds_before = fd_kinds();
    let rss_before = rss_bytes();
    let accept = |reactor: &mut Reactor<Soak>,
                  soak: &mut Soak,
                  _: StreamSocketListener,
                  event: ListenerEvent| {
        if let ListenerEvent::ConnectionReceived(conn) = event {
            soak.accepted += 1;
            if let Err(e) = conn.socket.set_handler(reactor, server_socket) {
                soak.violation(format!("server: set handler: {e}"));
            }
        }
    };
    let listener = StreamSocketListener::bind(&mut reactor, "127.0.0.1", 0, accept)?;
    let addr = listener.local_address(&reactor)?;
    let tls_control = StreamSocketListenerControl::new().tls(tls_server);
    let tls_listener =
        StreamSocketListener::bind_with(&mut reactor, "127.0.0.1", 0, &tls_control, accept)?;
    soak.tls_addr = tls_listener.local_address(&reactor)?;

    let begin = Instant::now();
    let run = Duration::from_secs(args.seconds);
    let deadline = begin + run;
    let warm_at = begin + (run / 6).max(Duration::from_secs(2)).min(run);
    let mut rss_warm = None;
    loop {
        let now = Instant::now();
        if now < deadline {
            while soak.active < args.connections {
                start_client(&mut reactor, &mut soak, addr);
                if soak.violations.len() >= 100 {
                    break;
                }
            }
        }
        if rss_warm.is_none() && now >= warm_at {
            rss_warm = Some(rss_bytes());
        }
        if now >= deadline && soak.active == 0 {
            break;
        }
        if now >= deadline + WIND_DOWN {
            let active = soak.active;
            soak.violation(format!(
                "{active} clients still open {WIND_DOWN:?} after the end"
            ));
            break;
        }
        reactor.turn(&mut soak, Some(Duration::from_millis(100)))?;
    }
    let elapsed = begin.elapsed();
    listener.close(&mut reactor)?;
    tls_listener.close(&mut reactor)?;

    // The server's last sockets close, lingering ones end: the descriptors come back.
    let settle = Instant::now() + WIND_DOWN;
    while (soak.server_closed < soak.accepted || open_fds() > fds_before) && Instant::now() < settle
    {
        reactor.turn(&mut soak, Some(Duration::from_millis(50)))?;
    }
    let fds_after = open_fds();
    let rss_after = rss_bytes();
    let rss_warm = rss_warm.unwrap_or(rss_after);
    if soak.server_closed != soak.accepted {
        let (closed, accepted) = (soak.server_closed, soak.accepted);
        soak.violation(format!("{accepted} sockets accepted, {closed} Closed"));
    }
    if soak.graceful + soak.aborted != soak.started {
        let (g, a, s) = (soak.graceful, soak.aborted, soak.started);
        soak.violation(format!("{s} clients started, {g} closed and {a} aborted"));
    }
    if fds_after != fds_before {
        soak.violation(format!(
            "{fds_before} descriptors open before ({kinds_before:?}), {fds_after} after ({:?})",
            fd_kinds()
        ));
    }
    if rss_after > rss_warm + RSS_GROWTH_BOUND {
        soak.violation(format!(
            "resident memory grew from {:.1} MiB (after warm-up) to {:.1} MiB, over the {:.0} MiB bound",
            mib(rss_warm),
            mib(rss_after),
            mib(RSS_GROWTH_BOUND)
        ));
    }
    println!(
        "soak: {} connections ({} over TLS; {} closed, {} aborted; {} accepted, {} reset by aborts), \
         {:.1} MiB echoed, {:.1} s, fds {} -> {}, RSS {:.1} -> {:.1} MiB \
         (after warm-up {:.1} MiB, bound +{:.0} MiB), {} violations",
        soak.started,
        soak.tls_started,
        soak.graceful,
        soak.aborted,
        soak.accepted,
        soak.server_resets,
        mib(soak.bytes),
        elapsed.as_secs_f64(),
        fds_before,
        fds_after,
        mib(rss_before),
        mib(rss_after),
        mib(rss_warm),
        mib(RSS_GROWTH_BOUND),
        soak.violations.len()
    );
    for v in &soak.violations {
        eprintln!("soak: violation: {v}");
    }
    Ok(soak.violations.is_empty())
}
