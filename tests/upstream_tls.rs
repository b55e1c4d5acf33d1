//! TLS to upstreams: the upstream's certificate is verified (against `ca`),
//! and a client certificate is presented when the upstream demands one
//! (mTLS). The upstream here is a real rustls server on a real socket.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{assert_gateway_error, postern_command, Gateway};

/// A CA that issues certificates for this test, written to `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem_path: std::path::PathBuf,
}

impl Ca {
    fn new(dir: &std::path::Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign");
        let pem_path = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_path, cert.pem()).expect("write CA");
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            pem_path,
        }
    }

    /// Issues a leaf; returns (chain DER, key DER, cert path, key path).
    fn issue(
        &self,
        dir: &std::path::Path,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
        std::path::PathBuf,
        std::path::PathBuf,
    ) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_path,
            key_path,
        )
    }
}

/// An https upstream that answers every request with 200 and records the
/// client certificate each completed request came with.
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Option<CertificateDer<'static>>>>>,
}

impl TlsUpstream {
    async fn start(
        server: (CertificateDer<'static>, PrivateKeyDer<'static>),
        require_client_ca: Option<&CertificateDer<'static>>,
    ) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match require_client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.clone()).expect("client CA");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(vec![server.0], server.1)
            .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned());
                    record.lock().unwrap().push(client);
                    let body = b"{\"backend\":\"tls-upstream\"}";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.write_all(body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsUpstream { addr, seen }
    }

    fn seen(&self) -> Vec<Option<CertificateDer<'static>>> {
        self.seen.lock().unwrap().clone()
    }
}

fn route(name: &str, upstream: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{upstream}\"\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_and_get_the_client_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_ca = Ca::new(dir.path(), "upstream-ca");
    let client_ca = Ca::new(dir.path(), "client-ca");
    let (server_der, server_key, _, _) = server_ca.issue(
        dir.path(),
        "upstream",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_der, _, client_cert, client_key) = client_ca.issue(
        dir.path(),
        "gateway-client",
        &["postern-gateway"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let plain_tls = TlsUpstream::start((server_der.clone(), server_key.clone_key()), None).await;
    let mtls = TlsUpstream::start((server_der, server_key), Some(&client_ca.der)).await;

    let ca = server_ca.pem_path.display();
    let body = format!(
        "[upstreams.verified]\nurl = \"https://{plain}\"\nca = '{ca}'\n\n\
         [upstreams.unverified]\nurl = \"https://{plain}\"\n\n\
         [upstreams.mtls]\nurl = \"https://{mtls}\"\nca = '{ca}'\nclient_cert = '{cert}'\nclient_key = '{key}'\n\n\
         [upstreams.mtls-without-cert]\nurl = \"https://{mtls}\"\nca = '{ca}'\n\n\
         {}{}{}{}",
        route("verified", "verified"),
        route("unverified", "unverified"),
        route("mtls", "mtls"),
        route("nocert", "mtls-without-cert"),
        plain = plain_tls.addr,
        mtls = mtls.addr,
        cert = client_cert.display(),
        key = client_key.display(),
    );
    let gw = Gateway::start(body).await;

    let response = gw.get("api.example.com", "/verified/x").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["backend"], "tls-upstream");
    assert_eq!(
        plain_tls.seen(),
        vec![None],
        "no client certificate unless configured"
    );

    // The upstream's CA is not in the system roots: refused, nothing served.
    let response = gw.get("api.example.com", "/unverified/x").await;
    assert_gateway_error(&response, 502, "bad_gateway", Some("unverified"));
    assert_eq!(
        plain_tls.seen().len(),
        1,
        "no request completed on an unverified upstream"
    );

    let response = gw.get("api.example.com", "/mtls/x").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        mtls.seen(),
        vec![Some(client_der)],
        "the configured client certificate"
    );

    let response = gw.get("api.example.com", "/nocert/x").await;
    assert_gateway_error(&response, 502, "bad_gateway", Some("nocert"));
    assert_eq!(
        mtls.seen().len(),
        1,
        "an upstream demanding mTLS served nothing without it"
    );
}

#[test]
fn client_certificate_problems_are_reported_by_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "ca");
    let (_, _, cert, _) = ca.issue(
        dir.path(),
        "one",
        &["a"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (_, _, _, other_key) = ca.issue(
        dir.path(),
        "two",
        &["b"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let base = "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:9000\"\n\n[[routes]]\nname = \"r\"\nupstream = \"u\"\n\n";
    let cases = [
        (
            "key of another certificate",
            format!(
                "[upstreams.u]\nurl = \"https://127.0.0.1:8443\"\nclient_cert = '{}'\nclient_key = '{}'\n",
                cert.display(),
                other_key.display()
            ),
            "cannot be used with client_cert",
        ),
        (
            "certificate without key",
            format!("[upstreams.u]\nurl = \"https://127.0.0.1:8443\"\nclient_cert = '{}'\n", cert.display()),
            "needs both client_cert and client_key",
        ),
        (
            "client certificate to a plain-HTTP upstream",
            format!(
                "[upstreams.u]\nurl = \"http://127.0.0.1:8880\"\nclient_cert = '{}'\nclient_key = '{}'\n",
                cert.display(),
                other_key.display()
            ),
            "only sent to an https:// upstream",
        ),
    ];
    for (case, upstream, expected) in cases {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, format!("{base}{upstream}")).expect("write");
        let output = postern_command()
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .expect("run check");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{case}\n{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(": error: ") && l.contains(expected)),
            "{case}\n{stderr}"
        );
    }
}
