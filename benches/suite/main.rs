//! The benchmark driver: sockloop side by side with a hand-written mio loop, tokio's
//! current_thread runtime and blocking std::net, on loopback.
//!
//! ```text
//! cargo bench --bench suite                      # every family, 5 repetitions
//! cargo bench --bench suite -- --quick           # everything once, small counts, seconds
//! cargo bench --bench suite -- --write           # also write BENCHMARKS.md
//! cargo bench --bench suite -- --only b1 --competitors sockloop,mio --reps 7
//! ```
//!
//! Method: every measurement runs in a fresh child process (the driver re-executes
//! itself with `--child`), competitors alternate (A B C D A B C D …) so that drift in
//! the machine hits all of them alike, each child warms up before it measures, and the
//! tables give the median and min–max over the repetitions. Deterministic counts
//! (system calls under `strace -c`, heap allocations with a counting allocator) sit next
//! to the times.
//!
//! Families are modules (`b1_pingpong`, `b7_memory`); adding one is a module with a
//! [`Family`] constant and one line in [`FAMILIES`]. Competitors are modules under
//! `competitors/`.
//!
//! Run without `--bench` (as `cargo test` does for a `harness = false` target) and
//! without `--quick`, the binary does nothing and exits 0.

mod alloc;
mod b1_pingpong;
mod b7_memory;
mod chart;
mod competitors;
mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
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
}

/// A family of benchmarks: `run` (in the parent) spawns children and adds its section
/// to the report; `child` is what a child process given `--child <name>` does.
pub struct Family {
    pub name: &'static str,
    pub run: fn(&Config, &mut Report),
    pub child: fn(&[String]),
}

pub const FAMILIES: &[Family] = &[b1_pingpong::FAMILY, b7_memory::FAMILY];

/// A child's answer: the `key=value` pairs of its `RESULT` line.
pub type Measures = BTreeMap<String, f64>;

/// How long a child may run before it is killed and the suite fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `current_exe --child <args>` in a fresh process (under `strace -c -o <path>`
/// if `strace` is given) and parses the `RESULT` line it prints.
pub fn run_child(args: &[String], strace: Option<&Path>) -> Measures {
    let exe = std::env::current_exe().expect("current_exe");
    let mut command = match strace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.arg("-c").arg("-o").arg(out).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    command
        .arg("--child")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("spawn child");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait child") {
            break status;
        }
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            fail(&format!("child {args:?} timed out after {CHILD_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read child");
    if !status.success() {
        fail(&format!("child {args:?} failed: {status}\n{stdout}"));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| fail(&format!("child {args:?} printed no RESULT:\n{stdout}")));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Prints a child's result line (and flushes: children end with `process::exit`).
pub fn print_result(pairs: &[(&str, f64)]) {
    use std::io::Write;
    let mut line = String::from("RESULT");
    for (k, v) in pairs {
        line.push_str(&format!(" {k}={v}"));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn fail(message: &str) -> ! {
    eprintln!("suite: {message}");
    std::process::exit(1);
}

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench suite -- [--quick] [--write] [--reps N] \
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
    if args.first().map(String::as_str) == Some("--child") {
        let name = args.get(1).map(String::as_str).unwrap_or("");
        let family = FAMILIES
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| fail(&format!("no family {name:?}")));
        (family.child)(&args[2..]);
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
        eprintln!("suite: not run (use `cargo bench --bench suite [-- --quick]`)");
        return;
    }

    let config = Config {
        quick,
        reps: reps.unwrap_or(if quick { 1 } else { 5 }),
        competitors: chosen,
        strace: strace_available(),
    };
    let command = format!(
        "cargo bench --bench suite --{}",
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        std::fs::write(&path, &text).expect("write BENCHMARKS.md");
        eprintln!("suite: wrote {}", path.display());
    }
    if !report.failures.is_empty() {
        for f in &report.failures {
            eprintln!("suite: FAILED: {f}");
        }
        std::process::exit(1);
    }
}
