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
