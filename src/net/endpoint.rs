//! Where a connection goes, and where it comes from: [`EndpointPair`] and
//! [`Destination`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::error::{Error, Result, SocketErrorStatus};
use crate::net::hostname::{HostName, IntoHostName};
use crate::net::resolver::Lookup;
use crate::net::service::IntoService;

/// A local and a remote endpoint (`Windows.Networking.EndpointPair`): connect *from* a
/// chosen local address and port *to* a remote host and service.
///
/// Given to [`StreamSocket::connect_to`](crate::StreamSocket::connect_to) or
/// [`DatagramSocket::connect_to`](crate::DatagramSocket::connect_to), the socket is
/// bound to the local endpoint before it connects. When the remote name resolves to
/// several addresses, each connection attempt binds the local address of its own family
/// (a local domain name such as `localhost` may give one of each); attempts whose
/// family the local host has no address of are skipped. A stream binds a local port
/// other than 0 with `SO_REUSEADDR`, so that racing attempts can share it and a
/// reconnection is not refused while the previous connection is in `TIME_WAIT`; a
/// datagram socket binds it plainly (UDP has no `TIME_WAIT`, and a port taken by
/// another socket is refused with `AddressAlreadyInUse`).
///
/// # Examples
///
/// ```
/// use sockloop::EndpointPair;
///
/// // From 127.0.0.2, any port, to port 8080 of 127.0.0.1.
/// let pair = EndpointPair::new("127.0.0.2", 0, "127.0.0.1", 8080)?;
/// assert_eq!(pair.to_string(), "127.0.0.2:0 -> 127.0.0.1:8080");
///
/// // From local port 5000 on whichever address the system picks.
/// let pair = EndpointPair::any_local(5000, "localhost", "http")?;
/// assert_eq!(pair.local_host_name(), None);
/// assert_eq!(pair.remote_port(), 80);
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointPair {
    local_host: Option<HostName>,
    local_port: u16,
    remote_host: HostName,
    remote_port: u16,
}

impl EndpointPair {
    /// The pair of `local_host` and `local_service` (a port, `0` for any, or a service
    /// name) and `remote_host` and `remote_service`, in the order of the Windows
    /// constructor.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an invalid host name or service, as
    /// [`HostName::new`] and [`resolve_service`](crate::resolve_service) say.
    pub fn new(
        local_host: impl IntoHostName,
        local_service: impl IntoService,
        remote_host: impl IntoHostName,
        remote_service: impl IntoService,
    ) -> Result<EndpointPair> {
        Ok(EndpointPair {
            local_host: Some(local_host.into_host_name()?),
            local_port: local_service.into_port()?,
            remote_host: remote_host.into_host_name()?,
            remote_port: remote_service.into_port()?,
        })
    }

    /// A pair whose local host is left to the system (the wildcard address of each
    /// attempt's family): only the local port is chosen.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn any_local(
        local_service: impl IntoService,
        remote_host: impl IntoHostName,
        remote_service: impl IntoService,
    ) -> Result<EndpointPair> {
        Ok(EndpointPair {
            local_host: None,
            local_port: local_service.into_port()?,
            remote_host: remote_host.into_host_name()?,
            remote_port: remote_service.into_port()?,
        })
    }

    /// The pair of two socket addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use sockloop::EndpointPair;
    ///
    /// let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
    /// let remote: SocketAddr = "127.0.0.1:7".parse().unwrap();
    /// let pair = EndpointPair::from_addresses(local, remote);
    /// assert_eq!(pair.remote_port(), 7);
    /// ```
    pub fn from_addresses(local: SocketAddr, remote: SocketAddr) -> EndpointPair {
        EndpointPair {
            local_host: Some(HostName::from(local)),
            local_port: local.port(),
            remote_host: HostName::from(remote),
            remote_port: remote.port(),
        }
    }

    /// The local host, `None` when the system chooses.
    pub fn local_host_name(&self) -> Option<&HostName> {
        self.local_host.as_ref()
    }

    /// The local port, 0 when the system chooses.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The remote host.
    pub fn remote_host_name(&self) -> &HostName {
        &self.remote_host
    }

    /// The remote port.
    pub fn remote_port(&self) -> u16 {
        self.remote_port
    }
}

/// `local:port -> remote:port`, IPv6 addresses in brackets, `*` for any local host.
impl fmt::Display for EndpointPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |f: &mut fmt::Formatter<'_>, h: &HostName| match h.ip() {
            Some(IpAddr::V6(_)) => write!(f, "[{h}]"),
            _ => write!(f, "{h}"),
        };
        match &self.local_host {
            Some(h) => host(f, h)?,
            None => f.write_str("*")?,
        }
        write!(f, ":{} -> ", self.local_port)?;
        host(f, &self.remote_host)?;
        write!(f, ":{}", self.remote_port)
    }
}

/// Where [`StreamSocket::connect_to`](crate::StreamSocket::connect_to) and
/// [`DatagramSocket::connect_to`](crate::DatagramSocket::connect_to) connect: a socket
/// address, a list of them (raced as Happy Eyeballs does by a stream; a datagram
/// socket takes the first it can make a socket for), or an [`EndpointPair`]. Made with
/// `From`/`Into`; `connect_to` takes `impl Into<Destination>`.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use sockloop::{Destination, EndpointPair};
///
/// let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
/// let _one = Destination::from(addr);
/// let _race = Destination::from(vec![addr, "[::1]:8080".parse().unwrap()]);
/// let _pair = Destination::from(EndpointPair::new("127.0.0.2", 0, "127.0.0.1", 8080)?);
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub(crate) remote: Remote,
    pub(crate) local: Option<Local>,
}

