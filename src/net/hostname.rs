//! Host names (stand-in until the full parser lands).
use crate::error::{Error, SocketErrorStatus};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A host name: an IPv4 or IPv6 address or a domain name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostName {
    raw: String,
    ip: Option<IpAddr>,
}

impl HostName {
    /// Parses a host name.
    pub fn new(s: &str) -> Result<HostName, Error> {
        if s.is_empty() || s.contains(' ') {
            return Err(Error::new(SocketErrorStatus::InvalidArgument, "parse host name"));
        }
        let t = s.trim_start_matches('[').trim_end_matches(']');
        Ok(HostName { raw: s.to_string(), ip: t.parse().ok() })
    }
    /// The name as given.
    pub fn raw_name(&self) -> &str {
        &self.raw
    }
    /// The canonical name.
    pub fn canonical_name(&self) -> &str {
        &self.raw
    }
    /// The address, for literals.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
    /// A socket address for literals.
    pub fn socket_addr(&self, port: u16) -> Option<SocketAddr> {
        self.ip.map(|ip| SocketAddr::new(ip, port))
    }
}

impl From<IpAddr> for HostName {
    fn from(ip: IpAddr) -> HostName {
        HostName { raw: ip.to_string(), ip: Some(ip) }
    }
}

impl std::fmt::Display for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A port number or service name.
pub fn resolve_service(service: &str) -> Result<u16, Error> {
    match service {
        "http" => Ok(80),
        s => s.parse().map_err(|_| Error::new(SocketErrorStatus::InvalidArgument, "resolve service")),
    }
}

pub(crate) fn resolve_blocking(host: &HostName, port: u16) -> Result<Vec<SocketAddr>, Error> {
    if let Some(a) = host.socket_addr(port) {
        return Ok(vec![a]);
    }
    let v: Vec<_> = (host.canonical_name(), port)
        .to_socket_addrs()
        .map_err(|e| Error::from_io("resolve", e))?
        .collect();
    if v.is_empty() {
        return Err(Error::new(SocketErrorStatus::NoAddressesFound, "resolve"));
    }
    Ok(v)
}

pub(crate) fn interleave_families(addrs: Vec<SocketAddr>, prefer_v6: bool) -> Vec<SocketAddr> {
    let (mut a, mut b): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|x| x.is_ipv6() == prefer_v6);
    let mut out = Vec::new();
    a.reverse();
    b.reverse();
    while !a.is_empty() || !b.is_empty() {
        out.extend(a.pop());
        out.extend(b.pop());
    }
    out
}
