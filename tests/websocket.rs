//! WebSocket upgrades through the gateway over TLS, to the echo backend.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{assert_gateway_error, echo, upstream, upstream_header, Gateway};

fn ws_routes(data: std::net::SocketAddr) -> String {
    format!(
        r#"{}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "data"

[[routes]]
name = "closed"
path_prefix = "/api/closed"
deny = true
"#,
        upstream("data", data, ""),
    )
}

async fn next_message<S>(ws: &mut S) -> Message
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a WebSocket message in time")
        .expect("the WebSocket is open")
        .expect("a valid WebSocket message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_round_trips_through_the_gateway() {
    let data = echo("data").await;
    let gw = Gateway::start(ws_routes(data.local_addr())).await;

    let conn = gw.tls("api.example.com").await;
    let request = "wss://api.example.com/api/./chat?room=1"
        .into_client_request()
        .expect("request");
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(request, conn.stream),
    )
    .await
    .expect("WebSocket handshake in time")
    .expect("WebSocket handshake through the gateway");
    assert_eq!(response.status(), 101);
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    // The echo backend first describes the upgrade request it received.
    let first = next_message(&mut ws).await;
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("JSON");
    assert_eq!(first["backend"], "data");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/api/chat");
    assert_eq!(first["query"], "room=1");
    assert_eq!(upstream_header(&first, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(upstream_header(&first, "x-forwarded-proto"), ["https"]);
    assert_eq!(upstream_header(&first, "upgrade"), ["websocket"]);
    let upstream_id = upstream_header(&first, "x-request-id");
    assert_eq!(upstream_id.len(), 1);
    assert_eq!(
        request_id.as_deref(),
        Some(upstream_id[0].as_str()),
        "the 101 carries the request id the upstream saw"
    );

    ws.send(Message::text("hello through postern"))
        .await
        .expect("send text");
    let reply = next_message(&mut ws).await;
    assert_eq!(reply, Message::text("hello through postern"));

    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(payload.clone()))
        .await
        .expect("send binary");
    let reply = next_message(&mut ws).await;
    assert_eq!(reply.into_data().as_ref(), payload.as_slice());

    ws.close(None).await.expect("close");
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_obeys_route_policy() {
    let data = echo("data").await;
    let gw = Gateway::start(ws_routes(data.local_addr())).await;

    let raw = "GET /api/closed/chat HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\n\
               Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let response = gw.send("api.example.com", raw).await;
    assert_gateway_error(&response, 403, "forbidden", Some("closed"));

    let raw =
        "GET /api/%2e%2e/%2e%2e/chat HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\n\
               Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let response = gw.send("api.example.com", raw).await;
    assert_gateway_error(&response, 400, "bad_request", None);

    // Misdirected upgrades are refused before anything is forwarded.
    let raw = "GET /api/chat HTTP/1.1\r\nHost: foo.example.net\r\nUpgrade: websocket\r\n\
               Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let response = gw.send("api.example.com", raw).await;
    assert_gateway_error(&response, 421, "misdirected_request", None);
    assert_eq!(data.requests_seen(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_the_upgrade_is_passed_through() {
    let data = echo("data").await;
    let gw = Gateway::start(ws_routes(data.local_addr())).await;

    let raw = "GET /api/ws/status/403 HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\n\
               Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let response = gw.send("api.example.com", raw).await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(
        response.json()["backend"],
        "data",
        "the upstream's own answer"
    );
    assert_eq!(data.requests_seen(), 1);
}
