//! `DatagramSocket`, continued: batched receives (`recvmmsg`) and their fallback,
//! 100,000 datagrams through the batched path, destination handles (`output_to`),
//! a third-party receiver sharing a multicast port, IPv6 multicast, multicast
//! loopback off and unroutable destinations in network namespaces.

mod util;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sockloop::{DatagramEvent, DatagramSocket, DatagramSocketControl, Reactor};
use util::run_until;

const LIMIT: Duration = Duration::from_secs(20);

/// (socket, remote, local, payload, truncated)
type Got = Vec<(DatagramSocket, SocketAddr, SocketAddr, Vec<u8>, bool)>;

fn record(_: &mut Reactor<Got>, got: &mut Got, socket: DatagramSocket, event: DatagramEvent<'_>) {
    if let DatagramEvent::MessageReceived(m) = event {
        got.push((socket, m.remote, m.local, m.data.to_vec(), m.truncated));
    }
}

fn local<S>(r: &Reactor<S>, socket: DatagramSocket) -> SocketAddr {
    socket.information(r).unwrap().local_address.unwrap()
}

/// Two senders interleave 200 datagrams (one of them longer than the read buffer)
/// before the reactor turns: each arrives as its own message with its own sender and
/// truncation flag, in the order sent per sender, and with batching the reads take
/// a sixteenth of the calls they take without.
fn receive_a_burst(batching: bool) -> (u64, u64) {
    let mut r = Reactor::<Got>::builder()
        .read_buffer_size(1024)
        .build()
        .unwrap();
    let control = DatagramSocketControl::new().batching(batching);
    let socket = DatagramSocket::bind_with(&mut r, "127.0.0.1", 0, &control, record).unwrap();
    let to = local(&r, socket);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..100u32 {
        a.send_to(&i.to_be_bytes(), to).unwrap();
        let long = if i == 50 { vec![7u8; 3000] } else { vec![] };
        let payload = if i == 50 {
            long
        } else {
            [i.to_be_bytes(), [1; 4]].concat()
        };
        b.send_to(&payload, to).unwrap();
    }
    let mut got = Got::new();
    run_until(&mut r, &mut got, LIMIT, |g| g.len() == 200);
    let from_a: Vec<_> = got
        .iter()
        .filter(|m| m.1 == a.local_addr().unwrap())
        .collect();
    let from_b: Vec<_> = got
        .iter()
        .filter(|m| m.1 == b.local_addr().unwrap())
        .collect();
    assert_eq!((from_a.len(), from_b.len()), (100, 100));
    for (i, m) in from_a.iter().enumerate() {
        assert_eq!(m.3, (i as u32).to_be_bytes(), "sender a, datagram {i}");
        assert!(!m.4);
        assert_eq!(m.2, to);
    }
    for (i, m) in from_b.iter().enumerate() {
        if i == 50 {
            assert!(m.4, "the 3,000-byte datagram is flagged truncated");
            assert_eq!(m.3, vec![7u8; 1024]);
        } else {
            assert!(!m.4, "datagram {i} of b is whole");
            assert_eq!(m.3, [(i as u32).to_be_bytes(), [1; 4]].concat());
        }
    }
    let info = socket.information(&r).unwrap();
    assert_eq!(info.datagrams_received, 200);
    (info.datagrams_received, info.receive_calls)
}

#[test]
fn batched_receive_delivers_each_datagram_with_its_own_sender_and_flag() {
    let (received, calls) = receive_a_burst(true);
    // 200 waiting datagrams, 16 a call: 13 calls, and one that finds nothing; a
    // turn cut by the read budget adds a few.
    assert!(calls <= 30, "{received} datagrams in {calls} receive calls");
}

#[test]
fn unbatched_receive_reads_one_datagram_a_call() {
    let (received, calls) = receive_a_burst(false);
    assert!(
        calls > received,
        "{received} datagrams in {calls} receive calls"
    );
}

/// A handler that records messages and errors.
#[derive(Default)]
struct Log {
    got: Got,
    errors: Vec<sockloop::Error>,
}

fn log(_: &mut Reactor<Log>, log: &mut Log, socket: DatagramSocket, event: DatagramEvent<'_>) {
    match event {
        DatagramEvent::MessageReceived(m) => {
            log.got
                .push((socket, m.remote, m.local, m.data.to_vec(), m.truncated))
        }
        DatagramEvent::Error(e) => log.errors.push(e),
        _ => {}
    }
}

#[test]
fn output_to_an_address_sends_one_handler_calls_datagrams_together() {
    let mut r = Reactor::<Log>::new().unwrap();
    let receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let to = local(&r, receiver);
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let out = sender.output_to(&mut r, "127.0.0.1", to.port()).unwrap();
    assert_eq!(out.destination(&r).unwrap(), Some(to));
    assert_eq!(out.socket(), sender);
    // Ten datagrams written in one handler call (a timer's).
    r.set_timer(Duration::ZERO, move |r, _, _| {
        for i in 0..10u8 {
            out.write(r, &[i; 100]).unwrap();
        }
    });
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 10);
    for (i, m) in seen.got.iter().enumerate() {
        assert_eq!(m.3, vec![i as u8; 100]);
    }
    let info = sender.information(&r).unwrap();
    assert_eq!(info.datagrams_sent, 10);
    assert_eq!(info.send_calls, 1, "ten datagrams left in one system call");
}

