//! Faults around the gateway: an identity provider that is down or serves
//! garbage, upstreams that reset, stall mid-body or answer nonsense, an
//! access log that cannot be written, a certificate file deleted under a
//! running gateway. In every case the gateway says what happened (its JSON
//! error, a log line on stderr) and keeps serving: a request to a healthy
//! route right after succeeds.
//!
//! The misbehaving upstreams and the garbage IdP are tiny servers on raw
//! `tokio` sockets, written here.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support;
use crate::support::idp::{jwk_set, now, TestKey};
use crate::support::{assert_gateway_error, closed_port, echo, get, request, upstream, Gateway};

const HOST: &str = "api.example.com";

// ---------------------------------------------------------------------------
// Misbehaving servers
// ---------------------------------------------------------------------------

/// A TCP server on a free loopback port that hands every accepted connection
/// to `behave`. Stops accepting when dropped.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Server {
    async fn start<F, Fut>(behave: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(behave(stream));
            }
        });
        Server {
            addr,
            accepted,
            accept,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads a request head (up to the blank line), returning it; whatever
/// arrived if the peer stops first.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&byte[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An upstream that reads the request, then writes `answer` and closes.
async fn answers(answer: &'static [u8]) -> Server {
    Server::start(move |mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.write_all(answer).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    })
    .await
}

