//! B7: memory. Heap bytes per idle connection (counting allocator, live bytes) with
//! thousands of idle connections open, and heap allocations per echoed message in
//! steady state (a B1 child at 64 B; must be 0 for sockloop — the suite fails if not).
//!
//! The idle child: the competitor serves on the main thread; a client thread notes the
//! live heap, opens the connections one by one, sends one byte on each and waits for
//! its echo (so every server connection has been accepted and has read once), lets the
//! server settle, and notes the live heap again. Client and server share the process
//! and its descriptor limit, so the count is capped at (soft `ulimit -n` − 64) ÷ 2;
//! the driver raises no limit and says in the report when it had to cap.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use crate::report::{cell, ratio, table, Report, Summary};
use crate::{alloc, b1_pingpong, competitors, fail, print_result, run_child, Config, Family};

pub const FAMILY: Family = Family {
    name: "b7",
    run,
    child,
};

/// Idle connections wanted (full run, quick run).
const IDLE: (usize, usize) = (5_000, 500);

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        Some(usize::MAX)
    } else {
        soft.parse().ok()
    }
}

fn child(args: &[String]) {
    let (Some(name), Some(count)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        fail(&format!("b7 child: bad arguments {args:?}"));
    };
    let competitor =
        competitors::find(name).unwrap_or_else(|| fail(&format!("no competitor {name:?}")));
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let addr = rx.recv().expect("server address");
        // Everything the client keeps is allocated before the first reading.
        let mut streams: Vec<TcpStream> = Vec::with_capacity(count);
        let mut byte = [0u8; 1];
        std::thread::sleep(Duration::from_millis(50));
        let before = alloc::live_bytes();
        for _ in 0..count {
            let mut s = TcpStream::connect(addr)
                .unwrap_or_else(|e| fail(&format!("b7 connect #{}: {e}", streams.len())));
            s.write_all(b"x")
                .and_then(|()| s.read_exact(&mut byte))
                .unwrap_or_else(|e| fail(&format!("b7 echo #{}: {e}", streams.len())));
            streams.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        let after = alloc::live_bytes();
        print_result(&[
            ("connections", count as f64),
            ("bytes_per_conn", (after - before) as f64 / count as f64),
        ]);
        std::process::exit(0);
    });
    (competitor.serve)(tx);
    fail("b7: server returned");
}

fn run(config: &Config, report: &mut Report) {
    let wanted = if config.quick { IDLE.1 } else { IDLE.0 };
    let limit = open_files_limit();
    let cap = limit.map_or(wanted, |l| l.saturating_sub(64) / 2);
    let count = wanted.min(cap);
    let mut note = String::new();
    if count < wanted {
        note = format!(
            "\n**Capped at {count} idle connections** (wanted {wanted}): the soft open-files \
             limit is {}, and client and server share the child process. Raise it with \
             `ulimit -n` to measure {wanted}.\n",
            limit.unwrap_or(0)
        );
    }
    let (warm_up, measured) = if config.quick {
        (200, 2_000)
    } else {
        (2_000, 20_000)
    };

    let mut idle: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut allocs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for rep in 0..config.reps {
        for c in &config.competitors {
            eprintln!("suite: b7 rep {} {}", rep + 1, c.name);
            let m = run_child(&["b7".into(), c.name.into(), count.to_string()], None);
            idle.entry(c.name)
                .or_default()
                .push(m.get("bytes_per_conn").copied().unwrap_or(f64::NAN));
            let m = run_child(
                &b1_pingpong::child_args(c.name, 64, warm_up, measured),
                None,
            );
            allocs
                .entry(c.name)
                .or_default()
                .push(m.get("allocs_per_rt").copied().unwrap_or(f64::NAN));
        }
    }
    let get =
        |map: &BTreeMap<&str, Vec<f64>>, name: &str| map.get(name).and_then(|v| Summary::of(v));
    let rows: Vec<Vec<String>> = config
        .competitors
        .iter()
        .map(|c| {
            vec![
                format!("**{}**", c.name),
                cell(get(&idle, c.name), 0),
                ratio(get(&idle, "sockloop"), get(&idle, c.name)),
                cell(get(&allocs, c.name), 3),
            ]
        })
        .collect();
    if let Some(s) = get(&allocs, "sockloop") {
        if s.max != 0.0 {
            report.failures.push(format!(
                "sockloop allocated in steady state: {} allocations per echoed message",
                s.cell(3)
            ));
        }
    }
    let mut text = format!(
        "## B7 — memory\n\n\
         Heap bytes per idle connection: live heap (counting allocator, requested sizes) \
         with {count} idle connections open, each having echoed one byte, minus the live \
         heap before the first connect, ÷ {count}. Kernel socket buffers and thread stacks \
         are not heap and are not counted. The ratio is sockloop's median ÷ the \
         competitor's (below 1 means sockloop uses less).\n\n\
         Allocations per echoed message: a B1 child at 64 B, {measured} round trips after \
         {warm_up} of warm-up; the whole process's allocations ÷ round trips.\n{note}\n"
    );
    text.push_str(&table(
        &[
            "competitor",
            "heap bytes / idle connection",
            "sockloop ÷ this",
            "allocations / echoed message",
        ],
        &rows,
    ));
    report.section(text);
}
