//! Shared machinery for Postern's end-to-end tests: certificates made at test
//! time, the real `postern` binary started on free ports with a generated
//! `gateway.toml`, and a raw HTTP/1.1 client over real TLS (or plain TCP)
//! that sends request bytes exactly as written.
//!
//! Every test file has its own copy of this module (`mod support;`), and not
//! every file uses every helper.
#![allow(dead_code)]
pub mod idp;

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_echo::EchoServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How long one request (connect, send, whole response) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gateway may take to accept connections after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// One leaf certificate written to disk, and its DER to recognise it when served.
#[derive(Clone)]
pub struct Leaf {
    pub names: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
}

/// A test CA and the three leaves every test gateway serves, in this order
/// (so `main` is the default certificate for clients without SNI):
///
/// * `main`: api.example.com, metrics.example.com, example.com
/// * `wildcard`: *.example.net
/// * `local`: localhost, 127.0.0.1
#[derive(Clone)]
pub struct Pki {
    pub ca: CertificateDer<'static>,
    /// The CA, to issue more leaves later.
    ca_pem: String,
    ca_params: CertificateParams,
    ca_key_pem: String,
    pub main: Leaf,
    pub wildcard: Leaf,
    pub local: Leaf,
}

pub const MAIN_NAMES: [&str; 3] = ["api.example.com", "metrics.example.com", "example.com"];
pub const WILDCARD_NAMES: [&str; 1] = ["*.example.net"];
pub const LOCAL_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

impl Pki {
    /// Generates the CA and leaves and writes `<name>.pem` / `<name>.key` into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Postern Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        let ca_key_pem = ca_key.serialize_pem();
        let ca_params_kept = ca_params.clone();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |file: &str, names: &[&str]| -> Leaf {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names.clone()).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, &names[0]);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate().expect("generate leaf key");
            let cert = params.signed_by(&key, &issuer).expect("sign leaf");
            let cert_path = dir.join(format!("{file}.pem"));
            let key_path = dir.join(format!("{file}.key"));
            // The chain file holds the leaf then the CA, as fullchain.pem does.
            std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))
                .expect("write leaf");
            std::fs::write(&key_path, key.serialize_pem()).expect("write key");
            Leaf {
                names,
                cert_path,
                key_path,
                der: cert.der().clone(),
            }
        };
        Pki {
            ca: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            ca_params: ca_params_kept,
            ca_key_pem,
            main: leaf("main", &MAIN_NAMES),
            wildcard: leaf("wildcard", &WILDCARD_NAMES),
            local: leaf("local", &LOCAL_NAMES),
        }
    }

    /// Issues a new certificate and key for `leaf`'s names and replaces its
    /// files the way certbot does: written beside, then renamed over.
    /// Returns the new certificate.
    pub fn renew(&self, leaf: &Leaf) -> CertificateDer<'static> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).expect("CA key");
        let issuer = Issuer::new(self.ca_params.clone(), ca_key);
        let mut params = CertificateParams::new(leaf.names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, &leaf.names[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        let replace = |path: &Path, contents: String| {
            let staged = path.with_extension("new");
            std::fs::write(&staged, contents).expect("write renewed file");
            std::fs::rename(&staged, path).expect("rename renewed file");
        };
        replace(&leaf.key_path, key.serialize_pem());
        replace(&leaf.cert_path, format!("{}{}", cert.pem(), self.ca_pem));
        cert.der().clone()
    }

    /// Which of the three leaves `der` is, by name ("main", "wildcard", "local").
    pub fn which(&self, der: &CertificateDer<'_>) -> &'static str {
        if der.as_ref() == self.main.der.as_ref() {
            "main"
        } else if der.as_ref() == self.wildcard.der.as_ref() {
            "wildcard"
        } else if der.as_ref() == self.local.der.as_ref() {
            "local"
        } else {
            "unknown"
        }
    }
}

// ---------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------

/// Starts an echo backend on a free loopback port.
pub async fn echo(name: &str) -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().expect("addr"), name)
        .await
        .expect("start echo backend")
}

