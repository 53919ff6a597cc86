//! Blocking std::net: one thread per connection (64 KiB stacks). The first connection
//! is served on the main thread, so that `strace -c` (main thread only) counts its
//! calls; an acceptor thread takes the others.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Sender;

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

pub fn serve(ready: Sender<SocketAddr>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    ready.send(listener.local_addr().unwrap()).expect("ready");
    let Ok((first, _)) = listener.accept() else {
        return;
    };
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || loop {
            if let Ok((stream, _)) = listener.accept() {
                let _ = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || echo(stream));
            }
        })
        .expect("acceptor");
    echo(first);
    // The first connection is gone: keep the process alive for the others until the
    // client ends it.
    loop {
        std::thread::park();
    }
}
