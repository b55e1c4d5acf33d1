//! End-to-end tests of the echo backend over real loopback sockets.
//!
//! The HTTP client is hand-written on purpose: a real client library would
//! normalise the request target and headers, and the point of the echo
//! server is to report exactly what arrived.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use postern_echo::{spawn_background, EchoServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Long enough for a loaded CI machine, short enough that a hang fails fast.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one response, leaving the connection usable for the next request.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(IO_TIMEOUT, read_response_inner(stream))
        .await
        .expect("timed out reading the response")
}

async fn read_response_inner(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        // One byte at a time so nothing past this response is consumed.
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.expect("read failed");
        assert_eq!(n, 1, "connection closed inside the response head: {buf:?}");
        buf.push(byte[0]);
    };
    let head = String::from_utf8(buf[..header_end].to_vec()).expect("head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(
        parts.next(),
        Some("HTTP/1.1"),
        "status line {status_line:?}"
    );
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line has a colon");
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = response.header("content-length") {
        let mut body = vec![0u8; len.parse().unwrap()];
        stream.read_exact(&mut body).await.expect("short body");
        response.body = body;
    } else if !matches!(status, 101 | 204 | 304) {
        stream.read_to_end(&mut response.body).await.unwrap();
    }
    response
}

/// Sends raw bytes on a fresh connection and reads one response.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (RawResponse, SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream.write_all(request).await.unwrap();
    (read_response(&mut stream).await, local)
}

async fn get(addr: SocketAddr, target: &str) -> RawResponse {
    let request = format!("GET {target} HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n");
    exchange(addr, request.as_bytes()).await.0
}

#[tokio::test]
async fn echo_reports_exactly_what_arrived() {
    let server = EchoServer::start(loopback(), "data").await.unwrap();
    let addr = server.local_addr();
    let (response, client) = exchange(
        addr,
        b"POST /a/../b%2F?x=1&y=%20z HTTP/1.1\r\n\
          Host: example.test\r\n\
          X-Multi: one\r\n\
          X-Other: z\r\n\
          X-Multi: two\r\n\
          Content-Length: 5\r\n\
          Connection: close\r\n\
          \r\n\
          hello",
    )
    .await;

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let expected = json!({
        "backend": "data",
        "port": addr.port(),
        "method": "POST",
        "path": "/a/../b%2F",
        "query": "x=1&y=%20z",
        "headers": {
            "host": ["example.test"],
            "x-multi": ["one", "two"],
            "x-other": ["z"],
            "content-length": ["5"],
            "connection": ["close"],
        },
        "body_bytes": 5,
        "remote": client.to_string(),
    });
    assert_eq!(response.json(), expected);
    assert_eq!(server.last_request(), Some(expected));
    assert_eq!(server.requests_seen(), 1);
}

