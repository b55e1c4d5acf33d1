//! JWT authentication end to end: the real `postern` binary, real TLS, and a
//! real identity provider serving OpenID discovery and a JWK Set over HTTP
//! (`support::idp`). Tokens are signed with the fixture keys in
//! `tests/fixtures/` or forged by hand.
//!
//! Every refusal is checked three ways: 401 with the gateway's JSON error,
//! a `WWW-Authenticate: Bearer ...` challenge, and an upstream that received
//! nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use jsonwebtoken::Algorithm;
use postern_echo::EchoServer;
use serde_json::{json, Value};

use crate::support::idp::{b64url, forge, jwk_set, now, Idp, TestKey};
use crate::support::{
    assert_gateway_error, echo, request, upstream, upstream_header, Gateway, Response,
};

const HOST: &str = "api.example.com";
const AUDIENCE: &str = "Domino";

/// Key A: published by the IdP as `key-a`.
fn key_a() -> TestKey {
    TestKey::rsa("rsa1", "key-a")
}

/// Key B: what the IdP rotates to, as `key-b`.
fn key_b() -> TestKey {
    TestKey::rsa("rsa2", "key-b")
}

/// An RSA key the IdP never publishes (an attacker's).
fn key_c() -> TestKey {
    TestKey::rsa("rsa3", "key-c")
}

/// An EC P-256 key published as `key-ec`.
fn key_ec() -> TestKey {
    TestKey::ec("ec1", "key-ec")
}

/// A token id no other token in this process has, so that no two tokens
/// are equal and a cache of verified tokens never answers for a new one.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Claims that pass every check of `[auth.idp]` for this issuer.
fn good_claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "jti": unique(),
    })
}

/// `claims` with these fields replaced (or added); a `null` removes the field.
fn with(mut claims: Value, changes: Value) -> Value {
    let object = claims.as_object_mut().expect("claims are an object");
    for (key, value) in changes.as_object().expect("changes are an object") {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }
    claims
}

/// A route of the test gateway: where to send requests, its name and the
/// name of its authenticator (the Bearer realm).
#[derive(Clone, Copy)]
struct Route {
    target: &'static str,
    name: &'static str,
    realm: &'static str,
}

const API: Route = Route {
    target: "/api/x",
    name: "api",
    realm: "idp",
};

/// What a refusal's `WWW-Authenticate` must say beyond `Bearer realm="..."`.
#[derive(Clone, Copy, PartialEq)]
enum Challenge {
    /// No credentials were sent: a bare challenge is enough.
    Missing,
    /// A token was sent and refused: `error="invalid_token"`.
    Invalid,
}

/// The Bearer challenge, JSON error and request id of a JWT refusal.
fn assert_bearer_refusal(response: &Response, route: Route, challenge: Challenge, case: &str) {
    assert_eq!(
        response.status,
        401,
        "{case}: expected 401, got {} {}\nheaders: {:?}",
        response.status,
        response.text(),
        response.headers
    );
    assert_gateway_error(response, 401, "unauthorized", Some(route.name));
    let header = response.header("www-authenticate").unwrap_or_else(|| {
        panic!(
            "{case}: 401 without WWW-Authenticate: {:?}",
            response.headers
        )
    });
    assert!(
        header.starts_with("Bearer "),
        "{case}: challenge is not Bearer: {header:?}"
    );
    assert!(
        header.contains(&format!("realm=\"{}\"", route.realm)),
        "{case}: challenge does not name realm {:?}: {header:?}",
        route.realm
    );
    if challenge == Challenge::Invalid {
        assert!(
            header.contains("error=\"invalid_token\""),
            "{case}: challenge lacks error=\"invalid_token\": {header:?}"
        );
    }
    // No key material in what the client sees.
    let modulus = key_a().jwk()["n"].as_str().expect("n").to_string();
    for (what, text) in [("challenge", header.to_string()), ("body", response.text())] {
        assert!(
            !text.contains("BEGIN") && !text.contains(&modulus[..24]),
            "{case}: the {what} shows key material: {text:?}"
        );
    }
}

/// An IdP, an echo upstream and a gateway whose `[auth.idp]` reads the
/// IdP's JWKS, protecting route `api` (`api.example.com/api`).
struct JwtEnv {
    idp: Idp,
    data: EchoServer,
    gw: Gateway,
}

impl JwtEnv {
    /// `auth_extra` is added to `[auth.idp]`, `more` after the `api` route
    /// (more authenticators and routes); in both, `{JWKS}` and `{ISSUER}`
    /// stand for the IdP's JWKS URL and issuer.
    async fn start(jwks: Value, auth_extra: &str, more: &str) -> JwtEnv {
        let idp = Idp::start(jwks).await;
        let data = echo("data").await;
        let fill = |text: &str| {
            text.replace("{JWKS}", &idp.jwks_url())
                .replace("{ISSUER}", &idp.issuer())
        };
        let body = format!(
            r#"{upstream}
[auth.idp]
type = "jwt"
jwks_url = "{jwks}"
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
{auth_extra}

[[routes]]
name = "api"
host = "{HOST}"
path_prefix = "/api"
upstream = "data"
auth = "idp"
{more}
"#,
            upstream = upstream("data", data.local_addr(), ""),
            jwks = idp.jwks_url(),
            issuer = idp.issuer(),
            auth_extra = fill(auth_extra),
            more = fill(more),
        );
        let gw = Gateway::start(body).await;
        JwtEnv { idp, data, gw }
    }

    fn claims(&self) -> Value {
        good_claims(&self.idp.issuer())
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.gw
            .send(HOST, request("GET", HOST, target, headers, b""))
            .await
    }

    /// Sends `Authorization: Bearer TOKEN` to `route`.
    async fn bearer(&self, route: Route, token: &str) -> Response {
        let value = format!("Bearer {token}");
        self.get(route.target, &[("Authorization", &value)]).await
    }

