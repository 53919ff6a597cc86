//! B6: cross-thread wake-up. One process, two threads: the loop (the process's main
//! thread, asleep in its wait) and a poster. The poster takes `t0`, hands a job to the
//! loop, waits for the loop's acknowledgement and spins a short [`PAUSE`] before it posts
//! again, so every post finds the loop asleep; the loop, when it runs the job, records
//! `now − t0` (the wake-up and the hand-over) in an hdrhistogram and acknowledges.
//!
//! The acknowledgement is the same for every variant (a `std::sync::mpsc::sync_channel`
//! of capacity 1, which does not allocate in steady state), so that only the wake path
//! differs. The variants are B6's own; `--competitors` keeps those whose competitor is
//! named: `sockloop` (`Remote::post`), `mio` (a mio loop with a `mio::Waker`), `tokio`
//! (an unbounded mpsc channel to a task), `std` (the two floors without a poll loop: a
//! blocking pipe read, and a blocking `std::sync::mpsc` receive).
//!
//! Figures: p50/p99/p99.9 wake-up latency, posts per second (1 ÷ the mean post +
//! acknowledgement round trip, pauses excluded), heap allocations per post (whole process, counting allocator) and how
//! often the loop thread went to sleep per post (its voluntary context switches, from
//! `/proc`), which checks that the posts did find it asleep.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::chart::{Chart, Group};
use crate::report::{bar, cell, ratio, table, Repeats, Report};
use crate::{alloc, fail, no_client, no_role, print_result, run_solo, Config, Family};

pub const FAMILY: Family = Family {
    name: "b6",
    run,
    server: no_role,
    client: no_client,
    solo,
};

/// One way of handing a job to a sleeping thread.
struct Variant {
    /// The `--solo b6` argument.
    key: &'static str,
    /// The table's first column.
    label: &'static str,
    /// The competitor (`--competitors`) this variant belongs to.
    competitor: &'static str,
    describe: &'static str,
    measure: fn(Counts) -> Outcome,
}

const VARIANTS: &[Variant] = &[
    Variant {
        key: "sockloop",
        label: "sockloop",
        competitor: "sockloop",
        describe: "`Remote::post` of a closure to a `Reactor` in `run` (one idle fd registered \
                   so that it has something to wait for)",
        measure: sockloop_remote,
    },
    Variant {
        key: "mio",
        label: "mio Waker",
        competitor: "mio",
        describe: "hand-written mio loop: `Mutex<VecDeque>` queue + `mio::Waker` (an eventfd); \
                   the floor for a reactor",
        measure: mio_waker,
    },
    Variant {
        key: "pipe",
        label: "eventfd floor (pipe)",
        competitor: "std",
        describe: "no poll loop: the loop thread blocks in `read` on a pipe (`mio::unix::pipe` in \
                   blocking mode), the poster writes one byte after pushing to the same queue \
                   as mio's; it stands in for a blocking eventfd read, which needs `unsafe` or \
                   another crate",
        measure: pipe_floor,
    },
    Variant {
        key: "tokio",
        label: "tokio",
        competitor: "tokio",
        describe: "tokio current_thread runtime (IO driver enabled, as in B1): the poster \
                   `send`s on an `unbounded_channel`, a spawned task `recv`s",
        measure: tokio_channel,
    },
    Variant {
        key: "std-channel",
        label: "std channel",
        competitor: "std",
        describe: "blocking `std::sync::mpsc` `recv` on the loop thread: the futex floor",
        measure: std_channel,
    },
];

#[derive(Clone, Copy)]
struct Counts {
    warm_up: u64,
    measured: u64,
}

fn counts(config: &Config) -> Counts {
    if config.quick {
        Counts {
            warm_up: 100,
            measured: 1_000,
        }
    } else {
        Counts {
            warm_up: 2_000,
            measured: 20_000,
        }
    }
}

/// The loop thread's side: records the latency of each job and acknowledges it.
struct Probe {
    histogram: Histogram<u64>,
    ack: SyncSender<()>,
    /// Warm-up jobs still to run (not recorded).
    skip: u64,
}

