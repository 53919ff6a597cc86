//! Connecting the way the intent reads: host and service in any form, socket addresses,
//! and a chosen local endpoint (`EndpointPair`). Loopback only.

mod util;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use sockloop::{
    EndpointPair, HostName, ListenerEvent, Reactor, SocketErrorStatus, StreamEvent, StreamSocket,
    StreamSocketControl, StreamSocketListener,
};
use util::run_until;

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct St {
    /// The peer addresses the listener saw.
    accepted: Vec<SocketAddr>,
    /// The client's outcome: `Ok(local address)` once connected, or the close error.
    client: Option<Result<SocketAddr, SocketErrorStatus>>,
}

fn listen(r: &mut Reactor<St>, host: &str) -> SocketAddr {
    let listener = StreamSocketListener::bind(r, host, 0, |_, st: &mut St, _, event| {
        if let ListenerEvent::ConnectionReceived(conn) = event {
            st.accepted.push(conn.remote);
        }
    })
    .expect("bind");
    listener.local_address(r).expect("address")
}

fn client(r: &mut Reactor<St>, st: &mut St, socket: StreamSocket, event: StreamEvent<'_>) {
    match event {
        StreamEvent::Connected => {
            let info = socket.information(r).expect("information");
            st.client = Some(Ok(info.local_address.expect("local address")));
        }
        StreamEvent::Closed(Err(e)) => st.client = Some(Err(e.status())),
        _ => {}
    }
}

fn connected(st: &St) -> bool {
    matches!(st.client, Some(Err(_))) || (st.client.is_some() && !st.accepted.is_empty())
}

/// `connect(&mut r, "localhost", port, ...)`: a name and a `u16`, no control.
#[test]
fn connect_by_name_and_port_number() {
    let mut r = Reactor::<St>::new().unwrap();
    let addr = listen(&mut r, "127.0.0.1");
    StreamSocket::connect(&mut r, "localhost", addr.port(), client).unwrap();
    let mut st = St::default();
    run_until(&mut r, &mut st, LIMIT, connected);
    // "localhost" may resolve to ::1 first: nobody listens there, 127.0.0.1 wins.
    assert!(matches!(st.client, Some(Ok(_))), "{:?}", st.client);
    // And with the service as text, an owned String and an IpAddr host.
    let mut st = St::default();
    let port = addr.port().to_string();
    StreamSocket::connect(&mut r, addr.ip(), port, client).unwrap();
    run_until(&mut r, &mut st, LIMIT, connected);
    assert!(matches!(st.client, Some(Ok(_))), "{:?}", st.client);
}

/// A `SocketAddr` is a destination of its own.
#[test]
fn connect_to_a_socket_address() {
    let mut r = Reactor::<St>::new().unwrap();
    let addr = listen(&mut r, "127.0.0.1");
    StreamSocket::connect_to(&mut r, addr, client).unwrap();
    let mut st = St::default();
    run_until(&mut r, &mut st, LIMIT, connected);
    assert!(matches!(st.client, Some(Ok(_))), "{:?}", st.client);
}

/// Connecting from 127.0.0.2 and a chosen port: the listener sees exactly that peer.
#[test]
fn endpoint_pair_binds_the_local_endpoint() {
    let mut r = Reactor::<St>::new().unwrap();
    let addr = listen(&mut r, "127.0.0.1");
    // A port free on 127.0.0.2 right now.
    let local = TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let pair = EndpointPair::new("127.0.0.2", local.port(), "127.0.0.1", addr.port()).unwrap();
    StreamSocket::connect_to(&mut r, pair, client).unwrap();
    let mut st = St::default();
    run_until(&mut r, &mut st, LIMIT, connected);
    assert_eq!(st.client, Some(Ok(local)));
    assert_eq!(st.accepted, [local]);

    // Any port on a chosen address, and a local name resolved like the remote one.
    for (local_host, ip) in [("127.0.0.2", "127.0.0.2"), ("localhost", "")] {
        let mut st = St::default();
        let pair = EndpointPair::new(local_host, 0, "127.0.0.1", addr.port()).unwrap();
        let control = StreamSocketControl::new().connect_timeout(LIMIT);
        StreamSocket::connect_to_with(&mut r, &pair, &control, client).unwrap();
        run_until(&mut r, &mut st, LIMIT, connected);
        let Some(Ok(got)) = st.client else {
            panic!("{local_host}: {:?}", st.client)
        };
        assert_eq!(st.accepted, [got], "{local_host}");
        assert!(
            got.ip().is_loopback() && got.is_ipv4(),
            "{local_host}: {got}"
        );
        if !ip.is_empty() {
            assert_eq!(got.ip().to_string(), ip);
        }
    }
}

