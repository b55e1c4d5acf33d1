//! Request smuggling, framing and header abuse: for each trick, either the
//! gateway refuses the request (4xx) and forwards nothing, or it forwards
//! one request framed so unambiguously that the upstream cannot see a
//! second one hidden in it. Every case ends with the upstream asked what
//! it received.

use std::time::Duration;

use postern_echo::EchoServer;

use crate::support;
use crate::support::{echo, upstream, Gateway, Response};

const HOST: &str = "api.example.com";

async fn gateway(backend: &EchoServer) -> Gateway {
    Gateway::start(format!(
        "{}
[[routes]]
name = \"open\"
upstream = \"data\"

[[routes]]
name = \"denied\"
path_prefix = \"/denied\"
deny = true
",
        upstream("data", backend.local_addr(), "")
    ))
    .await
}

/// Sends `raw` on one connection and reads every response the gateway
/// gives before closing it (or going quiet).
async fn exchange(gw: &Gateway, raw: &str) -> Vec<Response> {
    let mut conn = gw.tls(HOST).await;
    use tokio::io::AsyncWriteExt;
    conn.stream
        .write_all(raw.as_bytes())
        .await
        .expect("write request");
    let mut responses = Vec::new();
    while let Ok(Ok(response)) =
        tokio::time::timeout(Duration::from_secs(3), conn.read_response(false)).await
    {
        let close = response
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        responses.push(response);
        if close {
            break;
        }
    }
    responses
}

/// What the upstream saw, as (method, path) pairs, after letting requests in
/// flight arrive.
async fn upstream_saw(backend: &EchoServer) -> (u64, Option<String>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = backend
        .last_request()
        .and_then(|r| r["path"].as_str().map(str::to_string));
    (backend.requests_seen(), path)
}

/// Refused with a 4xx from the gateway, and nothing forwarded.
async fn assert_refused(gw: &Gateway, backend: &EchoServer, raw: &str, case: &str) {
    let responses = exchange(gw, raw).await;
    if let Some(first) = responses.first() {
        assert!(
            (400..500).contains(&first.status),
            "{case}: answered {} instead of a refusal: {}",
            first.status,
            first.text()
        );
    }
    let (seen, path) = upstream_saw(backend).await;
    assert_eq!(seen, 0, "{case}: the upstream received {path:?}");
}

