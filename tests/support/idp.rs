//! A real identity provider for the authentication tests: an HTTP/1.1 server
//! on a free loopback port that publishes OpenID Connect discovery
//! (`/.well-known/openid-configuration`) and a JWK Set (`/jwks`), counts how
//! often each is fetched, lets a test replace the served keys (rotation) and
//! can be stopped (listener closed, open connections dropped, so the gateway
//! sees the IdP down).
//!
//! Also the signing side: the fixture keys in `tests/fixtures/` (made once
//! with `openssl`), their public JWKs, and tokens signed with
//! `jsonwebtoken::encode` or forged by hand.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// Fixture keys and tokens
// ---------------------------------------------------------------------------

/// The absolute path of a file in `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Unpadded base64url, as JWS uses.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token assembled by hand from a header, claims and a signature that are
/// not checked against anything: for `alg: none`, garbage and forgeries.
pub fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string()),
        b64url(claims.to_string())
    )
}

/// One fixture private key with the `kid` it is published under.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    /// The algorithm tokens are signed with by default (RS256 or ES256).
    pub alg: Algorithm,
    /// The PEM (SPKI) public key file, for `keys = [...]`.
    pub public_pem: PathBuf,
    encoding: EncodingKey,
}

impl TestKey {
    /// `tests/fixtures/{file}.pem` (RSA), signing RS256 under `kid`.
    pub fn rsa(file: &str, kid: &str) -> TestKey {
        let pem = std::fs::read(fixture(&format!("{file}.pem")))
            .unwrap_or_else(|e| panic!("read fixture {file}.pem: {e}"));
        TestKey {
            kid: kid.to_string(),
            alg: Algorithm::RS256,
            public_pem: fixture(&format!("{file}.pub.pem")),
            encoding: EncodingKey::from_rsa_pem(&pem)
                .unwrap_or_else(|e| panic!("fixture {file}.pem is not an RSA key: {e}")),
        }
    }

    /// `tests/fixtures/{file}.pem` (EC P-256), signing ES256 under `kid`.
    pub fn ec(file: &str, kid: &str) -> TestKey {
        let pem = std::fs::read(fixture(&format!("{file}.pem")))
            .unwrap_or_else(|e| panic!("read fixture {file}.pem: {e}"));
        TestKey {
            kid: kid.to_string(),
            alg: Algorithm::ES256,
            public_pem: fixture(&format!("{file}.pub.pem")),
            encoding: EncodingKey::from_ec_pem(&pem)
                .unwrap_or_else(|e| panic!("fixture {file}.pem is not an EC key: {e}")),
        }
    }

    /// The same key published under another `kid`.
    pub fn with_kid(&self, kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            ..self.clone()
        }
    }

    /// The bytes of the public key PEM file.
    pub fn public_pem_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.public_pem)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.public_pem.display()))
    }

    /// A token signed with the key's own algorithm, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    /// A token signed with this key using `alg` (e.g. RS384 with an RSA key),
    /// with `kid` in the header when given.
    pub fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .unwrap_or_else(|e| panic!("sign a {alg:?} token: {e}"))
    }

    /// The public JWK, as an IdP publishes it: `kty`, the key's parameters,
    /// `kid` and `use`, and no `alg` (so only the token's header and the
    /// gateway's allowlist decide the algorithm).
    pub fn jwk(&self) -> Value {
        let jwk = Jwk::from_encoding_key(&self.encoding, self.alg)
            .unwrap_or_else(|e| panic!("JWK of {}: {e}", self.kid));
        let mut value = serde_json::to_value(&jwk).expect("JWK to JSON");
        let object = value.as_object_mut().expect("a JWK is an object");
        object.remove("alg");
        object.insert("kid".into(), Value::from(self.kid.clone()));
        object.insert("use".into(), Value::from("sig"));
        for (field, kty) in [("n", "RSA"), ("x", "EC")] {
            if object.get("kty") == Some(&Value::from(kty)) {
                assert!(
                    object.get(field).is_some_and(Value::is_string),
                    "JWK without {field}: {value}"
                );
            }
        }
        value
    }
}

/// `{"keys": [...]}` of these keys' public JWKs.
pub fn jwk_set(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

// ---------------------------------------------------------------------------
// The identity provider
// ---------------------------------------------------------------------------

struct State {
    issuer: String,
    jwks: Mutex<Value>,
    /// How long each `/jwks` answer is held back (a slow IdP).
    delay: Mutex<Duration>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

/// A running test IdP on `http://127.0.0.1:PORT`. Stopped when dropped.
pub struct Idp {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Idp {
    /// Starts serving `jwks` (a JWK Set) on a free loopback port.
    pub async fn start(jwks: Value) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test IdP");
        let addr = listener.local_addr().expect("IdP address");
        let state = Arc::new(State {
            issuer: format!("http://{addr}"),
            jwks: Mutex::new(jwks),
            delay: Mutex::new(Duration::ZERO),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, say: try again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let conn_state = Arc::clone(&accept_state);
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&conn_state);
                        async move { Ok::<_, Infallible>(serve(&state, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut connections = accept_state.connections.lock().expect("lock");
                connections.retain(|c| !c.is_finished());
                connections.push(connection);
            }
        });
        Idp {
            addr,
            state,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// `http://127.0.0.1:PORT`: the `iss` of its tokens, and the base of discovery.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// `http://127.0.0.1:PORT/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.issuer)
    }

    /// How many times `/jwks` has been requested.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times `/.well-known/openid-configuration` has been requested.
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Serves this JWK Set from now on (key rotation).
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().expect("lock") = jwks;
    }

    /// Holds every `/jwks` answer back by `delay` (a slow IdP).
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().expect("lock") = delay;
    }

    /// Waits until the JWKS fetch count has not changed for `quiet`, and
    /// returns it: lets fetches already under way finish before a test
    /// starts counting.
    pub async fn settled_jwks_fetches(&self, quiet: Duration) -> usize {
        let mut last = self.jwks_fetches();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.jwks_fetches();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Closes the listener (new connections are refused) and drops every
    /// open connection. Idempotent.
    pub async fn stop(&self) {
        let accept = self.accept.lock().expect("lock").take();
        if let Some(accept) = accept {
            accept.abort();
            let _ = accept.await;
        }
        let connections: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.state.connections.lock().expect("lock"));
        for connection in connections {
            connection.abort();
            let _ = connection.await;
        }
        // The port is closed now: nothing accepts on it.
        assert!(
            tokio::net::TcpStream::connect(self.addr).await.is_err(),
            "the stopped IdP still accepts connections on {}",
            self.addr
        );
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().expect("lock").take() {
            accept.abort();
        }
        for connection in self.state.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }
}

async fn serve(state: &State, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let json_response = |value: &Value| {
        hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("cache-control", "no-cache")
            .body(Full::new(Bytes::from(value.to_string())))
            .expect("response")
    };
    if req.method() != hyper::Method::GET {
        return hyper::Response::builder()
            .status(405)
            .body(Full::new(Bytes::new()))
            .expect("response");
    }
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            json_response(&json!({
                "issuer": state.issuer,
                "jwks_uri": format!("{}/jwks", state.issuer),
                "authorization_endpoint": format!("{}/auth", state.issuer),
                "token_endpoint": format!("{}/token", state.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }))
        }
        "/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let delay = *state.delay.lock().expect("lock");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let jwks = state.jwks.lock().expect("lock").clone();
            json_response(&jwks)
        }
        _ => hyper::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"error\":\"not_found\"}")))
            .expect("response"),
    }
}
