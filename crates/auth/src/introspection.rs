//! Opaque bearer tokens, judged by the IdP's token introspection endpoint
//! (RFC 7662), as Keycloak's `token/introspect`.
//!
//! The journey of one check: take the token from `Authorization: Bearer`;
//! answer from the cache when this token (by SHA-256, never the token
//! itself) was judged before; otherwise POST it to the endpoint with the
//! gateway's client credentials (HTTP basic, RFC 7662 §2.1), with concurrent
//! checks of one token sharing one call. An active answer is checked like a
//! JWT (`exp`, `iss`, `aud`) and kept up to min(`cache_ttl`, `exp`); a refusal
//! for a few seconds; an endpoint that cannot answer is a 401 and is not
//! remembered (fail closed: cached answers keep serving).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::cache::ExpiringCache;
use crate::{Denial, Identity, Verdict};

/// Longest token sent to the IdP.
const MAX_TOKEN: usize = 16 * 1024;
/// Largest introspection answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// How long a call to the endpoint may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an inactive (or refused) answer is reused: long enough to spare
/// the IdP a flood of one bad token, short enough that a token activated a
/// moment later works soon.
pub const REFUSAL_TTL: Duration = Duration::from_secs(5);
/// Checks in flight kept before abandoned ones are swept.
const MAX_IN_FLIGHT: usize = 10_000;

/// What an introspection authenticator is built from, already validated.
pub struct IntrospectionSpec {
    /// The `[auth]` key; also the challenge's realm.
    pub name: String,
    /// The introspection endpoint.
    pub url: String,
    /// The gateway's client id at the IdP.
    pub client_id: String,
    /// The gateway's client secret (from `client_secret_env`).
    pub client_secret: String,
    /// Active tokens must name one of these in `aud`; empty: not checked.
    pub audiences: Vec<String>,
    /// The `iss` active tokens must carry, if set.
    pub issuer: Option<String>,
    /// The longest an active answer is reused.
    pub cache_ttl: Duration,
    /// The HTTP client (timeouts, trusted CAs).
    pub client: reqwest::Client,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct IntrospectionStats {
    /// Calls made to the endpoint.
    pub calls: AtomicU64,
    /// Calls that got no usable answer.
    pub failures: AtomicU64,
}

/// The IdP's judgement of one token, as the cache keeps it.
#[derive(Debug, Clone)]
enum Answer {
    Active(Identity),
    Refused(&'static str),
    Unavailable,
}

/// Bearer tokens judged by an RFC 7662 endpoint, answers cached.
pub struct IntrospectionAuthenticator {
    spec: IntrospectionSpec,
    /// `Basic ...` for the endpoint, built once.
    credentials: String,
    challenge_prefix: String,
    cache: ExpiringCache<[u8; 32], Answer>,
    in_flight: Mutex<HashMap<[u8; 32], Arc<OnceCell<Answer>>>>,
    /// Call counters.
    pub stats: IntrospectionStats,
}

impl IntrospectionAuthenticator {
    /// The authenticator for `spec`.
    pub fn new(spec: IntrospectionSpec) -> Self {
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        let pair = format!(
            "{}:{}",
            form_encode(&spec.client_id),
            form_encode(&spec.client_secret)
        );
        IntrospectionAuthenticator {
            credentials: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
            challenge_prefix: format!("Bearer realm=\"{}\"", spec.name),
            spec,
            cache: ExpiringCache::new(50_000),
            in_flight: Mutex::new(HashMap::new()),
            stats: IntrospectionStats::default(),
        }
    }

    /// The `[auth]` key.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn unauthorized(&self, description: &'static str) -> Verdict {
        Verdict::Deny(Denial::Unauthorized {
            challenge: format!(
                "{}, error=\"invalid_token\", error_description=\"{description}\"",
                self.challenge_prefix
            ),
            reason: description,
        })
    }

