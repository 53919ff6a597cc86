//! Helpers of `tests/reactor.rs` and `tests/listener.rs`: child processes and CPU time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A child process that is killed (and reaped) when dropped, unless it was waited for.
pub struct ChildGuard {
    child: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
}

impl ChildGuard {
    /// Takes `child`; its stdout, if piped, is read line by line on a thread.
    pub fn new(mut child: Child) -> ChildGuard {
        let lines = child.stdout.take().map(spawn_line_reader);
        ChildGuard {
            child: Some(child),
            lines,
        }
    }

    /// What follows `prefix` in the next line the child prints that contains it;
    /// panics if none comes within `limit` (other lines are echoed).
    #[track_caller]
    pub fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let lines = self.lines.as_ref().expect("stdout was not piped");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                // libtest may print "test name ... " before it, on the same line.
                Ok(line) => match line.find(prefix) {
                    Some(at) => return line[at + prefix.len()..].trim().to_string(),
                    None => println!("child: {line}"),
                },
                Err(e) => panic!("no line starting with {prefix:?} from the child: {e:?}"),
            }
        }
    }

    /// Waits for the child to exit, at most `limit` (then kills it and panics).
    /// Returns the exit status and everything it wrote to stderr (if piped).
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("child already waited for");
        let stderr = child.stderr.take().map(|mut e| {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child did not exit within {limit:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        // Print what is left of stdout, for the test log.
        if let Some(lines) = &self.lines {
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
                println!("child: {line}");
            }
        }
        let stderr = stderr.map(|t| t.join().unwrap_or_default());
        (status, stderr.unwrap_or_default())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_line_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Arguments that make the test binary run exactly one test, showing its output.
pub fn exact_test_args(name: &str) -> [String; 4] {
    [
        name.to_string(),
        "--exact".to_string(),
        "--nocapture".to_string(),
        "--test-threads=1".to_string(),
    ]
}

/// CPU time (user + system) used so far by the calling thread, from
/// `/proc/thread-self/stat`, in clock ticks of 10 ms (Linux's `USER_HZ`). A bound on
/// it, unlike one on wall time, does not depend on how loaded the machine is.
pub fn thread_cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/stat").expect("read thread stat");
    cpu_ticks_of(&text) * 10 * Duration::from_millis(1)
}

/// utime + stime of a `/proc/.../stat` line, in ticks.
pub fn cpu_ticks_of(stat: &str) -> u32 {
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    fields[11].parse::<u32>().unwrap() + fields[12].parse::<u32>().unwrap()
}
