//! Multicast port sharing (the `MulticastOnly` sample): two receivers bind the same
//! port with `multicast_only`, both join a group on the loopback interface, and a
//! sender's datagrams to the group reach each of them. The program ends once both
//! have every datagram, or after 5 s.
//!
//! ```text
//! cargo run --example multicast
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use sockloop::{DatagramEvent, DatagramSocket, DatagramSocketControl, Reactor};

const GROUP: &str = "239.255.12.34";
const COUNT: usize = 3;

#[derive(Default)]
struct Demo {
    /// Datagrams each receiver got.
    got: [usize; 2],
    sockets: Vec<DatagramSocket>,
}

impl Demo {
    fn done(&self) -> bool {
        self.got == [COUNT; 2]
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    // The loopback interface, named by index: `lo` has no multicast route of its own.
    let lo: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")?
        .trim()
        .parse()?;
    let mut reactor = Reactor::<Demo>::new()?;
    let mut demo = Demo::default();

    let shared = DatagramSocketControl::new().multicast_only(true);
    let mut port = 0;
    for which in 0..2 {
        let receiver = DatagramSocket::bind_with(
            &mut reactor,
            "0.0.0.0",
            port,
            &shared,
            move |_, demo: &mut Demo, _, event| {
                if let DatagramEvent::MessageReceived(m) = event {
                    println!(
                        "receiver {which}: {:?} from {} to {}",
                        String::from_utf8_lossy(m.data),
                        m.remote,
                        m.local
                    );
                    demo.got[which] += 1;
                }
            },
        )?;
        receiver.join_multicast_group_on(&mut reactor, GROUP, lo)?;
        port = receiver
            .information(&reactor)?
            .local_address
            .map_or(0, |a| a.port());
        println!("receiver {which}: port {port}, joined {GROUP} on lo");
        demo.sockets.push(receiver);
    }

    let sending = DatagramSocketControl::new()
        .multicast_interface(Some(lo))
        .multicast_hop_limit(Some(1));
    let sender =
        DatagramSocket::bind_with(&mut reactor, "127.0.0.1", 0, &sending, |_, _, _, _| {})?;
    demo.sockets.push(sender);
    let group: SocketAddr = format!("{GROUP}:{port}").parse()?;
    for i in 0..COUNT {
        sender.send_to(&mut reactor, group, format!("datagram {i}").as_bytes())?;
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !demo.done() && std::time::Instant::now() < deadline {
        reactor.turn(&mut demo, Some(Duration::from_millis(50)))?;
    }
    for socket in demo.sockets.drain(..) {
        socket.close(&mut reactor)?;
    }
    reactor.run(&mut demo)?; // delivers the `Closed` events
    println!("receivers got {:?} of {COUNT} each", demo.got);
    if demo.got != [COUNT; 2] {
        return Err("not every receiver got every datagram".into());
    }
    Ok(())
}
