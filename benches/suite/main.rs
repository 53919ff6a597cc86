//! The benchmark driver: sockloop side by side with a hand-written mio loop, tokio's
//! current_thread runtime, blocking std::net and message-io, on loopback.
//!
//! ```text
//! cargo bench -p sockloop-bench --bench suite             # every family, 5 repetitions
//! cargo bench -p sockloop-bench --bench suite -- --quick  # everything once, small counts
//! cargo bench -p sockloop-bench --bench suite -- --write  # also write BENCHMARKS.md
//! cargo bench -p sockloop-bench --bench suite -- --only b7 --write  # update its section only
//! cargo bench -p sockloop-bench --bench suite -- --only b1 --competitors sockloop,mio --reps 7
//! ```
//!
//! Method: every measurement runs fresh processes: the driver re-executes itself as a
//! server (`--server`) and as a client (`--client`), pinned to two different CPUs with
//! `taskset` where the machine has two (and to one CPU for the same-CPU variants).
//! Competitors alternate (A B C D A B C D …) so that drift in the machine hits all of
//! them alike, each client warms up before it measures, and the tables give the median
//! and min–max over the repetitions. Deterministic counts sit next to the times, all of
//! the server process alone: system calls (`strace -f -c`), user-space instructions
//! (`valgrind --tool=callgrind`) and heap allocations (a counting allocator), each taken
//! as (count at 2N messages − count at N) ÷ N so that start-up and tear-down cancel out.
//!
//! Families are modules (`b1_pingpong`, `b7_memory`); adding one is a module with a
//! [`Family`] constant and one line in [`FAMILIES`]. Competitors are modules under
//! `competitors/`.
//!
//! Run without `--bench` (as `cargo test` does for a `harness = false` target) and
//! without `--quick`, the binary does nothing and exits 0.

mod alloc;
mod b1_pingpong;
mod b2_connections;
mod b3_batched;
mod b4_tls;
mod b5_udp;
mod b6_wake;
mod b7_memory;
mod b8_timers;
mod chart;
mod competitors;
mod report;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use competitors::Competitor;
use report::Report;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// What the parent was asked to do.
pub struct Config {
    pub quick: bool,
    pub reps: usize,
    pub competitors: Vec<&'static Competitor>,
    /// `strace` is on the PATH: system calls are counted.
    pub strace: bool,
    /// `valgrind` is on the PATH: instructions are counted.
    pub callgrind: bool,
}

/// A family of benchmarks: `run` (in the parent) spawns children and adds its section
/// to the report. A child process plays one role: `--server <family> <args>` serves
/// (see [`serve_child`]), `--client <family> <addr> <args>` drives a server at `addr`,
/// and `--solo <family> <args>` is a whole measurement in one process.
pub struct Family {
    pub name: &'static str,
    pub run: fn(&Config, &mut Report),
    pub server: fn(&[String]),
    pub client: fn(SocketAddr, &[String]),
    pub solo: fn(&[String]),
}

/// For a [`Family`] without one of the roles.
pub fn no_role(_: &[String]) {
    fail("this family has no such role");
}

/// For a [`Family`] without a client role.
pub fn no_client(_: SocketAddr, _: &[String]) {
    fail("this family has no client role");
}

pub const FAMILIES: &[Family] = &[
    b1_pingpong::FAMILY,
    b2_connections::FAMILY,
    b3_batched::FAMILY,
    b4_tls::FAMILY,
    b5_udp::FAMILY,
    b6_wake::FAMILY,
    b7_memory::FAMILY,
    b8_timers::FAMILY,
];

/// A child's answer: the `key=value` pairs of its `RESULT` line.
pub type Measures = BTreeMap<String, f64>;

/// How long a measurement may run before its processes are killed and the suite fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(240);

/// Where the server and the client of a pair run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// Server and client pinned to two different CPUs (`taskset`).
    Split,
    /// Both pinned to the same CPU: every message is a context switch.
    Same,
    /// Not pinned: the scheduler decides.
    Free,
}

