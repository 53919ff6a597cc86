//! B2: many connections on one server thread. The servers are B1's echo servers; one
//! client process drives C connections (10, 100, 1,000) with K messages of 64 B in flight
//! on each (1 or 8), from a mio event loop of its own, and counts the echoed messages.
//!
//! The client must not be the bottleneck, so it is as cheap per message as an echo loop
//! can be: edge-triggered, it reads each readable connection once into a large buffer
//! (a short read means drained) and answers with one write per connection per readiness
//! carrying every message it owes, so that a connection keeps exactly K × 64 bytes
//! outstanding. Each connection sends a repeating pattern (period 251 bytes, so a lost,
//! doubled or misplaced message shows) starting at its own phase, and checks every echoed
//! byte against it. On loopback the kernel's work per read and write is most of the cost
//! on both sides, so the client costs about what the leanest server does; the report
//! shows the client's CPU per message and how long it sat idle, which tell whether
//! messages/s measured the server or the client, and a note under each table names the
//! competitors with which the client was hardly ever idle.
//!
//! Figures per (C, K) and competitor: messages per second, the server's CPU time per
//! message, how busy it was and its allocations per message in the measured window, the
//! client's CPU time per message and idle share, and for C = 100, K = 8 the server's
//! system calls and instructions per message.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::chart::{Bar, Chart, Group};
use crate::report::{bar, cell, ratio, table, Repeats, Report};
use crate::{
    b1_pingpong, fail, no_role, open_files_limit, per_message, print_line, print_result, run_pair,
    wait_for_stdin_eof, Config, Family, Measures, Placement, Trace,
};

pub const FAMILY: Family = Family {
    name: "b2",
    run,
    server: b1_pingpong::server,
    client,
    solo: no_role,
};

const CONNECTIONS: &[usize] = &[10, 100, 1_000];
const DEPTHS: &[usize] = &[1, 8];
/// The message size.
const MESSAGE: usize = 64;
/// The cases of a quick run: every C, both K, and the counted case.
const QUICK_CASES: &[(usize, usize)] = &[(10, 1), (100, 8), (1_000, 8)];
/// The (C, K) case whose system calls and instructions are counted.
const COUNTED_CASE: (usize, usize) = (100, 8);
/// The period of the byte pattern: prime, so no whole number of messages fits in it.
const PERIOD: usize = 251;
/// How long the client waits for any echo before it gives up.
const STALL: Duration = Duration::from_secs(10);
/// Below this idle share (%), the client set the pace.
const CLIENT_BOUND: f64 = 10.0;
/// Connections opened at a time while the client sets up.
const WAVE: usize = 64;

struct Timing {
    warm_up_ms: u64,
    measure_ms: u64,
    /// N for the counted runs (N and 2N messages).
    counted: u64,
}

fn timing(config: &Config) -> Timing {
    if config.quick {
        Timing {
            warm_up_ms: 30,
            measure_ms: 150,
            counted: 5_000,
        }
    } else {
        Timing {
            warm_up_ms: 300,
            measure_ms: 1_500,
            counted: 50_000,
        }
    }
}

/// When the client stops.
#[derive(Clone, Copy)]
enum Stop {
    /// Measure for this many milliseconds (after the warm-up).
    Millis(u64),
    /// Exchange exactly this many messages in all, no warm-up (for [`per_message`]).
    Count(u64),
}

/// The client command: `<connections> <in flight> <warm-up ms> ms <measure ms>` or
/// `<connections> <in flight> 0 count <messages>`.
fn client_args(connections: usize, depth: usize, warm_up_ms: u64, stop: Stop) -> Vec<String> {
    let (mode, value) = match stop {
        Stop::Millis(ms) => ("ms", ms),
        Stop::Count(n) => ("count", n),
    };
    vec![
        connections.to_string(),
        depth.to_string(),
        warm_up_ms.to_string(),
        mode.to_string(),
        value.to_string(),
    ]
}

/// This (single-threaded) process's time on a CPU and time runnable but waiting for one,
/// so far, in seconds (/proc/self/schedstat).
fn own_sched() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let mut fields = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((fields.next()?? / 1e9, fields.next()?? / 1e9))
}

/// One client connection. Byte `i` of its stream (both ways) is
/// `pattern[(phase + i) % PERIOD]`.
struct Conn {
    stream: TcpStream,
    phase: usize,
    /// Bytes the client has decided to send (whole messages).
    committed: u64,
    /// Bytes written.
    sent: u64,
    /// Bytes echoed back (and checked).
    received: u64,
}

