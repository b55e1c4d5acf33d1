//! Enforces `[tls] min_version = "1.3"` before the TLS library sees the
//! connection.
//!
//! Pingora's rustls acceptor always enables TLS 1.2 and 1.3, and rustls shows
//! a certificate resolver neither the client's `supported_versions` nor the
//! version it chose. So the listener peeks at the ClientHello (then puts the
//! bytes back), and refuses with a `protocol_version` alert any client that
//! does not offer TLS 1.3: what nginx's `ssl_protocols TLSv1.3` does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::GetSocketDigest;
use postern_config::TlsVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tls::SniResolver;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SUPPORTED_VERSIONS: u16 = 0x002b;
const TLS13: u16 = 0x0304;
/// A record's plaintext may not exceed 2^14 bytes (RFC 8446 5.1).
const MAX_RECORD: usize = 1 << 14;
/// Post-quantum key shares make hellos bigger, but none needs more than this.
const MAX_HELLO: usize = 1 << 16;
/// How long a client may take to send its whole ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS alert record: fatal (2), protocol_version (70).
const PROTOCOL_VERSION_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];

/// What the bytes read so far say about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloScan {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// A complete ClientHello; whether its `supported_versions` lists TLS 1.3.
    Complete { offers_tls13: bool },
    /// Not a ClientHello this scanner understands; left for rustls to refuse.
    Unreadable,
}

/// Scans the start of a TLS connection for the ClientHello.
pub fn scan(bytes: &[u8]) -> HelloScan {
    let mut message = Vec::new();
    let mut rest = bytes;
    loop {
        if let Some(done) = complete_message(&message) {
            return match done {
                Some(body) => parse_client_hello(body),
                None => HelloScan::Unreadable,
            };
        }
        if rest.len() < 5 {
            return HelloScan::NeedMore;
        }
        let length = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest[0] != CONTENT_HANDSHAKE || length == 0 || length > MAX_RECORD {
            return HelloScan::Unreadable;
        }
        let Some(fragment) = rest.get(5..5 + length) else {
            return HelloScan::NeedMore;
        };
        message.extend_from_slice(fragment);
        rest = &rest[5 + length..];
    }
}

/// `None` while the handshake message is incomplete; `Some(None)` when it is
/// not a ClientHello or is too large; `Some(Some(body))` when complete.
fn complete_message(message: &[u8]) -> Option<Option<&[u8]>> {
    if message.len() < 4 {
        return None;
    }
    if message[0] != HANDSHAKE_CLIENT_HELLO {
        return Some(None);
    }
    let length =
        usize::from(message[1]) << 16 | usize::from(message[2]) << 8 | usize::from(message[3]);
    if length > MAX_HELLO {
        return Some(None);
    }
    message.get(4..4 + length).map(Some)
}

