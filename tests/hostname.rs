//! HostName and service names through the public API.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sockloop::{resolve_service, HostName, HostNameType, SocketErrorStatus};

/// Valid host names: `input => kind, canonical, display`.
macro_rules! valid {
    ($($input:expr => $kind:ident, $canonical:expr, $display:expr;)*) => {$(
        let host = HostName::new($input)
            .unwrap_or_else(|e| panic!("{:?} should parse: {e}", $input));
        assert_eq!(host.kind(), HostNameType::$kind, "kind of {:?}", $input);
        assert_eq!(host.raw_name(), $input);
        assert_eq!(host.canonical_name(), $canonical, "canonical of {:?}", $input);
        assert_eq!(host.display_name(), $display, "display of {:?}", $input);
        assert_eq!(host.to_string(), $display);
    )*};
}

/// Invalid input: `input => status, fragment of the detail`.
macro_rules! invalid {
    ($($input:expr => $status:ident, $fragment:expr;)*) => {$(
        let err = HostName::new(&$input).expect_err(&format!("{:?} should fail", $input));
        assert_eq!(err.status(), SocketErrorStatus::$status, "status for {:?}: {err}", $input);
        assert_eq!(err.operation(), "parse host name");
        let detail = err.detail().unwrap_or_default();
        assert!(detail.contains($fragment), "detail for {:?} lacks {:?}: {detail}", $input, $fragment);
    )*};
}

#[test]
fn ipv4_literals() {
    valid! {
        "127.0.0.1" => Ipv4, "127.0.0.1", "127.0.0.1";
        "0.0.0.0" => Ipv4, "0.0.0.0", "0.0.0.0";
        "255.255.255.255" => Ipv4, "255.255.255.255", "255.255.255.255";
        "192.0.2.10" => Ipv4, "192.0.2.10", "192.0.2.10";
    }
}

#[test]
fn ipv4_lookalikes_are_errors_not_domain_names() {
    invalid! {
        "1.2.3" => InvalidArgument, "3 parts";
        "127.1" => InvalidArgument, "2 parts";
        "1.2.3.4.5" => InvalidArgument, "5 parts";
        "01.2.3.4" => InvalidArgument, "leading zero";
        "010.0.0.1" => InvalidArgument, "octal";
        "256.0.0.1" => InvalidArgument, "octet 1 '256' is over 255";
        "0x7f.1" => InvalidArgument, "2 parts";
        "0x7f.0.0.1" => InvalidArgument, "'0x7f' is not decimal";
        "0x7f000001" => InvalidArgument, "shorthands";
        "2130706433" => InvalidArgument, "1 part,";
        "1.2.3.4." => InvalidArgument, "ends with a dot";
        "1..2.3" => InvalidArgument, "octet 2 is empty";
        "example.123" => InvalidArgument, "last label is a number";
        "example.0x1F" => InvalidArgument, "last label is a number";
        "a.b.0x" => InvalidArgument, "last label is a number";
        "1.2.3.4%eth0" => InvalidArgument, "only allowed on an IPv6 address";
    }
}

#[test]
fn ipv6_literals() {
    valid! {
        "::" => Ipv6, "::", "::";
        "::1" => Ipv6, "::1", "::1";
        "[::1]" => Ipv6, "::1", "::1";
        "2001:DB8:0:0:1:0:0:1" => Ipv6, "2001:db8::1:0:0:1", "2001:db8::1:0:0:1";
        "[2001:db8:0000::0001]" => Ipv6, "2001:db8::1", "2001:db8::1";
        "::ffff:1.2.3.4" => Ipv6, "::ffff:1.2.3.4", "::ffff:1.2.3.4";
        "fe80::1%3" => Ipv6, "fe80::1%3", "fe80::1%3";
        "[fe80::0:1%42]" => Ipv6, "fe80::1%42", "fe80::1%42";
        "fe80::1%007" => Ipv6, "fe80::1%7", "fe80::1%7";
        "fe80::1%lo" => Ipv6, "fe80::1%lo", "fe80::1%lo";
        "[fe80::1%lo]" => Ipv6, "fe80::1%lo", "fe80::1%lo";
    }
    assert_eq!(HostName::new("fe80::1%3").unwrap().scope_id(), Some(3));
    let lo_index: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let host = HostName::new("[fe80::1%lo]").unwrap();
    assert_eq!(host.scope_id(), Some(lo_index));
    let Some(SocketAddr::V6(addr)) = host.socket_addr(80) else {
        panic!("no socket address");
    };
    assert_eq!(addr.scope_id(), lo_index);
    assert_eq!(HostName::new("::1").unwrap().scope_id(), None);
}

