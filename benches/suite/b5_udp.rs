//! B5: UDP datagrams per second on loopback, one sender and one receiver (two threads
//! of one process, not pinned), 64-byte and 1,200-byte payloads, with a window of
//! datagrams in flight (see `competitors/udp.rs`) so that the rate is the pair's and
//! the receive buffer does not overflow; loss is what never arrived. System calls per
//! datagram come from `strace -f -c` on the whole process (both sides), as
//! (count at 2N − count at N) ÷ N; allocations per datagram from the counting
//! allocator over the measured part (both sides).
//!
//! Rows (a competitor of `--competitors` each; the quinn-udp rows always run):
//! sockloop batched (GSO out, GRO and `recvmmsg` in) against quinn-udp (GSO out, GRO
//! and `recvmmsg` in); both senders toward a plain receiver (mio, one `recvfrom` a
//! datagram); sockloop without batching against tokio and a hand-written mio loop
//! (the floor); and toward eight destinations in turn, where GSO cannot apply and
//! sockloop batches with `sendmmsg`.

use crate::chart::{Chart, Group};

use crate::competitors::udp::{self, Receive, Send};
use crate::report::{bar, cell, ratio, table, Repeats, Report};
use crate::{fail, no_client, no_role, parse_strace, print_result, run_solo, Config, Family};

pub const FAMILY: Family = Family {
    name: "b5",
    run,
    server: no_role,
    client: no_client,
    solo,
};

/// The payload sizes measured.
const PAYLOADS: &[usize] = &[64, 1_200];

/// One pair of sender and receiver.
struct Row {
    key: &'static str,
    label: &'static str,
    competitor: &'static str,
    describe: &'static str,
    send: Send,
    receive: Receive,
    /// Destinations (receiving sockets), sent to in turn.
    k: usize,
}

const ROWS: &[Row] = &[
    Row {
        key: "sockloop",
        label: "sockloop batched, GSO → GRO",
        competitor: "sockloop",
        describe: "`send_to` 64 times per handler call (a zero-delay timer), left as one GSO \
                   `sendmsg`; the receiver batches (`UDP_GRO`, `recvmmsg`) and delivers each \
                   datagram as its own message",
        send: udp::sockloop_send_batched,
        receive: udp::sockloop_receive_batched,
        k: 1,
    },
    Row {
        key: "quinn",
        label: "quinn-udp GSO → GRO",
        competitor: "quinn-udp",
        describe: "quinn-udp 0.5 `UdpSocketState::try_send` with trains of up to 64 segments \
                   from one contiguous buffer; its `recv` (GRO, `recvmmsg`) on a \
                   non-blocking socket until `WouldBlock`, readiness from mio",
        send: udp::quinn_send,
        receive: udp::quinn_receive,
        k: 1,
    },
    Row {
        key: "sockloop-trains",
        label: "sockloop trains, GSO → GRO",
        competitor: "sockloop",
        describe: "`send_segments_to` once per handler call (a zero-delay timer) with a burst \
                   of datagrams built one after the other in one buffer, as the quinn-udp \
                   sender has them, left as one GSO `sendmsg`; the batched sockloop receiver",
        send: udp::sockloop_send_trains,
        receive: udp::sockloop_receive_batched,
        k: 1,
    },
    Row {
        key: "sockloop-plain-rx",
        label: "sockloop batched → plain receiver",
        competitor: "sockloop",
        describe: "the sockloop GSO sender toward the mio receiver (one `recvfrom` a datagram, \
                   no GRO)",
        send: udp::sockloop_send_batched,
        receive: udp::mio_receive,
        k: 1,
    },
    Row {
        key: "quinn-plain-rx",
        label: "quinn-udp GSO → plain receiver",
        competitor: "quinn-udp",
        describe: "the quinn-udp GSO sender toward the same mio receiver",
        send: udp::quinn_send,
        receive: udp::mio_receive,
        k: 1,
    },
    Row {
        key: "sockloop-unbatched",
        label: "sockloop unbatched",
        competitor: "sockloop",
        describe: "both sides with `DatagramSocketControl::batching(false)`: one `sendmsg` \
                   and one `recvmsg` a datagram",
        send: udp::sockloop_send_plain,
        receive: udp::sockloop_receive_plain,
        k: 1,
    },
    Row {
        key: "tokio",
        label: "tokio UdpSocket",
        competitor: "tokio",
        describe: "tokio current_thread runtimes, `send_to(..).await` and \
                   `recv_from(..).await` (under a 10 ms `timeout`)",
        send: udp::tokio_send,
        receive: udp::tokio_receive,
        k: 1,
    },
    Row {
        key: "mio",
        label: "mio loop",
        competitor: "mio",
        describe: "hand-written mio loops: `send_to` until the window is full, `recv_from` \
                   until `WouldBlock` (the floor)",
        send: udp::mio_send,
        receive: udp::mio_receive,
        k: 1,
    },
    Row {
        key: "sockloop-8",
        label: "sockloop batched, 8 destinations",
        competitor: "sockloop",
        describe: "sockloop batched toward eight sockets in turn (so no two datagrams in a \
                   row share a destination): `sendmmsg`, 32 a call; mio receiver",
        send: udp::sockloop_send_batched,
        receive: udp::mio_receive,
        k: 8,
    },
    Row {
        key: "sockloop-unbatched-8",
        label: "sockloop unbatched, 8 destinations",
        competitor: "sockloop",
        describe: "the same without batching: one `sendmsg` a datagram",
        send: udp::sockloop_send_plain,
        receive: udp::mio_receive,
        k: 8,
    },
    Row {
        key: "mio-8",
        label: "mio loop, 8 destinations",
        competitor: "mio",
        describe: "the mio sender toward the same eight sockets",
        send: udp::mio_send,
        receive: udp::mio_receive,
        k: 8,
    },
];