/// The start of the measured window.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    /// Messages echoed so far.
    echoed: u64,
    calls: Calls,
    /// [`own_sched`] then.
    sched: Option<(f64, f64)>,
}

/// The client's own system calls, to see how many messages each one carries.
#[derive(Default, Clone, Copy)]
struct Calls {
    polls: u64,
    reads: u64,
    writes: u64,
}

impl Conn {
    /// Reads until drained (a short read or `WouldBlock`), checks the bytes, and returns
    /// the whole messages completed.
    fn read(&mut self, buf: &mut [u8], pattern: &[u8], which: usize, calls: &mut Calls) -> u64 {
        let before = self.received / MESSAGE as u64;
        loop {
            calls.reads += 1;
            match self.stream.read(buf) {
                Ok(0) => fail(&format!(
                    "b2 client: connection #{which} closed by the server"
                )),
                Ok(n) => {
                    if self.received + n as u64 > self.sent {
                        fail(&format!(
                            "b2 client: connection #{which} got {} bytes back, sent {}",
                            self.received + n as u64,
                            self.sent
                        ));
                    }
                    let at = (self.phase + (self.received % PERIOD as u64) as usize) % PERIOD;
                    if buf[..n] != pattern[at..at + n] {
                        fail(&format!(
                            "b2 client: connection #{which}: the echo of bytes {}..{} differs \
                             from what was sent",
                            self.received,
                            self.received + n as u64
                        ));
                    }
                    self.received += n as u64;
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => fail(&format!("b2 client: read on connection #{which}: {e}")),
            }
        }
        self.received / MESSAGE as u64 - before
    }

    /// Commits up to `budget` messages so that `depth` are outstanding; returns how many.
    fn commit(&mut self, depth: usize, budget: u64) -> u64 {
        let want = (self.received / MESSAGE as u64 + depth as u64) * MESSAGE as u64;
        let new = (want.saturating_sub(self.committed) / MESSAGE as u64).min(budget);
        self.committed += new * MESSAGE as u64;
        new
    }

    /// One write of everything committed and not yet sent.
    fn write(&mut self, pattern: &[u8], which: usize, calls: &mut Calls) {
        let owed = (self.committed - self.sent) as usize;
        if owed == 0 {
            return;
        }
        calls.writes += 1;
        let at = (self.phase + (self.sent % PERIOD as u64) as usize) % PERIOD;
        match self.stream.write(&pattern[at..at + owed]) {
            Ok(n) => self.sent += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => fail(&format!("b2 client: write on connection #{which}: {e}")),
        }
    }
}

fn client(addr: SocketAddr, args: &[String]) {
    let (Some(connections), Some(depth), Some(warm_up_ms), Some(stop)) = (
        args.first().and_then(|s| s.parse::<usize>().ok()),
        args.get(1)
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&k| k > 0),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        match (
            args.get(3).map(String::as_str),
            args.get(4).and_then(|s| s.parse::<u64>().ok()),
        ) {
            (Some("ms"), Some(ms)) => Some(Stop::Millis(ms)),
            (Some("count"), Some(n)) => Some(Stop::Count(n)),
            _ => None,
        },
    ) else {
        fail(&format!("b2 client: bad arguments {args:?}"));
    };
    // A read returns at most the bytes outstanding, a write at most the bytes owed: both
    // at most `depth` messages, so the pattern needs one period plus that much.
    let span = depth * MESSAGE;
    let pattern: Vec<u8> = (0..PERIOD + span).map(|i| (i % PERIOD) as u8).collect();

    // All up: connect in waves (well under any listen backlog), send one message on each
    // and wait for its echo, so that every connection has been accepted and served once
    // before anything is measured.
    let mut poll = Poll::new().unwrap_or_else(|e| fail(&format!("b2 client: poll: {e}")));
    let mut conns: Vec<Conn> = Vec::with_capacity(connections);
    let mut reply = [0u8; MESSAGE];
    let phase = |i: usize| (i * 97) % PERIOD;
    while conns.len() < connections {
        let first = conns.len();
        let wave: Vec<StdStream> = (first..connections.min(first + WAVE))
            .map(|i| {
                let mut s = StdStream::connect(addr)
                    .unwrap_or_else(|e| fail(&format!("b2 client: connect #{i}: {e}")));
                s.set_nodelay(true)
                    .and_then(|()| s.set_read_timeout(Some(STALL)))
                    .and_then(|()| s.write_all(&pattern[phase(i)..phase(i) + MESSAGE]))
                    .unwrap_or_else(|e| fail(&format!("b2 client: first message on #{i}: {e}")));
                s
            })
            .collect();
        for (i, mut s) in (first..).zip(wave) {
            s.read_exact(&mut reply)
                .and_then(|()| s.set_nonblocking(true))
                .unwrap_or_else(|e| fail(&format!("b2 client: first echo on #{i}: {e}")));
            if reply[..] != pattern[phase(i)..phase(i) + MESSAGE] {
                fail(&format!(
                    "b2 client: first echo on #{i} differs from the message"
                ));
            }
            let mut stream = TcpStream::from_std(s);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap_or_else(|e| fail(&format!("b2 client: register #{i}: {e}")));
            conns.push(Conn {
                stream,
                phase: phase(i),
                committed: MESSAGE as u64,
                sent: MESSAGE as u64,
                received: MESSAGE as u64,
            });
        }
    }

