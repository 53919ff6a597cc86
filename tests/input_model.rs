//! A model-based test of the receive path: one socket driven through random
//! interleavings of partial consumption, pause and resume (inside and outside its
//! handler), codec set and clear mid-stream, handler replacement, peer writes of
//! random sizes and a final FIN.
//!
//! The model follows the byte stream with a cursor (the first byte not consumed) and
//! checks every event against it:
//! - `Received` offers bytes starting exactly at the cursor: none skipped, none
//!   consumed twice; `Message` is the frame that starts at the cursor under the codec
//!   the model knows is set;
//! - nothing is delivered while receiving is paused, and events go to the handler the
//!   model knows is set;
//! - `ReadClosed` comes only after the last byte sent was offered, and `Closed` once;
//! - at the end every byte was consumed: no byte lost, nothing stalled.

mod util;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sockloop::{Decoded, Decoder, Encoder, Lines};
use sockloop::{Error, Reactor, SocketErrorStatus, StreamEvent, StreamSocket};
use util::fault_proxy::{FaultProxy, Faults};

/// A codec of one-byte-length frames that keeps no state between calls (so the
/// model knows what it consumed: whole frames only).
#[derive(Clone, Copy, Debug)]
struct Tiny;

impl Decoder for Tiny {
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, Error> {
        match src.first() {
            Some(&len) if src.len() > usize::from(len) => Ok(Decoded::Frame {
                frame: 1..1 + usize::from(len),
                consumed: 1 + usize::from(len),
            }),
            _ => Ok(Decoded::NeedMore { consumed: 0 }),
        }
    }
}

impl Encoder for Tiny {
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), Error> {
        let len = u8::try_from(frame.len())
            .map_err(|_| Error::new(SocketErrorStatus::MessageTooLong, "encode"))?;
        dst.push(len);
        dst.extend_from_slice(frame);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Raw,
    Lines,
    Tiny,
}

/// A change of how the socket's input is taken.
#[derive(Clone, Copy, Debug)]
enum Change {
    Pause,
    Resume,
    Set(Codec),
    ReplaceHandler,
}

/// What the handler does on one call.
#[derive(Clone, Copy, Debug)]
struct Decision {
    /// Of `Received` bytes, consume `len * consume / 4` (0 to all).
    consume: u8,
    change: Option<Change>,
}

/// One step of the test, outside any handler.
#[derive(Clone, Copy, Debug)]
enum Step {
    PeerWrites(usize),
    Outside(Change),
    Turn,
}

struct Model {
    stream: Vec<u8>,
    /// Bytes the peer has sent so far.
    sent: usize,
    fin: bool,
    cursor: usize,
    /// The furthest byte offered (`Received`) or consumed (`Message`).
    offered: usize,
    codec: Codec,
    paused: bool,
    /// Which handler the model expects to be called.
    handler: u32,
    next_handler: u32,
    decisions: Vec<Decision>,
    calls: usize,
    /// At the end: consume everything, change nothing.
    draining: bool,
    read_closed_at: Option<usize>,
    closed: Vec<Result<(), SocketErrorStatus>>,
}

impl Model {
    fn apply(&mut self, reactor: &mut Reactor<Model>, socket: StreamSocket, change: Change) {
        match change {
            Change::Pause => {
                socket.set_receive_paused(reactor, true).unwrap();
                self.paused = true;
            }
            Change::Resume => {
                socket.set_receive_paused(reactor, false).unwrap();
                self.paused = false;
            }
            Change::Set(Codec::Raw) => {
                socket.clear_framing(reactor).unwrap();
                self.codec = Codec::Raw;
            }
            Change::Set(Codec::Lines) => {
                socket.set_framing(reactor, Lines::new()).unwrap();
                self.codec = Codec::Lines;
            }
            Change::Set(Codec::Tiny) => {
                socket.set_framing(reactor, Tiny).unwrap();
                self.codec = Codec::Tiny;
            }
            Change::ReplaceHandler => {
                self.next_handler += 1;
                self.handler = self.next_handler;
                socket.set_handler(reactor, handler(self.handler)).unwrap();
            }
        }
    }

