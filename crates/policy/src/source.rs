//! Who the client is, and whether a source allowlist admits it.
//!
//! The decision is made on the TCP peer address. Forwarding headers are read
//! only when the peer itself is a trusted proxy, and then only as far back as
//! the chain stays within trusted proxies: a client can never make itself look
//! local by sending headers.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A set of source networks, written as CIDRs, bare addresses or `loopback`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    /// The entries as the operator wrote them, for display.
    written: Vec<String>,
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry as written.
    pub entry: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a CIDR (\"10.0.0.0/8\", \"fd00::/8\"), an IP address or \"loopback\"",
            self.entry
        )
    }
}

impl std::error::Error for EntryError {}

impl Allowlist {
    /// Parses one entry: `loopback` (127.0.0.0/8 and ::1), a CIDR, or an address.
    pub fn parse_entry(entry: &str) -> Result<Vec<IpNet>, EntryError> {
        let trimmed = entry.trim();
        if trimmed.eq_ignore_ascii_case("loopback") || trimmed.eq_ignore_ascii_case("localhost") {
            return Ok(vec![
                "127.0.0.0/8".parse().expect("valid literal"),
                "::1/128".parse().expect("valid literal"),
            ]);
        }
        if let Ok(net) = trimmed.parse::<IpNet>() {
            // Host bits set ("10.0.0.1/8") are almost always a typo for the
            // network; trunc() makes the meaning the obvious one.
            return Ok(vec![net.trunc()]);
        }
        if let Ok(addr) = trimmed.parse::<IpAddr>() {
            return Ok(vec![IpNet::from(addr)]);
        }
        Err(EntryError {
            entry: entry.to_string(),
        })
    }

    /// Parses every entry, as [`Allowlist::parse_entry`] does, keeping them
    /// as written for display.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Allowlist, EntryError> {
        let mut list = Allowlist::default();
        for entry in entries {
            list.nets.extend(Allowlist::parse_entry(entry)?);
            list.written.push(entry.to_string());
        }
        Ok(list)
    }

    /// Whether `addr` is inside one of the entries (IPv4-mapped IPv6
    /// addresses count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = unmap(addr);
        self.nets.iter().any(|net| net.contains(&addr))
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The entries as written in the configuration.
    pub fn entries(&self) -> &[String] {
        &self.written
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.written.join(", "))
    }
}

/// An IPv4 client seen through a dual-stack socket arrives as `::ffff:a.b.c.d`;
/// it must meet IPv4 rules, or `allow = ["127.0.0.1"]` would not admit it.
pub fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client a request is judged as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The address the decision is made on.
    Known(IpAddr),
    /// A trusted proxy sent a chain that could not be read; no allowlist admits it.
    Unknown,
}

/// Finds the client behind `peer`.
///
/// Untrusted peer: the peer. Trusted peer: `x_forwarded_for` (or, without it,
/// the `for=` values of `forwarded`) walked right to left, skipping trusted
/// hops; the first untrusted hop is the client. A chain that cannot be read
/// gives [`Client::Unknown`] rather than the proxy's own, possibly privileged,
/// address.
pub fn client(
    peer: IpAddr,
    trusted_proxies: &Allowlist,
    x_forwarded_for: Option<&str>,
    forwarded: Option<&str>,
) -> Client {
    let peer = unmap(peer);
    if !trusted_proxies.contains(peer) {
        return Client::Known(peer);
    }
    let hops: Vec<Option<IpAddr>> = match (x_forwarded_for, forwarded) {
        (Some(xff), _) => xff.split(',').map(|hop| parse_hop(hop.trim())).collect(),
        (None, Some(fwd)) => forwarded_for_values(fwd),
        (None, None) => return Client::Known(peer),
    };
    let mut last_trusted = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(addr) if trusted_proxies.contains(*addr) => last_trusted = *addr,
            Some(addr) => return Client::Known(*addr),
            None => return Client::Unknown,
        }
    }
    if hops.is_empty() {
        Client::Unknown
    } else {
        Client::Known(last_trusted)
    }
}

/// One hop of X-Forwarded-For or a Forwarded `for=` value: an address,
/// optionally bracketed or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(unmap(addr));
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(unmap(sock.ip()));
    }
    if let Some(inner) = hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<IpAddr>().ok().map(unmap);
    }
    None
}

/// The `for=` value of each element of a Forwarded header, in order; `None`
/// where an element has no readable address (obfuscated, `unknown`, missing).
pub fn forwarded_for_values(header: &str) -> Vec<Option<IpAddr>> {
    header
        .split(',')
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_hop(value))
                })
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn loopback_alias_covers_both_families() {
        let l = list(&["loopback"]);
        assert!(l.contains(ip("127.0.0.1")));
        assert!(l.contains(ip("127.255.0.9")));
        assert!(l.contains(ip("::1")));
        assert!(l.contains(ip("::ffff:127.0.0.1")));
        assert!(!l.contains(ip("10.0.0.1")));
        assert!(!l.contains(ip("::2")));
    }

    #[test]
    fn cidrs_and_addresses() {
        let l = list(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(l.contains(ip("10.200.3.4")));
        assert!(l.contains(ip("192.168.1.7")));
        assert!(!l.contains(ip("192.168.1.8")));
        assert!(l.contains(ip("fd12::1")));
        assert!(!l.contains(ip("fe80::1")));
        assert_eq!(l.entries(), ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
    }

    #[test]
    fn host_bits_are_truncated() {
        assert!(list(&["10.1.2.3/8"]).contains(ip("10.9.9.9")));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0", "loopback6"] {
            assert!(Allowlist::parse([bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = list(&["10.0.0.0/8"]);
        assert_eq!(
            client(
                ip("203.0.113.9"),
                &trusted,
                Some("127.0.0.1"),
                Some("for=127.0.0.1")
            ),
            Client::Known(ip("203.0.113.9"))
        );
        assert_eq!(
            client(
                ip("127.0.0.1"),
                &Allowlist::default(),
                Some("10.1.1.1"),
                None
            ),
            Client::Known(ip("127.0.0.1"))
        );
    }

    #[test]
    fn trusted_peer_walks_the_chain_right_to_left() {
        let trusted = list(&["10.0.0.0/8"]);
        // A client-supplied "127.0.0.1" at the left is never reached.
        assert_eq!(
            client(
                ip("10.0.0.2"),
                &trusted,
                Some("127.0.0.1, 198.51.100.4, 10.0.0.7"),
                None
            ),
            Client::Known(ip("198.51.100.4"))
        );
        assert_eq!(
            client(
                ip("10.0.0.2"),
                &trusted,
                None,
                Some("for=198.51.100.4;proto=https, for=\"[2001:db8::1]:443\"")
            ),
            Client::Known(ip("2001:db8::1"))
        );
        assert_eq!(
            client(ip("10.0.0.2"), &trusted, Some("10.0.0.9"), None),
            Client::Known(ip("10.0.0.9"))
        );
        assert_eq!(
            client(ip("10.0.0.2"), &trusted, None, None),
            Client::Known(ip("10.0.0.2"))
        );
    }

    #[test]
    fn unreadable_chain_from_trusted_peer_is_unknown() {
        let trusted = list(&["loopback"]);
        assert_eq!(
            client(ip("127.0.0.1"), &trusted, Some("garbage"), None),
            Client::Unknown
        );
        assert_eq!(
            client(ip("127.0.0.1"), &trusted, Some(""), None),
            Client::Unknown
        );
        assert_eq!(
            client(ip("127.0.0.1"), &trusted, Some("198.51.100.4, junk"), None),
            Client::Unknown
        );
    }
}
