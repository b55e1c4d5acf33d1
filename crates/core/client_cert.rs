//! TLS client certificates: the verifier built from `[tls] client_ca`, and
//! what the gateway keeps of a verified certificate for the requests of its
//! connection (parsed once, at the handshake).
//!
//! The certificate is asked for, never required, so routes without a
//! client_cert authenticator keep working for clients that have none. A
//! certificate that is presented must verify (chain to `client_ca`, be within
//! its validity, carry the clientAuth usage if it lists usages): otherwise
//! rustls ends the handshake, as nginx does with `ssl_verify_client optional`.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;
use postern_auth::client_cert::PresentedCertificate;
use postern_config::{ClientCa, Diagnostics};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

/// The verifier for `[tls] client_ca`; errors go to `diags` against the key.
pub fn verifier(ca: &ClientCa, diags: &mut Diagnostics) -> Option<Arc<dyn ClientCertVerifier>> {
    match load_verifier(ca) {
        Ok(verifier) => Some(verifier),
        Err((message, help)) => {
            diags.error_with_help(&ca.origin, message, help);
            None
        }
    }
}

fn load_verifier(ca: &ClientCa) -> Result<Arc<dyn ClientCertVerifier>, (String, String)> {
    let shown = ca.path.display();
    let help = "give a PEM file with the -----BEGIN CERTIFICATE----- block of each CA that signs client certificates";
    let pem = std::fs::read(&ca.path).map_err(|e| {
        (
            format!("cannot read client_ca {shown}: {e}"),
            "check the path and that the gateway's user can read it".to_string(),
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                format!("client_ca {shown} is not valid PEM: {e}"),
                help.to_string(),
            )
        })?;
    if certs.is_empty() {
        return Err((
            format!("client_ca {shown} holds no certificate"),
            help.to_string(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            (
                format!(
                    "client_ca {shown}: certificate #{} is not a usable CA certificate: {e}",
                    i + 1
                ),
                help.to_string(),
            )
        })?;
    }
    let provider = Arc::new(crate::tls::crypto_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| (format!("client_ca {shown}: {e}"), help.to_string()))
}

/// A connection's verified client certificate, as its requests use it.
#[derive(Debug)]
pub struct ClientCertificate {
    /// Subject and SANs, for client_cert authenticators.
    pub presented: PresentedCertificate,
    /// RFC 9440 `Client-Cert`: the leaf as `:BASE64:`.
    pub header: HeaderValue,
    /// RFC 9440 `Client-Cert-Chain`: the rest of the chain the client sent,
    /// each as `:BASE64:`, comma-separated; None when it sent the leaf only.
    pub chain_header: Option<HeaderValue>,
}

/// The `Client-Cert` request header (RFC 9440).
pub static CLIENT_CERT: http::HeaderName = http::HeaderName::from_static("client-cert");
/// The `Client-Cert-Chain` request header (RFC 9440).
pub static CLIENT_CERT_CHAIN: http::HeaderName = http::HeaderName::from_static("client-cert-chain");

impl ClientCertificate {
    /// Parses the chain rustls verified, leaf first; None when there is none
    /// or the leaf cannot be read (then the connection counts as presenting
    /// no certificate: fail closed).
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Self> {
        let leaf = chain.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| {
                log::warn!(target: "postern::tls", "verified client certificate cannot be parsed ({e}); treated as none");
            })
            .ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                        sans.push((*s).to_string())
                    }
                    _ => {}
                }
            }
        }
        let byte_sequence =
            |der: &CertificateDer<'_>| format!(":{}:", STANDARD.encode(der.as_ref()));
        let header = HeaderValue::from_str(&byte_sequence(leaf)).ok()?;
        let rest: Vec<String> = chain[1..].iter().map(byte_sequence).collect();
        let chain_header = match rest.is_empty() {
            true => None,
            false => Some(HeaderValue::from_str(&rest.join(", ")).ok()?),
        };
        Some(ClientCertificate {
            presented: PresentedCertificate {
                subject: rfc4514(parsed.subject()),
                sans,
            },
            header,
            chain_header,
        })
    }
}

/// The RFC 4514 string of a DN: the last RDN first, RFC 4514's short names
/// (as Java's `X500Principal.getName(RFC2253)`, which Keycloak compares),
/// other attributes as dotted OIDs with `#` and the hex of their DER value.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let value = attribute.attr_value();
                    match (short_name(&oid), value.as_str()) {
                        (Some(short), Ok(text)) => format!("{short}={}", escape(text)),
                        (label, _) => {
                            let hex: String = value_der(value)
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect();
                            format!("{}=#{hex}", label.unwrap_or(&oid))
                        }
                    }
                })
                .collect();
            parts.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The DER of an attribute value: tag, length, content.
fn value_der(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Vec<u8> {
    use x509_parser::der_parser::asn1_rs::ToDer;
    value.to_der_vec().unwrap_or_default()
}

/// RFC 4514 §3's short names.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 §2.4: the specials anywhere, `#` and space at the start, space
/// at the end, NUL as `\00`.
fn escape(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};

    fn certificate(params: CertificateParams) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn subject_is_rfc4514_most_specific_first_and_escaped() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // rcgen starts with a CN; the RDNs here go in certificate order.
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(DnType::CommonName, " ops+admin");
        let der = certificate(params);
        let parsed = ClientCertificate::from_chain(&[der]).unwrap();
        assert_eq!(
            parsed.presented.subject,
            "CN=\\ ops\\+admin,O=Example\\, Inc.,C=DE"
        );
    }

    #[test]
    fn unknown_attributes_are_dotted_oids_with_hex() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "a");
        params.distinguished_name.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            DnValue::Ia5String("a@b".try_into().unwrap()),
        );
        let parsed = ClientCertificate::from_chain(&[certificate(params)]).unwrap();
        assert_eq!(
            parsed.presented.subject,
            "1.2.840.113549.1.9.1=#1603614062,CN=a"
        );
    }

    #[test]
    fn sans_and_rfc9440_headers() {
        let mut params = CertificateParams::new(vec!["ops.example.com".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("ops@example.com".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::URI("spiffe://example.com/ops".try_into().unwrap()));
        let leaf = certificate(params);
        let other = certificate(CertificateParams::new(Vec::<String>::new()).unwrap());
        let parsed =
            ClientCertificate::from_chain(&[leaf.clone(), other.clone(), other.clone()]).unwrap();
        assert_eq!(
            parsed.presented.sans,
            [
                "ops.example.com",
                "ops@example.com",
                "spiffe://example.com/ops"
            ]
        );
        let b64 = |der: &CertificateDer<'_>| STANDARD.encode(der.as_ref());
        assert_eq!(parsed.header, format!(":{}:", b64(&leaf)).as_str());
        let chain = format!(":{}:, :{}:", b64(&other), b64(&other));
        assert_eq!(parsed.chain_header.unwrap(), chain.as_str());
        let alone = ClientCertificate::from_chain(&[leaf]).unwrap();
        assert!(
            alone.chain_header.is_none(),
            "only the leaf: no chain header"
        );
        assert!(ClientCertificate::from_chain(&[]).is_none());
    }
}
