//! [`HostName`]: an IPv4 address, an IPv6 address, or a domain name, checked when it
//! is made.
//!
//! The counterpart of `Windows.Networking.HostName`: the constructor refuses what could
//! never be resolved or connected to, and says why, instead of failing later inside a
//! connect.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;

use crate::error::{Error, Result};

mod parse;
mod resolve;

use parse::Parsed;
pub(crate) use resolve::{interleave_families, resolve_blocking};

/// What kind of name a [`HostName`] holds.
///
/// The names and numbers are those of `Windows.Networking.HostNameType`. Its
/// `Bluetooth = 3` is not supported; the enum is `#[non_exhaustive]`.
///
/// # Examples
///
/// ```
/// use sockloop::{HostName, HostNameType};
///
/// assert_eq!(HostName::new("example.com")?.kind(), HostNameType::DomainName);
/// assert_eq!(HostNameType::Ipv6 as u32, 2);
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum HostNameType {
    /// A domain name, such as `example.com` or `localhost`.
    DomainName = 0,
    /// An IPv4 address, such as `192.0.2.1`.
    Ipv4 = 1,
    /// An IPv6 address, such as `2001:db8::1` or `fe80::1%eth0`.
    Ipv6 = 2,
}

/// A host name: an IPv4 address, an IPv6 address (with an optional zone), or a domain
/// name, validated when it is made.
///
/// Two host names are equal when their [canonical names](HostName::canonical_name)
/// are: `EXAMPLE.com.` equals `example.com`, `[::1]` equals `0::1`. `Display` shows the
/// [display name](HostName::display_name).
///
/// # Accepted forms
///
/// | input | kind | canonical name |
/// | --- | --- | --- |
/// | `192.0.2.1` | IPv4 | `192.0.2.1` |
/// | `2001:DB8:0::1`, `[2001:db8::1]` | IPv6 | `2001:db8::1` (RFC 5952, no brackets) |
/// | `fe80::1%eth0`, `[fe80::1%3]` | IPv6 | `fe80::1%eth0`, `fe80::1%3` |
/// | `Bücher.example.` | domain | `xn--bcher-kva.example` |
/// | `_sip._tcp.example.com` | domain | `_sip._tcp.example.com` |
///
/// # Decisions
///
/// - **IPv4 is the strict dotted quad only.** `inet_aton` (and so `getaddrinfo`) also
///   reads `127.1`, `0x7f.0.0.1` and `010.0.0.1` (octal: 8.0.0.1); these forms are
///   ambiguous and a classic way to slip an address past a filter, so they are errors.
///   Text whose last label is a number (decimal or `0x` hexadecimal, the WHATWG URL
///   rule) is an IPv4 address or an error, never a domain name.
/// - **Zones**: `%` separates the zone everywhere. A decimal zone is the scope id; any
///   other zone is an interface name, looked up in `/sys/class/net/NAME/ifindex` when
///   the host name is made (an unknown interface is an error). The URL form `%25` of
///   RFC 6874 is *not* decoded: a host name is not a URL.
/// - **Domain names** go through IDNA (UTS #46, non-transitional) to their ASCII form,
///   which is then held to DNS limits: at most 253 bytes without the trailing dot,
///   labels of 1 to 63 bytes made of letters, digits, hyphens and underscores, not
///   starting or ending with a hyphen. The underscore is accepted because real names
///   use it (`_sip._tcp`, `_dmarc`, DKIM selectors) and `getaddrinfo` looks them up.
///   One trailing dot is accepted and dropped; `..`, a leading dot and the root `.`
///   alone are errors.
/// - A name with a port (`example.com:80`, `[::1]:80`) is an error: the port is the
///   service, given separately.
///
/// # Examples
///
/// ```
/// use sockloop::{HostName, HostNameType, SocketErrorStatus};
///
/// let host = HostName::new("Bücher.Example")?;
/// assert_eq!(host.kind(), HostNameType::DomainName);
/// assert_eq!(host.raw_name(), "Bücher.Example");
/// assert_eq!(host.canonical_name(), "xn--bcher-kva.example");
/// assert_eq!(host.display_name(), "bücher.example");
///
/// let v6: HostName = "[2001:DB8::1]".parse()?;
/// assert_eq!(v6.canonical_name(), "2001:db8::1");
/// assert_eq!(v6.socket_addr(443), Some("[2001:db8::1]:443".parse().unwrap()));
///
/// let err = HostName::new("01.2.3.4").unwrap_err();
/// assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
/// assert!(err.detail().unwrap().contains("leading zero"));
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Clone)]
pub struct HostName {
    raw: String,
    canonical: String,
    /// The Unicode form, only when it differs from the canonical name.
    unicode: Option<String>,
    addr: Addr,
}

#[derive(Clone, Copy, Debug)]
enum Addr {
    Domain,
    V4(Ipv4Addr),
    V6(Ipv6Addr, Option<u32>),
}

