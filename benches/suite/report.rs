//! The markdown report: machine, command, method, one section per family, and the
//! helpers families use to turn repetitions into "median (min–max)" cells.

use std::time::Duration;

use std::collections::BTreeMap;

use crate::chart::{Bar, Chart};
use crate::{Config, Measures};

/// Where the charts go, relative to the repository root (and to BENCHMARKS.md).
pub const CHART_DIR: &str = "docs/benchmarks";

/// A chart bar from a summary (NaN when there is none, which the chart shows as "–").
pub fn bar(label: &str, summary: Option<Summary>) -> Bar {
    let s = summary.unwrap_or(Summary {
        median: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
    });
    Bar {
        label: label.to_string(),
        median: s.median,
        min: s.min,
        max: s.max,
    }
}

pub struct Report {
    header: String,
    /// When, how and where this run measured: for sections merged into an older report.
    provenance: String,
    sections: Vec<String>,
    /// Charts to write next to BENCHMARKS.md: file name and SVG.
    pub charts: Vec<(String, String)>,
    /// Hard failures (for example, sockloop allocating in steady state).
    pub failures: Vec<String>,
}

/// Median, min and max of the repetitions.
#[derive(Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// "median (min–max)", or just the value when there was one repetition or all agree.
    pub fn cell(&self, decimals: usize) -> String {
        let (median, min, max) = (
            format!("{:.*}", decimals, self.median),
            format!("{:.*}", decimals, self.min),
            format!("{:.*}", decimals, self.max),
        );
        if min == max {
            median
        } else {
            format!("{median} ({min}–{max})")
        }
    }
}

/// Measures collected over repetitions: competitor (or variant) → metric → values.
#[derive(Default)]
pub struct Repeats(BTreeMap<String, BTreeMap<String, Vec<f64>>>);

impl Repeats {
    /// Adds one repetition's measures for `name`.
    pub fn add(&mut self, name: &str, measures: Measures) {
        let entry = self.0.entry(name.to_string()).or_default();
        for (metric, value) in measures {
            entry.entry(metric).or_default().push(value);
        }
    }

    /// The summary of one metric over the repetitions.
    pub fn get(&self, name: &str, metric: &str) -> Option<Summary> {
        self.0
            .get(name)
            .and_then(|m| m.get(metric))
            .and_then(|v| Summary::of(v))
    }
}

/// A cell for optional values.
pub fn cell(summary: Option<Summary>, decimals: usize) -> String {
    summary.map_or_else(|| "–".to_string(), |s| s.cell(decimals))
}

/// sockloop's median divided by this competitor's, as "×1.23".
pub fn ratio(sockloop: Option<Summary>, this: Option<Summary>) -> String {
    match (sockloop, this) {
        (Some(s), Some(t)) if t.median != 0.0 => {
            let r = s.median / t.median;
            if r != 0.0 && r.abs() < 0.01 {
                format!("×{r:.1e}")
            } else {
                format!("×{r:.2}")
            }
        }
        _ => "–".to_string(),
    }
}

/// A markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", headers.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        headers
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
            .collect::<String>()
    ));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // The load before the suite starts: figures from a busy machine are noisier.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    format!("{cpus} CPUs available ({cpu}), Linux {kernel}; 1-minute load average {load} at start")
}

