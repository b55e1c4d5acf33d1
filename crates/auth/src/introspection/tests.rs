use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A stand-in endpoint: answers each POST with `answer(body)` after `delay`,
/// counting calls and keeping the last Authorization header.
struct Endpoint {
    url: String,
    calls: Arc<AtomicUsize>,
    last_authorization: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

async fn endpoint(delay: Duration, answer: fn(&str) -> String) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let last_authorization = Arc::new(Mutex::new(String::new()));
    let (c, a) = (Arc::clone(&calls), Arc::clone(&last_authorization));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (c, a) = (Arc::clone(&c), Arc::clone(&a));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            if let Some(line) = head
                                .lines()
                                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                            {
                                *a.lock().unwrap() = line[14..].trim().to_string();
                            }
                            break body.to_string();
                        }
                    }
                };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let json = answer(&body);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Endpoint {
        url,
        calls,
        last_authorization,
        task,
    }
}

fn later() -> u64 {
    unix_now() + 600
}

/// Active for token "good", for audience "Domino"; "other-aud" is active
/// for another audience; anything else is inactive.
fn judge_by_token(body: &str) -> String {
    if body.contains("token=good&") {
        format!(
            r#"{{"active":true,"sub":"u1","aud":["Domino","account"],"iss":"http://idp","scope":"MAIL $SETUP","exp":{}}}"#,
            later()
        )
    } else if body.contains("token=other-aud&") {
        format!(
            r#"{{"active":true,"sub":"u2","aud":"Mail","iss":"http://idp","exp":{}}}"#,
            later()
        )
    } else {
        r#"{"active":false}"#.to_string()
    }
}

fn authenticator(url: &str) -> IntrospectionAuthenticator {
    IntrospectionAuthenticator::new(IntrospectionSpec {
        name: "opaque".to_string(),
        url: url.to_string(),
        client_id: "postern gw".to_string(),
        client_secret: "s3cr:t".to_string(),
        audiences: vec!["Domino".to_string()],
        issuer: Some("http://idp".to_string()),
        cache_ttl: Duration::from_secs(60),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    })
}

fn reason(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Deny(denial) => denial.reason(),
        Verdict::Allow(_) => "allowed",
    }
}

#[tokio::test]
async fn active_tokens_pass_and_are_cached() {
    let idp = endpoint(Duration::ZERO, judge_by_token).await;
    let auth = authenticator(&idp.url);
    let verdict = auth.check(Some(b"Bearer good")).await;
    let Verdict::Allow(identity) = verdict else {
        panic!("refused: {verdict:?}");
    };
    assert_eq!(identity.subject, "u1");
    let claims = identity.claims.expect("claims kept");
    assert_eq!(claims["scope"], "MAIL $SETUP");
    assert!(auth.check(Some(b"Bearer good")).await.is_allowed());
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        1,
        "the second came from the cache"
    );
    // RFC 6749 §2.3.1: form-encoded id and secret, then base64.
    let sent = idp.last_authorization.lock().unwrap().clone();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(sent.strip_prefix("Basic ").expect("basic"))
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "postern+gw:s3cr%3At");
}

#[tokio::test]
async fn inactive_and_wrong_audience_are_refused() {
    let idp = endpoint(Duration::ZERO, judge_by_token).await;
    let auth = authenticator(&idp.url);
    assert_eq!(
        reason(&auth.check(Some(b"Bearer nope")).await),
        "token inactive"
    );
    assert_eq!(
        reason(&auth.check(Some(b"Bearer nope")).await),
        "token inactive"
    );
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        1,
        "refusals are cached briefly"
    );
    assert_eq!(
        reason(&auth.check(Some(b"Bearer other-aud")).await),
        "wrong audience"
    );
    assert_eq!(reason(&auth.check(None).await), "no token");
    assert_eq!(
        reason(&auth.check(Some(b"Basic dTpw")).await),
        "Authorization scheme is not Bearer"
    );
    assert_eq!(
        reason(&auth.check(Some(b"Bearer a\"b")).await),
        "malformed token"
    );
}

