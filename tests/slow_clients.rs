//! Slow and idle clients cannot hold connections for ever: a slowloris head,
//! an idle TLS connection, an idle keep-alive connection and a stalled body
//! are each cut off by their timeout, while other clients keep being served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;
use crate::support::{echo, upstream, Gateway, TlsConn, TlsOptions};

/// The gateway under test holds clients to short timeouts so the tests are quick.
async fn gateway(body: &str) -> Gateway {
    Gateway::builder(body)
        .env("POSTERN_GATEWAY__CLIENT_HEADER_TIMEOUT", "2s")
        .env("POSTERN_GATEWAY__CLIENT_BODY_TIMEOUT", "2s")
        .env("POSTERN_GATEWAY__KEEPALIVE_TIMEOUT", "3s")
        .start()
        .await
}

fn open_route(addr: std::net::SocketAddr) -> String {
    format!(
        "{}\n[[routes]]\nname = \"open\"\nupstream = \"data\"\n",
        upstream("data", addr, "")
    )
}

/// Reads until the gateway closes the connection (EOF or reset), or `limit`
/// passes; returns how long that took, or None if it stayed open.
async fn time_until_closed(conn: &mut TlsConn, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), conn.stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Another client is served promptly while the slow ones are held.
async fn assert_others_served(gw: &Gateway) {
    let started = Instant::now();
    let response = gw.get("localhost", "/still-serving").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "another client waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_by_the_header_timeout() {
    let backend = echo("data").await;
    let gw = gateway(&open_route(backend.local_addr())).await;
    let mut slow = gw.tls("localhost").await;
    slow.stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // One header line every 300ms: every read arrives well within any
    // per-read timeout, but the head is never finished.
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .stream
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let started = Instant::now();
    let cut_off = tokio::time::timeout(Duration::from_secs(8), trickle).await;
    assert!(cut_off.is_ok(), "the slowloris connection stayed open 8s");
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(4),
        "the slowloris connection was held {held:?}, client_header_timeout is 2s"
    );
    assert_others_served(&gw).await;
    assert_eq!(
        backend.requests_seen(),
        1,
        "only the other client's request"
    );
}

#[tokio::test]
async fn a_tls_connection_that_never_sends_a_request_is_closed() {
    let backend = echo("data").await;
    let gw = gateway(&open_route(backend.local_addr())).await;
    let mut idle = gw.tls("localhost").await;
    assert_others_served(&gw).await;
    let closed = time_until_closed(&mut idle, Duration::from_secs(8)).await;
    let closed = closed.expect("an idle TLS connection stayed open 8s");
    assert!(
        closed < Duration::from_secs(4),
        "closed after {closed:?}, client_header_timeout is 2s"
    );
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let backend = echo("data").await;
    let gw = gateway(&open_route(backend.local_addr())).await;
    let mut conn = gw.tls("localhost").await;
    let keep_alive = "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(conn.send(keep_alive.as_bytes()).await.unwrap().status, 200);
    // Well inside keepalive_timeout the connection is reused, for longer than
    // the header timeout: idling between requests is the keep-alive's clock.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = conn
        .send(b"GET /two HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("the keep-alive connection was closed before keepalive_timeout");
    assert_eq!(second.status, 200);
    assert_eq!(backend.requests_seen(), 2);
    let closed = time_until_closed(&mut conn, Duration::from_secs(8))
        .await
        .expect("an idle keep-alive connection stayed open 8s");
    assert!(
        closed > Duration::from_secs(2) && closed < Duration::from_secs(5),
        "closed after {closed:?}, keepalive_timeout is 3s"
    );
}

#[tokio::test]
async fn a_keepalive_request_that_starts_must_finish_its_head_in_time() {
    let backend = echo("data").await;
    let gw = gateway(&open_route(backend.local_addr())).await;
    let mut conn = gw.tls("localhost").await;
    let first = conn
        .send(b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    conn.stream
        .write_all(b"GET /two HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let closed = time_until_closed(&mut conn, Duration::from_secs(8))
        .await
        .expect("a half-sent second head stayed open 8s");
    assert!(
        closed < Duration::from_secs(3),
        "closed after {closed:?}: a started head has client_header_timeout (2s), not keepalive_timeout (3s)"
    );
    assert_eq!(backend.requests_seen(), 1);
}

#[tokio::test]
async fn a_stalled_request_body_is_given_up_on() {
    let backend = echo("data").await;
    let gw = gateway(&open_route(backend.local_addr())).await;
    let mut conn = gw.tls("localhost").await;
    conn.stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(8), conn.read_response(false))
        .await
        .expect("a stalled body held the connection 8s")
        .expect("a 408 answer before the connection closes");
    support::assert_gateway_error(&response, 408, "request_timeout", Some("open"));
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(4),
        "held {held:?}, client_body_timeout is 2s"
    );
    assert_others_served(&gw).await;
}

async fn scrape(gw: &Gateway) -> String {
    gw.send_plain(
        gw.plain_port,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .text()
}

#[tokio::test]
async fn many_idle_connections_do_not_stop_service_and_are_all_released() {
    let backend = echo("data").await;
    let gw = gateway(&format!(
        "{}\n[[routes]]\nname = \"metrics\"\npath_prefix = \"/metrics\"\nservice = \"metrics\"\nlisteners = [\"ops\"]\n",
        open_route(backend.local_addr())
    ))
    .await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(gw.tls("localhost").await);
    }
    assert_others_served(&gw).await;
    let open = |metrics: &str| -> i64 {
        metrics
            .lines()
            .find(|l| l.starts_with("postern_connections{listener=\"https\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    let during = open(&scrape(&gw).await);
    assert!(during >= 200, "postern_connections while held: {during}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = open(&scrape(&gw).await);
    assert_eq!(after, 0, "idle connections still held after the timeout");
    for conn in &mut idle {
        assert!(
            time_until_closed(conn, Duration::from_millis(200))
                .await
                .is_some(),
            "a client still has an open connection"
        );
    }
}

#[tokio::test]
async fn an_h2_connection_that_sends_no_preface_is_closed() {
    let backend = echo("data").await;
    let gw = gateway(&open_route(backend.local_addr())).await;
    let mut idle = gw
        .connect(TlsOptions::sni("localhost").alpn(&[b"h2"]))
        .await
        .expect("TLS with ALPN h2");
    assert_eq!(
        idle.stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the gateway negotiates h2"
    );
    let closed = time_until_closed(&mut idle, Duration::from_secs(8))
        .await
        .expect("an h2 connection without a preface stayed open 8s");
    assert!(
        closed < Duration::from_secs(4),
        "closed after {closed:?}, client_header_timeout is 2s"
    );
    assert_others_served(&gw).await;
}