#[test]
fn ipv6_errors() {
    invalid! {
        "[::1" => InvalidArgument, "'[' without ']'";
        "::1]" => InvalidArgument, "']' without '['";
        "[]" => InvalidArgument, "not a valid IPv6 address";
        "[1.2.3.4]" => InvalidArgument, "not a valid IPv6 address";
        "1:2:3:4:5:6:7:8:9" => InvalidArgument, "not a valid IPv6 address";
        "::ffff:01.2.3.4" => InvalidArgument, "not a valid IPv6 address";
        "2001:db8::g" => InvalidArgument, "not a valid IPv6 address";
        "fe80::1%" => InvalidArgument, "zone id after '%' is empty";
        "fe80::1%99999999999" => InvalidArgument, "is over 4294967295";
        "fe80::1%nosuchif0" => InvalidArgument, "no network interface";
        "fe80::1%../../x" => InvalidArgument, "not a number nor an interface name";
        "[fe80::1%25lo]" => InvalidArgument, "'%25' zone separator is not decoded";
        "[::1]:80" => InvalidArgument, "put the port in the service argument";
        "example.com:80" => InvalidArgument, "put the port in the service argument";
    }
}

#[test]
fn domain_names() {
    valid! {
        "localhost" => DomainName, "localhost", "localhost";
        "example.com" => DomainName, "example.com", "example.com";
        "WWW.Example.COM." => DomainName, "www.example.com", "www.example.com";
        "a-b.c1.example" => DomainName, "a-b.c1.example", "a-b.c1.example";
        "123.example.com" => DomainName, "123.example.com", "123.example.com";
        "r3---sn-abc.example" => DomainName, "r3---sn-abc.example", "r3---sn-abc.example";
        "_sip._tcp.example.com" => DomainName, "_sip._tcp.example.com", "_sip._tcp.example.com";
        "x" => DomainName, "x", "x";
    }
}

#[test]
fn internationalized_names() {
    valid! {
        "bücher.example" => DomainName, "xn--bcher-kva.example", "bücher.example";
        "BÜCHER.example." => DomainName, "xn--bcher-kva.example", "bücher.example";
        "xn--bcher-kva.example" => DomainName, "xn--bcher-kva.example", "bücher.example";
        "XN--BCHER-KVA.EXAMPLE" => DomainName, "xn--bcher-kva.example", "bücher.example";
        "例え.テスト" => DomainName, "xn--r8jz45g.xn--zckzah", "例え.テスト";
        "faß.de" => DomainName, "xn--fa-hia.de", "faß.de";
        // Full-width dots are label separators after IDNA mapping.
        "bücher。example" => DomainName, "xn--bcher-kva.example", "bücher.example";
    }
    // Two spellings of one name are one host name.
    assert_eq!(
        HostName::new("Bücher.Example").unwrap(),
        HostName::new("xn--bcher-kva.example.").unwrap()
    );
}

#[test]
fn invalid_domain_names() {
    let label64 = format!("{}.example", "a".repeat(64));
    let name254 = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62),
    ]
    .join(".");
    let long_unicode = format!("{}.example", "ü".repeat(60));
    invalid! {
        "" => InvalidArgument, "empty";
        " " => InvalidArgument, "space";
        "exa mple.com" => InvalidArgument, "a space (at byte 3)";
        "example.com\n" => InvalidArgument, "U+000A";
        "a\u{7f}b" => InvalidArgument, "U+007F";
        "a\u{a0}b" => InvalidArgument, "U+00A0";
        "." => InvalidArgument, "DNS root";
        ".example.com" => InvalidArgument, "starts with a dot";
        "example..com" => InvalidArgument, "empty label";
        "example.com.." => InvalidArgument, "empty label";
        "-example.com" => InvalidArgument, "label '-example' starts or ends with a hyphen";
        "example-.com" => InvalidArgument, "starts or ends with a hyphen";
        "exa*mple.com" => InvalidArgument, "character '*'";
        "exa/mple.com" => InvalidArgument, "character '/'";
        "user@example.com" => InvalidArgument, "character '@'";
        label64 => InvalidArgument, "is 64 bytes long; at most 63";
        name254 => InvalidArgument, "254 bytes long in ASCII form; at most 253";
        long_unicode => InvalidArgument, "bytes long; at most 63";
        "xn--zz.example" => InvalidArgument, "label 'xn--zz' is not valid punycode";
        "xn--a.example" => InvalidArgument, "not valid punycode";
        "a\u{200d}b.example" => InvalidArgument, "IDNA";
        "１２７.０.０.１" => InvalidArgument, "maps to '127.0.0.1', which would be read as an IPv4";
        "a.１２３" => InvalidArgument, "would be read as an IPv4 address";
        "a".repeat(2000) => InvalidArgument, "2000 bytes long";
    }
    // A name of exactly 253 bytes and labels of exactly 63 are fine.
    let name253 = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(HostName::new(&name253).unwrap().canonical_name().len(), 253);
    assert!(HostName::new(&format!("{name253}.")).is_ok());
}

