//! Request buffering (`request_buffer`): a body up to the buffer is read
//! whole before the upstream is contacted, so a slow, broken or oversized
//! upload is the gateway's problem and never reaches (or holds) an upstream;
//! a larger body, or any body on a route with `request_buffer = "0"`,
//! streams.

use std::time::{Duration, Instant};

use postern_echo::EchoServer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{assert_gateway_error, echo, upstream, upstream_header, Gateway, HttpConn};

/// A gateway with one open route to `backend`, `route_extra` added to it,
/// and a short client_body_timeout so stalls are quick to see.
async fn gateway(backend: &EchoServer, route_extra: &str) -> Gateway {
    Gateway::builder(format!(
        "{}\n[[routes]]\nname = \"open\"\nupstream = \"data\"\n{route_extra}\n",
        upstream("data", backend.local_addr(), "")
    ))
    .env("POSTERN_GATEWAY__CLIENT_BODY_TIMEOUT", "2s")
    .start()
    .await
}

async fn plain(gw: &Gateway) -> HttpConn<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", gw.plain_port))
        .await
        .expect("connect to the plain listener");
    HttpConn::new(stream)
}

/// A request body of `len` bytes that differ from one position to the next,
/// so a reordered or repeated piece shows.
fn body_of(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz"[(i * 7 + i / 36) % 36])
        .collect()
}

/// `body` as chunks of `chunk` bytes, with the terminating chunk.
fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `wire` in `pieces` parts, `gap` apart; returns when the last
/// part started to be written.
async fn trickle(
    conn: &mut HttpConn<TcpStream>,
    wire: &[u8],
    pieces: usize,
    gap: Duration,
) -> Instant {
    let size = wire.len().div_ceil(pieces);
    let mut last = Instant::now();
    for (i, part) in wire.chunks(size).enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        last = Instant::now();
        conn.stream
            .write_all(part)
            .await
            .expect("write a body part");
        conn.stream.flush().await.expect("flush");
    }
    last
}

/// Nothing reached the upstream, not even a connection (given a moment:
/// a connection the gateway opened may still wait in the accept queue).
async fn assert_no_upstream_connection(backend: &EchoServer) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = backend.connections_accepted();
    assert!(
        accepted.is_empty(),
        "the upstream accepted {} connection(s)",
        accepted.len()
    );
}

/// Waits until the upstream has received some body bytes; false if none
/// arrived within `limit`.
async fn upstream_got_body_bytes(backend: &EchoServer, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if backend.body_bytes_received() > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The upstream received `body` whole, in one go, with a Content-Length,
/// over one connection it accepted only after `last_part` was sent.
fn assert_buffered(
    backend: &EchoServer,
    response: &crate::support::Response,
    body: &[u8],
    last_part: Instant,
) {
    let echo = response.echo();
    assert_eq!(echo["body_bytes"], body.len(), "echo: {echo}");
    assert_eq!(
        backend.last_body(),
        body,
        "the upstream got the body altered"
    );
    assert_eq!(
        upstream_header(&echo, "content-length"),
        [body.len().to_string()]
    );
    assert_eq!(
        upstream_header(&echo, "transfer-encoding"),
        Vec::<String>::new()
    );
    let accepted = backend.connections_accepted();
    assert_eq!(accepted.len(), 1, "upstream connections: {accepted:?}");
    assert!(
        accepted[0] >= last_part,
        "the upstream connection was opened {:?} before the client finished",
        last_part - accepted[0]
    );
    let times = backend.last_body_times();
    let (first, last) = (
        times.first_byte.expect("body bytes"),
        times.last_byte.expect("body bytes"),
    );
    assert!(
        first >= last_part,
        "body bytes reached the upstream before the client finished"
    );
    assert!(
        last - first < Duration::from_millis(500),
        "the body took {:?} to reach the upstream: it was not sent in one go",
        last - first
    );
}

#[tokio::test]
async fn malformed_chunk_framing_is_answered_400_and_the_upstream_sees_no_connection() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "").await;
    for (case, body) in [
        (
            "a chunk size that is not hex",
            "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
        ),
        ("a chunk longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
    ] {
        let mut conn = plain(&gw).await;
        let response = conn
            .send(
                format!(
                    "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
                )
                .as_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("{case}: no answer: {e}"));
        assert_gateway_error(&response, 400, "bad_request", Some("open"));
    }
    assert_no_upstream_connection(&backend).await;
}