fn utc_now() -> String {
    // Civil date from the Unix epoch (Howard Hinnant's algorithm), no dependency.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

impl Report {
    pub fn new(command: &str, config: &Config) -> Report {
        let competitors = config
            .competitors
            .iter()
            .map(|c| format!("- **{}**: {}\n", c.name, c.describe))
            .collect::<String>();
        let header = format!(
            "# Benchmarks\n\n\
             Generated by `benches/suite` — do not edit by hand; rerun with `cargo bench -p sockloop-bench --bench suite -- --write`.\n\n\
             - Machine: {machine}\n\
             - Date: {date}\n\
             - Command: `{command}`{quick}\n\
             - Repetitions: {reps} per competitor and case, each in a fresh process, \
             competitors alternating; cells are median (min–max).\n\
             - Processes: every measurement starts a fresh server process and a fresh client \
             process; {placement}.\n\
             - System calls: {strace}\n\
             - Instructions: {callgrind}\n\
             - Everything on loopback (127.0.0.1); client and server share the machine.\n\n\
             Competitors:\n\n{competitors}",
            machine = machine(),
            date = utc_now(),
            quick = if config.quick {
                " (**quick mode: small counts, one repetition — a smoke test, not figures**)"
            } else {
                ""
            },
            reps = config.reps,
            placement = crate::placement_note(),
            strace = if config.strace {
                "counted with `strace -f -c` on the server process (all its threads); \
                 per message = (calls in a run of 2N messages − calls in a run of N) ÷ N, \
                 so start-up and tear-down cancel out"
            } else {
                "not counted (`strace` is not installed)"
            },
            callgrind = if config.callgrind {
                "user-space instructions of the server process (all threads) under \
                 `valgrind --tool=callgrind`, per message as for system calls; kernel work is \
                 not included"
            } else {
                "not counted (`valgrind` is not installed)"
            },
        );
        let provenance = format!(
            "_This section was measured on its own: {date}, `{command}`, {reps} repetitions{quick}; \
             {machine}._\n",
            date = utc_now(),
            reps = config.reps,
            quick = if config.quick { " (quick mode)" } else { "" },
            machine = machine(),
        );
        Report {
            header,
            provenance,
            sections: Vec::new(),
            charts: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Renders `chart` as `<name>.svg` (written with the report, under
    /// [`CHART_DIR`]) and returns the markdown that shows it.
    pub fn chart(&mut self, name: &str, chart: &Chart) -> String {
        let file = format!("{name}.svg");
        self.charts.push((file.clone(), chart.to_svg()));
        format!("\n![{}]({CHART_DIR}/{file})\n", chart.title)
    }

    pub fn section(&mut self, text: String) {
        self.sections.push(text);
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.header.push_str(&format!(
            "\nThe suite took {:.0} s.\n",
            elapsed.as_secs_f64()
        ));
    }

    /// Merges this run's sections into `existing` (a BENCHMARKS.md written by an earlier
    /// run): each section replaces the one of the same benchmark (`## B4 …`) or is
    /// inserted in order, marked with when and how it was measured; the other sections
    /// and the header stay as they were, the closing notes are this run's.
    pub fn merge_into(&self, existing: &str) -> String {
        const TAIL: &str = "\n## Reading these figures";
        let rendered = self.render();
        let tail = rendered.find(TAIL).map_or("", |i| &rendered[i..]);
        let body_end = existing.find(TAIL).unwrap_or(existing.len());
        let body = &existing[..body_end];
        let first = body.find("\n## B").map_or(body.len(), |i| i + 1);
        let mut preamble = body[..first].to_string();
        let note = "Sections that say they were measured on their own come from a later run \
                    than this header's.";
        if !preamble.contains(note) {
            preamble = format!("{}\n\n{note}\n\n", preamble.trim_end());
        }
        // The existing sections, by benchmark number.
        let mut sections: Vec<(u32, String)> = Vec::new();
        let mut rest = &body[first..];
        while !rest.is_empty() {
            let next = rest[1..].find("\n## B").map_or(rest.len(), |i| i + 2);
            let text = &rest[..next];
            sections.push((bench_number(text), text.trim_end().to_string() + "\n"));
            rest = &rest[next..];
        }
        for text in &self.sections {
            let number = bench_number(text);
            let (heading, after) = text.split_once('\n').unwrap_or((text, ""));
            let marked = format!("{heading}\n\n{}{after}", self.provenance)
                .trim_end()
                .to_string()
                + "\n";
            match sections.iter_mut().find(|(n, _)| *n == number) {
                Some(slot) => slot.1 = marked,
                None => sections.push((number, marked)),
            }
        }
        sections.sort_by_key(|(n, _)| *n);
        let mut out = preamble;
        for (_, text) in sections {
            out.push_str(&text);
            out.push('\n');
        }
        out.push_str(tail.trim_start_matches('\n'));
        out
    }

    pub fn render(&self) -> String {
        let mut out = self.header.clone();
        for s in &self.sections {
            out.push('\n');
            out.push_str(s);
        }
        out.push_str(
            "\n## Reading these figures\n\n\
             - Client and server share two CPUs with whatever else runs; differences inside \
             the min–max ranges are noise. The counts (system calls, allocations, heap bytes) \
             are deterministic and are the figures to compare first.\n\
             - Pinned to two CPUs, every message crosses CPUs (a wake-up of the other CPU \
             each way); pinned to one, every message is a context switch instead. Real \
             deployments sit between the two, which is why both are shown for B1.\n\
             - The blocking std server makes 2 calls per round trip because it needs no \
             readiness call; it pays in threads (one per connection) instead.\n\
             - message-io's system call count is not deterministic: it reads until the socket \
             is empty, and whether the next message is already there is a race with the \
             client. `strace` slows the server alone, so the server nearly always finds it and \
             skips epoll_wait; untraced it makes about 3 to 4 calls per round trip, not 2.\n\
             - message-io's instruction counts are approximate: a helper thread of its \
             wakes every 50 ms whatever the traffic, so its count grows with the run's \
             duration, which varies under valgrind; a difference that comes out negative \
             is shown as –.\n\
             - Heap bytes per idle connection count what the allocator handed out, including \
             the unused capacity of grown tables (a slab or map that doubled).\n\
             - Rates (round trips, handshakes, MB/s, datagrams per second) of the same \
             binaries move by a quarter or more between runs on this machine, more than the \
             min–max range of one run shows: B4's sockloop handshakes measured 198 to 310 \
             per second in four runs of one day, each at 12.16 M instructions per \
             handshake. A ratio near 1 is parity; the counts decide.\n",
        );
        if !self.failures.is_empty() {
            out.push_str("\n## Failures\n\n");
            for f in &self.failures {
                out.push_str(&format!("- {f}\n"));
            }
        }
        out
    }
}

/// The number of a section headed `## B4 — …` (sections without one sort last).
fn bench_number(section: &str) -> u32 {
    section
        .trim_start()
        .strip_prefix("## B")
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(u32::MAX)
}
