//! B1: one connection, ping-pong. A blocking std client process sends a message of
//! 1 B, 64 B or 1 KiB, waits for the whole echo, and records the round trip in an
//! hdrhistogram; the competitor serves in its own process, on another CPU (and, in the
//! same-CPU variant, on the client's CPU).
//!
//! Figures: round trips per second, p50/p99/p99.9 round-trip time, and per round trip
//! the server's system calls, user-space instructions and heap allocations.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::chart::{Chart, Group};
use crate::report::{bar, cell, ratio, table, Repeats, Report};
use crate::{
    competitors, fail, no_role, per_message, print_line, print_result, run_pair, serve_child,
    wait_for_stdin_eof, Config, Family, Measures, Placement,
};

pub const FAMILY: Family = Family {
    name: "b1",
    run,
    server,
    client,
    solo: no_role,
};

const SIZES: &[usize] = &[1, 64, 1024];

struct Counts {
    warm_up: u64,
    measured: u64,
    /// N for the counted runs (N and 2N).
    counted: u64,
}

fn counts(config: &Config) -> Counts {
    if config.quick {
        Counts {
            warm_up: 200,
            measured: 2_000,
            counted: 500,
        }
    } else {
        Counts {
            warm_up: 2_000,
            measured: 30_000,
            counted: 5_000,
        }
    }
}

/// The server command of a B1 (or B7) pair: `<competitor>`.
pub fn server_args(competitor: &str) -> Vec<String> {
    vec![competitor.into()]
}

/// The client command: `<size> <warm-up> <measured>`.
pub fn client_args(size: usize, warm_up: u64, measured: u64) -> Vec<String> {
    vec![size.to_string(), warm_up.to_string(), measured.to_string()]
}

/// `--server b1 <competitor>`: the competitor's echo server.
pub fn server(args: &[String]) {
    let name = args.first().map(String::as_str).unwrap_or("");
    let competitor =
        competitors::find(name).unwrap_or_else(|| fail(&format!("no competitor {name:?}")));
    serve_child(competitor.serve);
}

