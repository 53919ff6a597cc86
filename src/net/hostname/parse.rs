//! Parsing of host name text: strict IPv4, IPv6 with zone ids, and domain names.
//!
//! Pure functions apart from [`interface_index`], which reads one small file under
//! `/sys/class/net` to turn an interface name into its index.

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::error::{Error, Result, SocketErrorStatus};

/// The operation named by every parse error.
pub(super) const OPERATION: &str = "parse host name";

/// Longest input looked at, in bytes. A valid name is at most 253 bytes in ASCII form;
/// the slack is for Unicode input, which IDNA may shorten (ignored code points).
pub(super) const MAX_INPUT_LEN: usize = 1024;

/// Longest domain name, in bytes of its ASCII form without the trailing dot (RFC 1035).
pub(super) const MAX_NAME_LEN: usize = 253;

/// Longest label, in bytes of its ASCII form (RFC 1035).
pub(super) const MAX_LABEL_LEN: usize = 63;

/// Longest Linux interface name (`IFNAMSIZ - 1`).
const MAX_IFNAME_LEN: usize = 15;

/// The ASCII characters IDNA must not produce: everything but letters, digits, hyphen,
/// dot and underscore (STD3 rules, plus the underscore of `_sip._tcp`-style names).
const DENY: AsciiDenyList = AsciiDenyList::new(true, "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~");

/// What a host name turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Parsed {
    /// A domain name: its ASCII form, and its Unicode form when that differs.
    Domain {
        ascii: String,
        unicode: Option<String>,
    },
    /// An IPv4 address in strict dotted-quad form.
    V4(Ipv4Addr),
    /// An IPv6 address, with its zone text and the scope id it stands for.
    V6 {
        addr: Ipv6Addr,
        zone: Option<String>,
        scope_id: Option<u32>,
    },
}

/// An `InvalidArgument` parse error with a reason.
pub(super) fn invalid(detail: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(SocketErrorStatus::InvalidArgument, OPERATION).with_detail(detail)
}

