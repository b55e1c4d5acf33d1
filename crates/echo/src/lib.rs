//! A small echo backend for Postern, in the spirit of Traefik's `whoami`.
//!
//! Postern's end-to-end tests put it behind the gateway as the upstream, and
//! `postern demo` runs it as a stand-in for HCL Domino REST API's backends.
//! Every request is answered with a JSON description of what actually arrived
//! (backend name, port, method, raw path and query, headers, body length,
//! peer), so a test can see exactly what the gateway forwarded and whether
//! anything arrived at all.
//!
//! A few paths change the answer, matched on the path's last two segments so
//! they still work behind a gateway path prefix:
//!
//! * `.../status/<code>` answers with that status (200-599; anything else is
//!   a 400, because hyper cannot send a 1xx as a final response).
//! * `.../delay/<ms>` waits that long (at most 60 s) before answering.
//!
//! A [`Responder`] may answer some requests itself instead (the demo's
//! development token issuer lives on the data port this way).
//!
//! A WebSocket upgrade gets a real RFC 6455 handshake; the server then sends
//! the request's echo JSON as the first text message and echoes every text
//! and binary message after it.

mod arrivals;
mod background;

pub use arrivals::BodyTimes;
pub use background::{spawn_background, spawn_background_with};

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest request body the server reads; more is answered with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest `.../delay/<ms>` honoured; longer requests are clamped to it.
pub const MAX_DELAY_MS: u64 = 60_000;

/// Answers a request itself instead of echoing it: given the method, path
/// and body, `Some((status, json))` is sent as the response; `None` echoes.
pub type Responder = Arc<dyn Fn(&Method, &str, &[u8]) -> Option<(StatusCode, Value)> + Send + Sync>;

/// An echo server running on the current tokio runtime.
///
/// Dropping it stops the server: the listener closes and open connections
/// (WebSockets included) are cut, so tests do not leak servers or ports.
pub struct EchoServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
    // Never sent on: dropping it is the signal, because every connection
    // task watches for the sender to disappear.
    _shutdown: watch::Sender<()>,
}

/// State shared between the handle and every connection.
struct Shared {
    name: String,
    port: u16,
    requests: AtomicU64,
    last: Mutex<Option<Value>>,
    responder: Option<Responder>,
    arrivals: arrivals::Arrivals,
}

impl Shared {
    fn last(&self) -> MutexGuard<'_, Option<Value>> {
        // A poisoned lock only means some task panicked mid-store; the value
        // is still a whole JSON document, so keep serving it.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EchoServer {
    /// Binds and starts serving on the current tokio runtime (spawns a task).
    /// `name` labels the backend in responses (e.g. "data", "metrics").
    pub async fn start(addr: SocketAddr, name: &str) -> io::Result<EchoServer> {
        EchoServer::start_with(addr, name, None).await
    }

    /// As [`EchoServer::start`], with `responder` answering the requests it
    /// claims.
    pub async fn start_with(
        addr: SocketAddr,
        name: &str,
        responder: Option<Responder>,
    ) -> io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("echo backend {name:?} cannot listen on {addr}: {e}"),
            )
        })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            port: addr.port(),
            requests: AtomicU64::new(0),
            last: Mutex::new(None),
            responder,
            arrivals: arrivals::Arrivals::default(),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        Ok(EchoServer {
            addr,
            shared,
            accept_task,
            _shutdown: shutdown_tx,
        })
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far (every request counts, including WebSocket
    /// upgrades), so tests can assert "the upstream received zero requests".
    pub fn requests_seen(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The most recent request's echo JSON, if any.
    pub fn last_request(&self) -> Option<Value> {
        self.shared.last().clone()
    }

    /// When each TCP connection was accepted, in order: a gateway that
    /// answers a request itself opens none.
    pub fn connections_accepted(&self) -> Vec<Instant> {
        self.shared.arrivals.accepted()
    }

    /// Request body bytes received so far over all requests, counted as
    /// they arrive (before the request is answered).
    pub fn body_bytes_received(&self) -> u64 {
        self.shared.arrivals.body_bytes()
    }

    /// The most recent complete request body, as received.
    pub fn last_body(&self) -> Bytes {
        self.shared.arrivals.last_body()
    }

    /// When the most recent request's head and body arrived.
    pub fn last_body_times(&self) -> BodyTimes {
        self.shared.arrivals.last()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<()>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                shared.arrivals.connection_accepted();
                tokio::spawn(serve_connection(
                    stream,
                    remote,
                    Arc::clone(&shared),
                    shutdown.clone(),
                ));
            }
            // Accept errors are per-connection (reset before accept) or
            // transient (out of file descriptors); pausing briefly keeps the
            // latter from becoming a busy loop.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    // Tests exchange many tiny messages; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let ws_shutdown = shutdown.clone();
    let service =
        service_fn(move |req| handle(req, Arc::clone(&shared), remote, ws_shutdown.clone()));
    let conn = http1::Builder::new()
        .keep_alive(true)
        // Without a timer hyper cannot enforce its header read timeout, and a
        // client that never finishes its headers would pin the task forever.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        // A protocol error or a reset only ends this connection; there is
        // nobody to report it to, and the client sees the failure anyway.
        _ = conn => {}
        _ = shutdown.changed() => {}
    }
}

