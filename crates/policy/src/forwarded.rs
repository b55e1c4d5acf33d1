//! The forwarding headers the gateway sets on every request it forwards.
//!
//! Client-sent values are replaced, never passed through, unless the peer is a
//! trusted proxy; then the peer is appended to the chain that proxy sent, as
//! nginx's `$proxy_add_x_forwarded_for` does.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::source::{forwarded_for_values, unmap};

/// Header names the gateway owns on the upstream request.
pub const OWNED_HEADERS: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-request-id",
];

/// What the gateway knows about the client connection.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is in `trusted_proxies`.
    pub peer_trusted: bool,
    /// The client the policy decision was made on.
    pub client: IpAddr,
    /// "https" or "http".
    pub proto: &'a str,
    /// The Host the client asked for, as validated.
    pub host: &'a str,
    /// The gateway port the client connected to.
    pub port: u16,
}

/// The values to set, in [`OWNED_HEADERS`] order (without the request id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingHeaders {
    /// The `X-Forwarded-For` value.
    pub x_forwarded_for: String,
    /// The `X-Forwarded-Proto` value: "https" or "http".
    pub x_forwarded_proto: String,
    /// The `X-Forwarded-Host` value: the Host the client asked for.
    pub x_forwarded_host: String,
    /// The `X-Forwarded-Port` value: the gateway port the client connected to.
    pub x_forwarded_port: String,
    /// The `X-Real-IP` value: the client address.
    pub x_real_ip: String,
    /// The `Forwarded` (RFC 7239) value.
    pub forwarded: String,
}

/// The three headers that carry the client chain; the others copy the hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHeaders {
    /// The `X-Forwarded-For` value: the trusted chain, then the peer.
    pub x_forwarded_for: String,
    /// The `X-Real-IP` value: the client.
    pub x_real_ip: String,
    /// The `Forwarded` (RFC 7239) value.
    pub forwarded: String,
}

impl ChainHeaders {
    /// Builds the chain from the connection and the incoming values (which
    /// are kept only when the peer is trusted).
    pub fn new(
        hop: &Hop<'_>,
        incoming_xff: Option<&str>,
        incoming_forwarded: Option<&str>,
    ) -> Self {
        let peer = unmap(hop.peer);
        // A trusted proxy that speaks only RFC 7239 still gets an
        // X-Forwarded-For chain that agrees with X-Real-IP.
        let xff_from_forwarded = || {
            let hops: Option<Vec<String>> = forwarded_for_values(incoming_forwarded?)
                .into_iter()
                .map(|hop| hop.map(|addr| addr.to_string()))
                .collect();
            hops.filter(|h| !h.is_empty()).map(|h| h.join(", "))
        };
        let xff_chain = match incoming_xff.map(str::trim).filter(|v| !v.is_empty()) {
            _ if !hop.peer_trusted => None,
            Some(chain) => Some(chain.to_string()),
            None => xff_from_forwarded(),
        };
        let mut x_forwarded_for = String::with_capacity(64);
        if let Some(chain) = xff_chain {
            x_forwarded_for.push_str(&chain);
            x_forwarded_for.push_str(", ");
        }
        // The peer is formatted once and copied into the other headers that
        // name it: formatting an address costs more than the copy.
        let peer_at = x_forwarded_for.len();
        let _ = write!(x_forwarded_for, "{peer}");
        let peer_text = &x_forwarded_for[peer_at..];
        let forwarded_chain = incoming_forwarded
            .filter(|_| hop.peer_trusted)
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let mut forwarded = String::with_capacity(64 + hop.host.len());
        if let Some(chain) = forwarded_chain {
            forwarded.push_str(chain);
            forwarded.push_str(", ");
        }
        forwarded.push_str("for=");
        push_forwarded_node(&mut forwarded, peer, peer_text);
        forwarded.push_str(";proto=");
        forwarded.push_str(hop.proto);
        forwarded.push_str(";host=");
        push_quoted(&mut forwarded, hop.host);
        let client = unmap(hop.client);
        let x_real_ip = if client == peer {
            peer_text.to_owned()
        } else {
            client.to_string()
        };
        ChainHeaders {
            x_forwarded_for,
            x_real_ip,
            forwarded,
        }
    }
}

