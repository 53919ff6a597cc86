//! Streams through the fault-injecting proxy (`tests/util/fault_proxy.rs`): echo,
//! framing and TLS under 1-byte segments, stalls and random cuts, checksummed; resets,
//! half-closes, truncations (TLS ones too) and injected bytes reported as the API
//! promises.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::time::Duration;

use sockloop::{
    LengthPrefixed, Lines, Reactor, SocketErrorStatus, StreamEvent, StreamSocket,
    StreamSocketListenerControl,
};
use util::fault_proxy::{FaultProxy, Faults};
use util::{assert_lifecycle, run_until, serve, Ev, Prng, StreamHash};

const LIMIT: Duration = Duration::from_secs(60);

/// One client's view: what it sent, what came back, its events.
#[derive(Default)]
struct Client {
    expected: StreamHash,
    got: StreamHash,
    got_bytes: Vec<u8>,
    want: usize,
    events: Vec<Ev>,
    messages: Vec<Vec<u8>>,
    want_messages: usize,
}

/// An echo server handler: writes back what it receives, closes on end of file.
fn echo(reactor: &mut Reactor<Client>, _: &mut Client, socket: StreamSocket, ev: StreamEvent<'_>) {
    match ev {
        StreamEvent::Received(mut input) => {
            socket.write(reactor, input.bytes()).expect("echo write");
            input.consume_all();
        }
        StreamEvent::ReadClosed => socket.close(reactor).expect("close"),
        _ => {}
    }
}

/// Sends `data` through a proxy with `up`/`down` faults to an echo server and checks
/// that the same bytes, in order, come back.
fn echo_through(up: Faults, down: Faults, data: Vec<u8>) -> (FaultProxy, Client) {
    let mut reactor = Reactor::<Client>::new().unwrap();
    let (_listener, addr) = serve(&mut reactor, &StreamSocketListenerControl::new(), echo);
    let proxy = FaultProxy::start(addr, up, down);
    let mut client = Client {
        want: data.len(),
        ..Client::default()
    };
    client.expected.update(&data);
    StreamSocket::connect_to(
        &mut reactor,
        proxy.addr(),
        move |reactor, c: &mut Client, socket, event| {
            c.events.push(Ev::of(&event));
            match event {
                StreamEvent::Connected => {
                    for chunk in data.chunks(64 * 1024) {
                        socket.write(reactor, chunk).expect("write");
                    }
                }
                StreamEvent::Received(mut input) => {
                    c.got.update(input.bytes());
                    c.got_bytes.extend_from_slice(input.bytes());
                    input.consume_all();
                    if c.got_bytes.len() == c.want {
                        socket.close(reactor).expect("close");
                    }
                }
                _ => {}
            }
        },
    )
    .unwrap();
    run_until(&mut reactor, &mut client, LIMIT, |c| {
        util::closed(&c.events)
    });
    assert_eq!(
        client.got.finish(),
        client.expected.finish(),
        "echo differs"
    );
    assert_eq!(client.events.last(), Some(&Ev::Closed(Ok(()))));
    assert_lifecycle(&client.events);
    (proxy, client)
}

#[test]
fn echo_through_one_byte_segments_both_ways() {
    let data = Prng::new(1).bytes(8 * 1024);
    let seg = Duration::from_micros(20);
    let (proxy, client) = echo_through(
        Faults::none().segments(1, seg),
        Faults::none().segments(1, seg),
        data,
    );
    let stats = proxy.stats();
    assert_eq!(stats.up.load(std::sync::atomic::Ordering::SeqCst), 8192);
    assert_eq!(stats.down.load(std::sync::atomic::Ordering::SeqCst), 8192);
    // The segments reached the socket as many small reads (a loaded machine may
    // merge some).
    let reads = client
        .events
        .iter()
        .filter(|e| matches!(e, Ev::Received(_)))
        .count();
    assert!(
        reads > 100,
        "only {reads} reads for 8,192 one-byte segments"
    );
}

#[test]
fn echo_of_a_mebibyte_through_random_cuts_and_stalls() {
    let data = Prng::new(2).bytes(1024 * 1024);
    let _ = echo_through(
        Faults::none()
            .segments(700, Duration::ZERO)
            .seed(3)
            .stall(100_000, Duration::from_millis(300)),
        Faults::none()
            .segments(1500, Duration::ZERO)
            .seed(4)
            .stall(500_000, Duration::from_millis(300)),
        data,
    );
}

