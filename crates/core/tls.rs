//! TLS termination: certificates chosen by SNI, and what the HTTP layer needs
//! to know about the connection's certificate.
//!
//! Certificates are loaded and checked here before Pingora ever sees them
//! (Pingora panics on a bad file at service start). The resolver keeps its
//! table in an [`ArcSwap`], so certificates can be replaced without a restart.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use postern_config::{Certificate, CertificateSource, Diagnostics, TlsVersion};
use postern_policy::host::HostPattern;
use postern_policy::hostmap::HostMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::client_cert::ClientCertificate;

/// The TLS 1.2 cipher suites offered: ECDHE with AES-128-GCM, one per key
/// type (the suite RFC 9113 requires of HTTP/2 servers, which every TLS 1.2
/// client that can use HTTP/2 has).
const TLS12_SUITES: [CipherSuite; 2] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

/// The process-wide rustls provider: ring, with every TLS 1.3 suite and
/// only [`TLS12_SUITES`] for TLS 1.2.
///
/// rustls follows the client's preference among the suites it offers, and
/// Pingora 0.9's `TlsSettings` cannot set `ignore_client_order`. With one
/// TLS 1.2 suite per certificate the server, not the client, decides what a
/// TLS 1.2 connection uses (scanners such as testssl.sh rate "no server
/// cipher order" HIGH). TLS 1.3 suites are all AEAD and stay client-chosen.
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|suite| match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => TLS12_SUITES.contains(&suite.suite()),
    });
    provider
}

/// One loaded certificate and the names it serves.
#[derive(Debug)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub names: Arc<[HostPattern]>,
    /// Unix time of the leaf's notAfter.
    pub not_after: i64,
}

/// The certificates of a configuration, indexed for SNI.
#[derive(Debug, Default)]
pub struct CertificateTable {
    /// By server name; the default is the first configured certificate, for
    /// clients that send no (or an unknown) SNI.
    by_name: HostMap<Arc<LoadedCertificate>>,
    min_version: Option<TlsVersion>,
    strict_sni: bool,
    /// In configuration order.
    loaded: Vec<Arc<LoadedCertificate>>,
}

impl CertificateTable {
    pub fn new(
        certificates: Vec<Arc<LoadedCertificate>>,
        min_version: TlsVersion,
        strict_sni: bool,
    ) -> Self {
        let mut by_name = HostMap::new();
        if let Some(first) = certificates.first() {
            by_name.entry(None, || Arc::clone(first));
        }
        for cert in &certificates {
            for name in cert.names.iter() {
                // The first certificate to claim a name keeps it.
                by_name.entry(Some(name), || Arc::clone(cert));
            }
        }
        CertificateTable {
            by_name,
            min_version: Some(min_version),
            strict_sni,
            loaded: certificates,
        }
    }

    pub fn min_version(&self) -> TlsVersion {
        self.min_version.unwrap_or(TlsVersion::Tls12)
    }

    pub fn loaded(&self) -> &[Arc<LoadedCertificate>] {
        &self.loaded
    }

    /// The certificate for an SNI name: exact, then wildcard, then the
    /// default (unless `strict_sni`: then an unknown name gets none, and the
    /// handshake fails). Clients that send no SNI always get the default.
    pub fn select(&self, server_name: Option<&str>) -> Option<&Arc<LoadedCertificate>> {
        match server_name {
            None => self.by_name.default_value(),
            Some(name) if self.strict_sni => self.by_name.get_named(name),
            Some(name) => self.by_name.get(name),
        }
    }
}

/// Chooses the certificate for each handshake from the current table.
#[derive(Debug)]
pub struct SniResolver {
    table: ArcSwap<CertificateTable>,
}

impl SniResolver {
    pub fn new(table: Arc<CertificateTable>) -> Self {
        SniResolver {
            table: ArcSwap::new(table),
        }
    }

    pub fn current(&self) -> Arc<CertificateTable> {
        self.table.load_full()
    }

    /// New handshakes use `table`; established connections are untouched.
    pub fn replace(&self, table: Arc<CertificateTable>) {
        self.table.store(table);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // min_version is enforced before the handshake: see client_hello.rs.
        let table = self.table.load();
        let chosen = table.select(hello.server_name());
        if chosen.is_none() {
            log::info!(
                target: "postern::tls",
                "TLS handshake refused: no certificate serves {:?} and strict_sni is on",
                hello.server_name().unwrap_or("")
            );
        }
        chosen.map(|c| Arc::clone(&c.key))
    }
}

/// Attached to each TLS connection after the handshake, read back per request
/// to answer 421 when the Host is not one the connection's certificate serves.
#[derive(Debug)]
pub struct ConnectionCertificate {
    pub names: Arc<[HostPattern]>,
    /// The client certificate rustls verified against `[tls] client_ca`.
    pub client: Option<ClientCertificate>,
}

/// Pingora's post-handshake hook: records which certificate the connection got.
pub struct HandshakeRecorder {
    pub resolver: Arc<SniResolver>,
}

