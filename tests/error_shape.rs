//! Every answer the gateway makes has the spec's JSON shape, including the
//! ones Pingora makes before any hook has seen the request (a request head
//! with broken framing, CONNECT): with `nosniff` and `no-store`, HSTS on the
//! TLS listener, never a `Server: Pingora`, and nothing reaches the upstream.

use std::time::Duration;

use crate::support::{
    assert_gateway_error, closed_port, echo, upstream, Gateway, H2Conn, Response, TlsOptions,
};

/// (case, raw request, status, error, route): `route` is None where the
/// request is refused before a route is chosen.
const CASES: &[(&str, &str, u16, &str, Option<&str>)] = &[
    (
        "negative Content-Length",
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\nhello",
        400,
        "bad_request",
        None,
    ),
    (
        "Content-Length that is not a number",
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5x\r\n\r\nhello",
        400,
        "bad_request",
        None,
    ),
    (
        "two different Content-Lengths",
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        "bad_request",
        None,
    ),
    (
        "Transfer-Encoding that does not end in chunked",
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
        "bad_request",
        None,
    ),
    (
        "Transfer-Encoding on HTTP/1.0",
        "POST /api/x HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "bad_request",
        None,
    ),
    (
        "a request line that is not HTTP",
        "HELLO THERE\r\n\r\n",
        400,
        "bad_request",
        None,
    ),
    (
        "a chunk size that is not hex",
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
        "bad_request",
        Some("api"),
    ),
    (
        "CONNECT",
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
        405,
        "method_not_allowed",
        None,
    ),
    (
        "an upstream that refuses connections",
        "GET /down HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        502,
        "bad_gateway",
        Some("down"),
    ),
];

fn assert_shape(
    response: &Response,
    case: &str,
    (status, error, route): (u16, &str, Option<&str>),
    tls: bool,
) {
    eprintln!("{case} (tls: {tls})");
    assert_gateway_error(response, status, error, route);
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{case}"
    );
    assert_eq!(response.header_all("cache-control"), ["no-store"], "{case}");
    let servers = response.header_all("server");
    assert!(
        servers
            .iter()
            .all(|s| !s.to_ascii_lowercase().contains("pingora")),
        "{case}: Server {servers:?}"
    );
    let hsts = response.header_all("strict-transport-security");
    if tls {
        assert_eq!(hsts, ["max-age=31536000"], "{case}");
    } else {
        assert!(hsts.is_empty(), "{case}: HSTS on the plain listener");
    }
}

#[tokio::test]
async fn answers_to_broken_requests_have_the_json_shape_and_nothing_is_forwarded() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"data\"\n\n\
         [[routes]]\nname = \"down\"\npath_prefix = \"/down\"\nupstream = \"down\"\n",
        upstream("data", data.local_addr(), ""),
        upstream(
            "down",
            format!("127.0.0.1:{}", closed_port()).parse().unwrap(),
            ""
        ),
    ))
    .await;
    for &(case, raw, status, error, route) in CASES {
        let plain = gw.send_plain(gw.plain_port, raw).await;
        assert_shape(&plain, case, (status, error, route), false);
        let tls = gw.send("localhost", raw).await;
        assert_shape(&tls, case, (status, error, route), true);
    }
    // A connection the gateway opened may still wait in the accept queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        data.connections_accepted().is_empty(),
        "the upstream was contacted {} time(s)",
        data.connections_accepted().len()
    );
}

#[tokio::test]
async fn a_refused_head_on_a_keepalive_connection_is_reshaped_too() {
    // The head clock is idle, not fresh, on a later request.
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}\n[[routes]]\nname = \"api\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), "")
    ))
    .await;
    let mut conn = gw.tls("localhost").await;
    let first = conn
        .send(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("first response");
    assert_eq!(first.status, 200);
    let refused = conn
        .send(b"POST /second HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n")
        .await
        .expect("second response");
    assert_shape(&refused, "second request", (400, "bad_request", None), true);
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test]
async fn connect_over_http2_gets_the_json_405() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}\n[[routes]]\nname = \"api\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), "")
    ))
    .await;
    let conn = gw
        .connect(TlsOptions::sni("localhost").alpn(&[b"h2"]))
        .await
        .expect("TLS with h2");
    let mut h2 = H2Conn::handshake(conn).await.expect("h2 preface");
    let response = h2
        .request(
            &[(":method", "CONNECT"), (":authority", "localhost:443")],
            &[],
        )
        .await
        .expect("an answer to CONNECT");
    let body = response.json();
    assert_eq!(body["status"], 405, "{body}");
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    assert_eq!(body["route"], serde_json::Value::Null, "{body}");
    assert_eq!(data.requests_seen(), 0);
}
