//! Latency at a fixed request rate, the way wrk2 measures it: requests are
//! sent on a schedule, not as fast as answers come back, and a request held
//! back by a slow answer counts from when it was due, so a stall shows up in
//! the tail instead of silently lowering the rate (coordinated omission).
//!
//!   latency URL RATE SECONDS [CONNECTIONS]
//!
//! URL is `http://` or `https://` (certificates are not verified; SNI and
//! Host are the URL's host). Prints `p50_us=... p90_us=... p99_us=...
//! requests=... errors=...`. HTTP/1.1 keep-alive, one request in flight
//! per connection; the rate is split evenly over the connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Target {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        panic!("URL must start with http:// or https://")
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().expect("port")),
        None => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    Target {
        tls,
        host,
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    }
}

async fn connect(target: &Target) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(target.host.clone()).map_err(std::io::Error::other)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok(Box::new(tls))
}

/// Reads one response with a Content-Length body; false on anything else.
async fn read_response(conn: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return false;
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return true;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: latency URL RATE SECONDS [CONNECTIONS]");
        std::process::exit(2);
    }
    let target = Arc::new(parse(&args[1]));
    let rate: f64 = args[2].parse().expect("RATE");
    let seconds: f64 = args[3].parse().expect("SECONDS");
    let connections: usize = args.get(4).map_or(10, |c| c.parse().expect("CONNECTIONS"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        let total = Duration::from_secs_f64(seconds);
        let start = Instant::now() + Duration::from_millis(200);
        let mut tasks = Vec::new();
        for i in 0..connections {
            let target = Arc::clone(&target);
            tasks.push(tokio::spawn(async move {
                let mut conn = connect(&target).await.expect("connect");
                let request = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
                    target.path, target.host
                );
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut buf = Vec::with_capacity(8192);
                // Connections start staggered over one interval.
                let mut due = start + interval.mul_f64(i as f64 / connections as f64);
                let mut previous_done = Instant::now();
                while due < start + total {
                    tokio::time::sleep_until(due.into()).await;
                    // The timer wakes up to a millisecond late; that is the
                    // client's lateness. A request held back by the previous
                    // answer, though, counts from when it was due.
                    let sent = Instant::now();
                    let origin = if previous_done > due { due } else { sent };
                    let ok = conn.write_all(request.as_bytes()).await.is_ok()
                        && read_response(&mut conn, &mut buf).await;
                    previous_done = Instant::now();
                    if ok {
                        latencies.push(previous_done.duration_since(origin).as_micros() as u64);
                    } else {
                        errors += 1;
                        conn = connect(&target).await.expect("reconnect");
                    }
                    due += interval;
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (latencies, e) = task.await.expect("task");
            all.extend(latencies);
            errors += e;
        }
        all.sort_unstable();
        let pct = |p: f64| {
            if all.is_empty() {
                0
            } else {
                all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1]
            }
        };
        println!(
            "p50_us={} p90_us={} p99_us={} requests={} errors={errors}",
            pct(0.50),
            pct(0.90),
            pct(0.99),
            all.len()
        );
    });
}
