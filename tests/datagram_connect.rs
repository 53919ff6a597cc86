//! `DatagramSocket::connect_to`: connecting from a chosen local endpoint
//! (`EndpointPair`), to a list of addresses, and with names — remote and local —
//! resolved off the loop (through the test-only lookup seam, so that the names mean
//! the same on every machine).

mod util;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use sockloop::{
    DatagramEvent, DatagramSocket, EndpointPair, Error, HostName, Reactor, SocketErrorStatus,
};
use util::run_until;

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Seen {
    /// (remote, local, payload) of each message.
    messages: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    closed: Option<Result<(), Error>>,
}

fn record(_: &mut Reactor<Seen>, seen: &mut Seen, _: DatagramSocket, event: DatagramEvent<'_>) {
    match event {
        DatagramEvent::MessageReceived(m) => {
            seen.messages.push((m.remote, m.local, m.data.to_vec()))
        }
        DatagramEvent::Closed(result) => seen.closed = Some(result),
        _ => {}
    }
}

/// A plain UDP server on `ip` that answers each datagram with its own bytes.
fn echo_server(ip: &str) -> (UdpSocket, SocketAddr) {
    let server = UdpSocket::bind((ip, 0)).unwrap();
    server.set_read_timeout(Some(LIMIT)).unwrap();
    let addr = server.local_addr().unwrap();
    (server, addr)
}

/// The server receives one datagram, checks where it came from, and echoes it.
fn echo_one(server: &UdpSocket, from_ip: IpAddr) -> SocketAddr {
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(
        from.ip(),
        from_ip,
        "the datagram came from the local endpoint asked for"
    );
    server.send_to(&buf[..n], from).unwrap();
    from
}

#[test]
fn an_endpoint_pair_of_addresses_binds_the_local_one_and_connects() {
    let (server, addr) = echo_server("127.0.0.1");
    let mut r = Reactor::<Seen>::new().unwrap();
    let pair = EndpointPair::new("127.0.0.2", 0, "127.0.0.1", addr.port()).unwrap();
    let socket = DatagramSocket::connect_to(&mut r, pair, record).unwrap();
    let info = socket.information(&r).unwrap();
    assert_eq!(
        info.local_address.unwrap().ip(),
        Ipv4Addr::new(127, 0, 0, 2)
    );
    assert_eq!(info.remote_address, Some(addr));
    socket.send(&mut r, b"ping").unwrap();
    let mut seen = Seen::default();
    // The send leaves when the reactor turns; the server answers from its thread.
    let echo = std::thread::spawn(move || echo_one(&server, Ipv4Addr::new(127, 0, 0, 2).into()));
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    let from = echo.join().unwrap();
    assert_eq!(seen.messages, vec![(addr, from, b"ping".to_vec())]);
}

#[test]
fn a_fixed_local_port_is_the_one_bound() {
    let (_server, addr) = echo_server("127.0.0.1");
    // A port free right now, taken from a socket closed at once.
    let port = UdpSocket::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut r = Reactor::<Seen>::new().unwrap();
    let pair = EndpointPair::from_addresses(SocketAddr::from(([127, 0, 0, 2], port)), addr);
    let socket = DatagramSocket::connect_to(&mut r, pair, record).unwrap();
    let local = socket.information(&r).unwrap().local_address.unwrap();
    assert_eq!(local, SocketAddr::from(([127, 0, 0, 2], port)));
    // The port is taken now: a second socket asking for it is refused at once.
    let pair = EndpointPair::from_addresses(local, addr);
    let err = DatagramSocket::connect_to(&mut r, pair, record).unwrap_err();
    assert_eq!(
        err.status(),
        SocketErrorStatus::AddressAlreadyInUse,
        "{err}"
    );
}

#[test]
fn a_local_host_without_the_remote_family_is_refused() {
    let mut r = Reactor::<Seen>::new().unwrap();
    let pair = EndpointPair::new("127.0.0.2", 0, "::1", 9).unwrap();
    let err = DatagramSocket::connect_to(&mut r, pair, record).unwrap_err();
    assert_eq!(
        err.status(),
        SocketErrorStatus::AddressFamilyNotSupported,
        "{err}"
    );
    let err = DatagramSocket::connect_to(&mut r, Vec::<SocketAddr>::new(), record).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidArgument, "{err}");
}