impl Probe {
    fn new(ack: SyncSender<()>, warm_up: u64) -> Probe {
        Probe {
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
            ack,
            skip: warm_up,
        }
    }

    /// The job: what the loop runs for each post.
    fn job(&mut self, t0: Instant) {
        let ns = t0.elapsed().as_nanos() as u64;
        if self.skip > 0 {
            self.skip -= 1;
        } else {
            self.histogram.saturating_record(ns);
        }
        if self.ack.send(()).is_err() {
            fail("b6: the poster is gone");
        }
    }
}

/// What the poster saw over the measured posts.
struct Posted {
    /// The round trips' total time (post to acknowledgement, pauses excluded).
    secs: f64,
    allocations: u64,
    loop_sleeps: Option<u64>,
}

struct Outcome {
    histogram: Histogram<u64>,
    posted: Posted,
}

/// Voluntary context switches of the process's main thread (the loop) so far.
fn loop_sleeps() -> Option<u64> {
    let path = format!("/proc/self/task/{}/status", std::process::id());
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// How long the poster waits (spinning) after an acknowledgement before the next post,
/// so that the loop is back asleep when the post comes.
const PAUSE: Duration = Duration::from_micros(20);

/// The poster: warm-up, then the measured posts, each `post(t0)` followed by a wait for
/// the acknowledgement and a [`PAUSE`].
fn drive(n: Counts, ack: &Receiver<()>, mut post: impl FnMut(Instant)) -> Posted {
    // One post and its acknowledgement; returns the round trip (the pause excluded).
    let mut one = || {
        let t0 = Instant::now();
        post(t0);
        if ack.recv().is_err() {
            fail("b6: the loop is gone");
        }
        let round_trip = t0.elapsed();
        let resume = Instant::now() + PAUSE;
        while Instant::now() < resume {
            std::hint::spin_loop();
        }
        round_trip
    };
    for _ in 0..n.warm_up {
        one();
    }
    let sleeps = loop_sleeps();
    let allocations = alloc::allocations();
    let mut busy = Duration::ZERO;
    for _ in 0..n.measured {
        busy += one();
    }
    let allocations = alloc::allocations() - allocations;
    let loop_sleeps = sleeps.zip(loop_sleeps()).map(|(a, b)| b - a);
    Posted {
        secs: busy.as_secs_f64(),
        allocations,
        loop_sleeps,
    }
}

fn finish(poster: JoinHandle<Posted>, probe: Probe) -> Outcome {
    let posted = poster
        .join()
        .unwrap_or_else(|_| fail("b6: the poster panicked"));
    Outcome {
        histogram: probe.histogram,
        posted,
    }
}

fn sockloop_remote(n: Counts) -> Outcome {
    use sockloop::{Interest, Reactor};
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut probe = Probe::new(ack_tx, n.warm_up);
    let mut reactor = Reactor::<Probe>::new().unwrap_or_else(|e| fail(&format!("b6: {e}")));
    // `run` returns when nothing is left to wait for: an idle fd keeps it waiting.
    let (_idle_peer, idle) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    idle.set_nonblocking(true).expect("nonblocking");
    reactor
        .register_fd(idle, Interest::Readable, |_, _, _, _, _| {})
        .unwrap_or_else(|e| fail(&format!("b6: {e}")));
    let remote = reactor.remote();
    let poster = std::thread::spawn(move || {
        let posted = drive(n, &ack_rx, |t0| {
            remote
                .post(move |_, probe: &mut Probe| probe.job(t0))
                .unwrap_or_else(|e| fail(&format!("b6: post: {e}")))
        });
        remote
            .stop()
            .unwrap_or_else(|e| fail(&format!("b6: stop: {e}")));
        posted
    });
    reactor
        .run(&mut probe)
        .unwrap_or_else(|e| fail(&format!("b6: run: {e}")));
    finish(poster, probe)
}

/// The queue of the mio and pipe variants, and the poster's "that was the last one".
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Instant>>,
    done: AtomicBool,
}

impl Queue {
    fn push(&self, t0: Instant) {
        self.jobs.lock().expect("queue").push_back(t0);
    }