    fn decision(&mut self) -> Decision {
        if self.draining {
            return Decision {
                consume: 4,
                change: None,
            };
        }
        let d = self.decisions[self.calls % self.decisions.len()];
        self.calls += 1;
        d
    }

    /// The frame at the cursor under `codec`: (payload range, bytes consumed).
    fn frame_at_cursor(&self) -> Option<(std::ops::Range<usize>, usize)> {
        let rest = &self.stream[self.cursor..self.sent];
        match self.codec {
            Codec::Raw => None,
            Codec::Lines => {
                let end = rest.iter().position(|&b| b == b'\n')?;
                Some((self.cursor..self.cursor + end, end + 1))
            }
            Codec::Tiny => {
                let len = usize::from(*rest.first()?);
                (rest.len() > len).then(|| (self.cursor + 1..self.cursor + 1 + len, 1 + len))
            }
        }
    }
}

fn handler(
    id: u32,
) -> impl FnMut(&mut Reactor<Model>, &mut Model, StreamSocket, StreamEvent<'_>) + 'static {
    move |reactor, m, socket, event| {
        if !matches!(event, StreamEvent::Closed(_)) {
            assert_eq!(
                m.handler, id,
                "an event went to a replaced handler: {event:?}"
            );
        }
        match event {
            StreamEvent::Received(mut input) => {
                assert!(!m.paused, "bytes delivered while paused");
                assert_eq!(m.codec, Codec::Raw, "raw bytes delivered with a codec set");
                let bytes = input.bytes();
                assert!(!bytes.is_empty(), "an empty Received");
                let end = m.cursor + bytes.len();
                assert!(end <= m.sent, "more bytes offered than sent");
                assert!(
                    bytes == &m.stream[m.cursor..end],
                    "offered bytes do not start at the first unconsumed byte {}",
                    m.cursor
                );
                m.offered = m.offered.max(end);
                let d = m.decision();
                let take = bytes.len() * usize::from(d.consume) / 4;
                input.consume(take);
                m.cursor += take;
                if let Some(change) = d.change {
                    m.apply(reactor, socket, change);
                }
            }
            StreamEvent::Message(payload) => {
                assert!(!m.paused, "a message delivered while paused");
                let (range, consumed) = m.frame_at_cursor().unwrap_or_else(|| {
                    panic!("a message with no frame at the cursor ({:?})", m.codec)
                });
                assert!(
                    payload == &m.stream[range],
                    "the message is not the frame at the cursor {} ({:?})",
                    m.cursor,
                    m.codec
                );
                m.cursor += consumed;
                m.offered = m.offered.max(m.cursor);
                if let Some(change) = m.decision().change {
                    m.apply(reactor, socket, change);
                }
            }
            StreamEvent::ReadClosed => {
                assert!(m.fin, "ReadClosed before the peer's FIN");
                assert!(!m.paused, "ReadClosed while paused");
                assert_eq!(
                    m.offered, m.sent,
                    "ReadClosed before the last byte was offered"
                );
                assert!(m.read_closed_at.is_none(), "ReadClosed twice");
                m.read_closed_at = Some(m.cursor);
                socket.close(reactor).unwrap();
            }
            StreamEvent::Closed(result) => m.closed.push(result.map_err(|e| e.status())),
            _ => {}
        }
    }
}

/// Bytes that make frames under every codec: newlines for `Lines`, small values as
/// `Tiny` lengths.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0u8, 1, 2, 3, b'\n', b'a', b'b']),
        1..2000,
    )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::Pause),
        Just(Change::Resume),
        Just(Change::Set(Codec::Raw)),
        Just(Change::Set(Codec::Lines)),
        Just(Change::Set(Codec::Tiny)),
        Just(Change::ReplaceHandler),
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    (0u8..=4, prop::option::weighted(0.3, change()))
        .prop_map(|(consume, change)| Decision { consume, change })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..400).prop_map(Step::PeerWrites),
        2 => change().prop_map(Step::Outside),
        2 => Just(Step::Turn),
    ]
}

fn turn(reactor: &mut Reactor<Model>, model: &mut Model) {
    reactor
        .turn(model, Some(Duration::from_millis(1)))
        .expect("turn");
}