/// The local host chooses the family: an IPv4 local endpoint and a remote name with
/// IPv4 and IPv6 addresses connect over IPv4; with no family in common, a clear error.
#[test]
fn endpoint_pair_matches_the_address_family() {
    let mut r = Reactor::<St>::new().unwrap();
    let addr = listen(&mut r, "127.0.0.1");
    // "localhost" may resolve to ::1 and 127.0.0.1: only 127.0.0.1 is tried, at once.
    let pair = EndpointPair::new("127.0.0.1", 0, "localhost", addr.port()).unwrap();
    StreamSocket::connect_to(&mut r, pair, client).unwrap();
    let mut st = St::default();
    run_until(&mut r, &mut st, Duration::from_millis(200), connected);
    assert!(
        matches!(st.client, Some(Ok(a)) if a.is_ipv4()),
        "{:?}",
        st.client
    );
    // Any local address: the wildcard of the remote's family.
    let pair = EndpointPair::any_local(0, "127.0.0.1", addr.port()).unwrap();
    StreamSocket::connect_to(&mut r, pair, client).unwrap();
    let mut st = St::default();
    run_until(&mut r, &mut st, LIMIT, connected);
    assert!(
        matches!(st.client, Some(Ok(a)) if a.is_ipv4()),
        "{:?}",
        st.client
    );

    let mut st = St::default();
    let pair = EndpointPair::new("::1", 0, "127.0.0.1", addr.port()).unwrap();
    StreamSocket::connect_to(&mut r, pair, |_, st: &mut St, _, event| {
        if let StreamEvent::Closed(Err(e)) = event {
            let text = e.to_string();
            assert!(text.contains("no address family in common"), "{text}");
            st.client = Some(Err(e.status()));
        }
    })
    .unwrap();
    run_until(&mut r, &mut st, LIMIT, |st| st.client.is_some());
    assert_eq!(
        st.client,
        Some(Err(SocketErrorStatus::AddressFamilyNotSupported))
    );
    assert!(st.accepted.is_empty());
}

/// Wrong input fails at once, and says what to do.
#[test]
fn host_with_a_port_and_bad_names_fail_at_once() {
    let mut r = Reactor::<St>::new().unwrap();
    let err = StreamSocket::connect(&mut r, "localhost:8080", 8080, client).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
    assert!(
        err.to_string()
            .contains("put the port in the service argument"),
        "{err}"
    );
    let err = StreamSocketListener::bind(&mut r, "[::1]:80", 80, |_, _, _, _| {}).unwrap_err();
    assert!(err
        .to_string()
        .contains("put the port in the service argument"));
    let err = StreamSocket::connect(&mut r, "exa mple.com", 80, client).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
    let err = StreamSocket::connect(&mut r, "localhost", "no-such-service", client).unwrap_err();
    assert_eq!(err.operation(), "resolve service name");
    let none: [SocketAddr; 0] = [];
    let err = StreamSocket::connect_to(&mut r, none, client).unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
    // Nothing was registered.
    assert_eq!(r.stats().accepted, 0);
}

/// A stale handle's error names the kind of handle and the operation.
#[test]
fn stale_handle_errors_name_the_handle() {
    let mut r = Reactor::<St>::new().unwrap();
    let listener = StreamSocketListener::bind(&mut r, "127.0.0.1", 0, |_, _, _, _| {}).unwrap();
    let addr = listener.local_address(&r).unwrap();
    let socket = StreamSocket::connect_to(&mut r, addr, client).unwrap();
    socket.abort(&mut r).unwrap();
    listener.close(&mut r).unwrap();
    r.turn(&mut St::default(), Some(Duration::ZERO)).unwrap();
    let err = socket.write(&mut r, b"x").unwrap_err();
    assert_eq!(err.status(), SocketErrorStatus::InvalidHandle);
    assert!(
        err.to_string()
            .contains("stale StreamSocket handle in write"),
        "{err}"
    );
    let err = listener.local_address(&r).unwrap_err();
    assert!(
        err.to_string()
            .contains("stale StreamSocketListener handle in local address"),
        "{err}"
    );
}

#[test]
fn host_name_debug_shows_the_name() {
    let host = HostName::new("Example.COM.").unwrap();
    assert_eq!(format!("{host:?}"), r#"HostName("example.com")"#);
    let pair = EndpointPair::new("::1", 0, "example.com", "https").unwrap();
    assert_eq!(pair.to_string(), "[::1]:0 -> example.com:443");
}