#[async_trait]
impl TlsAccept for HandshakeRecorder {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let table = self.resolver.current();
        let cert = table.select(tls.server_name())?;
        // Presented means verified: rustls ends the handshake otherwise.
        let client = tls
            .peer_cert_chain_der()
            .and_then(ClientCertificate::from_chain);
        Some(Arc::new(ConnectionCertificate {
            names: Arc::clone(&cert.names),
            client,
        }))
    }
}

/// Loads and checks every configured certificate; problems are reported
/// against the `[[tls.certificates]]` entry they belong to.
pub fn load_certificates(
    certs: &[Certificate],
    diags: &mut Diagnostics,
) -> Vec<Arc<LoadedCertificate>> {
    certs
        .iter()
        .filter_map(|c| match load_certificate(c) {
            Ok(loaded) => {
                for warning in coverage_warnings(c, &loaded) {
                    diags.warning(&c.origin, warning);
                }
                if let Some(warning) = expiry_warning(c, &loaded) {
                    diags.warning(&c.origin, warning);
                }
                if let Some(warning) = chain_order_warning(c, &loaded) {
                    diags.warning(&c.origin, warning);
                }
                Some(Arc::new(loaded))
            }
            Err((message, help)) => {
                diags.error_with_help(&c.origin, message, help);
                None
            }
        })
        .collect()
}

pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

pub fn read_pem(cert: &Path, key: &Path) -> Result<Identity, (String, String)> {
    let cert_path = cert.display();
    let key_path = key.display();
    let chain_pem = std::fs::read(cert).map_err(|e| {
        (
            format!("cannot read certificate {cert_path}: {e}"),
            "check the path and file permissions".to_string(),
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                format!("certificate {cert_path} is not valid PEM: {e}"),
                "give a PEM file with one or more -----BEGIN CERTIFICATE----- blocks, leaf first"
                    .to_string(),
            )
        })?;
    if chain.is_empty() {
        return Err((
            format!("{cert_path} holds no certificate"),
            "give a PEM file with -----BEGIN CERTIFICATE----- blocks, leaf first".to_string(),
        ));
    }
    let key_pem = std::fs::read(key).map_err(|e| {
        (
            format!("cannot read private key {key_path}: {e}"),
            "check the path and file permissions".to_string(),
        )
    })?;
    if String::from_utf8_lossy(&key_pem).contains("ENCRYPTED") {
        return Err((
            format!("private key {key_path} is encrypted"),
            format!("decrypt it once with `openssl pkey -in {key_path} -out plain.pem` and keep that file readable only by the gateway"),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        (format!("{key_path} holds no usable private key: {e}"), "give a PEM key: PKCS#8 (BEGIN PRIVATE KEY), PKCS#1 (BEGIN RSA PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY)".to_string())
    })?;
    Ok((chain, key))
}

/// A PKCS#12 or JKS file, as Domino's `TLSFile`/`TLSPassword` name it.
fn read_keystore(
    path: &Path,
    password_env: Option<&str>,
    alias: Option<&str>,
) -> Result<Identity, (String, String)> {
    let shown = path.display();
    let password = match password_env {
        // Domino's `TLSPassword: ""` works: no variable, empty password.
        None => String::new(),
        Some(var) => std::env::var(var).map_err(|_| {
            (
                format!("keystore {shown}: environment variable {var} (password_env) is not set"),
                format!("export {var} with the keystore password before starting the gateway"),
            )
        })?,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        (
            format!("cannot read keystore {shown}: {e}"),
            "check the path and file permissions".to_string(),
        )
    })?;
    let entry = postern_keystore::load(&bytes, &password, alias).map_err(|e| {
        let help = match &e {
            postern_keystore::KeystoreError::WrongPassword => match password_env {
                Some(var) => format!("check the password in {var}"),
                None => "set password_env to the variable holding the keystore password".to_string(),
            },
            postern_keystore::KeystoreError::SeveralKeys { .. }
            | postern_keystore::KeystoreError::AliasNotFound { .. } => {
                "set alias = \"...\" to one of the key entries listed".to_string()
            }
            _ => "give a PKCS#12 (.pfx/.p12) or JKS keystore holding the certificate chain and its private key".to_string(),
        };
        // The keystore error never contains the password.
        (format!("keystore {shown}: {e}"), help)
    })?;
    let chain = entry.chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(entry.key_pkcs8.into());
    Ok((chain, key))
}