/// A counting tool wrapped around the server process.
pub enum Trace<'a> {
    None,
    /// `strace -f -c -o <path>`: system calls of every server thread.
    Strace(&'a Path),
    /// `valgrind --tool=callgrind`: user-space instructions of every server thread.
    Callgrind(&'a Path),
}

/// The two CPUs of [`Placement::Split`] (`None` if fewer than two are allowed or
/// `taskset` is missing, in which case pairs run unpinned).
fn cpus() -> Option<(usize, usize)> {
    static CPUS: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
            .trim()
            .to_string();
        let mut allowed = Vec::new();
        for part in list.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            );
            allowed.extend(a..=b);
        }
        if allowed.len() < 2 || !tool_available("taskset", "-V") {
            return None;
        }
        Some((allowed[0], allowed[1]))
    })
}

/// What [`Placement`] means on this machine, for the report.
pub fn placement_note() -> String {
    match cpus() {
        Some((c, s)) => format!(
            "server pinned to CPU {s} and client to CPU {c} with `taskset` (same-CPU \
             variants pin both to CPU {c})"
        ),
        None => "not pinned (fewer than two CPUs allowed, or no `taskset`)".to_string(),
    }
}

fn command(
    role: &str,
    family: &str,
    args: &[String],
    cpu: Option<usize>,
    trace: &Trace,
) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut words: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpu) = cpu {
        words.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
    }
    match trace {
        Trace::None => {}
        Trace::Strace(path) => {
            words.extend(["strace".into(), "-f".into(), "-c".into(), "-o".into()]);
            words.push(path.as_os_str().to_owned());
        }
        Trace::Callgrind(path) => {
            words.extend(["valgrind".into(), "--tool=callgrind".into()]);
            let mut out = std::ffi::OsString::from("--callgrind-out-file=");
            out.push(path.as_os_str());
            words.push(out);
        }
    }
    words.push(exe.into_os_string());
    let mut c = Command::new(&words[0]);
    c.args(&words[1..])
        .arg(role)
        .arg(family)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

enum Line {
    Server(String),
    Client(String),
    Closed(&'static str),
}

fn forward(out: std::process::ChildStdout, tx: mpsc::Sender<Line>, server: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let line = if server {
                Line::Server(line)
            } else {
                Line::Client(line)
            };
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send(Line::Closed(if server { "server" } else { "client" }));
    });
}

