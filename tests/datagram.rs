//! `DatagramSocket` on loopback: echo, order and completeness, zero-length and
//! truncated datagrams, size limits, ICMP errors on connected sockets, the send queue's
//! limit and `Drained`, multicast port sharing, the local address of each datagram
//! (PKTINFO), names resolved off the loop, adoption, and a panicking handler.

mod util;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use sockloop::{DatagramEvent, DatagramSocket, DatagramSocketControl, Reactor, SocketErrorStatus};
use util::{run_for, run_until};

const LIMIT: Duration = Duration::from_secs(10);

/// What a test's handlers saw.
#[derive(Default)]
struct Seen {
    /// (socket, remote, local, payload, truncated)
    messages: Vec<(DatagramSocket, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    errors: Vec<(DatagramSocket, sockloop::Error)>,
    closed: Vec<(DatagramSocket, Result<(), sockloop::Error>)>,
    drained: usize,
}

type Handler = fn(&mut Reactor<Seen>, &mut Seen, DatagramSocket, DatagramEvent<'_>);

/// Records every event.
fn record(
    _: &mut Reactor<Seen>,
    seen: &mut Seen,
    socket: DatagramSocket,
    event: DatagramEvent<'_>,
) {
    match event {
        DatagramEvent::MessageReceived(m) => {
            seen.messages
                .push((socket, m.remote, m.local, m.data.to_vec(), m.truncated));
        }
        DatagramEvent::Error(e) => seen.errors.push((socket, e)),
        DatagramEvent::Closed(r) => seen.closed.push((socket, r)),
        DatagramEvent::Drained => seen.drained += 1,
        _ => {}
    }
}

/// Answers each datagram with the same bytes, from the address it came to.
fn echo(r: &mut Reactor<Seen>, seen: &mut Seen, socket: DatagramSocket, event: DatagramEvent<'_>) {
    if let DatagramEvent::MessageReceived(m) = &event {
        socket
            .send_to_from(r, m.remote, m.local.ip(), m.data)
            .unwrap();
    }
    record(r, seen, socket, event);
}

fn local(r: &Reactor<Seen>, socket: DatagramSocket) -> SocketAddr {
    socket.information(r).unwrap().local_address.unwrap()
}

fn std_peer(addr: &str) -> UdpSocket {
    let peer = UdpSocket::bind(addr).unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    peer
}

#[test]
fn echo_between_a_bound_and_a_connected_socket() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let server = DatagramSocket::bind(&mut r, "127.0.0.1", 0, echo as Handler).unwrap();
    let port = local(&r, server).port();
    let client = DatagramSocket::connect(&mut r, "127.0.0.1", port, record as Handler).unwrap();
    let info = client.information(&r).unwrap();
    assert_eq!(info.remote_address, Some(local(&r, server)));
    client.send(&mut r, b"ping").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() == 2);
    let (to_server, to_client) = (&seen.messages[0], &seen.messages[1]);
    assert_eq!(
        (to_server.0, to_server.3.as_slice()),
        (server, &b"ping"[..])
    );
    assert_eq!(to_server.1, info.local_address.unwrap());
    assert_eq!(to_server.2, local(&r, server));
    assert_eq!(
        (to_client.0, to_client.3.as_slice()),
        (client, &b"ping"[..])
    );
    assert_eq!(to_client.1, local(&r, server));
    server.close(&mut r).unwrap();
    client.close(&mut r).unwrap();
    run_until(&mut r, &mut seen, LIMIT, |s| s.closed.len() == 2);
    assert!(seen.closed.iter().all(|(_, res)| res.is_ok()));
    assert_eq!(
        server.send(&mut r, b"x").unwrap_err().status(),
        SocketErrorStatus::InvalidHandle
    );
}

