//! Regression tests for defects found in the reactor core: each failed before its fix.
//!
//! - kept input that was not offered again when what held it back changed (pause and
//!   resume, a codec set or cleared from inside the handler);
//! - a handler panic that left the reactor unusable;
//! - `write_frame` trusting the encoder's announced length;
//! - default limits that did not compose (a frame of the codec's default maximum could
//!   not be written back with the default reactor).

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::Duration;

use sockloop::{Decoder, Encoder, LengthPrefixed, Lines};
use sockloop::{Error, Reactor, SocketErrorStatus, StreamEvent, StreamSocket};
use util::{loopback_pair, run_until, Prng};

const LIMIT: Duration = Duration::from_secs(20);

/// What the echoing handler of defect 0 saw.
#[derive(Default)]
struct Echo {
    /// Bytes consumed (accepted by `write`), in order.
    consumed: Vec<u8>,
    /// `consumed.len()` when `ReadClosed` came.
    read_closed_at: Option<usize>,
    pauses: usize,
    closed: Option<Result<(), SocketErrorStatus>>,
}

/// Echoes what the write queue accepts, 1 KiB at a time, consumes only that, pauses
/// receiving on a refused write and resumes on `Drained`: the pattern of the docs.
fn echo_with_backpressure(
    reactor: &mut Reactor<Echo>,
    echo: &mut Echo,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(mut input) => {
            let bytes = input.bytes();
            let mut taken = 0;
            for chunk in bytes.chunks(1024) {
                match socket.write(reactor, chunk) {
                    Ok(()) => taken += chunk.len(),
                    Err(e) => {
                        assert_eq!(e.status(), SocketErrorStatus::NoBufferSpaceAvailable);
                        socket.set_receive_paused(reactor, true).unwrap();
                        echo.pauses += 1;
                        break;
                    }
                }
            }
            echo.consumed.extend_from_slice(&bytes[..taken]);
            input.consume(taken);
        }
        StreamEvent::Drained => socket.set_receive_paused(reactor, false).unwrap(),
        StreamEvent::ReadClosed => {
            echo.read_closed_at = Some(echo.consumed.len());
            socket.close(reactor).unwrap();
        }
        StreamEvent::Closed(result) => {
            echo.closed = Some(result.map_err(|e| e.status()));
        }
        _ => {}
    }
}

fn small_queue_reactor<S: 'static>() -> Reactor<S> {
    Reactor::<S>::builder()
        .watermarks(1024, 4096, 8 * 1024)
        .build()
        .unwrap()
}

#[test]
fn defect0_kept_input_is_offered_again_after_resume_before_read_closed() {
    let mut reactor = small_queue_reactor::<Echo>();
    let (ours, mut peer) = loopback_pair();
    let sent = Prng::new(7).bytes(64 * 1024);
    peer.write_all(&sent).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let reader = util::read_to_end_thread(peer);
    StreamSocket::from_std(&mut reactor, ours, echo_with_backpressure).unwrap();
    let mut echo = Echo::default();
    run_until(&mut reactor, &mut echo, LIMIT, |e| e.closed.is_some());
    assert!(echo.pauses > 0, "the write limit never pushed back");
    assert_eq!(echo.closed, Some(Ok(())));
    assert_eq!(
        echo.read_closed_at,
        Some(sent.len()),
        "ReadClosed came before every byte was offered"
    );
    assert!(echo.consumed == sent, "bytes lost or reordered");
    let echoed = reader.join().unwrap();
    assert!(echoed == sent, "echo differs: {} bytes", echoed.len());
}

#[test]
fn defect0_kept_input_is_offered_again_after_resume_without_more_input() {
    let mut reactor = small_queue_reactor::<Echo>();
    let (ours, mut peer) = loopback_pair();
    let sent = Prng::new(8).bytes(64 * 1024);
    // The peer sends everything, then only reads: no new byte and no FIN will come to
    // wake the socket up.
    peer.write_all(&sent).unwrap();
    let expected = sent.len();
    let reader = thread::spawn(move || {
        let mut got = vec![0; expected];
        peer.read_exact(&mut got).map(|()| got)
    });
    StreamSocket::from_std(&mut reactor, ours, echo_with_backpressure).unwrap();
    let mut echo = Echo::default();
    run_until(&mut reactor, &mut echo, LIMIT, |e| {
        e.consumed.len() == expected
    });
    assert!(echo.pauses > 0, "the write limit never pushed back");
    assert!(echo.consumed == sent);
    run_until(&mut reactor, &mut echo, LIMIT, |_| reader.is_finished());
    let echoed = reader.join().unwrap().expect("echo");
    assert!(echoed == sent);
}

