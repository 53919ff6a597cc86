//! Service names: a port number, or a well-known name such as `https`.
//!
//! The counterpart of the `serviceName` string of the Windows socket API
//! (`ConnectAsync(host, "https")`, `BindServiceNameAsync("8080")`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::OnceLock;

use crate::error::{Error, Result, SocketErrorStatus};

/// The operation named by service errors.
const OPERATION: &str = "resolve service name";

/// Longest service name looked at, in bytes.
const MAX_SERVICE_LEN: usize = 64;

/// The services file, read at most once per process.
const SERVICES_PATH: &str = "/etc/services";

/// A services file larger than this is ignored.
const MAX_SERVICES_FILE: u64 = 1024 * 1024;

/// Built-in names, looked up before the services file so that the common ones do not
/// depend on the machine. Numbers are IANA's, except `irc`: 6667, where IRC servers
/// listen, rather than the registered but unused 194.
const WELL_KNOWN: &[(&str, u16)] = &[
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("time", 37),
    ("whois", 43),
    ("domain", 53),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("ident", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("submissions", 465),
    ("syslog", 514),
    ("printer", 515),
    ("rtsp", 554),
    ("nntps", 563),
    ("submission", 587),
    ("ipp", 631),
    ("ldaps", 636),
    ("rsync", 873),
    ("ftps-data", 989),
    ("ftps", 990),
    ("telnets", 992),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("openvpn", 1194),
    ("ms-sql-s", 1433),
    ("mqtt", 1883),
    ("nfs", 2049),
    ("mysql", 3306),
    ("rdp", 3389),
    ("ms-wbt-server", 3389),
    ("stun", 3478),
    ("sip", 5060),
    ("sips", 5061),
    ("xmpp-client", 5222),
    ("xmpp-server", 5269),
    ("postgresql", 5432),
    ("amqp", 5672),
    ("vnc", 5900),
    ("redis", 6379),
    ("irc", 6667),
    ("ircd", 6667),
    ("ircs", 6697),
    ("http-alt", 8080),
    ("secure-mqtt", 8883),
    ("zookeeper", 2181),
    ("memcache", 11211),
];

/// Resolves a service: a decimal port number, or a service name.
///
/// - A port is plain decimal, `0..=65535`; leading zeros are accepted (`0080` is 80:
///   decimal only, so nothing is ambiguous). `0` is accepted: when binding it asks
///   the system for any free port.
/// - A name is matched without regard to case, first against a built-in table of
///   well-known services (`http`, `https`, `smtp`, `submission`, `imap`, `imaps`,
///   `ssh`, `domain`, `ntp`, `mqtt`, `postgresql`, `redis` and some fifty more), then
///   against `/etc/services` when it exists. That file is read once per process and
///   ignored if over 1 MiB; its `tcp` entries (names and aliases) are used, and names
///   listed only for `udp` fill the gaps, since a service keeps its number across
///   transports.
///
/// # Errors
///
/// `InvalidArgument` for an empty service, a signed or hexadecimal number, a port
/// over 65535, or an unknown name.
///
/// # Examples
///
/// ```
/// use sockloop::{resolve_service, SocketErrorStatus};
///
/// assert_eq!(resolve_service("8080")?, 8080);
/// assert_eq!(resolve_service("HTTPS")?, 443);
/// assert_eq!(resolve_service("submission")?, 587);
/// let err = resolve_service("no-such-service").unwrap_err();
/// assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
/// assert_eq!(err.detail().as_deref(), Some("unknown service name 'no-such-service'"));
/// # Ok::<(), sockloop::Error>(())
/// ```
pub fn resolve_service(service: &str) -> Result<u16> {
    if service.is_empty() {
        return Err(invalid(
            "the service is empty: give a port number or a service name",
        ));
    }
    if service.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port(service);
    }
    if looks_numeric(service) {
        return Err(invalid(format!(
            "port '{}' is not a plain decimal number 0..=65535",
            service.escape_debug()
        )));
    }
    if service.len() > MAX_SERVICE_LEN
        || service.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "'{}' is not a port number nor a service name",
            service
                .chars()
                .take(MAX_SERVICE_LEN)
                .collect::<String>()
                .escape_debug()
        )));
    }
    let name = service.to_ascii_lowercase();
    WELL_KNOWN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, port)| port)
        .or_else(|| system_services().get(&name).copied())
        .ok_or_else(|| invalid(format!("unknown service name '{service}'")))
}

/// A service: a port number (`u16`), or text given to [`resolve_service`] — a decimal
/// port (`"8080"`) or a service name (`"https"`).
///
/// Taken by every call that connects or binds, so both `connect(r, host, 443, h)` and
/// `connect(r, host, "https", h)` read naturally. An integer literal is a `u16`: a
/// port over 65535 does not compile.
///
/// # Examples
///
/// ```
/// use sockloop::{IntoService, SocketErrorStatus};
///
/// assert_eq!(8080.into_port()?, 8080);
/// assert_eq!("https".into_port()?, 443);
/// assert_eq!(String::from("0").into_port()?, 0);
/// let err = "no-such-service".into_port().unwrap_err();
/// assert_eq!(err.status(), SocketErrorStatus::InvalidArgument);
/// # Ok::<(), sockloop::Error>(())
/// ```
pub trait IntoService {
    /// The port.
    ///
    /// # Errors
    ///
    /// As [`resolve_service`], for text.
    fn into_port(self) -> Result<u16>;
}