#[tokio::test]
async fn concurrent_checks_of_one_token_share_one_call() {
    let idp = endpoint(Duration::from_millis(300), judge_by_token).await;
    let auth = Arc::new(authenticator(&idp.url));
    let checks: Vec<_> = (0..100)
        .map(|_| {
            let auth = Arc::clone(&auth);
            tokio::spawn(async move { auth.check(Some(b"Bearer good")).await.is_allowed() })
        })
        .collect();
    for check in checks {
        assert!(check.await.unwrap());
    }
    assert_eq!(idp.calls.load(Ordering::SeqCst), 1);
    assert!(
        auth.in_flight.lock().unwrap().is_empty(),
        "nothing left in flight"
    );
}

#[tokio::test]
async fn an_idp_that_is_down_fails_closed_and_the_cache_keeps_serving() {
    let idp = endpoint(Duration::ZERO, judge_by_token).await;
    let auth = authenticator(&idp.url);
    assert!(auth.check(Some(b"Bearer good")).await.is_allowed());
    idp.task.abort();
    let _ = idp.task.await;
    assert!(
        auth.check(Some(b"Bearer good")).await.is_allowed(),
        "cached"
    );
    let verdict = auth.check(Some(b"Bearer other")).await;
    assert_eq!(reason(&verdict), "token could not be checked");
    assert_eq!(auth.stats.failures.load(Ordering::Relaxed), 1);
}

#[test]
fn answers_are_judged_like_jwts() {
    let auth = authenticator("http://127.0.0.1:9/");
    let judge = |json: serde_json::Value| {
        auth.judge(json.as_object().unwrap().clone())
            .map(|(_, ttl)| ttl)
    };
    let now = unix_now();
    assert_eq!(
        judge(
            serde_json::json!({"active": true, "aud": "Domino", "iss": "http://idp", "exp": now + 10})
        ),
        Ok(Duration::from_secs(10)),
        "kept until exp when that is sooner than cache_ttl"
    );
    assert_eq!(
        judge(serde_json::json!({"active": true, "aud": "Domino", "iss": "http://idp"})),
        Ok(Duration::from_secs(60))
    );
    assert_eq!(
        judge(serde_json::json!({"active": "true", "aud": "Domino", "iss": "http://idp"})),
        Err("token inactive"),
        "only the JSON true is active"
    );
    assert_eq!(
        judge(
            serde_json::json!({"active": true, "aud": "Domino", "iss": "http://idp", "exp": now - 1})
        ),
        Err("token expired")
    );
    assert_eq!(
        judge(serde_json::json!({"active": true, "aud": "Domino", "iss": "http://evil"})),
        Err("wrong issuer")
    );
    assert_eq!(
        judge(serde_json::json!({"active": true, "iss": "http://idp"})),
        Err("wrong audience"),
        "no aud at all"
    );
}

/// The per-request cost of a cached introspection (hash, cache look-up,
/// verdict): `cargo test -p postern-auth --release -- --ignored --nocapture cached_introspection_cost`.
#[tokio::test]
#[ignore = "a timing, not a check"]
async fn cached_introspection_cost() {
    let idp = endpoint(Duration::ZERO, judge_by_token).await;
    let auth = authenticator(&idp.url);
    assert!(auth.check(Some(b"Bearer good")).await.is_allowed());
    let rounds = 1_000_000;
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(auth
            .check(std::hint::black_box(Some(b"Bearer good".as_slice())))
            .await
            .is_allowed());
    }
    let elapsed = start.elapsed();
    assert_eq!(idp.calls.load(Ordering::SeqCst), 1);
    println!(
        "cached introspection: {rounds} checks in {elapsed:?}, {:.0} ns each",
        elapsed.as_nanos() as f64 / rounds as f64
    );
}
