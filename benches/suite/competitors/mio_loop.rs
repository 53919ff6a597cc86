//! A hand-written mio loop: what a reactor costs at the least. One shared 64 KiB read
//! buffer; a read shorter than the buffer is taken as "drained" (edge-triggered epoll
//! reports new data again), so an echo is epoll_wait + recvfrom + sendto; a partial
//! write keeps the rest in a per-connection buffer and waits for writability.

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

pub fn serve(ready: Sender<SocketAddr>) {
    let mut poll = Poll::new().expect("poll");
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register");
    ready.send(listener.local_addr().unwrap()).expect("ready");
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None).expect("poll");
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            poll.registry()
                                .register(
                                    &mut stream,
                                    Token(next),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .expect("register");
                            conns.insert(
                                next,
                                Conn {
                                    stream,
                                    pending: Vec::new(),
                                },
                            );
                            next += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(&key) else {
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
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => {
                            if conn.pending.is_empty() {
                                match conn.stream.write(&buf[..n]) {
                                    Ok(w) => conn.pending.extend_from_slice(&buf[w..n]),
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                        conn.pending.extend_from_slice(&buf[..n])
                                    }
                                    Err(_) => {
                                        closed = true;
                                        break;
                                    }
                                }
                            } else {
                                conn.pending.extend_from_slice(&buf[..n]);
                            }
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            if closed {
                if let Some(mut conn) = conns.remove(&key) {
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
            }
        }
    }
}