/// What the path's last two segments ask for.
#[derive(Debug, PartialEq, Eq)]
enum Special {
    Plain,
    Status(StatusCode),
    Delay(Duration),
    Invalid(String),
}

fn special(path: &str) -> Special {
    let mut segments = path.rsplit('/');
    let (Some(value), Some(kind)) = (segments.next(), segments.next()) else {
        return Special::Plain;
    };
    // Only plain digits: `u16::from_str` would also take "+503".
    let number = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok()
    } else {
        None
    };
    match kind {
        "status" => match number {
            Some(code @ 200..=599) => match StatusCode::from_u16(code as u16) {
                Ok(status) => Special::Status(status),
                Err(_) => Special::Invalid(format!("invalid status code {value:?}")),
            },
            // hyper turns a 1xx final response into a 500 and drops the
            // connection, so the echo server refuses them up front instead.
            Some(100..=199) => Special::Invalid(format!(
                "status {value} is informational and cannot be a final response"
            )),
            _ => Special::Invalid(format!("invalid status code {value:?}: expected 200-599")),
        },
        "delay" => match number {
            Some(ms) => Special::Delay(Duration::from_millis(ms.min(MAX_DELAY_MS))),
            None => Special::Invalid(format!("invalid delay {value:?}: expected milliseconds")),
        },
        _ => Special::Plain,
    }
}

/// Whether a header holds `token` in its comma-separated list, across all of
/// its occurrences, ignoring ASCII case (e.g. `Connection: keep-alive, Upgrade`).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn wants_websocket(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && has_token(req.headers(), header::UPGRADE, "websocket")
        && has_token(req.headers(), header::CONNECTION, "upgrade")
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    // HeaderMap yields a name once per value, in the order the values
    // arrived, so pushing keeps repeated headers in arrival order.
    for (name, value) in headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        if let Value::Array(values) = out
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            values.push(value);
        }
    }
    Value::Object(out)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

enum BodyOutcome {
    Read(Bytes),
    TooLarge,
    Broken,
}

async fn read_body(body: Incoming, headers: &HeaderMap, shared: &Shared) -> BodyOutcome {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refuse a declared oversize body without waiting for it to arrive.
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return BodyOutcome::TooLarge;
    }
    let mut body = Limited::new(body, MAX_BODY_BYTES);
    let mut received = Vec::new();
    // Frame by frame, so the arrival of each piece is recorded.
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    shared.arrivals.body_piece(data.len());
                    received.extend_from_slice(data);
                }
            }
            Err(e) if e.is::<LengthLimitError>() => return BodyOutcome::TooLarge,
            Err(_) => return BodyOutcome::Broken,
        }
    }
    let received = Bytes::from(received);
    shared.arrivals.body_complete(&received);
    BodyOutcome::Read(received)
}

async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    remote: SocketAddr,
    shutdown: watch::Receiver<()>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.arrivals.request_head();

    let upgrade = if wants_websocket(&req) {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };
    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, &shared).await;

    let mut echo = json!({
        "backend": shared.name,
        "port": shared.port,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_json(&parts.headers),
        "body_bytes": match &body {
            BodyOutcome::Read(bytes) => Value::from(bytes.len()),
            _ => Value::Null,
        },
        "remote": remote.to_string(),
    });

    let outcome = match body {
        BodyOutcome::Read(bytes) => {
            let answered = shared
                .responder
                .as_ref()
                .and_then(|respond| respond(&parts.method, parts.uri.path(), &bytes));
            if let Some((status, answer)) = answered {
                *shared.last() = Some(echo);
                return Ok(json_response(status, &answer));
            }
            special(parts.uri.path())
        }
        BodyOutcome::TooLarge => {
            let message = format!("request body exceeds {MAX_BODY_BYTES} bytes");
            echo["error"] = Value::String(message);
            *shared.last() = Some(echo.clone());
            return Ok(json_response(StatusCode::PAYLOAD_TOO_LARGE, &echo));
        }
        BodyOutcome::Broken => {
            echo["error"] = Value::String("request body could not be read".to_owned());
            *shared.last() = Some(echo.clone());
            return Ok(json_response(StatusCode::BAD_REQUEST, &echo));
        }
    };

    let status = match outcome {
        Special::Plain => StatusCode::OK,
        Special::Status(status) => status,
        Special::Delay(delay) => {
            // Record before sleeping, so a test whose client (or gateway)
            // gives up first can still see what arrived.
            *shared.last() = Some(echo.clone());
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        Special::Invalid(message) => {
            echo["error"] = Value::String(message);
            StatusCode::BAD_REQUEST
        }
    };
    *shared.last() = Some(echo.clone());

    // An explicit status overrides the upgrade, so a test can make the
    // upstream refuse a WebSocket (e.g. `/ws/status/403`).
    match upgrade {
        Some(on_upgrade) if status == StatusCode::OK => {
            Ok(accept_websocket(&parts.headers, on_upgrade, echo, shutdown))
        }
        _ => Ok(json_response(status, &echo)),
    }
}