#[test]
fn a_list_of_addresses_connects_to_the_first() {
    let (server, addr) = echo_server("127.0.0.1");
    let mut r = Reactor::<Seen>::new().unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let socket = DatagramSocket::connect_to(&mut r, vec![addr, v6], record).unwrap();
    assert_eq!(socket.information(&r).unwrap().remote_address, Some(addr));
    socket.send(&mut r, b"first").unwrap();
    let echo = std::thread::spawn(move || echo_one(&server, Ipv4Addr::LOCALHOST.into()));
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    echo.join().unwrap();
    assert_eq!(seen.messages[0].2, b"first");
}

#[test]
fn addresses_of_a_family_the_local_host_lacks_are_skipped() {
    let (server, addr) = echo_server("127.0.0.1");
    let mut r = Reactor::<Seen>::new().unwrap();
    install_names(&mut r);
    // `both.test` gives ::1 first; from 127.0.0.2 only its IPv4 address is reachable.
    let pair = EndpointPair::new("127.0.0.2", 0, "both.test", addr.port()).unwrap();
    let socket = DatagramSocket::connect_to(&mut r, pair, record).unwrap();
    socket.send(&mut r, b"over IPv4").unwrap();
    let echo = std::thread::spawn(move || echo_one(&server, Ipv4Addr::new(127, 0, 0, 2).into()));
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    echo.join().unwrap();
    assert_eq!(seen.messages[0].2, b"over IPv4");
    assert_eq!(socket.information(&r).unwrap().remote_address, Some(addr));
}

/// Names of this test only: `peer.test` is 127.0.0.1, `me.test` 127.0.0.2,
/// `both.test` ::1 and 127.0.0.1, and `nowhere.test` does not resolve.
fn install_names(r: &mut Reactor<Seen>) {
    r.set_name_lookup(|host: &HostName, port| match host.canonical_name() {
        "peer.test" => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
        "me.test" => Ok(vec![SocketAddr::from(([127, 0, 0, 2], port))]),
        "both.test" => Ok(vec![
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), port),
            SocketAddr::from(([127, 0, 0, 1], port)),
        ]),
        name => Err(
            Error::new(SocketErrorStatus::HostNotFound, "resolve host name")
                .with_detail(format!("{name} is not a name of this test")),
        ),
    });
}

#[test]
fn names_on_both_sides_are_resolved_off_the_loop_and_sends_wait_for_them() {
    let (server, addr) = echo_server("127.0.0.1");
    let mut r = Reactor::<Seen>::new().unwrap();
    install_names(&mut r);
    let pair = EndpointPair::new("me.test", 0, "peer.test", addr.port()).unwrap();
    let socket = DatagramSocket::connect_to(&mut r, pair, record).unwrap();
    // Queued while the names resolve; it leaves once the socket is connected.
    socket.send(&mut r, b"early").unwrap();
    let echo = std::thread::spawn(move || echo_one(&server, Ipv4Addr::new(127, 0, 0, 2).into()));
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| !s.messages.is_empty());
    echo.join().unwrap();
    assert_eq!(seen.messages[0].2, b"early");
    let info = socket.information(&r).unwrap();
    assert_eq!(
        info.local_address.unwrap().ip(),
        Ipv4Addr::new(127, 0, 0, 2)
    );
    assert_eq!(info.remote_address, Some(addr));
}

#[test]
fn a_local_name_that_does_not_resolve_closes_the_socket_with_its_error() {
    let mut r = Reactor::<Seen>::new().unwrap();
    install_names(&mut r);
    let pair = EndpointPair::new("nowhere.test", 0, "127.0.0.1", 9).unwrap();
    let socket = DatagramSocket::connect_to(&mut r, pair, record).unwrap();
    socket.send(&mut r, b"lost with the socket").unwrap();
    let mut seen = Seen::default();
    run_until(&mut r, &mut seen, LIMIT, |s| s.closed.is_some());
    let err = seen.closed.take().unwrap().unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::HostNotFound, "{err}");
    assert!(seen.messages.is_empty());
}
