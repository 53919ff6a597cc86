//! Batched sends (the Windows `BatchedSends` sample), for TCP and UDP: what one handler
//! call writes leaves together when the call returns, in as few system calls as the
//! kernel allows; the same writes made outside a handler leave one by one.
//!
//! The counts are the system's and the library's, not computed here: for TCP, the
//! write system calls (`write`, `writev`, `sendto`, `sendmsg`) that `strace -c`
//! counts in a child process that writes 100 buffers, less those of one that connects
//! and closes without writing (without `strace`, TCP is not counted); for UDP, the
//! socket's own counts of datagrams sent and of the send calls that carried them
//! ([`DatagramSocketInformation`]).
//!
//! ```text
//! cargo run --example batched_sends
//! ```
//!
//! [`DatagramSocketInformation`]: sockloop::DatagramSocketInformation

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use sockloop::{
    DatagramEvent, DatagramSocket, DatagramSocketControl, Reactor, StreamEvent, StreamSocket,
};

const BUFFERS: usize = 100;

#[derive(Default)]
struct Demo {
    connected: bool,
    fired: bool,
    received: usize,
}

/// The TCP part's ways of writing, each run in a child process of its own.
const TCP_MODES: [&str; 3] = ["--tcp-none", "--tcp-batched", "--tcp-each"];

/// Write system calls (`write`, `writev`, `sendto`, `sendmsg`) of a child running
/// `mode`, counted by `strace -f -c`; `None` without strace.
fn traced_writes(mode: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!("batched-sends-{}-{mode}", std::process::id()));
    let status = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-c",
            "-e",
            "trace=write,writev,sendto,sendmsg",
            "-o",
        ])
        .arg(&out)
        .arg(exe)
        .arg(mode)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        return None;
    }
    // "% time  seconds  usecs/call  calls  [errors]  syscall"
    let calls = text?
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = *f.last()?;
            let known = ["write", "writev", "sendto", "sendmsg"].contains(&name);
            (known && f.len() >= 5).then(|| f[3].parse::<f64>().ok())?
        })
        .sum();
    Some(calls)
}

/// Turns the reactor until `done` holds (at most ten seconds).
fn turn_until(
    reactor: &mut Reactor<Demo>,
    demo: &mut Demo,
    done: impl Fn(&Demo) -> bool,
) -> Result<(), sockloop::Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(demo) {
        if Instant::now() > deadline {
            return Err(sockloop::Error::new(
                sockloop::SocketErrorStatus::ConnectionTimedOut,
                "batched sends sample",
            ));
        }
        reactor.turn(demo, Some(Duration::from_millis(100)))?;
    }
    Ok(())
}

/// One TCP connection to a peer thread that reads until it closes: `mode` says
/// whether 100 buffers are written in one handler call, outside handlers one by one,
/// or not at all (the baseline: connecting and closing). Prints nothing (its writes
/// are being counted).
fn tcp_child(mode: &str) -> Result<(), sockloop::Error> {
    let mut reactor = Reactor::<Demo>::new()?;
    let demo = &mut Demo::default();
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| sockloop::Error::from_io("bind", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| sockloop::Error::from_io("bind", e))?
        .port();
    let peer = std::thread::spawn(move || -> usize {
        let Ok((mut conn, _)) = listener.accept() else {
            return 0;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut all = Vec::new();
        let _ = conn.read_to_end(&mut all);
        all.len()
    });
    let socket = StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        port,
        |_, demo: &mut Demo, _, event| {
            if let StreamEvent::Connected = event {
                demo.connected = true;
            }
        },
    )?;
    turn_until(&mut reactor, demo, |d| d.connected)?;
    match mode {
        "--tcp-batched" => {
            // In one handler call (a timer's): sent when it returns.
            reactor.set_timer(Duration::ZERO, move |reactor, demo: &mut Demo, _| {
                for i in 0..BUFFERS {
                    let _ = socket.write(reactor, &[b'a' + (i % 26) as u8; 100]);
                }
                demo.fired = true;
            });
            turn_until(&mut reactor, demo, |d| d.fired)?;
        }
        "--tcp-each" => {
            // Outside a handler: each write is sent at once.
            for i in 0..BUFFERS {
                socket.write(&mut reactor, &[b'a' + (i % 26) as u8; 100])?;
            }
        }
        _ => {}
    }
    socket.close(&mut reactor)?;
    turn_until(&mut reactor, demo, |_| peer.is_finished())?;
    let expected = if mode == "--tcp-none" {
        0
    } else {
        BUFFERS * 100
    };
    match peer.join() {
        Ok(n) if n == expected => Ok(()),
        _ => Err(sockloop::Error::new(
            sockloop::SocketErrorStatus::Unknown,
            "batched sends sample",
        )
        .with_detail("the peer did not read every byte")),
    }
}