/// A connected pair whose peer side goes through the fault proxy (cutting the stream
/// into segments of 1 to `max_segment` bytes); the proxy lives as long as the pair.
fn proxied_pair(max_segment: usize, seed: u64) -> (TcpStream, TcpStream, FaultProxy) {
    let listener = std::net::TcpListener::bind(util::LOCAL_V4).unwrap();
    let proxy = FaultProxy::start(
        listener.local_addr().unwrap(),
        Faults::none()
            .segments(max_segment, Duration::from_micros(20))
            .seed(seed),
        Faults::none(),
    );
    let peer = util::with_timeouts(TcpStream::connect(proxy.addr()).unwrap());
    let (ours, _) = listener.accept().unwrap();
    (ours, peer, proxy)
}

fn run_case(stream: Vec<u8>, decisions: Vec<Decision>, steps: Vec<Step>) {
    let pair = util::loopback_pair();
    run_case_on(pair, stream, decisions, steps);
}

fn run_case_on(
    (ours, mut peer): (TcpStream, TcpStream),
    stream: Vec<u8>,
    decisions: Vec<Decision>,
    steps: Vec<Step>,
) {
    let mut reactor = Reactor::<Model>::builder()
        .read_buffer_size(128)
        .build()
        .unwrap();
    let mut model = Model {
        stream,
        sent: 0,
        fin: false,
        cursor: 0,
        offered: 0,
        codec: Codec::Raw,
        paused: false,
        handler: 0,
        next_handler: 0,
        decisions,
        calls: 0,
        draining: false,
        read_closed_at: None,
        closed: Vec::new(),
    };
    let socket = StreamSocket::from_std(&mut reactor, ours, handler(0)).unwrap();
    for step in steps {
        match step {
            Step::PeerWrites(n) => {
                let end = (model.sent + n).min(model.stream.len());
                peer.write_all(&model.stream[model.sent..end]).unwrap();
                model.sent = end;
            }
            Step::Outside(change) => model.apply(&mut reactor, socket, change),
            Step::Turn => {}
        }
        turn(&mut reactor, &mut model);
        assert!(model.closed.is_empty(), "closed early: {:?}", model.closed);
    }
    // The end: everything sent, then raw bytes consumed as they come, then FIN.
    peer.write_all(&model.stream[model.sent..]).unwrap();
    model.sent = model.stream.len();
    model.draining = true;
    model.apply(&mut reactor, socket, Change::Resume);
    model.apply(&mut reactor, socket, Change::Set(Codec::Raw));
    model.apply(&mut reactor, socket, Change::ReplaceHandler);
    peer.shutdown(Shutdown::Write).unwrap();
    model.fin = true;
    let deadline = Instant::now() + Duration::from_secs(30);
    while model.closed.is_empty() {
        assert!(
            Instant::now() < deadline,
            "stalled: cursor {} of {}, offered {}",
            model.cursor,
            model.sent,
            model.offered
        );
        turn(&mut reactor, &mut model);
    }
    assert_eq!(model.cursor, model.stream.len(), "bytes lost");
    assert_eq!(model.read_closed_at, Some(model.stream.len()));
    assert_eq!(model.closed, [Ok(())]);
    util::run_for(&mut reactor, &mut model, Duration::from_millis(2));
    assert_eq!(model.closed.len(), 1, "Closed more than once");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_byte_is_offered_in_order_once_and_none_is_lost(
        stream in stream_bytes(),
        decisions in prop::collection::vec(decision(), 1..12),
        steps in prop::collection::vec(step(), 1..60),
    ) {
        run_case(stream, decisions, steps);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The same model with the peer's bytes cut by the fault proxy into segments of
    /// 1 to `max_segment` bytes, sent with `TCP_NODELAY` and pauses between them:
    /// every byte is still offered once, in order, whatever the segmentation.
    #[test]
    fn through_the_fault_proxy_every_byte_is_offered_in_order_once(
        stream in stream_bytes(),
        decisions in prop::collection::vec(decision(), 1..12),
        steps in prop::collection::vec(step(), 1..60),
        max_segment in prop_oneof![Just(1usize), 1usize..64],
        seed in any::<u64>(),
    ) {
        let (ours, peer, proxy) = proxied_pair(max_segment, seed);
        run_case_on((ours, peer), stream, decisions, steps);
        drop(proxy);
    }
}