/// 10,000 datagrams, at most 64 in flight: each one received sends the next from
/// inside the handler (the queued, flushed-after-the-handler path). All arrive, in
/// order.
#[test]
fn ten_thousand_datagrams_in_order() {
    const COUNT: u32 = 10_000;
    const WINDOW: u32 = 64;
    #[derive(Default)]
    struct Flow {
        sender: Option<DatagramSocket>,
        to: Option<SocketAddr>,
        sent: u32,
        received: u32,
        out_of_order: u32,
    }
    let mut r = Reactor::<Flow>::new().unwrap();
    let receiver = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |r, flow: &mut Flow, _, event| {
        if let DatagramEvent::MessageReceived(m) = event {
            let seq = u32::from_be_bytes(m.data[..4].try_into().unwrap());
            if seq != flow.received {
                flow.out_of_order += 1;
            }
            flow.received += 1;
            if flow.sent < COUNT {
                let mut payload = [0u8; 64];
                payload[..4].copy_from_slice(&flow.sent.to_be_bytes());
                let (sender, to) = (flow.sender.unwrap(), flow.to.unwrap());
                sender.send_to(r, to, &payload).unwrap();
                flow.sent += 1;
            }
        }
    })
    .unwrap();
    let to = receiver.information(&r).unwrap().local_address.unwrap();
    let sender = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    let mut flow = Flow {
        sender: Some(sender),
        to: Some(to),
        ..Flow::default()
    };
    for _ in 0..WINDOW {
        let mut payload = [0u8; 64];
        payload[..4].copy_from_slice(&flow.sent.to_be_bytes());
        sender.send_to(&mut r, to, &payload).unwrap();
        flow.sent += 1;
    }
    run_until(&mut r, &mut flow, Duration::from_secs(30), |f| {
        f.received == COUNT
    });
    assert_eq!(flow.out_of_order, 0);
    assert_eq!(flow.sent, COUNT);
}

#[test]
fn zero_length_datagram_is_a_message() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let socket = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record as Handler).unwrap();
    let to = local(&r, socket);
    socket.send_to(&mut r, to, b"").unwrap();
    socket.send_to(&mut r, to, b"after").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() == 2);
    assert_eq!(seen.messages[0].3, b"");
    assert!(!seen.messages[0].4);
    assert_eq!(seen.messages[1].3, b"after");
}

#[test]
fn datagram_longer_than_the_read_buffer_is_flagged_truncated() {
    let mut r = Reactor::<Seen>::builder()
        .read_buffer_size(1024)
        .build()
        .unwrap();
    let socket = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record as Handler).unwrap();
    let to = local(&r, socket);
    let peer = std_peer("127.0.0.1:0");
    let big: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    peer.send_to(&big, to).unwrap();
    peer.send_to(&big[..1024], to).unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() == 2);
    assert!(seen.messages[0].4, "a cut datagram is flagged");
    assert_eq!(seen.messages[0].3, &big[..1024]);
    assert!(!seen.messages[1].4, "one that fits exactly is not");
    assert_eq!(seen.messages[1].3, &big[..1024]);
}

#[test]
fn oversized_or_wrong_family_send_is_refused_and_the_largest_goes_through() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let socket = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record as Handler).unwrap();
    let to = local(&r, socket);
    for size in [65_536, 65_508] {
        let err = socket.send_to(&mut r, to, &vec![1; size]).unwrap_err();
        assert_eq!(
            err.status(),
            SocketErrorStatus::MessageTooLong,
            "{size}: {err}"
        );
    }
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let err = socket.send_to(&mut r, v6, b"x").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::AddressFamilyNotSupported);
    socket.send_to(&mut r, to, &vec![2; 65_507]).unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    assert_eq!(seen.messages[0].3.len(), 65_507);
    assert!(!seen.messages[0].4);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
}

/// A port nothing listens on: ICMP port unreachable comes back as `ConnectionRefused`
/// on the connected socket, which stays open and reaches a server started later on
/// that port.
#[test]
fn connected_socket_reports_connection_refused_and_stays_usable() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let port = std_peer("127.0.0.1:0").local_addr().unwrap().port(); // dropped: closed
    let client = DatagramSocket::connect(&mut r, "127.0.0.1", port, record as Handler).unwrap();
    client.send(&mut r, b"anyone?").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.errors.is_empty());
    let (socket, err) = &seen.errors[0];
    assert_eq!(*socket, client);
    assert_eq!(err.status(), SocketErrorStatus::ConnectionRefused, "{err}");
    assert!(seen.closed.is_empty());
    let server = std_peer(&format!("127.0.0.1:{port}"));
    client.send(&mut r, b"now?").unwrap();
    let mut buf = [0; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"now?");
    server.send_to(b"yes", from).unwrap();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    assert_eq!(seen.messages[0].3, b"yes");
    assert!(seen.closed.is_empty());
}

