//! What the upstream receives: forwarding headers set by the gateway (and
//! client-sent ones replaced), request ids, bodies and methods.

use crate::support::{assert_gateway_error, echo, request, upstream, upstream_header, Gateway};

fn api_routes(data: std::net::SocketAddr) -> String {
    format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"
"#,
        upstream("data", data, ""),
    )
}

const FORWARDING_HEADERS: [&str; 7] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-request-id",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sets_forwarding_headers_and_a_request_id() {
    let data = echo("data").await;
    let gw = Gateway::start(api_routes(data.local_addr())).await;

    let response = gw.get("api.example.com", "/api/x").await;
    let echo_json = response.echo();
    let h = |name| upstream_header(&echo_json, name);
    assert_eq!(h("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(h("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(h("x-forwarded-proto"), ["https"]);
    assert_eq!(h("x-forwarded-host"), ["api.example.com"]);
    assert_eq!(h("x-forwarded-port"), [gw.tls_port.to_string()]);
    assert_eq!(
        h("forwarded"),
        ["for=127.0.0.1;proto=https;host=\"api.example.com\""]
    );
    assert_eq!(h("host"), ["api.example.com"], "Host is passed through");

    let ids = h("x-request-id");
    assert_eq!(ids.len(), 1, "x-request-id upstream: {ids:?}");
    let id = &ids[0];
    assert_eq!(id.len(), 32, "generated request id {id:?}");
    assert!(
        id.bytes().all(|b| b.is_ascii_hexdigit()),
        "generated request id {id:?} is not hex"
    );
    assert_eq!(response.header_all("x-request-id"), [id.as_str()]);

    // Another request gets another id.
    let again = gw.get("api.example.com", "/api/x").await.echo();
    assert_ne!(upstream_header(&again, "x-request-id"), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_forwarding_headers_are_replaced_not_trusted() {
    let data = echo("data").await;
    let gw = Gateway::start(api_routes(data.local_addr())).await;

    let raw = request(
        "GET",
        "api.example.com",
        "/api/x",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-For", "10.0.0.1, 10.0.0.2"),
            ("X-Real-IP", "203.0.113.9"),
            ("Forwarded", "for=203.0.113.9;proto=http;host=evil.example"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Port", "8080"),
            ("X-Request-Id", "abc-123"),
        ],
        b"",
    );
    let response = gw.send("api.example.com", raw).await;
    let echo_json = response.echo();
    for name in FORWARDING_HEADERS {
        assert_eq!(
            upstream_header(&echo_json, name).len(),
            1,
            "{name} must appear exactly once upstream: {}",
            echo_json["headers"]
        );
    }
    let h = |name| upstream_header(&echo_json, name);
    assert_eq!(h("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(h("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(h("x-forwarded-proto"), ["https"]);
    assert_eq!(h("x-forwarded-host"), ["api.example.com"]);
    assert_eq!(h("x-forwarded-port"), [gw.tls_port.to_string()]);
    assert_eq!(
        h("forwarded"),
        ["for=127.0.0.1;proto=https;host=\"api.example.com\""]
    );
    // A plain client request id is kept, upstream and on the response.
    assert_eq!(h("x-request-id"), ["abc-123"]);
    assert_eq!(response.header_all("x-request-id"), ["abc-123"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_ids_are_replaced() {
    let data = echo("data").await;
    let gw = Gateway::start(api_routes(data.local_addr())).await;

    let long = "a".repeat(200);
    for hostile in ["a b\"c", "<script>", long.as_str()] {
        let raw = request(
            "GET",
            "api.example.com",
            "/api/x",
            &[("X-Request-Id", hostile)],
            b"",
        );
        let response = gw.send("api.example.com", raw).await;
        let echo_json = response.echo();
        let ids = upstream_header(&echo_json, "x-request-id");
        assert_eq!(ids.len(), 1, "{hostile:?}: {ids:?}");
        assert_ne!(ids[0], hostile);
        assert_eq!(ids[0].len(), 32, "{hostile:?} replaced by {:?}", ids[0]);
        assert!(ids[0].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(response.header_all("x-request-id"), [ids[0].as_str()]);
    }

    // The id of a gateway error is the one given when it is acceptable.
    let raw = request(
        "GET",
        "api.example.com",
        "/nowhere",
        &[("X-Request-Id", "trace-42")],
        b"",
    );
    let response = gw.send("api.example.com", raw).await;
    assert_gateway_error(&response, 404, "not_found", None);
    assert_eq!(response.json()["request_id"], "trace-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_chain_is_extended_and_decides_the_client() {
    let data = echo("data").await;
    let partner = echo("partner").await;
    let local = echo("local").await;
    let gw = Gateway::builder(format!(
        r#"{}{}{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "partner"
path_prefix = "/partner"
upstream = "partner"
allow = ["198.51.100.0/24"]

[[routes]]
name = "local"
path_prefix = "/local"
upstream = "local"
allow = ["loopback"]
"#,
        upstream("data", data.local_addr(), ""),
        upstream("partner", partner.local_addr(), ""),
        upstream("local", local.local_addr(), ""),
    ))
    .trusted_proxies(&["127.0.0.1/32"])
    .start()
    .await;

    let via_proxy = |target: &str| {
        request(
            "GET",
            "api.example.com",
            target,
            &[("X-Forwarded-For", "198.51.100.7")],
            b"",
        )
    };

    let echo_json = gw.send("api.example.com", via_proxy("/api/x")).await.echo();
    assert_eq!(
        upstream_header(&echo_json, "x-forwarded-for"),
        ["198.51.100.7, 127.0.0.1"]
    );
    assert_eq!(upstream_header(&echo_json, "x-real-ip"), ["198.51.100.7"]);
    assert_eq!(upstream_header(&echo_json, "x-forwarded-proto"), ["https"]);

    // The client is judged as 198.51.100.7, not as the loopback proxy.
    let echo_json = gw
        .send("api.example.com", via_proxy("/partner/x"))
        .await
        .echo();
    assert_eq!(echo_json["backend"], "partner");
    assert_eq!(partner.requests_seen(), 1);

    let response = gw.send("api.example.com", via_proxy("/local/x")).await;
    assert_gateway_error(&response, 403, "forbidden", Some("local"));
    assert_eq!(
        local.requests_seen(),
        0,
        "the proxied client reached a loopback-only route"
    );

    // Without forwarding headers the trusted proxy is itself the client.
    let echo_json = gw.get("api.example.com", "/local/x").await.echo();
    assert_eq!(
        upstream_header(&echo_json, "x-forwarded-for"),
        ["127.0.0.1"]
    );
    let response = gw.get("api.example.com", "/partner/x").await;
    assert_gateway_error(&response, 403, "forbidden", Some("partner"));
}

/// `Connection: X-Forwarded-For` asks the next hop to drop that header; the
/// gateway must not let it drop the values it sets. Naming X-Forwarded-For,
/// -Host or -Proto there is refused with 400 (Pingora rejects it before
/// forwarding); naming the other forwarding headers is accepted, and the
/// upstream still receives the gateway's values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_remove_the_gateways_forwarding_headers() {
    let data = echo("data").await;
    let gw = Gateway::start(api_routes(data.local_addr())).await;

    let spoofing = |connection: &str| {
        format!(
            "GET /api/x HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 203.0.113.9\r\n\
             X-Real-IP: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\n\
             X-Forwarded-Port: 1\r\nConnection: {connection}\r\n\r\n"
        )
    };

    for connection in [
        "X-Forwarded-For",
        "close, x-forwarded-for",
        "X-Forwarded-Host",
        "keep-alive, X-Forwarded-Proto",
    ] {
        let response = gw.send("api.example.com", spoofing(connection)).await;
        assert_gateway_error(&response, 400, "bad_request", Some("api"));
        assert_eq!(
            data.requests_seen(),
            0,
            "Connection: {connection} was forwarded"
        );
    }

    for connection in [
        "X-Real-IP",
        "Forwarded",
        "close, X-Real-IP, Forwarded, X-Forwarded-Port, X-Request-Id",
    ] {
        let before = data.requests_seen();
        let response = gw.send("api.example.com", spoofing(connection)).await;
        let echo_json = response.echo();
        assert_eq!(data.requests_seen(), before + 1);
        let h = |name| upstream_header(&echo_json, name);
        assert_eq!(
            h("x-forwarded-for"),
            ["127.0.0.1"],
            "Connection: {connection}"
        );
        assert_eq!(h("x-real-ip"), ["127.0.0.1"], "Connection: {connection}");
        assert_eq!(
            h("forwarded"),
            ["for=127.0.0.1;proto=https;host=\"api.example.com\""],
            "Connection: {connection}"
        );
        assert_eq!(
            h("x-forwarded-port"),
            [gw.tls_port.to_string()],
            "Connection: {connection}"
        );
        assert_eq!(
            h("x-forwarded-proto"),
            ["https"],
            "Connection: {connection}"
        );
        assert_eq!(h("x-request-id").len(), 1, "Connection: {connection}");
        assert_eq!(
            response.header("x-request-id"),
            Some(h("x-request-id")[0].as_str())
        );
        assert!(
            !echo_json["headers"].to_string().contains("203.0.113.9"),
            "the client's address reached the upstream: {}",
            echo_json["headers"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_and_methods_are_forwarded() {
    let data = echo("data").await;
    let gw = Gateway::start(api_routes(data.local_addr())).await;

    let body = vec![b'x'; 5000];
    let raw = request(
        "POST",
        "api.example.com",
        "/api/upload",
        &[("Content-Type", "application/octet-stream")],
        &body,
    );
    let echo_json = gw.send("api.example.com", raw).await.echo();
    assert_eq!(echo_json["method"], "POST");
    assert_eq!(echo_json["body_bytes"], 5000);
    assert_eq!(
        upstream_header(&echo_json, "content-type"),
        ["application/octet-stream"]
    );

    // A chunked body arrives whole.
    let raw = "PUT /api/doc HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\
               Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let echo_json = gw.send("api.example.com", raw).await.echo();
    assert_eq!(echo_json["method"], "PUT");
    assert_eq!(echo_json["body_bytes"], 11);

    for method in ["DELETE", "PATCH", "OPTIONS"] {
        let raw = request(method, "api.example.com", "/api/doc/1", &[], b"");
        let echo_json = gw.send("api.example.com", raw).await.echo();
        assert_eq!(echo_json["method"], method);
        assert_eq!(echo_json["path"], "/api/doc/1");
    }

    let raw = request("HEAD", "api.example.com", "/api/doc/1", &[], b"");
    let response = gw.send("api.example.com", raw).await;
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(data.last_request().expect("HEAD reached")["method"], "HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_serves_several_requests() {
    let data = echo("data").await;
    let gw = Gateway::start(api_routes(data.local_addr())).await;

    let mut conn = gw.tls("api.example.com").await;
    for i in 0..3 {
        let raw = format!("GET /api/n/{i} HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        let echo_json = conn.send(raw.as_bytes()).await.expect("response").echo();
        assert_eq!(echo_json["path"], format!("/api/n/{i}"));
    }
    // A refusal on the same connection does not break it either.
    let response = conn
        .send(b"GET /nowhere HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .await
        .expect("response");
    assert_gateway_error(&response, 404, "not_found", None);
    let response = conn
        .send(b"GET /api/last HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
        .await
        .expect("response");
    assert_eq!(response.echo()["path"], "/api/last");
    assert_eq!(data.requests_seen(), 4);
}

fn trusted_gateway_routes(data: std::net::SocketAddr, internal: std::net::SocketAddr) -> String {
    format!(
        r#"{}{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "internal"
path_prefix = "/internal"
upstream = "internal"
allow = ["10.0.0.0/8"]
"#,
        upstream("data", data, ""),
        upstream("internal", internal, ""),
    )
}

/// A proxy such as HAProxy (`option forwardfor`) adds its own
/// `X-Forwarded-For` line after the client's; several lines of one header are
/// one comma-separated list (RFC 9110 5.3), so the client is the rightmost
/// untrusted address over all of them, exactly as for a single line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_x_forwarded_for_lines_are_read_as_one_chain() {
    let data = echo("data").await;
    let internal = echo("internal").await;
    let gw = Gateway::builder(trusted_gateway_routes(
        data.local_addr(),
        internal.local_addr(),
    ))
    .trusted_proxies(&["127.0.0.1/32"])
    .start()
    .await;

    // One line: the client is 198.51.100.7, refused.
    let one_line = request(
        "GET",
        "api.example.com",
        "/internal/x",
        &[("X-Forwarded-For", "10.1.2.3, 198.51.100.7")],
        b"",
    );
    let response = gw.send("api.example.com", one_line).await;
    assert_gateway_error(&response, 403, "forbidden", Some("internal"));

    // The same chain in two lines: the client's spoofed "10.1.2.3" first,
    // then the line the trusted proxy appended with the real client.
    let two_lines = request(
        "GET",
        "api.example.com",
        "/internal/x",
        &[
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Forwarded-For", "198.51.100.7"),
        ],
        b"",
    );
    let response = gw.send("api.example.com", two_lines).await;
    assert_gateway_error(&response, 403, "forbidden", Some("internal"));
    assert_eq!(
        internal.requests_seen(),
        0,
        "a spoofed first X-Forwarded-For line admitted the client to an allow = [\"10.0.0.0/8\"] route"
    );

    // And the upstream gets the whole chain, the real client included.
    let two_lines = request(
        "GET",
        "api.example.com",
        "/api/x",
        &[
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Forwarded-For", "198.51.100.7"),
        ],
        b"",
    );
    let echo_json = gw.send("api.example.com", two_lines).await.echo();
    assert_eq!(
        upstream_header(&echo_json, "x-forwarded-for"),
        ["10.1.2.3, 198.51.100.7, 127.0.0.1"]
    );
    assert_eq!(upstream_header(&echo_json, "x-real-ip"), ["198.51.100.7"]);
}

/// The same for `Forwarded` (RFC 7239 7.1: several fields are one list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarded_lines_are_read_as_one_chain() {
    let data = echo("data").await;
    let internal = echo("internal").await;
    let gw = Gateway::builder(trusted_gateway_routes(
        data.local_addr(),
        internal.local_addr(),
    ))
    .trusted_proxies(&["127.0.0.1/32"])
    .start()
    .await;

    let two_lines = request(
        "GET",
        "api.example.com",
        "/internal/x",
        &[
            ("Forwarded", "for=10.1.2.3"),
            ("Forwarded", "for=198.51.100.7"),
        ],
        b"",
    );
    let response = gw.send("api.example.com", two_lines).await;
    assert_gateway_error(&response, 403, "forbidden", Some("internal"));
    assert_eq!(
        internal.requests_seen(),
        0,
        "a spoofed first Forwarded line admitted the client to an allow = [\"10.0.0.0/8\"] route"
    );
}

/// A trusted proxy that only sends `Forwarded`: the gateway judges the client
/// as the `for=` address, and the X-Forwarded-For it sends upstream must name
/// that client too, not only the loopback proxy (an upstream reading
/// X-Forwarded-For would otherwise take a remote client for a local one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_names_the_client_found_in_forwarded() {
    let data = echo("data").await;
    let internal = echo("internal").await;
    let gw = Gateway::builder(trusted_gateway_routes(
        data.local_addr(),
        internal.local_addr(),
    ))
    .trusted_proxies(&["127.0.0.1/32"])
    .start()
    .await;

    let raw = request(
        "GET",
        "api.example.com",
        "/api/x",
        &[("Forwarded", "for=198.51.100.7;proto=https")],
        b"",
    );
    let echo_json = gw.send("api.example.com", raw).await.echo();
    assert_eq!(upstream_header(&echo_json, "x-real-ip"), ["198.51.100.7"]);
    assert_eq!(
        upstream_header(&echo_json, "forwarded"),
        ["for=198.51.100.7;proto=https, for=127.0.0.1;proto=https;host=\"api.example.com\""]
    );
    assert_eq!(
        upstream_header(&echo_json, "x-forwarded-for"),
        ["198.51.100.7, 127.0.0.1"],
        "X-Forwarded-For upstream disagrees with X-Real-IP"
    );
}
