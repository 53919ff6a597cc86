//! The B3 servers. Each binds 127.0.0.1:0, sends its address on `ready`, sets
//! TCP_NODELAY on the connection it accepts, and answers every byte it reads (a tick)
//! with the 16 messages of [`MESSAGES`], each written on its own or all in one vectored
//! write. They serve on the calling thread until the child process exits.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use sockloop::{
    ListenerEvent, Reactor, StreamEvent, StreamSocket, StreamSocketControl, StreamSocketListener,
    StreamSocketListenerControl,
};

/// Messages per tick.
pub const PER_TICK: usize = 16;
/// Bytes per message.
pub const SIZE: usize = 64;
/// Bytes per tick.
pub const TICK_BYTES: usize = PER_TICK * SIZE;

/// The 16 distinct 64-byte messages of a tick, in order: byte `j` of message `i` is
/// `i * 64 + j` scrambled, so that a missing, doubled or reordered message shows.
pub static MESSAGES: [[u8; SIZE]; PER_TICK] = messages();

const fn messages() -> [[u8; SIZE]; PER_TICK] {
    let mut out = [[0u8; SIZE]; PER_TICK];
    let mut i = 0;
    while i < PER_TICK {
        let mut j = 0;
        while j < SIZE {
            out[i][j] = ((i * SIZE + j) * 37 + i) as u8;
            j += 1;
        }
        i += 1;
    }
    out
}