/// Messages and raw bytes a socket's handler saw, in order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    messages: Vec<Vec<u8>>,
    raw: Vec<u8>,
}

fn framed_peer(bytes: &[u8]) -> (std::net::TcpStream, std::net::TcpStream) {
    let (ours, mut peer) = loopback_pair();
    // One segment: the bytes after the switch arrive with the ones before it.
    peer.write_all(bytes).unwrap();
    (ours, peer)
}

#[test]
fn defect1_set_framing_on_a_message_decodes_the_rest_with_the_new_codec() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (ours, _peer) = framed_peer(b"STARTBIN\n\0\0\0\x03abc");
    let socket = StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, seen: &mut Seen, socket, event| {
            if let StreamEvent::Message(m) = event {
                seen.messages.push(m.to_vec());
                if m == b"STARTBIN" {
                    socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
                }
            }
        },
    )
    .unwrap();
    socket.set_framing(&mut reactor, Lines::new()).unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.messages.len() == 2);
    assert_eq!(seen.messages, [b"STARTBIN".to_vec(), b"abc".to_vec()]);
}

#[test]
fn defect1_set_framing_inside_received_decodes_the_rest() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (ours, _peer) = framed_peer(b"HELLO\n\0\0\0\x02hi\0\0\0\x01!");
    StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Received(mut input) => {
                let bytes = input.bytes();
                if let Some(end) = bytes.iter().position(|&b| b == b'\n') {
                    seen.raw.extend_from_slice(&bytes[..=end]);
                    input.consume(end + 1);
                    socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
                }
            }
            StreamEvent::Message(m) => seen.messages.push(m.to_vec()),
            _ => {}
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.messages.len() == 2);
    assert_eq!(seen.raw, b"HELLO\n");
    assert_eq!(seen.messages, [b"hi".to_vec(), b"!".to_vec()]);
}

#[test]
fn defect1_clear_framing_on_a_message_gives_the_rest_as_bytes() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (ours, _peer) = framed_peer(b"one\nRAW\nxyz");
    let socket = StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, seen: &mut Seen, socket, event| match event {
            StreamEvent::Message(m) => {
                seen.messages.push(m.to_vec());
                if m == b"RAW" {
                    socket.clear_framing(reactor).unwrap();
                }
            }
            StreamEvent::Received(mut input) => {
                seen.raw.extend_from_slice(input.bytes());
                input.consume_all();
            }
            _ => {}
        },
    )
    .unwrap();
    socket.set_framing(&mut reactor, Lines::new()).unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.raw.len() == 3);
    assert_eq!(seen.messages, [b"one".to_vec(), b"RAW".to_vec()]);
    assert_eq!(seen.raw, b"xyz");
}

#[test]
fn defect1_a_codec_set_then_cleared_in_one_call_leaves_raw_bytes() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (ours, _peer) = framed_peer(b"abc\ndef");
    StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, seen: &mut Seen, socket, event| {
            if let StreamEvent::Received(mut input) = event {
                if seen.raw.is_empty() {
                    socket.set_framing(reactor, Lines::new()).unwrap();
                    socket.clear_framing(reactor).unwrap();
                    seen.raw.push(b'|');
                } else {
                    seen.raw.extend_from_slice(input.bytes());
                    input.consume_all();
                }
            }
        },
    )
    .unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.raw.len() == 8);
    assert_eq!(seen.raw, b"|abc\ndef");
}

#[test]
fn defect1_a_handler_replaced_inside_a_message_gets_the_next_messages() {
    let mut reactor = Reactor::<Seen>::new().unwrap();
    let (ours, _peer) = framed_peer(b"first\nsecond\nthird\n");
    let socket = StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, seen: &mut Seen, socket, event| {
            if let StreamEvent::Message(m) = event {
                seen.messages.push(m.to_vec());
                socket
                    .set_handler(reactor, |_, seen: &mut Seen, _, event| {
                        if let StreamEvent::Message(m) = event {
                            seen.messages.push([b"2:", m].concat());
                        }
                    })
                    .unwrap();
            }
        },
    )
    .unwrap();
    socket.set_framing(&mut reactor, Lines::new()).unwrap();
    let mut seen = Seen::default();
    run_until(&mut reactor, &mut seen, LIMIT, |s| s.messages.len() == 3);
    assert_eq!(
        seen.messages,
        [b"first".to_vec(), b"2:second".to_vec(), b"2:third".to_vec()]
    );
}

