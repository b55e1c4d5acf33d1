//! HTTP/2: the same policy as HTTP/1.1 on `:path` and `:authority`, bounded
//! concurrency advertised up front, and abuse that costs the attacker's
//! connection, never the gateway: rapid reset (CVE-2023-44487) and header
//! blocks that never end (CONTINUATION floods).

use std::time::{Duration, Instant};

use postern_echo::EchoServer;

use crate::support;
use crate::support::{echo, upstream, Gateway, H2Conn, TlsOptions};

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

async fn gateway(backend: &EchoServer) -> Gateway {
    Gateway::start(format!(
        "{}
[auth.ops]
type = \"basic\"
users = {{ admin = \"$argon2id$v=19$m=19456,t=2,p=1$ATyBwlkRoZtHZfls2ZKUQQ$Ctz8FjH7qo660SCA4kodaxiKvr9I4XXklSciqBL7ECk\" }}

[[routes]]
name = \"open\"
upstream = \"data\"

[[routes]]
name = \"denied\"
path_prefix = \"/denied\"
deny = true

[[routes]]
name = \"ops\"
path_prefix = \"/ops\"
upstream = \"data\"
auth = \"ops\"
",
        upstream("data", backend.local_addr(), "")
    ))
    .await
}

async fn h2(gw: &Gateway) -> H2Conn {
    let conn = gw
        .connect(TlsOptions::sni("api.example.com").alpn(&[b"h2"]))
        .await
        .expect("h2 handshake");
    H2Conn::handshake(conn).await.expect("h2 preface")
}

fn request(path: &str) -> Vec<u8> {
    H2Conn::header_block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "api.example.com"),
        (":path", path),
    ])
}

/// Whether one of `kinds` arrives (or the connection ends) within 3 s.
async fn saw_frame(conn: &mut H2Conn, kinds: &[u8]) -> bool {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match conn.next_frame().await {
                Ok((kind, _, _, _)) if kinds.contains(&kind) => return true,
                Ok(_) => continue,
                Err(_) => return true,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Another client, on a new connection, is served promptly.
async fn assert_still_serving(gw: &Gateway) {
    let started = Instant::now();
    let mut other = h2(gw).await;
    let response = other
        .get("api.example.com", "/after", &[])
        .await
        .expect("the gateway still serves HTTP/2");
    assert_eq!(response.json()["path"], "/after");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "another client waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_hold_on_http2_as_on_http1() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let mut conn = h2(&gw).await;
    let json = |r: support::H2Response| r.json();

    let denied = json(conn.get("api.example.com", "/denied/x", &[]).await.unwrap());
    assert_eq!(
        (denied["status"].as_u64(), denied["route"].as_str()),
        (Some(403), Some("denied"))
    );
    // Dot segments and encodings resolve before routing, as on HTTP/1.1.
    for path in [
        "/open/../denied/x",
        "/%64enied/x",
        "//denied//x",
        "/denied;x=1/y",
    ] {
        let body = json(conn.get("api.example.com", path, &[]).await.unwrap());
        assert_eq!(body["status"], 403, "{path}: {body}");
    }
    let body = json(
        conn.get("api.example.com", "/a/%2e%2e%2fdenied", &[])
            .await
            .unwrap(),
    );
    assert_eq!(body["status"], 400, "encoded slash: {body}");
    let body = json(conn.get("api.example.com", "/ops/x", &[]).await.unwrap());
    assert_eq!(body["status"], 401, "basic auth: {body}");
    let body = json(
        conn.get(
            "api.example.com",
            "/ops/x",
            &[("authorization", "Basic YWRtaW46Y2hhbmdlLW1l")],
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        body["backend"], "data",
        "admin:change-me gets through: {body}"
    );
    assert_eq!(backend.requests_seen(), 1, "only the authenticated request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_advertises_bounded_streams_and_header_lists() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let mut conn = h2(&gw).await;
    let (kind, flags, stream, payload) = conn.next_frame().await.expect("server SETTINGS");
    assert_eq!(
        (kind, flags & 0x1, stream),
        (SETTINGS, 0, 0),
        "first frame is SETTINGS"
    );
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    let value = |id| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    let streams = value(SETTINGS_MAX_CONCURRENT_STREAMS).expect("MAX_CONCURRENT_STREAMS is sent");
    assert!(
        (1..=1000).contains(&streams),
        "MAX_CONCURRENT_STREAMS = {streams}"
    );
    let list = value(SETTINGS_MAX_HEADER_LIST_SIZE).expect("MAX_HEADER_LIST_SIZE is sent");
    assert!(list <= 1024 * 1024, "MAX_HEADER_LIST_SIZE = {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_costs_only_the_attackers_connection() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let mut attacker = h2(&gw).await;
    let mut stream = 1u32;
    let mut sent = 0;
    // Open and cancel streams as fast as the connection takes them.
    for _ in 0..5000 {
        let opened = attacker
            .send_frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                stream,
                &request("/delay/200"),
            )
            .await
            .is_ok()
            && attacker
                .send_frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())
                .await
                .is_ok();
        if !opened {
            break;
        }
        sent += 1;
        stream += 2;
    }
    // The gateway may cut the attacker off (GOAWAY) or absorb the resets;
    // either way it must not have forwarded thousands of requests.
    let goaway = saw_frame(&mut attacker, &[GOAWAY]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let forwarded = backend.requests_seen();
    assert!(
        forwarded < 1000,
        "{sent} opened-and-reset streams made {forwarded} upstream requests (GOAWAY: {goaway})"
    );
    assert_still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_that_never_ends_is_cut_off() {
    let backend = echo("data").await;
    let gw = gateway(&backend).await;
    let mut attacker = h2(&gw).await;
    let mut first = request("/flood");
    first.extend(H2Conn::header_block(&[("x-pad", "start")]));
    attacker
        .send_frame(HEADERS, END_STREAM, 1, &first)
        .await
        .unwrap();
    // 4 MB of CONTINUATION frames and never END_HEADERS.
    let filler = H2Conn::header_block(&[("x-flood", &"a".repeat(16_000))]);
    let mut written = 0usize;
    while written < 4 * 1024 * 1024 {
        if attacker
            .send_frame(CONTINUATION, 0, 1, &filler)
            .await
            .is_err()
        {
            break; // the gateway closed the connection: good
        }
        written += filler.len();
    }
    let refused =
        written < 4 * 1024 * 1024 || saw_frame(&mut attacker, &[GOAWAY, RST_STREAM]).await;
    assert!(
        refused,
        "4 MB of header block was accepted without a GOAWAY or reset"
    );
    assert_eq!(
        backend.requests_seen(),
        0,
        "the flooded request was forwarded"
    );
    assert_still_serving(&gw).await;
}
