//! The basic-auth backoff shared through `[gateway] shared_store`: two real `postern`
//! processes on one real `redis-server`, a guesser alternating between them, and the store
//! stopped and restarted under them.
//!
//! Every refusal is checked for its status, its JSON error and an upstream that received
//! nothing.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use postern_echo::EchoServer;
use serde_json::Value;

use crate::support::prometheus::{samples, value};
use crate::support::redis::Redis;
use crate::support::{assert_gateway_error, echo, get, request, upstream, Gateway, Response};

const HOST: &str = "api.example.com";
const PASSWORD: &str = "correct horse battery staple";

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A gateway with `[auth.ops]` (users admin, bob and carol, all with PASSWORD;
/// max_failures = 3, a first wait of 30 s) on route `mgmt`, sharing `redis`, once its store
/// answers.
async fn sharing_gateway(data: &EchoServer, hash: &str, redis: &Redis) -> Gateway {
    let gw = Gateway::builder(format!(
        r#"{}
[auth.ops]
type = "basic"
realm = "management"
users = {{ admin = '{hash}', bob = '{hash}', carol = '{hash}' }}
max_failures = 3
backoff_initial = "30s"
backoff_max = "60s"

[[routes]]
name = "mgmt"
host = "{HOST}"
path_prefix = "/mgmt"
upstream = "data"
auth = "ops"

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
"#,
        upstream("data", data.local_addr(), ""),
    ))
    .env("POSTERN_GATEWAY__SHARED_STORE", &redis.url())
    .start()
    .await;
    wait_for_store(&gw, "up").await;
    gw
}

async fn wait_for_store(gw: &Gateway, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = gw
            .send_plain(gw.plain_port, get("localhost", "/health"))
            .await;
        let body = response.json();
        assert_eq!(response.status, 200, "/health: {body}");
        if body["shared_store"]["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "shared store not {status}: {body}\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login(gw: &Gateway, user: &str, password: &str) -> Response {
    let authorization = basic(user, password);
    gw.send(
        HOST,
        request(
            "GET",
            HOST,
            "/mgmt/config",
            &[("Authorization", &authorization)],
            b"",
        ),
    )
    .await
}

/// A wrong password for `user`: 401 with the Basic challenge, nothing forwarded.
async fn fails(gw: &Gateway, data: &EchoServer, user: &str, case: &str) {
    let before = data.requests_seen();
    let response = login(gw, user, "wrong").await;
    assert_eq!(response.status, 401, "{case}: {}", response.text());
    assert_gateway_error(&response, 401, "unauthorized", Some("mgmt"));
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic realm=\"management\"")),
        "{case}: {:?}",
        response.headers
    );
    assert_eq!(data.requests_seen(), before, "{case}: forwarded");
}

/// The right password for `user` is let through.
async fn passes(gw: &Gateway, data: &EchoServer, user: &str, case: &str) {
    let before = data.requests_seen();
    let response = login(gw, user, PASSWORD).await;
    assert_eq!(response.status, 200, "{case}: {}", response.text());
    assert_eq!(data.requests_seen(), before + 1, "{case}: not forwarded");
}

/// The right password for `user` is refused with the backoff's 429 and a Retry-After of the
/// first window (30 s): returns nothing, forwards nothing.
async fn backed_off(gw: &Gateway, data: &EchoServer, user: &str, case: &str) {
    let before = data.requests_seen();
    let response = login(gw, user, PASSWORD).await;
    assert_eq!(
        response.status,
        429,
        "{case}: expected 429, got {} {}",
        response.status,
        response.text()
    );
    assert_gateway_error(&response, 429, "too_many_requests", Some("mgmt"));
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("{case}: no Retry-After in {:?}", response.headers));
    assert!(
        (25..=30).contains(&retry_after),
        "{case}: Retry-After {retry_after}, expected the first window (30 s)"
    );
    assert_eq!(data.requests_seen(), before, "{case}: forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_share_the_basic_auth_backoff_and_fall_back_when_it_stops() {
    let mut redis = Redis::start();
    let data = echo("data").await;
    let hash = postern_auth::hash_password(PASSWORD.as_bytes()).unwrap();
    let a = sharing_gateway(&data, &hash, &redis).await;
    let b = sharing_gateway(&data, &hash, &redis).await;

    // Three failures for admin, alternating: a has seen two, b one, neither its
    // max_failures (3). Shared, they put admin into backoff on both, the right password too.
    fails(&a, &data, "admin", "admin's 1st failure, on a").await;
    fails(&b, &data, "admin", "admin's 2nd failure, on b").await;
    fails(&a, &data, "admin", "admin's 3rd failure, on a").await;
    backed_off(&b, &data, "admin", "admin on b, which saw one failure").await;
    backed_off(&a, &data, "admin", "admin on a").await;
    // Another user at the same source is not held up.
    passes(&b, &data, "carol", "carol while admin waits").await;

    // What Redis holds: digests under the store's prefix, no user name and no address, and
    // an expiry on every key.
    let keys = redis.command(&["--scan", "--pattern", "*"]);
    assert!(!keys.is_empty(), "nothing in Redis");
    for key in keys.lines() {
        assert!(key.starts_with("postern:backoff:ops:"), "{keys}");
        assert!(
            !key.contains("admin") && !key.contains("127.0.0.1"),
            "{keys}"
        );
        let ttl: i64 = redis.command(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 120_000, "{key}: PTTL {ttl}");
    }

    // Redis gone: each gateway keeps its own count and goes on at once, no 5xx.
    redis.stop();
    // b saw one failure of admin's: not in backoff there any more.
    passes(&b, &data, "admin", "admin on b with Redis stopped").await;
    // The local backoff still works: three failures of bob on a put bob into backoff on a
    // only.
    for i in 1..=3 {
        fails(
            &a,
            &data,
            "bob",
            &format!("bob's failure #{i} on a, Redis stopped"),
        )
        .await;
    }
    backed_off(&a, &data, "bob", "bob on a, Redis stopped").await;
    passes(&b, &data, "bob", "bob on b, which saw none of it").await;
    for gw in [&a, &b] {
        let body = wait_for_store(gw, "degraded").await;
        assert!(
            body["shared_store"]["effect"]
                .as_str()
                .is_some_and(|e| e.contains("backoff")),
            "{body}"
        );
        let response = gw
            .send_plain(gw.plain_port, get("localhost", "/metrics"))
            .await;
        let errors = value(
            &samples(&response.text()),
            "postern_shared_store_errors_total",
            &[],
        );
        assert!(errors.is_some_and(|e| e >= 1.0), "{errors:?}");
    }

    // Back, empty: sharing resumes. carol has no failure anywhere yet.
    redis.restart();
    wait_for_store(&a, "up").await;
    wait_for_store(&b, "up").await;
    fails(&b, &data, "carol", "carol's 1st failure, on b").await;
    fails(&a, &data, "carol", "carol's 2nd failure, on a").await;
    fails(&b, &data, "carol", "carol's 3rd failure, on b").await;
    backed_off(&a, &data, "carol", "carol on a after Redis restarted").await;
}