#[test]
fn conversions_and_accessors() {
    let v4 = HostName::from(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(v4.kind(), HostNameType::Ipv4);
    assert_eq!(v4, HostName::new("192.0.2.1").unwrap());
    assert_eq!(v4.ip(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    let v6 = HostName::from(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(v6.canonical_name(), "::1");
    assert_eq!(v6, HostName::from(Ipv6Addr::LOCALHOST));
    let scoped: SocketAddr = "[fe80::1%7]:443".parse().unwrap();
    let host = HostName::from(scoped);
    assert_eq!(
        (host.canonical_name(), host.scope_id()),
        ("fe80::1%7", Some(7))
    );
    assert_eq!(host.socket_addr(443), Some(scoped));
    let unscoped: SocketAddr = "[::1]:443".parse().unwrap();
    assert_eq!(HostName::from(unscoped).scope_id(), None);
    assert_eq!(HostName::new("example.com").unwrap().ip(), None);
    assert_eq!(HostName::new("example.com").unwrap().socket_addr(1), None);
    let parsed: HostName = "Example.COM".parse().unwrap();
    assert_eq!(parsed.canonical_name(), "example.com");
}

#[test]
fn equality_and_hash_follow_the_canonical_name() {
    let set: HashSet<HostName> = ["example.com", "EXAMPLE.com.", "[::1]", "0:0::1", "::1"]
        .iter()
        .map(|s| HostName::new(s).unwrap())
        .collect();
    assert_eq!(set.len(), 2);
    assert_ne!(
        HostName::new("fe80::1%1").unwrap(),
        HostName::new("fe80::1").unwrap()
    );
}

#[test]
fn loopback() {
    for s in [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "::ffff:127.0.0.1",
        "localhost",
        "a.localhost",
    ] {
        assert!(HostName::new(s).unwrap().is_loopback(), "{s}");
    }
    for s in ["192.0.2.1", "::2", "example.com", "localhost.example"] {
        assert!(!HostName::new(s).unwrap().is_loopback(), "{s}");
    }
}

#[test]
fn service_names() {
    for (name, port) in [
        ("0", 0),
        ("80", 80),
        ("0443", 443),
        ("65535", 65535),
        ("http", 80),
        ("HTTPS", 443),
        ("smtp", 25),
        ("submission", 587),
        ("submissions", 465),
        ("imap", 143),
        ("imaps", 993),
        ("pop3s", 995),
        ("ssh", 22),
        ("domain", 53),
        ("ntp", 123),
        ("mqtt", 1883),
        ("secure-mqtt", 8883),
        ("xmpp-client", 5222),
        ("irc", 6667),
        ("postgresql", 5432),
        ("Redis", 6379),
    ] {
        assert_eq!(resolve_service(name).unwrap(), port, "{name}");
    }
}

#[test]
fn services_file_names() {
    // Debian's /etc/services lists "gopher" and "finger" too, but "tcpmux" is only
    // there; skip when the file is absent or lacks it.
    let listed = std::fs::read_to_string("/etc/services")
        .map(|t| t.lines().any(|l| l.starts_with("tcpmux")))
        .unwrap_or(false);
    if listed {
        assert_eq!(resolve_service("tcpmux").unwrap(), 1);
    }
}

#[test]
fn invalid_services() {
    for (service, fragment) in [
        ("", "empty"),
        ("+1", "not a plain decimal number"),
        ("-1", "not a plain decimal number"),
        ("0x50", "not a plain decimal number"),
        ("65536", "over 65535"),
        ("99999999999999999999", "over 65535"),
        ("no-such-service", "unknown service name 'no-such-service'"),
        ("ht tp", "not a port number nor a service name"),
        ("http\n", "not a port number nor a service name"),
    ] {
        let err = resolve_service(service).expect_err(service);
        assert_eq!(
            err.status(),
            SocketErrorStatus::InvalidArgument,
            "{service}"
        );
        assert_eq!(err.operation(), "resolve service name");
        let detail = err.detail().unwrap();
        assert!(detail.contains(fragment), "{service:?}: {detail}");
    }
    let long = "a".repeat(1000);
    assert!(resolve_service(&long).is_err());
}