/// Quotes a piece of input for an error message: escaped, and cut after 20 characters.
pub(super) fn excerpt(s: &str) -> String {
    let mut out = String::from("'");
    for (i, c) in s.chars().enumerate() {
        if i == 20 {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('\'');
    out
}

/// Parses host name text. See `HostName::new` for the accepted forms.
pub(super) fn parse(input: &str) -> Result<Parsed> {
    check_characters(input)?;
    if let Some((host, port)) = split_host_port(input) {
        return Err(invalid(format!(
            "{} has a port: put the port in the service argument, as in \
             connect(&mut reactor, {}, {port}, handler)",
            excerpt(input),
            excerpt(host).replace('\'', "\""),
        )));
    }
    if input.starts_with('[') || input.ends_with(']') || input.contains(':') {
        return parse_ipv6(input);
    }
    if let Some(at) = input.find('%') {
        return Err(invalid(format!(
            "{}: a zone id ('{}') is only allowed on an IPv6 address",
            excerpt(input),
            &input[at..].escape_debug()
        )));
    }
    if ends_in_number(input) {
        return parse_ipv4_strict(input).map(Parsed::V4).map_err(|e| {
            let mut labels = input.split('.').rev().skip(1);
            if labels.any(|l| !l.is_empty() && !is_number(l)) {
                invalid(format!(
                    "{}: a name whose last label is a number would be read as an IPv4 address \
                     (no top-level domain is numeric)",
                    excerpt(input)
                ))
            } else {
                e
            }
        });
    }
    parse_domain(input)
}

/// Rejects empty and over-long input, whitespace and control characters.
fn check_characters(input: &str) -> Result<()> {
    if input.is_empty() {
        return Err(invalid("the host name is empty"));
    }
    if input.len() > MAX_INPUT_LEN {
        return Err(invalid(format!(
            "the host name is {} bytes long; at most {MAX_NAME_LEN} bytes in ASCII form are allowed",
            input.len()
        )));
    }
    match input
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        Some((at, ' ')) => Err(invalid(format!(
            "{}: a space (at byte {at}) is not allowed",
            excerpt(input)
        ))),
        Some((at, c)) => Err(invalid(format!(
            "{}: character U+{:04X} (at byte {at}) is whitespace or a control character",
            excerpt(input),
            c as u32
        ))),
        None => Ok(()),
    }
}

/// Whether the last label (before an optional trailing dot) is a number, decimal or
/// `0x` hexadecimal: the WHATWG URL "ends in a number" test. Such text is an IPv4
/// address or an error, never a domain name, because `getaddrinfo` would read it as
/// an address (`127.1`, `0x7f.1`).
pub(super) fn ends_in_number(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    is_number(s.rsplit('.').next().unwrap_or(s))
}

/// Decimal digits, or `0x` and hexadecimal digits (maybe none).
fn is_number(label: &str) -> bool {
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Parses the strict dotted-quad form: four decimal octets `0..=255`, no leading
/// zeros, no trailing dot.
pub(super) fn parse_ipv4_strict(s: &str) -> Result<Ipv4Addr> {
    let not_ipv4 = |why: String| invalid(format!("{} is not an IPv4 address: {why}", excerpt(s)));
    if s.ends_with('.') {
        return Err(not_ipv4("it ends with a dot".into()));
    }
    let count = s.split('.').count();
    if count != 4 {
        let parts = if count == 1 { "part" } else { "parts" };
        let hint = if count < 4 {
            " (inet_aton shorthands such as 127.1 or 0x7f000001 are not accepted)"
        } else {
            ""
        };
        return Err(not_ipv4(format!(
            "it has {count} {parts}, and an address is four decimal octets (a.b.c.d){hint}"
        )));
    }
    let mut octets = [0u8; 4];
    for (i, (octet, part)) in octets.iter_mut().zip(s.split('.')).enumerate() {
        *octet = parse_octet(part).map_err(|why| not_ipv4(format!("octet {} {why}", i + 1)))?;
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_octet(part: &str) -> std::result::Result<u8, String> {
    if part.is_empty() {
        return Err("is empty".into());
    }
    let quoted = excerpt(part);
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{quoted} is not decimal (hexadecimal and other inet_aton forms are not accepted)"
        ));
    }
    if part.len() > 1 && part.starts_with('0') {
        return Err(format!(
            "{quoted} has a leading zero (inet_aton would read it as octal)"
        ));
    }
    match part.parse::<u8>() {
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{quoted} is over 255")),
    }
}

/// Parses an IPv6 address, bracketed or not, with an optional `%zone`.
fn parse_ipv6(input: &str) -> Result<Parsed> {
    let inner = match (input.strip_prefix('['), input.ends_with(']')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) => input,
        (Some(_), false) if input.contains("]:") => {
            return Err(invalid(format!(
                "{}: a host name carries no port; pass the port as the service",
                excerpt(input)
            )))
        }
        (Some(_), false) => return Err(invalid(format!("{}: '[' without ']'", excerpt(input)))),
        (None, true) => return Err(invalid(format!("{}: ']' without '['", excerpt(input)))),
    };
    let (text, zone) = match inner.split_once('%') {
        Some((text, zone)) => (text, Some(zone)),
        None => (inner, None),
    };
    let addr: Ipv6Addr = text.parse().map_err(|_| {
        let hint = if looks_like_name_and_port(inner) {
            "; a host name carries no port, pass the port as the service"
        } else {
            ""
        };
        invalid(format!(
            "{} is not a valid IPv6 address{hint}",
            excerpt(text)
        ))
    })?;
    let scope_id = zone.map(zone_index).transpose()?;
    // A numeric zone is written as its number (`%03` is `%3`); a name as given.
    let zone = match (zone, scope_id) {
        (Some(z), Some(id)) if z.bytes().all(|b| b.is_ascii_digit()) => Some(id.to_string()),
        (z, _) => z.map(str::to_owned),
    };
    Ok(Parsed::V6 {
        addr,
        zone,
        scope_id,
    })
}