#[test]
fn output_to_a_name_holds_writes_until_it_resolves_then_sends_them_in_order() {
    let mut r = Reactor::<Log>::new().unwrap();
    let receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let to = local(&r, receiver);
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let out = sender.output_to(&mut r, "localhost", to.port()).unwrap();
    // The answer is taken on a turn: none has run yet.
    assert_eq!(out.destination(&r).unwrap(), None);
    for i in 0..3u8 {
        out.write(&mut r, &[i; 10]).unwrap();
    }
    assert_eq!(
        sender.into_std(&mut r).unwrap_err().status(),
        sockloop::SocketErrorStatus::InvalidState
    );
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 3);
    assert_eq!(out.destination(&r).unwrap(), Some(to));
    for (i, m) in seen.got.iter().enumerate() {
        assert_eq!(m.3, vec![i as u8; 10]);
    }
    out.write(&mut r, b"after").unwrap();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 4);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
}

#[test]
fn output_to_a_name_that_does_not_resolve_reports_what_waited() {
    let mut r = Reactor::<Log>::new().unwrap();
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let out = sender.output_to(&mut r, "no-such-host.invalid", 9).unwrap();
    out.write(&mut r, b"one").unwrap();
    out.write(&mut r, b"two").unwrap();
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| !l.errors.is_empty());
    let err = &seen.errors[0];
    println!("reported: {err}");
    assert!(err.to_string().contains("2 datagrams"), "{err}");
    let later = out.write(&mut r, b"three").unwrap_err();
    assert_eq!(later.status(), err.status());
    assert!(out.destination(&r).is_err());
    // The socket itself still works.
    let to = local(&r, sender);
    sender.send_to(&mut r, to, b"self").unwrap();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 1);
}

#[test]
fn output_to_a_name_bounds_what_waits() {
    let mut r = Reactor::<Log>::builder()
        .watermarks(1024, 4096, 8192)
        .build()
        .unwrap();
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let out = sender.output_to(&mut r, "localhost", 9).unwrap();
    let mut accepted = 0;
    let err = loop {
        match out.write(&mut r, &[0; 1000]) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "writes before resolution are not bounded");
    };
    assert_eq!(accepted, 8);
    assert_eq!(
        err.status(),
        sockloop::SocketErrorStatus::NoBufferSpaceAvailable
    );
    let big = out.write(&mut r, &[0; 65_508]).unwrap_err();
    assert_eq!(big.status(), sockloop::SocketErrorStatus::MessageTooLong);
}

/// 100,000 datagrams of varied sizes through the batched path (bursts from handler
/// calls: GSO trains and `sendmmsg`; `recvmmsg` and GRO on receive), with a window so
/// that the receive buffer never overflows: all arrive, whole and in order.
#[test]
fn hundred_thousand_datagrams_through_the_batched_path_in_order() {
    const COUNT: u32 = 100_000;
    const WINDOW: u32 = 256;
    struct Flow {
        sender: DatagramSocket,
        to: SocketAddr,
        sent: u32,
        received: u32,
        wrong: u32,
    }
    fn payload(seq: u32, buf: &mut [u8; 1500]) -> &[u8] {
        // Runs of same-size datagrams (GSO) and runs of mixed sizes (sendmmsg).
        let len = if (seq / 64) % 2 == 0 {
            200
        } else {
            4 + (seq as usize * 37) % 1400
        };
        buf[..4].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in buf[4..len].iter_mut().enumerate() {
            *b = (seq as usize + i) as u8;
        }
        &buf[..len]
    }
    fn top_up(r: &mut Reactor<Flow>, flow: &mut Flow) {
        let mut buf = [0u8; 1500];
        while flow.sent < COUNT && flow.sent - flow.received < WINDOW {
            let data = payload(flow.sent, &mut buf);
            flow.sender.send_to(r, flow.to, data).unwrap();
            flow.sent += 1;
        }
    }
    let mut r = Reactor::<Flow>::new().unwrap();
    let control = DatagramSocketControl::new().inbound_buffer_size(Some(1 << 20));
    let receiver = DatagramSocket::bind_with(
        &mut r,
        "127.0.0.1",
        0,
        &control,
        |r, flow: &mut Flow, _, event| {
            if let DatagramEvent::MessageReceived(m) = event {
                let mut buf = [0u8; 1500];
                if m.data != payload(flow.received, &mut buf) || m.truncated {
                    flow.wrong += 1;
                }
                flow.received += 1;
                if flow.sent - flow.received < WINDOW / 2 {
                    top_up(r, flow);
                }
            }
        },
    )
    .unwrap();
    let to = local(&r, receiver);
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    let mut flow = Flow {
        sender,
        to,
        sent: 0,
        received: 0,
        wrong: 0,
    };
    r.set_timer(Duration::ZERO, |r, flow: &mut Flow, _| top_up(r, flow));
    run_until(&mut r, &mut flow, Duration::from_secs(120), |f| {
        f.received == COUNT
    });
    assert_eq!(flow.wrong, 0, "datagrams out of order, cut or changed");
    let sent = sender.information(&r).unwrap();
    let got = receiver.information(&r).unwrap();
    println!(
        "{} datagrams in {} send calls, {} in {} receive calls",
        sent.datagrams_sent, sent.send_calls, got.datagrams_received, got.receive_calls
    );
    assert_eq!(sent.datagrams_sent, u64::from(COUNT));
    assert!(
        sent.send_calls * 4 < sent.datagrams_sent,
        "sends were batched"
    );
    assert!(
        got.receive_calls * 2 < got.datagrams_received,
        "receives were batched"
    );
}