/// The messages from byte `offset` of the tick on, as slices for a vectored write;
/// returns how many of `out` it filled.
fn slices_from(offset: usize, out: &mut [IoSlice<'static>; PER_TICK]) -> usize {
    let mut n = 0;
    for (i, m) in MESSAGES.iter().enumerate() {
        let start = i * SIZE;
        if offset < start + SIZE {
            out[n] = IoSlice::new(&m[offset.saturating_sub(start)..]);
            n += 1;
        }
    }
    n
}

/// Appends the bytes of the tick from `offset` on to `pending`.
fn queue_from(offset: usize, pending: &mut Vec<u8>) {
    let mut slices = [IoSlice::new(&[]); PER_TICK];
    let n = slices_from(offset, &mut slices);
    for s in &slices[..n] {
        pending.extend_from_slice(s);
    }
}

// sockloop ---------------------------------------------------------------------------

fn sockloop_handler(
    reactor: &mut Reactor<()>,
    _: &mut (),
    socket: StreamSocket,
    event: StreamEvent<'_>,
) {
    match event {
        StreamEvent::Received(mut input) => {
            for _ in 0..input.len() {
                for m in &MESSAGES {
                    if socket.write(reactor, m).is_err() {
                        // Never with 1 KiB a tick; the client fails on the close.
                        let _ = socket.abort(reactor);
                        return;
                    }
                }
            }
            input.consume_all();
        }
        StreamEvent::ReadClosed => {
            let _ = socket.close(reactor);
        }
        _ => {}
    }
}

/// sockloop: 16 × `socket.write` in the `Received` handler, sent in one `writev`.
pub fn sockloop(ready: Sender<SocketAddr>) {
    let mut reactor = Reactor::<()>::new().expect("reactor");
    let control =
        StreamSocketListenerControl::new().accepted(StreamSocketControl::new().no_delay(true));
    let listener = StreamSocketListener::bind_with(
        &mut reactor,
        "127.0.0.1",
        "0",
        &control,
        |reactor, _, _, event| {
            if let ListenerEvent::ConnectionReceived(conn) = event {
                let _ = conn.socket.set_handler(reactor, sockloop_handler);
            }
        },
    )
    .expect("bind");
    let addr = listener.local_address(&reactor).expect("address");
    ready.send(addr).expect("ready");
    reactor.run(&mut ()).expect("run");
}

// mio --------------------------------------------------------------------------------

mod mio_loop {
    use super::*;
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};

    const LISTENER: Token = Token(usize::MAX);

    struct Conn {
        stream: TcpStream,
        /// What a short write left over, sent when the socket is writable again.
        pending: Vec<u8>,
    }

    /// Answers one tick; `Err` if the connection failed.
    fn answer(conn: &mut Conn, vectored: bool) -> std::io::Result<()> {
        if !conn.pending.is_empty() {
            queue_from(0, &mut conn.pending);
            return Ok(());
        }
        let written = if vectored {
            let mut slices = [IoSlice::new(&[]); PER_TICK];
            slices_from(0, &mut slices);
            match conn.stream.write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            }
        } else {
            let mut written = 0;
            for m in &MESSAGES {
                match conn.stream.write(m) {
                    Ok(n) => {
                        written += n;
                        if n < SIZE {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            written
        };
        if written < TICK_BYTES {
            queue_from(written, &mut conn.pending);
        }
        Ok(())
    }

    /// Reads ticks until the socket is drained (a short read counts as drained) and
    /// answers each; `Err` (or `Ok(false)` at end of file) if the connection is done.
    fn serve_readable(conn: &mut Conn, buf: &mut [u8], vectored: bool) -> std::io::Result<bool> {
        loop {
            match conn.stream.read(buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    for _ in 0..n {
                        answer(conn, vectored)?;
                    }
                    if n < buf.len() {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush_pending(conn: &mut Conn) -> std::io::Result<()> {
        if !conn.pending.is_empty() {
            match conn.stream.write(&conn.pending) {
                Ok(n) => {
                    conn.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn serve(ready: Sender<SocketAddr>, vectored: bool) {
        let mut poll = Poll::new().expect("poll");
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .expect("register");
        ready.send(listener.local_addr().unwrap()).expect("ready");
        let mut events = Events::with_capacity(1024);
        // Indexed by token; a closed connection leaves `None`.
        let mut conns: Vec<Option<Conn>> = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            poll.poll(&mut events, None).expect("poll");
            for event in events.iter() {
                if event.token() == LISTENER {
                    while let Ok((mut stream, _)) = listener.accept() {
                        let _ = stream.set_nodelay(true);
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        poll.registry()
                            .register(&mut stream, Token(conns.len()), interest)
                            .expect("register");
                        let pending = Vec::new();
                        conns.push(Some(Conn { stream, pending }));
                    }
                    continue;
                }
                let slot = &mut conns[event.token().0];
                let Some(conn) = slot else { continue };
                let mut open = !event.is_writable() || flush_pending(conn).is_ok();
                if open && event.is_readable() {
                    open = serve_readable(conn, &mut buf, vectored).unwrap_or(false);
                }
                if !open {
                    let _ = poll.registry().deregister(&mut conn.stream);
                    *slot = None;
                }
            }
        }
    }
}

/// A hand-written mio loop, one `write` per 64-byte message.
pub fn mio_write(ready: Sender<SocketAddr>) {
    mio_loop::serve(ready, false);
}

/// A hand-written mio loop, one `write_vectored` of the 16 messages: the floor.
pub fn mio_writev(ready: Sender<SocketAddr>) {
    mio_loop::serve(ready, true);
}

// tokio ------------------------------------------------------------------------------

/// Answers every byte read with one tick (vectored or not), on a current_thread
/// runtime, one task per connection.
fn tokio_serve(ready: Sender<SocketAddr>, vectored: bool) {
    use tokio::io::AsyncReadExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        ready.send(listener.local_addr().unwrap()).expect("ready");
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    for _ in 0..n {
                        let answered = if vectored {
                            tokio_answer_vectored(&mut stream).await
                        } else {
                            tokio_answer_write_all(&mut stream).await
                        };
                        if answered.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
}

async fn tokio_answer_write_all(stream: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    for m in &MESSAGES {
        stream.write_all(m).await?;
    }
    Ok(())
}

async fn tokio_answer_vectored(stream: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut slices = [IoSlice::new(&[]); PER_TICK];
    let mut offset = 0;
    while offset < TICK_BYTES {
        let n = slices_from(offset, &mut slices);
        match stream.write_vectored(&slices[..n]).await? {
            0 => return Err(ErrorKind::WriteZero.into()),
            w => offset += w,
        }
    }
    Ok(())
}

/// tokio current_thread: 16 × `write_all`.
pub fn tokio_write_all(ready: Sender<SocketAddr>) {
    tokio_serve(ready, false);
}

/// tokio current_thread: one `write_vectored` of 16 slices, looping on short writes.
pub fn tokio_write_vectored(ready: Sender<SocketAddr>) {
    tokio_serve(ready, true);
}

// std --------------------------------------------------------------------------------

/// Blocking std::net: accepts one connection and serves it on this thread (so that
/// `strace -c` counts it), answering each byte read with `answer`.
fn std_serve(
    ready: Sender<SocketAddr>,
    answer: fn(&mut std::net::TcpStream) -> std::io::Result<()>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    ready.send(listener.local_addr().unwrap()).expect("ready");
    if let Ok((mut stream, _)) = listener.accept() {
        let _ = stream.set_nodelay(true);
        let mut buf = [0u8; 4096];
        'serve: while let Ok(n @ 1..) = stream.read(&mut buf) {
            for _ in 0..n {
                if answer(&mut stream).is_err() {
                    break 'serve;
                }
            }
        }
    }
    // Keep the process alive until the parent ends it.
    loop {
        std::thread::park();
    }
}

/// Blocking std: 16 × `write_all`.
pub fn std_write(ready: Sender<SocketAddr>) {
    std_serve(ready, |stream| {
        for m in &MESSAGES {
            stream.write_all(m)?;
        }
        Ok(())
    });
}

/// Blocking std: `write_vectored` of the 16 messages, looping on short writes.
pub fn std_writev(ready: Sender<SocketAddr>) {
    std_serve(ready, |stream| {
        let mut slices = [IoSlice::new(&[]); PER_TICK];
        let mut offset = 0;
        while offset < TICK_BYTES {
            let n = slices_from(offset, &mut slices);
            match stream.write_vectored(&slices[..n]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(w) => offset += w,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
}

// message-io --------------------------------------------------------------------------

/// message-io: 16 × `network().send` per tick (its only way to send; TCP_NODELAY cannot
/// be set, see `competitors/message_io.rs`).
pub fn message_io(ready: Sender<SocketAddr>) {
    use message_io::network::{NetEvent, Transport};
    use message_io::node::{self, NodeEvent};

    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler
        .network()
        .listen(Transport::Tcp, "127.0.0.1:0")
        .expect("listen");
    ready.send(addr).expect("ready");
    listener.for_each(move |event| {
        if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
            for _ in 0..data.len() {
                for m in &MESSAGES {
                    handler.network().send(endpoint, m);
                }
            }
        }
    });
}