/// Datagrams sent inside one handler call wait in the queue until it returns; past
/// the limit, `NoBufferSpaceAvailable` and nothing queued; once sent, `Drained`.
#[test]
fn send_queue_is_bounded_and_drains() {
    #[derive(Default)]
    struct Burst {
        to: Option<SocketAddr>,
        accepted: usize,
        refused: Option<sockloop::Error>,
        queued_inside: usize,
        drained: usize,
    }
    let mut r = Reactor::<Burst>::builder()
        .watermarks(1000, 4000, 8000)
        .build()
        .unwrap();
    let sink = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    let to = sink.information(&r).unwrap().local_address.unwrap();
    let trigger = DatagramSocket::bind(
        &mut r,
        "127.0.0.1",
        0,
        |r, burst: &mut Burst, socket, event| match event {
            DatagramEvent::MessageReceived(_) => {
                let to = burst.to.unwrap();
                loop {
                    match socket.send_to(r, to, &[7; 100]) {
                        Ok(()) => burst.accepted += 1,
                        Err(e) => {
                            burst.refused = Some(e);
                            break;
                        }
                    }
                }
                burst.queued_inside = socket.information(r).unwrap().queued_bytes;
            }
            DatagramEvent::Drained => burst.drained += 1,
            _ => {}
        },
    )
    .unwrap();
    let mut burst = Burst {
        to: Some(to),
        ..Burst::default()
    };
    let trigger_addr = trigger.information(&r).unwrap().local_address.unwrap();
    sink.send_to(&mut r, trigger_addr, b"go").unwrap();
    run_until(&mut r, &mut burst, LIMIT, |b| b.drained == 1);
    assert_eq!(burst.accepted, 80, "8000 bytes of 100-byte datagrams");
    assert_eq!(burst.queued_inside, 8000);
    let refused = burst.refused.take().unwrap();
    assert_eq!(refused.status(), SocketErrorStatus::NoBufferSpaceAvailable);
    assert_eq!(trigger.information(&r).unwrap().queued_bytes, 0);
}

/// The interface index of `lo`.
fn loopback_index() -> Option<u32> {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Two `multicast_only` sockets on one port both receive each datagram to a group
/// they joined; a third socket on the port, in another group, receives none of it.
#[test]
fn multicast_only_sockets_share_a_port_and_groups_stay_apart() {
    let Some(lo) = loopback_index() else {
        println!("SKIP: no /sys/class/net/lo/ifindex, cannot name the loopback interface");
        return;
    };
    let (g1, g2) = ("239.255.77.1", "239.255.77.2");
    let mut r = Reactor::<Seen>::new().unwrap();
    let shared = DatagramSocketControl::new().multicast_only(true);
    let a = DatagramSocket::bind_with(&mut r, "0.0.0.0", 0, &shared, record as Handler).unwrap();
    let port = local(&r, a).port();
    let b = DatagramSocket::bind_with(&mut r, "0.0.0.0", port, &shared, record as Handler).unwrap();
    let c = DatagramSocket::bind_with(&mut r, "0.0.0.0", port, &shared, record as Handler).unwrap();
    for socket in [a, b] {
        if let Err(e) = socket.join_multicast_group_on(&mut r, g1, lo) {
            println!("SKIP: cannot join {g1} on lo (index {lo}): {e}");
            return;
        }
    }
    c.join_multicast_group_on(&mut r, g2, lo).unwrap();
    let sending = DatagramSocketControl::new().multicast_interface(Some(lo));
    let sender =
        DatagramSocket::bind_with(&mut r, "127.0.0.1", 0, &sending, record as Handler).unwrap();
    let group: SocketAddr = format!("{g1}:{port}").parse().unwrap();
    sender.send_to(&mut r, group, b"to the group").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() >= 2);
    run_for(&mut r, &mut seen, Duration::from_millis(100));
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let mut receivers: Vec<_> = seen.messages.iter().map(|m| m.0).collect();
    receivers.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(
        receivers, expected,
        "each member once, the other group's none"
    );
    for m in &seen.messages {
        assert_eq!(m.3, b"to the group");
        assert_eq!(
            m.2, group,
            "the local address of a multicast datagram is its group"
        );
    }
    // After leaving, `a` gets nothing more.
    a.leave_multicast_group_on(&mut r, g1, lo).unwrap();
    seen.messages.clear();
    sender.send_to(&mut r, group, b"again").unwrap();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    run_for(&mut r, &mut seen, Duration::from_millis(100));
    assert_eq!(seen.messages.len(), 1);
    assert_eq!(seen.messages[0].0, b);
}