impl HostName {
    /// Parses and validates a host name. See the [type docs](HostName) for the forms.
    ///
    /// # Errors
    ///
    /// `InvalidArgument`, with a detail that says why (which label, which character,
    /// how long), for: empty input; whitespace or control characters; a malformed IPv4
    /// or IPv6 address; an empty or unknown zone; a port; a label over 63 bytes or a
    /// name over 253 bytes (ASCII form); a character outside letters, digits, `-` and
    /// `_`; a hyphen at the start or end of a label; text IDNA refuses, such as an
    /// `xn--` label that is not valid punycode.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{HostName, SocketErrorStatus};
    ///
    /// let host = HostName::new("localhost")?;
    /// assert!(host.is_loopback());
    ///
    /// let long = format!("{}.example", "a".repeat(64));
    /// let err = HostName::new(&long).unwrap_err();
    /// assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
    /// assert!(err.detail().unwrap().contains("64 bytes"));
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn new(name: &str) -> Result<HostName> {
        let (canonical, unicode, addr) = match parse::parse(name)? {
            Parsed::Domain { ascii, unicode } => (ascii, unicode, Addr::Domain),
            Parsed::V4(a) => (a.to_string(), None, Addr::V4(a)),
            Parsed::V6 {
                addr,
                zone,
                scope_id,
            } => {
                let canonical = match zone {
                    Some(zone) => format!("{addr}%{zone}"),
                    None => addr.to_string(),
                };
                (canonical, None, Addr::V6(addr, scope_id))
            }
        };
        Ok(HostName {
            raw: name.to_owned(),
            canonical,
            unicode,
            addr,
        })
    }

    /// The text the host name was made from, unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::HostName;
    ///
    /// assert_eq!(HostName::new("[::1]")?.raw_name(), "[::1]");
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn raw_name(&self) -> &str {
        &self.raw
    }

    /// The normalized form, the one used for lookups and comparisons: the dotted quad
    /// for IPv4; the RFC 5952 form without brackets, with `%zone` when there is one,
    /// for IPv6; the IDNA ASCII form, lower case, without the trailing dot, for a
    /// domain name.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::HostName;
    ///
    /// assert_eq!(HostName::new("WWW.Example.COM.")?.canonical_name(), "www.example.com");
    /// assert_eq!(HostName::new("[fe80:0::1%lo]")?.canonical_name(), "fe80::1%lo");
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn canonical_name(&self) -> &str {
        &self.canonical
    }

    /// The form to show people: Unicode for an internationalized domain name, otherwise
    /// the [canonical name](HostName::canonical_name).
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::HostName;
    ///
    /// assert_eq!(HostName::new("xn--bcher-kva.example")?.display_name(), "bücher.example");
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn display_name(&self) -> &str {
        self.unicode.as_deref().unwrap_or(&self.canonical)
    }

    /// Whether this is a domain name, an IPv4 or an IPv6 address.
    pub fn kind(&self) -> HostNameType {
        match self.addr {
            Addr::Domain => HostNameType::DomainName,
            Addr::V4(_) => HostNameType::Ipv4,
            Addr::V6(..) => HostNameType::Ipv6,
        }
    }

    /// The address, for an IPv4 or IPv6 host name; `None` for a domain name.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use sockloop::HostName;
    ///
    /// assert_eq!(HostName::new("127.0.0.1")?.ip(), Some(Ipv4Addr::LOCALHOST.into()));
    /// assert_eq!(HostName::new("localhost")?.ip(), None);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        match self.addr {
            Addr::Domain => None,
            Addr::V4(a) => Some(a.into()),
            Addr::V6(a, _) => Some(a.into()),
        }
    }

    /// The scope id of an IPv6 address with a zone: the number itself for a numeric
    /// zone, the interface index for an interface name (as it was when the host name
    /// was made). `None` without a zone and for other kinds.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::HostName;
    ///
    /// assert_eq!(HostName::new("fe80::1%3")?.scope_id(), Some(3));
    /// assert_eq!(HostName::new("fe80::1")?.scope_id(), None);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    ///
    /// # Portability
    ///
    /// Interface names are read from `/sys/class/net`, so they work on Linux with
    /// sysfs mounted; numeric zones work everywhere.
    pub fn scope_id(&self) -> Option<u32> {
        match self.addr {
            Addr::V6(_, scope) => scope,
            _ => None,
        }
    }

    /// Whether the host name is a loopback address (`127.0.0.0/8`, `::1`, or an
    /// IPv4-mapped `::ffff:127.x.y.z`), or `localhost` or a name under it (RFC 6761
    /// §6.3). No lookup is made.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::HostName;
    ///
    /// assert!(HostName::new("::1")?.is_loopback());
    /// assert!(HostName::new("app.localhost")?.is_loopback());
    /// assert!(!HostName::new("example.com")?.is_loopback());
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            Addr::Domain => self.canonical == "localhost" || self.canonical.ends_with(".localhost"),
            Addr::V4(a) => a.is_loopback(),
            Addr::V6(a, _) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|a| a.is_loopback())
            }
        }
    }

    /// The socket address for a port, for an IP host name (an IPv6 one with its scope
    /// id); `None` for a domain name, which must be resolved first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use sockloop::HostName;
    ///
    /// let addr = HostName::new("fe80::1%2")?.socket_addr(8080).unwrap();
    /// let SocketAddr::V6(v6) = addr else { unreachable!() };
    /// assert_eq!((v6.port(), v6.scope_id()), (8080, 2));
    /// assert_eq!(HostName::new("example.com")?.socket_addr(80), None);
    /// # Ok::<(), sockloop::Error>(())
    /// ```
    pub fn socket_addr(&self, port: u16) -> Option<SocketAddr> {
        match self.addr {
            Addr::Domain => None,
            Addr::V4(a) => Some(SocketAddr::new(a.into(), port)),
            Addr::V6(a, scope) => Some(SocketAddrV6::new(a, port, 0, scope.unwrap_or(0)).into()),
        }
    }

    fn from_ip(ip: IpAddr, scope_id: Option<u32>) -> HostName {
        let (canonical, addr) = match (ip, scope_id) {
            (IpAddr::V4(a), _) => (a.to_string(), Addr::V4(a)),
            (IpAddr::V6(a), Some(s)) => (format!("{a}%{s}"), Addr::V6(a, Some(s))),
            (IpAddr::V6(a), None) => (a.to_string(), Addr::V6(a, None)),
        };
        HostName {
            raw: canonical.clone(),
            canonical,
            unicode: None,
            addr,
        }
    }
}

