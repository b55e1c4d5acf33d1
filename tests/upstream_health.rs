//! Upstream health: an actively checked upstream that dies gets fast 503s
//! (no connect timeouts), shows as down in metrics and /health, and is used
//! again once its checks pass; an unchecked one is ejected after repeated
//! connect failures.

use std::time::{Duration, Instant};

use postern_echo::EchoServer;

use crate::support;
use crate::support::{assert_gateway_error, echo, Gateway};

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_upstream_fails_fast_and_recovers() {
    let data = echo("data").await;
    let address = data.local_addr();
    let gw = Gateway::start(format!(
        r#"[upstreams.data]
url = "http://{address}"
connect_timeout = "2s"

[upstreams.data.health]
path = "/healthz"
interval = "300ms"
timeout = "200ms"
unhealthy_threshold = 2
healthy_threshold = 1

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
listeners = ["https"]

[[routes]]
name = "metrics"
path_prefix = "/metrics"
service = "metrics"
listeners = ["ops"]

[[routes]]
name = "health"
path_prefix = "/health"
service = "health"
listeners = ["ops"]
"#
    ))
    .await;
    let scrape = || async {
        gw.send_plain(
            gw.plain_port,
            support::get("localhost", "/metrics").into_bytes(),
        )
        .await
        .text()
    };
    assert_eq!(gw.get("api.example.com", "/api/x").await.status, 200);
    wait_for("the upstream reported healthy", async || {
        metric(
            &scrape().await,
            "postern_upstream_healthy{upstream=\"data\"}",
        ) == Some(1.0)
    })
    .await;

    drop(data);
    wait_for("the upstream marked unhealthy", async || {
        gw.get("api.example.com", "/api/x").await.status == 503
    })
    .await;
    let started = Instant::now();
    let response = gw.get("api.example.com", "/api/x").await;
    assert_gateway_error(&response, 503, "service_unavailable", Some("api"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "503 is fast: {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &scrape().await,
            "postern_upstream_healthy{upstream=\"data\"}"
        ),
        Some(0.0)
    );
    let health = gw
        .send_plain(
            gw.plain_port,
            support::get("localhost", "/health").into_bytes(),
        )
        .await
        .json();
    assert_eq!(health["upstreams"]["data"], "down", "{health}");

    // Back on the same port: checks pass, traffic flows again.
    let _revived = EchoServer::start(address, "data")
        .await
        .expect("restart echo");
    wait_for("the upstream back in service", async || {
        gw.get("api.example.com", "/api/x").await.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchecked_upstream_is_ejected_after_connect_failures() {
    let closed = support::closed_port();
    let gw = Gateway::start(format!(
        "[upstreams.gone]\nurl = \"http://127.0.0.1:{closed}\"\n\n\
         [[routes]]\nname = \"gone\"\nupstream = \"gone\"\n"
    ))
    .await;
    // Connect refused (and retried once, being a GET): 502, then ejection: 503.
    let first = gw.get("api.example.com", "/x").await;
    assert_gateway_error(&first, 502, "bad_gateway", Some("gone"));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(gw.get("api.example.com", "/x").await.status);
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}\n{}", gw.stderr());
    assert!(gw.stderr().contains("ejected for"), "{}", gw.stderr());
}