fn parse_client_hello(body: &[u8]) -> HelloScan {
    let mut reader = Reader(body);
    let parsed = (|| {
        reader.take(2 + 32)?; // legacy_version, random
        let session_id = reader.u8()?;
        reader.take(session_id.into())?;
        let suites = reader.u16()?;
        reader.take(suites.into())?;
        let compression = reader.u8()?;
        reader.take(compression.into())?;
        if reader.0.is_empty() {
            // No extensions at all: a TLS 1.2 (or older) client.
            return Some(false);
        }
        let extensions_length = reader.u16()?;
        let mut extensions = Reader(reader.take(extensions_length.into())?);
        while !extensions.0.is_empty() {
            let kind = extensions.u16()?;
            let length = extensions.u16()?;
            let data = extensions.take(length.into())?;
            if kind == EXTENSION_SUPPORTED_VERSIONS {
                let mut versions = Reader(data);
                let list_length = versions.u8()?;
                let list = versions.take(list_length.into())?;
                return Some(
                    list.chunks_exact(2)
                        .any(|v| u16::from_be_bytes([v[0], v[1]]) == TLS13),
                );
            }
        }
        Some(false)
    })();
    match parsed {
        Some(offers_tls13) => HelloScan::Complete { offers_tls13 },
        None => HelloScan::Unreadable,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

/// The pre-TLS step of every TLS listener. It reads the minimum version from
/// the live certificate table, so a reload that changes it applies to new
/// connections.
pub struct MinimumVersionGate {
    pub resolver: Arc<SniResolver>,
}

#[async_trait]
impl PreTlsProcess for MinimumVersionGate {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        if self.resolver.current().min_version() != TlsVersion::Tls13 {
            return Ok(());
        }
        let mut seen = Vec::with_capacity(1024);
        let verdict = tokio::time::timeout(HELLO_TIMEOUT, async {
            let mut chunk = [0u8; 4096];
            loop {
                match scan(&seen) {
                    HelloScan::NeedMore if seen.len() <= MAX_HELLO + MAX_RECORD => {}
                    HelloScan::NeedMore => return HelloScan::Unreadable,
                    verdict => return verdict,
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return HelloScan::Unreadable,
                    Ok(n) => seen.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .unwrap_or(HelloScan::Unreadable);
        if verdict
            == (HelloScan::Complete {
                offers_tls13: false,
            })
        {
            let peer = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().map(|a| a.to_string()))
                .unwrap_or_default();
            log::info!(
                "TLS handshake refused from {peer}: client does not offer TLS 1.3 and min_version is 1.3"
            );
            // Best effort: the client learns why, then the connection is dropped.
            let _ = stream.write_all(&PROTOCOL_VERSION_ALERT).await;
            let _ = stream.flush().await;
            return Err(pingora::Error::explain(
                pingora::ErrorType::HandshakeError,
                "client does not offer TLS 1.3",
            ));
        }
        // Whatever was read goes back for rustls, which refuses anything that
        // is not TLS with its own alert.
        stream.rewind(&seen);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::pki_types::ServerName;

    fn client_hello(versions: &[&'static rustls::SupportedProtocolVersion]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("api.example.com").unwrap(),
        )
        .unwrap();
        let mut bytes = Vec::new();
        conn.write_tls(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn real_client_hellos_are_read() {
        let both = client_hello(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        assert_eq!(scan(&both), HelloScan::Complete { offers_tls13: true });
        let tls13 = client_hello(&[&rustls::version::TLS13]);
        assert_eq!(scan(&tls13), HelloScan::Complete { offers_tls13: true });
        let tls12 = client_hello(&[&rustls::version::TLS12]);
        assert_eq!(
            scan(&tls12),
            HelloScan::Complete {
                offers_tls13: false
            }
        );
    }

    #[test]
    fn every_truncation_needs_more() {
        let hello = client_hello(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        for end in 0..hello.len() {
            assert_eq!(scan(&hello[..end]), HelloScan::NeedMore, "cut at {end}");
        }
    }

    #[test]
    fn a_hello_split_over_records_is_reassembled() {
        let hello = client_hello(&[&rustls::version::TLS12]);
        let message = &hello[5..];
        let (first, second) = message.split_at(10);
        let mut split = Vec::new();
        for fragment in [first, second] {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
            split.extend_from_slice(fragment);
        }
        assert_eq!(
            scan(&split),
            HelloScan::Complete {
                offers_tls13: false
            }
        );
    }

    #[test]
    fn non_tls_is_left_to_rustls() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\n\r\n"), HelloScan::Unreadable);
        // A handshake record that is not a ClientHello.
        assert_eq!(scan(&[22, 3, 3, 0, 4, 2, 0, 0, 0]), HelloScan::Unreadable);
        // Zero-length and oversized records.
        assert_eq!(scan(&[22, 3, 3, 0, 0]), HelloScan::Unreadable);
        assert_eq!(scan(&[22, 3, 3, 0x40, 0x01]), HelloScan::Unreadable);
        // A ClientHello whose declared length exceeds the cap.
        assert_eq!(
            scan(&[22, 3, 3, 0, 4, 1, 0x01, 0, 1]),
            HelloScan::Unreadable
        );
    }

    #[test]
    fn garbage_inside_a_complete_hello_is_unreadable_not_a_panic() {
        let hello = client_hello(&[&rustls::version::TLS13]);
        for i in 9..hello.len() {
            let mut bad = hello.clone();
            bad[i] = 0xff;
            let _ = scan(&bad);
            bad.truncate(i);
            let _ = scan(&bad);
        }
    }
}
