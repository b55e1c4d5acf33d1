//! Unit tests of the JWT authenticator: static keys, and a key set fetched
//! from a JWKS endpoint on loopback.

use super::*;
use crate::keys::secret_key;
use jsonwebtoken::{encode, EncodingKey, Header};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn authenticator(cookie: Option<&str>) -> JwtAuthenticator {
    JwtAuthenticator::new(JwtSpec {
        name: "idp".into(),
        keys: KeySource::Static(Arc::new(secret_key(SECRET, &[Algorithm::HS256]).unwrap())),
        issuer: Some("https://idp.example.com/realms/iams".into()),
        audiences: vec!["Domino".into()],
        algorithms: vec![Algorithm::HS256],
        leeway: Duration::from_secs(0),
        required_claims: vec!["sub".into()],
        cookie: cookie.map(str::to_string),
        claims_to_headers: vec![("sub".into(), "x-auth-subject".into())],
    })
}

fn token(claims: Value, alg: Algorithm, secret: &[u8]) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn good_claims() -> Value {
    serde_json::json!({
        "iss": "https://idp.example.com/realms/iams",
        "aud": ["Domino", "other"],
        "sub": "alice",
        "exp": unix_now() + 600,
    })
}

fn bearer(t: &str) -> Vec<u8> {
    format!("Bearer {t}").into_bytes()
}

