//! Bearer-token (JWT) authentication, as Keycloak and Domino REST API issue
//! tokens.
//!
//! The journey of one check: find the token (Authorization, then the
//! configured cookie); accept it from the cache if it was verified before,
//! has not expired and the key that verified it is still published;
//! otherwise read its header, refuse algorithms not allowed, pick the keys
//! that fit its `kid` and algorithm (refetching the JWKS once for a `kid` the
//! set does not publish at all), verify signature and claims, and cache the
//! result until `exp`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::cache::ExpiringCache;
use crate::jwks::RemoteKeys;
use crate::keys::{KeyFingerprint, KeySet, Miss, Withheld};
use crate::{Denial, Identity, Verdict};

/// Longest token read; real ones are a few KiB at most.
const MAX_TOKEN: usize = 16 * 1024;

/// Where a JWT authenticator's keys come from.
pub enum KeySource {
    /// Keys fixed at load: PEM files, JWK Set files or a secret.
    Static(Arc<KeySet>),
    /// A JWK Set fetched over HTTP(S).
    Remote(Arc<RemoteKeys>),
}

/// What a JWT authenticator is built from, already validated.
pub struct JwtSpec {
    /// The `[auth]` key; also the challenge's realm.
    pub name: String,
    /// The verification keys.
    pub keys: KeySource,
    /// The `iss` tokens must carry, if set.
    pub issuer: Option<String>,
    /// Tokens must name one of these in `aud`; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// The algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Claims every token must carry, beyond `exp`.
    pub required_claims: Vec<String>,
    /// Also read the token from this cookie.
    pub cookie: Option<String>,
    /// (claim, header) pairs set on the forwarded request.
    pub claims_to_headers: Vec<(String, String)>,
}

/// A verified token as the cache keeps it.
#[derive(Debug, Clone)]
struct Verified {
    /// Who it is, with the headers its claims produce.
    identity: Identity,
    /// The key that verified it: once that leaves the JWK Set, so does the token.
    key: KeyFingerprint,
}

/// Bearer-token authentication: signature, `exp`, `nbf`, `iss`, `aud`
/// and required claims checked, verified tokens cached.
pub struct JwtAuthenticator {
    spec: JwtSpec,
    /// One per allowed algorithm, built once: a check only looks it up.
    validations: Vec<(Algorithm, Validation)>,
    challenge_prefix: String,
    /// Verified tokens by SHA-256.
    cache: ExpiringCache<[u8; 32], Verified>,
}

impl JwtAuthenticator {
    /// The authenticator for `spec`.
    pub fn new(spec: JwtSpec) -> Self {
        JwtAuthenticator {
            challenge_prefix: format!("Bearer realm=\"{}\"", spec.name),
            validations: spec
                .algorithms
                .iter()
                .map(|&alg| (alg, validation(&spec, alg)))
                .collect(),
            spec,
            cache: ExpiringCache::new(50_000),
        }
    }

    /// The `[auth]` key.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Headers this authenticator sets upstream; client-sent copies must go.
    pub fn owned_headers(&self) -> impl Iterator<Item = &str> {
        self.spec.claims_to_headers.iter().map(|(_, h)| h.as_str())
    }

