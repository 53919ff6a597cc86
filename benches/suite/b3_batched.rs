//! B3: batched sends. One connection; a blocking std client process sends a 1-byte
//! tick, the server answers it with 16 separate 64-byte messages (16 application
//! writes), and the client reads the 1,024 bytes, checks them and sends the next tick.
//! The variants differ in how the server's 16 writes reach the kernel: sockloop queues
//! them and sends them in one call (`send`) when the handler returns; the others write each message
//! on its own, or hand the 16 buffers to one vectored write (the floor).
//!
//! Figures: ticks per second and ns per message from the client, and per message the
//! server's CPU time, system calls, user-space instructions and heap allocations, and
//! the TCP segments the machine sent (`Tcp: OutSegs` in /proc/net/snmp).

mod servers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::time::Instant;

use servers::{MESSAGES, PER_TICK, SIZE, TICK_BYTES};

use crate::chart::{Chart, Group};
use crate::report::{bar, cell, ratio, table, Repeats, Report};
use crate::{
    fail, no_role, per_message, print_line, print_result, run_pair, serve_child,
    wait_for_stdin_eof, Config, Family, Placement, Trace,
};

pub const FAMILY: Family = Family {
    name: "b3",
    run,
    server,
    client,
    solo: no_role,
};

/// One way of sending the 16 messages of a tick.
struct Variant {
    /// The name in the table and on the server's command line.
    name: &'static str,
    /// The competitor it belongs to (for `--competitors`).
    competitor: &'static str,
    describe: &'static str,
    serve: fn(Sender<SocketAddr>),
    /// Cannot turn Nagle's algorithm off: a tick waits for the client's delayed ACK
    /// (about 40 ms), so it runs a hundredth of the ticks and is not run under callgrind.
    nagle: bool,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "sockloop",
        competitor: "sockloop",
        describe: "16 × `socket.write` in the `Received` handler: queued, one `send` when it \
                   returns",
        serve: servers::sockloop,
        nagle: false,
    },
    Variant {
        name: "mio write",
        competitor: "mio",
        describe: "hand-written mio loop, one `write` per 64 B message",
        serve: servers::mio_write,
        nagle: false,
    },
    Variant {
        name: "mio writev",
        competitor: "mio",
        describe: "hand-written mio loop, one `write_vectored` of the 16 messages (the floor)",
        serve: servers::mio_writev,
        nagle: false,
    },
    Variant {
        name: "tokio write_all",
        competitor: "tokio",
        describe: "tokio current_thread, 16 × `write_all`",
        serve: servers::tokio_write_all,
        nagle: false,
    },
    Variant {
        name: "tokio write_vectored",
        competitor: "tokio",
        describe: "tokio current_thread, one `write_vectored` of 16 `IoSlice`s, looping on short \
                   writes",
        serve: servers::tokio_write_vectored,
        nagle: false,
    },
    Variant {
        name: "std write",
        competitor: "std",
        describe: "blocking std::net, 16 × `write_all`",
        serve: servers::std_write,
        nagle: false,
    },
    Variant {
        name: "std writev",
        competitor: "std",
        describe: "blocking std::net, `write_vectored` of the 16 messages, looping on short \
                   writes",
        serve: servers::std_writev,
        nagle: false,
    },
    Variant {
        name: "message-io send",
        competitor: "message-io",
        describe: "message-io node, 16 × `network().send` (no TCP_NODELAY: message-io cannot \
                   set it)",
        serve: servers::message_io,
        nagle: true,
    },
];

struct Counts {
    warm_up: u64,
    /// Ticks measured.
    measured: u64,
    /// N ticks for the counted runs (N and 2N).
    counted: u64,
}

fn counts(config: &Config) -> Counts {
    if config.quick {
        Counts {
            warm_up: 50,
            measured: 300,
            counted: 100,
        }
    } else {
        Counts {
            warm_up: 1_000,
            measured: 10_000,
            counted: 2_000,
        }
    }
}

impl Counts {
    /// The counts for a variant: a hundredth (at least 10) for one stuck with Nagle.
    fn for_variant(&self, v: &Variant) -> Counts {
        if !v.nagle {
            return Counts { ..*self };
        }
        let scale = |n: u64| (n / 100).max(10);
        Counts {
            warm_up: scale(self.warm_up),
            measured: scale(self.measured),
            counted: scale(self.counted),
        }
    }
}

/// The client command: `<warm-up ticks> <measured ticks>`.
fn client_args(warm_up: u64, measured: u64) -> Vec<String> {
    vec![warm_up.to_string(), measured.to_string()]
}