    /// Runs the queued jobs; false once the poster is done.
    fn run(&self, probe: &mut Probe) -> bool {
        loop {
            // The guard is dropped before the job runs.
            let job = self.jobs.lock().expect("queue").pop_front();
            match job {
                Some(t0) => probe.job(t0),
                None => return !self.done.load(Ordering::Acquire),
            }
        }
    }
}

fn mio_waker(n: Counts) -> Outcome {
    use mio::{Events, Poll, Token, Waker};
    const WAKE: Token = Token(0);
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut probe = Probe::new(ack_tx, n.warm_up);
    let mut poll = Poll::new().expect("poll");
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).expect("waker"));
    // The loop keeps the waker open too: if the poster's exit closed the eventfd before
    // the loop collected the last wake-up, epoll would drop that wake-up with it.
    let poster_waker = waker.clone();
    let queue = Arc::new(Queue::default());
    let jobs = queue.clone();
    let poster = std::thread::spawn(move || {
        let waker = poster_waker;
        let posted = drive(n, &ack_rx, |t0| {
            jobs.push(t0);
            waker.wake().expect("wake");
        });
        jobs.done.store(true, Ordering::Release);
        waker.wake().expect("wake");
        posted
    });
    let mut events = Events::with_capacity(64);
    'run: loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => fail(&format!("b6: poll: {e}")),
        }
        for event in events.iter() {
            if event.token() == WAKE && !queue.run(&mut probe) {
                break 'run;
            }
        }
    }
    finish(poster, probe)
}

fn pipe_floor(n: Counts) -> Outcome {
    let (tx, rx) = mio::unix::pipe::new().expect("pipe");
    tx.set_nonblocking(false).expect("blocking");
    rx.set_nonblocking(false).expect("blocking");
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut probe = Probe::new(ack_tx, n.warm_up);
    let queue = Arc::new(Queue::default());
    let jobs = queue.clone();
    let poster = std::thread::spawn(move || {
        let posted = drive(n, &ack_rx, |t0| {
            jobs.push(t0);
            (&tx).write_all(&[1]).expect("pipe write");
        });
        jobs.done.store(true, Ordering::Release);
        (&tx).write_all(&[0]).expect("pipe write");
        posted
    });
    let mut buf = [0u8; 64];
    loop {
        match (&rx).read(&mut buf) {
            Ok(1..) => {}
            Ok(0) => fail("b6: the pipe closed"),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => fail(&format!("b6: pipe read: {e}")),
        }
        if !queue.run(&mut probe) {
            break;
        }
    }
    finish(poster, probe)
}

fn tokio_channel(n: Counts) -> Outcome {
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut probe = Probe::new(ack_tx, n.warm_up);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let poster = std::thread::spawn(move || {
        let posted = drive(n, &ack_rx, |t0| tx.send(t0).expect("send"));
        // Closing the channel ends the task.
        drop(tx);
        posted
    });
    let probe = runtime.block_on(async move {
        tokio::spawn(async move {
            while let Some(t0) = rx.recv().await {
                probe.job(t0);
            }
            probe
        })
        .await
        .expect("task")
    });
    finish(poster, probe)
}

fn std_channel(n: Counts) -> Outcome {
    let (ack_tx, ack_rx) = sync_channel(1);
    let mut probe = Probe::new(ack_tx, n.warm_up);
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let poster = std::thread::spawn(move || {
        let posted = drive(n, &ack_rx, |t0| tx.send(t0).expect("send"));
        drop(tx);
        posted
    });
    while let Ok(t0) = rx.recv() {
        probe.job(t0);
    }
    finish(poster, probe)
}