#[test]
fn without_multicast_only_a_second_bind_is_address_already_in_use() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let shared = DatagramSocketControl::new().multicast_only(true);
    let first = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record as Handler).unwrap();
    let port = local(&r, first).port();
    for control in [DatagramSocketControl::new(), shared] {
        let err = DatagramSocket::bind_with(&mut r, "127.0.0.1", port, &control, record as Handler)
            .unwrap_err();
        assert_eq!(
            err.status(),
            SocketErrorStatus::AddressAlreadyInUse,
            "{err}"
        );
    }
    let err = DatagramSocket::join_multicast_group(first, &mut r, "127.0.0.1").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
}

/// A server bound to a wildcard answers from the address each request came to.
fn answers_from_the_address_reached(bind_any: bool) {
    let mut r = Reactor::<Seen>::new().unwrap();
    let server = if bind_any {
        DatagramSocket::bind_any(&mut r, 0, echo as Handler).unwrap()
    } else {
        DatagramSocket::bind(&mut r, "0.0.0.0", 0, echo as Handler).unwrap()
    };
    let port = local(&r, server).port();
    let mut seen = Seen::default();
    for target in [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::LOCALHOST] {
        let client = std_peer("127.0.0.1:0");
        let to = SocketAddr::new(IpAddr::V4(target), port);
        client.send_to(b"where are you?", to).unwrap();
        let before = seen.messages.len();
        run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() > before);
        assert_eq!(
            seen.messages[before].2, to,
            "the local address of the request"
        );
        assert_eq!(seen.messages[before].1, client.local_addr().unwrap());
        let mut buf = [0; 32];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"where are you?");
        assert_eq!(
            from, to,
            "the answer comes from the address the request went to"
        );
    }
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
}

#[test]
fn pktinfo_wildcard_v4_server_answers_from_127_0_0_2() {
    answers_from_the_address_reached(false);
}

#[test]
fn pktinfo_dual_stack_server_answers_from_127_0_0_2() {
    answers_from_the_address_reached(true);
}

#[test]
fn ipv6_loopback_echo() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let Ok(server) = DatagramSocket::bind(&mut r, "::1", 0, echo as Handler) else {
        println!("SKIP: no IPv6 loopback");
        return;
    };
    let to = local(&r, server);
    let client = DatagramSocket::bind(&mut r, "::1", 0, record as Handler).unwrap();
    client.send_to(&mut r, to, b"six").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() == 2);
    assert_eq!(seen.messages[0].2, to);
    assert_eq!(seen.messages[1].3, b"six");
    assert_eq!(seen.messages[1].1, to);
}

/// A name is resolved off the loop; a datagram sent meanwhile waits and then leaves.
#[test]
fn connect_by_name_queues_until_resolved() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let server = DatagramSocket::bind_any(&mut r, 0, echo as Handler).unwrap();
    let port = local(&r, server).port();
    let client = DatagramSocket::connect(&mut r, "localhost", port, record as Handler).unwrap();
    client.send(&mut r, b"early").unwrap();
    let to = local(&r, server);
    let err = client.send_to(&mut r, to, b"where to?").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidState, "{err}");
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() == 2);
    assert_eq!(seen.messages[1].0, client);
    assert_eq!(seen.messages[1].3, b"early");
    let info = client.information(&r).unwrap();
    assert_eq!(info.remote_host_name.unwrap().raw_name(), "localhost");
    assert!(info.remote_address.unwrap().ip().is_loopback());
}

#[test]
fn adopt_and_release_a_std_socket() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let socket =
        DatagramSocket::from_std(&mut r, std_peer("127.0.0.1:0"), record as Handler).unwrap();
    let to = local(&r, socket);
    let peer = std_peer("127.0.0.1:0");
    peer.send_to(b"adopted", to).unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    assert_eq!(seen.messages[0].2, to);
    let released = socket.into_std(&mut r).unwrap();
    assert_eq!(released.local_addr().unwrap(), to);
    assert!(socket.information(&r).is_err());
    run_for(&mut r, &mut seen, Duration::from_millis(10));
    assert!(seen.closed.is_empty(), "released, not closed");
}