fn load_certificate(c: &Certificate) -> Result<LoadedCertificate, (String, String)> {
    let (chain, key, cert_path, key_path) = match &c.source {
        CertificateSource::Pem { cert, key } => {
            let (chain, private_key) = read_pem(cert, key)?;
            let shown = (cert.display().to_string(), key.display().to_string());
            (chain, private_key, shown.0, shown.1)
        }
        CertificateSource::Keystore {
            path,
            password_env,
            alias,
        } => {
            let (chain, key) = read_keystore(path, password_env.as_deref(), alias.as_deref())?;
            let shown = path.display().to_string();
            (chain, key, shown.clone(), shown)
        }
    };
    let (cert_path, key_path) = (cert_path.as_str(), key_path.as_str());
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("private key {key_path} does not belong to certificate {cert_path}")
            }
            other => format!("cannot use {key_path} with {cert_path}: {other}"),
        };
        (
            message,
            "give the key that was generated with this certificate".to_string(),
        )
    })?;
    let (not_before, not_after) = leaf_validity(&key.cert[0]).map_err(|e| {
        (
            format!("certificate {cert_path}: {e}"),
            "give an X.509 certificate".to_string(),
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if not_after < now {
        return Err((
            format!("certificate {cert_path} has expired"),
            "renew it (e.g. certbot renew) and point `cert` and `key` at the new files".to_string(),
        ));
    }
    // Five minutes of clock skew between issuer and gateway is normal.
    if not_before > now + 300 {
        let starts = x509_parser::time::ASN1Time::from_timestamp(not_before).map_or_else(
            |_| format!("unix time {not_before}"),
            |t| {
                let t = t.to_datetime();
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute()
                )
            },
        );
        return Err((
            format!("certificate {cert_path} is not valid until {starts}; clients would refuse it"),
            "check the machine's clock, or use a certificate that is already valid".to_string(),
        ));
    }
    Ok(LoadedCertificate {
        key: Arc::new(key),
        names: c.server_names.clone().into(),
        not_after,
    })
}

/// Renewal should have happened by 30 days before expiry (certbot renews at 30).
fn expiry_warning(c: &Certificate, loaded: &LoadedCertificate) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = (loaded.not_after - now) / 86_400;
    (days < 30).then(|| {
        format!(
            "certificate {} expires in {days} day(s); renew it (the gateway picks up renewed files without a restart)",
            c.display_path()
        )
    })
}

/// Clients build the path from what is sent: each certificate should be
/// followed by its issuer.
fn chain_order_warning(c: &Certificate, loaded: &LoadedCertificate) -> Option<String> {
    let parsed: Vec<_> = loaded
        .key
        .cert
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .map(|(_, cert)| cert)
        .collect();
    let out_of_order = parsed
        .windows(2)
        .position(|pair| pair[0].issuer() != pair[1].subject());
    out_of_order.map(|i| {
        format!(
            "the chain in {} is not in order: certificate #{} is not followed by its issuer; put the leaf first, then each issuer",
            c.display_path(),
            i + 1
        )
    })
}

/// Unix times of the leaf's notBefore and notAfter.
fn leaf_validity(der: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot parse the leaf certificate: {e}"))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// Names in `server_names` that the certificate itself does not cover: clients
/// would reject the handshake, so say so at check time.
fn coverage_warnings(c: &Certificate, loaded: &LoadedCertificate) -> Vec<String> {
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(loaded.key.cert[0].as_ref()) else {
        return Vec::new();
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    dns.push(d.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => ips.push(bytes.to_vec()),
                _ => {}
            }
        }
    }
    c.server_names
        .iter()
        .filter(|name| {
            let written = name.to_string();
            if let Ok(ip) = written.parse::<std::net::IpAddr>() {
                let octets = match ip {
                    std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                    std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                return !ips.contains(&octets);
            }
            // A wildcard SAN covers the exact names under it, not other wildcards.
            let covered = dns.iter().any(|d| {
                *d == written || (!name.is_wildcard() && HostPattern::parse(d).is_ok_and(|p| p.matches(&written)))
            });
            !covered
        })
        .map(|name| {
            format!(
                "server name {name} is not among the certificate {}'s subject alternative names; clients will reject it",
                c.display_path()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(names: &[&str]) -> Arc<LoadedCertificate> {
        let generated = rcgen::generate_simple_self_signed(vec!["x.test".to_string()]).unwrap();
        let key_der = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let key =
            CertifiedKey::from_der(vec![generated.cert.der().clone()], key_der, &provider).unwrap();
        Arc::new(LoadedCertificate {
            key: Arc::new(key),
            names: names
                .iter()
                .map(|n| HostPattern::parse(n).unwrap())
                .collect(),
            not_after: 0,
        })
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first_certificate() {
        let first = loaded(&["first.test"]);
        let wildcard = loaded(&["*.example.com"]);
        let exact = loaded(&["api.example.com", "first.test"]);
        let certificates = vec![
            Arc::clone(&first),
            Arc::clone(&wildcard),
            Arc::clone(&exact),
        ];
        for strict in [false, true] {
            let table = CertificateTable::new(certificates.clone(), TlsVersion::Tls12, strict);
            let pick = |sni| table.select(sni).map(Arc::clone);
            let is = |got: Option<Arc<LoadedCertificate>>, want: &Arc<LoadedCertificate>| {
                got.is_some_and(|g| Arc::ptr_eq(&g, want))
            };
            assert!(is(pick(Some("api.example.com")), &exact));
            assert!(is(pick(Some("API.example.com.")), &exact), "one SNI form");
            assert!(is(pick(Some("www.example.com")), &wildcard));
            assert!(
                is(pick(Some("first.test")), &first),
                "the first claim keeps a name"
            );
            assert!(is(pick(None), &first), "no SNI: the first certificate");
            match strict {
                false => assert!(is(pick(Some("unknown.test")), &first)),
                true => assert!(pick(Some("unknown.test")).is_none(), "strict_sni"),
            }
        }
    }
}
