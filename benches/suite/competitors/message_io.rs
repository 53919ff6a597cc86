//! message-io 0.19: the documented blocking node, `node::split` then
//! `NodeListener::for_each`, listening on raw `Transport::Tcp` (not framed) and sending
//! every `NetEvent::Message` chunk back to its endpoint.
//!
//! Threads: `for_each` runs the network poll (mio 0.8, 50 ms timeout) and the callback on
//! the calling thread — the child's main thread, so `strace -c` counts the echo path —
//! plus one helper thread that only waits for signals, waking every 50 ms; before
//! `for_each`, `split` polls on a cache thread that `for_each` joins.
//!
//! TCP_NODELAY is not set: message-io 0.19 has no option for it (`TcpListenConfig` offers
//! only a bind device and keepalive) and does not expose the accepted socket. Ping-pong
//! does not hit Nagle's delay (the client's next message carries the ACK of the previous
//! echo), but pipelined traffic could.
//!
//! Per read event the adapter reads into a 64 KiB stack buffer until `WouldBlock`, so an
//! echo costs one read more than a loop that treats a short read as drained; `send`
//! spins on `WouldBlock` instead of waiting for writability. That extra read is a race
//! with the client: when the next message has already arrived it returns data and the
//! epoll_wait is skipped. `strace` slows the traced server alone, so under it the server
//! nearly always wins and B1 counts about 2 calls per round trip (recvfrom, sendto);
//! untraced (perf's syscall tracepoints) it makes about 3 to 4 (epoll_wait 0.6–1,
//! recvfrom 1.4–2, sendto 1).

use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use message_io::network::{NetEvent, Transport};
use message_io::node::{self, NodeEvent};

pub fn serve(ready: Sender<SocketAddr>) {
    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler
        .network()
        .listen(Transport::Tcp, "127.0.0.1:0")
        .expect("listen");
    ready.send(addr).expect("ready");
    listener.for_each(move |event| {
        if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
            handler.network().send(endpoint, data);
        }
    });
}