/// The gateway's own log lines on stderr that contain every one of `needles`.
fn log_lines(gw: &Gateway, needles: &[&str]) -> Vec<String> {
    gw.stderr()
        .lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits (up to `limit`) for a stderr line containing every one of `needles`.
async fn wait_for_log(gw: &Gateway, needles: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(line) = log_lines(gw, needles).into_iter().next() {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no stderr line with {needles:?} within {limit:?}; stderr:\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway still serves: the healthy route answers with the echo backend.
async fn still_serving(gw: &Gateway) {
    let echo = gw.get(HOST, "/ok/still-here").await.echo();
    assert_eq!(echo["path"], "/ok/still-here", "{echo}");
}

/// The healthy route every test gateway has, on its own echo backend.
fn healthy_route(data: SocketAddr) -> String {
    format!(
        "{}\n[[routes]]\nname = \"ok\"\npath_prefix = \"/ok\"\nupstream = \"data\"\n",
        upstream("data", data, "")
    )
}

// ---------------------------------------------------------------------------
// Identity provider
// ---------------------------------------------------------------------------

fn key_a() -> TestKey {
    TestKey::rsa("rsa1", "key-a")
}

fn token() -> String {
    let now = now();
    key_a().sign(&json!({ "sub": "alice", "iat": now, "exp": now + 600 }))
}

fn bearer(target: &str, token: &str) -> Vec<u8> {
    request(
        "GET",
        HOST,
        target,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
}

/// A 401 from the JWT authenticator `realm` on `route`, saying the keys
/// could not be had.
fn assert_keys_unavailable(response: &support::Response, route: &str, realm: &str) {
    assert_gateway_error(response, 401, "unauthorized", Some(route));
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\""
        )),
        "WWW-Authenticate: {challenge:?}"
    );
    assert!(
        challenge.contains("error_description=\"signing keys unavailable\""),
        "WWW-Authenticate: {challenge:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_route_refuses_when_the_idp_is_unreachable() {
    let data = echo("data").await;
    let api = echo("api").await;
    let port = closed_port();
    let gw = Gateway::start(format!(
        r#"{healthy}
{api_upstream}
[auth.idp]
type = "jwt"
jwks_url = "http://127.0.0.1:{port}/jwks"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
auth = "idp"
"#,
        healthy = healthy_route(data.local_addr()),
        api_upstream = upstream("api", api.local_addr(), ""),
    ))
    .await;

    let token = token();
    for _ in 0..2 {
        let started = Instant::now();
        let refused = gw.send(HOST, bearer("/api/x", &token)).await;
        assert_keys_unavailable(&refused, "api", "idp");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "a closed IdP port took {:?} to refuse",
            started.elapsed()
        );
    }
    assert_eq!(api.requests_seen(), 0, "a request reached the upstream");
    let line = wait_for_log(
        &gw,
        &["\"idp\"", "JWKS fetch failed", &port.to_string()],
        Duration::from_secs(5),
    )
    .await;
    assert!(!line.contains(&token), "the token was logged: {line}");
    still_serving(&gw).await;
}

/// What a broken IdP answers at `/PATH`: (content type, body). Shared so a
/// test can repair it.
type Documents = Arc<Mutex<HashMap<String, (String, String)>>>;

/// An HTTP/1.1 server answering 200 with whatever `documents` holds for the
/// path, one request per connection.
async fn document_server(documents: Documents) -> Server {
    Server::start(move |mut stream| {
        let documents = Arc::clone(&documents);
        async move {
            let head = read_head(&mut stream).await;
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let found = documents.lock().expect("lock").get(&path).cloned();
            let (status, (content_type, body)) = match found {
                Some(doc) => ("200 OK", doc),
                None => ("404 Not Found", ("text/plain".into(), "no such path".into())),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_route_refuses_when_the_idp_serves_garbage() {
    // (authenticator and route name, JWKS path, content type, body): 200s
    // that are not a usable JWK Set.
    let garbage: [(&str, &str, &str, &str); 6] = [
        (
            "html",
            "/html",
            "text/html",
            "<html><body>Service Unavailable</body></html>",
        ),
        ("notjson", "/notjson", "application/json", "keys: [oops"),
        (
            "notjwks",
            "/notjwks",
            "application/json",
            r#"{"hello":"world"}"#,
        ),
        (
            "keysnotarray",
            "/keysnotarray",
            "application/json",
            r#"{"keys":"none"}"#,
        ),
        (
            "badkey",
            "/badkey",
            "application/json",
            r#"{"keys":[{"kty":"RSA","kid":"key-a","use":"sig","n":"!!not base64!!","e":"AQAB"}]}"#,
        ),
        (
            "truncated",
            "/truncated",
            "application/json",
            r#"{"keys":[{"kty":"RSA","#,
        ),
    ];
    let documents: Documents = Arc::default();
    for (_, path, content_type, body) in &garbage {
        documents.lock().unwrap().insert(
            path.to_string(),
            (content_type.to_string(), body.to_string()),
        );
    }
    let idp = document_server(Arc::clone(&documents)).await;
    let data = echo("data").await;
    let api = echo("api").await;
    let mut body = healthy_route(data.local_addr()) + &upstream("api", api.local_addr(), "");
    for (name, path, _, _) in &garbage {
        body.push_str(&format!(
            "\n[auth.{name}]\ntype = \"jwt\"\njwks_url = \"http://{addr}{path}\"\n\n\
             [[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"api\"\nauth = \"{name}\"\n",
            addr = idp.addr,
        ));
    }
    let gw = Gateway::start(body).await;

    let token = token();
    for (name, ..) in &garbage {
        let refused = gw.send(HOST, bearer(&format!("/{name}/x"), &token)).await;
        assert_keys_unavailable(&refused, name, name);
        wait_for_log(
            &gw,
            &[&format!("auth {name:?}: JWKS fetch failed")],
            Duration::from_secs(5),
        )
        .await;
    }
    assert_eq!(api.requests_seen(), 0, "a request reached the upstream");
    assert!(idp.accepted() >= garbage.len(), "the IdP was never asked");
    still_serving(&gw).await;

    // The IdP is repaired: a failed fetch is not remembered for ever, and
    // the same token is accepted.
    documents.lock().unwrap().insert(
        "/html".into(),
        ("application/json".into(), jwk_set(&[&key_a()]).to_string()),
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let response = gw.send(HOST, bearer("/html/x", &token)).await;
        if response.status == 200 {
            assert_eq!(response.echo()["backend"], "api");
            break;
        }
        assert_keys_unavailable(&response, "html", "html");
        assert!(
            Instant::now() < deadline,
            "the repaired IdP's keys were not used within 8s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(api.requests_seen(), 1);
}

// ---------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_resets_connections_gets_502() {
    // Reads the request, then resets the connection (RST, SO_LINGER 0).
    let reset = Server::start(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.set_zero_linger();
    })
    .await;
    // Resets the connection as soon as it is accepted.
    let reset_at_once = Server::start(|stream| async move {
        let _ = stream.set_zero_linger();
    })
    .await;
    // Closes (FIN) as soon as it is accepted, answering nothing.
    let close = Server::start(|stream| async move { drop(stream) }).await;
    let data = echo("data").await;
    let mut body = healthy_route(data.local_addr());
    for (name, server) in [
        ("reset", &reset),
        ("resetatonce", &reset_at_once),
        ("close", &close),
    ] {
        body.push_str(&upstream(name, server.addr, "read_timeout = \"5s\""));
        body.push_str(&format!(
            "\n[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{name}\"\n"
        ));
    }
    let gw = Gateway::start(body).await;

    for (name, server) in [
        ("reset", &reset),
        ("resetatonce", &reset_at_once),
        ("close", &close),
    ] {
        for method in ["GET", "POST"] {
            let started = Instant::now();
            let response = gw
                .send(
                    HOST,
                    request(method, HOST, &format!("/{name}/x"), &[], b"body"),
                )
                .await;
            assert_gateway_error(&response, 502, "bad_gateway", Some(name));
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{method} /{name}: the 502 took {:?}",
                started.elapsed()
            );
            let id = response
                .header("x-request-id")
                .unwrap_or_default()
                .to_string();
            wait_for_log(
                &gw,
                &[&format!("502 for route {name} upstream {name}"), &id],
                Duration::from_secs(5),
            )
            .await;
        }
        assert!(server.accepted() >= 2, "{name} was never connected to");
        still_serving(&gw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_responses_get_502() {
    let cases: [(&str, &'static [u8]); 6] = [
        ("garbage", b"HELLO THERE\r\n\r\n"),
        (
            "badstatus",
            b"HTTP/1.1 2000 Way OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "badheader",
            b"HTTP/1.1 200 OK\r\nthis is not a header\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "binary",
            b"\x16\x03\x01\x00\xff\x00\x00\x00\r\n\r\n\xde\xad\xbe\xef",
        ),
        ("truncatedhead", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"),
        (
            "badlength",
            b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\nok",
        ),
    ];
    let mut servers = Vec::new();
    let data = echo("data").await;
    let mut body = healthy_route(data.local_addr());
    for (name, answer) in cases {
        let server = answers(answer).await;
        body.push_str(&upstream(name, server.addr, "read_timeout = \"3s\""));
        body.push_str(&format!(
            "\n[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{name}\"\n"
        ));
        servers.push(server);
    }
    let gw = Gateway::start(body).await;

    let mut wrong = Vec::new();
    for ((name, answer), server) in cases.iter().zip(&servers) {
        let response = gw.get(HOST, &format!("/{name}/x")).await;
        let is_gateway_502 = response.status == 502
            && response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json"))
            && serde_json::from_slice::<Value>(&response.body)
                .is_ok_and(|b| b["error"] == "bad_gateway" && b["route"] == *name);
        if !is_gateway_502 {
            wrong.push(format!(
                "/{name} (upstream sent {:?}) got {} {:?} {:?}",
                String::from_utf8_lossy(answer),
                response.status,
                response.headers,
                response.text()
            ));
        } else {
            let id = response
                .header("x-request-id")
                .unwrap_or_default()
                .to_string();
            wait_for_log(
                &gw,
                &[&format!("502 for route {name} upstream {name}"), &id],
                Duration::from_secs(5),
            )
            .await;
        }
        assert!(server.accepted() >= 1, "{name} was never connected to");
        still_serving(&gw).await;
    }
    assert!(
        wrong.is_empty(),
        "malformed upstream responses not answered with the gateway's 502:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_stalling_mid_body_is_cut_off_at_read_timeout() {
    const DECLARED: usize = 1000;
    const SENT: usize = 100;
    let stalled = Arc::new(AtomicUsize::new(0));
    let stalled_count = Arc::clone(&stalled);
    let stall = Server::start(move |mut stream| {
        let stalled = Arc::clone(&stalled_count);
        async move {
            read_head(&mut stream).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {DECLARED}\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&[b'x'; SENT]).await;
            let _ = stream.flush().await;
            stalled.fetch_add(1, Ordering::SeqCst);
            // Hang with the connection open.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        }
    })
    .await;
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}{}\n[[routes]]\nname = \"stall\"\npath_prefix = \"/stall\"\nupstream = \"stall\"\n",
        healthy_route(data.local_addr()),
        upstream("stall", stall.addr, "read_timeout = \"1s\""),
    ))
    .await;

    let stalled_request = async {
        let mut conn = gw.tls(HOST).await;
        let started = Instant::now();
        conn.stream
            .write_all(get(HOST, "/stall/big").as_bytes())
            .await
            .expect("send");
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let ended = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                match conn.stream.read(&mut chunk).await {
                    Ok(0) => return "closed".to_string(),
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                    Err(e) => return format!("error: {e}"),
                }
            }
        })
        .await;
        (started.elapsed(), Instant::now(), received, ended)
    };
    let meanwhile = async {
        while stalled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let response = gw.get(HOST, "/ok/meanwhile").await;
        (response, started.elapsed(), Instant::now())
    };
    let ((elapsed, ended_at, received, ended), (other, other_elapsed, other_done)) =
        tokio::join!(stalled_request, meanwhile);

    // Others are served while the stalled response hangs.
    assert_eq!(other.echo()["path"], "/ok/meanwhile");
    assert!(
        other_done < ended_at,
        "the healthy request ({other_elapsed:?}) was not served while the stalled one hung"
    );

    // The client sees the declared length, part of the body, then the end
    // of the connection, within read_timeout (1s) and some slack.
    let ended = ended.unwrap_or_else(|_| {
        panic!(
            "the stalled response was still open after 8s (read_timeout is 1s); got {:?}",
            String::from_utf8_lossy(&received)
        )
    });
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&received)));
    let head = String::from_utf8_lossy(&received[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "head: {head}");
    assert!(
        head.contains(&format!("content-length: {DECLARED}")),
        "head: {head}"
    );
    let body = &received[split + 4..];
    assert_eq!(
        body.len(),
        SENT,
        "body bytes before the connection ended ({ended})"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "the stalled response ended after {elapsed:?} ({ended}); read_timeout is 1s"
    );
    assert_eq!(stall.accepted(), 1, "the stalled request was retried");

    // The log says which request was cut off, and why.
    let id_line = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id:"))
        .map(|id| id.trim().to_string())
        .expect("x-request-id on the forwarded response");
    wait_for_log(
        &gw,
        &["route stall upstream stall", &id_line],
        Duration::from_secs(5),
    )
    .await;
    still_serving(&gw).await;
}

// ---------------------------------------------------------------------------
// The gateway's own files
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_access_log_is_reported_and_requests_still_served() {
    let data = echo("data").await;
    let gw = Gateway::builder(healthy_route(data.local_addr()))
        .env("POSTERN_GATEWAY__ACCESS_LOG", "/dev/full")
        .start()
        .await;
    for i in 0..5 {
        let echo = gw.get(HOST, &format!("/ok/{i}")).await.echo();
        assert_eq!(echo["path"], format!("/ok/{i}"));
    }
    wait_for_log(
        &gw,
        &["cannot write the access log"],
        Duration::from_secs(5),
    )
    .await;
    still_serving(&gw).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reports = log_lines(&gw, &["cannot write the access log"]);
    assert_eq!(
        reports.len(),
        1,
        "a failing access log is reported once, not per request: {reports:#?}"
    );
    assert!(
        !gw.stdout().contains("/ok/"),
        "entries went to stdout instead: {}",
        gw.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_certificate_keeps_serving_the_old_one() {
    let data = echo("data").await;
    let gw = Gateway::start(healthy_route(data.local_addr())).await;
    let before = gw.tls(HOST).await;
    assert_eq!(gw.pki.which(&before.peer_certificates()[0]), "main");
    drop(before);

    std::fs::remove_file(&gw.pki.main.cert_path).expect("delete the certificate");
    let file = gw
        .pki
        .main
        .cert_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // The watcher looks every 2 seconds.
    let line = wait_for_log(
        &gw,
        &["certificate change not applied", &file],
        Duration::from_secs(8),
    )
    .await;
    assert!(
        line.contains("previous certificates keep serving"),
        "log line: {line}"
    );

    for _ in 0..3 {
        let mut conn = gw.tls(HOST).await;
        assert_eq!(
            gw.pki.which(&conn.peer_certificates()[0]),
            "main",
            "a new handshake did not get the old certificate"
        );
        let response = conn
            .send(get(HOST, "/ok/after").as_bytes())
            .await
            .expect("request");
        assert_eq!(response.echo()["path"], "/ok/after");
    }
    // The other certificates are untouched.
    let local = gw.tls("localhost").await;
    assert_eq!(gw.pki.which(&local.peer_certificates()[0]), "local");
    // Reported once per broken state, not every 2 seconds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        log_lines(&gw, &["certificate change not applied"]).len(),
        1,
        "stderr:\n{}",
        gw.stderr()
    );
}