/// A handler that panics closes its own socket (with `HandlerPanicked`) and no other.
#[test]
fn handler_panic_closes_only_that_socket() {
    let mut r = Reactor::<Seen>::builder()
        .catch_handler_panics(true)
        .build()
        .unwrap();
    let bad = DatagramSocket::bind(&mut r, "127.0.0.1", 0, |r, seen: &mut Seen, s, event| {
        if let DatagramEvent::MessageReceived(_) = event {
            panic!("handler bug");
        }
        record(r, seen, s, event);
    })
    .unwrap();
    let good = DatagramSocket::bind(&mut r, "127.0.0.1", 0, echo as Handler).unwrap();
    let (bad_addr, good_addr) = (local(&r, bad), local(&r, good));
    let peer = std_peer("127.0.0.1:0");
    peer.send_to(b"boom", bad_addr).unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.closed.is_empty());
    assert_eq!(seen.closed[0].0, bad);
    let err = seen.closed[0].1.as_ref().unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::HandlerPanicked);
    peer.send_to(b"still there?", good_addr).unwrap();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    let mut buf = [0; 32];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still there?");
    assert_eq!(seen.closed.len(), 1);
    assert_eq!(r.stats().handler_panics, 1);
}

/// Datagrams sent in one handler call leave together (`sendmmsg`, batches of 32),
/// each to its own destination and from its own local address, in order.
#[test]
fn a_burst_from_one_handler_call_arrives_in_order_at_each_destination() {
    const BURST: u32 = 100;
    #[derive(Default)]
    struct Fan {
        to: Vec<SocketAddr>,
        got: Vec<Vec<(u32, SocketAddr)>>,
    }
    let mut r = Reactor::<Fan>::new().unwrap();
    let roomy = DatagramSocketControl::new().inbound_buffer_size(Some(1 << 20));
    let mut fan = Fan::default();
    let mut receivers = Vec::new();
    for which in 0..2usize {
        let socket = DatagramSocket::bind_with(
            &mut r,
            "0.0.0.0",
            0,
            &roomy,
            move |_, fan: &mut Fan, _, event| {
                if let DatagramEvent::MessageReceived(m) = event {
                    let seq = u32::from_be_bytes(m.data.try_into().unwrap());
                    fan.got[which].push((seq, m.remote));
                }
            },
        )
        .unwrap();
        let port = socket
            .information(&r)
            .unwrap()
            .local_address
            .unwrap()
            .port();
        fan.to
            .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        fan.got.push(Vec::new());
        receivers.push(socket);
    }
    let sender = DatagramSocket::bind(&mut r, "0.0.0.0", 0, |r, fan: &mut Fan, socket, event| {
        if let DatagramEvent::MessageReceived(m) = event {
            if m.data == b"go" {
                for seq in 0..BURST {
                    let to = fan.to[seq as usize % 2];
                    if seq % 3 == 0 {
                        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
                        socket
                            .send_to_from(r, to, from, &seq.to_be_bytes())
                            .unwrap();
                    } else {
                        socket.send_to(r, to, &seq.to_be_bytes()).unwrap();
                    }
                }
                let queued = socket.information(r).unwrap().queued_datagrams;
                assert_eq!(queued, BURST as usize, "held until the handler returns");
            }
        }
    })
    .unwrap();
    let sender_port = sender
        .information(&r)
        .unwrap()
        .local_address
        .unwrap()
        .port();
    let go = std_peer("127.0.0.1:0");
    go.send_to(b"go", ("127.0.0.1", sender_port)).unwrap();
    run_until(&mut r, &mut fan, LIMIT, |f| {
        f.got.iter().map(Vec::len).sum::<usize>() == BURST as usize
    });
    for (which, got) in fan.got.iter().enumerate() {
        let expected: Vec<u32> = (0..BURST).filter(|s| *s as usize % 2 == which).collect();
        let seqs: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(seqs, expected, "receiver {which}");
        for (seq, from) in got {
            let ip = if seq % 3 == 0 {
                [127, 0, 0, 3]
            } else {
                [127, 0, 0, 1]
            };
            assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::from(ip)), "datagram {seq}");
            assert_eq!(from.port(), sender_port);
        }
    }
    assert_eq!(sender.information(&r).unwrap().queued_datagrams, 0);
}