/// A timed run shorter than this (measured part, at the first run's rate) is run
/// again with [`TARGET_SECONDS`] worth of datagrams, at most [`MAX_TIMED`].
const MIN_SECONDS: f64 = 0.5;
const TARGET_SECONDS: f64 = 1.0;
const MAX_TIMED: u64 = 40_000_000;

/// Datagrams per timed run, and per counted run (strace runs it at N and 2N).
fn counts(config: &Config) -> (u64, u64) {
    if config.quick {
        (10_000, 4_000)
    } else {
        (400_000, 20_000)
    }
}

fn solo(args: &[String]) {
    let (Some(row), Some(payload), Some(total)) = (
        args.first()
            .and_then(|k| ROWS.iter().find(|r| r.key == k.as_str())),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        fail(&format!("b5 solo: bad arguments {args:?}"));
    };
    let (credit, counter, flow) = udp::measure(row.receive, row.send, row.k, payload, total);
    let ((t0, a0), (t1, a1)) = (credit.start.unwrap(), credit.end.unwrap());
    let measured = (total - flow.warm_up) as f64;
    let sent_per_s = measured / t1.duration_since(t0).as_secs_f64().max(1e-9);
    // From the sender's start (both sides are past their warm-up then) to the last
    // datagram received: the pair's rate, not how fast a backlog drains.
    let recv_per_s = match counter.last {
        Some(l) if l > t0 => {
            counter.count().saturating_sub(flow.warm_up) as f64 / l.duration_since(t0).as_secs_f64()
        }
        _ => 0.0,
    };
    let received = counter.count();
    let rx_used = counter.used.1.unwrap_or_default();
    let rx_measured = received.saturating_sub(flow.warm_up).max(1) as f64;
    print_result(&[
        ("sent_per_s", sent_per_s),
        ("recv_per_s", recv_per_s),
        (
            "loss_pct",
            100.0 * total.saturating_sub(received) as f64 / total as f64,
        ),
        ("allocs_per_dgram", (a1 - a0) as f64 / measured),
        // CPU time per datagram of each side over the measured part, the sender's
        // without its waits for the window: the side near the wall time per
        // datagram is the one that sets the rate.
        (
            "tx_busy_ns",
            (credit.cpu_ns.1.saturating_sub(credit.cpu_ns.0) as f64
                - credit.spun.as_nanos() as f64)
                / measured,
        ),
        (
            "rx_cpu_ns",
            rx_used.cpu_ns.saturating_sub(counter.used.0.cpu_ns) as f64 / rx_measured,
        ),
        (
            "rx_sleeps",
            rx_used.sleeps.saturating_sub(counter.used.0.sleeps) as f64 / rx_measured,
        ),
        (
            "wall_ns",
            t1.duration_since(t0).as_nanos() as f64 / measured,
        ),
        (
            "bad",
            flow.bad.load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
    ]);
}

/// The arguments that run one row alone for `count` datagrams (under a tool).
fn solo_args(row: &Row, payload: usize, count: u64) -> [String; 5] {
    [
        "--solo".into(),
        "b5".into(),
        row.key.into(),
        payload.to_string(),
        count.to_string(),
    ]
}

/// System calls per datagram of one row, from `strace -f -c` at `n` and `2n`: the
/// total, the send and receive calls, and the calls made at least once in 200
/// datagrams. Datagrams lost under strace (which slows the receiver) make fewer
/// receive calls: the loss is appended to the last part when there was any.
fn syscalls(row: &Row, payload: usize, n: u64) -> Option<(f64, f64, f64, String)> {
    let exe = std::env::current_exe().ok()?;
    let mut calls = Vec::new();
    let mut lost: f64 = 0.0;
    for count in [n, 2 * n] {
        let path = std::env::temp_dir().join(format!(
            "sockloop-suite-{}-b5-{}-{payload}-{count}.strace",
            std::process::id(),
            row.key
        ));
        let out = std::process::Command::new("strace")
            .args(["-f", "-c", "-o"])
            .arg(&path)
            .arg(&exe)
            .args(solo_args(row, payload, count))
            .stderr(std::process::Stdio::inherit())
            .output()
            .ok()?;
        if !out.status.success() {
            fail(&format!("b5: strace {} {payload}: {}", row.key, out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(result) = text.lines().find_map(|l| l.strip_prefix("RESULT")) {
            let measures = crate::parse_result(result);
            lost = lost.max(measures.get("loss_pct").copied().unwrap_or(0.0));
        }
        calls.push(parse_strace(&path));
        let _ = std::fs::remove_file(&path);
    }
    let (mut total, mut send, mut recv) = (0.0, 0.0, 0.0);
    let mut parts = Vec::new();
    for (name, c2) in &calls[1] {
        let per = (c2 - calls[0].get(name).copied().unwrap_or(0.0)) / n as f64;
        total += per;
        match name.as_str() {
            "sendto" | "sendmsg" | "sendmmsg" => send += per,
            "recvfrom" | "recvmsg" | "recvmmsg" => recv += per,
            _ => {}
        }
        if per >= 0.005 {
            parts.push(format!("{name} {per:.3}"));
        }
    }
    let mut parts = parts.join(" · ");
    if lost > 0.0 {
        parts.push_str(&format!(" (under strace {lost:.1}% lost)"));
    }
    Some((total, send, recv, parts))
}

/// User-space instructions per datagram of the sending and the receiving thread,
/// under callgrind at `n` and `2n` datagrams (difference ÷ `n`). The sender's waits
/// for the window (`Credit::wait`, which yields under callgrind so that the receiver
/// runs) are taken out: what is left is its library's work and its own loop's.
fn instructions(row: &Row, payload: usize, n: u64) -> Option<(f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let mut totals = Vec::new();
    for count in [n, 2 * n] {
        let dir = std::env::temp_dir().join(format!(
            "sockloop-suite-{}-b5-{}-{payload}-{count}.callgrind",
            std::process::id(),
            row.key
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let out = std::process::Command::new("valgrind")
            .args(["--tool=callgrind", "--separate-threads=yes"])
            .arg(format!("--callgrind-out-file={}/out", dir.display()))
            .arg(&exe)
            .args(solo_args(row, payload, count))
            .env("SOCKLOOP_B5_YIELD", "1")
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            fail(&format!(
                "b5: callgrind {} {payload}: {}",
                row.key, out.status
            ));
        }
        // One file per thread, `out-01` the main thread (the sender).
        let (mut sender, mut receiver) = (None, 0.0);
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            let Some(total) = crate::parse_callgrind(&path) else {
                continue;
            };
            if path.to_string_lossy().ends_with("-01") {
                sender = Some(total - inclusive(&path, "Credit::wait").unwrap_or(0.0));
            } else {
                receiver += total;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        totals.push((sender?, receiver));
    }
    let n = n as f64;
    Some((
        (totals[1].0 - totals[0].0) / n,
        (totals[1].1 - totals[0].1) / n,
    ))
}

/// The inclusive instructions of the function whose name ends with `function` in a
/// callgrind output file (`callgrind_annotate --inclusive=yes`).
fn inclusive(path: &std::path::Path, function: &str) -> Option<f64> {
    let out = std::process::Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(path)
        .output()
        .ok()?;
    let pattern = format!("{function} [");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&pattern))?
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

fn run(config: &Config, report: &mut Report) {
    let (timed, counted) = counts(config);
    let rows: Vec<&Row> = ROWS
        .iter()
        .filter(|r| {
            r.competitor == "quinn-udp" || config.competitors.iter().any(|c| c.name == r.competitor)
        })
        .collect();
    let mut results = Repeats::default();
    for rep in 0..config.reps {
        for &payload in PAYLOADS {
            for row in &rows {
                eprintln!("suite: b5 rep {} {} {payload} B", rep + 1, row.key);
                let args = [row.key.to_string(), payload.to_string(), timed.to_string()];
                let mut measures = run_solo("b5", &args);
                // A fast pair gets through the first count in a few tens of
                // milliseconds, where one descheduling moves the rate by a fifth:
                // measured again with about a second's worth of datagrams.
                let rate = measures.get("recv_per_s").copied().unwrap_or(0.0);
                if !config.quick && rate * MIN_SECONDS > timed as f64 {
                    let total = ((rate * TARGET_SECONDS) as u64).min(MAX_TIMED);
                    eprintln!(
                        "suite: b5 rep {} {} {payload} B, {total} datagrams",
                        rep + 1,
                        row.key
                    );
                    let args = [row.key.to_string(), payload.to_string(), total.to_string()];
                    measures = run_solo("b5", &args);
                }
                results.add(&format!("{}/{payload}", row.key), measures);
            }
        }
    }
    let mut counts_of = std::collections::BTreeMap::new();
    if config.strace {
        for &payload in PAYLOADS {
            for row in &rows {
                eprintln!("suite: b5 strace {} {payload} B", row.key);
                if let Some(c) = syscalls(row, payload, counted) {
                    counts_of.insert((row.key, payload), c);
                }
            }
        }
    }
    let mut instructions_of = std::collections::BTreeMap::new();
    // Under callgrind a run takes seconds: not in quick mode.
    if config.callgrind && !config.quick {
        for &payload in PAYLOADS {
            for row in &rows {
                eprintln!("suite: b5 callgrind {} {payload} B", row.key);
                if let Some(c) = instructions(row, payload, counted) {
                    instructions_of.insert((row.key, payload), c);
                }
            }
        }
    }
    let described = rows
        .iter()
        .map(|r| format!("- **{}** ({}): {}\n", r.label, r.competitor, r.describe))
        .collect::<String>();
    let mut text = format!(
        "## B5 — UDP datagrams per second\n\n\
         One process per measurement, the receiver on a thread and the sender on the main \
         thread, not pinned, loopback, {timed} datagrams of which the first tenth warm up; \
         a pair that receives them in less than {MIN_SECONDS} s is measured again with \
         about {TARGET_SECONDS} s worth of datagrams at its first rate (at most {MAX_TIMED}). \
         The sender keeps at most {} datagrams in flight (sent and not yet counted by the \
         receiver; it spins, without system calls, until a whole burst fits), hands its \
         library bursts of {} (what is left at the end), and writes off what is in flight after 20 ms without \
         progress. Receive buffers ask for 4 MiB. Sent/s is the sender's rate over the \
         measured part, received/s the datagrams received after the warm-up over the time \
         from the sender's start to the last one, loss the \
         datagrams that never arrived. System calls per datagram are of both threads \
         (`strace -f -c`, counts at {} and {} datagrams, difference ÷ {counted}); \
         allocations per datagram are of the whole process over the measured part. \
         Instructions per datagram are user-space instructions of the sending and the \
         receiving thread (callgrind, at {counted} and {} datagrams, difference ÷ \
         {counted}), the sender's waits for the window taken out: the library's work and \
         the loop around it, not the kernel's. The sender's are the same from run to run; \
         the receiver's depend on how many datagrams each wake-up finds, which callgrind's \
         thread scheduling decides, and move by up to a fifth between runs. \
         Sender busy is the sending thread's CPU time per datagram over the measured part \
         without its waits for the window, receiver CPU the receiving thread's \
         (`/proc/thread-self/schedstat`): the side whose figure is near the wall time per \
         datagram (10⁹ ÷ sent/s) sets the rate. Receiver sleeps are the receiving \
         thread's voluntary context switches per datagram: each is a wake-up that the \
         sender's `send` pays for.\n\n\
         Rows (their competitor, for `--competitors`):\n\n{described}\n",
        udp::WINDOW,
        udp::BURST,
        counted,
        2 * counted,
        2 * counted,
    );
    let headers = [
        "pair",
        "payload",
        "received/s",
        "sent/s",
        "loss %",
        "syscalls/dgram",
        "send calls/dgram",
        "recv calls/dgram",
        "allocs/dgram",
        "sender instr/dgram",
        "receiver instr/dgram",
        "sender busy ns/dgram",
        "receiver CPU ns/dgram",
        "receiver sleeps/dgram",
        "calls (per datagram)",
    ];
    let mut table_rows = Vec::new();
    let mut groups = Vec::new();
    for &payload in PAYLOADS {
        let mut bars = Vec::new();
        for row in &rows {
            let name = format!("{}/{payload}", row.key);
            let c = counts_of.get(&(row.key, payload));
            table_rows.push(vec![
                row.label.to_string(),
                format!("{payload} B"),
                cell(results.get(&name, "recv_per_s"), 0),
                cell(results.get(&name, "sent_per_s"), 0),
                cell(results.get(&name, "loss_pct"), 2),
                c.map_or("–".into(), |c| format!("{:.3}", c.0)),
                c.map_or("–".into(), |c| format!("{:.3}", c.1)),
                c.map_or("–".into(), |c| format!("{:.3}", c.2)),
                cell(results.get(&name, "allocs_per_dgram"), 3),
                instructions_of
                    .get(&(row.key, payload))
                    .map_or("–".into(), |c| format!("{:.0}", c.0)),
                instructions_of
                    .get(&(row.key, payload))
                    .map_or("–".into(), |c| format!("{:.0}", c.1)),
                cell(results.get(&name, "tx_busy_ns"), 0),
                cell(results.get(&name, "rx_cpu_ns"), 0),
                cell(results.get(&name, "rx_sleeps"), 3),
                c.map_or("–".into(), |c| c.3.clone()),
            ]);
            bars.push(bar(row.label, results.get(&name, "recv_per_s")));
            if results.get(&name, "bad").is_some_and(|b| b.max > 0.0) {
                report
                    .failures
                    .push(format!("b5 {name}: datagrams of the wrong length arrived"));
            }
        }
        groups.push(Group {
            name: format!("{payload}-byte payload"),
            bars,
        });
    }
    text.push_str(&table(&headers, &table_rows));
    text.push_str(
        "\nThe quinn-udp sender hands its library one buffer a train and does nothing per \
         datagram; `sockloop batched` calls `send_to` once a datagram, which copies it into \
         the socket's queue (the instructions per datagram show what that costs), and \
         `sockloop trains` hands over one buffer a train as quinn-udp's does: the \
         like-for-like row. In both pairs the sender sets the rate (its busy time is the \
         wall time per datagram), and most of it is the kernel's.\n",
    );
    text.push_str("\nTargets (medians of received/s, same run):\n\n");
    let targets = [
        (
            "sockloop",
            "quinn",
            0.9,
            "batched GSO → GRO ≥ 0.9× quinn-udp",
        ),
        (
            "sockloop-trains",
            "quinn",
            0.9,
            "batched GSO → GRO, sent as trains, ≥ 0.9× quinn-udp",
        ),
        (
            "sockloop-plain-rx",
            "quinn-plain-rx",
            0.9,
            "batched GSO → plain receiver ≥ 0.9× quinn-udp",
        ),
        ("sockloop-unbatched", "tokio", 1.0, "unbatched ≥ 1.0× tokio"),
        (
            "sockloop-8",
            "mio-8",
            0.0,
            "8 destinations, sendmmsg, against mio (no target)",
        ),
    ];
    for &payload in PAYLOADS {
        for (ours, theirs, floor, what) in targets {
            let (a, b) = (
                results.get(&format!("{ours}/{payload}"), "recv_per_s"),
                results.get(&format!("{theirs}/{payload}"), "recv_per_s"),
            );
            let r = ratio(a, b);
            let verdict = match (a, b) {
                (Some(a), Some(b)) if floor > 0.0 && b.median > 0.0 => {
                    if a.median / b.median >= floor {
                        "met"
                    } else {
                        "not met"
                    }
                }
                (Some(_), Some(_)) => "measured",
                _ => "not run",
            };
            text.push_str(&format!("- {payload} B, {what}: {r} — {verdict}\n"));
        }
    }
    text.push('\n');
    let chart = Chart {
        title: "B5 — UDP datagrams received per second (higher is better)".into(),
        unit: "datagrams/s".into(),
        higher_is_better: true,
        groups,
    };
    let link = report.chart("b5", &chart);
    text.push_str(&link);
    report.section(text);
}
