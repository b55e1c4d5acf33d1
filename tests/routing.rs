//! Route choice, path canonicalisation, deny/allow and upstream failures, seen
//! from a real client through the real `postern` binary.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    assert_gateway_error, closed_port, echo, get, request, upstream, upstream_header, Gateway,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routing_sends_each_subdomain_to_its_upstream() {
    let data = echo("data").await;
    let metrics = echo("metrics").await;
    let gw = Gateway::start(format!(
        r#"{}{}
[[routes]]
name = "api-host"
host = "api.example.com"
upstream = "data"

[[routes]]
name = "metrics-host"
host = "metrics.example.com"
upstream = "metrics"
"#,
        upstream("data", data.local_addr(), ""),
        upstream("metrics", metrics.local_addr(), ""),
    ))
    .await;

    let echo_json = gw.get("api.example.com", "/users/7").await.echo();
    assert_eq!(echo_json["backend"], "data");
    assert_eq!(echo_json["path"], "/users/7");
    assert_eq!(echo_json["method"], "GET");

    let echo_json = gw.get("metrics.example.com", "/metrics").await.echo();
    assert_eq!(echo_json["backend"], "metrics");
    assert_eq!(echo_json["path"], "/metrics");

    assert_eq!(data.requests_seen(), 1);
    assert_eq!(metrics.requests_seen(), 1);

    // example.com is served by the certificate but has no route.
    let response = gw.get("example.com", "/users/7").await;
    assert_gateway_error(&response, 404, "not_found", None);
    assert_eq!(data.requests_seen() + metrics.requests_seen(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_routing_on_one_host() {
    let data = echo("data").await;
    let metrics = echo("metrics").await;
    let gw = Gateway::start(format!(
        r#"{}{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "metrics"
path_prefix = "/metrics"
upstream = "metrics"
"#,
        upstream("data", data.local_addr(), ""),
        upstream("metrics", metrics.local_addr(), ""),
    ))
    .await;

    let cases = [
        ("/api", "data", "/api"),
        ("/api/v1/documents", "data", "/api/v1/documents"),
        ("/metrics", "metrics", "/metrics"),
        ("/metrics/jvm", "metrics", "/metrics/jvm"),
    ];
    for (target, backend, path) in cases {
        let echo_json = gw.get("example.com", target).await.echo();
        assert_eq!(echo_json["backend"], backend, "{target}");
        assert_eq!(echo_json["path"], path, "{target}");
    }
    assert_eq!(data.requests_seen(), 2);
    assert_eq!(metrics.requests_seen(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_path_routing_combined() {
    let data = echo("data").await;
    let metrics = echo("metrics").await;
    let health = echo("health").await;
    let gw = Gateway::start(format!(
        r#"{}{}{}
[[routes]]
name = "metrics-host"
host = "metrics.example.com"
upstream = "metrics"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "metrics-path"
path_prefix = "/metrics"
upstream = "metrics"

[[routes]]
name = "health"
path_prefix = "/health"
upstream = "health"
"#,
        upstream("data", data.local_addr(), ""),
        upstream("metrics", metrics.local_addr(), ""),
        upstream("health", health.local_addr(), ""),
    ))
    .await;

    let cases = [
        ("metrics.example.com", "/", "metrics", "/"),
        ("metrics.example.com", "/api/x", "metrics", "/api/x"),
        ("api.example.com", "/api/x", "data", "/api/x"),
        ("api.example.com", "/metrics", "metrics", "/metrics"),
        ("example.com", "/health", "health", "/health"),
        ("localhost", "/api", "data", "/api"),
    ];
    for (host, target, backend, path) in cases {
        let echo_json = gw.get(host, target).await.echo();
        assert_eq!(echo_json["backend"], backend, "{host}{target}");
        assert_eq!(echo_json["path"], path, "{host}{target}");
    }
    assert_eq!(data.requests_seen(), 2);
    assert_eq!(metrics.requests_seen(), 3);
    assert_eq!(health.requests_seen(), 1);

    let response = gw.get("api.example.com", "/other").await;
    assert_gateway_error(&response, 404, "not_found", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_exact_host_then_wildcard_then_any_then_longest_prefix() {
    let exact = echo("exact").await;
    let wild = echo("wild").await;
    let any = echo("any").await;
    let any_api = echo("any-api").await;
    let any_api_v1 = echo("any-api-v1").await;
    let only = echo("only").await;
    let gw = Gateway::start(format!(
        r#"{}{}{}{}{}{}
# Listed least specific first: order in the file must not matter.
[[routes]]
name = "any-root"
upstream = "any"

[[routes]]
name = "any-api-v1"
path_prefix = "/api/v1"
upstream = "any_api_v1"

[[routes]]
name = "any-api"
path_prefix = "/api"
upstream = "any_api"

[[routes]]
name = "wild"
host = "*.example.com"
upstream = "wild"

[[routes]]
name = "exact"
host = "api.example.com"
upstream = "exact"

[[routes]]
name = "only"
host = "only.example.net"
path_prefix = "/only"
upstream = "only"
"#,
        upstream("exact", exact.local_addr(), ""),
        upstream("wild", wild.local_addr(), ""),
        upstream("any", any.local_addr(), ""),
        upstream("any_api", any_api.local_addr(), ""),
        upstream("any_api_v1", any_api_v1.local_addr(), ""),
        upstream("only", only.local_addr(), ""),
    ))
    .await;

    let cases = [
        // The exact host wins even over a longer any-host prefix.
        ("api.example.com", "/api/v1/x", "exact"),
        ("API.Example.COM", "/x", "exact"),
        // The wildcard covers one label under example.com.
        ("metrics.example.com", "/api/v1/x", "wild"),
        // example.com itself is not under *.example.com.
        ("example.com", "/x", "any"),
        ("example.com", "/api", "any-api"),
        ("example.com", "/api/", "any-api"),
        ("example.com", "/api/x", "any-api"),
        ("example.com", "/apix", "any"),
        ("example.com", "/api/v1", "any-api-v1"),
        ("example.com", "/api/v1/users", "any-api-v1"),
        ("example.com", "/api/v1x", "any-api"),
        ("example.com", "/api;v=1/v1/z", "any-api-v1"),
        ("only.example.net", "/only/x", "only"),
    ];
    for (host, target, backend) in cases {
        let echo_json = gw.get(host, target).await.echo();
        assert_eq!(echo_json["backend"], backend, "{host} {target}");
        assert_eq!(echo_json["path"], target, "{host} {target}");
    }

    // A host with routes does not fall through to the any-host routes.
    let before = any.requests_seen() + any_api.requests_seen();
    for target in ["/other", "/api/x", "/onlyx"] {
        let response = gw.get("only.example.net", target).await;
        assert_gateway_error(&response, 404, "not_found", None);
    }
    assert_eq!(any.requests_seen() + any_api.requests_seen(), before);
    assert_eq!(only.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_matches_whole_segments_and_404s_without_a_root_route() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
"#,
        upstream("data", data.local_addr(), ""),
    ))
    .await;

    for target in ["/api", "/api/", "/api/x", "/api?x=1"] {
        let echo_json = gw.get("example.com", target).await.echo();
        assert_eq!(echo_json["backend"], "data", "{target}");
    }
    assert_eq!(data.requests_seen(), 4);

    for target in ["/apix", "/ap", "/", "/API", "/x/api"] {
        let response = gw.get("example.com", target).await;
        assert_gateway_error(&response, 404, "not_found", None);
    }
    assert_eq!(data.requests_seen(), 4, "a 404 reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_forwards_the_rest_of_the_path() {
    let mgmt = echo("management").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "mgmt"
path_prefix = "/mgmt/v1"
strip_prefix = true
upstream = "management"
"#,
        upstream("management", mgmt.local_addr(), ""),
    ))
    .await;

    let cases = [
        ("/mgmt/v1/x?y=1", "/x", Value::from("y=1")),
        ("/mgmt/v1", "/", Value::Null),
        ("/mgmt/v1/", "/", Value::Null),
        ("/mgmt/v1/config/db/", "/config/db/", Value::Null),
        ("/mgmt//v1/./info", "/info", Value::Null),
    ];
    for (target, path, query) in cases {
        let echo_json = gw.get("api.example.com", target).await.echo();
        assert_eq!(echo_json["path"], path, "{target}");
        assert_eq!(echo_json["query"], query, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_of_a_one_segment_prefix() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
strip_prefix = true
upstream = "data"
"#,
        upstream("data", data.local_addr(), ""),
    ))
    .await;

    let echo_json = gw.get("api.example.com", "/api/x?y=1").await.echo();
    assert_eq!(echo_json["path"], "/x");
    assert_eq!(echo_json["query"], "y=1");

    let echo_json = gw.get("api.example.com", "/api").await.echo();
    assert_eq!(echo_json["path"], "/");
    assert_eq!(echo_json["query"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_answers_403_and_forwards_nothing() {
    let mgmt = echo("management").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "mgmt"
path_prefix = "/mgmt"
strip_prefix = true
upstream = "management"

[[routes]]
name = "mgmt-shutdown"
path_prefix = "/mgmt/shutdown"
deny = true
"#,
        upstream("management", mgmt.local_addr(), ""),
    ))
    .await;

    // Every spelling of the denied path is the denied path.
    for target in [
        "/mgmt/shutdown",
        "/mgmt/shutdown/",
        "/mgmt/shutdown/now?force=1",
        "/mgmt/shutdown;jsessionid=1",
        "/mgmt/%73hutdown",
        "/mgmt/./shutdown",
        "/mgmt/x/../shutdown",
        "//mgmt//shutdown",
    ] {
        let response = gw.get("api.example.com", target).await;
        assert_gateway_error(&response, 403, "forbidden", Some("mgmt-shutdown"));
    }
    // A denied POST with a body is refused too.
    let response = gw
        .send(
            "api.example.com",
            request(
                "POST",
                "api.example.com",
                "/mgmt/shutdown",
                &[],
                b"{\"now\":true}",
            ),
        )
        .await;
    assert_gateway_error(&response, 403, "forbidden", Some("mgmt-shutdown"));
    assert_eq!(
        mgmt.requests_seen(),
        0,
        "a denied request reached the upstream"
    );

    // The neighbouring path is forwarded.
    let echo_json = gw.get("api.example.com", "/mgmt/shutdownx").await.echo();
    assert_eq!(echo_json["path"], "/shutdownx");
    assert_eq!(mgmt.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_is_decided_on_the_peer_address() {
    let private = echo("private").await;
    let local = echo("local").await;
    let doc = echo("doc").await;
    let gw = Gateway::start(format!(
        r#"{}{}{}
[[routes]]
name = "private"
path_prefix = "/private"
upstream = "private"
allow = ["10.0.0.0/8"]

[[routes]]
name = "local"
path_prefix = "/local"
upstream = "local"
allow = ["loopback"]

[[routes]]
name = "doc"
path_prefix = "/doc"
upstream = "doc"
allow = ["192.0.2.0/24"]
"#,
        upstream("private", private.local_addr(), ""),
        upstream("local", local.local_addr(), ""),
        upstream("doc", doc.local_addr(), ""),
    ))
    .await;

    let response = gw.get("api.example.com", "/private/x").await;
    assert_gateway_error(&response, 403, "forbidden", Some("private"));
    assert_eq!(private.requests_seen(), 0);

    let echo_json = gw.get("api.example.com", "/local/x").await.echo();
    assert_eq!(echo_json["backend"], "local");
    assert_eq!(local.requests_seen(), 1);

    // A client (not a trusted proxy) claiming to be in the allowed network.
    let spoofed = request(
        "GET",
        "api.example.com",
        "/doc/x",
        &[
            ("X-Forwarded-For", "192.0.2.7"),
            ("X-Real-IP", "192.0.2.7"),
            ("Forwarded", "for=192.0.2.7"),
        ],
        b"",
    );
    let response = gw.send("api.example.com", spoofed).await;
    assert_gateway_error(&response, 403, "forbidden", Some("doc"));
    assert_eq!(
        doc.requests_seen(),
        0,
        "a spoofed X-Forwarded-For was believed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_canonicalised_once_for_routing_and_forwarding() {
    let data = echo("data").await;
    let metrics = echo("metrics").await;
    let root = echo("root").await;
    let gw = Gateway::start(format!(
        r#"{}{}{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "metrics"
path_prefix = "/metrics"
upstream = "metrics"

[[routes]]
name = "root"
upstream = "root"
"#,
        upstream("data", data.local_addr(), ""),
        upstream("metrics", metrics.local_addr(), ""),
        upstream("root", root.local_addr(), ""),
    ))
    .await;

    // (raw target, backend, path the upstream must see, query it must see)
    let forwarded: &[(&str, &str, &str, Option<&str>)] = &[
        ("/api/../metrics", "metrics", "/metrics", None),
        ("/api/%2e%2e/metrics", "metrics", "/metrics", None),
        ("/api/%2E%2E/metrics/x", "metrics", "/metrics/x", None),
        ("/api/./x", "data", "/api/x", None),
        ("//api//x", "data", "/api/x", None),
        ("/api/%41bc", "data", "/api/Abc", None),
        ("/%61pi/x", "data", "/api/x", None),
        ("/api/%7euser", "data", "/api/~user", None),
        ("/api/a%20b", "data", "/api/a%20b", None),
        ("/api/x/", "data", "/api/x/", None),
        ("/metrics/../api/y/..", "data", "/api/", None),
        (
            "/api/q?a=%2F&b=../c",
            "data",
            "/api/q",
            Some("a=%2F&b=../c"),
        ),
        ("/api/q?", "data", "/api/q", Some("")),
    ];
    for (target, backend, path, query) in forwarded {
        let response = gw.get("api.example.com", target).await;
        let echo_json = response.echo();
        assert_eq!(echo_json["backend"], *backend, "{target}");
        assert_eq!(echo_json["path"], *path, "{target}");
        assert_eq!(
            echo_json["query"],
            query.map_or(Value::Null, Value::from),
            "{target}"
        );
    }
    let seen = || data.requests_seen() + metrics.requests_seen() + root.requests_seen();
    let forwarded_count = seen();
    assert_eq!(forwarded_count, forwarded.len() as u64);

    for target in [
        "/api/%2fx",
        "/api/%2Fx",
        "/api/%5cx",
        "/api/%00",
        "/../x",
        "/api/../../x",
        "/api/..;/metrics",
        "/api/.;x/metrics",
        "/api/x%3b",
        "/api/%c0%ae%c0%ae/x",
        "/api/%c0%af",
        "/api/%zz",
        "/api/%",
    ] {
        let response = gw.get("api.example.com", target).await;
        assert_gateway_error(&response, 400, "bad_request", None);
        assert_eq!(seen(), forwarded_count, "{target} reached an upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let slow = echo("slow").await;
    let gw = Gateway::start(format!(
        r#"
[upstreams.down]
url = "http://127.0.0.1:{down}"
connect_timeout = "1s"
{slow}
[[routes]]
name = "down"
path_prefix = "/down"
upstream = "down"

[[routes]]
name = "slow"
path_prefix = "/api"
upstream = "slow"
"#,
        down = closed_port(),
        slow = upstream("slow", slow.local_addr(), "read_timeout = \"200ms\""),
    ))
    .await;

    let response = gw.get("api.example.com", "/down/x").await;
    assert_gateway_error(&response, 502, "bad_gateway", Some("down"));

    let started = Instant::now();
    let response = gw.get("api.example.com", "/api/delay/2000").await;
    let elapsed = started.elapsed();
    assert_gateway_error(&response, 504, "gateway_timeout", Some("slow"));
    assert!(
        elapsed < Duration::from_millis(1500),
        "the 200ms read_timeout took {elapsed:?}"
    );
    assert_eq!(slow.requests_seen(), 1);

    // A fast request on the same route still works.
    let echo_json = gw.get("api.example.com", "/api/delay/10").await.echo();
    assert_eq!(echo_json["path"], "/api/delay/10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_status_codes_pass_through_unchanged() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
"#,
        upstream("data", data.local_addr(), ""),
    ))
    .await;
    for code in [201u16, 404, 500, 503] {
        let response = gw
            .get("api.example.com", &format!("/api/status/{code}"))
            .await;
        assert_eq!(response.status, code, "{}", response.text());
        // The upstream's own body, not a gateway error.
        assert_eq!(response.json()["backend"], "data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_sends_308_to_https_and_forwards_nothing() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "api"
upstream = "data"
"#,
        upstream("data", data.local_addr(), ""),
    ))
    .await;
    let tls_port = gw.tls_port;

    let cases = [
        (
            "api.example.com",
            "/api/x?y=1",
            format!("https://api.example.com:{tls_port}/api/x?y=1"),
        ),
        (
            "api.example.com:80",
            "/",
            format!("https://api.example.com:{tls_port}/"),
        ),
        (
            "foo.example.net",
            "/a/../b",
            format!("https://foo.example.net:{tls_port}/b"),
        ),
        (
            "Metrics.Example.com",
            "/m",
            format!("https://metrics.example.com:{tls_port}/m"),
        ),
    ];
    for (host, target, location) in cases {
        let response = gw.send_plain(gw.redirect_port, get(host, target)).await;
        assert_eq!(response.status, 308, "{host}{target}: {}", response.text());
        assert_eq!(
            response.header("location"),
            Some(location.as_str()),
            "{host}{target}"
        );
        let id = response.header("x-request-id").unwrap_or_default();
        assert_eq!(id.len(), 32, "x-request-id on the redirect: {id:?}");
    }

    for host in ["other.example.org", "a.b.example.net"] {
        let response = gw.send_plain(gw.redirect_port, get(host, "/api/x")).await;
        assert_gateway_error(&response, 404, "not_found", None);
    }
    assert_eq!(data.requests_seen(), 0, "the redirect listener forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_serves_routes_without_certificate_checks() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
"#,
        upstream("data", data.local_addr(), ""),
    ))
    .await;
    let response = gw
        .send_plain(gw.plain_port, get("other.example.org", "/api/x"))
        .await;
    let echo_json = response.echo();
    assert_eq!(echo_json["path"], "/api/x");
    assert_eq!(upstream_header(&echo_json, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        upstream_header(&echo_json, "x-forwarded-port"),
        [gw.plain_port.to_string()]
    );

    let response = gw
        .send_plain(gw.plain_port, get("other.example.org", "/api/%2f"))
        .await;
    assert_gateway_error(&response, 400, "bad_request", None);
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_listeners_restrict_where_a_route_is_served() {
    let data = echo("data").await;
    let ops = echo("ops").await;
    let gw = Gateway::start(format!(
        r#"{}{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
listeners = ["https"]

[[routes]]
name = "ops-metrics"
path_prefix = "/metrics"
upstream = "ops"
listeners = ["ops"]
"#,
        upstream("data", data.local_addr(), ""),
        upstream("ops", ops.local_addr(), ""),
    ))
    .await;

    assert_eq!(
        gw.get("api.example.com", "/api/x").await.echo()["backend"],
        "data"
    );
    let response = gw.get("api.example.com", "/metrics").await;
    assert_gateway_error(&response, 404, "not_found", None);

    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/metrics"))
        .await;
    assert_eq!(response.echo()["backend"], "ops");
    let response = gw
        .send_plain(gw.plain_port, get("localhost", "/api/x"))
        .await;
    assert_gateway_error(&response, 404, "not_found", None);

    assert_eq!(data.requests_seen(), 1);
    assert_eq!(ops.requests_seen(), 1);
}

/// The body of a request the gateway refuses is never read, so it must not be
/// parsed as the next request on the connection (request smuggling past deny).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_requests_body_is_never_parsed_as_a_request() {
    use tokio::io::AsyncWriteExt;

    let mgmt = echo("management").await;
    let gw = Gateway::start(format!(
        r#"{}
[[routes]]
name = "mgmt"
path_prefix = "/mgmt"
upstream = "management"

[[routes]]
name = "mgmt-shutdown"
path_prefix = "/mgmt/shutdown"
deny = true
"#,
        upstream("management", mgmt.local_addr(), ""),
    ))
    .await;

    let smuggled = "GET /mgmt/after-deny HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    let attempts = [
        format!(
            "POST /mgmt/shutdown HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        format!(
            "POST /mgmt/shutdown HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
    ];
    for raw in attempts {
        let mut conn = gw.tls("api.example.com").await;
        conn.stream.write_all(raw.as_bytes()).await.expect("write");
        let response = conn.read_response(false).await.expect("response");
        assert_gateway_error(&response, 403, "forbidden", Some("mgmt-shutdown"));
        // Nothing else may come back on this connection.
        let next = conn.read_response(false).await;
        assert!(next.is_err(), "a second response followed: {next:?}");
    }
    assert_eq!(
        mgmt.requests_seen(),
        0,
        "the smuggled request reached the upstream"
    );
}