    let mut budget = match stop {
        Stop::Millis(_) => u64::MAX,
        Stop::Count(n) => n,
    };
    let mut events = Events::with_capacity(connections.clamp(64, 1024));
    let mut buf = vec![0u8; 256 * 1024];
    // Messages echoed since the connections were all up.
    let mut echoed: u64 = 0;

    let warm_up_end = Instant::now() + Duration::from_millis(warm_up_ms);
    let mut calls = Calls::default();
    let mut window: Option<Mark> = None;
    if let Stop::Count(_) = stop {
        print_line("MARK start");
        window = Some(Mark {
            at: Instant::now(),
            echoed: 0,
            calls,
            sched: own_sched(),
        });
    }
    for (i, c) in conns.iter_mut().enumerate() {
        budget -= c.commit(depth, budget);
        c.write(&pattern, i, &mut calls);
    }
    let mut last_progress = Instant::now();
    let (end, measured) = loop {
        let now = Instant::now();
        let timeout = match (stop, window) {
            (Stop::Count(n), _) if echoed >= n => break (now, echoed),
            (Stop::Millis(_), None) if now >= warm_up_end => {
                print_line("MARK start");
                window = Some(Mark {
                    at: now,
                    echoed,
                    calls,
                    sched: own_sched(),
                });
                continue;
            }
            (Stop::Millis(ms), Some(start)) => {
                let end = start.at + Duration::from_millis(ms);
                if now >= end {
                    break (now, echoed - start.echoed);
                }
                end - now
            }
            (Stop::Millis(_), None) => warm_up_end - now,
            (Stop::Count(_), _) => STALL,
        };
        calls.polls += 1;
        poll.poll(&mut events, Some(timeout.min(STALL)))
            .unwrap_or_else(|e| fail(&format!("b2 client: poll: {e}")));
        if events.is_empty() {
            if now.duration_since(last_progress) >= STALL {
                fail(&format!(
                    "b2 client: no echo for {STALL:?} ({echoed} messages echoed so far)"
                ));
            }
            continue;
        }
        last_progress = now;
        for event in events.iter() {
            let i = event.token().0;
            let c = &mut conns[i];
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                echoed += c.read(&mut buf, &pattern, i, &mut calls);
            }
            budget -= c.commit(depth, budget);
            c.write(&pattern, i, &mut calls);
        }
    };
    let sched_end = own_sched();
    print_line("MARK end");
    let start = window.expect("a measured window");
    let secs = (end - start.at).as_secs_f64();
    let per = |n: u64, at_start: u64| (n - at_start) as f64 / measured as f64;
    let mut result = vec![
        ("msgs_per_s", measured as f64 / secs),
        ("msgs", measured as f64),
        ("secs", secs),
        ("connections", connections as f64),
        ("client_polls_per_msg", per(calls.polls, start.calls.polls)),
        ("client_reads_per_msg", per(calls.reads, start.calls.reads)),
        (
            "client_writes_per_msg",
            per(calls.writes, start.calls.writes),
        ),
    ];
    if let (Some((cpu0, wait0)), Some((cpu1, wait1))) = (start.sched, sched_end) {
        result.push(("client_cpu_s", cpu1 - cpu0));
        // Neither on a CPU nor waiting for one: asleep in epoll_wait, waiting for echoes.
        result.push((
            "client_idle_s",
            (secs - (cpu1 - cpu0) - (wait1 - wait0)).max(0.0),
        ));
    }
    print_result(&result);
    // The connections stay open until the server has reported.
    wait_for_stdin_eof();
    drop(conns);
}