impl IntoService for u16 {
    fn into_port(self) -> Result<u16> {
        Ok(self)
    }
}

impl IntoService for &str {
    fn into_port(self) -> Result<u16> {
        resolve_service(self)
    }
}

impl IntoService for String {
    fn into_port(self) -> Result<u16> {
        resolve_service(&self)
    }
}

impl IntoService for &String {
    fn into_port(self) -> Result<u16> {
        resolve_service(self)
    }
}

fn invalid(detail: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(SocketErrorStatus::InvalidArgument, OPERATION).with_detail(detail)
}

/// Parses an all-digit port.
fn parse_port(digits: &str) -> Result<u16> {
    let value = digits.trim_start_matches('0');
    if value.is_empty() {
        return Ok(0);
    }
    match value.parse::<u16>() {
        Ok(port) if value.len() <= 5 => Ok(port),
        _ => Err(invalid(format!(
            "port {} is over 65535",
            if digits.len() > 20 { "number" } else { digits }
        ))),
    }
}

/// A signed number (`+1`, `-1`) or a hexadecimal one (`0x50`).
fn looks_numeric(s: &str) -> bool {
    let unsigned = s.strip_prefix(&['+', '-'][..]).unwrap_or(s);
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    unsigned.len() < s.len() && unsigned.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// The services file's names, read on first use.
fn system_services() -> &'static HashMap<String, u16> {
    static SERVICES: OnceLock<HashMap<String, u16>> = OnceLock::new();
    SERVICES.get_or_init(|| match read_bounded(SERVICES_PATH) {
        Some(text) => parse_services(&text),
        None => HashMap::new(),
    })
}

/// Reads a file of at most 1 MiB, or gives `None`.
fn read_bounded(path: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let file = File::open(path).ok()?;
    file.take(MAX_SERVICES_FILE + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_SERVICES_FILE {
        log::debug!("{path} is over {MAX_SERVICES_FILE} bytes: ignored");
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses services-file text (`name port/proto [aliases...] [# comment]`) into a map
/// from lower-case name to port: `tcp` entries first, `udp` ones where no `tcp` entry
/// has the name. Malformed lines are skipped; the first entry for a name wins.
fn parse_services(text: &str) -> HashMap<String, u16> {
    let mut tcp = HashMap::new();
    let mut udp = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let map = match proto {
            "tcp" => &mut tcp,
            "udp" => &mut udp,
            _ => continue,
        };
        for alias in std::iter::once(name).chain(fields) {
            if alias.len() <= MAX_SERVICE_LEN {
                map.entry(alias.to_ascii_lowercase()).or_insert(port);
            }
        }
    }
    for (name, port) in udp {
        tcp.entry(name).or_insert(port);
    }
    tcp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file_parsing() {
        let text = "\
# comment line
tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer
www  80/tcp http WWW   # aliases
www  80/udp
kerberos 88/tcp kerberos5 krb5 kerberos-sec
only-udp 1234/udp
dup 1/tcp
dup 2/tcp
bad 99999/tcp
garbage
sctp-thing 9/sctp
noslash 7
";
        let map = parse_services(text);
        assert_eq!(map.get("tcpmux"), Some(&1));
        assert_eq!(map.get("www"), Some(&80));
        assert_eq!(map.get("http"), Some(&80));
        assert_eq!(map.get("krb5"), Some(&88));
        assert_eq!(map.get("only-udp"), Some(&1234));
        assert_eq!(map.get("dup"), Some(&1));
        assert_eq!(map.get("bad"), None);
        assert_eq!(map.get("sctp-thing"), None);
        assert_eq!(map.get("noslash"), None);
        assert_eq!(map.get("comment"), None);
        assert_eq!(map.len(), 9); // tcpmux, www, http, kerberos + 3 aliases, only-udp, dup
    }

    #[test]
    fn numeric_lookalikes() {
        for s in ["+1", "-1", "0x50", "0X1f", "+0x50", "-"] {
            assert_eq!(looks_numeric(s), s != "-", "{s}");
        }
        for s in ["http", "9pfs", "x0x"] {
            assert!(!looks_numeric(s), "{s}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("0").unwrap(), 0);
        assert_eq!(parse_port("000").unwrap(), 0);
        assert_eq!(parse_port("0080").unwrap(), 80);
        assert_eq!(parse_port("65535").unwrap(), 65535);
        assert!(parse_port("65536").is_err());
        assert!(parse_port(&"9".repeat(40)).is_err());
    }

    #[test]
    fn built_in_table_has_no_duplicate_names() {
        let mut names: Vec<_> = WELL_KNOWN.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WELL_KNOWN.len());
        assert!(WELL_KNOWN.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    }
}
