//! The UDP peers of B5: for each competitor a sender and a receiver, run on two
//! threads of one process and tied by a [`Flow`]: the sender keeps at most
//! [`WINDOW`] datagrams in flight (sent and not yet counted by the receiver), so that
//! the rate measured is the pair's and the receive buffer does not overflow. A
//! datagram lost anyway stalls the window; after [`STALL`] without progress the
//! sender writes off what is in flight and goes on, and the loss is reported.
//!
//! Senders spin (no system call) while the window is full, so that the system calls
//! counted are the ones that move datagrams.

use std::io::{ErrorKind, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockloop::{DatagramEvent, DatagramSocket, DatagramSocketControl, Reactor};

use crate::{alloc, fail};

/// Datagrams in flight at most.
pub const WINDOW: u64 = 1024;
/// Datagrams a sender passes to its library at once, at most (one handler call, one
/// GSO train).
pub const BURST: usize = 64;
/// No progress for this long with a full window: what is in flight is lost.
const STALL: Duration = Duration::from_millis(20);
/// The receiver ends once the sender is done and nothing came for this long.
const IDLE: Duration = Duration::from_millis(200);
/// The receive buffer asked of every receiving socket (the kernel caps it at
/// `net.core.rmem_max`).
const RCVBUF: usize = 4 << 20;
/// How often receivers look at the flow while nothing arrives.
const TICK: Duration = Duration::from_millis(10);

/// What the two threads share.
#[derive(Default)]
pub struct Flow {
    /// Datagrams the receiver counted.
    pub received: AtomicU64,
    /// Datagrams whose length was not the payload's.
    pub bad: AtomicU64,
    pub done_sending: AtomicBool,
    /// Datagrams to send in all.
    pub total: u64,
    /// Datagrams before the measured part (both sides).
    pub warm_up: u64,
}

/// The receiver's count and clock.
pub struct Counter {
    flow: Arc<Flow>,
    payload: usize,
    count: u64,
    /// When the warm-up ended, and when the last datagram came.
    pub start: Option<Instant>,
    pub last: Option<Instant>,
    idle_since: Instant,
    /// The thread's use at the end of the warm-up and at the last datagram (or at
    /// the end, if some never came).
    pub used: (ThreadUse, Option<ThreadUse>),
}

/// What the calling thread used so far: CPU time (from `/proc/thread-self/schedstat`)
/// and voluntary context switches, which for a receiver are the times it slept
/// waiting for datagrams (each one a wake-up its sender paid for).
#[derive(Clone, Copy, Default)]
pub struct ThreadUse {
    pub cpu_ns: u64,
    pub sleeps: u64,
}

impl ThreadUse {
    pub fn now() -> ThreadUse {
        let cpu_ns = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let sleeps = std::fs::read_to_string("/proc/thread-self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        ThreadUse { cpu_ns, sleeps }
    }
}

impl Counter {
    pub fn new(flow: Arc<Flow>, payload: usize) -> Counter {
        Counter {
            flow,
            payload,
            count: 0,
            start: None,
            last: None,
            idle_since: Instant::now(),
            used: (ThreadUse::default(), None),
        }
    }

    /// One datagram of `len` bytes arrived.
    #[inline]
    pub fn datagram(&mut self, len: usize) {
        if len != self.payload {
            self.flow.bad.fetch_add(1, Ordering::Relaxed);
        }
        self.count += 1;
        self.flow.received.store(self.count, Ordering::Release);
        if self.count == self.flow.warm_up {
            self.start = Some(Instant::now());
            self.used.0 = ThreadUse::now();
        }
        if self.count == self.flow.total {
            self.used.1 = Some(ThreadUse::now());
        }
        // The clock every 64 datagrams and at the last: a clock read per datagram
        // would be a good part of the receiver's work at these rates.
        if self.count > self.flow.warm_up && (self.count & 63 == 0 || self.count >= self.flow.total)
        {
            self.last = Some(Instant::now());
        }
    }

    /// Whether to stop: everything came, or the sender is done and nothing came for
    /// [`IDLE`]. Called at least every [`TICK`].
    pub fn finished(&mut self) -> bool {
        if self.count >= self.flow.total {
            return true;
        }
        let done = self.finished_waiting();
        if done && self.used.1.is_none() {
            self.used.1 = Some(ThreadUse::now());
        }
        done
    }

    fn finished_waiting(&mut self) -> bool {
        let now = Instant::now();
        if !matches!(self.last, Some(l) if now.duration_since(l) <= TICK) {
            if !self.flow.done_sending.load(Ordering::Acquire) {
                self.idle_since = now;
            }
            return now.duration_since(self.idle_since) > IDLE;
        }
        self.idle_since = now;
        false
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The sender's window, and its clock and allocation count.
pub struct Credit {
    flow: Arc<Flow>,
    pub sent: u64,
    written_off: u64,
    seen: u64,
    since: Instant,
    pub start: Option<(Instant, u64)>,
    pub end: Option<(Instant, u64)>,
    /// Time spent waiting for the window in the measured part, and the thread's CPU
    /// time at its start and end: what the sender was busy with is the difference.
    pub spun: Duration,
    pub cpu_ns: (u64, u64),
    /// Under callgrind, which runs one thread at a time: yield while waiting, so
    /// that the receiver runs.
    yielding: bool,
}

impl Credit {
    pub fn new(flow: Arc<Flow>) -> Credit {
        Credit {
            flow,
            sent: 0,
            written_off: 0,
            seen: 0,
            since: Instant::now(),
            start: None,
            end: None,
            spun: Duration::ZERO,
            cpu_ns: (0, 0),
            yielding: std::env::var_os("SOCKLOOP_B5_YIELD").is_some(),
        }
    }

    /// Waits (spinning) until a whole burst may be sent ([`BURST`] datagrams, or what
    /// is left); returns how many, 0 when all are sent. Whole bursts keep the
    /// batches of every sender alike, whatever the receiver's pace.
    #[inline(never)]
    pub fn wait(&mut self) -> usize {
        let left = self.flow.total - self.sent;
        if left == 0 {
            return 0;
        }
        let mut spinning: Option<Instant> = None;
        loop {
            let received = self.flow.received.load(Ordering::Acquire);
            if received != self.seen {
                self.seen = received;
                self.since = Instant::now();
            }
            let in_flight = self
                .sent
                .saturating_sub(received)
                .saturating_sub(self.written_off);
            let burst = left.min(BURST as u64);
            if in_flight + burst <= WINDOW {
                if let Some(t) = spinning.filter(|_| self.start.is_some()) {
                    self.spun += t.elapsed();
                }
                return burst as usize;
            }
            spinning.get_or_insert_with(Instant::now);
            if self.yielding {
                std::thread::yield_now();
            }
            if self.since.elapsed() > STALL {
                self.written_off += in_flight;
                self.since = Instant::now();
            }
            std::hint::spin_loop();
        }
    }

    /// `n` more were handed to the library.
    pub fn sent(&mut self, n: usize) {
        self.sent += n as u64;
        if self.start.is_none() && self.sent >= self.flow.warm_up {
            self.start = Some((Instant::now(), alloc::allocations()));
            self.cpu_ns.0 = ThreadUse::now().cpu_ns;
        }
        if self.sent >= self.flow.total && self.end.is_none() {
            self.end = Some((Instant::now(), alloc::allocations()));
            self.cpu_ns.1 = ThreadUse::now().cpu_ns;
            self.flow.done_sending.store(true, Ordering::Release);
        }
    }
}

/// A std socket bound to 127.0.0.1:0 with a large receive buffer.
pub fn std_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("b5: {e}")));
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RCVBUF);
    socket
}

