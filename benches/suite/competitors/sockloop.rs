//! sockloop: the echo handler of examples/pingpong.rs.

use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use sockloop::{ListenerEvent, Reactor, StreamEvent, StreamSocket, StreamSocketListener};

fn echo(reactor: &mut Reactor<()>, _: &mut (), socket: StreamSocket, event: StreamEvent<'_>) {
    match event {
        StreamEvent::Received(mut input) if socket.write(reactor, input.bytes()).is_ok() => {
            input.consume_all();
        }
        StreamEvent::ReadClosed => {
            let _ = socket.close(reactor);
        }
        _ => {}
    }
}

pub fn serve(ready: Sender<SocketAddr>) {
    let mut reactor = Reactor::<()>::new().expect("reactor");
    let listener =
        StreamSocketListener::bind(&mut reactor, "127.0.0.1", "0", |reactor, _, _, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                let _ = conn.socket.set_handler(reactor, echo);
            }
        })
        .expect("bind");
    let addr = listener.local_address(&reactor).expect("address");
    ready.send(addr).expect("ready");
    reactor.run(&mut ()).expect("run");
}
