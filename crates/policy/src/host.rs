//! The host a client asked for, and the host patterns routes and certificates name.
//!
//! A `Host` header or `:authority` is normalised once by [`normalize_host`], and
//! both route choice and certificate choice compare that one form against a
//! [`HostPattern`], so two spellings of a host can never reach different routes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1035 limits, counted without the trailing dot.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a host or host pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Nothing before the port (or nothing at all).
    Empty,
    /// Not a DNS name, IPv4 address or bracketed IPv6 address.
    Invalid,
    /// A port that is not 1-65535 in digits, or a port where none is allowed.
    BadPort,
}

impl HostError {
    /// A short human reason, for logs and error pages.
    pub fn reason(&self) -> &'static str {
        match self {
            HostError::Empty => "empty host",
            HostError::Invalid => "invalid host",
            HostError::BadPort => "invalid or unexpected port",
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HostError {}

/// Normalises a Host header / :authority value for routing and certificate matching:
/// lowercase ASCII, port removed (returned separately), one trailing dot removed,
/// IPv6 literals kept in brackets ("[::1]"). Rejects: empty, userinfo ('@'), characters outside
/// [a-z0-9.-_] for names, labels that are empty ("a..b") or longer than 63, names longer than 253,
/// a port that is not 1-65535 digits, anything with whitespace, '/', '\\', '%' or control chars.
///
/// IPv6 literals are rewritten in their RFC 5952 form (`[0:0::1]` is `[::1]`).
/// A name whose last label is numeric (`127.1`, `1.2.3.0x4`) must be a
/// dotted-quad IPv4 address, since URL parsers read such names as addresses.
pub fn normalize_host(raw: &str) -> Result<(String, Option<u16>), HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.bytes().any(|b| {
        b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'@' | b'/' | b'\\' | b'%')
    }) {
        return Err(HostError::Invalid);
    }
    let (host, port) = split_port(raw)?;
    let port = port.map(parse_port).transpose()?;
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    let host = match host.strip_prefix('[') {
        Some(bracketed) => normalize_ipv6(bracketed)?,
        None => normalize_name(host)?,
    };
    Ok((host, port))
}

/// A host pattern from config: exact "api.example.com" or wildcard "*.example.com".
/// The wildcard matches exactly one label ("a.example.com", not "example.com" nor "a.b.example.com"), as in TLS certificates (RFC 6125).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// A normalised host, as [`normalize_host`] returns it (IP literals included).
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Wildcard {
        /// The pattern without its `*`: `.example.com`.
        suffix: String,
    },
}

impl HostPattern {
    /// Parses a pattern, lowercasing it and removing one trailing dot.
    ///
    /// `*` may only be the whole leftmost label and must be followed by at
    /// least one label: `*.localhost` and `*.com` are accepted, while `*`,
    /// `*.`, `*a.com`, `a.*.com`, `*.*.com` and wildcards over IP addresses
    /// (`*.0.0.1`, `*.[::1]`) are [`HostError::Invalid`]. Any port is
    /// [`HostError::BadPort`]: patterns match hosts, never ports.
    pub fn parse(s: &str) -> Result<HostPattern, HostError> {
        let Some(rest) = s.strip_prefix("*.") else {
            return match normalize_host(s)? {
                (host, None) => Ok(HostPattern::Exact(host)),
                (_, Some(_)) => Err(HostError::BadPort),
            };
        };
        if rest.is_empty() {
            return Err(HostError::Invalid);
        }
        let suffix = match normalize_host(rest)? {
            (suffix, None) => suffix,
            (_, Some(_)) => return Err(HostError::BadPort),
        };
        if suffix.starts_with('[') || suffix.parse::<Ipv4Addr>().is_ok() {
            return Err(HostError::Invalid);
        }
        // Leave room for the label the wildcard stands for, or nothing could match.
        if suffix.len() + 2 > MAX_NAME_LEN {
            return Err(HostError::Invalid);
        }
        Ok(HostPattern::Wildcard {
            suffix: format!(".{suffix}"),
        })
    }