/// A receiver: binds `k` sockets, sends their addresses on `ready`, counts.
pub type Receive = fn(usize, Sender<Vec<SocketAddr>>, &mut Counter);
/// A sender: sends `flow.total` datagrams of `payload` bytes to `to`, round-robin.
pub type Send = fn(&[SocketAddr], &[u8], &mut Credit);

// ---- sockloop ----

fn sockloop_receive(k: usize, ready: Sender<Vec<SocketAddr>>, counter: &mut Counter, batch: bool) {
    let mut reactor = Reactor::<Counter>::new().unwrap_or_else(|e| fail(&format!("b5: {e}")));
    let control = DatagramSocketControl::new()
        .batching(batch)
        .inbound_buffer_size(Some(RCVBUF));
    let mut addrs = Vec::new();
    for _ in 0..k {
        let socket = DatagramSocket::bind_with(
            &mut reactor,
            "127.0.0.1",
            0,
            &control,
            |_, counter: &mut Counter, _, event| {
                if let DatagramEvent::MessageReceived(m) = event {
                    counter.datagram(m.data.len());
                }
            },
        )
        .unwrap_or_else(|e| fail(&format!("b5: bind: {e}")));
        addrs.push(socket.information(&reactor).unwrap().local_address.unwrap());
    }
    reactor.set_timer(TICK, |r, counter: &mut Counter, id| {
        if counter.finished() {
            r.stop();
        } else {
            let _ = r.reset_timer(id, TICK);
        }
    });
    let _ = ready.send(addrs);
    reactor
        .run(counter)
        .unwrap_or_else(|e| fail(&format!("b5: run: {e}")));
}

