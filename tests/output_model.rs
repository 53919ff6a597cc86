//! A model-based test of the send path inside a handler: the socket's handler, called
//! with the peer's input, runs random scripts of writes (small ones, ones around the
//! size the reactor stages without queueing, and larger ones), flushes, reads of the
//! queue's length and of `information`, pauses and resumes, and finally a
//! `shutdown_write`, `close` or `abort`, while the peer reads slowly enough that the
//! kernel's buffer fills and sends come back short.
//!
//! The model is the byte stream the writes accepted, in order. It checks that:
//! - every write is accepted until the socket is shut, and refused (`InvalidState` or
//!   `InvalidHandle`) after;
//! - inside a call, until a flush, `queued_len` and `information().queued_bytes` are
//!   what was queued when the call began plus what the call wrote;
//! - the peer receives exactly the accepted bytes, in order, then end of file (a
//!   prefix of them after `abort`, which drops what is queued).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use sockloop::{Reactor, SocketErrorStatus, StreamEvent, StreamSocket};
use util::{run_until, serve, PEER_TIMEOUT};

/// One step of a handler's script.
#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    Flush,
    CheckQueued,
    Pause(bool),
}

/// How the stream ends, after the last script.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Close,
    ShutdownWrite,
    Abort,
}

/// The byte at `offset` of the stream: a pattern that a reordering, a duplicate or a
/// hole changes.
fn pattern(offset: usize) -> u8 {
    (offset.wrapping_mul(7) ^ (offset >> 8).wrapping_mul(13)) as u8
}

#[derive(Default)]
struct Model {
    scripts: Vec<Vec<Op>>,
    end: Option<End>,
    /// Scripts run so far (one per byte of input).
    next: usize,
    /// Every byte accepted by `write`, in order.
    accepted: Vec<u8>,
    ended: bool,
    closed: bool,
    failures: Vec<String>,
}

impl Model {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }

    fn write(&mut self, reactor: &mut Reactor<Model>, socket: StreamSocket, n: usize) -> bool {
        let start = self.accepted.len();
        let data: Vec<u8> = (start..start + n).map(pattern).collect();
        match socket.write(reactor, &data) {
            Ok(()) if !self.ended => {
                self.accepted.extend_from_slice(&data);
                true
            }
            Ok(()) => {
                self.fail(format!("a write of {n} bytes accepted after the end"));
                false
            }
            Err(e) if self.ended => {
                if !matches!(
                    e.status(),
                    SocketErrorStatus::InvalidState | SocketErrorStatus::InvalidHandle
                ) {
                    self.fail(format!("a write after the end refused with {e}"));
                }
                false
            }
            Err(e) => {
                self.fail(format!("a write of {n} bytes refused: {e}"));
                false
            }
        }
    }

    /// Runs the script of one input byte.
    fn run_script(&mut self, reactor: &mut Reactor<Model>, socket: StreamSocket) {
        let Some(script) = self.scripts.get(self.next).cloned() else {
            return;
        };
        self.next += 1;
        // What the queue holds at the start of the call; `None` once a flush made it
        // depend on the kernel.
        let mut queued = socket.queued_len(reactor).ok();
        for op in script {
            match op {
                Op::Write(n) => {
                    if self.write(reactor, socket, n) {
                        queued = queued.map(|q| q + n);
                    }
                }
                Op::Flush => {
                    let _ = socket.flush(reactor);
                    queued = None;
                }
                Op::CheckQueued => {
                    if let (Some(want), false) = (queued, self.ended) {
                        let len = socket.queued_len(reactor).ok();
                        let info = socket.information(reactor).ok().map(|i| i.queued_bytes);
                        if len != Some(want) || info != Some(want) {
                            self.fail(format!(
                                "queued_len {len:?}, information {info:?}, model {want}"
                            ));
                        }
                    }
                }
                Op::Pause(paused) => {
                    let _ = socket.set_receive_paused(reactor, paused);
                    if paused {
                        // Resumed at once: the remaining scripts' input must come.
                        let _ = socket.set_receive_paused(reactor, false);
                    }
                }
            }
        }
        if self.next == self.scripts.len() && !self.ended {
            self.ended = true;
            let result = match self.end.unwrap_or(End::Close) {
                End::Close => socket.close(reactor),
                End::ShutdownWrite => socket.shutdown_write(reactor),
                End::Abort => socket.abort(reactor),
            };
            if let Err(e) = result {
                self.fail(format!("ending the stream: {e}"));
            }
        }
    }
}