    /// Decides on a request's `Authorization` value.
    pub async fn check(&self, authorization: Option<&[u8]>) -> Verdict {
        let token = match bearer_token(authorization) {
            Ok(token) => token,
            Err(description) => return self.unauthorized(description),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let answer = match self.cache.get(&key, Instant::now()) {
            Some(answer) => answer,
            None => self.shared_call(token, key).await,
        };
        match answer {
            Answer::Active(identity) => Verdict::Allow(identity),
            Answer::Refused(reason) => self.unauthorized(reason),
            Answer::Unavailable => self.unauthorized("token could not be checked"),
        }
    }

    /// One call per token at a time: later checks wait for the first's answer.
    async fn shared_call(&self, token: &str, key: [u8; 32]) -> Answer {
        let cell = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if in_flight.len() >= MAX_IN_FLIGHT {
                // Checks whose clients all went away leave their cell behind.
                in_flight.retain(|_, cell| Arc::strong_count(cell) > 1);
            }
            Arc::clone(in_flight.entry(key).or_default())
        };
        let answer = cell.get_or_init(|| self.call(token, key)).await.clone();
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        answer
    }

    /// Asks the endpoint, and caches what it says.
    async fn call(&self, token: &str, key: [u8; 32]) -> Answer {
        // A waiter may start this after the first caller's answer was cached.
        if let Some(answer) = self.cache.get(&key, Instant::now()) {
            return answer;
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let claims = match self.fetch(token).await {
            Ok(claims) => claims,
            Err(problem) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                // Never the token: only what went wrong.
                log::warn!(
                    target: "postern::auth",
                    "[auth.{}]: introspection at {} failed: {problem}",
                    self.spec.name,
                    self.spec.url
                );
                return Answer::Unavailable;
            }
        };
        let now = Instant::now();
        let (answer, keep) = match self.judge(claims) {
            Ok((identity, lifetime)) => (Answer::Active(identity), lifetime),
            Err(reason) => (
                Answer::Refused(reason),
                REFUSAL_TTL.min(self.spec.cache_ttl),
            ),
        };
        self.cache.insert(key, answer.clone(), now + keep, now);
        answer
    }

    async fn fetch(&self, token: &str) -> Result<Map<String, Value>, String> {
        let mut response = self
            .spec
            .client
            .post(&self.spec.url)
            .header(reqwest::header::AUTHORIZATION, &self.credentials)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(describe_error)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("the endpoint answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe_error)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER {
                return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
            }
        }
        match serde_json::from_slice(&body) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err("the answer is not a JSON object".to_string()),
        }
    }

    /// An answer's verdict, and how long an active one may be reused.
    fn judge(&self, claims: Map<String, Value>) -> Result<(Identity, Duration), &'static str> {
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err("token inactive");
        }
        let now = unix_now();
        let exp = claims.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|exp| exp <= now) {
            return Err("token expired");
        }
        if let Some(issuer) = &self.spec.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err("wrong issuer");
            }
        }
        if !self.spec.audiences.is_empty() {
            let named = |a: &str| self.spec.audiences.iter().any(|w| w == a);
            let fits = match claims.get("aud") {
                Some(Value::String(aud)) => named(aud),
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(named),
                _ => false,
            };
            if !fits {
                return Err("wrong audience");
            }
        }
        let lifetime = match exp {
            Some(exp) => self.spec.cache_ttl.min(Duration::from_secs(exp - now)),
            None => self.spec.cache_ttl,
        };
        // client_credentials tokens name no user: the client is who it is.
        let subject = ["sub", "username", "client_id"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .unwrap_or("")
            .to_string();
        Ok((
            Identity {
                subject,
                headers: Vec::new(),
                claims: Some(Arc::new(claims)),
            },
            lifetime,
        ))
    }
}

/// Why a call failed, without the URL's query or anything of the request.
fn describe_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {}s", CALL_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.without_url().to_string()
    }
}

/// The token from `Authorization: Bearer`: RFC 6750's b64token characters.
pub fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, &'static str> {
    let value = authorization.ok_or("no token")?;
    let text = std::str::from_utf8(value).map_err(|_| "malformed Authorization header")?;
    let (scheme, token) = text
        .trim()
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization scheme is not Bearer");
    }
    let token = token.trim();
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && token.len() <= MAX_TOKEN
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !well_formed {
        return Err("malformed token");
    }
    Ok(token)
}

/// application/x-www-form-urlencoded, for the basic credentials.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
