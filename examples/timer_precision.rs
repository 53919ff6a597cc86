//! Measures how late `turn(Some(timeout))` returns and how late timers fire, for short
//! durations (100 µs to 5 ms), and counts the ones that came early (there must be none).
//!
//! ```text
//! cargo run --release --example timer_precision          # 1000 samples per row
//! cargo run --release --example timer_precision -- 5000  # more samples
//! strace -c -f ./target/release/examples/timer_precision 200
//! ```
//!
//! Lateness is measured from a clock read taken just before the call (`turn`) or just
//! before `set_timer`, so it includes the reactor's own work; run on an idle machine.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sockloop::Reactor;

const DURATIONS_US: [u64; 5] = [100, 200, 1000, 1500, 5000];

/// Lateness figures of one row, in microseconds.
struct Row {
    early: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn summarize(mut late_ns: Vec<i128>) -> Row {
    let early = late_ns.iter().filter(|&&l| l < 0).count();
    late_ns.sort_unstable();
    let at = |q: f64| {
        let i = ((late_ns.len() as f64 - 1.0) * q).round() as usize;
        late_ns[i] as f64 / 1000.0
    };
    Row {
        early,
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// `turn(Some(d))` on a reactor with nothing registered: it can only time out.
fn measure_turn(reactor: &mut Reactor<()>, d: Duration, samples: usize) -> Row {
    let mut late = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        reactor.turn(&mut (), Some(d)).expect("turn");
        late.push(start.elapsed().as_nanos() as i128 - d.as_nanos() as i128);
    }
    summarize(late)
}

/// A timer of `d`, waited for with `turn(None)`.
fn measure_timer(reactor: &mut Reactor<()>, d: Duration, samples: usize) -> Row {
    let mut late = Vec::with_capacity(samples);
    let fired: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
    for _ in 0..samples {
        fired.set(None);
        let start = Instant::now();
        let f = fired.clone();
        reactor.set_timer(d, move |_, _, _| f.set(Some(Instant::now())));
        let at = loop {
            reactor.turn(&mut (), None).expect("turn");
            if let Some(at) = fired.get() {
                break at;
            }
        };
        late.push((at - start).as_nanos() as i128 - d.as_nanos() as i128);
    }
    summarize(late)
}

fn main() -> Result<(), sockloop::Error> {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
        .max(1);
    let mut reactor = Reactor::<()>::new()?;
    println!("lateness in µs, {samples} samples per row");
    println!(
        "{:<6} {:>8} {:>6} {:>9} {:>9} {:>9}",
        "what", "after", "early", "p50", "p99", "max"
    );
    for kind in ["turn", "timer"] {
        for us in DURATIONS_US {
            let d = Duration::from_micros(us);
            let row = if kind == "turn" {
                measure_turn(&mut reactor, d, samples)
            } else {
                measure_timer(&mut reactor, d, samples)
            };
            println!(
                "{:<6} {:>6}µs {:>6} {:>9.1} {:>9.1} {:>9.1}",
                kind, us, row.early, row.p50, row.p99, row.max
            );
        }
    }
    println!("{:?}", reactor.stats());
    Ok(())
}