fn reason(v: Verdict) -> &'static str {
    match v {
        Verdict::Deny(Denial::Unauthorized { reason, challenge }) => {
            assert!(challenge.starts_with("Bearer realm=\"idp\", error=\"invalid_token\""));
            reason
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_token_passes_and_maps_claims() {
    let auth = authenticator(None);
    let t = token(good_claims(), Algorithm::HS256, SECRET);
    match auth.check(Some(&bearer(&t)), &[]).await {
        Verdict::Allow(identity) => {
            assert_eq!(identity.subject, "alice");
            assert_eq!(
                identity.headers,
                vec![("x-auth-subject".into(), "alice".into())]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(auth.cache.len(), 1);
}

#[tokio::test]
async fn each_claim_problem_is_refused() {
    let auth = authenticator(None);
    let now = unix_now();
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut c = good_claims();
    c["exp"] = (now - 10).into();
    cases.push((c, "token expired"));
    let mut c = good_claims();
    c["nbf"] = (now + 600).into();
    cases.push((c, "token not valid yet"));
    let mut c = good_claims();
    c["iss"] = "https://evil.example.com".into();
    cases.push((c, "wrong issuer"));
    let mut c = good_claims();
    c["aud"] = "account".into();
    cases.push((c, "wrong audience"));
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("exp");
    cases.push((c, "a required claim is missing"));
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("sub");
    cases.push((c, "a required claim is missing"));
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("iss");
    cases.push((c, "a required claim is missing"));
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("aud");
    cases.push((c, "a required claim is missing"));
    let mut c = good_claims();
    c["exp"] = "tomorrow".into();
    cases.push((c, "a required claim is missing"));
    let mut c = good_claims();
    c["iss"] = serde_json::json!(["https://idp.example.com/realms/iams"]);
    cases.push((c, "wrong issuer"));
    for (claims, expected) in cases {
        let t = token(claims.clone(), Algorithm::HS256, SECRET);
        assert_eq!(
            reason(auth.check(Some(&bearer(&t)), &[]).await),
            expected,
            "{claims}"
        );
    }
    assert_eq!(auth.cache.len(), 0, "nothing refused is cached");
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let auth = authenticator(None);
    let wrong_key = token(
        good_claims(),
        Algorithm::HS256,
        b"another secret of 32 bytes......",
    );
    assert_eq!(
        reason(auth.check(Some(&bearer(&wrong_key)), &[]).await),
        "bad signature"
    );
    let hs512 = token(good_claims(), Algorithm::HS512, SECRET);
    assert_eq!(
        reason(auth.check(Some(&bearer(&hs512)), &[]).await),
        "algorithm not allowed"
    );
    // alg none, hand-made.
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(good_claims().to_string().as_bytes())
    );
    assert_eq!(
        reason(auth.check(Some(&bearer(&none)), &[]).await),
        // jsonwebtoken has no "none" algorithm: the header does not parse.
        "malformed token"
    );
    // Stripped signature.
    let good = token(good_claims(), Algorithm::HS256, SECRET);
    let stripped = good.rsplit_once('.').unwrap().0.to_string() + ".";
    assert!(!auth.check(Some(&bearer(&stripped)), &[]).await.is_allowed());
    // Tampered payload.
    let parts: Vec<&str> = good.split('.').collect();
    let mut evil = good_claims();
    evil["sub"] = "admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(evil.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(
        reason(auth.check(Some(&bearer(&tampered)), &[]).await),
        "bad signature"
    );
    for bad in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Bearer a.b",
        b"Bearer a b.c.d",
        b"Basic abc",
        b"\xff",
    ] {
        assert!(!auth.check(Some(bad), &[]).await.is_allowed(), "{bad:?}");
    }
    assert_eq!(reason(auth.check(None, &[]).await), "no token");
}

#[tokio::test]
async fn cookie_is_read_only_when_configured() {
    let t = token(good_claims(), Algorithm::HS256, SECRET);
    let cookie = format!("theme=dark; KeepToken={t}; x=y").into_bytes();
    let with = authenticator(Some("KeepToken"));
    assert!(with.check(None, &[&cookie]).await.is_allowed());
    let without = authenticator(None);
    assert!(!without.check(None, &[&cookie]).await.is_allowed());
}

#[test]
fn claim_values_that_cannot_be_headers_are_dropped() {
    assert_eq!(header_value(&Value::from("alice")), Some("alice".into()));
    assert_eq!(header_value(&Value::from(42)), Some("42".into()));
    assert_eq!(header_value(&Value::from("a\r\nx-evil: 1")), None);
    assert_eq!(header_value(&serde_json::json!(["a"])), None);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------
// A key set fetched from a JWKS endpoint
// ---------------------------------------------------------------------------

use crate::jwks::Endpoint;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A JWKS endpoint on loopback: serves `body` (changeable), counts fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let server = JwksServer {
            url,
            body: Arc::new(Mutex::new(body.to_string())),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let (body, fetches) = (Arc::clone(&server.body), Arc::clone(&server.fetches));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (body, fetches) = (Arc::clone(&body), Arc::clone(&fetches));
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = body.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        server
    }

    fn serve(&self, body: Value) {
        *self.body.lock().unwrap() = body.to_string();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A fresh EC P-256 key: its public JWK (`use: sig`, no `alg`) and a signer.
struct EcKey {
    kid: String,
    jwk: Value,
    signer: EncodingKey,
}

impl EcKey {
    fn new(kid: &str) -> EcKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // Uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        EcKey {
            kid: kid.to_string(),
            jwk: serde_json::json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": base64_url(&point[1..33]), "y": base64_url(&point[33..65]),
            }),
            signer: EncodingKey::from_ec_der(pkcs8.as_ref()),
        }
    }

    fn sign(&self) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = serde_json::json!({ "sub": self.kid, "exp": unix_now() + 600 });
        encode(&header, &claims, &self.signer).unwrap()
    }
}

fn jwks(jwks: &[&Value]) -> Value {
    serde_json::json!({ "keys": jwks })
}

fn remote_authenticator(url: &str, refresh_interval: Duration) -> JwtAuthenticator {
    let client = RemoteKeys::client_builder().build().unwrap();
    JwtAuthenticator::new(JwtSpec {
        name: "idp".into(),
        keys: KeySource::Remote(Arc::new(RemoteKeys::new(
            "idp",
            Endpoint::Jwks(url.to_string()),
            client,
            refresh_interval,
            Duration::from_secs(30),
        ))),
        issuer: None,
        audiences: Vec::new(),
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway: Duration::from_secs(0),
        required_claims: Vec::new(),
        cookie: None,
        claims_to_headers: Vec::new(),
    })
}