fn tcp() {
    let counts: Vec<Option<f64>> = TCP_MODES.iter().map(|m| traced_writes(m)).collect();
    let (Some(none), Some(batched), Some(each)) = (counts[0], counts[1], counts[2]) else {
        println!("TCP: not counted (needs `strace` on the PATH, and each run to succeed)");
        return;
    };
    println!(
        "TCP: {BUFFERS} buffers of 100 bytes written in one handler call left in {} write system call(s)",
        batched - none
    );
    println!(
        "TCP: {BUFFERS} buffers written outside a handler left in {} write system calls",
        each - none
    );
}

fn udp(reactor: &mut Reactor<Demo>, demo: &mut Demo) -> Result<(), sockloop::Error> {
    demo.received = 0;
    let control = DatagramSocketControl::new().inbound_buffer_size(Some(1 << 20));
    let receiver = DatagramSocket::bind_with(
        reactor,
        "127.0.0.1",
        0,
        &control,
        |_, demo: &mut Demo, _, event| {
            if let DatagramEvent::MessageReceived(_) = event {
                demo.received += 1;
            }
        },
    )?;
    let port = receiver
        .information(reactor)?
        .local_address
        .map_or(0, |a| a.port());
    let sender = DatagramSocket::bind(reactor, "127.0.0.1", 0, |_, _, _, _| {})?;
    let out = sender.output_to(reactor, "127.0.0.1", port)?;

    // Three batches, each from one handler call: same-size datagrams (a GSO train),
    // datagrams of varied sizes (`sendmmsg`), and the same once more.
    let mut expected = 0;
    for (name, sizes) in [
        ("same size (100 bytes)", [100usize; BUFFERS].to_vec()),
        (
            "varied sizes (1 to 1,000 bytes)",
            (0..BUFFERS).map(|i| 1 + (i * 211) % 1000).collect(),
        ),
    ] {
        let start = sender.information(reactor)?;
        demo.fired = false;
        let batch = sizes.clone();
        reactor.set_timer(Duration::ZERO, move |reactor, demo: &mut Demo, _| {
            for size in &batch {
                let _ = out.write(reactor, &vec![7u8; *size]);
            }
            demo.fired = true;
        });
        expected += sizes.len();
        turn_until(reactor, demo, |d| d.fired && d.received == expected)?;
        let end = sender.information(reactor)?;
        println!(
            "UDP: {} datagrams of {name} written in one handler call left in {} send system call(s)",
            end.datagrams_sent - start.datagrams_sent,
            end.send_calls - start.send_calls
        );
    }

    let start = sender.information(reactor)?;
    for _ in 0..BUFFERS {
        out.write(reactor, &[7u8; 100])?;
    }
    expected += BUFFERS;
    let end = sender.information(reactor)?;
    println!(
        "UDP: {} datagrams written outside a handler left in {} send system calls",
        end.datagrams_sent - start.datagrams_sent,
        end.send_calls - start.send_calls
    );
    turn_until(reactor, demo, |d| d.received == expected)?;
    println!(
        "UDP: the receiver got {} datagrams (of {expected})",
        demo.received
    );
    receiver.close(reactor)?;
    sender.close(reactor)?;
    Ok(())
}

fn main() -> Result<(), sockloop::Error> {
    env_logger::init();
    if let Some(mode) = std::env::args().nth(1) {
        if TCP_MODES.contains(&mode.as_str()) {
            return tcp_child(&mode);
        }
    }
    tcp();
    let mut reactor = Reactor::<Demo>::new()?;
    udp(&mut reactor, &mut Demo::default())
}
