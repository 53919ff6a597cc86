//! UDP echo, server and client in one process (the `DatagramSocket` sample): the
//! server, bound to every address, answers each datagram from the address it came to;
//! the client sends a few messages to 127.0.0.1, waits for each echo, and both close.
//! A timer ends the program if an answer never comes (UDP may lose datagrams).
//!
//! ```text
//! cargo run --example udp_echo
//! ```

use std::time::Duration;

use sockloop::{DatagramEvent, DatagramSocket, Reactor, TimerId};

const MESSAGES: [&str; 3] = ["hello", "", "goodbye"];

/// What the handlers share: passed to `run`, not captured.
#[derive(Default)]
struct Demo {
    server: Option<DatagramSocket>,
    client: Option<DatagramSocket>,
    guard: Option<TimerId>,
    /// How many echoes came back.
    next: usize,
}

fn main() -> Result<(), sockloop::Error> {
    env_logger::init();
    let mut reactor = Reactor::<Demo>::new()?;

    // The server: port 0, the system picks one; IPv6 and IPv4 wildcard.
    let server =
        DatagramSocket::bind_any(&mut reactor, 0, |reactor, _, socket, event| match event {
            DatagramEvent::MessageReceived(m) => {
                println!(
                    "server: {} bytes from {} to {}: {:?}",
                    m.data.len(),
                    m.remote,
                    m.local,
                    String::from_utf8_lossy(m.data)
                );
                // From the address the client sent to, whichever of ours that was.
                if let Err(e) = socket.send_to_from(reactor, m.remote, m.local.ip(), m.data) {
                    println!("server: cannot answer: {e}");
                }
            }
            DatagramEvent::Closed(result) => println!("server: closed ({result:?})"),
            other => println!("server: {other:?}"),
        })?;
    let port = server
        .information(&reactor)?
        .local_address
        .map_or(0, |a| a.port());
    println!("server: bound to port {port}");

    // The client: connected to the server, so it sends with `send` and hears of ICMP
    // errors.
    let client = DatagramSocket::connect(
        &mut reactor,
        "127.0.0.1",
        port,
        |reactor, demo: &mut Demo, socket, event| match event {
            DatagramEvent::MessageReceived(m) => {
                println!("client: echo {:?}", String::from_utf8_lossy(m.data));
                demo.next += 1;
                match MESSAGES.get(demo.next) {
                    Some(text) => socket.send(reactor, text.as_bytes()).unwrap(),
                    None => demo.finish(reactor),
                }
            }
            DatagramEvent::Closed(result) => println!("client: closed ({result:?})"),
            other => println!("client: {other:?}"),
        },
    )?;
    client.send(&mut reactor, MESSAGES[0].as_bytes())?;

    // A guard against a lost datagram: give up after 5 s.
    let guard = reactor.set_timer(Duration::from_secs(5), |reactor, demo, _| {
        println!("no answer in 5 s: giving up");
        demo.finish(reactor);
    });
    let mut demo = Demo {
        server: Some(server),
        client: Some(client),
        guard: Some(guard),
        next: 0,
    };
    // Returns once both sockets are closed and the guard is cancelled or fired.
    reactor.run(&mut demo)?;
    println!("done: {} of {} echoes", demo.next, MESSAGES.len());
    Ok(())
}

impl Demo {
    /// Closes both sockets and cancels the guard.
    fn finish(&mut self, reactor: &mut Reactor<Demo>) {
        for socket in [self.client.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let _ = socket.close(reactor);
        }
        if let Some(guard) = self.guard.take() {
            let _ = reactor.cancel_timer(guard);
        }
    }
}