/// The interface index of `name` (`/sys/class/net/NAME/ifindex`).
fn if_index(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A third-party program (python3's `socket`, `SO_REUSEADDR` + `SO_REUSEPORT`, joined
/// to the group on `lo`) shares the port with a `multicast_only` socket of ours: both
/// receive every datagram sent to the group.
#[test]
fn a_third_party_receiver_shares_the_port_and_gets_the_same_datagrams() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let Some(lo) = if_index("lo") else {
        println!("SKIP: no /sys/class/net/lo/ifindex, cannot name the loopback interface");
        return;
    };
    let group = "239.255.78.1";
    let mut r = Reactor::<Got>::new().unwrap();
    let shared = DatagramSocketControl::new().multicast_only(true);
    let ours = DatagramSocket::bind_with(&mut r, "0.0.0.0", 0, &shared, record).unwrap();
    let port = local(&r, ours).port();
    if let Err(e) = ours.join_multicast_group_on(&mut r, group, lo) {
        println!("SKIP: cannot join {group} on lo (index {lo}): {e}");
        return;
    }
    let script = format!(
        r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", {port}))
mreqn = socket.inet_aton("{group}") + socket.inet_aton("0.0.0.0") + struct.pack("@i", {lo})
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
s.settimeout(15)
print("READY", flush=True)
for _ in range(3):
    data, _ = s.recvfrom(2048)
    print(data.hex(), flush=True)
"#
    );
    let child = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("SKIP: python3 cannot be started: {e}");
            return;
        }
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    match lines.next() {
        Some(Ok(l)) if l == "READY" => {}
        other => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "python3 receiver did not start: {other:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let sending = DatagramSocketControl::new().multicast_interface(Some(lo));
    let sender = DatagramSocket::bind_with(&mut r, "127.0.0.1", 0, &sending, record).unwrap();
    let to: SocketAddr = format!("{group}:{port}").parse().unwrap();
    let payloads: [&[u8]; 3] = [b"one", b"", b"three, the last"];
    // One handler call: the three leave together (batched).
    r.set_timer(Duration::ZERO, move |r, _, _| {
        for p in payloads {
            sender.send_to(r, to, p).unwrap();
        }
    });
    let mut got = Got::new();
    run_until(&mut r, &mut got, LIMIT, |g| g.len() == 3);
    let theirs: Vec<String> = lines.by_ref().take(3).map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "python3 receiver: {status}");
    let ours: Vec<String> = got
        .iter()
        .map(|m| m.3.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let sent: Vec<String> = payloads
        .iter()
        .map(|p| p.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(ours, sent, "our socket got every datagram, in order");
    assert_eq!(theirs, sent, "the third-party socket got the same");
}

/// A network namespace this test makes (`ip netns add`) and deletes when dropped.
struct Netns(String);

impl Netns {
    /// A namespace with `lo` up and a veth pair `v0`/`v1` (10.77.0.1/24 and
    /// 10.77.0.2/24, IPv6 link-local addresses usable at once), or why not.
    fn new(tag: &str) -> Result<Netns, String> {
        let name = format!("sockloop-udp-{}-{tag}", std::process::id());
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("`ip` cannot be run: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`ip {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&["netns", "add", &name])?;
        let ns = Netns(name.clone());
        let n = name.as_str();
        ip(&[
            "netns",
            "exec",
            n,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ])?;
        ip(&["-n", n, "addr", "add", "10.77.0.1/24", "dev", "v0"])?;
        ip(&["-n", n, "addr", "add", "10.77.0.2/24", "dev", "v1"])?;
        ip(&["-n", n, "link", "set", "v0", "up"])?;
        ip(&["-n", n, "link", "set", "v1", "up"])?;
        Ok(ns)
    }

    /// Runs the ignored test `test` of this binary inside the namespace; panics with
    /// its output if it fails.
    fn run(&self, test: &str) {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(exe)
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SOCKLOOP_TEST_NETNS", &self.0)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(out.status.success(), "{test} failed inside {}", self.0);
        assert!(
            text.contains("1 passed"),
            "{test} did not run inside {}",
            self.0
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// Runs `test` in a fresh namespace, or says why it cannot.
fn in_netns(tag: &str, test: &str) {
    match Netns::new(tag) {
        Ok(ns) => ns.run(test),
        Err(why) => println!("SKIP: no network namespace for {test}: {why} (needs root and `ip`)"),
    }
}

/// Inside a namespace only (see [`in_netns`]): `None` elsewhere, with the reason
/// printed.
fn netns_only() -> Option<String> {
    let ns = std::env::var("SOCKLOOP_TEST_NETNS").ok();
    if ns.is_none() {
        println!("SKIP: runs only inside the namespace its outer test makes");
    }
    ns
}

#[test]
fn multicast_loopback_off_in_a_namespace() {
    in_netns("loop", "inside_netns_multicast_loopback_off");
}

/// A receiver joined on `v0` gets the group's datagrams from a sender on `v0` with
/// multicast loopback on, and none from one with it off, though that one's left
/// (the kernel took it: counted sent, no error).
#[test]
#[ignore = "run inside a network namespace by multicast_loopback_off_in_a_namespace"]
fn inside_netns_multicast_loopback_off() {
    let Some(_) = netns_only() else { return };
    let v0 = if_index("v0").unwrap();
    let group = "239.255.79.1";
    let mut r = Reactor::<Log>::new().unwrap();
    let shared = DatagramSocketControl::new().multicast_only(true);
    let receiver = DatagramSocket::bind_with(&mut r, "0.0.0.0", 0, &shared, log).unwrap();
    let port = local(&r, receiver).port();
    receiver.join_multicast_group_on(&mut r, group, v0).unwrap();
    let to: SocketAddr = format!("{group}:{port}").parse().unwrap();
    let quiet = DatagramSocketControl::new()
        .multicast_interface(Some(v0))
        .multicast_loopback(false);
    let looped = DatagramSocketControl::new()
        .multicast_interface(Some(v0))
        .multicast_loopback(true);
    let off = DatagramSocket::bind_with(&mut r, "10.77.0.1", 0, &quiet, log).unwrap();
    let on = DatagramSocket::bind_with(&mut r, "10.77.0.1", 0, &looped, log).unwrap();
    off.send_to(&mut r, to, b"not looped").unwrap();
    let mut seen = Log::default();
    util::run_for(&mut r, &mut seen, Duration::from_millis(300));
    assert!(
        seen.got.is_empty(),
        "looped back though off: {:?}",
        seen.got
    );
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(off.information(&r).unwrap().datagrams_sent, 1);
    on.send_to(&mut r, to, b"looped").unwrap();
    run_until(&mut r, &mut seen, LIMIT, |l| !l.got.is_empty());
    util::run_for(&mut r, &mut seen, Duration::from_millis(100));
    assert_eq!(seen.got.len(), 1);
    assert_eq!(seen.got[0].3, b"looped");
    println!("multicast loopback off: nothing looped; on: looped");
}

#[test]
fn ipv6_multicast_in_a_namespace() {
    in_netns("v6", "inside_netns_ipv6_multicast_and_group_isolation");
}

/// IPv6 multicast on a named interface (`v0`, link-local scope ff12::): two
/// `multicast_only` sockets in one group both receive, a third on the port in
/// another group does not; the local address of each message is its group.
#[test]
#[ignore = "run inside a network namespace by ipv6_multicast_in_a_namespace"]
fn inside_netns_ipv6_multicast_and_group_isolation() {
    let Some(_) = netns_only() else { return };
    let v0 = if_index("v0").unwrap();
    let (g1, g2) = ("ff12::7a:1", "ff12::7a:2");
    let mut r = Reactor::<Log>::new().unwrap();
    let shared = DatagramSocketControl::new()
        .multicast_only(true)
        .only_ipv6(true);
    let a = DatagramSocket::bind_with(&mut r, "::", 0, &shared, log).unwrap();
    let port = local(&r, a).port();
    let b = DatagramSocket::bind_with(&mut r, "::", port, &shared, log).unwrap();
    let c = DatagramSocket::bind_with(&mut r, "::", port, &shared, log).unwrap();
    a.join_multicast_group_on(&mut r, g1, v0).unwrap();
    b.join_multicast_group_on(&mut r, g1, v0).unwrap();
    c.join_multicast_group_on(&mut r, g2, v0).unwrap();
    let sending = DatagramSocketControl::new().multicast_interface(Some(v0));
    let sender = DatagramSocket::bind_with(&mut r, "::", 0, &sending, log).unwrap();
    let to = SocketAddr::V6(std::net::SocketAddrV6::new(
        g1.parse().unwrap(),
        port,
        0,
        v0,
    ));
    sender.send_to(&mut r, to, b"to g1").unwrap();
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() >= 2);
    util::run_for(&mut r, &mut seen, Duration::from_millis(200));
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let mut receivers: Vec<_> = seen.got.iter().map(|m| m.0).collect();
    receivers.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(receivers, expected, "each member of g1 once, g2's none");
    for m in &seen.got {
        assert_eq!(m.3, b"to g1");
        assert_eq!(m.2.ip(), g1.parse::<std::net::IpAddr>().unwrap());
    }
    println!(
        "IPv6 multicast on v0 (index {v0}): {} deliveries",
        seen.got.len()
    );
}

#[test]
fn unroutable_destination_in_a_namespace() {
    in_netns("noroute", "inside_netns_unroutable_destination_is_reported");
}

/// In a namespace that routes only 10.77.0.0/24 and loopback, a datagram to
/// 10.99.0.1 fails (`ENETUNREACH`): reported as an error with its status and
/// destination; the socket stays open, and another socket is served meanwhile.
#[test]
#[ignore = "run inside a network namespace by unroutable_destination_in_a_namespace"]
fn inside_netns_unroutable_destination_is_reported() {
    let Some(_) = netns_only() else { return };
    let mut r = Reactor::<Log>::new().unwrap();
    let echo = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |r, log: &mut Log, s, event| {
        if let DatagramEvent::MessageReceived(m) = &event {
            s.send_to(r, m.remote, m.data).unwrap();
        }
        self::log(r, log, s, event);
    })
    .unwrap();
    let echo_at = local(&r, echo);
    let sender = DatagramSocket::bind(&mut r, "0.0.0.0", 0, log).unwrap();
    let nowhere: SocketAddr = "10.99.0.1:9".parse().unwrap();
    // In one handler call: the unroutable one between two that go.
    r.set_timer(Duration::ZERO, move |r, _, _| {
        sender.send_to(r, echo_at, b"before").unwrap();
        sender.send_to(r, nowhere, b"nowhere").unwrap();
        sender.send_to(r, echo_at, b"after").unwrap();
    });
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| {
        !l.errors.is_empty() && l.got.iter().filter(|m| m.0 == sender).count() == 2
    });
    let err = &seen.errors[0];
    println!("reported: {err}");
    assert_eq!(
        err.status(),
        sockloop::SocketErrorStatus::NetworkIsUnreachable,
        "{err}"
    );
    assert_eq!(err.address(), Some(nowhere));
    let echoed: Vec<_> = seen
        .got
        .iter()
        .filter(|m| m.0 == sender)
        .map(|m| m.3.clone())
        .collect();
    assert_eq!(echoed, [b"before".to_vec(), b"after".to_vec()]);
    // Still usable.
    sender.send_to(&mut r, echo_at, b"again").unwrap();
    run_until(&mut r, &mut seen, LIMIT, |l| {
        l.got.iter().filter(|m| m.0 == sender).count() == 3
    });
}

/// Lookups run in parallel, so answers come in any order: each destination gets the
/// answer for its own name. The first name resolves slowly, the second at once; each
/// output's datagrams must reach its own receiver.
#[test]
fn outputs_by_name_get_their_own_answers_whatever_the_order() {
    let mut r = Reactor::<Got>::new().unwrap();
    let slow_receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record).unwrap();
    let fast_receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record).unwrap();
    let (slow_to, fast_to) = (local(&r, slow_receiver), local(&r, fast_receiver));
    r.set_name_lookup(move |host: &sockloop::HostName, port| {
        let ip = std::net::Ipv4Addr::LOCALHOST;
        match host.raw_name() {
            "slow.test" => {
                std::thread::sleep(Duration::from_millis(300));
                Ok(vec![SocketAddr::from((ip, port))])
            }
            _ => Ok(vec![SocketAddr::from((ip, port))]),
        }
    });
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record).unwrap();
    let slow = sender
        .output_to(&mut r, "slow.test", slow_to.port())
        .unwrap();
    let fast = sender
        .output_to(&mut r, "fast.test", fast_to.port())
        .unwrap();
    slow.write(&mut r, b"to slow").unwrap();
    fast.write(&mut r, b"to fast").unwrap();
    let mut got = Got::new();
    run_until(&mut r, &mut got, LIMIT, |g| g.len() == 2);
    assert_eq!(fast.destination(&r).unwrap(), Some(fast_to));
    assert_eq!(slow.destination(&r).unwrap(), Some(slow_to));
    for (socket, _, _, payload, _) in &got {
        let expected: &[u8] = if *socket == slow_receiver {
            b"to slow"
        } else {
            assert_eq!(*socket, fast_receiver);
            b"to fast"
        };
        assert_eq!(payload, expected);
    }
}

