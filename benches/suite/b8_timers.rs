//! B8: timer and turn lateness. One process, one thread, nothing else to do: each
//! variant asks to be woken `d` from now, for d = 100 µs, 200 µs, 1 ms, 1.5 ms and 5 ms,
//! and records how late it woke (now − deadline) in an hdrhistogram. A wake-up before the
//! deadline is counted as early (and recorded as 0 late): a timer must never fire early.
//!
//! The variants are B8's own; `--competitors` keeps those whose competitor is named:
//! `sockloop` (`Reactor::turn(Some(d))` with nothing registered, and a one-shot timer
//! from `Reactor::set_timer_at` run to completion with `Reactor::run`), `tokio`
//! (`tokio::time::sleep_until` on a current_thread runtime), `mio` (a plain
//! `Poll::poll` with a timeout and nothing registered: epoll_wait's floor) and `std`
//! (`std::thread::sleep`: the kernel's high-resolution sleep, no poll at all).
//!
//! Figures: p50, p99 and max lateness in µs, and the early wake-ups.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::chart::{Chart, Group};
use crate::report::{bar, cell, table, Repeats, Report};
use crate::{fail, no_client, no_role, print_result, run_solo, Config, Family};

pub const FAMILY: Family = Family {
    name: "b8",
    run,
    server: no_role,
    client: no_client,
    solo,
};

/// The deadlines asked for, in µs.
const DELAYS_US: &[u64] = &[100, 200, 1_000, 1_500, 5_000];

/// One way of sleeping until a deadline.
struct Variant {
    /// The `--solo b8` argument.
    key: &'static str,
    /// The table's first column.
    label: &'static str,
    /// The competitor (`--competitors`) this variant belongs to.
    competitor: &'static str,
    describe: &'static str,
    measure: fn(&mut Lateness, Duration, u64),
}

const VARIANTS: &[Variant] = &[
    Variant {
        key: "sockloop-turn",
        label: "sockloop turn",
        competitor: "sockloop",
        describe: "`Reactor::turn(state, Some(d))` on a reactor with nothing registered; \
                   the deadline is the instant before the call plus d",
        measure: sockloop_turn,
    },
    Variant {
        key: "sockloop-timer",
        label: "sockloop timer",
        competitor: "sockloop",
        describe: "a one-shot `Reactor::set_timer_at(now + d)`, then `Reactor::run` (which \
                   returns once the timer has fired); lateness is taken in the timer's \
                   handler",
        measure: sockloop_timer,
    },
    Variant {
        key: "tokio",
        label: "tokio sleep",
        competitor: "tokio",
        describe: "`tokio::time::sleep_until(now + d).await` in one task on a current_thread \
                   runtime (IO and time drivers enabled)",
        measure: tokio_sleep,
    },
    Variant {
        key: "epoll",
        label: "epoll_wait (mio)",
        competitor: "mio",
        describe: "plain `mio::Poll::poll(&mut events, Some(d))` with nothing registered: \
                   one epoll_wait, whose timeout is in whole milliseconds (mio rounds up)",
        measure: epoll_wait,
    },
    Variant {
        key: "sleep",
        label: "thread::sleep",
        competitor: "std",
        describe: "`std::thread::sleep(d)` (clock_nanosleep): the kernel's high-resolution \
                   timer, with the thread's timer slack, and no poll loop",
        measure: thread_sleep,
    },
];

#[derive(Clone, Copy)]
struct Counts {
    warm_up: u64,
    /// Samples at 1 ms and less; longer delays take fewer, to bound the run's time.
    measured: u64,
}

fn counts(config: &Config) -> Counts {
    if config.quick {
        Counts {
            warm_up: 5,
            measured: 40,
        }
    } else {
        Counts {
            warm_up: 50,
            measured: 1_000,
        }
    }
}

/// Samples for a delay: all of them up to 1.5 ms, a third at 5 ms.
fn samples(measured: u64, delay_us: u64) -> u64 {
    if delay_us > 2_000 {
        (measured / 3).max(20)
    } else {
        measured
    }
}

/// The lateness record of one run.
struct Lateness {
    histogram: Histogram<u64>,
    early: u64,
    /// Samples still to skip (warm-up).
    skip: u64,
}

impl Lateness {
    fn new(warm_up: u64) -> Lateness {
        Lateness {
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
            early: 0,
            skip: warm_up,
        }
    }

    /// Records a wake-up at `now` for `deadline`.
    fn record(&mut self, deadline: Instant, now: Instant) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        match now.checked_duration_since(deadline) {
            Some(late) => self.histogram.saturating_record(late.as_nanos() as u64),
            None => {
                self.early += 1;
                self.histogram.saturating_record(0);
            }
        }
    }
}

fn sockloop_turn(probe: &mut Lateness, d: Duration, n: u64) {
    let mut reactor = sockloop::Reactor::<()>::new().unwrap_or_else(|e| fail(&format!("b8: {e}")));
    for _ in 0..n {
        let deadline = Instant::now() + d;
        reactor
            .turn(&mut (), Some(d))
            .unwrap_or_else(|e| fail(&format!("b8: turn: {e}")));
        probe.record(deadline, Instant::now());
    }
}