#[tokio::test]
async fn a_withdrawn_key_takes_its_cached_tokens_with_it() {
    let (kept, withdrawn) = (EcKey::new("kept"), EcKey::new("withdrawn"));
    let server = JwksServer::start(jwks(&[&kept.jwk, &withdrawn.jwk])).await;
    let auth = remote_authenticator(&server.url, Duration::from_millis(200));
    let (kept_token, withdrawn_token) = (kept.sign(), withdrawn.sign());
    for token in [&kept_token, &withdrawn_token] {
        assert!(auth.check(Some(&bearer(token)), &[]).await.is_allowed());
    }
    assert_eq!(auth.cache.len(), 2);

    server.serve(jwks(&[&kept.jwk]));
    let deadline = Instant::now() + Duration::from_secs(5);
    let refusal = loop {
        // Only cache hits from here on: they alone must bring the refresh.
        match auth.check(Some(&bearer(&withdrawn_token)), &[]).await {
            Verdict::Allow(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    assert_eq!(reason(refusal), "unknown key id");
    assert!(server.fetches() >= 2, "refused without a refresh");
    assert!(
        auth.check(Some(&bearer(&kept_token)), &[])
            .await
            .is_allowed(),
        "a token of a key still published stays good"
    );
    assert_eq!(auth.cache.len(), 1, "the withdrawn token left the cache");
}

#[tokio::test]
async fn a_kid_published_for_something_else_costs_no_refetch() {
    let ec = EcKey::new("ec");
    let mut rs256_named = EcKey::new("ec-named-rs256").jwk;
    rs256_named["alg"] = "RS256".into();
    let mut encryption = EcKey::new("enc").jwk;
    encryption["use"] = "enc".into();
    let mut sign_only = EcKey::new("sign-only").jwk;
    sign_only.as_object_mut().unwrap().remove("use");
    sign_only["key_ops"] = serde_json::json!(["sign"]);
    let server = JwksServer::start(jwks(&[&ec.jwk, &rs256_named, &encryption, &sign_only])).await;
    let auth = remote_authenticator(&server.url, Duration::from_secs(3600));
    assert!(auth
        .check(Some(&bearer(&ec.sign())), &[])
        .await
        .is_allowed());
    assert_eq!(server.fetches(), 1);

    let claims = serde_json::json!({ "sub": "x", "exp": unix_now() + 600 });
    let forged = |alg: &str, kid: &str| {
        format!(
            "{}.{}.{}",
            base64_url(
                serde_json::json!({ "alg": alg, "kid": kid })
                    .to_string()
                    .as_bytes()
            ),
            base64_url(claims.to_string().as_bytes()),
            base64_url(b"not a signature"),
        )
    };
    for (alg, kid, expected) in [
        ("RS256", "ec", "algorithm does not fit the key"),
        ("RS256", "ec-named-rs256", "algorithm does not fit the key"),
        ("ES256", "ec-named-rs256", "algorithm does not fit the key"),
        ("ES256", "enc", "key is not for verifying"),
        ("ES256", "sign-only", "key is not for verifying"),
    ] {
        let verdict = auth.check(Some(&bearer(&forged(alg, kid))), &[]).await;
        assert_eq!(reason(verdict), expected, "{alg} token with kid {kid}");
        assert_eq!(server.fetches(), 1, "{alg} token with kid {kid} refetched");
    }
    // Control: a kid the set does not publish is worth one refetch.
    let verdict = auth
        .check(Some(&bearer(&forged("ES256", "rotated"))), &[])
        .await;
    assert_eq!(reason(verdict), "unknown key id");
    assert_eq!(server.fetches(), 2);
}