/// The segments of a coalesced receive (GRO) are delivered within one handler call of
/// the loop; a handler that closes its socket partway gets no more of them, and gets
/// `Closed` once.
#[test]
fn a_handler_closing_its_socket_partway_through_a_train_gets_no_more() {
    #[derive(Default)]
    struct Seen {
        got: Vec<u8>,
        closed: usize,
        after_close: usize,
    }
    let mut r = Reactor::<Seen>::new().unwrap();
    let receiver = DatagramSocket::bind(
        &mut r,
        "127.0.0.1",
        0,
        |r, seen: &mut Seen, socket, event| match event {
            DatagramEvent::MessageReceived(m) => {
                if seen.closed > 0 {
                    seen.after_close += 1;
                }
                seen.got.push(m.data[0]);
                if seen.got.len() == 10 {
                    socket.close(r).unwrap();
                }
            }
            DatagramEvent::Closed(_) => seen.closed += 1,
            _ => {}
        },
    )
    .unwrap();
    let to = receiver.information(&r).unwrap().local_address.unwrap();
    // 64 same-size datagrams in one handler call: one GSO train, coalesced on receive
    // where the kernel does GRO.
    let sender = DatagramSocket::bind(
        &mut r,
        "127.0.0.1",
        0,
        move |r, _: &mut Seen, socket, event| {
            if let DatagramEvent::MessageReceived(_) = event {
                for i in 0..64u8 {
                    socket.send_to(r, to, &[i; 100]).unwrap();
                }
            }
        },
    )
    .unwrap();
    let go = UdpSocket::bind("127.0.0.1:0").unwrap();
    go.send_to(b"go", local(&r, sender)).unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.closed == 1);
    util::run_for(&mut r, &mut seen, Duration::from_millis(100));
    assert_eq!(seen.got, (0..10).collect::<Vec<u8>>());
    assert_eq!((seen.closed, seen.after_close), (1, 0));
}

