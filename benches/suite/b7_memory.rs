//! B7: memory. Heap bytes per idle connection (counting allocator, live bytes of the
//! server process) with thousands of idle connections open, and heap allocations per
//! echoed message in steady state (must be 0 for sockloop — the suite fails if not).
//!
//! The server is B1's (`serve_child` notes the live heap when it is bound and again when
//! its stdin closes). The client process opens the connections one by one, sends one
//! byte on each and waits for its echo (so every server connection has been accepted
//! and has read once), lets the server settle, reports, and keeps the connections open
//! until the parent has the server's figure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::chart::{Chart, Group};
use crate::report::{bar, cell, ratio, table, Report, Summary};
use crate::{
    b1_pingpong, fail, no_role, open_files_limit, print_result, run_pair, wait_for_stdin_eof,
    Config, Family, Placement, Trace,
};

pub const FAMILY: Family = Family {
    name: "b7",
    run,
    server: b1_pingpong::server,
    client,
    solo: no_role,
};

/// Idle connections wanted (full run, quick run).
const IDLE: (usize, usize) = (5_000, 500);

fn client(addr: SocketAddr, args: &[String]) {
    let Some(count) = args.first().and_then(|s| s.parse::<usize>().ok()) else {
        fail(&format!("b7 client: bad arguments {args:?}"));
    };
    let mut streams: Vec<TcpStream> = Vec::with_capacity(count);
    let mut byte = [0u8; 1];
    for _ in 0..count {
        let mut s = TcpStream::connect(addr)
            .unwrap_or_else(|e| fail(&format!("b7 connect #{}: {e}", streams.len())));
        s.write_all(b"x")
            .and_then(|()| s.read_exact(&mut byte))
            .unwrap_or_else(|e| fail(&format!("b7 echo #{}: {e}", streams.len())));
        streams.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    print_result(&[("connections", count as f64)]);
    wait_for_stdin_eof();
    drop(streams);
}

fn run(config: &Config, report: &mut Report) {
    let wanted = if config.quick { IDLE.1 } else { IDLE.0 };
    let limit = open_files_limit();
    // The server process holds one descriptor per connection (the client another, in its
    // own process, under the same limit).
    let cap = limit.map_or(wanted, |l| l.saturating_sub(64));
    let count = wanted.min(cap);
    let mut note = String::new();
    if count < wanted {
        note = format!(
            "\n**Capped at {count} idle connections** (wanted {wanted}): the soft open-files \
             limit is {}, and the server needs one descriptor per connection. Raise it with \
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
            let (server, _) = run_pair(
                "b7",
                &b1_pingpong::server_args(c.name),
                &[count.to_string()],
                Placement::Split,
                Trace::None,
            );
            idle.entry(c.name)
                .or_default()
                .push(server.get("live_bytes").copied().unwrap_or(f64::NAN) / count as f64);
            // Allocations of the server process during the measured echoes of a B1 pair.
            let (server, _) = run_pair(
                "b1",
                &b1_pingpong::server_args(c.name),
                &b1_pingpong::client_args(64, warm_up, measured),
                Placement::Split,
                Trace::None,
            );
            let per = server.get("allocs_window").copied().unwrap_or(f64::NAN) / measured as f64;
            allocs.entry(c.name).or_default().push(per);
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
         Heap bytes per idle connection: the server process's live heap (counting \
         allocator, requested sizes) with {count} idle connections open, each having echoed \
         one byte, minus its live heap when it was bound, ÷ {count}. Kernel socket buffers and thread stacks \
         are not heap and are not counted. The ratio is sockloop's median ÷ the \
         competitor's (below 1 means sockloop uses less).\n\n\
         Allocations per echoed message: a B1 pair at 64 B, {measured} round trips after \
         {warm_up} of warm-up; the server process's allocations during the measured round \
         trips ÷ {measured}.\n{note}\n"
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
    let chart = report.chart(
        "b7",
        &Chart {
            title: "B7 — heap bytes per idle connection".into(),
            unit: "bytes".into(),
            higher_is_better: false,
            groups: vec![Group {
                name: format!("{count} idle connections"),
                bars: config
                    .competitors
                    .iter()
                    .map(|c| bar(c.name, get(&idle, c.name)))
                    .collect(),
            }],
        },
    );
    text.push_str(&chart);
    report.section(text);
}