fn run(config: &Config, report: &mut Report) {
    let t = timing(config);
    let limit = open_files_limit();
    // Each process (the server and the client) holds one descriptor per connection,
    // under the same limit.
    let cap = limit.map_or(usize::MAX, |l| l.saturating_sub(64));
    let cases: Vec<(usize, usize)> = if config.quick {
        QUICK_CASES.to_vec()
    } else {
        CONNECTIONS
            .iter()
            .flat_map(|&c| DEPTHS.iter().map(move |&k| (c, k)))
            .collect()
    };
    // Instructions under callgrind take seconds per competitor: not in quick mode.
    let count_config = Config {
        quick: config.quick,
        reps: config.reps,
        competitors: config.competitors.clone(),
        strace: config.strace,
        callgrind: config.callgrind && !config.quick,
    };
    let instructions = if count_config.callgrind {
        format!(
            " and instructions (runs of {} and {})",
            (t.counted / 10).max(100),
            2 * (t.counted / 10).max(100)
        )
    } else {
        String::new()
    };
    let mut text = format!(
        "## B2 — many connections\n\n\
         One client process drives C connections to the server, each with K messages of \
         64 B in flight. It is a mio loop, edge-triggered, that reads each readable \
         connection once into a 256 KiB buffer and answers with one write carrying a new \
         64 B message for every 64 B echoed, so that every connection keeps K × 64 bytes \
         outstanding; it checks every echoed byte against the pattern it sent. The \
         connections are opened {wave} at a time and each echoes one message; then the \
         client warms up for {warm} ms and measures for {measure} ms. Messages/s is echoed \
         bytes ÷ 64 ÷ the window. The server is the competitor's B1 echo server on one CPU \
         (one thread; std: one thread per connection). The ratio is sockloop's median ÷ \
         the competitor's (messages/s: above 1 means sockloop is faster).\n\n\
         CPU µs / msg is a process's user + system time in the window ÷ the messages echoed \
         in it; the server's does not depend on which side is the bottleneck. Server busy is \
         its CPU time ÷ the window: 100 % is a saturated server. Client idle is the share of \
         the window the client slept in epoll_wait waiting for echoes (neither on a CPU nor \
         waiting for one, from /proc/self/schedstat): near 0 % the client, not the server, \
         set the pace, and the client's CPU per message above the server's says the same. A \
         server well below 100 % busy while the client sat idle was waiting for its CPU \
         (other load on the machine) or for the client's wake-ups. Allocations are the \
         server process's in the window ÷ messages. For C = {cc}, K = {ck}, the server's \
         system calls (runs of {n} and {n2} messages, no warm-up){instructions} are counted \
         per message; a traced server runs slower, so it finds more messages per read than \
         untraced and the counts are lower than at full speed — compare competitors with \
         each other.\n",
        wave = WAVE,
        warm = t.warm_up_ms,
        measure = t.measure_ms,
        cc = COUNTED_CASE.0,
        ck = COUNTED_CASE.1,
        n = t.counted,
        n2 = 2 * t.counted,
    );
    if config.quick {
        text.push_str(&format!(
            "\nQuick mode: only the cases {}.\n",
            cases
                .iter()
                .map(|(c, k)| format!("C = {c}, K = {k}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let mut capped_noted = Vec::new();
    let mut groups = Vec::new();
    for (wanted, depth) in cases {
        let connections = wanted.min(cap);
        if connections < wanted && !capped_noted.contains(&wanted) {
            capped_noted.push(wanted);
            text.push_str(&format!(
                "\n**Capped at {connections} connections** (wanted {wanted}): the soft \
                 open-files limit is {}, and the server and the client each need one \
                 descriptor per connection. Raise it with `ulimit -n` to measure {wanted}.\n",
                limit.unwrap_or(0)
            ));
        }
        let counted = (wanted, depth) == COUNTED_CASE;
        let (rows, client_bound, bars) = case(
            config,
            &count_config,
            report,
            &t,
            connections,
            depth,
            counted,
        );
        let mut headers = vec![
            "competitor",
            "messages/s",
            "sockloop ÷ this",
            "server CPU µs / msg",
            "server busy %",
            "client CPU µs / msg",
            "client idle %",
        ];
        if counted {
            headers.extend([
                "server syscalls / msg",
                "which",
                "server instructions / msg",
            ]);
        }
        headers.push("server allocs / msg");
        let plural = if depth == 1 { "" } else { "s" };
        groups.push(Group {
            name: format!("{connections} connections × {depth} in flight"),
            bars,
        });
        text.push_str(&format!(
            "\n### {connections} connections, {depth} message{plural} in flight each\n\n"
        ));
        text.push_str(&table(&headers, &rows));
        if !client_bound.is_empty() {
            text.push_str(&format!(
                "\nWith {} the client was idle less than {CLIENT_BOUND:.0} % of the window: \
                 there messages/s is bounded by the client as much as by the server, and \
                 server CPU µs / msg is the figure to compare.\n",
                match client_bound.split_last() {
                    Some((last, [])) => last.to_string(),
                    Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                    None => String::new(),
                }
            ));
        }
    }
    let chart = report.chart(
        "b2",
        &Chart {
            title: "B2 — server CPU time per message, many connections".into(),
            unit: "µs per message".into(),
            higher_is_better: false,
            groups,
        },
    );
    text.push_str(&chart);
    report.section(text);
}

/// Runs one (C, K) case for every competitor and returns its table rows.
fn case(
    config: &Config,
    count_config: &Config,
    report: &mut Report,
    t: &Timing,
    connections: usize,
    depth: usize,
    counted: bool,
) -> (Vec<Vec<String>>, Vec<&'static str>, Vec<Bar>) {
    let mut results = Repeats::default();
    for rep in 0..config.reps {
        for c in &config.competitors {
            eprintln!("suite: b2 {connections}×{depth} rep {} {}", rep + 1, c.name);
            let (server, mut m): (Measures, Measures) = run_pair(
                "b2",
                &b1_pingpong::server_args(c.name),
                &client_args(connections, depth, t.warm_up_ms, Stop::Millis(t.measure_ms)),
                Placement::Split,
                Trace::None,
            );
            let msgs = m.get("msgs").copied().unwrap_or(f64::NAN);
            let secs = m.get("secs").copied().unwrap_or(f64::NAN);
            if let Some(a) = server.get("allocs_window") {
                m.insert("allocs_per_msg".into(), a / msgs);
            }
            if let Some(&cpu) = m.get("server_cpu_s") {
                m.insert("server_cpu_us_per_msg".into(), cpu * 1e6 / msgs);
                m.insert("server_busy".into(), 100.0 * cpu / secs);
            }
            if let Some(&cpu) = m.get("client_cpu_s") {
                m.insert("client_cpu_us_per_msg".into(), cpu * 1e6 / msgs);
            }
            if let Some(&idle) = m.get("client_idle_s") {
                m.insert("client_idle".into(), 100.0 * idle / secs);
            }
            results.add(c.name, m);
        }
    }
    let get = |name: &str, metric: &str| results.get(name, metric);
    let mut rows = Vec::new();
    for c in &config.competitors {
        let mut row = vec![
            format!("**{}**", c.name),
            cell(get(c.name, "msgs_per_s"), 0),
            ratio(get("sockloop", "msgs_per_s"), get(c.name, "msgs_per_s")),
            cell(get(c.name, "server_cpu_us_per_msg"), 2),
            cell(get(c.name, "server_busy"), 0),
            cell(get(c.name, "client_cpu_us_per_msg"), 2),
            cell(get(c.name, "client_idle"), 0),
        ];
        if counted {
            eprintln!("suite: b2 {connections}×{depth} counts {}", c.name);
            let per = per_message(
                count_config,
                "b2",
                &b1_pingpong::server_args(c.name),
                &|n| client_args(connections, depth, 0, Stop::Count(n)),
                t.counted,
                &format!("{}-{connections}x{depth}", c.name),
            );
            let (sys, which) = per.syscalls.map_or(("–".into(), "–".into()), |(t, w)| {
                (format!("{t:.2}"), w)
            });
            row.push(sys);
            row.push(which);
            row.push(per.instructions.map_or("–".into(), |i| format!("{i:.0}")));
        }
        row.push(cell(get(c.name, "allocs_per_msg"), 3));
        if let Some(a) = get(c.name, "allocs_per_msg").filter(|a| a.max != 0.0) {
            if c.name == "sockloop" {
                report.failures.push(format!(
                    "sockloop allocated in steady state: {} allocations per message with \
                     {connections} connections, {depth} in flight each",
                    a.cell(3)
                ));
            }
        }
        rows.push(row);
    }
    // The competitors with which the client hardly ever waited for echoes: it set the pace.
    let client_bound = config
        .competitors
        .iter()
        .filter(|c| get(c.name, "client_idle").is_some_and(|s| s.median < CLIENT_BOUND))
        .map(|c| c.name)
        .collect();
    let bars = config
        .competitors
        .iter()
        .map(|c| bar(c.name, get(c.name, "server_cpu_us_per_msg")))
        .collect();
    (rows, client_bound, bars)
}
