//! A route's `auth = ["a", "b"]` and `require`: every authenticator runs, in
//! order, and the first refusal answers; then the claims the claim-carrying
//! ones verified must meet the route's requirement.
//!
//! The chain only sees [`Authenticator::check`] on [`Credentials`], so a new
//! kind (a client certificate, say) joins it by being an `Authenticator`.

use std::sync::Arc;

use crate::claims::Requirement;
use crate::{Authenticator, Credentials, Denial, Identity, Verdict};

/// The reason counted and logged when `require` is not met.
pub const INSUFFICIENT_SCOPE: &str = "insufficient scope";

/// The authenticators of one route, with its requirement.
pub struct AuthChain {
    steps: Vec<Arc<Authenticator>>,
    require: Option<Requirement>,
    name: String,
}

/// A chain's verdict, and the authenticator that gave it (for the log).
pub struct Decision<'a> {
    /// Allow (every step passed) or the first refusal.
    pub verdict: Verdict,
    /// The refusing authenticator's name, or the chain's on a pass.
    pub by: &'a str,
}

impl AuthChain {
    /// A chain of `steps` (at least one), checking `require` after them.
    pub fn new(steps: Vec<Arc<Authenticator>>, require: Option<Requirement>) -> Option<Self> {
        if steps.is_empty() {
            return None;
        }
        let name = steps.iter().map(|s| s.name()).collect::<Vec<_>>().join("+");
        Some(AuthChain {
            steps,
            require,
            name,
        })
    }

    /// The authenticators' names joined by '+', for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The authenticators, in order.
    pub fn steps(&self) -> &[Arc<Authenticator>] {
        &self.steps
    }

    /// Runs every step on `credentials`; all must pass, then `require`.
    pub async fn check(&self, credentials: &Credentials<'_>) -> Decision<'_> {
        let mut merged = Identity {
            subject: String::new(),
            headers: Vec::new(),
            claims: None,
        };
        let mut claim_sets = Vec::new();
        for step in &self.steps {
            match step.check(credentials).await {
                Verdict::Allow(identity) => {
                    if merged.subject.is_empty() {
                        merged.subject = identity.subject;
                    }
                    merged.headers.extend(identity.headers);
                    if let Some(claims) = identity.claims {
                        claim_sets.push((step.name(), claims));
                    }
                }
                Verdict::Deny(denial) => {
                    return Decision {
                        verdict: Verdict::Deny(denial),
                        by: step.name(),
                    }
                }
            }
        }
        if let Some(require) = &self.require {
            // Every claim-carrying pass must meet it; none at all fails closed.
            let short = match claim_sets.iter().find(|(_, c)| !require.is_met(c)) {
                Some((name, _)) => Some(*name),
                None if claim_sets.is_empty() => Some(self.name.as_str()),
                None => None,
            };
            if let Some(by) = short {
                return Decision {
                    verdict: Verdict::Deny(Denial::Forbidden {
                        challenge: Some(require.challenge(by)),
                        reason: INSUFFICIENT_SCOPE,
                    }),
                    by,
                };
            }
        }
        merged.claims = claim_sets.into_iter().next().map(|(_, c)| c);
        Decision {
            verdict: Verdict::Allow(merged),
            by: &self.name,
        }
    }
}

impl std::fmt::Debug for AuthChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthChain({:?})", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{JwtAuthenticator, JwtSpec, KeySource};
    use crate::keys::secret_key;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use std::time::Duration;

    const SECRET: &[u8] = b"a chain test secret that is long enough for HS256 keys";

    fn jwt(name: &str, claims: &[(&str, &str)]) -> Arc<Authenticator> {
        Arc::new(Authenticator::Jwt(Box::new(JwtAuthenticator::new(
            JwtSpec {
                name: name.to_string(),
                keys: KeySource::Static(Arc::new(
                    secret_key(SECRET, &[Algorithm::HS256]).expect("a key"),
                )),
                issuer: None,
                audiences: Vec::new(),
                algorithms: vec![Algorithm::HS256],
                leeway: Duration::ZERO,
                required_claims: Vec::new(),
                cookie: None,
                claims_to_headers: claims
                    .iter()
                    .map(|(c, h)| (c.to_string(), h.to_string()))
                    .collect(),
            },
        ))))
    }

    fn bearer(claims: serde_json::Value) -> String {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("signed");
        format!("Bearer {token}")
    }

    fn credentials(authorization: &str) -> Credentials<'_> {
        Credentials {
            authorization: Some(authorization.as_bytes()),
            cookies: Vec::new(),
            client: "127.0.0.1".parse().unwrap(),
            client_certificate: None,
        }
    }

    fn need(path: &str, values: &[&str]) -> Option<Requirement> {
        Some(Requirement::new(&[(
            path.to_string(),
            values.iter().map(|v| v.to_string()).collect(),
        )]))
    }

    fn exp() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 300
    }

    #[tokio::test]
    async fn every_step_passes_and_headers_add_up() {
        let chain = AuthChain::new(
            vec![
                jwt("a", &[("sub", "x-user")]),
                jwt("b", &[("email", "x-email")]),
            ],
            need("scope", &["read"]),
        )
        .expect("steps");
        assert_eq!(chain.name(), "a+b");
        let token = bearer(
            serde_json::json!({"sub": "u1", "email": "u@x", "scope": "read write", "exp": exp()}),
        );
        let decision = chain.check(&credentials(&token)).await;
        let Verdict::Allow(identity) = decision.verdict else {
            panic!("refused: {:?}", decision.verdict);
        };
        assert_eq!(identity.subject, "u1");
        assert_eq!(
            identity.headers,
            [
                ("x-user".to_string(), "u1".to_string()),
                ("x-email".to_string(), "u@x".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn the_first_refusal_answers() {
        let basic_like = jwt("second", &[]);
        let chain = AuthChain::new(vec![jwt("first", &[]), basic_like], None).expect("steps");
        let decision = chain.check(&credentials("Bearer not.a.token")).await;
        assert_eq!(decision.by, "first");
        assert!(matches!(
            decision.verdict,
            Verdict::Deny(Denial::Unauthorized { .. })
        ));
    }

    #[tokio::test]
    async fn require_refuses_with_insufficient_scope() {
        let chain =
            AuthChain::new(vec![jwt("idp", &[])], need("scope", &["$SETUP"])).expect("steps");
        let token = bearer(serde_json::json!({"sub": "u1", "scope": "MAIL $DATA", "exp": exp()}));
        let decision = chain.check(&credentials(&token)).await;
        assert_eq!(decision.by, "idp");
        assert_eq!(
            decision.verdict,
            Verdict::Deny(Denial::Forbidden {
                challenge: Some(
                    "Bearer realm=\"idp\", error=\"insufficient_scope\", scope=\"$SETUP\""
                        .to_string()
                ),
                reason: INSUFFICIENT_SCOPE,
            })
        );
        // The same token again comes from the cache: still refused.
        let again = chain.check(&credentials(&token)).await;
        assert!(!again.verdict.is_allowed());
    }

    #[test]
    fn an_empty_chain_is_no_chain() {
        assert!(AuthChain::new(Vec::new(), None).is_none());
    }
}
