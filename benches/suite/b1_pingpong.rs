//! B1: one connection, ping-pong. A blocking std client thread sends a message of
//! 1 B, 64 B or 1 KiB, waits for the whole echo, and records the round trip in an
//! hdrhistogram; the competitor serves on the main thread of the same child.
//!
//! Figures: round trips per second, p50/p99/p99.9 round-trip time, the server's system
//! calls per round trip (`strace -c`, main thread only), and heap allocations per round
//! trip in steady state (whole process; the client allocates nothing while measuring).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::report::{cell, ratio, table, Report, Summary};
use crate::{alloc, competitors, fail, print_result, run_child, Config, Family, Measures};

pub const FAMILY: Family = Family {
    name: "b1",
    run,
    child,
};

const SIZES: &[usize] = &[1, 64, 1024];

struct Counts {
    warm_up: u64,
    measured: u64,
    /// N for the strace runs (N and 2N).
    strace: u64,
}

fn counts(config: &Config) -> Counts {
    if config.quick {
        Counts {
            warm_up: 200,
            measured: 2_000,
            strace: 500,
        }
    } else {
        Counts {
            warm_up: 2_000,
            measured: 30_000,
            strace: 5_000,
        }
    }
}

/// The child command for one run: `b1 <competitor> <size> <warm-up> <measured>`.
pub fn child_args(competitor: &str, size: usize, warm_up: u64, measured: u64) -> Vec<String> {
    vec![
        "b1".into(),
        competitor.into(),
        size.to_string(),
        warm_up.to_string(),
        measured.to_string(),
    ]
}

fn child(args: &[String]) {
    let (Some(name), Some(size), Some(warm_up), Some(measured)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        args.get(3).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        fail(&format!("b1 child: bad arguments {args:?}"));
    };
    let competitor =
        competitors::find(name).unwrap_or_else(|| fail(&format!("no competitor {name:?}")));
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let addr = rx.recv().expect("server address");
        if let Err(e) = client(addr, size, warm_up, measured) {
            fail(&format!("b1 client: {e}"));
        }
        std::process::exit(0);
    });
    (competitor.serve)(tx);
    fail("b1: server returned");
}

fn client(addr: SocketAddr, size: usize, warm_up: u64, measured: u64) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let message = vec![0x5a; size];
    let mut reply = vec![0; size];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    for _ in 0..warm_up {
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
    }
    let allocations = alloc::allocations();
    let start = Instant::now();
    for _ in 0..measured {
        let t = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
        histogram.saturating_record(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    let allocations = alloc::allocations() - allocations;
    if reply != message {
        fail("b1: echo differs from the message");
    }
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    print_result(&[
        ("rtps", measured as f64 / secs),
        ("p50_us", us(0.5)),
        ("p99_us", us(0.99)),
        ("p999_us", us(0.999)),
        ("allocs_per_rt", allocations as f64 / measured as f64),
    ]);
    Ok(())
}

/// Per-syscall call counts from a `strace -c -o` file.
fn parse_strace(path: &std::path::Path) -> BTreeMap<String, f64> {
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

/// The server's system calls per round trip: total, and the calls that happen at
/// least once in twenty round trips, as "epoll_wait 1.00 · recvfrom 1.00".
fn syscalls(competitor: &str, size: usize, counts: &Counts) -> (f64, String) {
    let dir = std::env::temp_dir();
    let run = |n: u64| {
        let path = dir.join(format!(
            "sockloop-suite-{}-{competitor}-{size}-{n}.strace",
            std::process::id()
        ));
        run_child(
            &child_args(competitor, size, counts.warm_up, n),
            Some(&path),
        );
        let calls = parse_strace(&path);
        let _ = std::fs::remove_file(&path);
        calls
    };
    let n = counts.strace;
    let one = run(n);
    let two = run(2 * n);
    let mut total = 0.0;
    let mut parts = Vec::new();
    for (name, c2) in &two {
        let per = (c2 - one.get(name).copied().unwrap_or(0.0)) / n as f64;
        total += per;
        if per >= 0.05 {
            parts.push(format!("{name} {per:.2}"));
        }
    }
    (total, parts.join(" · "))
}

fn run(config: &Config, report: &mut Report) {
    let counts = counts(config);
    let mut text = format!(
        "## B1 — one connection, ping-pong\n\n\
         A blocking std client thread sends a message and waits for the whole echo, \
         {} round trips after {} of warm-up, per run; the server is the competitor, on the \
         child's main thread. Round-trip times are the client's (hdrhistogram), in µs. \
         The ratio is sockloop's median ÷ the competitor's (round trips/s: above 1 means \
         sockloop is faster). Allocations are the whole process's per round trip in steady \
         state.\n",
        counts.measured, counts.warm_up
    );
    for &size in SIZES {
        // name -> metric -> values over repetitions
        let mut results: BTreeMap<&str, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
        for rep in 0..config.reps {
            for c in &config.competitors {
                eprintln!("suite: b1 {size} B rep {} {}", rep + 1, c.name);
                let m: Measures = run_child(
                    &child_args(c.name, size, counts.warm_up, counts.measured),
                    None,
                );
                let entry = results.entry(c.name).or_default();
                for (k, v) in m {
                    entry.entry(k).or_default().push(v);
                }
            }
        }
        let get = |name: &str, key: &str| {
            results
                .get(name)
                .and_then(|m| m.get(key))
                .and_then(|v| Summary::of(v))
        };
        let mut rows = Vec::new();
        for c in &config.competitors {
            let (sys, breakdown) = if config.strace {
                eprintln!("suite: b1 {size} B strace {}", c.name);
                let (total, parts) = syscalls(c.name, size, &counts);
                (format!("{total:.2}"), parts)
            } else {
                ("–".into(), "–".into())
            };
            rows.push(vec![
                format!("**{}**", c.name),
                cell(get(c.name, "rtps"), 0),
                ratio(get("sockloop", "rtps"), get(c.name, "rtps")),
                cell(get(c.name, "p50_us"), 1),
                cell(get(c.name, "p99_us"), 1),
                cell(get(c.name, "p999_us"), 1),
                sys,
                breakdown,
                cell(get(c.name, "allocs_per_rt"), 2),
            ]);
        }
        text.push_str(&format!("\n### {size} B\n\n"));
        text.push_str(&table(
            &[
                "competitor",
                "round trips/s",
                "sockloop ÷ this",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "server syscalls / RT",
                "which",
                "allocs / RT",
            ],
            &rows,
        ));
    }
    report.section(text);
}