/// `example.com:80`, `1.2.3.4:80` or `[::1]:80`: the host and the port, apart.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        return digits.then_some((host, port));
    }
    if looks_like_name_and_port(s) {
        return s.split_once(':');
    }
    None
}

/// `name:80` or `1.2.3.4:80`: one colon followed by a decimal number.
fn looks_like_name_and_port(s: &str) -> bool {
    match s.split_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !port.is_empty()
                && !port.contains(':')
                && port.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The scope id of a zone: a decimal number, or an interface name.
fn zone_index(zone: &str) -> Result<u32> {
    if zone.is_empty() {
        return Err(invalid("the zone id after '%' is empty"));
    }
    if zone.bytes().all(|b| b.is_ascii_digit()) {
        return zone
            .parse()
            .map_err(|_| invalid(format!("zone id {} is over {}", excerpt(zone), u32::MAX)));
    }
    interface_index(zone).map_err(|e| match zone.strip_prefix("25") {
        // RFC 6874 writes the separator as "%25" inside URLs; a host name is not a URL.
        Some(_) => invalid(format!(
            "{} (a URL-encoded '%25' zone separator is not decoded: write '%' alone)",
            e.detail().unwrap_or_default()
        )),
        None => e,
    })
}

/// The index of a network interface, read from `/sys/class/net/NAME/ifindex`.
///
/// The name is checked first (at most 15 bytes, no `/`, not `.` or `..`), so that it
/// cannot name another path.
pub(super) fn interface_index(name: &str) -> Result<u32> {
    if name.len() > MAX_IFNAME_LEN || name.contains('/') || name == "." || name == ".." {
        return Err(invalid(format!(
            "zone id {} is not a number nor an interface name",
            excerpt(name)
        )));
    }
    let unknown = |e: io::Error| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => String::new(),
            _ => format!(" ({e})"),
        };
        invalid(format!(
            "zone id {}: no network interface of that name{why}",
            excerpt(name)
        ))
    };
    let mut text = String::new();
    File::open(format!("/sys/class/net/{name}/ifindex"))
        .and_then(|f| f.take(32).read_to_string(&mut text))
        .map_err(unknown)?;
    text.trim()
        .parse()
        .map_err(|_| unknown(io::Error::from(io::ErrorKind::InvalidData)))
}

/// Parses a domain name: IDNA (UTS #46) to ASCII, then the DNS length and LDH rules.
fn parse_domain(input: &str) -> Result<Parsed> {
    let name = input.strip_suffix('.').unwrap_or(input);
    if name.is_empty() {
        return Err(invalid(format!(
            "{}: the DNS root alone is not a host name",
            excerpt(input)
        )));
    }
    check_empty_labels(name, input)?;
    let idna = Uts46::new();
    let ascii = match idna.to_ascii(name.as_bytes(), DENY, Hyphens::Allow, DnsLength::Ignore) {
        Ok(ascii) => ascii.into_owned(),
        Err(_) => return Err(idna_error(name)),
    };
    check_empty_labels(&ascii, input)?;
    for label in ascii.split('.') {
        check_label(label)?;
    }
    if ascii.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "{} is {} bytes long in ASCII form; at most {MAX_NAME_LEN} are allowed",
            excerpt(input),
            ascii.len()
        )));
    }
    if ends_in_number(&ascii) {
        return Err(invalid(format!(
            "{} maps to {}, which would be read as an IPv4 address",
            excerpt(input),
            excerpt(&ascii)
        )));
    }
    let unicode = match idna.to_unicode(ascii.as_bytes(), DENY, Hyphens::Allow) {
        (unicode, Ok(())) if unicode != ascii => Some(unicode.into_owned()),
        _ => None,
    };
    Ok(Parsed::Domain { ascii, unicode })
}

fn check_empty_labels(name: &str, input: &str) -> Result<()> {
    if name.starts_with('.') {
        return Err(invalid(format!("{} starts with a dot", excerpt(input))));
    }
    if name.split('.').any(str::is_empty) {
        return Err(invalid(format!(
            "{} has an empty label ('..')",
            excerpt(input)
        )));
    }
    Ok(())
}