/// `--server b3 <variant>`.
fn server(args: &[String]) {
    let name = args.first().map(String::as_str).unwrap_or("");
    let variant = VARIANTS
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| fail(&format!("b3: no variant {name:?}")));
    serve_child(variant.serve);
}

/// `Tcp: OutSegs` from /proc/net/snmp: TCP segments sent by the whole machine (this
/// network namespace) since boot.
fn tcp_out_segs() -> Option<f64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = snmp.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let column = names.split_whitespace().position(|n| n == "OutSegs")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

fn client(addr: SocketAddr, args: &[String]) {
    let (Some(warm_up), Some(measured)) = (
        args.first().and_then(|s| s.parse::<u64>().ok()),
        args.get(1).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        fail(&format!("b3 client: bad arguments {args:?}"));
    };
    if let Err(e) = ticks(addr, warm_up, measured) {
        fail(&format!("b3 client: {e}"));
    }
}

fn ticks(addr: SocketAddr, warm_up: u64, measured: u64) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let expected: Vec<u8> = MESSAGES.concat();
    let mut reply = [0u8; TICK_BYTES];
    let mut tick = |stream: &mut TcpStream| -> std::io::Result<()> {
        stream.write_all(b"t")?;
        stream.read_exact(&mut reply)?;
        if reply[..] != expected[..] {
            fail("b3: the answer to a tick differs from the 16 messages");
        }
        Ok(())
    };
    for _ in 0..warm_up {
        tick(&mut stream)?;
    }
    let segs_start = tcp_out_segs();
    print_line("MARK start");
    let start = Instant::now();
    for _ in 0..measured {
        tick(&mut stream)?;
    }
    let secs = start.elapsed().as_secs_f64();
    print_line("MARK end");
    let segs = tcp_out_segs().zip(segs_start).map(|(b, a)| b - a);
    let messages = (measured * PER_TICK as u64) as f64;
    let mut result = vec![
        ("ticks_per_s", measured as f64 / secs),
        ("ns_per_msg", secs * 1e9 / messages),
    ];
    if let Some(segs) = segs {
        result.push(("segs_per_tick", segs / measured as f64));
        result.push(("segs_per_msg", segs / messages));
    }
    print_result(&result);
    // The connection stays open until the server has reported.
    wait_for_stdin_eof();
    drop(stream);
    Ok(())
}

