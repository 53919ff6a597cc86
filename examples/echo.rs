//! Server and client in one process: the client sends a line, the server echoes it,
//! both say what happens, and the program exits once both sockets are closed.
//!
//! ```text
//! cargo run --example echo
//! ```

use sockloop::{ListenerEvent, Reactor, StreamEvent, StreamSocket, StreamSocketListener};

/// What the handlers share: passed to `run`, not captured.
#[derive(Default)]
struct Demo {
    listener: Option<StreamSocketListener>,
    echoed: Option<String>,
}

fn main() -> Result<(), sockloop::Error> {
    env_logger::init();
    let mut reactor = Reactor::<Demo>::new()?;
    let mut demo = Demo::default();

    // The server: echo every byte back, line by line. Port 0: the system picks one.
    let listener = StreamSocketListener::bind(
        &mut reactor,
        "127.0.0.1",
        0,
        |reactor, _demo, _listener, event| match event {
            ListenerEvent::ConnectionReceived(conn) => {
                println!("server: connection from {}", conn.remote);
                conn.socket
                    .set_handler(reactor, server_socket)
                    .expect("a socket just accepted is open");
            }
            ListenerEvent::Closed(result) => println!("server: listener closed ({result:?})"),
            _ => {}
        },
    )?;
    let port = listener.local_address(&reactor)?.port();
    demo.listener = Some(listener);
    println!("server: listening on 127.0.0.1:{port}");

    // The client: send a line, print the echo, close.
    StreamSocket::connect(
        &mut reactor,
        "127.0.0.1",
        port,
        |reactor, demo: &mut Demo, socket, event| match event {
            StreamEvent::Connected => {
                println!("client: connected, sending a line");
                let _ = socket.write(reactor, b"Hello from the sockloop echo sample\n");
            }
            StreamEvent::Received(mut input) => {
                if let Some(end) = input.bytes().iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&input.bytes()[..end]).into_owned();
                    println!("client: received \"{line}\"");
                    input.consume(end + 1);
                    demo.echoed = Some(line);
                    let _ = socket.close(reactor);
                }
            }
            StreamEvent::Closed(result) => {
                println!("client: closed ({result:?})");
                // The demo is over: stop listening so that `run` returns.
                if let Some(listener) = demo.listener.take() {
                    let _ = listener.close(reactor);
                }
            }
            _ => {}
        },
    )?;

    reactor.run(&mut demo)?;
    match demo.echoed {
        Some(_) => Ok(()),
        None => Err(
            sockloop::Error::new(sockloop::SocketErrorStatus::Unknown, "echo demo")
                .with_detail("no echo came back"),
        ),
    }
}

fn server_socket(
    reactor: &mut Reactor<Demo>,
    _demo: &mut Demo,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(mut input) => {
            println!("server: echoing {} bytes", input.len());
            if socket.write(reactor, input.bytes()).is_ok() {
                input.consume_all();
            }
        }
        StreamEvent::ReadClosed => {
            println!("server: client finished sending; closing");
            let _ = socket.close(reactor);
        }
        StreamEvent::Closed(result) => println!("server: connection closed ({result:?})"),
        _ => {}
    }
}