/// `send_segments_to`: a train written in one call arrives as its datagrams, each a
/// message of its own, in order, the last one shorter; it queues behind and before
/// single datagrams without reordering; it leaves in few send calls; bad sizes are
/// refused with nothing queued.
#[test]
fn a_train_of_segments_arrives_as_its_datagrams_in_order() {
    let mut r = Reactor::<Log>::new().unwrap();
    let receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let to = local(&r, receiver);
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    // 130 datagrams of 100 bytes and one of 37, each byte telling its datagram.
    let train: Vec<u8> = (0..13_037usize).map(|i| (i / 100) as u8).collect();
    r.set_timer(Duration::ZERO, move |r, _, _| {
        sender.send_to(r, to, b"first").unwrap();
        sender.send_segments_to(r, to, &train, 100).unwrap();
        sender.send_to(r, to, b"last").unwrap();
        // Refused, with nothing queued.
        let zero = sender.send_segments_to(r, to, b"abc", 0).unwrap_err();
        assert_eq!(zero.status(), sockloop::SocketErrorStatus::InvalidArgument);
        let long = sender
            .send_segments_to(r, to, &[0; 140_000], 70_000)
            .unwrap_err();
        assert_eq!(long.status(), sockloop::SocketErrorStatus::MessageTooLong);
        // Nothing to send.
        sender.send_segments_to(r, to, &[], 100).unwrap();
    });
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 133);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(seen.got[0].3, b"first");
    for i in 0..131 {
        let m = &seen.got[1 + i];
        let len = if i == 130 { 37 } else { 100 };
        assert_eq!(m.3, vec![i as u8; len], "datagram {i} of the train");
    }
    assert_eq!(seen.got[132].3, b"last");
    let info = sender.information(&r).unwrap();
    assert_eq!(info.datagrams_sent, 133);
    // GSO: at most 64 a call (or, where the kernel refuses GSO, sendmmsg batches).
    assert!(info.send_calls <= 8, "{} send calls", info.send_calls);
    // Run again past the end: no more arrived.
    r.turn(&mut seen, Some(Duration::from_millis(50))).unwrap();
    assert_eq!(seen.got.len(), 133);
}

