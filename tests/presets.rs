//! The presets in examples/: each passes `postern check`, and the Domino
//! path-based one, run as shipped (only ports moved by POSTERN_* overrides),
//! lets each caller reach exactly what the spec's table says.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::json;

use crate::support::idp::{jwk_set, now, Idp, TestKey};
use crate::support::{echo, postern_command, request, tls_connect, Response, TlsOptions};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_preset_passes_check() {
    let mut presets: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    presets.sort();
    assert!(presets.len() >= 4, "{presets:?}");
    for preset in presets {
        let output = postern_command()
            .args(["check", "-c"])
            .arg(&preset)
            .output()
            .expect("run check");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}\n{stderr}",
            preset.display()
        );
        assert!(!stderr.contains("error"), "{}\n{stderr}", preset.display());
    }
}

struct Running {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domino_path_preset_enforces_the_spec_table() {
    let data = echo("data").await;
    let health = echo("health").await;
    let management = echo("management").await;
    let metrics = echo("metrics").await;
    let domino_http = echo("domino-http").await;
    let key = TestKey::rsa("rsa1", "domino-key");
    let idp = Idp::start(jwk_set(&[&key])).await;

    let (https, http, ops) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = dir.path().join("stderr.log");
    let url = |addr: SocketAddr| format!("http://{addr}");
    let child = postern_command()
        .args(["run", "-c"])
        .arg(repo().join("examples/domino-path.toml"))
        .env(
            "POSTERN_LISTENERS__HTTPS__ADDRESS",
            format!("127.0.0.1:{https}"),
        )
        .env(
            "POSTERN_LISTENERS__HTTP__ADDRESS",
            format!("127.0.0.1:{http}"),
        )
        .env(
            "POSTERN_LISTENERS__OPS__ADDRESS",
            format!("127.0.0.1:{ops}"),
        )
        .env("POSTERN_UPSTREAMS__DATA__URL", url(data.local_addr()))
        .env("POSTERN_UPSTREAMS__HEALTH__URL", url(health.local_addr()))
        .env(
            "POSTERN_UPSTREAMS__MANAGEMENT__URL",
            url(management.local_addr()),
        )
        .env("POSTERN_UPSTREAMS__METRICS__URL", url(metrics.local_addr()))
        .env(
            "POSTERN_UPSTREAMS__DOMINO-HTTP__URL",
            url(domino_http.local_addr()),
        )
        .env("POSTERN_AUTH__DOMINO-JWT__JWKS_URL", idp.jwks_url())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn postern");
    let running = Running {
        child,
        stderr,
        _dir: dir,
    };
    let ca = CertificateDer::from_pem_file(repo().join("certs/dev-ca.pem")).expect("dev CA");
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "gateway did not start:\n{}",
            std::fs::read_to_string(&running.stderr).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let send = |target: &'static str, headers: Vec<(&'static str, String)>| {
        let ca = ca.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut conn = tls_connect(https, &ca, TlsOptions::sni("localhost"))
                .await
                .expect("TLS to the preset");
            conn.send(&request("GET", "localhost", target, &headers, b""))
                .await
                .expect("response")
        }
    };
    let backend = |r: &Response| r.json()["backend"].as_str().unwrap_or("").to_string();
    let token = key.sign(&json!({
        "iss": "Domino", "aud": "Domino", "sub": "alice", "exp": now() + 600,
    }));
    let bearer = || vec![("Authorization", format!("Bearer {token}"))];

    // Data/REST on 8880: with a valid JWT, or the backend's own login.
    assert_eq!(send("/api/v1/data", vec![]).await.status, 401, "no token");
    let r = send("/api/v1/data", bearer()).await;
    assert_eq!((r.status, backend(&r)), (200, "data".into()));
    let r = send("/keep/x", vec![("Cookie", format!("KeepToken={token}"))]).await;
    assert_eq!(
        (r.status, backend(&r)),
        (200, "data".into()),
        "Domino's cookie"
    );
    // The setup API needs the $SETUP scope on top (403 insufficient_scope).
    let r = send("/api/setup-v1/schema", bearer()).await;
    assert_eq!(r.status, 403, "a token without $SETUP");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
        "{:?}",
        r.headers
    );
    let setup = key.sign(&json!({
        "iss": "Domino", "aud": "Domino", "sub": "alice", "exp": now() + 600,
        "scope": "MAIL $DATA $SETUP",
    }));
    let r = send(
        "/api/setup-v1/schema",
        vec![("Authorization", format!("Bearer {setup}"))],
    )
    .await;
    assert_eq!((r.status, backend(&r)), (200, "data".into()), "with $SETUP");
    for open in [
        "/api/v1/auth",
        "/.well-known/jwks.json",
        "/oauth/token",
        "/openapi/index.html",
        "/admin/ui/",
    ] {
        let r = send(open, vec![]).await;
        assert_eq!((r.status, backend(&r)), (200, "data".into()), "{open}");
    }
    // Health (8886) and metrics (8890): their own basic-auth accounts.
    assert_eq!(send("/health", vec![]).await.status, 401);
    let r = send(
        "/health",
        vec![("Authorization", basic("monitor", "change-me"))],
    )
    .await;
    assert_eq!((r.status, backend(&r)), (200, "health".into()));
    let r = send(
        "/metrics",
        vec![("Authorization", basic("monitor", "change-me"))],
    )
    .await;
    assert_eq!(r.status, 401, "the health account cannot read metrics");
    let r = send(
        "/metrics",
        vec![("Authorization", basic("prometheus", "change-me"))],
    )
    .await;
    assert_eq!((r.status, backend(&r)), (200, "metrics".into()));
    // Management (8889): loopback or the admin network, its own account, prefix stripped.
    assert_eq!(send("/manage/info", vec![]).await.status, 401);
    let r = send(
        "/manage/info",
        vec![("Authorization", basic("admin", "change-me"))],
    )
    .await;
    assert_eq!((r.status, backend(&r)), (200, "management".into()));
    assert_eq!(r.json()["path"], "/info");
    // Everything else: the Domino HTTP task.
    let r = send("/names.nsf", vec![]).await;
    assert_eq!((r.status, backend(&r)), (200, "domino-http".into()));
    // Traversal cannot reach management around its policy.
    let r = send("/api/v1/auth/../../../manage/info", vec![]).await;
    assert_eq!(r.status, 401, "canonicalised to /manage/info, then policy");
    assert_eq!(
        management.requests_seen(),
        1,
        "only the authenticated request"
    );
}