fn parse_result(line: &str) -> Measures {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The CPU time (user + system, all threads, live and exited) of a process so far.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// One measurement with a server process and a client process.
///
/// The server child is started (pinned and wrapped as asked) and prints `ADDR <addr>`;
/// the client child is started with that address. If the client prints `MARK start`
/// and `MARK end` around its measured part, the server's CPU time between the two is
/// returned as `server_cpu_s` in the client's measures (not under a [`Trace`], where the
/// server's pid is the tool's). When the client prints `RESULT`, the server's stdin is
/// closed; the server prints its own `RESULT` and exits; then the client's stdin is
/// closed and the client must exit. Clients keep their connections open until then, so
/// that what the server does on a peer's close falls outside the measured window.
pub fn run_pair(
    family: &str,
    server_args: &[String],
    client_args: &[String],
    placement: Placement,
    trace: Trace,
) -> (Measures, Measures) {
    let (server_cpu, client_cpu) = match (placement, cpus()) {
        (Placement::Split, Some((c, s))) => (Some(s), Some(c)),
        (Placement::Same, Some((c, _))) => (Some(c), Some(c)),
        _ => (None, None),
    };
    let what = format!("{family} {server_args:?} / {client_args:?}");
    let traced = !matches!(trace, Trace::None);
    let mut server = command("--server", family, server_args, server_cpu, &trace)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn server {what}: {e}")));
    let (tx, rx) = mpsc::channel();
    forward(server.stdout.take().expect("stdout"), tx.clone(), true);
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut client: Option<Child> = None;
    let kill_all = |server: &mut Child, client: &mut Option<Child>, why: String| -> ! {
        let _ = server.kill();
        let _ = server.wait();
        if let Some(c) = client {
            let _ = c.kill();
            let _ = c.wait();
        }
        fail(&why)
    };
    let mut cpu_start = None;
    let mut server_cpu_s = None;
    let mut client_result = None;
    let mut server_result = None;
    while server_result.is_none() || client_result.is_none() {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(_) => kill_all(
                &mut server,
                &mut client,
                format!("{what}: timed out after {CHILD_TIMEOUT:?}"),
            ),
        };
        match line {
            Line::Server(l) => {
                if let Some(addr) = l.strip_prefix("ADDR ") {
                    let mut c = command(
                        "--client",
                        family,
                        &[&[addr.to_string()], client_args].concat(),
                        client_cpu,
                        &Trace::None,
                    )
                    .spawn()
                    .unwrap_or_else(|e| fail(&format!("spawn client {what}: {e}")));
                    forward(c.stdout.take().expect("stdout"), tx.clone(), false);
                    client = Some(c);
                } else if let Some(r) = l.strip_prefix("RESULT") {
                    server_result = Some(parse_result(r));
                }
            }
            Line::Client(l) => {
                if let Some(mark) = l.strip_prefix("MARK ") {
                    // The server notes its allocation count at each mark.
                    if let Some(stdin) = server.stdin.as_mut() {
                        let _ = stdin.write_all(if mark == "start" { b"a" } else { b"b" });
                        let _ = stdin.flush();
                    }
                    if !traced && mark == "start" {
                        cpu_start = process_cpu(server.id());
                    } else if !traced {
                        server_cpu_s = cpu_start.zip(process_cpu(server.id())).map(|(a, b)| b - a);
                    }
                } else if let Some(r) = l.strip_prefix("RESULT") {
                    client_result = Some(parse_result(r));
                    // The server reports and exits when its stdin closes.
                    drop(server.stdin.take());
                }
            }
            Line::Closed(who) => {
                let done = match who {
                    "server" => server_result.is_some(),
                    _ => client_result.is_some(),
                };
                if !done {
                    kill_all(
                        &mut server,
                        &mut client,
                        format!("{what}: the {who} ended without a RESULT"),
                    );
                }
            }
        }
    }
    let status = server.wait().expect("wait server");
    let mut client = client.expect("client");
    drop(client.stdin.take());
    let client_status = client.wait().expect("wait client");
    if !status.success() || !client_status.success() {
        fail(&format!("{what}: server {status}, client {client_status}"));
    }
    let mut client_result = client_result.expect("client result");
    if let Some(cpu) = server_cpu_s {
        client_result.insert("server_cpu_s".into(), cpu);
    }
    (server_result.expect("server result"), client_result)
}

/// One measurement in one process (`--solo`), not pinned (its threads need two CPUs
/// and `taskset` pins a whole process); returns its `RESULT`.
pub fn run_solo(family: &str, args: &[String]) -> Measures {
    let mut child = command("--solo", family, args, None, &Trace::None)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("spawn solo {family}: {e}")));
    drop(child.stdin.take());
    let (tx, rx) = mpsc::channel();
    forward(child.stdout.take().expect("stdout"), tx, false);
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut result = None;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Line::Client(l)) => {
                if let Some(r) = l.strip_prefix("RESULT") {
                    result = Some(parse_result(r));
                }
            }
            Ok(_) => break,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                fail(&format!("solo {family} {args:?}: timed out"));
            }
        }
    }
    let status = child.wait().expect("wait solo");
    match result {
        Some(r) if status.success() => r,
        _ => fail(&format!("solo {family} {args:?}: {status}, no RESULT")),
    }
}

/// The server side of a pair: runs `serve` (a competitor's server) on this thread and,
/// on another, prints `ADDR` once the server is bound, notes the allocation count when
/// the client marks the start and the end of its measured part (the parent writes `a`
/// and `b` on stdin), and when stdin closes prints `RESULT` with the allocations between
/// the marks (`allocs_window`), the process's allocations in all (`allocs`), the live
/// heap growth since `ADDR` (`live_bytes`), and exits.
pub fn serve_child(serve: impl FnOnce(mpsc::Sender<SocketAddr>)) {
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let addr = rx.recv().unwrap_or_else(|_| fail("server: no address"));
        // Let the server reach its loop before the baseline is taken.
        std::thread::sleep(Duration::from_millis(50));
        let before = alloc::live_bytes();
        print_line(&format!("ADDR {addr}"));
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 64];
        let (mut start, mut end) = (None, None);
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            for &b in &buf[..n] {
                match b {
                    b'a' => start = Some(alloc::allocations()),
                    b'b' => end = Some(alloc::allocations()),
                    _ => {}
                }
            }
        }
        let live = alloc::live_bytes() - before;
        let mut result = vec![
            ("allocs", alloc::allocations() as f64),
            ("live_bytes", live as f64),
        ];
        if let (Some(a), Some(b)) = (start, end) {
            result.push(("allocs_window", (b - a) as f64));
        }
        print_result(&result);
        std::process::exit(0);
    });
    serve(tx);
    fail("server returned");
}