/// A datagram the kernel refuses in the flush after the handler (here: a source
/// address that is not ours) is reported with its destination; the datagrams around it
/// in the same batch leave, in order.
#[test]
fn a_refused_datagram_in_a_batch_is_reported_and_the_others_leave() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let sink = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record as Handler).unwrap();
    let to = local(&r, sink);
    let sender = DatagramSocket::bind(
        &mut r,
        "127.0.0.1",
        0,
        |r, seen: &mut Seen, socket, event| {
            if let DatagramEvent::MessageReceived(m) = &event {
                let to = m.remote;
                let not_ours = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)); // TEST-NET-1
                socket.send_to(r, to, b"first").unwrap();
                socket.send_to_from(r, to, not_ours, b"refused").unwrap();
                socket.send_to(r, to, b"last").unwrap();
            }
            record(r, seen, socket, event);
        },
    )
    .unwrap();
    let sender_addr = local(&r, sender);
    sink.send_to(&mut r, sender_addr, b"go").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| {
        s.messages.len() == 3 && !s.errors.is_empty()
    });
    let at_sink: Vec<&[u8]> = seen
        .messages
        .iter()
        .filter(|m| m.0 == sink)
        .map(|m| m.3.as_slice())
        .collect();
    assert_eq!(at_sink, [&b"first"[..], &b"last"[..]]);
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    let (socket, err) = &seen.errors[0];
    assert_eq!(*socket, sender);
    assert_eq!(err.address(), Some(to), "{err}");
    assert_eq!(err.operation(), "send");
    assert!(seen.closed.is_empty());
}

/// A source-specific join receives the group's datagrams from that source only; an
/// any-source member on the same port gets both senders', so the other one did send.
#[test]
fn source_specific_join_filters_by_sender() {
    let Some(lo) = loopback_index() else {
        println!("SKIP: no /sys/class/net/lo/ifindex, cannot name the loopback interface");
        return;
    };
    let group = "232.1.2.3";
    let wanted = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut r = Reactor::<Seen>::new().unwrap();
    let shared = DatagramSocketControl::new().multicast_only(true);
    let ssm = DatagramSocket::bind_with(&mut r, "0.0.0.0", 0, &shared, record as Handler).unwrap();
    let port = local(&r, ssm).port();
    let any =
        DatagramSocket::bind_with(&mut r, "0.0.0.0", port, &shared, record as Handler).unwrap();
    if let Err(e) = ssm.join_multicast_group_from(&mut r, group, wanted, lo) {
        println!("SKIP: cannot join {group} from {wanted} on lo: {e}");
        return;
    }
    any.join_multicast_group_on(&mut r, group, lo).unwrap();
    let mismatched = ssm
        .join_multicast_group_from(&mut r, group, "::1".parse().unwrap(), lo)
        .unwrap_err();
    assert_eq!(mismatched.status(), SocketErrorStatus::InvalidArgument);
    let sending = DatagramSocketControl::new().multicast_interface(Some(lo));
    let to: SocketAddr = format!("{group}:{port}").parse().unwrap();
    for (from, text) in [("127.0.0.2", &b"other"[..]), ("127.0.0.1", &b"wanted"[..])] {
        let sender =
            DatagramSocket::bind_with(&mut r, from, 0, &sending, record as Handler).unwrap();
        sender.send_to(&mut r, to, text).unwrap();
    }
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.messages.len() >= 3);
    run_for(&mut r, &mut seen, Duration::from_millis(100));
    let at = |socket| -> Vec<&[u8]> {
        let mut got: Vec<&[u8]> = seen
            .messages
            .iter()
            .filter(|m| m.0 == socket)
            .map(|m| m.3.as_slice())
            .collect();
        got.sort();
        got
    };
    assert_eq!(at(ssm), [&b"wanted"[..]]);
    assert_eq!(at(any), [&b"other"[..], &b"wanted"[..]]);
    ssm.leave_multicast_group_from(&mut r, group, wanted, lo)
        .unwrap();
}