pub fn sockloop_receive_batched(k: usize, ready: Sender<Vec<SocketAddr>>, counter: &mut Counter) {
    sockloop_receive(k, ready, counter, true)
}

pub fn sockloop_receive_plain(k: usize, ready: Sender<Vec<SocketAddr>>, counter: &mut Counter) {
    sockloop_receive(k, ready, counter, false)
}

struct SendState {
    credit: Credit,
    to: Vec<SocketAddr>,
    payload: Vec<u8>,
    next: usize,
}

fn sockloop_send(to: &[SocketAddr], payload: &[u8], credit: &mut Credit, batch: bool) {
    let mut reactor = Reactor::<SendState>::new().unwrap_or_else(|e| fail(&format!("b5: {e}")));
    let control = DatagramSocketControl::new().batching(batch);
    let socket = DatagramSocket::bind_with(&mut reactor, "127.0.0.1", 0, &control, |_, _, _, _| {})
        .unwrap_or_else(|e| fail(&format!("b5: bind: {e}")));
    let mut state = SendState {
        credit: Credit::new(credit.flow.clone()),
        to: to.to_vec(),
        payload: payload.to_vec(),
        next: 0,
    };
    // Each call of the timer's handler is one burst: the datagrams sent during it
    // leave together when it returns.
    reactor.set_timer(Duration::ZERO, move |r, st: &mut SendState, id| {
        let n = st.credit.wait();
        for _ in 0..n {
            let to = st.to[st.next % st.to.len()];
            st.next += 1;
            if let Err(e) = socket.send_to(r, to, &st.payload) {
                fail(&format!("b5: send_to: {e}"));
            }
        }
        st.credit.sent(n);
        if st.credit.sent >= st.credit.flow.total {
            let _ = socket.close(r);
            r.stop();
        } else {
            let _ = r.reset_timer(id, Duration::ZERO);
        }
    });
    reactor
        .run(&mut state)
        .unwrap_or_else(|e| fail(&format!("b5: run: {e}")));
    *credit = state.credit;
}