/// The soft limit on open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        Some(usize::MAX)
    } else {
        soft.parse().ok()
    }
}

/// Prints a line on stdout and flushes.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks until stdin closes (a client that must keep its connections open until the
/// parent is done with the server).
pub fn wait_for_stdin_eof() {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
}

/// Prints a child's result line (and flushes: children end with `process::exit`).
pub fn print_result(pairs: &[(&str, f64)]) {
    let mut line = String::from("RESULT");
    for (k, v) in pairs {
        line.push_str(&format!(" {k}={v}"));
    }
    print_line(&line);
}

pub fn fail(message: &str) -> ! {
    eprintln!("suite: {message}");
    std::process::exit(1);
}

/// Per-syscall call counts from a `strace -c -o` file.
pub fn parse_strace(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "% time  seconds  usecs/call  calls  [errors]  syscall"
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let name = *fields.last().unwrap();
        if name == "total" {
            continue;
        }
        if let Ok(n) = fields[3].parse::<f64>() {
            calls.insert(name.to_string(), n);
        }
    }
    calls
}

/// The instruction total (`summary:` or `totals:` line) of a callgrind output file.
pub fn parse_callgrind(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Server-side counts per message, from pairs run at `n` and `2n` messages: the
/// difference divided by `n`, so that start-up and tear-down cancel out.
pub struct PerMessage {
    /// System calls per message (all server threads), and the calls made at least
    /// once in twenty messages, as "epoll_wait 1.00 · recvfrom 1.00".
    pub syscalls: Option<(f64, String)>,
    /// User-space instructions per message (all server threads), under callgrind.
    pub instructions: Option<f64>,
}

/// Measures [`PerMessage`] for a family whose client takes the message count from
/// `client_args(count)`; `tag` names the temporary files.
pub fn per_message(
    config: &Config,
    family: &str,
    server_args: &[String],
    client_args: &dyn Fn(u64) -> Vec<String>,
    n: u64,
    tag: &str,
) -> PerMessage {
    let dir = std::env::temp_dir();
    let file = |what: &str, count: u64| {
        dir.join(format!(
            "sockloop-suite-{}-{family}-{tag}-{count}.{what}",
            std::process::id()
        ))
    };
    let mut calls: [BTreeMap<String, f64>; 2] = Default::default();
    for (i, count) in [n, 2 * n].into_iter().enumerate() {
        let path = file("strace", count);
        let trace = if config.strace {
            Trace::Strace(&path)
        } else {
            Trace::None
        };
        run_pair(
            family,
            server_args,
            &client_args(count),
            Placement::Split,
            trace,
        );
        calls[i] = parse_strace(&path);
        let _ = std::fs::remove_file(&path);
    }
    let syscalls = config.strace.then(|| {
        let mut total = 0.0;
        let mut parts = Vec::new();
        for (name, c2) in &calls[1] {
            let per = (c2 - calls[0].get(name).copied().unwrap_or(0.0)) / n as f64;
            total += per;
            if per >= 0.05 {
                parts.push(format!("{name} {per:.2}"));
            }
        }
        (total, parts.join(" · "))
    });
    let instructions = if config.callgrind {
        let mut totals = [0.0; 2];
        // Callgrind runs everything about fifty times slower: a tenth of the messages.
        let n = (n / 10).max(100);
        for (i, count) in [n, 2 * n].into_iter().enumerate() {
            let path = file("callgrind", count);
            run_pair(
                family,
                server_args,
                &client_args(count),
                Placement::Split,
                Trace::Callgrind(&path),
            );
            totals[i] = parse_callgrind(&path).unwrap_or(f64::NAN);
            let _ = std::fs::remove_file(&path);
        }
        // Work that depends on time rather than messages (a competitor's periodic
        // thread) can make the difference meaningless; it is not reported then.
        Some((totals[1] - totals[0]) / n as f64).filter(|per| *per >= 0.0)
    } else {
        None
    };
    PerMessage {
        syscalls,
        instructions,
    }
}

fn tool_available(tool: &str, version_flag: &str) -> bool {
    Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench -p sockloop-bench --bench suite -- [--quick] [--write] [--reps N] \
         [--only b1,b7] [--competitors {}]",
        competitors::ALL
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(",")
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(role @ ("--server" | "--client" | "--solo")) = args.first().map(String::as_str) {
        let name = args.get(1).map(String::as_str).unwrap_or("");
        let family = FAMILIES
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| fail(&format!("no family {name:?}")));
        match role {
            "--server" => (family.server)(&args[2..]),
            "--solo" => (family.solo)(&args[2..]),
            _ => {
                let addr = args
                    .get(2)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| fail(&format!("client: bad address in {args:?}")));
                (family.client)(addr, &args[3..]);
            }
        }
        return;
    }

    let mut bench = false;
    let mut quick = false;
    let mut write = false;
    let mut reps = None;
    let mut only: Option<Vec<String>> = None;
    let mut chosen: Vec<&'static Competitor> = competitors::ALL.iter().collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--write" => write = true,
            "--reps" => {
                reps = Some(
                    it.next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                        .unwrap_or_else(|| usage()),
                )
            }
            "--only" => {
                only = Some(
                    it.next()
                        .unwrap_or_else(|| usage())
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            "--competitors" => {
                chosen = it
                    .next()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(|n| {
                        competitors::find(n)
                            .unwrap_or_else(|| fail(&format!("no competitor {n:?}")))
                    })
                    .collect()
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if quick {
        // The chart writer has no unit tests (a harness = false target runs none):
        // quick mode, which CI runs, checks it on its edge cases instead.
        chart::self_check();
    }
    if !bench && !quick {
        // `cargo test` runs harness = false targets with no arguments: nothing to do.
        eprintln!(
            "suite: not run (use `cargo bench -p sockloop-bench --bench suite [-- --quick]`)"
        );
        return;
    }

    let config = Config {
        quick,
        reps: reps.unwrap_or(if quick { 1 } else { 5 }),
        competitors: chosen,
        strace: tool_available("strace", "-V"),
        callgrind: tool_available("valgrind", "--version"),
    };
    let command = format!(
        "cargo bench -p sockloop-bench --bench suite --{}",
        args.iter()
            .filter(|a| *a != "--bench")
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    let mut report = Report::new(&command, &config);
    let started = Instant::now();
    for family in FAMILIES {
        if let Some(only) = &only {
            if !only.iter().any(|o| o == family.name) {
                continue;
            }
        }
        eprintln!("suite: {} …", family.name);
        (family.run)(&config, &mut report);
    }
    report.finish(started.elapsed());
    let text = report.render();
    println!("{text}");
    if write {
        // The report goes to the repository root, the bench crate's parent.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the bench crate is in the repository");
        let path = root.join("BENCHMARKS.md");
        // With --only, the other sections of the existing report are kept.
        let text = match (&only, std::fs::read_to_string(&path)) {
            (Some(_), Ok(existing)) => report.merge_into(&existing),
            _ => text,
        };
        std::fs::write(&path, &text).expect("write BENCHMARKS.md");
        eprintln!("suite: wrote {}", path.display());
        let dir = root.join(report::CHART_DIR);
        std::fs::create_dir_all(&dir).expect("create the chart directory");
        for (file, svg) in &report.charts {
            std::fs::write(dir.join(file), svg).expect("write a chart");
            eprintln!("suite: wrote {}", dir.join(file).display());
        }
    }
    if !report.failures.is_empty() {
        for f in &report.failures {
            eprintln!("suite: FAILED: {f}");
        }
        std::process::exit(1);
    }
}