/// Frames sent by a `std` peer through the proxy to a reactor socket with `codec`.
fn frames_through<C>(codec: C, frames: &[Vec<u8>], wire: Vec<u8>, down: Faults) -> Client
where
    C: sockloop::Decoder + sockloop::Encoder + Clone + 'static,
{
    let mut reactor = Reactor::<Client>::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = FaultProxy::start(listener.local_addr().unwrap(), down, Faults::none());
    let mut peer = util::with_timeouts(std::net::TcpStream::connect(proxy.addr()).unwrap());
    let (ours, _) = listener.accept().unwrap();
    let mut client = Client {
        want_messages: frames.len(),
        ..Client::default()
    };
    let socket = StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, c: &mut Client, socket, event| {
            c.events.push(Ev::of(&event));
            match event {
                StreamEvent::Message(m) => c.messages.push(m.to_vec()),
                StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
                _ => {}
            }
        },
    )
    .unwrap();
    socket.set_framing(&mut reactor, codec).unwrap();
    let writer = std::thread::spawn(move || {
        peer.write_all(&wire).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest);
    });
    run_until(&mut reactor, &mut client, LIMIT, |c| {
        util::closed(&c.events)
    });
    writer.join().unwrap();
    assert_lifecycle(&client.events);
    client
}

fn random_frames(seed: u64, n: usize, alphabet: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut rng = Prng::new(seed);
    (0..n)
        .map(|_| {
            let len = rng.range(0, 300);
            match alphabet {
                Some(a) => (0..len).map(|_| a[rng.range(0, a.len() - 1)]).collect(),
                None => rng.bytes(len),
            }
        })
        .collect()
}

#[test]
fn lines_through_one_byte_segments_arrive_whole_and_in_order() {
    let frames = random_frames(5, 200, Some(b"abcdefgh 0123456789"));
    let mut wire = Vec::new();
    for f in &frames {
        wire.extend_from_slice(f);
        wire.push(b'\n');
    }
    let down = Faults::none().segments(1, Duration::from_micros(10));
    let client = frames_through(Lines::new(), &frames, wire, down);
    assert_eq!(client.messages, frames);
    assert_eq!(client.events.last(), Some(&Ev::Closed(Ok(()))));
}

#[test]
fn length_prefixed_through_random_cuts_arrive_whole_and_in_order() {
    let frames = random_frames(6, 2000, None);
    let mut wire = Vec::new();
    for f in &frames {
        wire.extend_from_slice(&(f.len() as u32).to_be_bytes());
        wire.extend_from_slice(f);
    }
    let down = Faults::none()
        .segments(7, Duration::ZERO)
        .stall(1000, Duration::from_millis(100));
    let client = frames_through(LengthPrefixed::new(), &frames, wire, down);
    assert_eq!(client.messages.len(), client.want_messages);
    assert_eq!(client.messages, frames);
}

#[test]
fn an_injected_oversized_length_is_message_too_long_not_a_panic() {
    let frames = random_frames(7, 50, None);
    let mut wire = Vec::new();
    let mut boundary = 0;
    for (i, f) in frames.iter().enumerate() {
        wire.extend_from_slice(&(f.len() as u32).to_be_bytes());
        wire.extend_from_slice(f);
        if i == 9 {
            boundary = wire.len() as u64;
        }
    }
    // A header claiming 4 GiB between frames 10 and 11.
    let down = Faults::none()
        .segments(3, Duration::ZERO)
        .inject(boundary, &[0xff, 0xff, 0xff, 0xf0]);
    let client = frames_through(LengthPrefixed::new(), &frames, wire, down);
    assert_eq!(client.messages, frames[..10]);
    assert_eq!(
        client.events.last(),
        Some(&Ev::Closed(Err(SocketErrorStatus::MessageTooLong)))
    );
}