/// The sockloop sender with its bursts built as one buffer, sent as one train with
/// `send_segments_to` (the shape of the quinn-udp sender's `Transmit`).
pub fn sockloop_send_trains(to: &[SocketAddr], payload: &[u8], credit: &mut Credit) {
    let mut reactor = Reactor::<SendState>::new().unwrap_or_else(|e| fail(&format!("b5: {e}")));
    let socket = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, _| {})
        .unwrap_or_else(|e| fail(&format!("b5: bind: {e}")));
    let size = payload.len();
    let mut state = SendState {
        credit: Credit::new(credit.flow.clone()),
        to: to.to_vec(),
        payload: payload.repeat(BURST),
        next: 0,
    };
    reactor.set_timer(Duration::ZERO, move |r, st: &mut SendState, id| {
        let n = st.credit.wait();
        let to = st.to[st.next % st.to.len()];
        st.next += 1;
        if let Err(e) = socket.send_segments_to(r, to, &st.payload[..n * size], size) {
            fail(&format!("b5: send_segments_to: {e}"));
        }
        st.credit.sent(n);
        if st.credit.sent >= st.credit.flow.total {
            let _ = socket.close(r);
            r.stop();
        } else {
            let _ = r.reset_timer(id, Duration::ZERO);
        }
    });
    reactor
        .run(&mut state)
        .unwrap_or_else(|e| fail(&format!("b5: run: {e}")));
    *credit = state.credit;
}

pub fn sockloop_send_batched(to: &[SocketAddr], payload: &[u8], credit: &mut Credit) {
    sockloop_send(to, payload, credit, true)
}

pub fn sockloop_send_plain(to: &[SocketAddr], payload: &[u8], credit: &mut Credit) {
    sockloop_send(to, payload, credit, false)
}

// ---- mio: the leanest correct loop ----

pub fn mio_receive(k: usize, ready: Sender<Vec<SocketAddr>>, counter: &mut Counter) {
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(64);
    let mut sockets = Vec::new();
    for i in 0..k {
        let std = std_socket();
        std.set_nonblocking(true).ok();
        let mut socket = mio::net::UdpSocket::from_std(std);
        poll.registry()
            .register(&mut socket, mio::Token(i), mio::Interest::READABLE)
            .expect("register");
        sockets.push(socket);
    }
    let _ = ready.send(sockets.iter().map(|s| s.local_addr().unwrap()).collect());
    let mut buf = vec![0u8; 65_536];
    while !counter.finished() {
        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => fail(&format!("b5: poll: {e}")),
        }
        for event in &events {
            let socket = &sockets[event.token().0];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) => counter.datagram(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => fail(&format!("b5: recv_from: {e}")),
                }
            }
        }
    }
}

pub fn mio_send(to: &[SocketAddr], payload: &[u8], credit: &mut Credit) {
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(4);
    let std = std_socket();
    std.set_nonblocking(true).ok();
    let mut socket = mio::net::UdpSocket::from_std(std);
    poll.registry()
        .register(&mut socket, mio::Token(0), mio::Interest::WRITABLE)
        .expect("register");
    let mut next = 0;
    loop {
        let n = credit.wait();
        if n == 0 {
            return;
        }
        let mut done = 0;
        while done < n {
            match socket.send_to(payload, to[next % to.len()]) {
                Ok(_) => {
                    done += 1;
                    next += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = poll.poll(&mut events, Some(TICK));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("b5: send_to: {e}")),
            }
        }
        credit.sent(n);
    }
}

// ---- tokio, current_thread ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime")
}

pub fn tokio_receive(k: usize, ready: Sender<Vec<SocketAddr>>, counter: &mut Counter) {
    if k != 1 {
        fail("b5: the tokio receiver takes one socket");
    }
    runtime().block_on(async {
        let std = std_socket();
        std.set_nonblocking(true).ok();
        let socket = tokio::net::UdpSocket::from_std(std).expect("tokio socket");
        let _ = ready.send(vec![socket.local_addr().unwrap()]);
        let mut buf = vec![0u8; 65_536];
        while !counter.finished() {
            match tokio::time::timeout(TICK, socket.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => counter.datagram(n),
                Ok(Err(e)) => fail(&format!("b5: recv_from: {e}")),
                Err(_) => {}
            }
        }
    });
}

pub fn tokio_send(to: &[SocketAddr], payload: &[u8], credit: &mut Credit) {
    runtime().block_on(async {
        let std = std_socket();
        std.set_nonblocking(true).ok();
        let socket = tokio::net::UdpSocket::from_std(std).expect("tokio socket");
        let mut next = 0;
        loop {
            let n = credit.wait();
            if n == 0 {
                return;
            }
            for _ in 0..n {
                if let Err(e) = socket.send_to(payload, to[next % to.len()]).await {
                    fail(&format!("b5: send_to: {e}"));
                }
                next += 1;
            }
            credit.sent(n);
        }
    });
}