    /// The request must be forwarded: returns what the upstream saw.
    async fn accepted(&self, case: &str, target: &str, headers: &[(&str, &str)]) -> Value {
        let before = self.data.requests_seen();
        let response = self.get(target, headers).await;
        assert_eq!(
            response.status,
            200,
            "{case}: expected the upstream's 200, got {} {}\nheaders: {:?}",
            response.status,
            response.text(),
            response.headers
        );
        let echo = response.echo();
        assert_eq!(
            self.data.requests_seen(),
            before + 1,
            "{case}: upstream request count"
        );
        echo
    }

    async fn accepted_bearer(&self, case: &str, route: Route, token: &str) -> Value {
        let value = format!("Bearer {token}");
        self.accepted(case, route.target, &[("Authorization", &value)])
            .await
    }

    /// The request must be refused with 401 and reach nothing.
    async fn refused(
        &self,
        case: &str,
        route: Route,
        headers: &[(&str, &str)],
        challenge: Challenge,
    ) {
        let before = self.data.requests_seen();
        let response = self.get(route.target, headers).await;
        assert_bearer_refusal(&response, route, challenge, case);
        assert_eq!(
            self.data.requests_seen(),
            before,
            "{case}: a refused request reached the upstream"
        );
    }

    async fn refused_bearer(&self, case: &str, route: Route, token: &str) {
        let value = format!("Bearer {token}");
        self.refused(
            case,
            route,
            &[("Authorization", &value)],
            Challenge::Invalid,
        )
        .await
    }
}

/// The standard key set: key A and the EC key.
fn standard_jwks() -> Value {
    jwk_set(&[&key_a(), &key_ec()])
}