fn handler(reactor: &mut Reactor<Model>, m: &mut Model, socket: StreamSocket, ev: StreamEvent<'_>) {
    match ev {
        StreamEvent::Received(mut input) => {
            let n = input.bytes().len();
            input.consume_all();
            for _ in 0..n {
                m.run_script(reactor, socket);
            }
        }
        StreamEvent::ReadClosed if m.end == Some(End::ShutdownWrite) => {
            let _ = socket.close(reactor);
        }
        StreamEvent::Closed(_) => m.closed = true,
        _ => {}
    }
}

/// Runs `scripts` (one per byte the peer sends, a few milliseconds apart) and
/// returns what the peer read, and whether its read ended in an error.
fn run(scripts: Vec<Vec<Op>>, end: End, slow_reader: bool) -> (Model, Vec<u8>, bool) {
    let mut reactor = Reactor::<Model>::new().unwrap();
    let steps = scripts.len();
    let mut model = Model {
        scripts,
        end: Some(end),
        ..Model::default()
    };
    let (_listener, addr) = serve(
        &mut reactor,
        &sockloop::StreamSocketListenerControl::new(),
        handler,
    );
    let peer = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = thread::spawn(move || {
            for _ in 0..steps {
                if writer.write_all(b"g").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(2));
            }
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8 * 1024];
        let errored = loop {
            match stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break true,
            }
            if slow_reader && got.len() % (64 * 1024) < 8 * 1024 {
                thread::sleep(Duration::from_millis(1));
            }
        };
        let _ = sender.join();
        (got, errored)
    });
    run_until(&mut reactor, &mut model, Duration::from_secs(30), |m| {
        m.closed
    });
    let (got, errored) = peer.join().unwrap();
    (model, got, errored)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..200).prop_map(Op::Write),
        2 => (16_000usize..16_800).prop_map(Op::Write),
        1 => (16_800usize..70_000).prop_map(Op::Write),
        1 => Just(Op::Flush),
        2 => Just(Op::CheckQueued),
        1 => any::<bool>().prop_map(Op::Pause),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        3 => Just(End::Close),
        1 => Just(End::ShutdownWrite),
        1 => Just(End::Abort),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_peer_gets_exactly_what_writes_accepted_in_order(
        scripts in prop::collection::vec(prop::collection::vec(op(), 0..8), 1..12),
        end in end(),
        slow_reader in any::<bool>(),
    ) {
        let (model, got, errored) = run(scripts, end, slow_reader);
        prop_assert!(model.failures.is_empty(), "{:?}", model.failures);
        if end == End::Abort {
            prop_assert!(got.len() <= model.accepted.len());
            prop_assert!(got == model.accepted[..got.len()], "not a prefix of what was written");
        } else {
            prop_assert!(!errored, "the peer's read failed");
            prop_assert_eq!(got.len(), model.accepted.len());
            prop_assert!(got == model.accepted, "the bytes differ");
        }
    }
}

/// A handler that writes and then panics: the socket is reset and what it wrote in
/// that call is not sent (it was never flushed), whichever way it was held.
#[test]
fn writes_of_a_handler_that_panics_are_not_sent() {
    for size in [10usize, 20_000] {
        let mut reactor = Reactor::<Model>::builder()
            .catch_handler_panics(true)
            .build()
            .unwrap();
        let mut model = Model::default();
        let (_listener, addr) = serve(
            &mut reactor,
            &sockloop::StreamSocketListenerControl::new(),
            move |reactor, m: &mut Model, socket: StreamSocket, ev: StreamEvent<'_>| match ev {
                StreamEvent::Received(input) => {
                    let first = input.bytes()[0];
                    socket.write(reactor, &[b'a'; 3]).unwrap();
                    if first == b'p' {
                        socket.write(reactor, &vec![b'x'; size]).unwrap();
                        panic!("a handler panics after writing");
                    }
                }
                StreamEvent::Closed(_) => m.closed = true,
                _ => {}
            },
        );
        let mut peer = TcpStream::connect(addr).unwrap();
        peer.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
        peer.write_all(b"p").unwrap();
        run_until(&mut reactor, &mut model, Duration::from_secs(10), |m| {
            m.closed
        });
        let mut got = Vec::new();
        let _ = peer.read_to_end(&mut got);
        assert!(
            got.is_empty(),
            "{} bytes of a panicking handler's writes were sent (size {size})",
            got.len()
        );
    }
}
