//! Codecs on real sockets: `set_framing`, `Message` events and `write_frame`.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sockloop::{
    Error, Reactor, SocketErrorStatus, StreamEvent, StreamSocket, StreamSocketControl,
    StreamSocketListenerControl,
};
use sockloop::{LengthPrefixed, Lines};
use util::{run_until, serve, Prng};

const FRAMES: usize = 10_000;
const IN_FLIGHT: usize = 2_000;

#[derive(Default)]
struct Echo {
    frames: Vec<Vec<u8>>,
    sent: usize,
    received: usize,
    refused: usize,
    closed: Option<Result<(), Error>>,
    messages: Vec<Vec<u8>>,
    /// Echoes the server could not queue yet (it pauses receiving meanwhile).
    server_pending: std::collections::VecDeque<Vec<u8>>,
    server_pauses: usize,
}

/// Sends frames while fewer than `IN_FLIGHT` are unanswered and the queue takes them.
fn send_more(reactor: &mut Reactor<Echo>, echo: &mut Echo, socket: StreamSocket) {
    while echo.sent < echo.frames.len() && echo.sent - echo.received < IN_FLIGHT {
        match socket.write_frame(reactor, &echo.frames[echo.sent]) {
            Ok(()) => echo.sent += 1,
            Err(e) => {
                assert_eq!(e.status(), SocketErrorStatus::NoBufferSpaceAvailable, "{e}");
                echo.refused += 1;
                return; // `Drained` resumes
            }
        }
    }
}

/// Queues pending echoes; resumes receiving once they are all queued.
fn server_flush(reactor: &mut Reactor<Echo>, echo: &mut Echo, socket: StreamSocket) {
    while let Some(frame) = echo.server_pending.front() {
        if socket.write_frame(reactor, frame).is_err() {
            return;
        }
        echo.server_pending.pop_front();
    }
    socket.set_receive_paused(reactor, false).unwrap();
}

fn framed_echo_server(
    reactor: &mut Reactor<Echo>,
    echo: &mut Echo,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(input) => {
            // First bytes before the codec: leave them, install it; they are decoded.
            assert!(!input.is_empty());
            socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
        }
        StreamEvent::Message(message) => {
            if !echo.server_pending.is_empty() {
                echo.server_pending.push_back(message.to_vec());
            } else if let Err(e) = socket.write_frame(reactor, message) {
                assert_eq!(e.status(), SocketErrorStatus::NoBufferSpaceAvailable, "{e}");
                echo.server_pending.push_back(message.to_vec());
                echo.server_pauses += 1;
                socket.set_receive_paused(reactor, true).unwrap();
            }
        }
        StreamEvent::Drained => server_flush(reactor, echo, socket),
        StreamEvent::ReadClosed => socket.close(reactor).unwrap(),
        _ => {}
    }
}

#[test]
fn length_prefixed_echo_of_ten_thousand_frames_through_tiny_buffers() {
    // Small write queues, so that both sides run into backpressure.
    let mut reactor = Reactor::<Echo>::builder()
        .watermarks(16 * 1024, 64 * 1024, 256 * 1024)
        .build()
        .unwrap();
    let tiny = StreamSocketControl::new()
        .outbound_buffer_size(Some(4096))
        .inbound_buffer_size(Some(4096));
    let listener_control = StreamSocketListenerControl::new().accepted(tiny.clone());
    let (_listener, addr) = serve(&mut reactor, &listener_control, framed_echo_server);

    let mut rng = Prng::new(0x5eed);
    let mut echo = Echo::default();
    for _ in 0..FRAMES {
        let len = rng.range(0, 4096);
        echo.frames.push(rng.bytes(len));
    }
    let client = StreamSocket::connect_to_with(
        &mut reactor,
        addr,
        &tiny,
        |reactor, echo: &mut Echo, socket, event| match event {
            StreamEvent::Connected => {
                socket.set_framing(reactor, LengthPrefixed::new()).unwrap();
                // Read nothing for a while: the server's queue fills up and it has to
                // pause receiving until we read again.
                socket.set_receive_paused(reactor, true).unwrap();
                reactor.set_timer(Duration::from_millis(200), move |reactor, _, _| {
                    let _ = socket.set_receive_paused(reactor, false);
                });
                send_more(reactor, echo, socket);
            }
            StreamEvent::Message(message) => {
                let i = echo.received;
                assert!(message == echo.frames[i].as_slice(), "frame {i} differs");
                echo.received += 1;
                if echo.received == echo.frames.len() {
                    socket.close(reactor).unwrap();
                } else {
                    send_more(reactor, echo, socket);
                }
            }
            StreamEvent::Drained => send_more(reactor, echo, socket),
            StreamEvent::Closed(result) => echo.closed = Some(result),
            _ => {}
        },
    )
    .unwrap();
    let _ = client;
    run_until(&mut reactor, &mut echo, Duration::from_secs(60), |e| {
        e.closed.is_some()
    });
    assert_eq!(echo.received, FRAMES);
    assert!(echo.closed.take().unwrap().is_ok());
    println!(
        "client writes refused {} times, server paused {} times",
        echo.refused, echo.server_pauses
    );
    assert!(echo.refused > 0, "the client never met backpressure");
    assert!(echo.server_pauses > 0, "the server never had to pause");
}

