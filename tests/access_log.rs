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
