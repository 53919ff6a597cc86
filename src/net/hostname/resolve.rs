//! Endpoint resolution: a [`HostName`] and a port to socket addresses, and the
//! Happy Eyeballs ordering of the result.
//!
//! [`resolve_blocking`] blocks (it calls `getaddrinfo` through the standard library), so
//! it runs on the resolver's helper thread, never on the loop.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use super::HostName;
use crate::error::{Error, Result, SocketErrorStatus};

/// The operation named by resolution errors.
const OPERATION: &str = "resolve host name";

/// Most addresses kept from one lookup; the rest are dropped.
const MAX_ADDRESSES: usize = 64;

/// Resolves a host name and a port to socket addresses, blocking.
///
/// An IP literal gives its one address at once, with its scope id. A domain name is
/// looked up with `getaddrinfo` (through [`ToSocketAddrs`]), in the order the system
/// resolver gives; at most 64 addresses are kept.
///
/// # Errors
///
/// `HostNotFound` when the name does not exist, `NoAddressesFound` when it has no
/// address (or the lookup gave none), `NonAuthoritativeHostNotFound` for a temporary
/// failure worth retrying. The standard library reports `getaddrinfo` failures as an
/// `io::Error` whose only trace of the `EAI_*` code is the `gai_strerror` text, so the
/// status is chosen from that text (glibc and musl wordings); an `EAI_SYSTEM` failure
/// carries an errno and maps like any I/O error.
pub(crate) fn resolve_blocking(host: &HostName, port: u16) -> Result<Vec<SocketAddr>> {
    if let Some(addr) = host.socket_addr(port) {
        return Ok(vec![addr]);
    }
    let name = host.canonical_name();
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| lookup_error(name, e))?
        .take(MAX_ADDRESSES)
        .collect();
    log::debug!("resolved {name}: {} address(es)", addrs.len());
    if addrs.is_empty() {
        return Err(Error::new(SocketErrorStatus::NoAddressesFound, OPERATION)
            .with_detail(format!("'{name}' has no addresses")));
    }
    Ok(addrs)
}

/// Maps a failed lookup of `name` to an error with a status.
pub(super) fn lookup_error(name: &str, e: io::Error) -> Error {
    if e.raw_os_error().is_some() {
        return Error::from_io(OPERATION, e).with_detail(format!("'{name}'"));
    }
    let status = lookup_status(&e.to_string());
    Error::new(status, OPERATION).with_detail(format!("'{name}': {e}"))
}

/// The status for a `getaddrinfo` failure message.
fn lookup_status(message: &str) -> SocketErrorStatus {
    const NO_ADDRESS: [&str; 2] = [
        "no address associated with hostname",       // EAI_NODATA
        "address family for hostname not supported", // EAI_ADDRFAMILY
    ];
    const TEMPORARY: [&str; 2] = [
        "temporary failure in name resolution", // EAI_AGAIN, glibc
        "try again",                            // EAI_AGAIN, musl
    ];
    let message = message.to_ascii_lowercase();
    if NO_ADDRESS.iter().any(|m| message.contains(m)) {
        SocketErrorStatus::NoAddressesFound
    } else if TEMPORARY.iter().any(|m| message.contains(m)) {
        SocketErrorStatus::NonAuthoritativeHostNotFound
    } else {
        // EAI_NONAME ("Name or service not known", musl "Name does not resolve"),
        // EAI_FAIL and anything unrecognised: the name could not be found.
        SocketErrorStatus::HostNotFound
    }
}

/// Orders addresses for connection attempts (RFC 8305 §4): duplicates removed, then
/// families alternating, starting with the preferred one (IPv6 when `prefer_v6`), each
/// family keeping the resolver's order. When one family runs out, the rest of the
/// other follows.
pub(crate) fn interleave_families(addrs: Vec<SocketAddr>, prefer_v6: bool) -> Vec<SocketAddr> {
    let mut seen = HashSet::with_capacity(addrs.len());
    let (v6, v4): (Vec<_>, Vec<_>) = addrs
        .into_iter()
        .filter(|a| seen.insert(*a))
        .partition(SocketAddr::is_ipv6);
    let (first, second) = if prefer_v6 { (v6, v4) } else { (v4, v6) };
    let mut out = Vec::with_capacity(first.len() + second.len());
    let (mut first, mut second) = (first.into_iter(), second.into_iter());
    loop {
        match (first.next(), second.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn interleave_alternates_starting_with_the_preferred_family() {
        let input = addrs(&[
            "192.0.2.1:80",
            "192.0.2.2:80",
            "192.0.2.3:80",
            "[2001:db8::1]:80",
            "[2001:db8::2]:80",
        ]);
        let v6_first = addrs(&[
            "[2001:db8::1]:80",
            "192.0.2.1:80",
            "[2001:db8::2]:80",
            "192.0.2.2:80",
            "192.0.2.3:80",
        ]);
        assert_eq!(interleave_families(input.clone(), true), v6_first);
        let v4_first = addrs(&[
            "192.0.2.1:80",
            "[2001:db8::1]:80",
            "192.0.2.2:80",
            "[2001:db8::2]:80",
            "192.0.2.3:80",
        ]);
        assert_eq!(interleave_families(input, false), v4_first);
    }

    #[test]
    fn interleave_dedupes_and_handles_one_family() {
        let input = addrs(&["192.0.2.1:80", "192.0.2.2:80", "192.0.2.1:80"]);
        assert_eq!(
            interleave_families(input, true),
            addrs(&["192.0.2.1:80", "192.0.2.2:80"])
        );
        let input = addrs(&["[::1]:80", "[::1]:80", "[::2]:80"]);
        assert_eq!(
            interleave_families(input, false),
            addrs(&["[::1]:80", "[::2]:80"])
        );
        assert!(interleave_families(Vec::new(), true).is_empty());
    }

    #[test]
    fn lookup_messages_map_to_statuses() {
        use SocketErrorStatus::*;
        for (text, status) in [
            ("Name or service not known", HostNotFound),
            ("Name does not resolve", HostNotFound),
            ("No address associated with hostname", NoAddressesFound),
            (
                "Temporary failure in name resolution",
                NonAuthoritativeHostNotFound,
            ),
            ("Try again", NonAuthoritativeHostNotFound),
            ("Non-recoverable failure in name resolution", HostNotFound),
        ] {
            let e = io::Error::other(format!("failed to lookup address information: {text}"));
            let err = lookup_error("a.example", e);
            assert_eq!(err.status(), status, "{text}");
            assert!(err.detail().unwrap().contains("'a.example'"), "{err}");
            assert_eq!(err.operation(), "resolve host name");
        }
        let err = lookup_error("a.example", io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(err.status(), TooManyOpenFiles);
    }

    #[test]
    fn literals_resolve_without_lookup() {
        let host = HostName::new("[fe80::1%7]").unwrap();
        let got = resolve_blocking(&host, 443).unwrap();
        assert_eq!(got, addrs(&["[fe80::1%7]:443"]));
        let got = resolve_blocking(&HostName::new("192.0.2.7").unwrap(), 0).unwrap();
        assert_eq!(got, addrs(&["192.0.2.7:0"]));
    }

    #[test]
    fn localhost_resolves_to_loopback() {
        // Answered from /etc/hosts: no DNS query leaves the machine.
        let got = resolve_blocking(&HostName::new("localhost").unwrap(), 8080).unwrap();
        assert!(!got.is_empty());
        assert!(
            got.iter().all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{got:?}"
        );
    }
}