    /// Whether a host from [`normalize_host`] matches. Hosts are compared
    /// exactly, so an unnormalised host (uppercase, trailing dot) never matches.
    pub fn matches(&self, normalized_host: &str) -> bool {
        match self {
            HostPattern::Exact(host) => host == normalized_host,
            HostPattern::Wildcard { suffix } => normalized_host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    /// Whether this is a `*.` pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostPattern::Wildcard { .. })
    }

    /// The pattern as config spells it: `api.example.com` or `*.example.com`.
    pub fn as_str(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Wildcard { suffix } => write!(f, "*{suffix}"),
        }
    }
}

/// Splits off the port; the host keeps its brackets.
fn split_port(raw: &str) -> Result<(&str, Option<&str>), HostError> {
    if raw.starts_with('[') {
        let close = raw.find(']').ok_or(HostError::Invalid)?;
        let (host, after) = raw.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or(HostError::Invalid),
        };
    }
    // More than one ':' is an unbracketed IPv6 address, which is ambiguous with a port.
    match raw.split_once(':') {
        Some((_, port)) if port.contains(':') => Err(HostError::Invalid),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((raw, None)),
    }
}

fn parse_port(port: &str) -> Result<u16, HostError> {
    // u16::from_str would also take "+80"; only plain digits are a port.
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// `bracketed` is the literal after its `[`, still ending in `]`.
fn normalize_ipv6(bracketed: &str) -> Result<String, HostError> {
    let inner = bracketed.strip_suffix(']').ok_or(HostError::Invalid)?;
    let address: Ipv6Addr = inner.parse().map_err(|_| HostError::Invalid)?;
    Ok(format!("[{address}]"))
}

fn normalize_name(host: &str) -> Result<String, HostError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(HostError::Invalid);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(HostError::Invalid);
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.len() > MAX_LABEL_LEN)
    {
        return Err(HostError::Invalid);
    }
    // Checked first, lowercased once: the one copy is the result.
    let name = name.to_ascii_lowercase();
    let last_label = name.rsplit('.').next().unwrap_or(&name);
    if looks_numeric(last_label) && name.parse::<Ipv4Addr>().is_err() {
        return Err(HostError::Invalid);
    }
    Ok(name)
}

