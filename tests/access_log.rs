//! The access log: one JSON line per request on stdout, with the decision
//! the gateway made and never a credential, cookie or query string.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{echo, request, upstream, Gateway};

async fn entries(gw: &Gateway, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<Value> = gw
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_line_per_request_without_secrets() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"data\"\n\n\
         [[routes]]\nname = \"closed\"\npath_prefix = \"/closed\"\ndeny = true\n",
        upstream("data", data.local_addr(), "")
    ))
    .await;

    let secret_headers = [
        ("Authorization", "Bearer secret-token-value"),
        ("Cookie", "KeepToken=secret-cookie-value"),
    ];
    let ok = gw
        .send(
            "api.example.com",
            request(
                "POST",
                "api.example.com",
                "/api/./x?access_token=secret-query-value",
                &secret_headers,
                b"hello",
            ),
        )
        .await;
    assert_eq!(ok.status, 200);
    let refused = gw.get("api.example.com", "/closed/y").await;
    assert_eq!(refused.status, 403);

    let lines = entries(&gw, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let forwarded = &lines[0];
    assert_eq!(forwarded["method"], "POST");
    assert_eq!(forwarded["path"], "/api/x", "the canonical path, no query");
    assert_eq!(forwarded["host"], "api.example.com");
    assert_eq!(forwarded["route"], "api");
    assert_eq!(forwarded["upstream"], "data");
    assert_eq!(forwarded["status"], 200);
    assert_eq!(forwarded["listener"], "https");
    assert_eq!(forwarded["client"], "127.0.0.1");
    assert_eq!(forwarded["bytes_in"], 5);
    assert!(forwarded["bytes_out"].as_u64().unwrap() > 0);
    assert!(forwarded["duration_ms"].as_f64().is_some());
    assert_eq!(
        forwarded["request_id"].as_str(),
        ok.header("x-request-id"),
        "the id the client saw"
    );
    assert!(forwarded["time"].as_str().unwrap().ends_with('Z'));
    assert!(forwarded.get("refused").is_none());

    let denied = &lines[1];
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["route"], "closed");
    assert!(
        denied["refused"].as_str().unwrap().contains("denies"),
        "{denied}"
    );
    assert_eq!(
        denied["client"], "127.0.0.1",
        "the peer, before any client resolution"
    );

    let everything = gw.stdout() + &gw.stderr();
    for secret in [
        "secret-token-value",
        "secret-cookie-value",
        "secret-query-value",
    ] {
        assert!(!everything.contains(secret), "{secret} was logged");
    }
}

/// The stderr lines of `target` that say `refused STATUS`, waiting briefly
/// for the gateway to write them.
async fn refusal_lines(gw: &Gateway, status: u16) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = gw
            .stderr()
            .lines()
            .filter(|l| l.contains("postern::policy") && l.contains(&format!("refused {status} ")))
            .map(str::to_string)
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_log_lines_name_the_client_address() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}\n[[routes]]\nname = \"api\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), "")
    ))
    .await;
    // Refused before any route is chosen: the path, then the certificate.
    let bad_path = gw.get("api.example.com", "/a/%2f/b").await;
    assert_eq!(bad_path.status, 400);
    let misdirected = gw
        .send(
            "api.example.com",
            crate::support::get("other.example.org", "/x"),
        )
        .await;
    assert_eq!(misdirected.status, 421);
    for status in [400, 421] {
        let lines = refusal_lines(&gw, status).await;
        assert_eq!(lines.len(), 1, "one refusal line for {status}: {lines:?}");
        assert!(
            lines[0].contains(" client=127.0.0.1 "),
            "the {status} refusal names the client: {}",
            lines[0]
        );
    }
    assert_eq!(data.requests_seen(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_starts_tls_is_not_logged_as_an_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        "{}\n[[routes]]\nname = \"api\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), "")
    ))
    .await;
    // A load balancer's TCP check: connect, close, no byte sent.
    for _ in 0..3 {
        let probe = tokio::net::TcpStream::connect(("127.0.0.1", gw.tls_port))
            .await
            .expect("connect");
        drop(probe);
    }
    // Plain HTTP on the TLS port: the client's mistake, worth an INFO line.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", gw.tls_port))
        .await
        .expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest)).await;
    // A request that works, so the log has caught up with the probes.
    assert_eq!(gw.get("api.example.com", "/x").await.status, 200);

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stderr = gw.stderr();
    while !stderr.contains("postern::tls") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stderr = gw.stderr();
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "nothing here is the gateway's error: {errors:#?}"
    );
    assert!(
        stderr.lines().any(|l| l.contains(" INFO ")
            && l.contains("postern::tls")
            && l.contains("corrupt message")),
        "the plain-HTTP client is logged at INFO:\n{stderr}"
    );
}