/// Whatever the gateway answered, the upstream never saw `/smuggled`, and
/// saw at most `at_most` requests.
async fn assert_not_smuggled(
    gw: &Gateway,
    backend: &EchoServer,
    raw: &str,
    case: &str,
    at_most: u64,
) {
    let responses = exchange(gw, raw).await;
    for response in &responses {
        assert!(
            response.status < 500,
            "{case}: the gateway answered {}: {}",
            response.status,
            response.text()
        );
    }
    let (seen, path) = upstream_saw(backend).await;
    assert!(
        seen <= at_most,
        "{case}: the upstream saw {seen} requests (last {path:?})"
    );
    assert_ne!(
        path.as_deref(),
        Some("/smuggled"),
        "{case}: a smuggled request reached the upstream"
    );
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: api.example.com\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_never_smuggles() {
    // CL.TE: a front end reading Content-Length would see one request; one
    // reading chunked would see two.
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    assert_not_smuggled(&gw, &backend, &raw, "CL.TE", 1).await;

    // TE.CL: chunked body that contains, by Content-Length, a second request.
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let chunk = SMUGGLED;
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_not_smuggled(&gw, &backend, &raw, "TE.CL", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_refused() {
    for (case, lengths) in [
        (
            "two different Content-Length headers",
            "Content-Length: 5\r\nContent-Length: 50\r\n",
        ),
        ("a Content-Length list", "Content-Length: 5, 50\r\n"),
        ("a signed Content-Length", "Content-Length: +5\r\n"),
        ("a non-numeric Content-Length", "Content-Length: 5x\r\n"),
    ] {
        let backend = echo("data").await;
        let gw = gateway(&backend).await;
        let raw = format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\n{lengths}\r\nhello{SMUGGLED}");
        assert_refused(&gw, &backend, &raw, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_transfer_encodings_never_smuggle() {
    for (case, te) in [
        ("xchunked", "Transfer-Encoding: xchunked\r\n"),
        (
            "chunked with a trailing space",
            "Transfer-Encoding: chunked \r\n",
        ),
        (
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        ("identity alone", "Transfer-Encoding: identity\r\n"),
        (
            "two Transfer-Encoding lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        ),
        ("upper case", "Transfer-Encoding: CHUNKED\r\n"),
        ("a tab before the value", "Transfer-Encoding:\tchunked\r\n"),
    ] {
        let backend = echo("data").await;
        let gw = gateway(&backend).await;
        let raw = format!(
            "POST /upload HTTP/1.1\r\nHost: {HOST}\r\n{te}Content-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        assert_not_smuggled(&gw, &backend, &raw, case, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_folding_is_refused() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    assert_refused(&gw, &backend, &raw, "obs-fold Transfer-Encoding").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_reach_the_upstream_as_a_request() {
    for (case, chunk) in [
        ("non-hex chunk size", "zz\r\nhello\r\n0\r\n\r\n"),
        ("negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"),
        (
            "overflowing chunk size",
            "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk size with a space inside",
            "5 5\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        let backend = echo("data").await;
        let gw = gateway(&backend).await;
        let raw = format!(
            "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{SMUGGLED}"
        );
        assert_not_smuggled(&gw, &backend, &raw, case, 1).await;
        // And the upstream never got a complete request with that body.
        if let Some(last) = backend.last_request() {
            assert_ne!(
                last["body_bytes"], 5,
                "{case}: the malformed body was forwarded whole"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_line_feeds_frame_requests_the_same_for_both_sides() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!("GET /bare-lf HTTP/1.1\nHost: {HOST}\nConnection: close\n\n");
    assert_not_smuggled(&gw, &backend, &raw, "bare LF", 1).await;
    // A bare CR inside a header is never passed on.
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!("GET /bare-cr HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\rX-B: b\r\n\r\n");
    assert_refused(&gw, &backend, &raw, "bare CR in a header").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_on_a_denied_route_gets_the_refusal_not_a_100() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!(
        "POST /denied/upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    );
    let responses = exchange(&gw, &raw).await;
    let first = responses
        .first()
        .expect("an answer without sending the body");
    support::assert_gateway_error(first, 403, "forbidden", Some("denied"));
    assert_eq!(upstream_saw(&backend).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_serves_each_request_once() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!(
        "GET /one HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\nGET /two HTTP/1.0\r\nHost: {HOST}\r\n\r\n"
    );
    let responses = exchange(&gw, &raw).await;
    assert!(!responses.is_empty(), "no answer to HTTP/1.0");
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let (seen, _) = upstream_saw(&backend).await;
    assert_eq!(
        seen,
        responses.len() as u64,
        "one upstream request per answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_cannot_name_another_host() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!(
        "GET http://internal.example.com/denied HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    assert_refused(&gw, &backend, &raw, "absolute-form with another authority").await;
    // With the same authority it is the same request as origin-form, so a
    // denied path stays denied.
    let raw = format!(
        "GET https://{HOST}/denied/x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    );
    let responses = exchange(&gw, &raw).await;
    support::assert_gateway_error(&responses[0], 403, "forbidden", Some("denied"));
    assert_eq!(upstream_saw(&backend).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = "CONNECT internal.example.com:22 HTTP/1.1\r\nHost: internal.example.com:22\r\n\r\n";
    assert_refused(&gw, &backend, raw, "CONNECT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_abuse_is_refused_before_the_upstream() {
    for (case, headers) in [
        (
            "duplicated Host",
            format!("Host: {HOST}\r\nHost: evil.example.com\r\n"),
        ),
        (
            "NUL in a header value",
            format!("Host: {HOST}\r\nX-A: a\0b\r\n"),
        ),
        (
            "a space before the colon",
            format!("Host: {HOST}\r\nX-A : b\r\n"),
        ),
        (
            "a header name with a slash",
            format!("Host: {HOST}\r\nX/A: b\r\n"),
        ),
        (
            "a forwarding header nominated as hop-by-hop",
            format!("Host: {HOST}\r\nConnection: X-Forwarded-For\r\n"),
        ),
    ] {
        let backend = echo("data").await;
        let gw = gateway(&backend).await;
        let raw = format!("GET /x HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
        assert_refused(&gw, &backend, &raw, case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_are_refused() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let raw = format!("GET /x HTTP/1.1\r\nHost: {HOST}\r\n{many}Connection: close\r\n\r\n");
    assert_refused(&gw, &backend, &raw, "500 headers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_a_client_names_are_dropped_but_never_the_gateways() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let raw = format!(
        "GET /x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n"
    );
    let responses = exchange(&gw, &raw).await;
    assert_eq!(responses[0].status, 200, "{}", responses[0].text());
    let seen = responses[0].echo();
    let headers = &seen["headers"];
    assert!(
        headers.get("x-secret-hop").is_none(),
        "hop-by-hop header forwarded: {headers}"
    );
    assert_eq!(
        support::upstream_header(&seen, "x-forwarded-for"),
        ["127.0.0.1"],
        "the client's X-Forwarded-For is replaced by the gateway's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_spellings_route_and_match_the_certificate_alike() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    for host in [
        "API.EXAMPLE.COM",
        "api.example.com.",
        "api.example.com:443",
        "Api.Example.Com.:8443",
    ] {
        let raw = format!("GET /denied HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let responses = exchange(&gw, &raw).await;
        support::assert_gateway_error(&responses[0], 403, "forbidden", Some("denied"));
        let raw = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let responses = exchange(&gw, &raw).await;
        assert_eq!(
            responses[0].status,
            200,
            "Host {host}: {}",
            responses[0].text()
        );
    }
    // A host the connection's certificate does not cover, however spelled.
    for host in ["WIDGETS.EXAMPLE.NET", "widgets.example.net."] {
        let raw = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let responses = exchange(&gw, &raw).await;
        assert_eq!(responses[0].status, 421, "Host {host}");
    }
}