/// A train given whole with nothing queued before it leaves within the call, from the
/// caller's buffer (one GSO send, or the queue where the kernel refuses GSO); what is
/// sent after it in the same call follows it, in order.
#[test]
fn a_train_with_nothing_queued_leaves_at_once_and_what_follows_comes_after() {
    let mut r = Reactor::<Log>::new().unwrap();
    let receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let to = local(&r, receiver);
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    // 40 datagrams of 50 bytes, each byte telling its datagram.
    let train: Vec<u8> = (0..2_000usize).map(|i| (i / 50) as u8).collect();
    r.set_timer(Duration::ZERO, move |r, _, _| {
        sender.send_segments_to(r, to, &train, 50).unwrap();
        let info = sender.information(r).unwrap();
        if kernel_has_gso() {
            assert_eq!((info.datagrams_sent, info.send_calls), (40, 1));
            assert_eq!(info.queued_datagrams, 0);
        } else {
            println!("kernel older than 4.18, without UDP GSO: the train was queued");
            assert_eq!(info.queued_datagrams, 40);
        }
        sender.send_to(r, to, b"after").unwrap();
    });
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 41);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    for i in 0..40 {
        assert_eq!(
            seen.got[i].3,
            vec![i as u8; 50],
            "datagram {i} of the train"
        );
    }
    assert_eq!(seen.got[40].3, b"after");
}

/// UDP GSO (`UDP_SEGMENT`) came with Linux 4.18.
fn kernel_has_gso() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (4, 18)
}

/// A train longer than one GSO send takes leaves in as many sends as needed (54
/// datagrams of 1,200 bytes fit in one), all within the call.
#[test]
fn a_train_longer_than_one_send_leaves_in_several() {
    let mut r = Reactor::<Log>::new().unwrap();
    let receiver = DatagramSocket::bind_with(
        &mut r,
        "127.0.0.1",
        0,
        &DatagramSocketControl::new().inbound_buffer_size(Some(1 << 20)),
        log,
    )
    .unwrap();
    let to = local(&r, receiver);
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, log).unwrap();
    let train: Vec<u8> = (0..64 * 1_200usize).map(|i| (i / 1_200) as u8).collect();
    r.set_timer(Duration::ZERO, move |r, _, _| {
        sender.send_segments_to(r, to, &train, 1_200).unwrap();
        let info = sender.information(r).unwrap();
        if kernel_has_gso() {
            assert_eq!((info.datagrams_sent, info.send_calls), (64, 2));
        } else {
            println!("kernel older than 4.18, without UDP GSO: the train was queued");
        }
    });
    let mut seen = Log::default();
    run_until(&mut r, &mut seen, LIMIT, |l| l.got.len() == 64);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    for (i, m) in seen.got.iter().enumerate() {
        assert_eq!(m.3, vec![i as u8; 1_200], "datagram {i} of the train");
    }
}