#[tokio::test]
async fn a_trickled_chunked_body_reaches_the_upstream_whole_with_a_content_length() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "").await;
    let body = body_of(10 * 1024);
    let mut conn = plain(&gw).await;
    conn.stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let last_part = trickle(
        &mut conn,
        &chunked(&body, 1000),
        8,
        Duration::from_millis(400),
    )
    .await;
    let response = conn.read_response(false).await.expect("a response");
    assert_buffered(&backend, &response, &body, last_part);
}

#[tokio::test]
async fn a_body_within_a_large_buffer_is_read_whole_first() {
    // Over Pingora's own 64 KB replay buffer: the gateway keeps the start.
    let backend = echo("data").await;
    let gw = gateway(&backend, "request_buffer = \"1MB\"").await;
    let body = body_of(300 * 1024);
    let mut conn = plain(&gw).await;
    conn.stream
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let last_part = trickle(&mut conn, &body, 4, Duration::from_millis(400)).await;
    let response = conn.read_response(false).await.expect("a response");
    assert_buffered(&backend, &response, &body, last_part);
}

/// Sends half of `wire` after `head`, checks that the upstream already got
/// body bytes, then sends the rest; the whole body must arrive intact.
async fn assert_streams(
    backend: &EchoServer,
    gw: &Gateway,
    head: String,
    wire: &[u8],
    body: &[u8],
) {
    let mut conn = plain(gw).await;
    conn.stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = wire.split_at(wire.len() / 2);
    conn.stream.write_all(first).await.unwrap();
    assert!(
        upstream_got_body_bytes(backend, Duration::from_secs(5)).await,
        "the upstream got nothing while the client was still sending"
    );
    conn.stream.write_all(rest).await.unwrap();
    let response = conn.read_response(false).await.expect("a response");
    assert_eq!(response.echo()["body_bytes"], body.len());
    assert_eq!(
        backend.last_body(),
        body,
        "the upstream got the body altered"
    );
}

#[tokio::test]
async fn a_body_larger_than_the_buffer_streams() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "").await;
    let body = body_of(200 * 1024);
    let head = "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_streams(
        &backend,
        &gw,
        head.to_string(),
        &chunked(&body, 4096),
        &body,
    )
    .await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert_streams(&backend, &gw, head, &body, &body).await;
}

#[tokio::test]
async fn a_chunked_body_past_64kb_streams_even_under_a_larger_buffer() {
    // Pingora replays at most 64 KB of a body of unknown length.
    let backend = echo("data").await;
    let gw = gateway(&backend, "request_buffer = \"1MB\"").await;
    let body = body_of(150 * 1024);
    let head = "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_streams(
        &backend,
        &gw,
        head.to_string(),
        &chunked(&body, 10_000),
        &body,
    )
    .await;
}

#[tokio::test]
async fn request_buffer_zero_streams_small_bodies_too() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "request_buffer = \"0\"").await;
    let body = body_of(10 * 1024);
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert_streams(&backend, &gw, head, &body, &body).await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_upstream_sees_nothing() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "").await;
    for head in [
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
    ] {
        let mut conn = plain(&gw).await;
        conn.stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(8), conn.read_response(false))
            .await
            .expect("a stalled body held the connection 8s")
            .expect("a 408 answer");
        assert_gateway_error(&response, 408, "request_timeout", Some("open"));
        assert!(started.elapsed() < Duration::from_secs(5), "held {:?}", started.elapsed());
    }
    assert_no_upstream_connection(&backend).await;
}

#[tokio::test]
async fn a_chunked_body_over_max_body_size_gets_413_and_the_upstream_sees_nothing() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "max_body_size = \"1KB\"").await;
    let body = body_of(4 * 1024);
    let mut conn = plain(&gw).await;
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(&chunked(&body, 512));
    let response = conn.send(&request).await.expect("an answer");
    assert_gateway_error(&response, 413, "payload_too_large", Some("open"));
    assert_no_upstream_connection(&backend).await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_gateway() {
    let backend = echo("data").await;
    let gw = gateway(&backend, "").await;
    let mut conn = plain(&gw).await;
    conn.stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = conn.read_response(true).await.expect("100 Continue");
    assert_eq!(interim.status, 100);
    conn.stream.write_all(b"hello").await.unwrap();
    let response = conn.read_response(false).await.expect("a response");
    let echo = response.echo();
    assert_eq!(echo["body_bytes"], 5);
    assert_eq!(upstream_header(&echo, "expect"), Vec::<String>::new());
}