/// What the panic tests saw.
#[derive(Default)]
struct Panics {
    closed: Vec<(StreamSocket, Result<(), SocketErrorStatus>)>,
    received: Vec<(StreamSocket, Vec<u8>)>,
    fired: usize,
}

fn panicking_on(
    word: &'static [u8],
) -> impl FnMut(&mut Reactor<Panics>, &mut Panics, StreamSocket, StreamEvent<'_>) {
    move |_reactor, seen, socket, event| match event {
        StreamEvent::Received(mut input) => {
            let bytes = input.bytes().to_vec();
            input.consume_all();
            if bytes == word {
                panic!("handler panics on {:?}", String::from_utf8_lossy(word));
            }
            seen.received.push((socket, bytes));
        }
        StreamEvent::Closed(result) => seen.closed.push((socket, result.map_err(|e| e.status()))),
        _ => {}
    }
}

#[test]
fn defect2_a_handler_panic_propagates_and_leaves_the_reactor_usable() {
    let mut reactor = Reactor::<Panics>::new().unwrap();
    let (a, mut peer_a) = loopback_pair();
    let (b, mut peer_b) = loopback_pair();
    let sa = StreamSocket::from_std(&mut reactor, a, panicking_on(b"boom")).unwrap();
    let sb = StreamSocket::from_std(&mut reactor, b, panicking_on(b"boom")).unwrap();
    let mut seen = Panics::default();
    peer_a.write_all(b"boom").unwrap();
    let mut caught = 0;
    for _ in 0..200 {
        match catch_unwind(AssertUnwindSafe(|| {
            reactor.turn(&mut seen, Some(Duration::from_millis(50)))
        })) {
            Ok(result) => {
                result.expect("turn after a caught panic");
            }
            Err(payload) => {
                caught += 1;
                let text = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    text.contains("handler panics"),
                    "unexpected payload {text:?}"
                );
            }
        }
        if !seen.closed.is_empty() && caught > 0 {
            break;
        }
    }
    assert_eq!(caught, 1, "the panic must reach the embedder once");
    assert_eq!(seen.closed.len(), 1);
    assert_eq!(seen.closed[0].0, sa);
    assert_eq!(seen.closed[0].1, Err(SocketErrorStatus::HandlerPanicked));
    // The other socket, and the reactor, carry on: reads are not mistaken for EOFs.
    peer_b.write_all(b"still here").unwrap();
    run_until(&mut reactor, &mut seen, LIMIT, |s| !s.received.is_empty());
    assert_eq!(seen.received, [(sb, b"still here".to_vec())]);
    assert_eq!(reactor.stats().handler_panics, 1);
    // The panicking socket's peer sees the connection end.
    let mut rest = Vec::new();
    peer_a.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = peer_a.read_to_end(&mut rest);
    assert!(sa.write(&mut reactor, b"x").is_err(), "the handle is stale");
}

#[test]
fn defect2_caught_handler_panics_close_only_that_socket() {
    let mut reactor: Reactor<Panics> = Reactor::<Panics>::builder()
        .catch_handler_panics(true)
        .build()
        .unwrap();
    let (a, mut peer_a) = loopback_pair();
    let (b, mut peer_b) = loopback_pair();
    let sa = StreamSocket::from_std(&mut reactor, a, panicking_on(b"boom")).unwrap();
    let sb = StreamSocket::from_std(&mut reactor, b, panicking_on(b"boom")).unwrap();
    let mut seen = Panics::default();
    peer_a.write_all(b"boom").unwrap();
    peer_b.write_all(b"fine").unwrap();
    // No panic reaches the caller: `run_until` would fail the test.
    run_until(&mut reactor, &mut seen, LIMIT, |s| {
        !s.closed.is_empty() && !s.received.is_empty()
    });
    assert_eq!(seen.closed, [(sa, Err(SocketErrorStatus::HandlerPanicked))]);
    assert_eq!(seen.received, [(sb, b"fine".to_vec())]);
    assert_eq!(reactor.stats().handler_panics, 1);
}