// ---------------------------------------------------------------------------
// Accepted tokens
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_is_forwarded_with_authorization_unchanged() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let token = key_a().sign(&env.claims());

    let echo = env.accepted_bearer("valid RS256 token", API, &token).await;
    assert_eq!(echo["path"], "/api/x");
    assert_eq!(
        upstream_header(&echo, "authorization"),
        [format!("Bearer {token}")],
        "the Authorization header reaches the upstream unchanged"
    );

    // The same token again (a cache of verified tokens may answer).
    let echo = env
        .accepted_bearer("the same token again", API, &token)
        .await;
    assert_eq!(
        upstream_header(&echo, "authorization"),
        [format!("Bearer {token}")]
    );

    // `aud` as an array that contains the audience.
    let claims = with(env.claims(), json!({ "aud": ["other", AUDIENCE] }));
    env.accepted_bearer("aud array containing Domino", API, &key_a().sign(&claims))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_the_configured_cookie_is_accepted() {
    let env = JwtEnv::start(standard_jwks(), r#"cookie = "KeepToken""#, "").await;
    let token = key_a().sign(&env.claims());

    let cookie = format!("KeepToken={token}");
    let echo = env
        .accepted("token in KeepToken", API.target, &[("Cookie", &cookie)])
        .await;
    assert_eq!(echo["path"], "/api/x");

    let cookie = format!(
        "theme=dark; KeepToken={}; lang=en",
        key_a().sign(&env.claims())
    );
    env.accepted(
        "KeepToken among other cookies",
        API.target,
        &[("Cookie", &cookie)],
    )
    .await;

    // A bad token in the cookie is refused like one in the header.
    let expired = key_a().sign(&with(env.claims(), json!({ "exp": now() - 3600 })));
    let cookie = format!("KeepToken={expired}");
    env.refused(
        "expired token in KeepToken",
        API,
        &[("Cookie", &cookie)],
        Challenge::Invalid,
    )
    .await;
    let cookie = format!("KeepToken={}", key_c().sign(&env.claims()));
    env.refused(
        "token in KeepToken signed by an unknown key",
        API,
        &[("Cookie", &cookie)],
        Challenge::Invalid,
    )
    .await;

    // A valid token in a cookie of another name is no token at all.
    let cookie = format!("OtherToken={token}");
    env.refused(
        "token in a cookie that is not KeepToken",
        API,
        &[("Cookie", &cookie)],
        Challenge::Missing,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_to_headers_sets_the_subject_and_replaces_client_copies() {
    let env = JwtEnv::start(
        standard_jwks(),
        r#"claims_to_headers = { sub = "X-Auth-Subject" }"#,
        "",
    )
    .await;

    let token = key_a().sign(&env.claims());
    let auth = format!("Bearer {token}");
    let echo = env
        .accepted("valid token", API.target, &[("Authorization", &auth)])
        .await;
    assert_eq!(upstream_header(&echo, "x-auth-subject"), ["alice"]);

    let token = key_a().sign(&with(env.claims(), json!({ "sub": "bob" })));
    let auth = format!("Bearer {token}");
    let echo = env
        .accepted(
            "valid token with client-sent X-Auth-Subject",
            API.target,
            &[
                ("X-Auth-Subject", "admin"),
                ("Authorization", &auth),
                ("x-auth-subject", "root"),
            ],
        )
        .await;
    assert_eq!(
        upstream_header(&echo, "x-auth-subject"),
        ["bob"],
        "client-sent X-Auth-Subject must be replaced by the token's sub"
    );

    // A refused request with a client-sent subject reaches nothing.
    env.refused(
        "no token but a client-sent X-Auth-Subject",
        API,
        &[("X-Auth-Subject", "admin")],
        Challenge::Missing,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pem_public_key_verifies_tokens() {
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{upstream}
[auth.pem]
type = "jwt"
keys = ['{pem}']
audiences = ["{AUDIENCE}"]

[[routes]]
name = "pem"
host = "{HOST}"
path_prefix = "/pem"
upstream = "data"
auth = "pem"
"#,
        upstream = upstream("data", data.local_addr(), ""),
        pem = key_a().public_pem.display(),
    ))
    .await;
    let route = Route {
        target: "/pem/x",
        name: "pem",
        realm: "pem",
    };
    let claims = || good_claims("https://idp.example.com");
    let send = |token: String| {
        let auth = format!("Bearer {token}");
        let gw = &gw;
        async move {
            gw.send(
                HOST,
                request("GET", HOST, route.target, &[("Authorization", &auth)], b""),
            )
            .await
        }
    };

    let token = key_a().sign_as(Algorithm::RS256, None, &claims());
    let response = send(token.clone()).await;
    let echo = response.echo();
    assert_eq!(
        upstream_header(&echo, "authorization"),
        [format!("Bearer {token}")]
    );
    assert_eq!(data.requests_seen(), 1);

    // Keycloak puts a kid in every token; a PEM key has none and must
    // still verify it.
    let with_kid = key_a().sign_as(Algorithm::RS256, Some("keycloak-kid"), &claims());
    assert_eq!(send(with_kid).await.status, 200, "token with a kid");
    assert_eq!(data.requests_seen(), 2);

    let refusals = [
        (
            "signed by a key that is not configured",
            key_b().sign_as(Algorithm::RS256, None, &claims()),
        ),
        (
            "HS256 with the configured PEM file as the HMAC secret",
            hs256_with_secret(&key_a().public_pem_bytes(), None, &claims()),
        ),
        (
            "expired",
            key_a().sign_as(
                Algorithm::RS256,
                None,
                &with(claims(), json!({ "exp": now() - 3600 })),
            ),
        ),
    ];
    for (case, token) in refusals {
        let response = send(token).await;
        assert_bearer_refusal(&response, route, Challenge::Invalid, case);
        assert_eq!(data.requests_seen(), 2, "{case}: reached the upstream");
    }
}

/// A gateway whose route `/file` is verified against `jwks` written to a
/// JWK Set file (`keys = [...]`), and the echo backend behind it.
async fn jwk_set_file_gateway(jwks: &Value) -> (tempfile::TempDir, EchoServer, Gateway) {
    let dir = tempfile::tempdir().expect("temp dir");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).expect("write jwks.json");
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{upstream}
[auth.file]
type = "jwt"
keys = ['{jwks}']
audiences = ["{AUDIENCE}"]

[[routes]]
name = "file"
host = "{HOST}"
path_prefix = "/file"
upstream = "data"
auth = "file"
"#,
        upstream = upstream("data", data.local_addr(), ""),
        jwks = jwks_path.display(),
    ))
    .await;
    (dir, data, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_jwk_set_file_verifies_tokens() {
    let (_dir, data, gw) = jwk_set_file_gateway(&jwk_set(&[&key_b()])).await;
    let route = Route {
        target: "/file/x",
        name: "file",
        realm: "file",
    };
    let claims = || good_claims("https://idp.example.com");
    let send = |token: String| {
        let auth = format!("Bearer {token}");
        let gw = &gw;
        async move {
            gw.send(
                HOST,
                request("GET", HOST, route.target, &[("Authorization", &auth)], b""),
            )
            .await
        }
    };

    send(key_b().sign(&claims())).await.echo();
    assert_eq!(data.requests_seen(), 1);

    for (case, token) in [
        ("key A, not in the file", key_a().sign(&claims())),
        (
            "key A claiming key B's kid",
            key_a().sign_as(Algorithm::RS256, Some("key-b"), &claims()),
        ),
    ] {
        let response = send(token).await;
        assert_bearer_refusal(&response, route, Challenge::Invalid, case);
        assert_eq!(data.requests_seen(), 1, "{case}: reached the upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_discovered_from_the_issuer() {
    let idp = Idp::start(jwk_set(&[&key_a()])).await;
    let data = echo("data").await;
    let gw = Gateway::start(format!(
        r#"{upstream}
[auth.disc]
type = "jwt"
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]

[[routes]]
name = "disc"
host = "{HOST}"
path_prefix = "/disc"
upstream = "data"
auth = "disc"
"#,
        upstream = upstream("data", data.local_addr(), ""),
        issuer = idp.issuer(),
    ))
    .await;
    let route = Route {
        target: "/disc/x",
        name: "disc",
        realm: "disc",
    };
    let send = |token: String| {
        let auth = format!("Bearer {token}");
        let gw = &gw;
        async move {
            gw.send(
                HOST,
                request("GET", HOST, route.target, &[("Authorization", &auth)], b""),
            )
            .await
        }
    };

    let echo = send(key_a().sign(&good_claims(&idp.issuer()))).await.echo();
    assert_eq!(echo["path"], "/disc/x");
    assert_eq!(data.requests_seen(), 1);
    assert!(
        idp.discovery_fetches() >= 1,
        "the gateway never read /.well-known/openid-configuration"
    );
    assert!(
        idp.jwks_fetches() >= 1,
        "the gateway never read the jwks_uri"
    );

    for (case, token) in [
        (
            "wrong iss",
            key_a().sign(&with(
                good_claims(&idp.issuer()),
                json!({ "iss": "http://evil.example" }),
            )),
        ),
        ("unpublished key", key_c().sign(&good_claims(&idp.issuer()))),
    ] {
        let response = send(token).await;
        assert_bearer_refusal(&response, route, Challenge::Invalid, case);
        assert_eq!(data.requests_seen(), 1, "{case}: reached the upstream");
    }
}

// ---------------------------------------------------------------------------
// Refused tokens
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    env.refused("no Authorization header", API, &[], Challenge::Missing)
        .await;
    env.refused(
        "Authorization: Bearer with nothing after it",
        API,
        &[("Authorization", "Bearer")],
        Challenge::Missing,
    )
    .await;
    env.refused(
        "Authorization: Basic on a JWT route",
        API,
        &[("Authorization", "Basic YWRtaW46c2VjcmV0")],
        Challenge::Missing,
    )
    .await;
    env.refused(
        "a cookie but no cookie configured",
        API,
        &[(
            "Cookie",
            &format!("KeepToken={}", key_a().sign(&env.claims())),
        )],
        Challenge::Missing,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_token_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let good = key_a().sign(&env.claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        ("one word", "not-a-jwt".to_string()),
        ("three junk parts", "a.b.c".to_string()),
        ("only dots", "..".to_string()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("four parts", format!("{good}.{}", parts[2])),
        (
            "header not base64url",
            format!("%%%.{}.{}", parts[1], parts[2]),
        ),
        (
            "header not JSON",
            format!("{}.{}.{}", b64url("not json"), parts[1], parts[2]),
        ),
        (
            "payload not JSON",
            format!("{}.{}.{}", parts[0], b64url("{\"sub\":"), parts[2]),
        ),
        (
            "payload a JSON string",
            format!("{}.{}.{}", parts[0], b64url("\"alice\""), parts[2]),
        ),
        (
            "header without alg",
            forge(
                &json!({ "typ": "JWT", "kid": "key-a" }),
                &env.claims(),
                parts[2],
            ),
        ),
    ];
    for (case, token) in cases {
        env.refused_bearer(case, API, &token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_token_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let good = key_a().sign(&claims);
    let signature = good.rsplit('.').next().expect("signature").to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let unsigned = forge(&json!({ "alg": alg, "typ": "JWT" }), &claims, "");
        env.refused_bearer(&format!("alg {alg:?}, empty signature"), API, &unsigned)
            .await;
        let with_kid = forge(
            &json!({ "alg": alg, "typ": "JWT", "kid": "key-a" }),
            &claims,
            "",
        );
        env.refused_bearer(&format!("alg {alg:?} with a known kid"), API, &with_kid)
            .await;
        let with_signature = forge(
            &json!({ "alg": alg, "typ": "JWT", "kid": "key-a" }),
            &claims,
            &signature,
        );
        env.refused_bearer(
            &format!("alg {alg:?} carrying a real signature"),
            API,
            &with_signature,
        )
        .await;
    }
}

/// An HS256 token whose HMAC key is `secret` (any bytes).
fn hs256_with_secret(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign HS256")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let pem = key_a().public_pem_bytes();
    let pem_text = String::from_utf8(pem.clone()).expect("PEM is text");
    let jwk = key_a().jwk();
    let secrets: [(&str, Vec<u8>); 4] = [
        ("the public key PEM file", pem.clone()),
        (
            "the public key PEM without the final newline",
            pem_text.trim_end().as_bytes().to_vec(),
        ),
        (
            "the JWK's n as text",
            jwk["n"].as_str().expect("n").as_bytes().to_vec(),
        ),
        ("the JWK as JSON", jwk.to_string().into_bytes()),
    ];
    for (what, secret) in &secrets {
        for kid in [Some("key-a"), None] {
            let token = hs256_with_secret(secret, kid, &claims);
            env.refused_bearer(
                &format!("HS256 keyed with {what}, kid {kid:?}"),
                API,
                &token,
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    env.refused_bearer(
        "unpublished key under its own kid",
        API,
        &key_c().sign(&claims),
    )
    .await;
    env.refused_bearer(
        "known key under an unknown kid",
        API,
        &key_a().sign_as(Algorithm::RS256, Some("no-such-kid"), &claims),
    )
    .await;
    env.refused_bearer(
        "unpublished key claiming key A's kid (bad signature)",
        API,
        &key_c().sign_as(Algorithm::RS256, Some("key-a"), &claims),
    )
    .await;
    // The route still works for the real key.
    env.accepted_bearer("control: key A", API, &key_a().sign(&claims))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let good = key_a().sign(&claims);
    let parts: Vec<&str> = good.split('.').collect();

    let tampered = [
        (
            "sub changed to admin",
            with(claims.clone(), json!({ "sub": "admin" })),
        ),
        (
            "exp extended",
            with(claims.clone(), json!({ "exp": now() + 86_400 * 365 })),
        ),
        (
            "extra claim",
            with(claims.clone(), json!({ "roles": ["admin"] })),
        ),
    ];
    for (case, changed) in tampered {
        let token = format!("{}.{}.{}", parts[0], b64url(changed.to_string()), parts[2]);
        env.refused_bearer(case, API, &token).await;
    }
    // The very same claims, re-encoded differently (key order, spacing),
    // with the original signature: the signature covers the bytes.
    let reencoded = format!(
        "{}.{}.{}",
        parts[0],
        b64url(serde_json::to_string_pretty(&claims).expect("JSON")),
        parts[2]
    );
    env.refused_bearer("same claims, different bytes", API, &reencoded)
        .await;
    // A flipped signature bit.
    let mut signature = base64_decode(parts[2]);
    signature[10] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64url(&signature));
    env.refused_bearer("one signature bit flipped", API, &flipped)
        .await;

    env.accepted_bearer("control: the untampered token", API, &good)
        .await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripped_signature_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let good = key_a().sign(&env.claims());
    let (signed, _) = good.rsplit_once('.').expect("three parts");
    env.refused_bearer("empty signature", API, &format!("{signed}."))
        .await;
    env.refused_bearer("no signature part", API, signed).await;
    env.refused_bearer(
        "signature of zero bytes",
        API,
        &format!("{signed}.{}", b64url([0u8; 256])),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refused_and_exp_is_required() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let expired = key_a().sign(&with(claims.clone(), json!({ "exp": now() - 3600 })));
    env.refused_bearer("expired an hour ago", API, &expired)
        .await;
    let beyond_leeway = key_a().sign(&with(claims.clone(), json!({ "exp": now() - 120 })));
    env.refused_bearer("expired 120 s ago, default leeway 60s", API, &beyond_leeway)
        .await;
    let no_exp = key_a().sign(&with(claims.clone(), json!({ "exp": null })));
    env.refused_bearer("no exp", API, &no_exp).await;
    let string_exp = key_a().sign(&with(
        claims.clone(),
        json!({ "exp": (now() + 600).to_string() }),
    ));
    env.refused_bearer("exp as a string", API, &string_exp)
        .await;

    // Expired 10 s ago: inside the default 60 s leeway.
    let just_expired = key_a().sign(&with(claims.clone(), json!({ "exp": now() - 10 })));
    env.accepted_bearer("expired 10 s ago, default leeway 60s", API, &just_expired)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leeway_zero_refuses_a_token_expired_seconds_ago() {
    let env = JwtEnv::start(standard_jwks(), r#"leeway = "0s""#, "").await;
    let claims = env.claims();
    let just_expired = key_a().sign(&with(claims.clone(), json!({ "exp": now() - 10 })));
    env.refused_bearer("expired 10 s ago, leeway 0s", API, &just_expired)
        .await;
    let soon = key_a().sign(&with(claims.clone(), json!({ "nbf": now() + 10 })));
    env.refused_bearer("nbf in 10 s, leeway 0s", API, &soon)
        .await;
    env.accepted_bearer(
        "control: valid token, leeway 0s",
        API,
        &key_a().sign(&claims),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_not_yet_valid_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let future = key_a().sign(&with(claims.clone(), json!({ "nbf": now() + 3600 })));
    env.refused_bearer("nbf in an hour", API, &future).await;
    let future = key_a().sign(&with(
        claims.clone(),
        json!({ "nbf": now() + 600, "exp": now() + 1200 }),
    ));
    env.refused_bearer("nbf in ten minutes", API, &future).await;
    // Inside the leeway: valid.
    let soon = key_a().sign(&with(claims.clone(), json!({ "nbf": now() + 10 })));
    env.accepted_bearer("nbf in 10 s, default leeway 60s", API, &soon)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_issuer_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let issuer = env.idp.issuer();
    let cases = [
        ("another issuer", json!({ "iss": "http://evil.example" })),
        (
            "issuer with a trailing slash",
            json!({ "iss": format!("{issuer}/") }),
        ),
        (
            "issuer in upper case",
            json!({ "iss": issuer.to_uppercase() }),
        ),
        ("no iss", json!({ "iss": null })),
        ("iss as an array", json!({ "iss": [issuer] })),
    ];
    for (case, change) in cases {
        let token = key_a().sign(&with(claims.clone(), change));
        env.refused_bearer(case, API, &token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_is_refused() {
    let env = JwtEnv::start(standard_jwks(), "", "").await;
    let claims = env.claims();
    let cases = [
        ("another audience", json!({ "aud": "Other" })),
        (
            "audiences without Domino",
            json!({ "aud": ["Other", "Another"] }),
        ),
        ("Domino in lower case", json!({ "aud": "domino" })),
        ("no aud", json!({ "aud": null })),
        ("empty aud array", json!({ "aud": [] })),
    ];
    for (case, change) in cases {
        let token = key_a().sign(&with(claims.clone(), change));
        env.refused_bearer(case, API, &token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_claims_are_enforced() {
    let env = JwtEnv::start(standard_jwks(), r#"required_claims = ["sub"]"#, "").await;
    let claims = env.claims();
    let token = key_a().sign(&with(claims.clone(), json!({ "sub": null })));
    env.refused_bearer("no sub, sub required", API, &token)
        .await;
    env.accepted_bearer("control: with sub", API, &key_a().sign(&claims))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_algorithm_is_refused() {
    let rs384 = Route {
        target: "/rs384/x",
        name: "rs384",
        realm: "rs384",
    };
    let env = JwtEnv::start(
        standard_jwks(),
        "",
        r#"
[auth.rs384]
type = "jwt"
jwks_url = "{JWKS}"
issuer = "{ISSUER}"
audiences = ["Domino"]
algorithms = ["RS384"]

[[routes]]
name = "rs384"
host = "api.example.com"
path_prefix = "/rs384"
upstream = "data"
auth = "rs384"
"#,
    )
    .await;
    let claims = env.claims();
    // Published keys, real signatures: only the allowlist stands in the way.
    let cases = [
        (
            "RS384 on an RS256-only route",
            key_a().sign_as(Algorithm::RS384, Some("key-a"), &claims),
        ),
        (
            "RS512 on an RS256-only route",
            key_a().sign_as(Algorithm::RS512, Some("key-a"), &claims),
        ),
        (
            "PS256 on an RS256-only route",
            key_a().sign_as(Algorithm::PS256, Some("key-a"), &claims),
        ),
        (
            "ES256 (published EC key) on an RS256-only route",
            key_ec().sign(&claims),
        ),
    ];
    for (case, token) in &cases {
        env.refused_bearer(case, API, token).await;
    }
    env.refused_bearer(
        "RS256 on an RS384-only route",
        rs384,
        &key_a().sign(&claims),
    )
    .await;
    // Control: the RS384 token is good where RS384 is allowed.
    env.accepted_bearer("control: RS384 on the RS384 route", rs384, &cases[0].1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_key_of_the_wrong_type_for_the_kid_is_refused() {
    let mixed = Route {
        target: "/mixed/x",
        name: "mixed",
        realm: "mixed",
    };
    // The EC key published under a kid RS256 tokens use, and an RSA key
    // under a kid ES256 tokens use.
    let jwks = jwk_set(&[
        &key_a(),
        &key_ec(),
        &key_ec().with_kid("ec-under-rsa-kid"),
        &key_b().with_kid("rsa-under-ec-kid"),
    ]);
    let env = JwtEnv::start(
        jwks,
        "",
        r#"
[auth.mixed]
type = "jwt"
jwks_url = "{JWKS}"
issuer = "{ISSUER}"
audiences = ["Domino"]
algorithms = ["RS256", "ES256"]

[[routes]]
name = "mixed"
host = "api.example.com"
path_prefix = "/mixed"
upstream = "data"
auth = "mixed"
"#,
    )
    .await;
    let claims = env.claims();
    let rs256_on_ec_key = key_a().sign_as(Algorithm::RS256, Some("ec-under-rsa-kid"), &claims);
    env.refused_bearer(
        "RS256 token whose kid names an EC key",
        API,
        &rs256_on_ec_key,
    )
    .await;
    env.refused_bearer(
        "RS256 token whose kid names an EC key (RS256+ES256 route)",
        mixed,
        &rs256_on_ec_key,
    )
    .await;
    let es256_on_rsa_key = key_ec().sign_as(Algorithm::ES256, Some("rsa-under-ec-kid"), &claims);
    env.refused_bearer(
        "ES256 token whose kid names an RSA key (RS256+ES256 route)",
        mixed,
        &es256_on_rsa_key,
    )
    .await;
    // Controls: each key works under its own kid.
    env.accepted_bearer("control: RS256 under key-a", mixed, &key_a().sign(&claims))
        .await;
    env.accepted_bearer(
        "control: ES256 under key-ec",
        mixed,
        &key_ec().sign(&claims),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_run_before_jwt_auth() {
    let env = JwtEnv::start(
        standard_jwks(),
        "",
        r#"
[[routes]]
name = "admin-net"
host = "api.example.com"
path_prefix = "/admin"
upstream = "data"
allow = ["10.0.0.0/8"]
auth = "idp"

[[routes]]
name = "closed"
host = "api.example.com"
path_prefix = "/closed"
upstream = "data"
deny = true
auth = "idp"
"#,
    )
    .await;
    let token = key_a().sign(&env.claims());
    let auth = format!("Bearer {token}");
    for (target, route) in [("/admin/x", "admin-net"), ("/closed/x", "closed")] {
        for headers in [
            vec![("Authorization", auth.as_str())],
            vec![],
            vec![("Authorization", "Bearer not-a-jwt")],
        ] {
            let before = env.data.requests_seen();
            let response = env.get(target, &headers).await;
            assert_gateway_error(&response, 403, "forbidden", Some(route));
            assert!(
                response.header("www-authenticate").is_none(),
                "{target}: a 403 from allow/deny carries no auth challenge: {:?}",
                response.headers
            );
            assert_eq!(
                env.data.requests_seen(),
                before,
                "{target}: reached the upstream"
            );
        }
    }
    // Control: the same token is good on the route without allow/deny.
    env.accepted(
        "control: same token on /api",
        API.target,
        &[("Authorization", &auth)],
    )
    .await;
}

// ---------------------------------------------------------------------------
// HMAC secret from the environment
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_secret_from_the_environment_verifies_tokens() {
    const VAR: &str = "AUTH_JWT_TEST_HS_SECRET";
    const SECRET: &str = "test-only shared secret, 32+ bytes long, never real";
    let data = echo("data").await;
    let gw = Gateway::builder(format!(
        r#"{upstream}
[auth.shared]
type = "jwt"
secret_env = "{VAR}"
issuer = "https://domino.example.com"
audiences = ["{AUDIENCE}"]

[[routes]]
name = "shared"
host = "{HOST}"
path_prefix = "/shared"
upstream = "data"
auth = "shared"
"#,
        upstream = upstream("data", data.local_addr(), ""),
    ))
    .env(VAR, SECRET)
    .start()
    .await;
    let route = Route {
        target: "/shared/x",
        name: "shared",
        realm: "shared",
    };
    let claims = || good_claims("https://domino.example.com");
    let raw = |token: &str| {
        let auth = format!("Bearer {token}");
        request("GET", HOST, route.target, &[("Authorization", &auth)], b"")
    };

    let token = hs256_with_secret(SECRET.as_bytes(), None, &claims());
    let echo = gw.send(HOST, raw(&token)).await.echo();
    assert_eq!(
        upstream_header(&echo, "authorization"),
        [format!("Bearer {token}")]
    );
    assert_eq!(data.requests_seen(), 1);

    let hs512 = {
        let header = jsonwebtoken::Header::new(Algorithm::HS512);
        jsonwebtoken::encode(
            &header,
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign HS512")
    };
    let good = hs256_with_secret(SECRET.as_bytes(), None, &claims());
    let cases = [
        (
            "HS256 with another secret",
            hs256_with_secret(b"another secret entirely, also long", None, &claims()),
        ),
        ("HS512 with the right secret (HS256 only)", hs512),
        ("RS256 token on an HMAC route", key_a().sign(&claims())),
        (
            "alg none",
            forge(&json!({ "alg": "none", "typ": "JWT" }), &claims(), ""),
        ),
        (
            "expired",
            hs256_with_secret(
                SECRET.as_bytes(),
                None,
                &with(claims(), json!({ "exp": now() - 3600 })),
            ),
        ),
        ("stripped signature", {
            let (signed, _) = good.rsplit_once('.').expect("three parts");
            format!("{signed}.")
        }),
    ];
    for (case, token) in cases {
        let response = gw.send(HOST, raw(&token)).await;
        assert_bearer_refusal(&response, route, Challenge::Invalid, case);
        assert_eq!(data.requests_seen(), 1, "{case}: reached the upstream");
    }
}

// ---------------------------------------------------------------------------
// JWKS: rotation, outages, floods
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_needs_exactly_one_refetch() {
    let env = JwtEnv::start(
        jwk_set(&[&key_a()]),
        r#"refresh_interval = "1h"
refetch_cooldown = "30s""#,
        "",
    )
    .await;
    env.accepted_bearer("token A before rotation", API, &key_a().sign(&env.claims()))
        .await;
    let before = env
        .idp
        .settled_jwks_fetches(Duration::from_millis(300))
        .await;
    assert!(before >= 1, "key A was accepted without fetching the JWKS");

    // The IdP rotates to key B.
    env.idp.set_jwks(jwk_set(&[&key_b()]));
    env.accepted_bearer(
        "first token B after rotation",
        API,
        &key_b().sign(&env.claims()),
    )
    .await;
    let after = env
        .idp
        .settled_jwks_fetches(Duration::from_millis(300))
        .await;
    assert_eq!(
        after,
        before + 1,
        "the rotation took {} JWKS fetches, not exactly one",
        after - before
    );

    // More B tokens are served from the refreshed cache.
    for i in 0..5 {
        env.accepted_bearer(&format!("token B #{i}"), API, &key_b().sign(&env.claims()))
            .await;
    }
    assert_eq!(
        env.idp.jwks_fetches(),
        after,
        "tokens with a known kid fetched the JWKS again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_keep_serving_while_the_idp_is_down() {
    let env = JwtEnv::start(jwk_set(&[&key_a()]), r#"refresh_interval = "1s""#, "").await;
    let first = key_a().sign(&env.claims());
    env.accepted_bearer("key A, IdP up", API, &first).await;
    let fetched = env.idp.jwks_fetches();
    assert!(fetched >= 1, "key A was accepted without fetching the JWKS");

    // With refresh_interval = 1s the key set is fetched again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.accepted_bearer("key A after 1.5 s", API, &key_a().sign(&env.claims()))
        .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while env.idp.jwks_fetches() <= fetched && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        env.idp.jwks_fetches() > fetched,
        "the JWKS was not fetched again after refresh_interval (1s) passed"
    );

    env.idp.stop().await;
    env.accepted_bearer(
        "new token with the cached key, IdP down",
        API,
        &key_a().sign(&env.claims()),
    )
    .await;

    // Past refresh_interval: refreshes fail, the last good key set stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        env.accepted_bearer(
            &format!("new token #{i} with the cached key, IdP down for > refresh_interval"),
            API,
            &key_a().sign(&env.claims()),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    env.accepted_bearer("the first token again, IdP down", API, &first)
        .await;
    // And the down IdP did not make the gateway lenient.
    env.refused_bearer(
        "unpublished key while the IdP is down",
        API,
        &key_c().sign(&env.claims()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_cause_at_most_one_fetch_per_cooldown() {
    let env = JwtEnv::start(
        jwk_set(&[&key_a()]),
        r#"refresh_interval = "1h"
refetch_cooldown = "30s""#,
        "",
    )
    .await;
    env.accepted_bearer("key A", API, &key_a().sign(&env.claims()))
        .await;
    let before = env
        .idp
        .settled_jwks_fetches(Duration::from_millis(300))
        .await;
    // A slow IdP, so concurrent misses overlap with a fetch under way.
    env.idp.set_delay(Duration::from_millis(200));

    // 1,000 tokens with random kids, each with a plausible RS256 header and
    // a signature made by a key the IdP never published.
    let claims = env.claims();
    let signature = key_c()
        .sign(&claims)
        .rsplit('.')
        .next()
        .expect("signature")
        .to_string();
    let seed = now() as u64 ^ u64::from(std::process::id());
    let tokens: Vec<String> = (0..1000u64)
        .map(|i| {
            let kid = format!(
                "{:016x}",
                (seed.wrapping_add(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            );
            forge(
                &json!({ "alg": "RS256", "typ": "JWT", "kid": kid }),
                &claims,
                &signature,
            )
        })
        .collect();

    let started = Instant::now();
    let statuses: Vec<(u16, Option<String>)> = stream::iter(tokens)
        .map(|token| {
            let env = &env;
            async move {
                let response = env.bearer(API, &token).await;
                (
                    response.status,
                    response.header("www-authenticate").map(str::to_string),
                )
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let after = env
        .idp
        .settled_jwks_fetches(Duration::from_millis(500))
        .await;

    let not_401: Vec<&(u16, Option<String>)> = statuses.iter().filter(|(s, _)| *s != 401).collect();
    assert!(
        not_401.is_empty(),
        "{} of 1000 random-kid tokens were not refused with 401, e.g. {:?}",
        not_401.len(),
        not_401.first()
    );
    assert!(
        statuses
            .iter()
            .all(|(_, c)| c.as_deref().is_some_and(|c| c.starts_with("Bearer "))),
        "a refusal without a Bearer challenge"
    );
    assert_eq!(
        env.data.requests_seen(),
        1,
        "random-kid tokens reached the upstream"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the flood took {elapsed:?}, longer than the cooldown, so the bound below is not one cooldown"
    );
    assert!(
        after - before <= 1,
        "1,000 random kids within one refetch_cooldown (30s) caused {} JWKS fetches",
        after - before
    );

    // The gateway still serves real tokens, from its cache.
    env.idp.set_delay(Duration::ZERO);
    env.accepted_bearer("key A after the flood", API, &key_a().sign(&env.claims()))
        .await;
}

// ---------------------------------------------------------------------------
// Key use: key_ops, withdrawn keys, kids for another algorithm
// ---------------------------------------------------------------------------

/// `key`'s public JWK with these fields replaced (or added); a `null`
/// removes the field.
fn jwk_with(key: &TestKey, changes: Value) -> Value {
    with(key.jwk(), changes)
}

/// The `error_description` of a refusal's Bearer challenge.
fn error_description(response: &Response) -> String {
    let challenge = response.header("www-authenticate").unwrap_or_default();
    challenge
        .split_once("error_description=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(description, _)| description.to_string())
        .unwrap_or_else(|| panic!("no error_description in {challenge:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_whose_key_ops_lack_verify_verify_nothing() {
    let env = JwtEnv::start(
        json!({ "keys": [
            // RFC 7517 §4.3: key_ops lists every operation the key is for.
            jwk_with(&key_a(), json!({ "use": null, "key_ops": ["encrypt"] })),
            jwk_with(&key_c(), json!({ "key_ops": ["sign"] })),
            jwk_with(&key_ec(), json!({ "use": null, "key_ops": [] })),
            jwk_with(&key_b(), json!({ "use": null, "key_ops": ["verify"] })),
        ]}),
        r#"algorithms = ["RS256", "ES256"]"#,
        "",
    )
    .await;
    for (case, token) in [
        ("key A, key_ops [\"encrypt\"]", key_a().sign(&env.claims())),
        (
            "key C, use \"sig\" but key_ops [\"sign\"]",
            key_c().sign(&env.claims()),
        ),
        ("EC key, key_ops []", key_ec().sign(&env.claims())),
    ] {
        let response = env.bearer(API, &token).await;
        assert_bearer_refusal(&response, API, Challenge::Invalid, case);
        assert_eq!(
            error_description(&response),
            "key is not for verifying",
            "{case}"
        );
    }
    assert_eq!(env.data.requests_seen(), 0, "a refused token was forwarded");
    env.accepted_bearer(
        "control: key B, key_ops [\"verify\"]",
        API,
        &key_b().sign(&env.claims()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_jwk_set_file_honours_key_ops() {
    let jwks = json!({ "keys": [
        jwk_with(&key_a(), json!({ "use": null, "key_ops": ["encrypt", "wrapKey"] })),
        jwk_with(&key_b(), json!({ "use": null, "key_ops": ["sign", "verify"] })),
    ]});
    let (_dir, data, gw) = jwk_set_file_gateway(&jwks).await;
    let route = Route {
        target: "/file/x",
        name: "file",
        realm: "file",
    };
    let send = |token: String| {
        let auth = format!("Bearer {token}");
        let gw = &gw;
        async move {
            gw.send(
                HOST,
                request("GET", HOST, route.target, &[("Authorization", &auth)], b""),
            )
            .await
        }
    };
    let claims = || good_claims("https://idp.example.com");

    let case = "key A, whose key_ops lack verify";
    let response = send(key_a().sign(&claims())).await;
    assert_bearer_refusal(&response, route, Challenge::Invalid, case);
    assert_eq!(error_description(&response), "key is not for verifying");
    assert_eq!(data.requests_seen(), 0, "{case}: reached the upstream");

    send(key_b().sign(&claims())).await.echo();
    assert_eq!(data.requests_seen(), 1, "control: key B verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_key_is_refused_after_the_next_refresh() {
    let env = JwtEnv::start(
        jwk_set(&[&key_a(), &key_b()]),
        r#"refresh_interval = "1s"
refetch_cooldown = "30s""#,
        "",
    )
    .await;
    let token_a = key_a().sign(&env.claims());
    let token_b = key_b().sign(&env.claims());
    env.accepted_bearer("token A", API, &token_a).await;
    env.accepted_bearer("token B", API, &token_b).await;
    let before = env
        .idp
        .settled_jwks_fetches(Duration::from_millis(300))
        .await;

    // Key A is withdrawn (say, compromised). Until the gateway's next
    // refresh, token A is still served from the cache of verified tokens.
    env.idp.set_jwks(jwk_set(&[&key_b()]));
    let withdrawn = Instant::now();
    env.accepted_bearer("token A, before the refresh", API, &token_a)
        .await;

    // The same token, again and again: only the refresh may change the answer.
    let refused = loop {
        let before_request = env.data.requests_seen();
        let response = env.bearer(API, &token_a).await;
        if response.status != 200 {
            assert_eq!(env.data.requests_seen(), before_request);
            break response;
        }
        assert!(
            withdrawn.elapsed() < Duration::from_secs(10),
            "token A was still accepted 10 s after its key left the JWK Set \
             (refresh_interval = 1s); JWKS fetches: {} before, {} now",
            before,
            env.idp.jwks_fetches()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_bearer_refusal(
        &refused,
        API,
        Challenge::Invalid,
        "token A after the refresh",
    );
    assert_eq!(error_description(&refused), "unknown key id");
    assert!(
        env.idp.jwks_fetches() > before,
        "token A was refused without a JWKS fetch"
    );
    env.refused_bearer("token A, once more", API, &token_a)
        .await;
    env.accepted_bearer("token B, its key still published", API, &token_b)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_for_another_algorithm_is_refused_without_a_refetch() {
    let env = JwtEnv::start(
        json!({ "keys": [
            key_a().jwk(),
            key_ec().jwk(),
            // Key B for RS384 only.
            jwk_with(&key_b(), json!({ "alg": "RS384" })),
            // An EC key that claims an RSA algorithm.
            jwk_with(&key_ec().with_kid("ec-says-rs256"), json!({ "alg": "RS256" })),
        ]}),
        r#"refresh_interval = "1h"
refetch_cooldown = "30s""#,
        "",
    )
    .await;
    env.accepted_bearer("key A", API, &key_a().sign(&env.claims()))
        .await;
    let before = env
        .idp
        .settled_jwks_fetches(Duration::from_millis(300))
        .await;
    let claims = env.claims();
    for (case, token) in [
        (
            "RS256 token whose kid names the EC key",
            key_a().sign_as(Algorithm::RS256, Some("key-ec"), &claims),
        ),
        (
            "RS256 token whose kid names an RS384 key",
            key_b().sign(&claims),
        ),
        (
            "RS256 token whose kid names an EC key that says RS256",
            key_a().sign_as(Algorithm::RS256, Some("ec-says-rs256"), &claims),
        ),
    ] {
        let response = env.bearer(API, &token).await;
        assert_bearer_refusal(&response, API, Challenge::Invalid, case);
        assert_eq!(
            error_description(&response),
            "algorithm does not fit the key",
            "{case}"
        );
    }
    assert_eq!(env.data.requests_seen(), 1, "a refused token was forwarded");
    assert_eq!(
        env.idp
            .settled_jwks_fetches(Duration::from_millis(300))
            .await,
        before,
        "a kid the JWK Set publishes (for another algorithm) cost a JWKS fetch"
    );

    // Control: a kid the set does not publish is worth one refetch.
    let response = env
        .bearer(
            API,
            &key_a().sign_as(Algorithm::RS256, Some("rotated"), &claims),
        )
        .await;
    assert_bearer_refusal(&response, API, Challenge::Invalid, "unpublished kid");
    assert_eq!(error_description(&response), "unknown key id");
    assert_eq!(
        env.idp
            .settled_jwks_fetches(Duration::from_millis(300))
            .await,
        before + 1,
        "an unpublished kid did not refetch the JWK Set exactly once"
    );
}