    /// The fetched key set, when keys come over HTTP(S).
    pub fn remote_keys(&self) -> Option<&Arc<RemoteKeys>> {
        match &self.spec.keys {
            KeySource::Remote(remote) => Some(remote),
            KeySource::Static(_) => None,
        }
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

    /// Decides on a request's `Authorization` value and `Cookie` lines.
    pub async fn check(&self, authorization: Option<&[u8]>, cookies: &[&[u8]]) -> Verdict {
        let token = match find_token(authorization, cookies, self.spec.cookie.as_deref()) {
            Ok(token) => token,
            Err(description) => return self.unauthorized(description),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = Instant::now();
        if let Some(verified) = self.cache.get(&key, now) {
            if self.still_published(verified.key).await {
                return Verdict::Allow(verified.identity);
            }
            // Its key was withdrawn (perhaps compromised): check it afresh.
            self.cache.remove(&key);
        }
        match self.verify(token).await {
            Ok((verified, exp)) => {
                let remaining = exp.saturating_sub(unix_now());
                let identity = verified.identity.clone();
                self.cache
                    .insert(key, verified, now + Duration::from_secs(remaining), now);
                Verdict::Allow(identity)
            }
            Err(description) => self.unauthorized(description),
        }
    }

    /// Whether the key that verified a cached token is still in the key set.
    /// Asking also schedules a refresh that is due, so a withdrawal takes
    /// effect at the next refresh even when every token comes from the cache.
    async fn still_published(&self, key: KeyFingerprint) -> bool {
        match &self.spec.keys {
            KeySource::Static(_) => true,
            KeySource::Remote(remote) => remote.keys().await.is_some_and(|(set, _)| set.holds(key)),
        }
    }

    async fn verify(&self, token: &str) -> Result<(Verified, u64), &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        let validation = self
            .validations
            .iter()
            .find_map(|(alg, validation)| (*alg == header.alg).then_some(validation))
            .ok_or("algorithm not allowed")?;
        if header.crit.is_some() {
            // RFC 7515: a critical extension we do not understand must fail.
            return Err("unsupported critical header");
        }
        let kid = header.kid.as_deref();
        let keys = match &self.spec.keys {
            KeySource::Static(set) => Arc::clone(set),
            KeySource::Remote(remote) => {
                let Some((set, generation)) = remote.keys().await else {
                    return Err("signing keys unavailable");
                };
                match kid {
                    Some(kid) if !set.publishes(kid) => {
                        match remote.refetch_for_unknown_kid(generation).await {
                            Some(newer) => newer,
                            None => return Err("unknown key id"),
                        }
                    }
                    _ => set,
                }
            }
        };
        let mut candidates = keys.candidates(kid, header.alg).peekable();
        if candidates.peek().is_none() {
            // A kid the set publishes for something else is no rotation:
            // say what it is, and spend no refetch on it.
            return Err(match keys.miss(kid) {
                Miss::OtherAlgorithm | Miss::Withheld(Withheld::OtherAlgorithm) => {
                    "algorithm does not fit the key"
                }
                Miss::Withheld(Withheld::NotForVerifying) => "key is not for verifying",
                Miss::Unknown => "unknown key id",
            });
        }
        let mut outcome = Err("bad signature");
        for candidate in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &candidate.key, validation) {
                Ok(data) => {
                    outcome = Ok((data.claims, candidate.fingerprint));
                    break;
                }
                Err(e) => {
                    outcome = Err(describe(e.kind()));
                    // A claim error is final; a bad signature may fit another key.
                    if !matches!(e.kind(), JwtErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        let (claims, key) = outcome?;
        // RFC 7519: iss is one string. jsonwebtoken also takes a list, which
        // would let a token name several issuers at once.
        if let Some(issuer) = &self.spec.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err("wrong issuer");
            }
        }
        for claim in &self.spec.required_claims {
            if claims.get(claim).is_none_or(Value::is_null) {
                return Err("a required claim is missing");
            }
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("token has no usable exp")?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let headers = self
            .spec
            .claims_to_headers
            .iter()
            .filter_map(|(claim, header)| {
                header_value(claims.get(claim)?).map(|v| (header.clone(), v))
            })
            .collect();
        Ok((
            Verified {
                identity: Identity {
                    subject,
                    headers,
                    claims: Some(Arc::new(claims)),
                },
                key,
            },
            exp,
        ))
    }
}

/// What a token signed with `alg` is checked against.
fn validation(spec: &JwtSpec, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = spec.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // jsonwebtoken checks iss and aud only when present: a configured
    // one must also be required, or a token without it would pass.
    let mut required = HashSet::from(["exp".to_string()]);
    if spec.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&spec.audiences);
        required.insert("aud".to_string());
    }
    if let Some(issuer) = &spec.issuer {
        validation.set_issuer(&[issuer]);
        required.insert("iss".to_string());
    }
    validation.required_spec_claims = required;
    validation
}

fn describe(kind: &JwtErrorKind) -> &'static str {
    match kind {
        JwtErrorKind::ExpiredSignature => "token expired",
        JwtErrorKind::ImmatureSignature => "token not valid yet",
        JwtErrorKind::InvalidIssuer => "wrong issuer",
        JwtErrorKind::InvalidAudience => "wrong audience",
        JwtErrorKind::InvalidSignature => "bad signature",
        JwtErrorKind::InvalidAlgorithm => "algorithm does not fit the key",
        JwtErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed token",
    }
}

/// A claim as a header value: strings and numbers, nothing that could break
/// the header or smuggle another one.
fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (text.len() <= 1024
        && text
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) || b == b'\t'))
    .then_some(text)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token from `Authorization: Bearer`, else from the named cookie.
pub fn find_token<'a>(
    authorization: Option<&'a [u8]>,
    cookies: &[&'a [u8]],
    cookie_name: Option<&str>,
) -> Result<&'a str, &'static str> {
    let token = match authorization {
        Some(value) => {
            let text = std::str::from_utf8(value).map_err(|_| "malformed Authorization header")?;
            let (scheme, token) = text
                .trim()
                .split_once(' ')
                .ok_or("malformed Authorization header")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("Authorization scheme is not Bearer");
            }
            token.trim()
        }
        None => {
            let name = cookie_name.ok_or("no token")?;
            cookie_value(cookies, name).ok_or("no token")?
        }
    };
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err("malformed token");
    }
    let well_formed = token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return Err("malformed token");
    }
    Ok(token)
}

fn cookie_value<'a>(headers: &[&'a [u8]], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter_map(|h| std::str::from_utf8(h).ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// Algorithm names as the config writes them.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    let all: HashMap<&str, Algorithm> = HashMap::from([
        ("RS256", Algorithm::RS256),
        ("RS384", Algorithm::RS384),
        ("RS512", Algorithm::RS512),
        ("PS256", Algorithm::PS256),
        ("PS384", Algorithm::PS384),
        ("PS512", Algorithm::PS512),
        ("ES256", Algorithm::ES256),
        ("ES384", Algorithm::ES384),
        ("EdDSA", Algorithm::EdDSA),
        ("HS256", Algorithm::HS256),
        ("HS384", Algorithm::HS384),
        ("HS512", Algorithm::HS512),
    ]);
    all.get(name).copied()
}

#[cfg(test)]
mod tests;