/// Whether the WHATWG URL parser would read this label as part of an IPv4
/// address (decimal, or hex with `0x`).
fn looks_numeric(label: &str) -> bool {
    match label.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Result<(String, Option<u16>), HostError> {
        normalize_host(raw)
    }

    fn ok(name: &str, port: Option<u16>) -> Result<(String, Option<u16>), HostError> {
        Ok((name.to_owned(), port))
    }

    #[test]
    fn lowercases_names() {
        assert_eq!(host("Example.COM"), ok("example.com", None));
        assert_eq!(
            host("API.example.com:8443"),
            ok("api.example.com", Some(8443))
        );
    }

    #[test]
    fn splits_ports() {
        assert_eq!(host("example.com:443"), ok("example.com", Some(443)));
        assert_eq!(host("example.com:1"), ok("example.com", Some(1)));
        assert_eq!(host("example.com:65535"), ok("example.com", Some(65535)));
        assert_eq!(host("localhost:080"), ok("localhost", Some(80)));
    }

    #[test]
    fn refuses_bad_ports() {
        for raw in [
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:99999",
            "example.com:000080",
            "example.com:+80",
            "example.com:-1",
            "example.com:8o",
            "[::1]:",
            "[::1]:0",
            "[::1]:http",
            "[::1]:80:80",
        ] {
            assert_eq!(host(raw), Err(HostError::BadPort), "{raw:?}");
        }
    }

    #[test]
    fn removes_one_trailing_dot() {
        assert_eq!(host("example.com."), ok("example.com", None));
        assert_eq!(host("Example.com.:443"), ok("example.com", Some(443)));
        assert_eq!(host("example.com.."), Err(HostError::Invalid));
        assert_eq!(host("."), Err(HostError::Invalid));
    }

    #[test]
    fn keeps_ipv6_in_brackets() {
        assert_eq!(host("[::1]"), ok("[::1]", None));
        assert_eq!(host("[::1]:8443"), ok("[::1]", Some(8443)));
        assert_eq!(host("[2001:DB8::A]"), ok("[2001:db8::a]", None));
        assert_eq!(host("[0:0:0:0:0:0:0:1]"), ok("[::1]", None));
    }

    #[test]
    fn refuses_bad_ipv6() {
        for raw in [
            "::1",
            "2001:db8::1",
            "[::1",
            "[::1]x",
            "[::1]]",
            "[]",
            "[example.com]",
            "[::g]",
            "[v1.fe]",
            "[fe80::1%25eth0]",
        ] {
            assert_eq!(host(raw), Err(HostError::Invalid), "{raw:?}");
        }
    }

    #[test]
    fn accepts_ipv4_and_odd_but_valid_names() {
        assert_eq!(host("127.0.0.1"), ok("127.0.0.1", None));
        assert_eq!(host("127.0.0.1:8080"), ok("127.0.0.1", Some(8080)));
        assert_eq!(host("_dmarc.example.com"), ok("_dmarc.example.com", None));
        assert_eq!(
            host("xn--bcher-kva.example"),
            ok("xn--bcher-kva.example", None)
        );
        assert_eq!(host("localhost"), ok("localhost", None));
        assert_eq!(host("1password.com"), ok("1password.com", None));
        assert_eq!(host("a.0x"), Err(HostError::Invalid));
        assert_eq!(host("a.0xg"), ok("a.0xg", None));
    }

    #[test]
    fn refuses_numeric_names_that_are_not_ipv4() {
        for raw in [
            "127.1",
            "0x7f.0.0.1",
            "1.2.3.0x4",
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3.4.5",
            "123",
        ] {
            assert_eq!(host(raw), Err(HostError::Invalid), "{raw:?}");
        }
    }

    #[test]
    fn refuses_empty() {
        assert_eq!(host(""), Err(HostError::Empty));
        assert_eq!(host(":443"), Err(HostError::Empty));
    }

    #[test]
    fn refuses_invalid_names() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", ["a"; 125].join("."));
        assert_eq!(long_name.len(), 253);
        let too_long_name = format!("a{long_name}");
        for raw in [
            "user@example.com",
            "user:pass@example.com",
            "exa mple.com",
            " example.com",
            "example.com ",
            "example.com\t",
            "exam\0ple.com",
            "example.com\r\n",
            "example.com/path",
            "example.com\\path",
            "ex%61mple.com",
            "a..b",
            ".example.com",
            "*.example.com",
            "ex!ample.com",
            "exämple.com",
            "example.com:80:80",
            long_label.as_str(),
            too_long_name.as_str(),
        ] {
            assert_eq!(host(raw), Err(HostError::Invalid), "{raw:?}");
        }
        let longest_label = "a".repeat(63);
        assert_eq!(host(&longest_label), ok(&longest_label, None));
        assert_eq!(host(&long_name), ok(&long_name, None));
        assert_eq!(host(&format!("{long_name}.")), ok(&long_name, None));
    }

    fn pattern(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_exact_patterns() {
        assert_eq!(
            pattern("API.Example.com."),
            HostPattern::Exact("api.example.com".to_owned())
        );
        assert_eq!(
            pattern("127.0.0.1"),
            HostPattern::Exact("127.0.0.1".to_owned())
        );
        assert_eq!(pattern("[::1]"), HostPattern::Exact("[::1]".to_owned()));
        assert_eq!(pattern("[0::1]"), HostPattern::Exact("[::1]".to_owned()));
        assert!(!pattern("api.example.com").is_wildcard());
    }

    #[test]
    fn parses_wildcard_patterns() {
        assert_eq!(
            pattern("*.Example.COM."),
            HostPattern::Wildcard {
                suffix: ".example.com".to_owned()
            }
        );
        assert_eq!(
            pattern("*.localhost"),
            HostPattern::Wildcard {
                suffix: ".localhost".to_owned()
            }
        );
        assert_eq!(
            pattern("*.com"),
            HostPattern::Wildcard {
                suffix: ".com".to_owned()
            }
        );
        assert!(pattern("*.example.com").is_wildcard());
    }

    #[test]
    fn refuses_invalid_patterns() {
        for s in [
            "*",
            "*.",
            "*..",
            "*..com",
            "**.com",
            "*a.com",
            "a*.com",
            "a.*.com",
            "*.*.com",
            "example.*",
            "*.0.0.1",
            "*.1.2.3.4",
            "*.[::1]",
            "*example.com",
            ".example.com",
            "a..b",
            "exa mple.com",
            "user@example.com",
        ] {
            assert_eq!(HostPattern::parse(s), Err(HostError::Invalid), "{s:?}");
        }
        assert_eq!(HostPattern::parse(""), Err(HostError::Empty));
        for s in [
            "example.com:443",
            "*.example.com:443",
            "[::1]:443",
            "example.com:",
        ] {
            assert_eq!(HostPattern::parse(s), Err(HostError::BadPort), "{s:?}");
        }
        let too_long_suffix = format!("{}.com", ["a"; 124].join("."));
        assert_eq!(too_long_suffix.len(), 251);
        assert!(HostPattern::parse(&format!("*.{too_long_suffix}")).is_ok());
        assert_eq!(
            HostPattern::parse(&format!("*.a{too_long_suffix}")),
            Err(HostError::Invalid)
        );
    }

    #[test]
    fn exact_matches_only_itself() {
        let p = pattern("api.example.com");
        assert!(p.matches("api.example.com"));
        for h in [
            "example.com",
            "x.api.example.com",
            "api.example.co",
            "API.example.com",
            "api.example.com.",
        ] {
            assert!(!p.matches(h), "{h:?}");
        }
        assert!(pattern("[::1]").matches("[::1]"));
        assert!(!pattern("[::1]").matches("::1"));
        assert!(pattern("127.0.0.1").matches("127.0.0.1"));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let p = pattern("*.example.com");
        for h in ["a.example.com", "www.example.com", "x-y_z.example.com"] {
            assert!(p.matches(h), "{h:?}");
        }
        for h in [
            "example.com",
            ".example.com",
            "a.b.example.com",
            "aexample.com",
            "a.example.com.evil",
            "a.example.co",
            "a.other.com",
        ] {
            assert!(!p.matches(h), "{h:?}");
        }
        assert!(pattern("*.localhost").matches("app.localhost"));
        assert!(!pattern("*.localhost").matches("localhost"));
    }

    #[test]
    fn displays_config_spelling() {
        assert_eq!(pattern("*.Example.com").as_str(), "*.example.com");
        assert_eq!(pattern("*.example.com").to_string(), "*.example.com");
        assert_eq!(pattern("Api.Example.com.").as_str(), "api.example.com");
        assert_eq!(pattern("[::1]").to_string(), "[::1]");
        for s in ["*.example.com", "api.example.com", "[::1]", "10.0.0.1"] {
            assert_eq!(
                HostPattern::parse(&pattern(s).as_str()),
                Ok(pattern(s)),
                "{s:?}"
            );
        }
    }

    #[test]
    fn errors_have_reasons() {
        assert_eq!(HostError::Empty.to_string(), "empty host");
        assert_eq!(HostError::Invalid.to_string(), "invalid host");
        assert_eq!(HostError::BadPort.to_string(), "invalid or unexpected port");
    }
}
