//! Rate limits end to end (`[limits.NAME]`, route `limit`, `[gateway] shared_store`): the
//! real `postern` binary over TLS, echo upstreams that count what reaches them, and for the
//! shared store a real `redis-server` that is stopped and restarted under the gateways.
//!
//! Every refusal is checked for its 429, its JSON error, its RateLimit headers and an
//! upstream that received nothing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::idp::{now, TestKey};
use crate::support::prometheus::{samples, series, value};
use crate::support::redis::Redis;
use crate::support::{assert_gateway_error, echo, get, request, upstream, Gateway, Response};

const HOST: &str = "api.example.com";

/// The built-in metrics and health endpoints on the plain `ops` listener.
const OPS_ROUTES: &str = r#"
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
"#;

/// One limited route `name` at `/NAME` with `extra` lines, behind `[limits.NAME]` = `limit`.
fn limited_route(name: &str, limit: &str, extra: &str) -> String {
    format!(
        "\n[limits.{name}]\n{limit}\n\n[[routes]]\nname = \"{name}\"\nhost = \"{HOST}\"\npath_prefix = \"/{name}\"\nupstream = \"data\"\nlimit = \"{name}\"\n{extra}\n"
    )
}

async fn send(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Response {
    gw.send(HOST, request("GET", HOST, target, headers, b""))
        .await
}

async fn scrape(gw: &Gateway) -> Vec<crate::support::prometheus::Sample> {
    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/metrics"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    samples(&response.text())
}

async fn health(gw: &Gateway) -> (u16, Value) {
    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/health"))
        .await;
    (response.status, response.json())
}

/// Asserts `response` is the limit's 429: JSON error, Retry-After, both RateLimit headers.
fn assert_limited(response: &Response, route: &str, policy: &str) {
    assert_gateway_error(response, 429, "too_many_requests", Some(route));
    let retry_after: u64 = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", response.headers))
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(response.header("ratelimit-policy"), Some(policy));
    let ratelimit = response.header("ratelimit").expect("RateLimit header");
    assert!(
        ratelimit.starts_with(&format!("\"{route}\";r=0;t=")),
        "RateLimit: {ratelimit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_429_with_headers_and_json_and_nothing_forwarded() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}{}{OPS_ROUTES}\n[[routes]]\nname = \"open\"\nhost = \"{HOST}\"\npath_prefix = \"/open\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), ""),
        limited_route("login", "rate = \"3/h\"", ""),
    ))
    .await;

    // Allowed responses carry no RateLimit headers (only the 429 does, docs/rate-limits.md).
    for _ in 0..3 {
        let response = send(&gw, "/login/x", &[]).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("ratelimit-policy"), None);
        assert_eq!(response.header("ratelimit"), None);
    }
    assert_eq!(data.requests_seen(), 3);

    for _ in 0..2 {
        let refused = send(&gw, "/login/x", &[]).await;
        assert_limited(&refused, "login", "\"login\";q=3;w=3600");
        // 3/h: one request every 20 minutes.
        let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1_000..=1_200).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(
        data.requests_seen(),
        3,
        "a refused request reached the upstream"
    );

    // Other routes are not limited.
    let open = send(&gw, "/open/x", &[]).await;
    assert_eq!(open.status, 200);
    assert_eq!(data.requests_seen(), 4);

    let metrics = scrape(&gw).await;
    assert_eq!(
        value(
            &metrics,
            "postern_rate_limited_total",
            &[("route", "login"), ("limit", "login")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &metrics,
            "postern_requests_total",
            &[("route", "login"), ("code", "429")]
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_address_has_its_own_bucket() {
    let data = echo("data").await;
    // The client is taken from X-Forwarded-For only because the peer is a trusted proxy.
    let gw = Gateway::builder(format!(
        "{}{}",
        upstream("data", data.local_addr(), ""),
        limited_route("login", "rate = \"2/h\"\nkey = \"client\"", ""),
    ))
    .trusted_proxies(&["127.0.0.1/32"])
    .start()
    .await;
    let from = |client: &'static str| [("X-Forwarded-For", client)];

    for _ in 0..2 {
        assert_eq!(send(&gw, "/login", &from("203.0.113.1")).await.status, 200);
    }
    let refused = send(&gw, "/login", &from("203.0.113.1")).await;
    assert_limited(&refused, "login", "\"login\";q=2;w=3600");
    // Another client, through the same proxy connection address: its own bucket.
    for _ in 0..2 {
        assert_eq!(send(&gw, "/login", &from("203.0.113.2")).await.status, 200);
    }
    assert_limited(
        &send(&gw, "/login", &from("203.0.113.2")).await,
        "login",
        "\"login\";q=2;w=3600",
    );
    assert_eq!(data.requests_seen(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_counts_per_header_value() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}{}",
        upstream("data", data.local_addr(), ""),
        limited_route("api", "rate = \"2/h\"\nkey = \"header:X-Api-Key\"", ""),
    ))
    .await;
    let key = |k: &'static str| [("X-Api-Key", k)];

    for _ in 0..2 {
        assert_eq!(send(&gw, "/api", &key("team-a")).await.status, 200);
    }
    assert_limited(
        &send(&gw, "/api", &key("team-a")).await,
        "api",
        "\"api\";q=2;w=3600",
    );
    // Same client address, another key: not limited yet.
    assert_eq!(send(&gw, "/api", &key("team-b")).await.status, 200);
    assert_eq!(data.requests_seen(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_key_counts_per_verified_subject() {
    let data = echo("data").await;
    let key = TestKey::rsa("rsa1", "key-a");
    let gw = Gateway::start(format!(
        "{}\n[auth.idp]\ntype = \"jwt\"\nkeys = ['{pem}']\naudiences = [\"Domino\"]\n{}",
        upstream("data", data.local_addr(), ""),
        limited_route(
            "per-user",
            "rate = \"2/h\"\nkey = \"claim:sub\"",
            "auth = \"idp\""
        ),
        pem = key.public_pem.display(),
    ))
    .await;
    let token = |sub: &str, jti: usize| {
        key.sign(&serde_json::json!({
            "aud": "Domino", "sub": sub, "iat": now(), "exp": now() + 600, "jti": format!("{sub}-{jti}"),
        }))
    };
    let as_user = |sub: &str, jti: usize| format!("Bearer {}", token(sub, jti));

    for i in 0..2 {
        let bearer = as_user("alice", i);
        let response = send(&gw, "/per-user/x", &[("Authorization", &bearer)]).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // A fresh token for the same subject: the claim is the key, not the token.
    let bearer = as_user("alice", 9);
    assert_limited(
        &send(&gw, "/per-user/x", &[("Authorization", &bearer)]).await,
        "per-user",
        "\"per-user\";q=2;w=3600",
    );
    // Same address, another subject: its own bucket.
    let bearer = as_user("bob", 0);
    assert_eq!(
        send(&gw, "/per-user/x", &[("Authorization", &bearer)])
            .await
            .status,
        200
    );
    // A bad token is refused by authentication, before the claim limit.
    let response = send(&gw, "/per-user/x", &[("Authorization", "Bearer nope")]).await;
    assert_gateway_error(&response, 401, "unauthorized", Some("per-user"));
    assert_eq!(data.requests_seen(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_password_flood_over_the_limit_costs_no_hashing() {
    let data = echo("data").await;
    let hash = postern_auth::hash_password(b"correct horse battery staple").unwrap();
    let gw = Gateway::start(format!(
        "{}\n[auth.ops]\ntype = \"basic\"\nrealm = \"ops\"\nusers = {{ admin = \"{hash}\" }}\n{}{OPS_ROUTES}",
        upstream("data", data.local_addr(), ""),
        limited_route("login", "rate = \"3/h\"", "auth = \"ops\""),
    ))
    .await;
    // "admin:wrong", base64.
    let bad = [("Authorization", "Basic YWRtaW46d3Jvbmc=")];
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(send(&gw, "/login", &bad).await.status);
    }
    assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_limited(
        &send(&gw, "/login", &bad).await,
        "login",
        "\"login\";q=3;w=3600",
    );

    // Only the three requests under the limit were judged (and hashed).
    let metrics = scrape(&gw).await;
    let judged: f64 = series(
        &metrics,
        "postern_auth_decisions_total",
        &[("route", "login")],
    )
    .iter()
    .map(|s| s.value)
    .sum();
    assert_eq!(judged, 3.0, "authentication ran for refused requests");
    assert_eq!(data.requests_seen(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_counts_of_an_unchanged_limit() {
    let data = echo("data").await;
    let body = format!(
        "{}{}",
        upstream("data", data.local_addr(), ""),
        limited_route("login", "rate = \"2/h\"", ""),
    );
    let gw = Gateway::start(body.clone()).await;
    for _ in 0..2 {
        assert_eq!(send(&gw, "/login", &[]).await.status, 200);
    }
    // Another route added: the limit itself is unchanged.
    gw.rewrite(&gw.config_with(&format!(
        "{body}\n[[routes]]\nname = \"other\"\nhost = \"{HOST}\"\npath_prefix = \"/other\"\nupstream = \"data\"\n"
    )));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&gw, "/other", &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", gw.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_limited(
        &send(&gw, "/login", &[]).await,
        "login",
        "\"login\";q=2;w=3600",
    );
}

// ---------------------------------------------------------------------------
// The shared store
// ---------------------------------------------------------------------------

/// A gateway with the route-keyed limit `login` (4 per hour for everybody), sharing `redis`
/// (set by environment override, as a deployment would), once its store answers.
async fn sharing_gateway(data: &postern_echo::EchoServer, redis: &Redis) -> Gateway {
    let gw = Gateway::builder(format!(
        "{}{}{OPS_ROUTES}",
        upstream("data", data.local_addr(), ""),
        limited_route("login", "rate = \"4/h\"\nkey = \"route\"", ""),
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
        let (code, body) = health(gw).await;
        assert_eq!(code, 200, "/health: {body}");
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

/// Statuses of `tries` requests alternating between the two gateways.
async fn alternate(a: &Gateway, b: &Gateway, tries: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..tries {
        let gw = if i % 2 == 0 { a } else { b };
        statuses.push(send(gw, "/login", &[]).await.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_enforce_one_limit_and_fall_back_when_it_stops() {
    let mut redis = Redis::start();
    let data = echo("data").await;
    let a = sharing_gateway(&data, &redis).await;
    let b = sharing_gateway(&data, &redis).await;

    // One limit of 4 across both: each alone would let 4 through.
    let statuses = alternate(&a, &b, 8).await;
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    assert_limited(
        &send(&b, "/login", &[]).await,
        "login",
        "\"login\";q=4;w=3600",
    );
    assert_eq!(data.requests_seen(), 4);

    // Redis gone: each gateway decides alone, with its own (unused, full) bucket; nothing
    // fails because of the store.
    redis.stop();
    let statuses = alternate(&a, &b, 6).await;
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200],
        "with Redis stopped"
    );
    for gw in [&a, &b] {
        let body = wait_for_store(gw, "degraded").await;
        assert!(
            body["shared_store"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        let errors = value(&scrape(gw).await, "postern_shared_store_errors_total", &[]);
        assert!(errors.is_some_and(|e| e >= 1.0), "{errors:?}");
    }
    assert!(
        a.stderr().contains("deciding limits locally"),
        "{}",
        a.stderr()
    );

    // Back, empty: shared counting resumes. Locally a and b have one request left each, so
    // four in a row are only possible through the shared bucket.
    redis.restart();
    wait_for_store(&a, "up").await;
    wait_for_store(&b, "up").await;
    let statuses = alternate(&a, &b, 6).await;
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "after Redis restarted"
    );
}