/// Finds which label IDNA refused, to say so.
fn idna_error(name: &str) -> Error {
    let idna = Uts46::new();
    for label in name.split('.') {
        if idna
            .to_ascii(label.as_bytes(), DENY, Hyphens::Allow, DnsLength::Ignore)
            .is_ok()
        {
            continue;
        }
        if let Some(c) = label.chars().find(|&c| c.is_ascii() && !is_label_char(c)) {
            return invalid(format!(
                "label {}: character '{}' is not allowed (letters, digits, '-' and '_' only)",
                excerpt(label),
                c.escape_debug()
            ));
        }
        let why = if label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
        {
            "is not valid punycode, or decodes to a label IDNA does not allow"
        } else {
            "has characters IDNA (UTS #46) does not allow in a host name"
        };
        return invalid(format!("label {} {why}", excerpt(label)));
    }
    invalid(format!(
        "{} is not a valid internationalized domain name (UTS #46 rules across labels, such as bidi)",
        excerpt(name)
    ))
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks one label of the ASCII form: 1..=63 bytes, letters, digits, hyphen and
/// underscore, no hyphen first or last.
fn check_label(label: &str) -> Result<()> {
    if label.len() > MAX_LABEL_LEN {
        return Err(invalid(format!(
            "label {} is {} bytes long; at most {MAX_LABEL_LEN} are allowed",
            excerpt(label),
            label.len()
        )));
    }
    if let Some(c) = label.chars().find(|&c| !is_label_char(c)) {
        return Err(invalid(format!(
            "label {}: character '{}' is not allowed (letters, digits, '-' and '_' only)",
            excerpt(label),
            c.escape_debug()
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(invalid(format!(
            "label {} starts or ends with a hyphen",
            excerpt(label)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_in_number_follows_whatwg() {
        for s in [
            "1",
            "127.1",
            "1.2.3.4.",
            "a.0x7f",
            "a.0X",
            "0x",
            "example.123",
        ] {
            assert!(ends_in_number(s), "{s}");
        }
        for s in ["a", "1.a", "0x7g", "1e5", "example.com", "a.", "."] {
            assert!(!ends_in_number(s), "{s}");
        }
    }

    #[test]
    fn strict_ipv4() {
        assert_eq!(
            parse_ipv4_strict("192.168.0.255").unwrap(),
            Ipv4Addr::new(192, 168, 0, 255)
        );
        assert_eq!(parse_ipv4_strict("0.0.0.0").unwrap(), Ipv4Addr::UNSPECIFIED);
        for (s, why) in [
            ("1.2.3", "3 parts"),
            ("1.2.3.4.5", "5 parts"),
            ("1", "1 part,"),
            ("01.2.3.4", "leading zero"),
            ("1.2.3.256", "over 255"),
            ("1.2.3.9999", "over 255"),
            ("0x7f.0.0.1", "not decimal"),
            ("1..3.4", "octet 2 is empty"),
            ("1.2.3.4.", "ends with a dot"),
        ] {
            let e = parse_ipv4_strict(s).unwrap_err();
            assert_eq!(e.status(), SocketErrorStatus::InvalidArgument);
            assert!(e.detail().unwrap().contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn excerpt_escapes_and_cuts() {
        assert_eq!(excerpt("a\tb"), "'a\\tb'");
        assert_eq!(excerpt(&"x".repeat(30)), format!("'{}…'", "x".repeat(20)));
    }

    #[test]
    fn interface_names_cannot_escape_sys_class_net() {
        for name in ["..", ".", "../../etc", "a/b", "averyveryverylongname"] {
            let e = interface_index(name).unwrap_err();
            assert!(
                e.detail().unwrap().contains("not a number nor"),
                "{name}: {e}"
            );
        }
        assert_eq!(interface_index("lo").unwrap(), 1);
    }

    #[test]
    fn name_and_port_hint() {
        assert!(looks_like_name_and_port("example.com:80"));
        assert!(!looks_like_name_and_port("::1"));
        assert!(!looks_like_name_and_port("fe80::1"));
        assert!(!looks_like_name_and_port("a:"));
    }
}