/// A UDP socket is woken as writable each time the kernel frees one of its sent
/// datagrams: registered for writability, a socket that sends would cost the poller
/// an event (and the loop its dispatch) every turn. A socket with nothing queued is
/// not registered for it, so sending makes no kernel events.
#[test]
fn sending_makes_no_kernel_events_while_nothing_is_queued() {
    let mut r = Reactor::<Got>::new().unwrap();
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    let mut got = Got::new();
    // Through the queue's flush (outside a handler) and from a handler call.
    let mut events = 0;
    for i in 0..50u8 {
        sender.send_to(&mut r, to, &[i; 64]).unwrap();
        events += r.turn(&mut got, Some(Duration::ZERO)).unwrap();
    }
    let timer_sender = sender;
    r.set_timer(Duration::ZERO, move |r, _, _| {
        for i in 0..50u8 {
            timer_sender.send_to(r, to, &[i; 64]).unwrap();
        }
    });
    for _ in 0..10 {
        events += r.turn(&mut got, Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(sender.information(&r).unwrap().datagrams_sent, 100);
    assert_eq!(events, 0, "kernel events on a socket that only sends");
    let mut buf = [0; 128];
    sink.set_read_timeout(Some(LIMIT)).unwrap();
    for _ in 0..100 {
        assert_eq!(sink.recv(&mut buf).unwrap(), 64);
    }
}

#[test]
fn a_full_send_buffer_waits_for_room_in_a_namespace() {
    in_netns("full", "inside_netns_a_full_send_buffer_waits_for_room");
}

/// With a rate-limited queueing discipline on `lo` (tbf, 20 Mbit/s), sent datagrams
/// stay charged to their socket's small send buffer until the discipline lets them
/// go, and the kernel refuses more: the rest wait in the socket's queue and leave as
/// the kernel makes room (the socket is then registered for writability). Every one
/// arrives, once; `Drained` comes once the queue is below its low watermark. (Not
/// checked in order: what leaves the discipline enters the receive path on whichever
/// CPU dequeued it, the sender's or its timer's, and two CPUs' backlogs may deliver
/// out of order. The queue's own order is checked without a discipline, in
/// `sends_in_one_handler_call_keep_their_order_and_close_ends_them`.)
#[test]
#[ignore = "run inside a network namespace by a_full_send_buffer_waits_for_room_in_a_namespace"]
fn inside_netns_a_full_send_buffer_waits_for_room() {
    let Some(ns) = netns_only() else { return };
    let tc = std::process::Command::new("tc")
        .args(["-n", &ns, "qdisc", "add", "dev", "lo", "root", "tbf"])
        .args(["rate", "20mbit", "burst", "16kb", "latency", "10s"])
        .output();
    match tc {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "tc cannot add a tbf qdisc: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            println!("SKIP: `tc` cannot be run ({e}): no rate-limited discipline to fill the send buffer");
            return;
        }
    }
    #[derive(Default)]
    struct Seen {
        got: Vec<Vec<u8>>,
        drained: usize,
        errors: Vec<sockloop::Error>,
    }
    const COUNT: usize = 500;
    let mut r = Reactor::<Seen>::new().unwrap();
    let big = DatagramSocketControl::new().inbound_buffer_size(Some(4 << 20));
    let receiver =
        DatagramSocket::bind_with(&mut r, "127.0.0.1", 0, &big, |_, seen: &mut Seen, _, e| {
            if let DatagramEvent::MessageReceived(m) = e {
                seen.got.push(m.data.to_vec());
            }
        })
        .unwrap();
    let to = local(&r, receiver);
    let small = DatagramSocketControl::new()
        .outbound_buffer_size(Some(4096))
        .batching(false);
    let sender = DatagramSocket::bind_with(
        &mut r,
        "127.0.0.1",
        0,
        &small,
        |_, seen: &mut Seen, _, e| match e {
            DatagramEvent::Drained => seen.drained += 1,
            DatagramEvent::Error(e) => seen.errors.push(e),
            _ => {}
        },
    )
    .unwrap();
    r.set_timer(Duration::ZERO, move |r, _, _| {
        for i in 0..COUNT {
            let mut d = vec![(i % 251) as u8; 1_000];
            d[..4].copy_from_slice(&(i as u32).to_be_bytes());
            sender.send_to(r, to, &d).unwrap();
        }
    });
    let mut seen = Seen::default();
    r.turn(&mut seen, Some(Duration::ZERO)).unwrap();
    let waiting = sender.information(&r).unwrap().queued_bytes;
    println!("after the handler returned: {waiting} bytes waiting for the kernel");
    assert!(
        waiting > 0,
        "the kernel took all {COUNT} datagrams at once: no back-pressure shown"
    );
    run_until(&mut r, &mut seen, LIMIT, |s| {
        s.got.len() == COUNT && s.drained > 0
    });
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let mut numbers: Vec<u32> = seen
        .got
        .iter()
        .map(|d| {
            assert_eq!(d.len(), 1_000);
            let n = u32::from_be_bytes(d[..4].try_into().unwrap());
            assert!(
                d[4..].iter().all(|&b| b == (n % 251) as u8),
                "datagram {n} whole"
            );
            n
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..COUNT as u32).collect::<Vec<_>>(),
        "each datagram once"
    );
    let info = sender.information(&r).unwrap();
    assert_eq!((info.datagrams_sent, info.queued_bytes), (COUNT as u64, 0));
    assert_eq!(seen.drained, 1);
}

/// In one handler call: datagrams after the first to a destination join its run;
/// one to another destination, or longer, starts a new run; a `send` of a connected
/// socket likewise; after `close` in the same call, a send is refused (the socket is
/// closed) and what was accepted before arrives, each datagram whole and in order.
#[test]
fn sends_in_one_handler_call_keep_their_order_and_close_ends_them() {
    let sink_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (sink_a.local_addr().unwrap(), sink_b.local_addr().unwrap());
    #[derive(Default)]
    struct Out {
        after_close: Option<sockloop::Error>,
        connected_after_close: Option<sockloop::Error>,
    }
    let mut r = Reactor::<Out>::new().unwrap();
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    let connected =
        DatagramSocket::connect(&mut r, "127.0.0.1", b.port(), |_, _, _, _| {}).unwrap();
    r.set_timer(Duration::ZERO, move |r, out: &mut Out, _| {
        for i in 0..10u8 {
            sender.send_to(r, a, &[i; 100]).unwrap();
        }
        sender.send_to(r, b, &[100; 100]).unwrap();
        sender.send_to(r, a, &[10; 100]).unwrap();
        sender.send_to(r, a, &[11; 200]).unwrap();
        sender.send_to(r, a, &[12; 50]).unwrap();
        sender.send_to(r, a, &[13; 50]).unwrap();
        for i in 0..5u8 {
            connected.send(r, &[200 + i; 30]).unwrap();
        }
        sender.close(r).unwrap();
        out.after_close = sender.send_to(r, a, &[99; 100]).err();
        connected.close(r).unwrap();
        out.connected_after_close = connected.send(r, &[99; 30]).err();
    });
    let mut out = Out::default();
    for _ in 0..10 {
        r.turn(&mut out, Some(Duration::ZERO)).unwrap();
    }
    let refused = out.after_close.expect("send_to after close is refused");
    assert_eq!(
        refused.status(),
        sockloop::SocketErrorStatus::InvalidHandle,
        "{refused}"
    );
    let refused = out
        .connected_after_close
        .expect("send after close is refused");
    assert_eq!(
        refused.status(),
        sockloop::SocketErrorStatus::InvalidHandle,
        "{refused}"
    );
    let read = |sink: &UdpSocket, n: usize| -> Vec<Vec<u8>> {
        sink.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        while let Ok(len) = sink.recv(&mut buf) {
            got.push(buf[..len].to_vec());
            if got.len() > n {
                break;
            }
        }
        got
    };
    let mut want_a: Vec<Vec<u8>> = (0..11u8).map(|i| vec![i; 100]).collect();
    want_a.extend([vec![11; 200], vec![12; 50], vec![13; 50]]);
    assert_eq!(read(&sink_a, want_a.len()), want_a);
    let mut want_b = vec![vec![100u8; 100]];
    want_b.extend((0..5u8).map(|i| vec![200 + i; 30]));
    assert_eq!(read(&sink_b, want_b.len()), want_b);
}

/// Datagrams to alternating IPv6 destinations, some from a chosen source address,
/// sent in one handler call leave in one `sendmmsg` (their addresses in their IPv6
/// form) and arrive in order, each from the address it was sent from.
#[test]
fn a_batch_to_ipv6_destinations_leaves_in_one_call() {
    let Ok(a) = UdpSocket::bind("[::1]:0") else {
        println!("SKIP: no IPv6 loopback");
        return;
    };
    let b = UdpSocket::bind("[::1]:0").unwrap();
    let to = [a.local_addr().unwrap(), b.local_addr().unwrap()];
    let mut r = Reactor::<Got>::new().unwrap();
    let sender = DatagramSocket::bind(&mut r, "::", 0, record).unwrap();
    r.set_timer(Duration::ZERO, move |r, _, _| {
        for i in 0..20u8 {
            if i % 5 == 0 {
                let from = "::1".parse().unwrap();
                sender
                    .send_to_from(r, to[i as usize % 2], from, &[i; 40])
                    .unwrap();
            } else {
                sender.send_to(r, to[i as usize % 2], &[i; 40]).unwrap();
            }
        }
    });
    let mut got = Got::new();
    for _ in 0..5 {
        r.turn(&mut got, Some(Duration::ZERO)).unwrap();
    }
    let info = sender.information(&r).unwrap();
    assert_eq!((info.datagrams_sent, info.send_calls), (20, 1));
    let port = info.local_address.unwrap().port();
    for (k, sink) in [a, b].iter().enumerate() {
        sink.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0; 64];
        for i in (0..20u8).filter(|i| *i as usize % 2 == k) {
            let (n, from) = sink.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 40], "datagram {i} to sink {k}");
            assert_eq!(from, SocketAddr::new("::1".parse().unwrap(), port));
        }
    }
}