fn accept_websocket(
    headers: &HeaderMap,
    on_upgrade: OnUpgrade,
    mut echo: Value,
    mut shutdown: watch::Receiver<()>,
) -> Response<Full<Bytes>> {
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        echo["error"] = Value::String("unsupported Sec-WebSocket-Version".to_owned());
        let mut response = json_response(StatusCode::UPGRADE_REQUIRED, &echo);
        // RFC 6455 4.4: tell the client which version would work.
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        echo["error"] = Value::String("missing Sec-WebSocket-Key".to_owned());
        return json_response(StatusCode::BAD_REQUEST, &echo);
    };
    let accept = derive_accept_key(key.as_bytes());

    tokio::spawn(async move {
        tokio::select! {
            _ = websocket_session(on_upgrade, echo) => {}
            _ = shutdown.changed() => {}
        }
    });

    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

async fn websocket_session(on_upgrade: OnUpgrade, echo: Value) {
    // Fails when the client vanished before the 101 went out; nothing to do.
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    if ws.send(Message::text(echo.to_string())).await.is_err() {
        return;
    }
    while let Some(message) = ws.next().await {
        let reply = match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            // tungstenite queues the pong for a ping, and the close reply for
            // a close, and sends them on the next read, which this loop does
            // right away; after a close that read ends the stream.
            Ok(_) => continue,
            Err(_) => return,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_paths_match_last_segments() {
        assert_eq!(
            special("/status/503"),
            Special::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            special("/api/v1/status/201"),
            Special::Status(StatusCode::CREATED)
        );
        assert_eq!(
            special("/x/delay/50"),
            Special::Delay(Duration::from_millis(50))
        );
        assert_eq!(
            special("/delay/9999999"),
            Special::Delay(Duration::from_millis(MAX_DELAY_MS))
        );
        assert_eq!(special("/"), Special::Plain);
        assert_eq!(special("*"), Special::Plain);
        assert_eq!(special("/status"), Special::Plain);
        assert_eq!(special("/status/503/more"), Special::Plain);
        assert_eq!(special("/status/503/"), Special::Plain);
    }

    #[test]
    fn special_paths_reject_bad_numbers() {
        for path in [
            "/status/99",
            "/status/600",
            "/status/100",
            "/status/101",
            "/status/+503",
            "/status/abc",
            "/status/",
            "/status/99999999999999999999999",
            "/delay/-1",
            "/delay/1.5",
            "/delay/99999999999999999999999",
        ] {
            assert!(
                matches!(special(path), Special::Invalid(_)),
                "{path} should be invalid, got {:?}",
                special(path)
            );
        }
    }

    #[test]
    fn tokens_are_matched_case_insensitively_across_lists() {
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.append(header::CONNECTION, HeaderValue::from_static("x, UpGrade"));
        assert!(has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(!has_token(&headers, header::CONNECTION, "close"));
        assert!(!has_token(&headers, header::UPGRADE, "websocket"));
    }

    #[test]
    fn headers_keep_arrival_order_and_lossy_utf8() {
        let mut headers = HeaderMap::new();
        headers.append("x-multi", HeaderValue::from_static("one"));
        headers.append("x-other", HeaderValue::from_static("z"));
        headers.append("x-multi", HeaderValue::from_static("two"));
        headers.append("x-bin", HeaderValue::from_bytes(b"a\xffb").unwrap());
        assert_eq!(
            headers_json(&headers),
            json!({
                "x-multi": ["one", "two"],
                "x-other": ["z"],
                "x-bin": ["a\u{fffd}b"],
            })
        );
    }
}