/// The timed runs: every variant once per repetition, variants alternating.
fn measure(config: &Config, variants: &[&'static Variant], counts: &Counts) -> Repeats {
    let mut results = Repeats::default();
    for rep in 0..config.reps {
        for v in variants {
            let counts = counts.for_variant(v);
            let messages = (counts.measured * PER_TICK as u64) as f64;
            eprintln!("suite: b3 rep {} {}", rep + 1, v.name);
            let (server, mut m) = run_pair(
                "b3",
                &[v.name.to_string()],
                &client_args(counts.warm_up, counts.measured),
                Placement::Split,
                Trace::None,
            );
            if let Some(a) = server.get("allocs_window") {
                m.insert("allocs_per_msg".into(), a / messages);
            }
            if let Some(cpu) = m.get("server_cpu_s").copied() {
                m.insert("cpu_us_per_msg".into(), cpu * 1e6 / messages);
            }
            results.add(v.name, m);
        }
    }
    results
}

/// The counted columns of a variant: system calls per message, the calls per tick,
/// instructions per message.
fn counted_cells(config: &Config, v: &Variant, counts: &Counts) -> [String; 3] {
    eprintln!("suite: b3 counts {}", v.name);
    let counts = &counts.for_variant(v);
    // Callgrind's start-up alone takes most of a second a run: the quick run (a smoke
    // test) counts instructions for sockloop only.
    let config = Config {
        quick: config.quick,
        reps: config.reps,
        competitors: config.competitors.clone(),
        strace: config.strace,
        callgrind: config.callgrind && !v.nagle && (!config.quick || v.name == "sockloop"),
    };
    let per = per_message(
        &config,
        "b3",
        &[v.name.to_string()],
        &|n| client_args(counts.warm_up, n),
        counts.counted,
        &v.name.replace(' ', "-"),
    );
    // per_message counts per tick (the client's unit); a tick is 16 messages.
    let per_msg = |x: f64| x / PER_TICK as f64;
    let (sys, which) = per.syscalls.map_or(("–".into(), "–".into()), |(t, w)| {
        (format!("{:.3}", per_msg(t)), w)
    });
    let instructions = per
        .instructions
        .map_or("–".into(), |i| format!("{:.0}", per_msg(i)));
    [sys, which, instructions]
}

fn run(config: &Config, report: &mut Report) {
    let counts = counts(config);
    let variants: Vec<&'static Variant> = VARIANTS
        .iter()
        .filter(|v| config.competitors.iter().any(|c| c.name == v.competitor))
        .collect();
    let results = measure(config, &variants, &counts);
    let get = |name: &str, metric: &str| results.get(name, metric);
    let mut rows = Vec::new();
    for v in &variants {
        let mut row = vec![
            format!("**{}**", v.name),
            cell(get(v.name, "ticks_per_s"), 0),
            cell(get(v.name, "ns_per_msg"), 0),
            ratio(get("sockloop", "ns_per_msg"), get(v.name, "ns_per_msg")),
            cell(get(v.name, "cpu_us_per_msg"), 2),
        ];
        row.extend(counted_cells(config, v, &counts));
        row.push(cell(get(v.name, "allocs_per_msg"), 3));
        row.push(cell(get(v.name, "segs_per_tick"), 2));
        row.push(cell(get(v.name, "segs_per_msg"), 2));
        if let Some(a) = get(v.name, "allocs_per_msg").filter(|a| a.max != 0.0) {
            if v.name == "sockloop" {
                report.failures.push(format!(
                    "sockloop allocated in steady state: {} allocations per message in B3",
                    a.cell(3)
                ));
            }
        }
        rows.push(row);
    }
    let headers = [
        "variant",
        "ticks/s",
        "ns / message",
        "sockloop ÷ this (ns / message, below 1 = sockloop faster)",
        "server CPU µs / message",
        "server syscalls / message",
        "which (per tick)",
        "server instructions / message",
        "server allocs / message",
        "TCP segments / tick",
        "TCP segments / message",
    ];
    let mut text = method(config, &counts, &variants);
    text.push('\n');
    text.push_str(&table(&headers, &rows));
    let chart = report.chart(
        "b3",
        &Chart {
            title: "B3 — 16 × 64 B per tick".into(),
            unit: "ns per message".into(),
            higher_is_better: false,
            groups: vec![Group {
                name: "one connection, a tick answered with 16 messages".into(),
                bars: variants
                    .iter()
                    .map(|v| bar(v.name, get(v.name, "ns_per_msg")))
                    .collect(),
            }],
        },
    );
    text.push_str(&chart);
    report.section(text);
}

fn method(config: &Config, counts: &Counts, variants: &[&Variant]) -> String {
    let list: String = variants
        .iter()
        .map(|v| format!("- **{}**: {}\n", v.name, v.describe))
        .collect();
    let autocorking = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_autocorking")
        .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string());
    let quick = if config.quick {
        "; in quick mode, for sockloop only"
    } else {
        ""
    };
    format!(
        "## B3 — batched sends: {PER_TICK} × {SIZE} B per tick\n\n\
         One connection. A blocking std client process sends a 1-byte tick; the server \
         answers it with {PER_TICK} separate {SIZE} B messages ({PER_TICK} application \
         writes); the client reads the {TICK_BYTES} bytes, checks them and sends the next \
         tick: {measured} ticks after {warm_up} of warm-up, per run. Every server sets \
         TCP_NODELAY, except message-io, which cannot: its 16 sends per tick meet Nagle's \
         algorithm and the client's delayed ACK, so a tick takes about 40 ms; it runs a \
         hundredth of the ticks (at least 10) and is not run under callgrind. ns / message is the client's time ÷ ({measured} × {PER_TICK}); the \
         ratio is sockloop's median ns / message ÷ the variant's (below 1 means sockloop is \
         faster). Server CPU is the server process's user + system time over the measured \
         ticks. System calls and instructions are the server process's, from runs of {n} \
         and {n2} ticks (instructions: {ni} and {ni2}{quick}), per message; the calls are also \
         listed per tick (those made at least once in twenty ticks). Allocations are the \
         server process's during the measured ticks. TCP segments are the machine's \
         `Tcp: OutSegs` (/proc/net/snmp) over the measured ticks: every segment sent in \
         the window, in both directions (ticks, acks and data) and by any other process, \
         so they mean something only on an otherwise quiet machine; a tick that left as \
         one data segment costs at least 2 (the tick and the answer). The kernel may coalesce \
         small writes by itself (`net.ipv4.tcp_autocorking`, {autocorking} here).\n\n{list}",
        measured = counts.measured,
        warm_up = counts.warm_up,
        n = counts.counted,
        n2 = 2 * counts.counted,
        ni = (counts.counted / 10).max(100),
        ni2 = 2 * (counts.counted / 10).max(100),
    )
}