/// `--solo b6 <variant> <warm-up> <measured>`.
fn solo(args: &[String]) {
    let (Some(variant), Some(warm_up), Some(measured)) = (
        args.first()
            .and_then(|k| VARIANTS.iter().find(|v| v.key == k.as_str())),
        args.get(1).and_then(|s| s.parse::<u64>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        fail(&format!("b6 solo: bad arguments {args:?}"));
    };
    let Outcome { histogram, posted } = (variant.measure)(Counts { warm_up, measured });
    if histogram.len() != measured {
        fail(&format!(
            "b6 {}: {} jobs recorded, {measured} posted",
            variant.key,
            histogram.len()
        ));
    }
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let per = measured as f64;
    let mut result = vec![
        ("posts_per_s", per / posted.secs),
        ("p50_us", us(0.5)),
        ("p99_us", us(0.99)),
        ("p999_us", us(0.999)),
        ("allocs_per_post", posted.allocations as f64 / per),
    ];
    if let Some(s) = posted.loop_sleeps {
        result.push(("sleeps_per_post", s as f64 / per));
    }
    print_result(&result);
}

fn run(config: &Config, report: &mut Report) {
    let n = counts(config);
    let variants: Vec<&Variant> = VARIANTS
        .iter()
        .filter(|v| config.competitors.iter().any(|c| c.name == v.competitor))
        .collect();
    let described = variants
        .iter()
        .map(|v| format!("- **{}** ({}): {}\n", v.label, v.competitor, v.describe))
        .collect::<String>();
    let mut text = format!(
        "## B6 — cross-thread wake-up\n\n\
         One process, two threads, not pinned: the loop (the main thread, asleep in its \
         wait) and a poster. The poster takes t0, hands the loop a job and waits for the \
         loop's acknowledgement, then spins {pause} µs before the next post, so that every \
         post finds the loop asleep; the loop, running the job, records now − t0 (wake-up \
         and hand-over) in an hdrhistogram and acknowledges on a \
         `std::sync::mpsc::sync_channel(1)`, the same for every variant. {} posts after {} \
         of warm-up, per run. Latencies are in µs; posts/s is 1 ÷ the mean round trip (post \
         to acknowledgement received, pause excluded). The ratio is sockloop's median p50 ÷ \
         this variant's (below 1 means sockloop is faster). Allocations are the whole \
         process's during the measured posts, per post: `Remote::post` boxes the closure (1 \
         per post), and std's mpsc channel, inside sockloop and in the std channel variant, \
         allocates a block every 31 messages (0.032). Loop sleeps per post are the loop \
         thread's voluntary context switches (from `/proc`) per post: 1.00 means every post \
         found it asleep; above 1, the loop also blocked somewhere else (inside std's \
         channel code).\n\n\
         Variants (their competitor, for `--competitors`):\n\n{described}",
        n.measured,
        n.warm_up,
        pause = PAUSE.as_micros(),
    );
    let args = |v: &Variant| {
        vec![
            v.key.to_string(),
            n.warm_up.to_string(),
            n.measured.to_string(),
        ]
    };
    let mut results = Repeats::default();
    for rep in 0..config.reps {
        for v in &variants {
            eprintln!("suite: b6 rep {} {}", rep + 1, v.key);
            let m = run_solo("b6", &args(v));
            results.add(v.key, m);
        }
    }
    let get = |key: &str, metric: &str| results.get(key, metric);
    let rows: Vec<Vec<String>> = variants
        .iter()
        .map(|v| {
            vec![
                format!("**{}**", v.label),
                cell(get(v.key, "p50_us"), 1),
                cell(get(v.key, "p99_us"), 1),
                cell(get(v.key, "p999_us"), 1),
                cell(get(v.key, "posts_per_s"), 0),
                ratio(get("sockloop", "p50_us"), get(v.key, "p50_us")),
                cell(get(v.key, "allocs_per_post"), 3),
                cell(get(v.key, "sleeps_per_post"), 2),
            ]
        })
        .collect();
    text.push('\n');
    text.push_str(&table(
        &[
            "variant",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "posts/s",
            "sockloop p50 ÷ this",
            "allocs / post",
            "loop sleeps / post",
        ],
        &rows,
    ));
    let group = |name: &str, metric: &str| Group {
        name: name.to_string(),
        bars: variants
            .iter()
            .map(|v| bar(v.label, get(v.key, metric)))
            .collect(),
    };
    let chart = report.chart(
        "b6",
        &Chart {
            title: "B6 — cross-thread wake-up latency".into(),
            unit: "µs".into(),
            higher_is_better: false,
            groups: vec![group("p50", "p50_us"), group("p99", "p99_us")],
        },
    );
    text.push_str(&chart);
    report.section(text);
}
