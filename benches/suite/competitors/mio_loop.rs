//! Hand-written mio loops: what a reactor costs at the least.
//!
//! One loop, two ways of keeping the connections. `mio` (the floor) keeps them in a
//! `Vec<Option<Conn>>` indexed by the token, with a free list: the leanest correct
//! storage. `mio-map` keeps them in a `HashMap<usize, Conn>`, as a first hand-written
//! loop often does; the difference between the two is the price of a hashed lookup per
//! event.
//!
//! Both read into one shared 64 KiB buffer; a read shorter than the buffer is taken as
//! "drained" (edge-triggered epoll reports new data again), so an echo is epoll_wait +
//! recvfrom + sendto; a partial write keeps the rest in a per-connection buffer and waits
//! for writability.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// Where the loop keeps its connections, by token.
trait Conns: Default {
    /// Stores a connection; returns its token.
    fn insert(&mut self, conn: Conn) -> usize;
    fn get_mut(&mut self, key: usize) -> Option<&mut Conn>;
    fn remove(&mut self, key: usize) -> Option<Conn>;
}

/// The floor: a slot per token, and the free slots for reuse.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
}

impl Conns for Slots {
    fn insert(&mut self, conn: Conn) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(conn);
                key
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        }
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.slots.get_mut(key)?.as_mut()
    }

    fn remove(&mut self, key: usize) -> Option<Conn> {
        let conn = self.slots.get_mut(key)?.take()?;
        self.free.push(key);
        Some(conn)
    }
}

/// A map from a never-reused counter to the connection.
#[derive(Default)]
struct Map {
    conns: HashMap<usize, Conn>,
    next: usize,
}

impl Conns for Map {
    fn insert(&mut self, conn: Conn) -> usize {
        let key = self.next;
        self.next += 1;
        self.conns.insert(key, conn);
        key
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.conns.get_mut(&key)
    }

    fn remove(&mut self, key: usize) -> Option<Conn> {
        self.conns.remove(&key)
    }
}

/// `mio`: the floor.
pub fn serve(ready: Sender<SocketAddr>) {
    serve_with::<Slots>(ready)
}

/// `mio-map`: the same loop over a `HashMap`.
pub fn serve_map(ready: Sender<SocketAddr>) {
    serve_with::<Map>(ready)
}

fn serve_with<C: Conns>(ready: Sender<SocketAddr>) {
    let mut poll = Poll::new().expect("poll");
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register");
    ready.send(listener.local_addr().unwrap()).expect("ready");
    let mut events = Events::with_capacity(1024);
    let mut conns = C::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None).expect("poll");
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&poll, &listener, &mut conns);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut closed = false;
            if event.is_writable() && !conn.pending.is_empty() {
                match conn.stream.write(&conn.pending) {
                    Ok(n) => {
                        conn.pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
            }
            if event.is_readable() && !closed {
                closed = echo(conn, &mut buf);
            }
            if closed {
                if let Some(mut conn) = conns.remove(key) {
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
            }
        }
    }
}

fn accept<C: Conns>(poll: &Poll, listener: &TcpListener, conns: &mut C) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let key = conns.insert(Conn {
                    stream,
                    pending: Vec::new(),
                });
                let conn = conns.get_mut(key).expect("just inserted");
                poll.registry()
                    .register(
                        &mut conn.stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .expect("register");
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Reads until drained and echoes what it read; true if the connection is done.
fn echo(conn: &mut Conn, buf: &mut [u8]) -> bool {
    loop {
        match conn.stream.read(buf) {
            Ok(0) => return true,
            Ok(n) => {
                if conn.pending.is_empty() {
                    match conn.stream.write(&buf[..n]) {
                        Ok(w) => conn.pending.extend_from_slice(&buf[w..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            conn.pending.extend_from_slice(&buf[..n])
                        }
                        Err(_) => return true,
                    }
                } else {
                    conn.pending.extend_from_slice(&buf[..n]);
                }
                if n < buf.len() {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}
