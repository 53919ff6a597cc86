//! A broadcast chat server: every line a client sends goes to every other client.
//!
//! The list of clients lives in the application state that `run` passes to every
//! handler, so broadcasting needs no `Rc<RefCell<_>>`.
//!
//! ```text
//! cargo run --example chat -- 7070          # then, in other terminals:
//! cargo run --example sockcat -- 127.0.0.1 7070
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sockloop::{
    ListenerEvent, Reactor, SocketErrorStatus, StreamEvent, StreamSocket, StreamSocketListener,
};

/// The longest line a client may send; longer ones are cut.
const MAX_LINE: usize = 4096;

#[derive(Default)]
struct Chat {
    clients: BTreeMap<StreamSocket, SocketAddr>,
}

impl Chat {
    /// Sends `line` to every client but `from`. A client too slow to keep up (its
    /// queue is over the reactor's limit) is disconnected rather than left behind.
    fn broadcast(&mut self, reactor: &mut Reactor<Chat>, from: StreamSocket, line: &[u8]) {
        for &client in self.clients.keys() {
            if client == from {
                continue;
            }
            if let Err(e) = client.write(reactor, line) {
                if e.status() == SocketErrorStatus::NoBufferSpaceAvailable {
                    eprintln!("chat: {client:?} is not reading; disconnecting it");
                    let _ = client.abort(reactor);
                }
            }
        }
    }
}

fn main() -> Result<(), sockloop::Error> {
    env_logger::init();
    let port = std::env::args().nth(1).unwrap_or_else(|| "7070".into());
    let mut reactor = Reactor::<Chat>::new()?;
    let listener = StreamSocketListener::bind(&mut reactor, "127.0.0.1", &port, on_listener)?;
    println!("chat: listening on {}", listener.local_address(&reactor)?);
    reactor.run(&mut Chat::default())
}

fn on_listener(
    reactor: &mut Reactor<Chat>,
    chat: &mut Chat,
    _listener: StreamSocketListener,
    event: ListenerEvent,
) {
    if let ListenerEvent::ConnectionReceived(conn) = event {
        if conn.socket.set_handler(reactor, on_client).is_ok() {
            let hello = format!(
                "* {} joined ({} here)\n",
                conn.remote,
                chat.clients.len() + 1
            );
            print!("{hello}");
            chat.broadcast(reactor, conn.socket, hello.as_bytes());
            chat.clients.insert(conn.socket, conn.remote);
        }
    }
}

fn on_client(
    reactor: &mut Reactor<Chat>,
    chat: &mut Chat,
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(mut input) => {
            while let Some(end) = input.bytes().iter().position(|&b| b == b'\n') {
                let line = &input.bytes()[..=end.min(MAX_LINE)];
                let who = chat.clients.get(&socket).copied();
                if let Some(who) = who {
                    let mut message = format!("<{who}> ").into_bytes();
                    message.extend_from_slice(line);
                    if !message.ends_with(b"\n") {
                        message.push(b'\n');
                    }
                    chat.broadcast(reactor, socket, &message);
                }
                input.consume(end + 1);
            }
            if input.len() > MAX_LINE {
                input.consume_all(); // an endless line: drop it
            }
        }
        StreamEvent::ReadClosed => {
            let _ = socket.close(reactor);
        }
        StreamEvent::Closed(result) => {
            if let Some(who) = chat.clients.remove(&socket) {
                let bye = format!("* {who} left\n");
                print!("{bye}");
                if let Err(e) = result {
                    println!("  ({e})");
                }
                chat.broadcast(reactor, socket, bye.as_bytes());
            }
        }
        _ => {}
    }
}
