//! `examples/sockcat.rs` in its datagram modes, run as a child process against
//! sockets of this process on loopback: `--udp HOST PORT` (each stdin line a
//! datagram, answers on stdout), `--udp -l HOST PORT` (datagrams from anyone on
//! stdout, stdin lines to the last sender) and `--multicast GROUP --if INDEX PORT`
//! (lines to the group, the group's datagrams on stdout, its own included). The
//! example is built by `cargo test` before the tests run; with `cargo test --test
//! sockcat_udp` alone, build it first (`cargo build --example sockcat`), or the tests
//! say they skipped.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// The example's binary (see [`util::example`]).
fn sockcat() -> Option<PathBuf> {
    util::example("sockcat")
}

fn spawn(args: &[&str]) -> Option<Child> {
    Some(
        Command::new(sockcat()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for the child to exit within the limit (killed and a failure otherwise);
/// returns what is left of its stdout (of the pipes the test has not taken).
fn finish(mut child: Child) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut out).unwrap();
            }
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                stderr.read_to_string(&mut err).unwrap();
            }
            assert!(status.success(), "sockcat failed ({status}): {err}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sockcat did not end within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `--udp 127.0.0.1 PORT`: each line of stdin leaves as one datagram; what the peer
/// answers is written to stdout; at the end of stdin it waits a little for answers
/// and ends.
#[test]
fn udp_sends_each_line_as_a_datagram_and_prints_the_answers() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let port = peer.local_addr().unwrap().port().to_string();
    let Some(mut child) = spawn(&["--udp", "127.0.0.1", &port]) else {
        return;
    };
    let echo = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..2 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
            peer.send_to(&[b"echo: ", &buf[..n]].concat(), from)
                .unwrap();
        }
        got
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").unwrap();
    // Both lines answered before stdin ends, so that both answers come within the
    // time sockcat listens after it.
    let got = echo.join().unwrap();
    drop(stdin);
    assert_eq!(got, [b"one\n".to_vec(), b"two\n".to_vec()]);
    assert_eq!(finish(child), "echo: one\necho: two\n");
}

/// `--udp -l 127.0.0.1 0`: datagrams from anyone go to stdout; a line of stdin
/// answers the last sender.
#[test]
fn udp_listen_prints_datagrams_and_answers_the_last_sender() {
    let Some(mut child) = spawn(&["--udp", "-l", "127.0.0.1", "0"]) else {
        return;
    };
    // "sockcat: receiving on 127.0.0.1:PORT" on stderr.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(LIMIT)
        .expect("sockcat says where it receives");
    let at = line
        .strip_prefix("sockcat: receiving on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .parse::<std::net::SocketAddr>()
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.send_to(b"hello\n", at).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    stdout.read_line(&mut printed).unwrap();
    assert_eq!(printed, "hello\n");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"welcome\n").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"welcome\n");
    assert_eq!(from, at);
    drop(stdin);
    // Nothing more on stdout, and a clean exit.
    child.stdout = Some(stdout.into_inner());
    assert_eq!(finish(child), "");
}

/// `--multicast 239.255.77.21 --if <lo> 0`: lines of stdin go to the group; with
/// multicast loopback on, sockcat receives them back through the group it joined.
#[test]
fn multicast_sends_lines_to_the_group_and_prints_what_the_group_gets() {
    let Some(lo) = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        println!("SKIP: no /sys/class/net/lo/ifindex, cannot name the loopback interface");
        return;
    };
    let lo = lo.to_string();
    let Some(mut child) = spawn(&["--multicast", "239.255.77.21", "--if", &lo, "0"]) else {
        return;
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"to the group\n").unwrap();
    drop(stdin);
    assert_eq!(finish(child), "to the group\n");
}
