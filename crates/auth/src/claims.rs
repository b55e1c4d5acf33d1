//! A route's `require`: values a verified token's claims must hold,
//! compiled once at load and checked against the claims the cache keeps.
//!
//! A claim path is dotted into nested objects (`realm_access.roles`,
//! `resource_access.domino.roles`). A value is present when it is an element
//! of an array claim, or a word of a space-separated string claim (OAuth's
//! `scope`). Every listed value of every path must be present.

use serde_json::{Map, Value};

/// Claims whose values are OAuth scopes, named in the challenge's `scope`.
const SCOPE_CLAIMS: &[&str] = &["scope", "scp"];

/// One path and the values it must hold.
#[derive(Debug, Clone)]
struct Rule {
    path: Vec<String>,
    values: Vec<String>,
}

/// Compiled `require = { CLAIM_PATH = [VALUES] }`.
#[derive(Debug, Clone)]
pub struct Requirement {
    rules: Vec<Rule>,
    /// RFC 6750 §3.1 `scope` attribute: the required scopes, space-separated.
    scope: Option<String>,
}

impl Requirement {
    /// Compiles (dotted path, values) pairs as the config holds them. The
    /// config loader has checked paths and values (no empty segments, no
    /// quotes or spaces in values).
    pub fn new(claims: &[(String, Vec<String>)]) -> Self {
        let rules: Vec<Rule> = claims
            .iter()
            .map(|(path, values)| Rule {
                path: path.split('.').map(str::to_string).collect(),
                values: values.clone(),
            })
            .collect();
        let scopes: Vec<&str> = rules
            .iter()
            .filter(|r| r.path.len() == 1 && SCOPE_CLAIMS.contains(&r.path[0].as_str()))
            .flat_map(|r| r.values.iter().map(String::as_str))
            .collect();
        let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        Requirement { rules, scope }
    }

    /// Whether `claims` hold every required value.
    pub fn is_met(&self, claims: &Map<String, Value>) -> bool {
        self.rules.iter().all(|rule| {
            let Some(claim) = lookup(claims, &rule.path) else {
                return false;
            };
            rule.values.iter().all(|wanted| holds(claim, wanted))
        })
    }

    /// The `WWW-Authenticate` value for a token that falls short (RFC 6750 §3.1).
    pub fn challenge(&self, realm: &str) -> String {
        match &self.scope {
            Some(scope) => {
                format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\"")
            }
            None => format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\""),
        }
    }
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

fn holds(claim: &Value, wanted: &str) -> bool {
    match claim {
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
        Value::String(words) => words.split_ascii_whitespace().any(|w| w == wanted),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn requirement(pairs: &[(&str, &[&str])]) -> Requirement {
        let owned: Vec<(String, Vec<String>)> = pairs
            .iter()
            .map(|(p, v)| (p.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        Requirement::new(&owned)
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn scope_as_a_string_or_an_array() {
        let need = requirement(&[("scope", &["$SETUP", "MAIL"])]);
        assert!(need.is_met(&claims(json!({"scope": "MAIL $DATA $SETUP"}))));
        assert!(need.is_met(&claims(json!({"scope": ["$SETUP", "MAIL"]}))));
        assert!(
            !need.is_met(&claims(json!({"scope": "MAIL $DATA"}))),
            "one missing"
        );
        assert!(
            !need.is_met(&claims(json!({"scope": "MAIL $SETUPX"}))),
            "words, not substrings"
        );
        assert!(
            !need.is_met(&claims(json!({"scope": ["MAIL $SETUP"]}))),
            "array elements whole"
        );
        assert!(!need.is_met(&claims(json!({}))), "claim absent");
        assert!(
            !need.is_met(&claims(json!({"scope": 7}))),
            "not a string or array"
        );
    }

    #[test]
    fn nested_paths() {
        let need = requirement(&[
            ("realm_access.roles", &["admin"]),
            ("resource_access.domino.roles", &["ops"]),
        ]);
        let good = json!({
            "realm_access": {"roles": ["user", "admin"]},
            "resource_access": {"domino": {"roles": ["ops"]}, "other": {"roles": []}},
        });
        assert!(need.is_met(&claims(good)));
        let wrong_client = json!({
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"other": {"roles": ["ops"]}},
        });
        assert!(!need.is_met(&claims(wrong_client)));
        let flat = json!({"realm_access.roles": ["admin"], "resource_access": {"domino": {"roles": ["ops"]}}});
        assert!(
            !need.is_met(&claims(flat)),
            "a dot is a step into an object"
        );
        let not_object =
            json!({"realm_access": "admin", "resource_access": {"domino": {"roles": ["ops"]}}});
        assert!(!need.is_met(&claims(not_object)));
    }

    #[test]
    fn challenges_name_required_scopes() {
        assert_eq!(
            requirement(&[
                ("scope", &["$SETUP", "MAIL"]),
                ("realm_access.roles", &["admin"])
            ])
            .challenge("idp"),
            "Bearer realm=\"idp\", error=\"insufficient_scope\", scope=\"$SETUP MAIL\""
        );
        assert_eq!(
            requirement(&[("realm_access.roles", &["admin"])]).challenge("idp"),
            "Bearer realm=\"idp\", error=\"insufficient_scope\""
        );
    }

    /// The per-request cost of `require`:
    /// `cargo test -p postern-auth --release -- --ignored --nocapture require_cost`.
    #[test]
    #[ignore = "a timing, not a check"]
    fn require_cost() {
        let need = requirement(&[("scope", &["$SETUP"]), ("realm_access.roles", &["admin"])]);
        let token = claims(json!({
            "sub": "u", "scope": "openid profile email MAIL $DATA $DECRYPT $SETUP",
            "realm_access": {"roles": ["offline_access", "uma_authorization", "user", "admin"]},
        }));
        let rounds = 1_000_000;
        let start = std::time::Instant::now();
        let mut met = 0;
        for _ in 0..rounds {
            met += usize::from(need.is_met(std::hint::black_box(&token)));
        }
        let elapsed = start.elapsed();
        assert_eq!(met, rounds);
        println!(
            "require: {rounds} evaluations in {elapsed:?}, {:.0} ns each",
            elapsed.as_nanos() as f64 / rounds as f64
        );
    }
}