/// A std client against a framed sockloop server that records messages and the end.
fn framed_server<C>(codec: C) -> (Reactor<Echo>, TcpStream)
where
    C: sockloop::Decoder + sockloop::Encoder + Clone + 'static,
{
    let mut reactor = Reactor::<Echo>::new().unwrap();
    let listener = sockloop::StreamSocketListener::bind(
        &mut reactor,
        "127.0.0.1",
        0,
        move |reactor, _, _, event| {
            if let sockloop::ListenerEvent::ConnectionReceived(conn) = event {
                conn.socket.set_framing(reactor, codec.clone()).unwrap();
                conn.socket
                    .set_handler(reactor, |_, echo: &mut Echo, _, event| match event {
                        StreamEvent::Message(m) => echo.messages.push(m.to_vec()),
                        StreamEvent::Closed(result) => echo.closed = Some(result),
                        _ => {}
                    })
                    .unwrap();
            }
        },
    )
    .unwrap();
    let addr = listener.local_address(&reactor).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (reactor, client)
}

#[test]
fn an_over_long_frame_closes_the_connection_with_message_too_long() {
    let (mut reactor, mut client) = framed_server(LengthPrefixed::new());
    let mut hostile = 5u32.to_be_bytes().to_vec();
    hostile.extend_from_slice(b"hello");
    hostile.extend_from_slice(&u32::MAX.to_be_bytes());
    hostile.extend_from_slice(&[0; 1000]);
    client.write_all(&hostile).unwrap();
    let mut echo = Echo::default();
    run_until(&mut reactor, &mut echo, Duration::from_secs(10), |e| {
        e.closed.is_some()
    });
    assert_eq!(echo.messages, [b"hello".to_vec()]);
    let err = echo.closed.take().unwrap().unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::MessageTooLong, "{err}");
    // The server hung up: the client sees end of file or a reset, not a hang.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
}

#[test]
fn lines_over_a_socket_and_an_unterminated_last_line() {
    let (mut reactor, mut client) = framed_server(Lines::new());
    client
        .write_all(b"first\r\nsecond\n\nthird without end")
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echo = Echo::default();
    run_until(&mut reactor, &mut echo, Duration::from_secs(10), |e| {
        e.closed.is_some()
    });
    assert_eq!(
        echo.messages,
        [b"first".to_vec(), b"second".to_vec(), b"".to_vec()]
    );
    let err = echo.closed.take().unwrap().unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::ProtocolError, "{err}");
}

#[test]
fn lines_end_cleanly_when_the_stream_ends_on_a_newline() {
    let (mut reactor, mut client) = framed_server(Lines::new());
    client.write_all(b"one\ntwo\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echo = Echo::default();
    // The server never closes by itself here: wait for both messages, then for EOF
    // to have been seen without an error.
    run_until(&mut reactor, &mut echo, Duration::from_secs(10), |e| {
        e.messages.len() == 2
    });
    reactor
        .turn(&mut echo, Some(Duration::from_millis(50)))
        .unwrap();
    assert!(echo.closed.is_none(), "{:?}", echo.closed);
    assert_eq!(echo.messages, [b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn write_frame_needs_a_codec() {
    let mut reactor = Reactor::<Echo>::new().unwrap();
    let (a, _b) = util::loopback_pair();
    let socket = StreamSocket::from_std(&mut reactor, a, |_, _, _, _| {}).unwrap();
    let err = socket.write_frame(&mut reactor, b"x").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidState);
    socket
        .set_framing(&mut reactor, LengthPrefixed::new().with_max_frame_length(4))
        .unwrap();
    let err = socket.write_frame(&mut reactor, b"too long").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::MessageTooLong, "{err}");
    assert_eq!(socket.queued_len(&reactor).unwrap(), 0);
    socket.write_frame(&mut reactor, b"ok").unwrap();
}
