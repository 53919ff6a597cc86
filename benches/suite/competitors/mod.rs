//! The servers under test. Each one is an echo server that binds 127.0.0.1:0, sends its
//! address on `ready`, and serves on the calling thread (the child's main thread, so that
//! `strace -c` without `-f` counts the server alone) until the child process exits.
//!
//! Adding a competitor is one module here and one line in [`ALL`].

use std::net::SocketAddr;
use std::sync::mpsc::Sender;

mod message_io;
mod mio_loop;
mod sockloop;
mod std_block;
pub mod tls;
mod tokio_rt;
pub mod udp;

/// One competitor: its flag name and its server.
pub struct Competitor {
    pub name: &'static str,
    pub describe: &'static str,
    pub serve: fn(ready: Sender<SocketAddr>),
}

pub const ALL: &[Competitor] = &[
    Competitor {
        name: "sockloop",
        describe: "sockloop Reactor, one handler per connection",
        serve: sockloop::serve,
    },
    Competitor {
        name: "mio",
        describe: "hand-written mio 1.0 loop, connections in a Vec of slots, one shared read \
                   buffer (the floor for a reactor)",
        serve: mio_loop::serve,
    },
    Competitor {
        name: "mio-map",
        describe: "the same mio loop with its connections in a HashMap",
        serve: mio_loop::serve_map,
    },
    Competitor {
        name: "tokio",
        describe: "tokio current_thread runtime, one task per connection, 4 KiB buffer per task",
        serve: tokio_rt::serve,
    },
    Competitor {
        name: "std",
        describe:
            "blocking std::net, one thread per connection (the first served on the main thread)",
        serve: std_block::serve,
    },
    Competitor {
        name: "message-io",
        describe: "message-io 0.19 node, raw Tcp transport, for_each callback echoes each chunk",
        serve: message_io::serve,
    },
];

pub fn find(name: &str) -> Option<&'static Competitor> {
    ALL.iter().find(|c| c.name == name)
}