fn sockloop_timer(probe: &mut Lateness, d: Duration, n: u64) {
    let mut reactor =
        sockloop::Reactor::<Lateness>::new().unwrap_or_else(|e| fail(&format!("b8: {e}")));
    for _ in 0..n {
        let deadline = Instant::now() + d;
        reactor.set_timer_at(deadline, move |_, probe: &mut Lateness, _| {
            probe.record(deadline, Instant::now())
        });
        reactor
            .run(probe)
            .unwrap_or_else(|e| fail(&format!("b8: run: {e}")));
    }
}

fn tokio_sleep(probe: &mut Lateness, d: Duration, n: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for _ in 0..n {
            let deadline = Instant::now() + d;
            tokio::time::sleep_until(deadline.into()).await;
            probe.record(deadline, Instant::now());
        }
    });
}

fn epoll_wait(probe: &mut Lateness, d: Duration, n: u64) {
    let mut poll = mio::Poll::new().expect("poll");
    let mut events = mio::Events::with_capacity(16);
    for _ in 0..n {
        let deadline = Instant::now() + d;
        match poll.poll(&mut events, Some(d)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => fail(&format!("b8: poll: {e}")),
        }
        probe.record(deadline, Instant::now());
    }
}

fn thread_sleep(probe: &mut Lateness, d: Duration, n: u64) {
    for _ in 0..n {
        let deadline = Instant::now() + d;
        std::thread::sleep(d);
        probe.record(deadline, Instant::now());
    }
}

/// `--solo b8 <variant> <delay µs> <warm-up> <measured>`.
fn solo(args: &[String]) {
    let (Some(variant), Some(delay_us), Some(warm_up), Some(measured)) = (
        args.first()
            .and_then(|k| VARIANTS.iter().find(|v| v.key == k.as_str())),
        args.get(1).and_then(|s| s.parse::<u64>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        args.get(3).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        fail(&format!("b8 solo: bad arguments {args:?}"));
    };
    let mut probe = Lateness::new(warm_up);
    (variant.measure)(
        &mut probe,
        Duration::from_micros(delay_us),
        warm_up + measured,
    );
    let h = &probe.histogram;
    if h.len() != measured {
        fail(&format!(
            "b8 {}: {} wake-ups recorded, {measured} asked",
            variant.key,
            h.len()
        ));
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    print_result(&[
        ("p50_us", us(h.value_at_quantile(0.5))),
        ("p99_us", us(h.value_at_quantile(0.99))),
        ("max_us", us(h.max())),
        ("early", probe.early as f64),
    ]);
}

fn delay_label(us: u64) -> String {
    if us >= 1_000 {
        format!("{} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
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
        "## B8 — timer and turn lateness\n\n\
         One process, one thread, not pinned, nothing else to do: each variant asks to \
         wake d from now and records how late it woke (now − deadline), {} times after {} \
         of warm-up per run ({} at 5 ms). Lateness is in µs: p50, p99 and the largest over \
         the run. Early is the number of wake-ups before the deadline (recorded as 0 late): \
         it must be 0 for a timer, and a `turn` that returns early is one its caller has \
         to loop around.\n\n\
         Variants (their competitor, for `--competitors`):\n\n{described}",
        n.measured,
        n.warm_up,
        samples(n.measured, 5_000),
    );
    let mut results = Repeats::default();
    for rep in 0..config.reps {
        for &delay in DELAYS_US {
            for v in &variants {
                eprintln!("suite: b8 rep {} {} {}", rep + 1, v.key, delay_label(delay));
                let args = [
                    v.key.to_string(),
                    delay.to_string(),
                    n.warm_up.to_string(),
                    samples(n.measured, delay).to_string(),
                ];
                let m = run_solo("b8", &args);
                results.add(&format!("{} {delay}", v.key), m);
            }
        }
    }
    let get = |key: &str, delay: u64, metric: &str| results.get(&format!("{key} {delay}"), metric);
    let mut groups = Vec::new();
    for &delay in DELAYS_US {
        let rows: Vec<Vec<String>> = variants
            .iter()
            .map(|v| {
                vec![
                    format!("**{}**", v.label),
                    cell(get(v.key, delay, "p50_us"), 1),
                    cell(get(v.key, delay, "p99_us"), 1),
                    cell(get(v.key, delay, "max_us"), 1),
                    cell(get(v.key, delay, "early"), 0),
                ]
            })
            .collect();
        text.push_str(&format!("\n### d = {}\n\n", delay_label(delay)));
        text.push_str(&table(
            &[
                "variant",
                "p50 late µs",
                "p99 late µs",
                "max late µs",
                "early",
            ],
            &rows,
        ));
        groups.push(Group {
            name: format!("d = {}, p50", delay_label(delay)),
            bars: variants
                .iter()
                .map(|v| bar(v.label, get(v.key, delay, "p50_us")))
                .collect(),
        });
        for v in &variants {
            if let Some(early) = get(v.key, delay, "early").filter(|e| e.max > 0.0) {
                if v.key == "sockloop-timer" {
                    report.failures.push(format!(
                        "a sockloop timer fired early: {} early wake-ups at d = {}",
                        early.cell(0),
                        delay_label(delay)
                    ));
                }
            }
        }
    }
    let chart = report.chart(
        "b8",
        &Chart {
            title: "B8 — timer and turn lateness (p50)".into(),
            unit: "µs late".into(),
            higher_is_better: false,
            groups,
        },
    );
    text.push_str(&chart);
    report.section(text);
}