#[tokio::test]
async fn query_method_and_target_forms() {
    let server = EchoServer::start(loopback(), "q").await.unwrap();
    let addr = server.local_addr();

    let (plain, _) = exchange(
        addr,
        b"DELETE /plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let plain = plain.json();
    assert_eq!(plain["method"], "DELETE");
    assert_eq!(plain["path"], "/plain");
    assert_eq!(plain["query"], Value::Null);
    assert_eq!(plain["body_bytes"], 0);

    // An empty query is still a query: "?" arrived, so it is "" not null.
    let (empty, _) = exchange(
        addr,
        b"PURGE /x? HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let empty = empty.json();
    assert_eq!(empty["method"], "PURGE");
    assert_eq!(empty["path"], "/x");
    assert_eq!(empty["query"], "");

    // Absolute-form (as a forward proxy would send): only the path is echoed.
    let (absolute, _) = exchange(
        addr,
        b"GET http://example.test/abs/%7Epath?q=%2F HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let absolute = absolute.json();
    assert_eq!(absolute["path"], "/abs/%7Epath");
    assert_eq!(absolute["query"], "q=%2F");
}

#[tokio::test]
async fn non_utf8_header_values_are_reported_lossily() {
    let server = EchoServer::start(loopback(), "bytes").await.unwrap();
    let (response, _) = exchange(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Raw: caf\xe9\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["headers"]["x-raw"], json!(["caf\u{fffd}"]));
}

#[tokio::test]
async fn status_paths_answer_that_status() {
    let server = EchoServer::start(loopback(), "status").await.unwrap();
    let addr = server.local_addr();

    let r = get(addr, "/status/503").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["path"], "/status/503");
    assert_eq!(r.json()["backend"], "status");

    // Behind a gateway path prefix.
    let r = get(addr, "/api/status/418?x=y").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.json()["path"], "/api/status/418");
    assert_eq!(r.json()["query"], "x=y");

    // 204 may not carry a body; hyper drops it and the status still holds.
    let r = get(addr, "/status/204").await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());

    for bad in ["/status/99", "/status/600", "/status/100", "/status/abc"] {
        let r = get(addr, bad).await;
        assert_eq!(r.status, 400, "{bad}");
        let body = r.json();
        assert_eq!(body["path"], bad);
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    assert_eq!(server.requests_seen(), 7);
}

#[tokio::test]
async fn delay_path_waits_before_answering() {
    let server = EchoServer::start(loopback(), "slow").await.unwrap();
    let started = Instant::now();
    let r = get(server.local_addr(), "/x/delay/50").await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/x/delay/50");
    assert!(
        elapsed >= Duration::from_millis(50),
        "answered after {elapsed:?}"
    );

    let r = get(server.local_addr(), "/delay/soon").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn delayed_request_is_recorded_before_the_answer() {
    let server = EchoServer::start(loopback(), "slow").await.unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream
        .write_all(b"GET /delay/60000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // A gateway timing out an upstream gives up long before the answer;
    // the test must still be able to tell that the request got through.
    let deadline = Instant::now() + IO_TIMEOUT;
    while server.last_request().is_none() {
        assert!(Instant::now() < deadline, "request never recorded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.requests_seen(), 1);
    assert_eq!(server.last_request().unwrap()["path"], "/delay/60000");
}

#[tokio::test]
async fn counts_requests_and_keeps_connections_alive() {
    let server = EchoServer::start(loopback(), "count").await.unwrap();
    assert_eq!(server.requests_seen(), 0);
    assert_eq!(server.last_request(), None);

    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    for (i, path) in ["/one", "/two", "/three"].iter().enumerate() {
        let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let r = read_response(&mut stream).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], *path);
        assert_eq!(server.requests_seen(), i as u64 + 1);
    }
    assert_eq!(server.last_request().unwrap()["path"], "/three");

    get(server.local_addr(), "/four").await;
    assert_eq!(server.requests_seen(), 4);
    assert_eq!(server.last_request().unwrap()["path"], "/four");
}

#[tokio::test]
async fn body_up_to_one_mebibyte_is_read_and_more_is_refused() {
    let server = EchoServer::start(loopback(), "big").await.unwrap();
    let addr = server.local_addr();
    const MIB: usize = 1024 * 1024;

    // Exactly at the cap: accepted and counted.
    let mut request = format!(
        "PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: {MIB}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'a', MIB));
    let (r, _) = exchange(addr, &request).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], MIB);

    // Declared too large: refused before any of it is sent.
    let (r, _) = exchange(
        addr,
        format!(
            "PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            MIB + 1
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
    let body = r.json();
    assert_eq!(body["body_bytes"], Value::Null);
    assert!(body["error"].is_string());
    assert_eq!(server.last_request(), Some(body));

    // Chunked, so the size is only known once the cap is crossed.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PUT /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let chunk = vec![b'b'; 64 * 1024];
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        // 17 chunks of 64 KiB is 1 MiB + 64 KiB; the server stops reading
        // part-way, so later writes may fail, which is expected.
        for _ in 0..17 {
            if writer.write_all(&framed).await.is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
    });
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(IO_TIMEOUT, reader.read_to_end(&mut raw))
        .await
        .expect("timed out");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "got {text:?}"
    );
    sender.abort();
    assert_eq!(server.requests_seen(), 3);
}

#[tokio::test]
async fn websocket_round_trip() {
    let server = EchoServer::start(loopback(), "ws").await.unwrap();
    let addr = server.local_addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = tcp.local_addr().unwrap();
    let mut request = format!("ws://{addr}/chat/room?x=1")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-client", "test".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.status(), 101);

    let first = tokio::time::timeout(IO_TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Text(first) = first else {
        panic!("first message should be text, got {first:?}");
    };
    let echo: Value = serde_json::from_str(first.as_str()).unwrap();
    assert_eq!(echo["backend"], "ws");
    assert_eq!(echo["port"], addr.port());
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/chat/room");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body_bytes"], 0);
    assert_eq!(echo["remote"], client.to_string());
    assert_eq!(echo["headers"]["upgrade"], json!(["websocket"]));
    assert_eq!(echo["headers"]["x-client"], json!(["test"]));
    assert_eq!(echo["headers"]["sec-websocket-version"], json!(["13"]));
    assert_eq!(server.last_request(), Some(echo));
    assert_eq!(server.requests_seen(), 1);

    let exchanges = [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("héllo again"),
        Message::binary(vec![7u8; 100_000]),
    ];
    for sent in exchanges {
        ws.send(sent.clone()).await.unwrap();
        let got = tokio::time::timeout(IO_TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, sent);
    }

    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let got = tokio::time::timeout(IO_TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::Pong(b"are you there".to_vec().into()));

    ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(IO_TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(reply, Message::Close(_)), "got {reply:?}");
    let end = tokio::time::timeout(IO_TIMEOUT, ws.next()).await.unwrap();
    assert!(end.is_none(), "stream should end after close, got {end:?}");
    // The upgrade was the only HTTP request; messages are not requests.
    assert_eq!(server.requests_seen(), 1);
}

/// Reads one unmasked server frame: (opcode, payload).
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0] & 0x80, 0x80, "expected a final frame");
    assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.unwrap();
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

