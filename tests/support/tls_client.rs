//! The TLS client: rustls with a chosen SNI, ALPN, versions and cipher
//! suites, verifying the served certificate for a chosen name.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::http1::{HttpConn, REQUEST_TIMEOUT};

pub type TlsConn = HttpConn<TlsStream<TcpStream>>;

impl TlsConn {
    /// The served certificate chain, leaf first.
    pub fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }

    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }

    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }
}

/// How a test client connects.
#[derive(Clone)]
pub struct TlsOptions {
    /// The SNI sent, or none at all.
    pub sni: Option<String>,
    /// The name the served certificate must be valid for.
    pub verify_as: String,
    pub alpn: Vec<Vec<u8>>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// Offer only TLS 1.2 cipher suites in the ClientHello (rustls lists its
    /// TLS 1.3 suites even when TLS 1.3 is disabled, as many clients do).
    pub tls12_suites_only: bool,
    /// Offer exactly these cipher suites, in this order.
    pub suites: Option<Vec<rustls::CipherSuite>>,
    /// A client certificate chain (leaf first) and its PKCS#8 key, offered
    /// when the server asks for one.
    pub client_identity: Option<(Vec<CertificateDer<'static>>, Vec<u8>)>,
}

impl TlsOptions {
    /// SNI `name`, verified as `name`, ALPN http/1.1, TLS 1.2 and 1.3.
    pub fn sni(name: &str) -> Self {
        TlsOptions {
            sni: Some(name.to_string()),
            verify_as: name.to_string(),
            alpn: vec![b"http/1.1".to_vec()],
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            tls12_suites_only: false,
            suites: None,
            client_identity: None,
        }
    }

    /// No SNI; the served certificate must be valid for `verify_as`.
    pub fn no_sni(verify_as: &str) -> Self {
        TlsOptions {
            sni: None,
            ..TlsOptions::sni(verify_as)
        }
    }

    pub fn verify_as(mut self, name: &str) -> Self {
        self.verify_as = name.to_string();
        self
    }

    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    pub fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// TLS 1.2 only, offering exactly `suites`, in this order.
    pub fn tls12_suites(mut self, suites: &[rustls::CipherSuite]) -> Self {
        self.versions = vec![&rustls::version::TLS12];
        self.suites = Some(suites.to_vec());
        self
    }

    /// Present `chain` (leaf first) with the PKCS#8 `key` if asked for a certificate.
    pub fn client_cert(mut self, chain: Vec<CertificateDer<'static>>, key_pkcs8: Vec<u8>) -> Self {
        self.client_identity = Some((chain, key_pkcs8));
        self
    }

    /// TLS 1.2 only, offering no TLS 1.3 cipher suite at all.
    pub fn tls12_suites_only(mut self) -> Self {
        self.versions = vec![&rustls::version::TLS12];
        self.tls12_suites_only = true;
        self
    }
}

/// Verifies the server's certificate for a fixed name, whatever SNI was
/// sent, so a test can send one name and check the certificate carries another.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn server_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string())
        .unwrap_or_else(|e| panic!("{name:?} is not a server name: {e}"))
}

/// Connects to 127.0.0.1:`port` and completes a TLS handshake trusting `ca`.
pub async fn tls_connect(
    port: u16,
    ca: &CertificateDer<'static>,
    options: TlsOptions,
) -> io::Result<TlsConn> {
    let mut provider = rustls::crypto::ring::default_provider();
    if options.tls12_suites_only {
        provider
            .cipher_suites
            .retain(|suite| matches!(suite, rustls::SupportedCipherSuite::Tls12(_)));
    }
    if let Some(wanted) = &options.suites {
        let all = std::mem::take(&mut provider.cipher_suites);
        provider.cipher_suites = wanted
            .iter()
            .filter_map(|w| all.iter().find(|s| s.suite() == *w).copied())
            .collect();
    }
    let provider = Arc::new(provider);
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(io::Error::other)?;
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(io::Error::other)?;
    let verifier = VerifyAs {
        inner: webpki,
        name: server_name(&options.verify_as),
    };
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
            .with_protocol_versions(&options.versions)
            .map_err(io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &options.client_identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), PrivatePkcs8KeyDer::from(key.clone()).into())
            .map_err(io::Error::other)?,
    };
    config.alpn_protocols = options.alpn.clone();
    config.enable_sni = options.sni.is_some();
    let name = server_name(options.sni.as_deref().unwrap_or(&options.verify_as));
    let connector = TlsConnector::from(Arc::new(config));
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = tcp.set_nodelay(true);
        let tls = connector.connect(name, tcp).await?;
        Ok(HttpConn::new(tls))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}