/// A reactor client of a `std` server through a proxy with `down` faults on what the
/// server sends; returns the client's view and what the server read.
fn client_of_std_server(
    down: Faults,
    up: Faults,
    server_sends: Vec<u8>,
    client_sends: Vec<u8>,
) -> Client {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream: SocketAddr = listener.local_addr().unwrap();
    let proxy = FaultProxy::start(upstream, up, down);
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut s = util::with_timeouts(s);
        let _ = s.write_all(&server_sends);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let mut reactor = Reactor::<Client>::new().unwrap();
    let mut client = Client::default();
    StreamSocket::connect_to(
        &mut reactor,
        proxy.addr(),
        move |reactor, c: &mut Client, socket, event| {
            c.events.push(Ev::of(&event));
            match event {
                StreamEvent::Connected => socket.write(reactor, &client_sends).unwrap(),
                StreamEvent::Received(mut input) => {
                    c.got_bytes.extend_from_slice(input.bytes());
                    input.consume_all();
                }
                StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
                _ => {}
            }
        },
    )
    .unwrap();
    run_until(&mut reactor, &mut client, LIMIT, |c| {
        util::closed(&c.events)
    });
    util::run_for(&mut reactor, &mut client, Duration::from_millis(50));
    assert_lifecycle(&client.events);
    drop(proxy);
    let _ = server.join();
    client
}

#[test]
fn a_reset_mid_stream_is_closed_with_connection_reset_once() {
    let data = Prng::new(8).bytes(200_000);
    let client = client_of_std_server(
        Faults::none().reset_after(50_000),
        Faults::none(),
        data.clone(),
        Vec::new(),
    );
    let n = client.got_bytes.len();
    assert!(n <= 50_000, "{n} bytes passed a reset after 50,000");
    assert!(
        client.got_bytes == data[..n],
        "bytes before the reset differ"
    );
    assert_eq!(
        client.events.last(),
        Some(&Ev::Closed(Err(SocketErrorStatus::ConnectionResetByPeer))),
        "{:?}",
        &client.events[client.events.len().saturating_sub(3)..]
    );
    assert!(
        !client.events.contains(&Ev::ReadClosed),
        "a reset is no end of file"
    );
}

#[test]
fn a_truncated_stream_ends_with_read_closed_after_exactly_the_bytes_passed() {
    let data = Prng::new(9).bytes(100_000);
    let client = client_of_std_server(
        Faults::none()
            .segments(4000, Duration::ZERO)
            .truncate_after(30_001),
        Faults::none(),
        data.clone(),
        Vec::new(),
    );
    assert_eq!(client.got_bytes.len(), 30_001);
    assert!(client.got_bytes == data[..30_001]);
    let read_closed = client.events.iter().position(|e| *e == Ev::ReadClosed);
    assert!(read_closed.is_some(), "{:?}", client.events);
    assert!(matches!(client.events.last(), Some(Ev::Closed(_))));
}

#[test]
fn a_half_close_from_the_peer_leaves_the_other_direction_working() {
    // The server's bytes stop (FIN) after 10,000; the client's still reach it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = FaultProxy::start(
        listener.local_addr().unwrap(),
        Faults::none().segments(100, Duration::ZERO),
        Faults::none().half_close_after(10_000),
    );
    let data = Prng::new(10).bytes(50_000);
    let upload = Prng::new(11).bytes(300_000);
    let server = {
        let (data, upload) = (data.clone(), upload.clone());
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut s = util::with_timeouts(s);
            // The proxy discards what follows the half-close; the write succeeds.
            s.write_all(&data).unwrap();
            let mut got = vec![0u8; upload.len()];
            s.read_exact(&mut got).unwrap();
            assert!(got == upload, "the upload differs");
        })
    };
    let mut reactor = Reactor::<Client>::new().unwrap();
    let mut client = Client::default();
    StreamSocket::connect_to(
        &mut reactor,
        proxy.addr(),
        move |reactor, c: &mut Client, socket, event| {
            c.events.push(Ev::of(&event));
            match event {
                StreamEvent::Received(mut input) => {
                    c.got_bytes.extend_from_slice(input.bytes());
                    input.consume_all();
                }
                // Half-closed by the peer: send our side now, then close.
                StreamEvent::ReadClosed => {
                    socket.write(reactor, &upload).unwrap();
                    socket.close(reactor).unwrap();
                }
                _ => {}
            }
        },
    )
    .unwrap();
    run_until(&mut reactor, &mut client, LIMIT, |c| {
        util::closed(&c.events)
    });
    server.join().expect("the server got every uploaded byte");
    assert!(client.got_bytes == data[..10_000]);
    assert_eq!(client.events.last(), Some(&Ev::Closed(Ok(()))));
    assert_lifecycle(&client.events);
}