/// Same-size datagrams to one destination leave as GSO trains (and may arrive
/// coalesced, GRO); sizes that change, a shorter last one, an empty one and another
/// destination end a train. Every datagram arrives whole, as its own message, in
/// order, with batching on and off.
fn trains_of_same_size_datagrams(batching: bool) {
    #[derive(Default)]
    struct Trains {
        to: Vec<SocketAddr>,
        sent: Vec<(usize, Vec<u8>)>,
        got: Vec<(usize, Vec<u8>)>,
    }
    let mut r = Reactor::<Trains>::new().unwrap();
    let control = DatagramSocketControl::new()
        .batching(batching)
        .inbound_buffer_size(Some(1 << 20));
    let mut trains = Trains::default();
    for which in 0..2usize {
        let socket = DatagramSocket::bind_with(
            &mut r,
            "127.0.0.1",
            0,
            &control,
            move |_, t: &mut Trains, _, event| {
                if let DatagramEvent::MessageReceived(m) = event {
                    assert!(!m.truncated);
                    t.got.push((which, m.data.to_vec()));
                }
            },
        )
        .unwrap();
        trains
            .to
            .push(socket.information(&r).unwrap().local_address.unwrap());
    }
    // (destination, size) in the order sent.
    let mut plan = Vec::new();
    plan.extend((0..70).map(|_| (0, 1000))); // longer than one train's 64 segments
    plan.push((0, 400)); // a shorter last one
    plan.extend((0..5).map(|_| (0, 1200)));
    plan.push((0, 0));
    plan.extend((0..3).map(|_| (1, 1200))); // another destination
    plan.extend((0..3).map(|_| (0, 1200)));
    plan.extend((0..40).map(|_| (0, 8000))); // past one train's 65,507 bytes
    let sender = DatagramSocket::bind_with(
        &mut r,
        "127.0.0.1",
        0,
        &control,
        move |r, t: &mut Trains, socket, event| {
            if let DatagramEvent::MessageReceived(_) = event {
                for (seq, (which, size)) in plan.iter().copied().enumerate() {
                    let data: Vec<u8> = (0..size).map(|i| (seq * 7 + i) as u8).collect();
                    socket.send_to(r, t.to[which], &data).unwrap();
                    t.sent.push((which, data));
                }
            }
        },
    )
    .unwrap();
    let go = std_peer("127.0.0.1:0");
    let sender_addr = sender.information(&r).unwrap().local_address.unwrap();
    go.send_to(b"go", sender_addr).unwrap();
    run_until(&mut r, &mut trains, LIMIT, |t| {
        !t.sent.is_empty() && t.got.len() == t.sent.len()
    });
    for which in 0..2 {
        let sent: Vec<&Vec<u8>> = trains
            .sent
            .iter()
            .filter(|s| s.0 == which)
            .map(|s| &s.1)
            .collect();
        let got: Vec<&Vec<u8>> = trains
            .got
            .iter()
            .filter(|g| g.0 == which)
            .map(|g| &g.1)
            .collect();
        assert_eq!(got.len(), sent.len(), "receiver {which}");
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert!(
                g == s,
                "receiver {which}, datagram {i}: {} bytes, sent {}",
                g.len(),
                s.len()
            );
        }
    }
}

#[test]
fn gso_trains_arrive_whole_and_in_order() {
    trains_of_same_size_datagrams(true);
}

#[test]
fn unbatched_sends_arrive_whole_and_in_order() {
    trains_of_same_size_datagrams(false);
}

/// A GSO train the kernel refuses for its destination or source (not for GSO's sake)
/// gives each of its datagrams its own error; what follows still leaves.
#[test]
fn a_refused_train_reports_each_datagram() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let sink = DatagramSocket::bind(&mut r, "127.0.0.1", 0, record as Handler).unwrap();
    let to = local(&r, sink);
    let sender = DatagramSocket::bind(
        &mut r,
        "127.0.0.1",
        0,
        |r, seen: &mut Seen, socket, event| {
            if let DatagramEvent::MessageReceived(m) = &event {
                let to = m.remote;
                let not_ours = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)); // TEST-NET-1
                for _ in 0..3 {
                    socket.send_to_from(r, to, not_ours, &[9; 100]).unwrap();
                }
                socket.send_to(r, to, b"after").unwrap();
            }
            record(r, seen, socket, event);
        },
    )
    .unwrap();
    let sender_addr = local(&r, sender);
    sink.send_to(&mut r, sender_addr, b"go").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| {
        s.messages.len() == 2 && s.errors.len() == 3
    });
    run_for(&mut r, &mut seen, Duration::from_millis(20));
    assert_eq!(seen.messages[1].3, b"after");
    assert_eq!(seen.errors.len(), 3, "{:?}", seen.errors);
    for (_, err) in &seen.errors {
        assert_eq!(err.address(), Some(to), "{err}");
    }
}
