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