// ---- quinn-udp: GSO out, GRO and recvmmsg in ----

pub fn quinn_receive(k: usize, ready: Sender<Vec<SocketAddr>>, counter: &mut Counter) {
    if k != 1 {
        fail("b5: the quinn-udp receiver takes one socket");
    }
    // Non-blocking, as quinn-udp is used (a blocking `recvmmsg` would wait for a
    // whole batch); readiness from mio.
    let std = std_socket();
    std.set_nonblocking(true).ok();
    let state = quinn_udp::UdpSocketState::new((&std).into())
        .unwrap_or_else(|e| fail(&format!("b5: quinn-udp: {e}")));
    let mut socket = mio::net::UdpSocket::from_std(std);
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(4);
    poll.registry()
        .register(&mut socket, mio::Token(0), mio::Interest::READABLE)
        .expect("register");
    let _ = ready.send(vec![socket.local_addr().unwrap()]);
    let slot = 65_536 * state.gro_segments().max(1);
    let mut storage = vec![0u8; slot * quinn_udp::BATCH_SIZE];
    let mut meta = vec![quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
    let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(slot).map(IoSliceMut::new).collect();
    while !counter.finished() {
        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => fail(&format!("b5: poll: {e}")),
        }
        if events.is_empty() {
            continue;
        }
        loop {
            match state.recv((&socket).into(), &mut bufs, &mut meta) {
                Ok(n) => {
                    for m in &meta[..n] {
                        let stride = m.stride.max(1);
                        let mut left = m.len;
                        while left > 0 {
                            counter.datagram(left.min(stride));
                            left = left.saturating_sub(stride);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("b5: quinn-udp recv: {e}")),
            }
        }
    }
}

pub fn quinn_send(to: &[SocketAddr], payload: &[u8], credit: &mut Credit) {
    let socket = std_socket();
    let state = quinn_udp::UdpSocketState::new((&socket).into())
        .unwrap_or_else(|e| fail(&format!("b5: quinn-udp: {e}")));
    let most = state
        .max_gso_segments()
        .min(65_507 / payload.len().max(1))
        .clamp(1, BURST);
    let train = payload.repeat(most);
    let mut next = 0;
    loop {
        let mut n = credit.wait();
        if n == 0 {
            return;
        }
        let sent = n;
        while n > 0 {
            let segments = n.min(most);
            let transmit = quinn_udp::Transmit {
                destination: to[next % to.len()],
                ecn: None,
                contents: &train[..segments * payload.len()],
                segment_size: (segments > 1).then_some(payload.len()),
                src_ip: None,
            };
            match state.try_send((&socket).into(), &transmit) {
                Ok(()) => {
                    n -= segments;
                    next += 1;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("b5: quinn-udp send: {e}")),
            }
        }
        credit.sent(sent);
    }
}

/// Runs one measurement: the receiver on a thread, the sender here.
pub fn measure(
    receive: Receive,
    send: Send,
    k: usize,
    payload: usize,
    total: u64,
) -> (Credit, Counter, Arc<Flow>) {
    let flow = Arc::new(Flow {
        total,
        warm_up: total / 10,
        ..Flow::default()
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver_flow = flow.clone();
    let receiver = std::thread::spawn(move || {
        let mut counter = Counter::new(receiver_flow, payload);
        receive(k, tx, &mut counter);
        counter
    });
    let to = rx
        .recv()
        .unwrap_or_else(|_| fail("b5: the receiver did not start"));
    let bytes: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut credit = Credit::new(flow.clone());
    send(&to, &bytes, &mut credit);
    if credit.end.is_none() {
        fail("b5: the sender stopped early");
    }
    let counter = receiver
        .join()
        .unwrap_or_else(|_| fail("b5: the receiver panicked"));
    (credit, counter, flow)
}