#[tokio::test]
async fn websocket_handshake_follows_rfc_6455() {
    let server = EchoServer::start(loopback(), "raw").await.unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    // The sample key from RFC 6455 section 1.3, with mixed-case tokens and a
    // Connection list, as browsers and proxies send them.
    stream
        .write_all(
            b"GET /api/socket HTTP/1.1\r\n\
              Host: server.example.com\r\n\
              Upgrade: WebSocket\r\n\
              Connection: keep-alive, Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\
              \r\n",
        )
        .await
        .unwrap();
    let r = read_response(&mut stream).await;
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(r.header("connection"), Some("Upgrade"));

    let (opcode, payload) = tokio::time::timeout(IO_TIMEOUT, read_frame(&mut stream))
        .await
        .unwrap();
    assert_eq!(opcode, 0x1, "first frame should be text");
    let echo: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(echo["backend"], "raw");
    assert_eq!(echo["path"], "/api/socket");
    assert_eq!(
        echo["headers"]["connection"],
        json!(["keep-alive, Upgrade"])
    );
}

#[tokio::test]
async fn websocket_with_wrong_version_or_status_path_is_not_upgraded() {
    let server = EchoServer::start(loopback(), "refuse").await.unwrap();
    let addr = server.local_addr();

    let (r, _) = exchange(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));

    // A status path overrides the upgrade, so tests can make the upstream
    // refuse a WebSocket.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = tokio_tungstenite::client_async(format!("ws://{addr}/ws/status/403"), tcp)
        .await
        .expect_err("upgrade should be refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    assert_eq!(server.requests_seen(), 2);
}

#[tokio::test]
async fn a_broken_connection_does_not_hurt_the_server() {
    let server = EchoServer::start(loopback(), "sturdy").await.unwrap();
    let addr = server.local_addr();

    // Not HTTP at all: hyper answers 400 and drops only this connection.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01 definitely not http\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, garbage.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{raw:?}");

    // A client that vanishes mid-body.
    let mut quitter = TcpStream::connect(addr).await.unwrap();
    quitter
        .write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort")
        .await
        .unwrap();
    drop(quitter);

    let r = get(addr, "/still/here").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/still/here");
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = EchoServer::start(loopback(), "gone").await.unwrap();
    let addr = server.local_addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut open).await.status, 200);

    drop(server);

    // The idle keep-alive connection is cut...
    let mut rest = Vec::new();
    let n = tokio::time::timeout(IO_TIMEOUT, open.read_to_end(&mut rest))
        .await
        .expect("open connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // ...and the listener is gone, once the aborted task has been dropped.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting after drop");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn blocking_get(addr: SocketAddr, path: &str) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "got {text:?}");
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn spawn_background_serves_without_a_caller_runtime() {
    let addrs = spawn_background(vec![
        (loopback(), "data".to_owned()),
        (loopback(), "metrics".to_owned()),
    ])
    .unwrap();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    for (addr, name) in addrs.iter().zip(["data", "metrics"]) {
        assert_ne!(addr.port(), 0);
        let echo = blocking_get(*addr, "/api/v1");
        assert_eq!(echo["backend"], name);
        assert_eq!(echo["port"], addr.port());
        assert_eq!(echo["path"], "/api/v1");
    }
}

#[test]
fn spawn_background_reports_the_first_bind_error() {
    let taken = std::net::TcpListener::bind(loopback()).unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let err = spawn_background(vec![
        (loopback(), "fine".to_owned()),
        (taken_addr, "clash".to_owned()),
    ])
    .expect_err("binding a taken port must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains(&taken_addr.to_string()),
        "error should name the address: {err}"
    );
}

mod binary {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const BIN: &str = env!("CARGO_BIN_EXE_postern-echo");

    #[test]
    fn help_prints_usage() {
        let out = Command::new(BIN).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.starts_with("usage: postern-echo --listen ADDR"),
            "{stdout}"
        );
    }

    #[test]
    fn bad_address_exits_2_with_a_clear_error() {
        let out = Command::new(BIN)
            .args(["--listen", "nope"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with("postern-echo: invalid --listen address \"nope\": expected IP:PORT"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn serves_until_interrupted() {
        let mut child = Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--name",
                "cli",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = Vec::new();
        for _ in 0..2 {
            let line = lines.next().unwrap().unwrap();
            let addr = line
                .strip_prefix("postern-echo: cli listening on ")
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            addrs.push(addr.parse::<SocketAddr>().unwrap());
        }
        for addr in &addrs {
            let echo = blocking_get(*addr, "/from/cli");
            assert_eq!(echo["backend"], "cli");
            assert_eq!(echo["port"], addr.port());
        }

        // SIGINT, as Ctrl-C would send.
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + IO_TIMEOUT;
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("postern-echo did not exit on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(exit.code(), Some(0));
    }
}