/// `[upstreams.NAME]` pointing at `addr`, plus any extra lines (timeouts).
pub fn upstream(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!("\n[upstreams.{name}]\nurl = \"http://{addr}\"\n{extra}\n")
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The values of one header as the upstream received them.
pub fn upstream_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------

/// Settings of the generated `gateway.toml` outside the test's own body.
pub struct GatewayBuilder {
    body: String,
    env: Vec<(String, String)>,
    min_version: &'static str,
    strict_sni: bool,
    trusted_proxies: Vec<String>,
}

impl GatewayBuilder {
    pub fn min_version(mut self, version: &'static str) -> Self {
        self.min_version = version;
        self
    }

    /// Sets an environment variable for the gateway process (names starting
    /// with POSTERN_ are config overrides).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn strict_sni(mut self, strict: bool) -> Self {
        self.strict_sni = strict;
        self
    }

    pub fn trusted_proxies(mut self, cidrs: &[&str]) -> Self {
        self.trusted_proxies = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Writes the config and starts the gateway; panics (with its stderr) if
    /// it does not come up.
    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::generate(dir.path());
        let config_path = dir.path().join("gateway.toml");
        let mut failure = String::new();
        // Free ports are found by binding and releasing them, so another test
        // may take one in between; the gateway then says so and we retry.
        for attempt in 0..4 {
            let ports = free_ports();
            let config = self.render(&pki, ports);
            std::fs::write(&config_path, &config).expect("write gateway.toml");
            let stderr_path = dir.path().join(format!("stderr-{attempt}.log"));
            let stdout_path = dir.path().join(format!("stdout-{attempt}.log"));
            let mut command = Command::new(env!("CARGO_BIN_EXE_postern"));
            command
                .arg("run")
                .arg("-c")
                .arg(&config_path)
                .current_dir(dir.path())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
                .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
            // Environment overrides would change the config under test.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("POSTERN_") {
                    command.env_remove(key);
                }
            }
            command.envs(self.env.iter().map(|(k, v)| (k, v)));
            let child = command.spawn().expect("spawn postern");
            let mut gateway = Gateway {
                tls_port: ports[0],
                redirect_port: ports[1],
                plain_port: ports[2],
                pki: pki.clone(),
                config,
                stderr_path,
                stdout_path,
                child,
                dir: None,
            };
            match gateway.wait_ready().await {
                Ok(()) => {
                    gateway.dir = Some(dir);
                    return gateway;
                }
                Err(message) => {
                    gateway.kill();
                    let stderr = gateway.stderr();
                    failure = format!(
                        "{message}\n--- gateway.toml ---\n{}\n--- gateway stderr ---\n{stderr}",
                        gateway.config
                    );
                    if !stderr.contains("cannot listen") {
                        break;
                    }
                }
            }
        }
        panic!("the gateway did not start: {failure}");
    }

    fn render(&self, pki: &Pki, ports: [u16; 3]) -> String {
        let mut toml = String::new();
        let trusted: Vec<String> = self
            .trusted_proxies
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        let _ = write!(
            toml,
            r#"[gateway]
threads = 2
trusted_proxies = [{trusted}]

[[listeners]]
name = "https"
address = "127.0.0.1:{tls}"
tls = true

[[listeners]]
name = "http"
address = "127.0.0.1:{redirect}"
redirect_https = true

[[listeners]]
name = "ops"
address = "127.0.0.1:{plain}"

[tls]
min_version = "{min}"
strict_sni = {strict}
"#,
            trusted = trusted.join(", "),
            tls = ports[0],
            redirect = ports[1],
            plain = ports[2],
            min = self.min_version,
            strict = self.strict_sni,
        );
        for leaf in [&pki.main, &pki.wildcard, &pki.local] {
            let names: Vec<String> = leaf.names.iter().map(|n| format!("{n:?}")).collect();
            let _ = write!(
                toml,
                "\n[[tls.certificates]]\nserver_names = [{}]\ncert = '{}'\nkey = '{}'\n",
                names.join(", "),
                leaf.cert_path.display(),
                leaf.key_path.display(),
            );
        }
        toml.push('\n');
        toml.push_str(&self.body);
        toml.push('\n');
        toml
    }
}

