//! Operating the gateway, end to end through the real `postern` binary: the
//! built-in `metrics`, `health` and `admin` services behind route policies,
//! exact request counts in the Prometheus exposition (checked by
//! `promtool`), configuration reload by SIGHUP and `POST /reload` under load,
//! refused listener changes, graceful SIGTERM, and an upstream that dies and
//! comes back.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use postern_echo::EchoServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support;
use crate::support::prometheus::{metric_type, promtool_check, samples, series, value, Sample};
use crate::support::{
    assert_gateway_error, closed_port, echo, free_ports, get, postern_command, request, upstream,
    Gateway, HttpConn, Response,
};

const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------
// Scraping the metrics service
// ---------------------------------------------------------------------------

/// `GET path` on the plain `port`; asserts a 200 Prometheus exposition.
async fn scrape_at(port: u16, path: &str) -> String {
    let response = send_plain(port, get("localhost", path).as_bytes())
        .await
        .unwrap_or_else(|e| panic!("scrape {path} on port {port}: {e}"));
    assert_eq!(
        response.status,
        200,
        "metrics scrape answered {}: {}",
        response.status,
        response.text()
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "metrics content-type is {content_type:?}"
    );
    response.text()
}

/// Scrapes until `settled` holds for the exposition, or 2 s pass, and
/// returns the last scrape. A request is counted by the `logging` hook, which
/// Pingora runs after the response has gone out, so a client that scrapes at
/// once can be a moment ahead of the counters; the caller then asserts the
/// exact figures on what this returns.
async fn scrape_settled(port: u16, path: &str, settled: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let text = scrape_at(port, path).await;
        if settled(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Sends `raw` over a fresh plain TCP connection to 127.0.0.1:`port`.
async fn send_plain(port: u16, raw: &[u8]) -> io::Result<Response> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    HttpConn::new(stream).send(raw).await
}

/// `postern hash-password` with `password` on stdin: the printed PHC string.
fn hash_password(password: &str) -> String {
    let mut child = postern_command()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postern hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("postern hash-password");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "postern hash-password failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = stdout.trim().to_string();
    assert!(
        hash.starts_with("$argon2id$"),
        "postern hash-password did not print an argon2id hash: {stdout:?}"
    );
    hash
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Asserts the gateway's JSON error with one of `statuses`.
fn assert_json_error_in(response: &Response, statuses: &[u16], what: &str) {
    assert!(
        statuses.contains(&response.status),
        "{what}: expected one of {statuses:?}, got {} {}",
        response.status,
        response.text()
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: error content-type is {content_type:?}"
    );
    let body = response.json();
    assert_eq!(
        body["status"],
        Value::from(response.status),
        "{what}: {body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error name in {body}"
    );
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------
// What this file does to a gateway through its ops listener
// ---------------------------------------------------------------------------

/// Requests, scrapes and reloads on the `ops` listener of a [`Gateway`].
trait Operations {
    fn ops_port(&self) -> u16;
    async fn ops(&self, raw: &[u8]) -> Response;
    async fn scrape_text(&self) -> String;
    async fn scrape(&self) -> Vec<Sample>;
    async fn reloads(&self) -> (f64, f64);
    async fn hangup(&self, before: (f64, f64)) -> (f64, f64);
}

impl Operations for Gateway {
    fn ops_port(&self) -> u16 {
        self.plain_port
    }

    async fn ops(&self, raw: &[u8]) -> Response {
        send_plain(self.ops_port(), raw).await.unwrap_or_else(|e| {
            panic!(
                "request to the ops listener failed: {e}\n{}",
                String::from_utf8_lossy(raw)
            )
        })
    }

    async fn scrape_text(&self) -> String {
        scrape_at(self.ops_port(), "/metrics").await
    }

    async fn scrape(&self) -> Vec<Sample> {
        samples(&scrape_at(self.ops_port(), "/metrics").await)
    }

    async fn reloads(&self) -> (f64, f64) {
        let samples = self.scrape().await;
        let count = |result| {
            value(
                &samples,
                "postern_config_reloads_total",
                &[("result", result)],
            )
            .unwrap_or(0.0)
        };
        (count("success"), count("failure"))
    }

    /// Sends SIGHUP and waits until the reload it triggered is counted.
    async fn hangup(&self, before: (f64, f64)) -> (f64, f64) {
        self.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.reloads().await;
            if now.0 + now.1 > before.0 + before.1 {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "SIGHUP was not followed by a counted reload within 10 s (reloads {now:?})"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Routes putting the admin and metrics services on the loopback-only ops listener.
const OPS_ROUTES: &str = r#"
[[routes]]
name = "admin"
path_prefix = "/admin"
service = "admin"
listeners = ["ops"]
allow = ["loopback"]

[[routes]]
name = "metrics"
path_prefix = "/metrics"
service = "metrics"
listeners = ["ops"]
allow = ["loopback"]
"#;

/// Upstreams `a` and `b`, route `/v` to `backend`, and the ops routes.
fn switch_body(a: SocketAddr, b: SocketAddr, backend: &str) -> String {
    format!(
        "{}{}\n[[routes]]\nname = \"v\"\npath_prefix = \"/v\"\nupstream = \"{backend}\"\n{OPS_ROUTES}",
        upstream("a", a, ""),
        upstream("b", b, ""),
    )
}

/// The backend that answered `GET /v/...` on the ops listener.
async fn backend_of_v(gw: &Gateway, target: &str) -> String {
    let response = gw.ops(get("localhost", target).as_bytes()).await;
    response.echo()["backend"]
        .as_str()
        .expect("backend name")
        .to_string()
}

/// An upstream that reads one request head, waits `delay`, then answers 200
/// "slow". Each request read is announced on the channel.
struct SlowUpstream {
    addr: SocketAddr,
    requests: tokio::sync::mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowUpstream {
    async fn start(delay: Duration) -> SlowUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind slow upstream");
        let addr = listener.local_addr().expect("addr");
        let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = tx.send(());
                    tokio::time::sleep(delay).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                              Content-Length: 4\r\nConnection: close\r\n\r\nslow",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        SlowUpstream {
            addr,
            requests,
            task,
        }
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_exact_counts_after_known_traffic_and_pass_promtool() {
    let data = echo("data").await;
    let hash = hash_password(PASSWORD);
    let gw = Gateway::start(format!(
        r#"{data}{gone}
[auth.ops]
type = "basic"
realm = "ops"
users = {{ alice = '{hash}' }}

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "data"

[[routes]]
name = "closed"
path_prefix = "/closed"
upstream = "data"
deny = true

[[routes]]
name = "private"
path_prefix = "/private"
upstream = "data"
auth = "ops"

[[routes]]
name = "broken"
path_prefix = "/broken"
upstream = "gone"

[[routes]]
name = "metrics"
path_prefix = "/metrics"
service = "metrics"
listeners = ["ops"]
allow = ["loopback"]
"#,
        data = upstream("data", data.local_addr(), ""),
        gone = upstream(
            "gone",
            format!("127.0.0.1:{}", closed_port()).parse().unwrap(),
            ""
        ),
    ))
    .await;

    for _ in 0..3 {
        gw.get("api.example.com", "/open/x").await.echo();
    }
    for _ in 0..2 {
        let response = gw.get("api.example.com", "/closed/x").await;
        assert_gateway_error(&response, 403, "forbidden", Some("closed"));
    }
    let response = gw.get("api.example.com", "/nowhere").await;
    assert_gateway_error(&response, 404, "not_found", None);
    let response = gw.get("api.example.com", "/private/x").await;
    assert_gateway_error(&response, 401, "unauthorized", Some("private"));
    let wrong = basic("alice", "not the password");
    let response = gw
        .send(
            "api.example.com",
            request(
                "GET",
                "api.example.com",
                "/private/x",
                &[("Authorization", &wrong)],
                b"",
            ),
        )
        .await;
    assert_gateway_error(&response, 401, "unauthorized", Some("private"));
    let right = basic("alice", PASSWORD);
    gw.send(
        "api.example.com",
        request(
            "GET",
            "api.example.com",
            "/private/x",
            &[("Authorization", &right)],
            b"",
        ),
    )
    .await
    .echo();
    let response = gw.get("api.example.com", "/broken/x").await;
    assert_gateway_error(&response, 502, "bad_gateway", Some("broken"));
    assert_eq!(data.requests_seen(), 4, "3 open + 1 authorised private");

    // Exactly these series for the routes the traffic used, with exact counts.
    let mut expected: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (route, code, count) in [
        ("open", "200", 3.0),
        ("closed", "403", 2.0),
        ("-", "404", 1.0),
        ("private", "401", 2.0),
        ("private", "200", 1.0),
        ("broken", "502", 1.0),
    ] {
        expected.insert((route.to_string(), code.to_string()), count);
    }
    let counted = |text: &str| -> f64 {
        series(&samples(text), "postern_requests_total", &[])
            .iter()
            .filter(|s| s.labels.get("route").map(String::as_str) != Some("metrics"))
            .map(|s| s.value)
            .sum()
    };
    let text = scrape_settled(gw.plain_port, "/metrics", |text| counted(text) >= 10.0).await;
    let all = samples(&text);
    let mut seen: BTreeMap<(String, String), f64> = BTreeMap::new();
    for sample in series(&all, "postern_requests_total", &[]) {
        let route = sample.labels.get("route").cloned().unwrap_or_default();
        let code = sample.labels.get("code").cloned().unwrap_or_default();
        assert_eq!(
            sample.labels.len(),
            2,
            "postern_requests_total has labels route and code only: {sample:?}"
        );
        if route != "metrics" {
            seen.insert((route, code), sample.value);
        }
    }
    assert_eq!(seen, expected, "postern_requests_total\n{text}");
    assert_eq!(
        metric_type(&text, "postern_requests_total"),
        Some("counter")
    );

    assert_eq!(
        metric_type(&text, "postern_request_duration_seconds"),
        Some("histogram")
    );
    assert_eq!(
        value(
            &all,
            "postern_request_duration_seconds_count",
            &[("route", "open")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &all,
            "postern_request_duration_seconds_bucket",
            &[("route", "open"), ("le", "+Inf")]
        ),
        Some(3.0),
        "{text}"
    );

    // One GET to a closed port: one connect failure, plus at most one retry.
    assert_eq!(
        metric_type(&text, "postern_upstream_errors_total"),
        Some("counter")
    );
    let connect_errors = value(
        &all,
        "postern_upstream_errors_total",
        &[("kind", "connect"), ("upstream", "gone")],
    )
    .unwrap_or_else(|| panic!("no connect error counted for upstream gone\n{text}"));
    assert!(
        (1.0..=2.0).contains(&connect_errors),
        "connect errors for gone: {connect_errors}"
    );
    assert!(
        series(
            &all,
            "postern_upstream_errors_total",
            &[("upstream", "data")]
        )
        .is_empty(),
        "the healthy upstream has no errors\n{text}"
    );

    // Every request to the auth route got one decision.
    assert_eq!(
        metric_type(&text, "postern_auth_decisions_total"),
        Some("counter")
    );
    let decisions = |result: &str| -> f64 {
        series(
            &all,
            "postern_auth_decisions_total",
            &[("route", "private"), ("result", result)],
        )
        .iter()
        .inspect(|s| {
            assert!(
                s.labels.get("reason").is_some_and(|r| !r.is_empty()),
                "decision without a reason: {s:?}"
            )
        })
        .map(|s| s.value)
        .sum()
    };
    assert_eq!(decisions("allow"), 1.0, "{text}");
    assert_eq!(decisions("deny"), 2.0, "{text}");

    // No reload happened.
    for result in ["success", "failure"] {
        assert_eq!(
            value(&all, "postern_config_reloads_total", &[("result", result)]).unwrap_or(0.0),
            0.0,
            "{text}"
        );
    }

    // One expiry series per served certificate, in the future.
    assert_eq!(
        metric_type(&text, "postern_tls_certificate_expiry_timestamp_seconds"),
        Some("gauge")
    );
    let expiries = series(
        &all,
        "postern_tls_certificate_expiry_timestamp_seconds",
        &[],
    );
    assert_eq!(expiries.len(), 3, "{expiries:?}");
    for name in ["api.example.com", "*.example.net", "localhost"] {
        let sample = expiries
            .iter()
            .find(|s| {
                s.labels
                    .get("certificate")
                    .is_some_and(|c| c.contains(name))
            })
            .unwrap_or_else(|| panic!("no expiry series for the certificate of {name}\n{text}"));
        assert!(
            sample.value > now_unix(),
            "{name} expires in the past? {sample:?}"
        );
    }

    let rss = value(&all, "process_resident_memory_bytes", &[])
        .unwrap_or_else(|| panic!("no process metrics\n{text}"));
    assert!(rss > 0.0, "resident memory {rss}");

    promtool_check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_route_is_guarded_by_its_allow_list() {
    let gw = Gateway::start(
        r#"
[[routes]]
name = "metrics-locked"
path_prefix = "/locked"
service = "metrics"
listeners = ["ops"]
allow = ["10.0.0.0/8"]

[[routes]]
name = "metrics"
path_prefix = "/metrics"
service = "metrics"
listeners = ["ops"]
allow = ["loopback"]
"#,
    )
    .await;
    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/locked"))
        .await;
    assert_gateway_error(&response, 403, "forbidden", Some("metrics-locked"));
    assert!(
        !response.text().contains("postern_requests_total"),
        "the refusal leaks metrics: {}",
        response.text()
    );
    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/locked/anything"))
        .await;
    assert_gateway_error(&response, 403, "forbidden", Some("metrics-locked"));

    // The refusals are counted like any other answer.
    let locked_refusals = |text: &str| {
        value(
            &samples(text),
            "postern_requests_total",
            &[("code", "403"), ("route", "metrics-locked")],
        )
    };
    let text = scrape_settled(gw.plain_port, "/metrics", |text| {
        locked_refusals(text) == Some(2.0)
    })
    .await;
    let all = samples(&text);
    assert_eq!(
        value(
            &all,
            "postern_requests_total",
            &[("code", "403"), ("route", "metrics-locked")]
        ),
        Some(2.0)
    );
}

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_upstreams_and_probes() {
    let data = echo("data").await;
    let gone = closed_port();
    let gw = Gateway::start(format!(
        r#"{data}
[upstreams.gone]
url = "http://127.0.0.1:{gone}"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "old"
path_prefix = "/old"
upstream = "gone"

[[routes]]
name = "health"
path_prefix = "/status"
service = "health"
listeners = ["ops"]
allow = ["loopback"]
"#,
        data = upstream("data", data.local_addr(), ""),
    ))
    .await;

    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/status"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        response.headers
    );
    let health = response.json();
    assert_eq!(health["status"], "up", "{health}");
    assert_eq!(health["upstreams"]["data"], "up", "{health}");
    assert_eq!(health["upstreams"]["gone"], "down", "{health}");
    assert_eq!(
        health["upstreams"].as_object().map(|o| o.len()),
        Some(2),
        "{health}"
    );

    let live = gw
        .send_plain(gw.plain_port, get("localhost", "/status/live"))
        .await;
    assert_eq!(live.status, 200, "{}", live.text());
    assert_eq!(live.json()["status"], "live");

    let ready = gw
        .send_plain(gw.plain_port, get("localhost", "/status/ready"))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    let unknown = gw
        .send_plain(gw.plain_port, get("localhost", "/status/nope"))
        .await;
    assert_gateway_error(&unknown, 404, "not_found", Some("health"));

    // The health route is on the ops listener only.
    let response = gw.get("api.example.com", "/status").await;
    assert_gateway_error(&response, 404, "not_found", None);
}

// ---------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_masked_config_and_info_behind_auth() {
    const SECRET_VAR: &str = "OPERATIONS_TEST_JWT_SECRET";
    const SECRET: &str = "operations-test-secret-value-32-bytes-or-more!";
    let data = echo("data").await;
    let hash = hash_password(PASSWORD);
    let gw = Gateway::builder(format!(
        r#"{data}
[auth.ops]
type = "basic"
realm = "ops"
users = {{ admin = '{hash}' }}

[auth.shared]
type = "jwt"
secret_env = "{SECRET_VAR}"
issuer = "https://idp.example.com"
audiences = ["postern"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
auth = "shared"

[[routes]]
name = "admin"
path_prefix = "/admin"
service = "admin"
listeners = ["ops"]
allow = ["loopback"]
auth = "ops"
"#,
        data = upstream("data", data.local_addr(), ""),
    ))
    .env(SECRET_VAR, SECRET)
    .start()
    .await;
    let authorization = basic("admin", PASSWORD);
    let admin = |method: &'static str, path: &'static str| {
        let authorization = authorization.clone();
        let gw = &gw;
        async move {
            gw.send_plain(
                gw.plain_port,
                request(
                    method,
                    "localhost",
                    path,
                    &[("Authorization", &authorization)],
                    b"",
                ),
            )
            .await
        }
    };

    // The route's auth applies to the service.
    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/admin/config"))
        .await;
    assert_gateway_error(&response, 401, "unauthorized", Some("admin"));
    assert!(!response.text().contains("argon2"), "{}", response.text());

    let response = admin("GET", "/admin/config").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let config = response.json();
    assert!(config.is_object(), "{config}");
    assert!(!text.contains(&hash), "the password hash is shown: {text}");
    assert!(
        !text.contains("$argon2"),
        "a password hash is shown: {text}"
    );
    let digest = hash.rsplit('$').next().expect("hash digest");
    assert!(!text.contains(digest), "the hash digest is shown: {text}");
    assert!(!text.contains(SECRET), "the JWT secret is shown: {text}");
    assert!(text.contains("***"), "secrets are not shown as ***: {text}");
    // It is the running configuration.
    for expected in ["\"api\"", "\"admin\"", "\"data\"", "\"ops\"", "\"shared\""] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }

    let response = admin("GET", "/admin/info").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let info = response.json();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    let uptime = info["uptime_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("uptime_seconds is not a number: {info}"));
    assert!((0.0..600.0).contains(&uptime), "{info}");
    let config_file = info["config_file"]
        .as_str()
        .unwrap_or_else(|| panic!("config_file is not a string: {info}"));
    assert!(config_file.ends_with("gateway.toml"), "{info}");
    assert_eq!(
        std::fs::read_to_string(Path::new(config_file))
            .ok()
            .as_deref(),
        Some(gw.config.as_str()),
        "config_file is not the file the gateway runs: {info}"
    );
    let certificates = info["certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("certificates is not an array: {info}"));
    assert_eq!(certificates.len(), 3, "{info}");
    for name in ["api.example.com", "*.example.net", "localhost"] {
        let certificate = certificates
            .iter()
            .find(|c| c["names"].to_string().contains(name))
            .unwrap_or_else(|| panic!("no certificate for {name} in {info}"));
        assert!(
            !certificate["not_after"].is_null(),
            "no not_after for {name}: {info}"
        );
    }

    // Anything else is a JSON error.
    let response = admin("GET", "/admin/nothing-here").await;
    assert_json_error_in(&response, &[404], "GET /admin/nothing-here");
    let response = admin("GET", "/admin/reload").await;
    assert_json_error_in(&response, &[404, 405], "GET /admin/reload");
    let response = admin("DELETE", "/admin/config").await;
    assert_json_error_in(&response, &[404, 405], "DELETE /admin/config");
}

// ---------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------

/// What each load client saw.
#[derive(Default)]
struct LoadReport {
    ok: u64,
    backends: BTreeMap<String, u64>,
    failures: Vec<String>,
}

/// Sends `GET /v/load` to the ops listener until `stop`, on a fresh
/// connection per request or on one kept-alive connection.
async fn load_client(port: u16, keep_alive: bool, stop: Arc<AtomicBool>) -> LoadReport {
    let mut report = LoadReport::default();
    let mut conn: Option<HttpConn<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let result = if keep_alive {
            if conn.is_none() {
                match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(stream) => conn = Some(HttpConn::new(stream)),
                    Err(e) => {
                        report.failures.push(format!("connect: {e}"));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connection");
            let result = c
                .send(b"GET /v/load HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await;
            // A server may close a persistent connection after saying so.
            if result.as_ref().map_or(true, |r| {
                r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            }) {
                conn = None;
            }
            result
        } else {
            send_plain(port, get("localhost", "/v/load").as_bytes()).await
        };
        match result {
            Ok(response) if response.status == 200 => {
                let backend = serde_json::from_slice::<Value>(&response.body)
                    .ok()
                    .and_then(|v| v["backend"].as_str().map(str::to_string));
                match backend {
                    Some(b) if b == "a" || b == "b" => {
                        report.ok += 1;
                        *report.backends.entry(b).or_default() += 1;
                    }
                    _ => report
                        .failures
                        .push(format!("200 not from a backend: {}", response.text())),
                }
            }
            Ok(response) => {
                report
                    .failures
                    .push(format!("{} {}", response.status, response.text()))
            }
            Err(e) => report.failures.push(format!("error: {e}")),
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing_and_applies_only_valid_configs() {
    let a = echo("a").await;
    let b = echo("b").await;
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let gw = Gateway::start(&switch_body(a_addr, b_addr, "a")).await;
    assert_eq!(backend_of_v(&gw, "/v/start").await, "a");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| tokio::spawn(load_client(gw.ops_port(), i % 2 == 1, Arc::clone(&stop))))
        .collect();
    // Let the load get going before the first reload.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut expected_backend = "a";
    let mut counts = (0.0, 0.0);
    let (mut post_failures, mut hup_reloads) = (0, 0);
    for i in 0..20 {
        let valid = i % 2 == 0;
        let via_post = (i / 2) % 2 == 0;
        let config = if valid {
            let backend = if (i / 2) % 2 == 0 { "b" } else { "a" };
            gw.config_with(&switch_body(a_addr, b_addr, backend))
        } else if (i / 4) % 2 == 0 {
            // Not TOML.
            format!(
                "{}\n[[routes]\nname = \"broken\"\n",
                gw.config_with(&switch_body(a_addr, b_addr, "b"))
            )
        } else {
            // Valid TOML naming an upstream that does not exist; the /v
            // change in the same file must not apply either.
            let other = if expected_backend == "a" { "b" } else { "a" };
            format!(
                "{}\n[[routes]]\nname = \"w\"\npath_prefix = \"/w\"\nupstream = \"nowhere\"\n",
                gw.config_with(&switch_body(a_addr, b_addr, other))
            )
        };
        gw.rewrite(&config);
        if via_post {
            let response = gw
                .ops(&request("POST", "localhost", "/admin/reload", &[], b""))
                .await;
            let body = response.json();
            if valid {
                assert_eq!(response.status, 200, "reload {i}: {body}");
                assert_eq!(body["result"], "success", "reload {i}: {body}");
            } else {
                assert!(
                    response.status == 422 || response.status == 400,
                    "reload {i} of an invalid file answered {}: {body}",
                    response.status
                );
                assert_eq!(body["result"], "failure", "reload {i}: {body}");
                let errors = body["errors"]
                    .as_array()
                    .unwrap_or_else(|| panic!("reload {i}: no errors array: {body}"));
                assert!(
                    !errors.is_empty() && errors.iter().all(|e| !e.to_string().is_empty()),
                    "reload {i}: {body}"
                );
                post_failures += 1;
            }
            let now = gw.reloads().await;
            assert_eq!(
                now.0 + now.1,
                counts.0 + counts.1 + 1.0,
                "reload {i} counted once: {now:?} after {counts:?}"
            );
            counts = now;
        } else {
            counts = gw.hangup(counts).await;
            hup_reloads += 1;
        }
        let done = i / 2 + 1;
        let expected_counts = (done as f64, (i + 1 - done) as f64);
        assert_eq!(
            counts,
            expected_counts,
            "(success, failure) after reload {i} ({})",
            if valid { "valid" } else { "invalid" }
        );
        if valid {
            expected_backend = if (i / 2) % 2 == 0 { "b" } else { "a" };
        }
        assert_eq!(
            backend_of_v(&gw, &format!("/v/after-{i}")).await,
            expected_backend,
            "route /v after reload {i} ({})",
            if valid { "valid" } else { "invalid" }
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!((post_failures, hup_reloads), (5, 10));

    stop.store(true, Ordering::Relaxed);
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut backends: BTreeMap<String, u64> = BTreeMap::new();
    for client in clients {
        let report = client.await.expect("load client");
        ok += report.ok;
        failures.extend(report.failures);
        for (backend, n) in report.backends {
            *backends.entry(backend).or_default() += n;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during reloads, e.g. {:?}",
        failures.len(),
        failures.len() as u64 + ok,
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 40, "only {ok} requests were sent under load");
    assert!(
        backends.get("a").is_some_and(|n| *n > 0) && backends.get("b").is_some_and(|n| *n > 0),
        "the load saw the route change: {backends:?}"
    );

    let samples = gw.scrape().await;
    assert_eq!(
        value(
            &samples,
            "postern_config_reloads_total",
            &[("result", "success")]
        ),
        Some(10.0)
    );
    assert_eq!(
        value(
            &samples,
            "postern_config_reloads_total",
            &[("result", "failure")]
        ),
        Some(10.0)
    );
    let stderr = gw.stderr();
    assert!(
        stderr.matches("reload failed").count() >= 10,
        "every failed reload is logged with \"reload failed\":\n{stderr}"
    );
    assert!(a.requests_seen() > 0 && b.requests_seen() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_moves_a_listener_is_refused_and_the_old_one_keeps_serving() {
    let a = echo("a").await;
    let b = echo("b").await;
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let gw = Gateway::start(&switch_body(a_addr, b_addr, "a")).await;
    assert_eq!(backend_of_v(&gw, "/v/start").await, "a");

    // The ops listener moves to another port, and /v switches to b.
    let [moved] = free_ports();
    let [tls, redirect, _] = gw.ports();
    let moved_config = gw.config_on([tls, redirect, moved], &switch_body(a_addr, b_addr, "b"));
    gw.rewrite(&moved_config);

    let response = gw
        .ops(&request("POST", "localhost", "/admin/reload", &[], b""))
        .await;
    let body = response.json();
    assert!(
        response.status == 422 || response.status == 400,
        "a listener change answered {}: {body}",
        response.status
    );
    assert_eq!(body["result"], "failure", "{body}");
    let errors = body["errors"].to_string().to_ascii_lowercase();
    assert!(
        errors.contains("restart") || errors.contains("upgrade"),
        "the refusal does not say a restart is needed: {body}"
    );
    assert_eq!(gw.reloads().await, (0.0, 1.0));
    assert_eq!(
        backend_of_v(&gw, "/v/after-post").await,
        "a",
        "nothing of the refused file applies"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", moved)).await.is_err(),
        "the new address is not bound by a refused reload"
    );

    // The same by SIGHUP.
    assert_eq!(gw.hangup((0.0, 1.0)).await, (0.0, 2.0));
    assert_eq!(backend_of_v(&gw, "/v/after-hup").await, "a");
    let stderr = gw.stderr();
    assert!(stderr.contains("reload failed"), "{stderr}");
    let lower = stderr.to_ascii_lowercase();
    assert!(
        lower.contains("restart") || lower.contains("upgrade"),
        "the log does not say a restart is needed:\n{stderr}"
    );
    assert!(TcpStream::connect(("127.0.0.1", moved)).await.is_err());

    // With the listeners as they were, the same route change applies.
    gw.rewrite(&gw.config_with(&switch_body(a_addr, b_addr, "b")));
    let response = gw
        .ops(&request("POST", "localhost", "/admin/reload", &[], b""))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["result"], "success");
    assert_eq!(backend_of_v(&gw, "/v/after-fix").await, "b");
    assert_eq!(gw.reloads().await, (1.0, 2.0));
}

// ---------------------------------------------------------------------------
// Stopping and failing upstreams
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let mut slow = SlowUpstream::start(Duration::from_millis(1500)).await;
    let mut gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slow\"\n",
        upstream("slow", slow.addr, "")
    ))
    .await;
    let port = gw.ops_port();
    let started = Instant::now();
    let in_flight =
        tokio::spawn(async move { send_plain(port, get("localhost", "/slow/x").as_bytes()).await });
    tokio::time::timeout(Duration::from_secs(5), slow.requests.recv())
        .await
        .expect("the slow upstream got the request")
        .expect("slow upstream running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");

    let response = in_flight
        .await
        .expect("request task")
        .unwrap_or_else(|e| panic!("the in-flight request was cut by SIGTERM: {e}"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "slow");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "the response came from the slow upstream"
    );

    // Grace period 5 s, plus a margin for a loaded machine.
    gw.assert_exits_zero(Duration::from_secs(10), "SIGTERM")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    let data = echo("data").await;
    let mut gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"data\"\npath_prefix = \"/d\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), "")
    ))
    .await;
    let tcp = TcpStream::connect(("127.0.0.1", gw.ops_port()))
        .await
        .expect("connect to the ops listener");
    let mut idle = HttpConn::new(tcp);
    let keep_alive = "GET /d/one HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let first = idle
        .send(keep_alive.as_bytes())
        .await
        .expect("first request");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_ne!(
        first.header("connection"),
        Some("close"),
        "a keep-alive answer"
    );

    gw.signal("TERM");
    // The grace period (5 s) is for requests in flight; an idle connection
    // has none, so it is closed as the gateway starts to stop (after a
    // 250 ms last call for a request already on its way).
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(3), idle.stream.read(&mut buf))
        .await
        .expect("an idle keep-alive connection stayed open 3 s after SIGTERM");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the idle connection got bytes instead of being closed: {:?}",
        read.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    gw.assert_exits_zero(Duration::from_secs(10), "SIGTERM")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upstream_fails_fast_with_json_and_recovers_on_return() {
    let data = echo("data").await;
    let address = data.local_addr();
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "health"
path_prefix = "/health"
service = "health"
listeners = ["ops"]
allow = ["loopback"]
"#,
        upstream("data", address, ""),
    ))
    .await;
    for _ in 0..3 {
        gw.get("api.example.com", "/api/x").await.echo();
    }

    drop(data);
    for i in 0..5 {
        let started = Instant::now();
        let response = gw.get("api.example.com", "/api/x").await;
        let took = started.elapsed();
        // Connection refused: 502; later, ejection may answer 503 at once.
        if i == 0 || response.status == 502 {
            assert_gateway_error(&response, 502, "bad_gateway", Some("api"));
        } else {
            assert_gateway_error(&response, 503, "service_unavailable", Some("api"));
        }
        assert!(
            took < Duration::from_secs(2),
            "request {i} to a dead upstream took {took:?}"
        );
    }
    let health = gw
        .send_plain(gw.plain_port, get("localhost", "/health"))
        .await
        .json();
    assert_eq!(health["upstreams"]["data"], "down", "{health}");

    let _revived = EchoServer::start(address, "data")
        .await
        .expect("restart the echo backend on the same port");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = gw.get("api.example.com", "/api/x").await;
        if response.status == 200 {
            response.echo();
            break;
        }
        assert!(
            matches!(response.status, 502 | 503),
            "while recovering: {} {}",
            response.status,
            response.text()
        );
        assert!(
            Instant::now() < deadline,
            "traffic did not recover within 10 s of the upstream's return: {}",
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        gw.get("api.example.com", "/api/x").await.echo();
    }
    let health = gw
        .send_plain(gw.plain_port, get("localhost", "/health"))
        .await
        .json();
    assert_eq!(health["upstreams"]["data"], "up", "{health}");
}

// ---------------------------------------------------------------------------
// Required upstreams, connection counts, graceful upgrade
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_upstream_that_is_down_turns_health_and_readiness_503() {
    let data = echo("data").await;
    let auth_port = closed_port();
    let auth_addr: SocketAddr = ([127, 0, 0, 1], auth_port).into();
    let optional = closed_port();
    let gw = Gateway::start(format!(
        r#"{data}{auth}
[upstreams.reports]
url = "http://127.0.0.1:{optional}"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "login"
path_prefix = "/login"
upstream = "auth"

[[routes]]
name = "reports"
path_prefix = "/reports"
upstream = "reports"

[[routes]]
name = "health"
path_prefix = "/status"
service = "health"
listeners = ["ops"]
"#,
        data = upstream("data", data.local_addr(), "required = true"),
        auth = upstream("auth", auth_addr, "required = true"),
    ))
    .await;

    let health = gw
        .send_plain(gw.plain_port, get("localhost", "/status"))
        .await;
    assert_eq!(health.status, 503, "{}", health.text());
    let body = health.json();
    assert_eq!(body["status"], "down", "{body}");
    assert_eq!(body["required_down"], serde_json::json!(["auth"]), "{body}");
    assert_eq!(body["upstreams"]["data"], "up", "{body}");
    assert_eq!(body["upstreams"]["auth"], "down", "{body}");
    assert_eq!(body["upstreams"]["reports"], "down", "{body}");

    let ready = gw
        .send_plain(gw.plain_port, get("localhost", "/status/ready"))
        .await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["required_down"], serde_json::json!(["auth"]));
    // Liveness says the process works; restarting it would not bring auth back.
    let live = gw
        .send_plain(gw.plain_port, get("localhost", "/status/live"))
        .await;
    assert_eq!(live.status, 200, "{}", live.text());
    // The other routes still serve.
    assert_eq!(gw.get("api.example.com", "/api/x").await.status, 200);

    // The required upstream comes up; an optional one being down does not matter.
    let _auth = EchoServer::start(auth_addr, "auth")
        .await
        .expect("start the auth upstream on its port");
    let health = gw
        .send_plain(gw.plain_port, get("localhost", "/status"))
        .await;
    assert_eq!(health.status, 200, "{}", health.text());
    let body = health.json();
    assert_eq!(body["status"], "up", "{body}");
    assert_eq!(body["upstreams"]["reports"], "down", "{body}");
    let ready = gw
        .send_plain(gw.plain_port, get("localhost", "/status/ready"))
        .await;
    assert_eq!(ready.status, 200, "{}", ready.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_gauge_counts_open_client_connections_per_listener() {
    let data = echo("data").await;
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"data\"\nlisteners = [\"https\"]\n{OPS_ROUTES}",
        upstream("data", data.local_addr(), "")
    ))
    .await;
    let connections = |samples: &[Sample], listener: &str| {
        value(samples, "postern_connections", &[("listener", listener)]).unwrap_or(0.0)
    };

    let mut open = Vec::new();
    for _ in 0..3 {
        let mut conn = support::tls_connect(
            gw.tls_port,
            &gw.pki.ca,
            support::TlsOptions::sni("api.example.com"),
        )
        .await
        .expect("TLS connection");
        let response = conn
            .send(b"GET /api/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            .await
            .expect("request on a kept-alive connection");
        assert_eq!(response.status, 200, "{}", response.text());
        open.push(conn);
    }
    let samples = gw.scrape().await;
    assert_eq!(
        connections(&samples, "https"),
        3.0,
        "three idle keep-alive connections"
    );
    // The scrape's own connection.
    assert_eq!(connections(&samples, "ops"), 1.0);
    assert!(
        metric_type(&gw.scrape_text().await, "postern_connections") == Some("gauge"),
        "postern_connections is a gauge"
    );

    drop(open);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = connections(&gw.scrape().await, "https");
        if now == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections still counted: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_hands_the_sockets_over_without_failing_a_request() {
    let a = echo("a").await;
    let b = echo("b").await;
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let mut old = Gateway::start(&switch_body(a_addr, b_addr, "a")).await;
    assert_eq!(backend_of_v(&old, "/v/start").await, "a");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| tokio::spawn(load_client(old.ops_port(), false, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The new configuration moves the TLS listener, which a reload refuses,
    // and sends /v to the other backend.
    let [old_tls, redirect, ops] = old.ports();
    let [new_tls] = free_ports();
    let new_ports = [new_tls, redirect, ops];
    old.rewrite(&old.config_on(new_ports, &switch_body(a_addr, b_addr, "b")));
    let mut new = old.upgrade(new_ports);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !new.stderr().contains("send it SIGQUIT") {
        assert!(
            new.try_wait().is_none(),
            "postern --upgrade exited early:\n{}",
            new.stderr()
        );
        assert!(
            Instant::now() < deadline,
            "postern --upgrade did not get ready:\n{}",
            new.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give it a moment to listen on the upgrade socket.
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.signal("QUIT");

    // The new process serves the new listener...
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", new_tls)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new TLS listener never came up:\n{}",
            new.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and the old one drains and exits cleanly.
    old.assert_exits_zero(Duration::from_secs(30), "SIGQUIT (upgrade)")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut ok = 0;
    let mut failures = Vec::new();
    let mut backends: BTreeMap<String, u64> = BTreeMap::new();
    for client in clients {
        let report = client.await.expect("load client");
        ok += report.ok;
        failures.extend(report.failures);
        for (backend, n) in report.backends {
            *backends.entry(backend).or_default() += n;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the upgrade, e.g. {:?}",
        failures.len(),
        failures.len() as u64 + ok,
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 40, "only {ok} requests were sent during the upgrade");
    assert!(
        backends.get("b").is_some_and(|n| *n > 0),
        "the new process answered some of the load: {backends:?}"
    );

    // Only the new process is left: it has the new configuration, the moved
    // listener, and the address it gave up is closed.
    assert!(new.try_wait().is_none(), "{}", new.stderr());
    assert_eq!(backend_of_v(&new, "/v/after").await, "b");
    let response = support::tls_connect(
        new_tls,
        &new.pki.ca,
        support::TlsOptions::sni("api.example.com"),
    )
    .await
    .expect("TLS to the moved listener")
    .send(b"GET /v/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
    .await
    .expect("request on the moved listener");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        TcpStream::connect(("127.0.0.1", old_tls)).await.is_err(),
        "the old TLS address still accepts connections"
    );
}