/// The remote side: a name still to resolve, or addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remote {
    Name(HostName, u16),
    Addresses(Vec<SocketAddr>),
}

/// The local side: a host (`None`: the wildcard of each attempt's family) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Local {
    pub(crate) host: Option<HostName>,
    pub(crate) port: u16,
}

impl Destination {
    pub(crate) fn name(host: HostName, port: u16) -> Destination {
        Destination {
            remote: Remote::Name(host, port),
            local: None,
        }
    }

    /// The name reported as the socket's remote host name.
    pub(crate) fn host_name(&self) -> Option<HostName> {
        match &self.remote {
            Remote::Name(host, _) => Some(host.clone()),
            Remote::Addresses(addrs) => addrs.first().map(|a| HostName::from(a.ip())),
        }
    }

    /// What is known now and what is still to resolve: the remote addresses (in the
    /// order given), the local endpoint with the addresses of its host, and the lookup
    /// of the names among them (none when both sides are addresses).
    pub(crate) fn split(self) -> Split {
        let mut split = Split {
            addrs: Vec::new(),
            local: self.local,
            local_addrs: Vec::new(),
            lookup: Lookup {
                remote: None,
                local: None,
                tag: 0,
            },
        };
        match self.remote {
            Remote::Name(host, port) => match host.socket_addr(port) {
                Some(addr) => split.addrs.push(addr),
                None => split.lookup.remote = Some((host, port)),
            },
            Remote::Addresses(addrs) => split.addrs = addrs,
        }
        if let Some(Local {
            host: Some(host),
            port,
        }) = &split.local
        {
            match host.socket_addr(*port) {
                Some(addr) => split.local_addrs.push(addr),
                None => split.lookup.local = Some((host.clone(), *port)),
            }
        }
        split
    }

    /// `InvalidArgument` for an empty list of addresses.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.remote {
            Remote::Addresses(a) if a.is_empty() => {
                Err(Error::new(SocketErrorStatus::InvalidArgument, "connect")
                    .with_detail("no address to connect to"))
            }
            _ => Ok(()),
        }
    }
}

/// A [`Destination`] taken apart ([`Destination::split`]).
pub(crate) struct Split {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) local: Option<Local>,
    pub(crate) local_addrs: Vec<SocketAddr>,
    pub(crate) lookup: Lookup,
}

impl Split {
    /// Whether every name is an address literal: nothing to resolve.
    pub(crate) fn resolved(&self) -> bool {
        self.lookup.remote.is_none() && self.lookup.local.is_none()
    }
}

impl Local {
    /// The address to bind before connecting to `remote`, among the local host's
    /// `resolved` addresses: the first of the same family, or the wildcard of that
    /// family when no local host was given. `None` when the family does not match.
    pub(crate) fn for_remote(
        &self,
        resolved: &[SocketAddr],
        remote: SocketAddr,
    ) -> Option<SocketAddr> {
        if self.host.is_none() {
            let any: IpAddr = match remote {
                SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            return Some(SocketAddr::new(any, self.port));
        }
        resolved
            .iter()
            .find(|l| l.is_ipv4() == remote.is_ipv4())
            .copied()
    }
}

impl From<SocketAddr> for Destination {
    fn from(addr: SocketAddr) -> Destination {
        Destination {
            remote: Remote::Addresses(vec![addr]),
            local: None,
        }
    }
}

impl From<SocketAddrV4> for Destination {
    fn from(addr: SocketAddrV4) -> Destination {
        SocketAddr::from(addr).into()
    }
}

impl From<SocketAddrV6> for Destination {
    fn from(addr: SocketAddrV6) -> Destination {
        SocketAddr::from(addr).into()
    }
}

/// Addresses raced in the order given, families interleaved starting with the first
/// address's (RFC 8305 §4), for callers that resolve names themselves.
impl From<Vec<SocketAddr>> for Destination {
    fn from(addrs: Vec<SocketAddr>) -> Destination {
        Destination {
            remote: Remote::Addresses(addrs),
            local: None,
        }
    }
}

/// As `From<Vec<SocketAddr>>`.
impl From<&[SocketAddr]> for Destination {
    fn from(addrs: &[SocketAddr]) -> Destination {
        addrs.to_vec().into()
    }
}

/// As `From<Vec<SocketAddr>>`.
impl<const N: usize> From<[SocketAddr; N]> for Destination {
    fn from(addrs: [SocketAddr; N]) -> Destination {
        addrs.to_vec().into()
    }
}

/// As `From<Vec<SocketAddr>>`.
impl<const N: usize> From<&[SocketAddr; N]> for Destination {
    fn from(addrs: &[SocketAddr; N]) -> Destination {
        addrs.to_vec().into()
    }
}

impl From<EndpointPair> for Destination {
    fn from(pair: EndpointPair) -> Destination {
        Destination {
            remote: Remote::Name(pair.remote_host, pair.remote_port),
            local: Some(Local {
                host: pair.local_host,
                port: pair.local_port,
            }),
        }
    }
}

impl From<&EndpointPair> for Destination {
    fn from(pair: &EndpointPair) -> Destination {
        pair.clone().into()
    }
}