/// Binds `N` distinct free loopback ports at once, then releases them.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local addr").port();
    }
    ports
}

/// A running `postern run` with three listeners: `https` (TLS), `http`
/// (`redirect_https = true`) and `ops` (plain HTTP), all on 127.0.0.1.
/// Killed when dropped; its stderr is printed if the test is failing.
pub struct Gateway {
    pub tls_port: u16,
    pub redirect_port: u16,
    pub plain_port: u16,
    pub pki: Pki,
    pub config: String,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    child: Child,
    dir: Option<TempDir>,
}

impl Gateway {
    /// A gateway whose `gateway.toml` is the standard listeners and
    /// certificates followed by `body` (upstreams and routes).
    pub fn builder(body: impl Into<String>) -> GatewayBuilder {
        GatewayBuilder {
            body: body.into(),
            env: Vec::new(),
            min_version: "1.2",
            strict_sni: false,
            trusted_proxies: Vec::new(),
        }
    }

    pub async fn start(body: impl Into<String>) -> Gateway {
        Gateway::builder(body).start().await
    }

    /// Everything the gateway has written to stdout so far (the access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the gateway has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let ports = [self.tls_port, self.redirect_port, self.plain_port];
        let mut ready = [false; 3];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("postern exited during startup with {status}"));
            }
            for (port, ready) in ports.iter().zip(ready.iter_mut()) {
                if !*ready {
                    *ready = TcpStream::connect(("127.0.0.1", *port)).await.is_ok();
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postern did not accept connections on {ports:?} within {STARTUP_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A TLS connection to the `https` listener.
    pub async fn connect(&self, options: TlsOptions) -> io::Result<TlsConn> {
        tls_connect(self.tls_port, &self.pki.ca, options).await
    }

    /// A TLS connection with SNI `name`, ALPN http/1.1; panics on failure.
    pub async fn tls(&self, name: &str) -> TlsConn {
        self.connect(TlsOptions::sni(name))
            .await
            .unwrap_or_else(|e| panic!("TLS connection with SNI {name} failed: {e}"))
    }

    /// Sends `raw` on a fresh TLS connection with SNI `sni` and reads one response.
    pub async fn send(&self, sni: &str, raw: impl AsRef<[u8]>) -> Response {
        let mut conn = self.tls(sni).await;
        conn.send(raw.as_ref())
            .await
            .unwrap_or_else(|e| panic!("request over TLS (SNI {sni}) failed: {e}"))
    }

    /// `GET target` with `Host: host`, SNI `host`, `Connection: close`.
    pub async fn get(&self, host: &str, target: &str) -> Response {
        self.send(host, get(host, target)).await
    }

    /// Sends `raw` over plain TCP to `port` and reads one response.
    pub async fn send_plain(&self, port: u16, raw: impl AsRef<[u8]>) -> Response {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        let mut conn = HttpConn::new(stream);
        conn.send(raw.as_ref())
            .await
            .unwrap_or_else(|e| panic!("plain request to port {port} failed: {e}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- gateway.toml ---\n{}\n--- postern stderr ---\n{}--- end of postern stderr ---",
                self.config,
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// `GET target` for `host`, closing the connection after the response.
pub fn get(host: &str, target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// A request with extra header lines and a body (Content-Length is added
/// when the body is not empty), closing the connection after the response.
pub fn request(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One HTTP/1.1 response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// In arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} body is not JSON ({e}): {:?}\nheaders: {:?}",
                self.status,
                self.text(),
                self.headers
            )
        })
    }

    /// The upstream's echo JSON: asserts a 200 from the echo backend.
    pub fn echo(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected the upstream's 200, got {}: {}",
            self.status,
            self.text()
        );
        let echo = self.json();
        assert!(
            echo.get("backend").is_some(),
            "not an echo response: {echo}"
        );
        echo
    }
}

/// Asserts a response is the gateway's own JSON error with this status, error
/// name and route, and that its request id matches the `x-request-id` header.
pub fn assert_gateway_error(response: &Response, status: u16, error: &str, route: Option<&str>) {
    assert_eq!(
        response.status,
        status,
        "expected {status} {error}, got {} {}\nheaders: {:?}",
        response.status,
        response.text(),
        response.headers
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "error content-type is {content_type:?}"
    );
    let body = response.json();
    assert_eq!(body["status"], Value::from(status), "body: {body}");
    assert_eq!(body["error"], Value::from(error), "body: {body}");
    assert_eq!(
        body["route"],
        route.map_or(Value::Null, Value::from),
        "body: {body}"
    );
    let id = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request_id in {body}"));
    assert!(!id.is_empty(), "empty request_id in {body}");
    assert_eq!(
        response.header("x-request-id"),
        Some(id),
        "x-request-id header differs from the body's request_id"
    );
}

/// An HTTP/1.1 connection that keeps bytes read past one response for the next.
pub struct HttpConn<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> HttpConn<S> {
    pub fn new(stream: S) -> Self {
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `raw` exactly as given and reads one response (with a timeout).
    pub async fn send(&mut self, raw: &[u8]) -> io::Result<Response> {
        let head_request = raw.starts_with(b"HEAD ");
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.stream.write_all(raw).await?;
            self.stream.flush().await?;
            self.read_response(head_request).await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))?
    }

    /// Reads one response (e.g. after writing a request in pieces).
    pub async fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut parsed_headers);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (status, headers, len);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill().await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "connection closed before a complete response head (got {:?})",
                                String::from_utf8_lossy(&self.buf)
                            ),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "unparsable response ({e}): {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
            }
        };
        self.buf.drain(..head_len);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if head_request || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            self.read_chunked().await?
        } else if let Some(length) = find("content-length") {
            let length: usize = length
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
            self.read_exact_body(length).await?
        } else {
            while self.fill().await? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut chunk).await {
            Ok(n) => n,
            // A peer that closes TLS without close_notify is still a close.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn read_exact_body(&mut self, length: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < length {
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {} of {length} bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..length).collect())
    }

    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
        }
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size).await?);
            self.read_line().await?;
        }
    }
}