impl ForwardingHeaders {
    /// Builds the headers from the connection and the incoming values (which
    /// are kept only when the peer is trusted).
    pub fn new(
        hop: &Hop<'_>,
        incoming_xff: Option<&str>,
        incoming_forwarded: Option<&str>,
    ) -> Self {
        let chain = ChainHeaders::new(hop, incoming_xff, incoming_forwarded);
        ForwardingHeaders {
            x_forwarded_for: chain.x_forwarded_for,
            x_forwarded_proto: hop.proto.to_string(),
            x_forwarded_host: hop.host.to_string(),
            x_forwarded_port: hop.port.to_string(),
            x_real_ip: chain.x_real_ip,
            forwarded: chain.forwarded,
        }
    }

    /// (name, value) pairs ready to set.
    pub fn pairs(&self) -> [(&'static str, &str); 6] {
        [
            ("x-forwarded-for", &self.x_forwarded_for),
            ("x-forwarded-proto", &self.x_forwarded_proto),
            ("x-forwarded-host", &self.x_forwarded_host),
            ("x-forwarded-port", &self.x_forwarded_port),
            ("x-real-ip", &self.x_real_ip),
            ("forwarded", &self.forwarded),
        ]
    }
}

/// Appends an RFC 7239 node: IPv6 must be bracketed and quoted. `text` is
/// `addr` already formatted.
fn push_forwarded_node(out: &mut String, addr: IpAddr, text: &str) {
    match addr {
        IpAddr::V4(_) => out.push_str(text),
        IpAddr::V6(_) => {
            out.push_str("\"[");
            out.push_str(text);
            out.push_str("]\"");
        }
    }
}

/// Appends `value` as an RFC 7230 quoted-string.
fn push_quoted(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Accepts a client's X-Request-Id only when it is short and plain, so it
/// cannot smuggle anything into logs or the upstream.
pub fn acceptable_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(peer: &str, trusted: bool) -> Hop<'static> {
        Hop {
            peer: peer.parse().unwrap(),
            peer_trusted: trusted,
            client: peer.parse().unwrap(),
            proto: "https",
            host: "api.example.com",
            port: 443,
        }
    }

    #[test]
    fn untrusted_peer_replaces_client_values() {
        let h = ForwardingHeaders::new(
            &hop("203.0.113.5", false),
            Some("127.0.0.1"),
            Some("for=127.0.0.1"),
        );
        assert_eq!(h.x_forwarded_for, "203.0.113.5");
        assert_eq!(h.x_real_ip, "203.0.113.5");
        assert_eq!(
            h.forwarded,
            "for=203.0.113.5;proto=https;host=\"api.example.com\""
        );
        assert_eq!(h.x_forwarded_proto, "https");
        assert_eq!(h.x_forwarded_port, "443");
        assert_eq!(h.x_forwarded_host, "api.example.com");
    }

    #[test]
    fn trusted_peer_is_appended() {
        let mut hp = hop("10.0.0.2", true);
        hp.client = "198.51.100.4".parse().unwrap();
        let h = ForwardingHeaders::new(&hp, Some("198.51.100.4"), Some("for=198.51.100.4"));
        assert_eq!(h.x_forwarded_for, "198.51.100.4, 10.0.0.2");
        assert_eq!(h.x_real_ip, "198.51.100.4");
        assert_eq!(
            h.forwarded,
            "for=198.51.100.4, for=10.0.0.2;proto=https;host=\"api.example.com\""
        );
    }

    #[test]
    fn trusted_peer_with_only_forwarded_gets_a_matching_xff_chain() {
        let mut hp = hop("10.0.0.2", true);
        hp.client = "198.51.100.4".parse().unwrap();
        let h = ForwardingHeaders::new(
            &hp,
            None,
            Some("for=\"[2001:db8::1]:80\", for=198.51.100.4"),
        );
        assert_eq!(h.x_forwarded_for, "2001:db8::1, 198.51.100.4, 10.0.0.2");
        let untrusted = ForwardingHeaders::new(&hop("10.0.0.2", false), None, Some("for=1.2.3.4"));
        assert_eq!(untrusted.x_forwarded_for, "10.0.0.2");
    }

    #[test]
    fn ipv6_is_bracketed_and_mapped_v4_unmapped() {
        let h = ForwardingHeaders::new(&hop("::1", false), None, None);
        assert!(h.forwarded.starts_with("for=\"[::1]\";"), "{}", h.forwarded);
        let h = ForwardingHeaders::new(&hop("::ffff:192.0.2.1", false), None, None);
        assert_eq!(h.x_forwarded_for, "192.0.2.1");
    }

    #[test]
    fn request_ids() {
        assert!(acceptable_request_id("3f2a-ab_01"));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id("a\"b"));
        assert!(!acceptable_request_id(&"a".repeat(129)));
    }
}