fn client(addr: SocketAddr, args: &[String]) {
    let (Some(size), Some(warm_up), Some(measured)) = (
        args.first().and_then(|s| s.parse::<usize>().ok()),
        args.get(1).and_then(|s| s.parse::<u64>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        fail(&format!("b1 client: bad arguments {args:?}"));
    };
    if let Err(e) = ping_pong(addr, size, warm_up, measured) {
        fail(&format!("b1 client: {e}"));
    }
}

fn ping_pong(addr: SocketAddr, size: usize, warm_up: u64, measured: u64) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let message = vec![0x5a; size];
    let mut reply = vec![0; size];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    for _ in 0..warm_up {
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
    }
    print_line("MARK start");
    let start = Instant::now();
    for _ in 0..measured {
        let t = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
        histogram.saturating_record(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    print_line("MARK end");
    if reply != message {
        fail("b1: echo differs from the message");
    }
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    print_result(&[
        ("rtps", measured as f64 / secs),
        ("p50_us", us(0.5)),
        ("p99_us", us(0.99)),
        ("p999_us", us(0.999)),
    ]);
    // The connection stays open until the server has reported.
    wait_for_stdin_eof();
    drop(stream);
    Ok(())
}

fn run(config: &Config, report: &mut Report) {
    let counts = counts(config);
    let mut text = format!(
        "## B1 — one connection, ping-pong\n\n\
         A blocking std client process sends a message and waits for the whole echo, \
         {} round trips after {} of warm-up, per run; the server is the competitor, in its \
         own process. Round-trip times are the client's (hdrhistogram), in µs. Server CPU is \
         the server process's user + system time over the measured round trips. The ratio is \
         sockloop's median ÷ the competitor's (round trips/s: above 1 means sockloop is \
         faster). System calls and instructions are the server process's per round trip, from \
         runs of {n} and {n2} round trips (instructions: {ni} and {ni2}); allocations are \
         the server process's during the measured round trips.\n",
        counts.measured,
        counts.warm_up,
        n = counts.counted,
        n2 = 2 * counts.counted,
        ni = (counts.counted / 10).max(100),
        ni2 = 2 * (counts.counted / 10).max(100),
    );
    let mut cases: Vec<(usize, Placement)> = SIZES.iter().map(|&s| (s, Placement::Split)).collect();
    cases.push((64, Placement::Same));
    let mut groups = Vec::new();
    for (size, placement) in cases {
        let mut results = Repeats::default();
        for rep in 0..config.reps {
            for c in &config.competitors {
                eprintln!(
                    "suite: b1 {size} B {placement:?} rep {} {}",
                    rep + 1,
                    c.name
                );
                let (server, mut m): (Measures, Measures) = run_pair(
                    "b1",
                    &server_args(c.name),
                    &client_args(size, counts.warm_up, counts.measured),
                    placement,
                    crate::Trace::None,
                );
                if let Some(a) = server.get("allocs_window") {
                    m.insert("allocs_per_rt".into(), a / counts.measured as f64);
                }
                if let Some(cpu) = m.get("server_cpu_s").copied() {
                    m.insert("cpu_us_per_rt".into(), cpu * 1e6 / counts.measured as f64);
                }
                results.add(c.name, m);
            }
        }
        let get = |name: &str, metric: &str| results.get(name, metric);
        // The counts do not depend on placement; the quick run takes them at 64 B only.
        let counted = placement == Placement::Split && (!config.quick || size == 64);
        let mut rows = Vec::new();
        for c in &config.competitors {
            let mut row = vec![
                format!("**{}**", c.name),
                cell(get(c.name, "rtps"), 0),
                ratio(get("sockloop", "rtps"), get(c.name, "rtps")),
                cell(get(c.name, "p50_us"), 1),
                cell(get(c.name, "p99_us"), 1),
                cell(get(c.name, "p999_us"), 1),
                cell(get(c.name, "cpu_us_per_rt"), 2),
            ];
            if counted {
                eprintln!("suite: b1 {size} B counts {}", c.name);
                let per = per_message(
                    config,
                    "b1",
                    &server_args(c.name),
                    &|n| client_args(size, counts.warm_up, n),
                    counts.counted,
                    &format!("{}-{size}", c.name),
                );
                let (sys, which) = per.syscalls.map_or(("–".into(), "–".into()), |(t, w)| {
                    (format!("{t:.2}"), w)
                });
                row.push(sys);
                row.push(which);
                row.push(per.instructions.map_or("–".into(), |i| format!("{i:.0}")));
            }
            row.push(cell(get(c.name, "allocs_per_rt"), 3));
            if let Some(a) = get(c.name, "allocs_per_rt").filter(|a| a.max != 0.0) {
                if c.name == "sockloop" {
                    report.failures.push(format!(
                        "sockloop allocated in steady state: {} allocations per round trip \
                         at {size} B",
                        a.cell(3)
                    ));
                }
            }
            rows.push(row);
        }
        let mut headers = vec![
            "competitor",
            "round trips/s",
            "sockloop ÷ this",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "server CPU µs / RT",
        ];
        if counted {
            headers.extend(["server syscalls / RT", "which", "server instructions / RT"]);
        }
        headers.push("server allocs / RT");
        let variant = match placement {
            Placement::Same => ", server and client on the same CPU",
            _ => "",
        };
        groups.push(Group {
            name: format!("{size} B{variant}"),
            bars: config
                .competitors
                .iter()
                .map(|c| bar(c.name, get(c.name, "rtps")))
                .collect(),
        });
        text.push_str(&format!("\n### {size} B{variant}\n\n"));
        text.push_str(&table(&headers, &rows));
    }
    let chart = report.chart(
        "b1",
        &Chart {
            title: "B1 — one connection, ping-pong".into(),
            unit: "round trips/s".into(),
            higher_is_better: true,
            groups,
        },
    );
    text.push_str(&chart);
    report.section(text);
}