// ---------------------------------------------------------------------------
// TLS client
// ---------------------------------------------------------------------------

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
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
            .with_protocol_versions(&options.versions)
            .map_err(io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
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

// ---------------------------------------------------------------------------
// A minimal HTTP/2 client
// ---------------------------------------------------------------------------

/// One HTTP/2 response: the raw HPACK block of its HEADERS and its DATA.
///
/// The header block is not decoded (there is no HPACK decoder here, and the
/// status may be a dynamic-table reference); gateway errors and the echo
/// backend both put everything a test needs, status included, in the body.
#[derive(Debug, Clone)]
pub struct H2Response {
    pub header_block: Vec<u8>,
    pub body: Vec<u8>,
}

impl H2Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP/2 response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Just enough HTTP/2 (RFC 9113) to send header-only requests on one
/// connection and read each response's body: HPACK literals without
/// indexing or Huffman coding, SETTINGS and PING acknowledged, no flow
/// control beyond the default 64 KiB windows.
pub struct H2Conn {
    conn: TlsConn,
    next_stream: u32,
}

const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_SETTINGS: u8 = 0x4;
const H2_PING: u8 = 0x6;
const H2_GOAWAY: u8 = 0x7;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_STREAM: u8 = 0x1;
const H2_END_HEADERS: u8 = 0x4;
const H2_ACK: u8 = 0x1;

impl H2Conn {
    /// Sends the connection preface on a connection that negotiated h2.
    pub async fn handshake(mut conn: TlsConn) -> io::Result<H2Conn> {
        assert_eq!(
            conn.alpn().as_deref(),
            Some(&b"h2"[..]),
            "h2 not negotiated"
        );
        conn.stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await?;
        let mut h2 = H2Conn {
            conn,
            next_stream: 1,
        };
        h2.send_frame(H2_SETTINGS, 0, 0, &[]).await?;
        Ok(h2)
    }

    /// The next frame from the gateway: (type, flags, stream, payload).
    pub async fn next_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.read_frame())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 frame in time"))?
    }

    /// A header block of literal fields without indexing, new names, no
    /// Huffman coding.
    pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0x00);
            hpack_string(&mut block, name.as_bytes());
            hpack_string(&mut block, value.as_bytes());
        }
        block
    }

    /// Writes one frame as given (tests of protocol abuse use it directly).
    pub async fn send_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let len = payload.len() as u32;
        let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        frame.extend_from_slice(payload);
        self.conn.stream.write_all(&frame).await?;
        self.conn.stream.flush().await
    }

    async fn read_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
        let head = self.read_exact(9).await?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let payload = self.read_exact(len).await?;
        Ok((head[3], head[4], stream, payload))
    }

    async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.conn.buf.len() < n {
            if self.conn.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "HTTP/2 connection closed",
                ));
            }
        }
        Ok(self.conn.buf.drain(..n).collect())
    }

    /// Sends a GET with these pseudo-headers and headers and reads the response.
    pub async fn get(
        &mut self,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<H2Response> {
        let stream = self.next_stream;
        self.next_stream += 2;
        let mut block = Self::header_block(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority),
            (":path", path),
        ]);
        block.extend(Self::header_block(headers));
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.send_frame(H2_HEADERS, H2_END_STREAM | H2_END_HEADERS, stream, &block)
                .await?;
            let mut response = H2Response {
                header_block: Vec::new(),
                body: Vec::new(),
            };
            loop {
                let (kind, flags, id, payload) = self.read_frame().await?;
                match kind {
                    H2_SETTINGS if flags & H2_ACK == 0 => {
                        self.send_frame(H2_SETTINGS, H2_ACK, 0, &[]).await?
                    }
                    H2_PING if flags & H2_ACK == 0 => {
                        self.send_frame(H2_PING, H2_ACK, 0, &payload).await?
                    }
                    H2_GOAWAY => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("GOAWAY {payload:?}"),
                        ))
                    }
                    H2_RST_STREAM if id == stream => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!("RST_STREAM {payload:?}"),
                        ))
                    }
                    H2_HEADERS | H2_CONTINUATION if id == stream => {
                        response.header_block.extend(unpad(kind, flags, &payload));
                        if flags & H2_END_STREAM != 0 {
                            return Ok(response);
                        }
                    }
                    H2_DATA if id == stream => {
                        response.body.extend(unpad(kind, flags, &payload));
                        if flags & H2_END_STREAM != 0 {
                            return Ok(response);
                        }
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 response in time"))?
    }
}

fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // 7-bit prefix integer (RFC 7541 5.1), Huffman bit clear.
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128 + 128) as u8);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

/// A frame's payload without padding (and without HEADERS priority fields).
fn unpad(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let mut data = payload;
    let mut pad = 0;
    if flags & PADDED != 0 && kind != H2_CONTINUATION && !data.is_empty() {
        pad = usize::from(data[0]);
        data = &data[1..];
    }
    if kind == H2_HEADERS && flags & PRIORITY != 0 && data.len() >= 5 {
        data = &data[5..];
    }
    data[..data.len().saturating_sub(pad)].to_vec()
}