#[test]
fn injected_bytes_arrive_exactly_where_injected() {
    let data = Prng::new(12).bytes(20_000);
    let client = client_of_std_server(
        Faults::none()
            .segments(50, Duration::ZERO)
            .inject(12_345, b"INJECTED"),
        Faults::none(),
        data.clone(),
        Vec::new(),
    );
    let mut want = data[..12_345].to_vec();
    want.extend_from_slice(b"INJECTED");
    want.extend_from_slice(&data[12_345..]);
    assert!(client.got_bytes == want, "{} bytes", client.got_bytes.len());
    assert_eq!(client.events.last(), Some(&Ev::Closed(Ok(()))));
}

/// TLS through the proxy: the handshake and the records cut into 1-byte segments, then
/// a truncation (FIN without close_notify) mid-stream reported as a reset, not an end.
#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use sockloop::ProtectionLevel;
    use util::tls::{tls_control, Pki};

    fn tls_echo_server(reactor: &mut Reactor<Client>, pki: &Pki) -> SocketAddr {
        let control = StreamSocketListenerControl::new().tls(pki.server());
        serve(reactor, &control, echo).1
    }

    /// A TLS client of an echo server through a proxy; sends `data`, closes once it
    /// is all back.
    fn tls_echo_through(up: Faults, down: Faults, data: Vec<u8>) -> Client {
        let pki = Pki::new(&["127.0.0.1"]);
        let mut reactor = Reactor::<Client>::new().unwrap();
        let addr = tls_echo_server(&mut reactor, &pki);
        let proxy = FaultProxy::start(addr, up, down);
        let control = tls_control(ProtectionLevel::Tls13, pki.client());
        let mut client = Client {
            want: data.len(),
            ..Client::default()
        };
        client.expected.update(&data);
        StreamSocket::connect_to_with(
            &mut reactor,
            proxy.addr(),
            &control,
            move |reactor, c: &mut Client, socket, event| {
                c.events.push(Ev::of(&event));
                match event {
                    StreamEvent::Connected => {
                        for chunk in data.chunks(16 * 1024) {
                            socket.write(reactor, chunk).expect("write");
                        }
                    }
                    StreamEvent::Received(mut input) => {
                        c.got.update(input.bytes());
                        c.got_bytes.extend_from_slice(input.bytes());
                        input.consume_all();
                        if c.got_bytes.len() == c.want {
                            socket.close(reactor).expect("close");
                        }
                    }
                    _ => {}
                }
            },
        )
        .unwrap();
        run_until(&mut reactor, &mut client, LIMIT, |c| {
            util::closed(&c.events)
        });
        util::run_for(&mut reactor, &mut client, Duration::from_millis(20));
        assert_lifecycle(&client.events);
        drop(proxy);
        client
    }

    #[test]
    fn tls_echo_through_one_byte_segments_is_checksummed() {
        let data = Prng::new(30).bytes(32 * 1024);
        let seg = Duration::from_micros(10);
        let client = tls_echo_through(
            Faults::none().segments(1, seg),
            Faults::none().segments(1, seg),
            data,
        );
        assert_eq!(
            client.got.finish(),
            client.expected.finish(),
            "echo differs"
        );
        assert_eq!(client.events.first(), Some(&Ev::Connected));
        assert_eq!(client.events.last(), Some(&Ev::Closed(Ok(()))));
    }

    #[test]
    fn a_tls_stream_truncated_mid_record_is_a_reset_not_an_end() {
        // 200 KiB echoed, the server's records cut after 100,000 bytes (mid-record).
        let data = Prng::new(31).bytes(200 * 1024);
        let client = tls_echo_through(
            Faults::none(),
            Faults::none()
                .segments(3000, Duration::ZERO)
                .truncate_after(100_000),
            data.clone(),
        );
        let n = client.got_bytes.len();
        assert!(n < data.len(), "all {n} bytes arrived through a truncation");
        assert!(client.got_bytes == data[..n], "bytes before the cut differ");
        assert!(
            !client.events.contains(&Ev::ReadClosed),
            "a truncation seen as an end"
        );
        assert_eq!(
            client.events.last(),
            Some(&Ev::Closed(Err(SocketErrorStatus::ConnectionResetByPeer)))
        );
    }
}