#[test]
fn defect2_a_timer_panic_propagates_and_drops_the_timer() {
    let mut reactor = Reactor::<Panics>::new().unwrap();
    let id = reactor.set_timer(Duration::from_millis(1), |reactor, seen, id| {
        seen.fired += 1;
        // Re-armed, then panics: the timer is dropped all the same.
        reactor.reset_timer(id, Duration::from_millis(1)).unwrap();
        panic!("timer panics");
    });
    let mut seen = Panics::default();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        reactor.turn(&mut seen, Some(Duration::from_secs(5)))
    }));
    assert!(outcome.is_err(), "the panic must reach the embedder");
    assert_eq!(seen.fired, 1);
    assert!(
        reactor.timer_deadline(id).is_none(),
        "a panicking timer is dropped"
    );
    // Nothing is left: `run` returns at once.
    reactor.run(&mut seen).expect("run after a caught panic");
    assert_eq!(seen.fired, 1);
}

#[test]
fn defect2_caught_timer_panics_drop_the_timer() {
    let mut reactor: Reactor<Panics> = Reactor::<Panics>::builder()
        .catch_handler_panics(true)
        .build()
        .unwrap();
    reactor.set_timer(Duration::from_millis(1), |_, seen, _| {
        seen.fired += 1;
        panic!("timer panics");
    });
    reactor.set_timer(Duration::from_millis(5), |_, seen, _| seen.fired += 10);
    let mut seen = Panics::default();
    util::run_bounded(&mut reactor, &mut seen, LIMIT);
    assert_eq!(seen.fired, 11);
    assert_eq!(reactor.stats().handler_panics, 1);
}

/// An encoder that announces 4 bytes and writes 100.
#[derive(Clone)]
struct Liar;

impl Decoder for Liar {
    fn decode(&mut self, src: &[u8]) -> Result<sockloop::Decoded, Error> {
        Lines::new().decode(src)
    }
}

impl Encoder for Liar {
    fn encode(&mut self, _frame: &[u8], dst: &mut Vec<u8>) -> Result<(), Error> {
        dst.extend_from_slice(&[b'x'; 100]);
        Ok(())
    }

    fn encoded_len(&self, _frame_len: usize) -> Option<usize> {
        Some(4)
    }
}

#[test]
fn defect4_write_frame_checks_what_the_encoder_wrote() {
    let mut reactor = Reactor::<()>::builder()
        .watermarks(16, 32, 64)
        .build()
        .unwrap();
    let (ours, _peer) = loopback_pair();
    let socket = StreamSocket::from_std(&mut reactor, ours, |_, _: &mut (), _, _| {}).unwrap();
    socket.set_framing(&mut reactor, Liar).unwrap();
    let err = socket.write_frame(&mut reactor, b"ab").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::ProtocolError, "{err}");
    assert_eq!(socket.queued_len(&reactor).unwrap(), 0, "nothing is queued");
    // The socket is still usable.
    socket.write(&mut reactor, b"ok").unwrap();
}

#[test]
fn defect6_a_frame_of_the_default_maximum_can_be_echoed_with_the_defaults() {
    #[derive(Default)]
    struct Got {
        echoed: bool,
        error: Option<Error>,
    }
    let mut reactor = Reactor::<Got>::new().unwrap();
    let (ours, peer) = loopback_pair();
    let socket = StreamSocket::from_std(
        &mut reactor,
        ours,
        |reactor, got: &mut Got, socket, event| {
            if let StreamEvent::Message(m) = event {
                match socket.write_frame(reactor, m) {
                    Ok(()) => got.echoed = true,
                    Err(e) => got.error = Some(e),
                }
            }
        },
    )
    .unwrap();
    socket
        .set_framing(&mut reactor, LengthPrefixed::new())
        .unwrap();
    let max = LengthPrefixed::DEFAULT_MAX_FRAME_LENGTH;
    let mut frame = (max as u32).to_be_bytes().to_vec();
    frame.extend(Prng::new(3).bytes(max));
    let expected = frame.clone();
    let writer = util::write_all_thread(peer.try_clone().unwrap(), frame);
    let mut peer = peer;
    let reader = thread::spawn(move || {
        let mut got = vec![0; expected.len()];
        peer.read_exact(&mut got).unwrap();
        got == expected
    });
    let mut got = Got::default();
    run_until(&mut reactor, &mut got, LIMIT, |g| {
        g.echoed || g.error.is_some()
    });
    assert!(got.error.is_none(), "{:?}", got.error);
    run_until(&mut reactor, &mut got, LIMIT, |_| reader.is_finished());
    assert!(reader.join().unwrap(), "the echo differs");
    drop(writer.join().unwrap());
}