impl PartialEq for HostName {
    fn eq(&self, other: &HostName) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for HostName {}

impl Hash for HostName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

/// `HostName("example.com")`: the [canonical name](HostName::canonical_name).
impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HostName").field(&self.canonical).finish()
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

impl FromStr for HostName {
    type Err = Error;

    fn from_str(s: &str) -> Result<HostName> {
        HostName::new(s)
    }
}

impl From<IpAddr> for HostName {
    fn from(ip: IpAddr) -> HostName {
        HostName::from_ip(ip, None)
    }
}

impl From<Ipv4Addr> for HostName {
    fn from(ip: Ipv4Addr) -> HostName {
        HostName::from_ip(ip.into(), None)
    }
}

impl From<Ipv6Addr> for HostName {
    fn from(ip: Ipv6Addr) -> HostName {
        HostName::from_ip(ip.into(), None)
    }
}

/// The host of a socket address: its IP, and for IPv6 its scope id as a numeric zone
/// when it is not 0. The port is dropped.
impl From<SocketAddr> for HostName {
    fn from(addr: SocketAddr) -> HostName {
        match addr {
            SocketAddr::V4(a) => HostName::from_ip((*a.ip()).into(), None),
            SocketAddr::V6(a) => {
                let scope = Some(a.scope_id()).filter(|&s| s != 0);
                HostName::from_ip((*a.ip()).into(), scope)
            }
        }
    }
}

/// Anything that names a host: text (`&str`, `String`), a [`HostName`] (owned or
/// borrowed) or an IP address. Text is parsed with [`HostName::new`], so an invalid
/// name gives the same clear error, at once, wherever a host is taken.
///
/// A [`SocketAddr`] is not a host (it has a port): connect to it with
/// [`StreamSocket::connect_to`](crate::StreamSocket::connect_to).
///
/// # Examples
///
/// ```
/// use std::net::Ipv4Addr;
/// use sockloop::{HostName, IntoHostName, SocketErrorStatus};
///
/// assert_eq!("localhost".into_host_name()?, HostName::new("localhost")?);
/// assert_eq!(Ipv4Addr::LOCALHOST.into_host_name()?, HostName::new("127.0.0.1")?);
///
/// let err = "example.com:443".into_host_name().unwrap_err();
/// assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
/// assert!(err.detail().unwrap().contains("put the port in the service argument"));
/// # Ok::<(), sockloop::Error>(())
/// ```
pub trait IntoHostName {
    /// The host name.
    ///
    /// # Errors
    ///
    /// As [`HostName::new`], for text.
    fn into_host_name(self) -> Result<HostName>;
}

impl IntoHostName for HostName {
    fn into_host_name(self) -> Result<HostName> {
        Ok(self)
    }
}

impl IntoHostName for &HostName {
    fn into_host_name(self) -> Result<HostName> {
        Ok(self.clone())
    }
}

impl IntoHostName for &str {
    fn into_host_name(self) -> Result<HostName> {
        HostName::new(self)
    }
}

impl IntoHostName for String {
    fn into_host_name(self) -> Result<HostName> {
        HostName::new(&self)
    }
}

impl IntoHostName for &String {
    fn into_host_name(self) -> Result<HostName> {
        HostName::new(self)
    }
}

impl IntoHostName for IpAddr {
    fn into_host_name(self) -> Result<HostName> {
        Ok(self.into())
    }
}

impl IntoHostName for Ipv4Addr {
    fn into_host_name(self) -> Result<HostName> {
        Ok(self.into())
    }
}

impl IntoHostName for Ipv6Addr {
    fn into_host_name(self) -> Result<HostName> {
        Ok(self.into())
    }
}
