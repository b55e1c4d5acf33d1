//! Bearer-token (JWT) authentication, as Keycloak and Domino REST API issue
//! tokens.
//!
//! The journey of one check: find the token (Authorization, then the
//! configured cookie); accept it from the cache if it was verified before
//! and has not expired; otherwise read its header, refuse algorithms not
//! allowed, pick the keys that fit its `kid` and algorithm (refetching the
//! JWKS once for an unknown `kid`), verify signature and claims, and cache
//! the result until `exp`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::cache::ExpiringCache;
use crate::jwks::RemoteKeys;
use crate::keys::KeySet;
use crate::{Denial, Identity, Verdict};

/// Longest token read; real ones are a few KiB at most.
const MAX_TOKEN: usize = 16 * 1024;

pub enum KeySource {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

pub struct JwtSpec {
    pub name: String,
    pub keys: KeySource,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub required_claims: Vec<String>,
    pub cookie: Option<String>,
    pub claims_to_headers: Vec<(String, String)>,
}

pub struct JwtAuthenticator {
    spec: JwtSpec,
    /// One per allowed algorithm, built once: a check only looks it up.
    validations: Vec<(Algorithm, Validation)>,
    challenge_prefix: String,
    /// Verified tokens by SHA-256, with the headers their claims produce.
    cache: ExpiringCache<[u8; 32], Identity>,
}

impl JwtAuthenticator {
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

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Headers this authenticator sets upstream; client-sent copies must go.
    pub fn owned_headers(&self) -> impl Iterator<Item = &str> {
        self.spec.claims_to_headers.iter().map(|(_, h)| h.as_str())
    }

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

    pub async fn check(&self, authorization: Option<&[u8]>, cookies: &[&[u8]]) -> Verdict {
        let token = match find_token(authorization, cookies, self.spec.cookie.as_deref()) {
            Ok(token) => token,
            Err(description) => return self.unauthorized(description),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = Instant::now();
        if let Some(identity) = self.cache.get(&key, now) {
            return Verdict::Allow(identity);
        }
        match self.verify(token).await {
            Ok((identity, exp)) => {
                let remaining = exp.saturating_sub(unix_now());
                self.cache.insert(
                    key,
                    identity.clone(),
                    now + Duration::from_secs(remaining),
                    now,
                );
                Verdict::Allow(identity)
            }
            Err(description) => self.unauthorized(description),
        }
    }

    async fn verify(&self, token: &str) -> Result<(Identity, u64), &'static str> {
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
                    Some(kid) if !set.knows_kid(kid) => {
                        match remote.refetch_for_unknown_kid(generation).await {
                            Some(newer) => newer,
                            None => return Err("unknown key id"),
                        }
                    }
                    _ => set,
                }
            }
        };
        let mut outcome = Err("unknown key id");
        for candidate in keys.candidates(kid, header.alg) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &candidate.key, validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
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
        let claims = outcome?;
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
        Ok((Identity { subject, headers }, exp))
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
mod tests {
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
}
