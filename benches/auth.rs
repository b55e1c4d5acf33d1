//! What an authenticated route costs per request, with and without the
//! caches: `cargo bench --bench auth`. Results go to docs/performance.md.
//!
//! The cached cases are what a client reusing its token or password pays
//! after its first request; the uncached cases are that first request (a
//! fresh authenticator each iteration, its construction not timed).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use criterion::{BatchSize, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use postern_auth::backoff::BackoffPolicy;
use postern_auth::basic::{BasicAuthenticator, BasicSpec};
use postern_auth::jwt::{JwtAuthenticator, JwtSpec, KeySource};
use postern_auth::{keys, PasswordHash, Verdict};

const PRIVATE_KEY: &[u8] = include_bytes!("../tests/fixtures/rsa1.pem");
const PUBLIC_KEY: &[u8] = include_bytes!("../tests/fixtures/rsa1.pub.pem");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn jwt_authenticator() -> JwtAuthenticator {
    let set = keys::parse_key_file(PUBLIC_KEY).expect("fixture public key");
    JwtAuthenticator::new(JwtSpec {
        name: "idp".into(),
        keys: KeySource::Static(Arc::new(set)),
        issuer: Some("https://idp.example.com/realms/iams".into()),
        audiences: vec!["Domino".into()],
        algorithms: vec![Algorithm::RS256],
        leeway: Duration::from_secs(60),
        required_claims: vec!["sub".into()],
        cookie: None,
        claims_to_headers: vec![("sub".into(), "x-auth-subject".into())],
    })
}

fn token() -> Vec<u8> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "iss": "https://idp.example.com/realms/iams",
        "aud": "Domino",
        "sub": "alice",
        "exp": exp,
    });
    let key = EncodingKey::from_rsa_pem(PRIVATE_KEY).expect("fixture private key");
    let jwt = encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign");
    format!("Bearer {jwt}").into_bytes()
}

fn basic_authenticator(stored: &str) -> BasicAuthenticator {
    BasicAuthenticator::new(BasicSpec {
        name: "ops".into(),
        realm: "ops".into(),
        accounts: vec![("admin".into(), PasswordHash::parse(stored).expect("hash"))],
        cache_ttl: Duration::from_secs(60),
        backoff: BackoffPolicy {
            max_failures: u32::MAX,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
        },
        shared_backoff: None,
    })
    .expect("one account")
}

fn basic_header(user: &str, password: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}").into_bytes()
}

fn allowed(verdict: Verdict) {
    assert!(verdict.is_allowed(), "{verdict:?}");
}

fn jwt(c: &mut Criterion) {
    let rt = runtime();
    let header = token();
    let mut group = c.benchmark_group("jwt_rs256");
    let warm = jwt_authenticator();
    rt.block_on(warm.check(Some(&header), &[]));
    group.bench_function("cached", |b| {
        b.iter(|| allowed(rt.block_on(warm.check(Some(&header), &[]))))
    });
    group.bench_function("uncached", |b| {
        b.iter_batched(
            jwt_authenticator,
            |auth| allowed(rt.block_on(auth.check(Some(&header), &[]))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn basic(c: &mut Criterion) {
    let rt = runtime();
    let client: IpAddr = "192.0.2.1".parse().unwrap();
    let header = basic_header("admin", "correct horse");
    let argon2 = postern_auth::hash_password(b"correct horse").expect("hash");
    let bcrypt5 = bcrypt_hash_like_htpasswd("correct horse");
    for (name, stored) in [("argon2id", argon2), ("bcrypt_cost5", bcrypt5)] {
        let mut group = c.benchmark_group(format!("basic_{name}"));
        group.sample_size(20);
        let warm = basic_authenticator(&stored);
        rt.block_on(warm.check(Some(&header), client));
        group.bench_function("cached", |b| {
            b.iter(|| allowed(rt.block_on(warm.check(Some(&header), client))))
        });
        group.bench_function("uncached", |b| {
            b.iter_batched(
                || basic_authenticator(&stored),
                |auth| allowed(rt.block_on(auth.check(Some(&header), client))),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// `htpasswd -B` uses cost 5 unless told otherwise.
fn bcrypt_hash_like_htpasswd(password: &str) -> String {
    let output = std::process::Command::new("htpasswd")
        .args(["-nbB", "admin", password])
        .output()
        .expect("htpasswd (apache2-utils) is needed for this benchmark");
    let line = String::from_utf8(output.stdout).expect("utf-8");
    line.trim()
        .split_once(':')
        .expect("user:hash")
        .1
        .to_string()
}

// What `criterion_group!` and `criterion_main!` expand to, without the
// undocumented `pub fn` the first one makes.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    jwt(&mut criterion);
    basic(&mut criterion);
    criterion.final_summary();
}
