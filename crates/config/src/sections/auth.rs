//! `[auth.NAME]`: named authenticators, told apart by `type`. This file reads
//! the table of them and the basic kind; the jwt kind is in `jwt.rs`.

use super::{valid_name, Reader};
use crate::diag::Origin;
use crate::fields::{as_table, Fields};
use crate::model::*;
use crate::tree::{Node, Table, Value};

pub use super::client_cert::CLIENT_CERT_KEYS;
pub use super::introspection::INTROSPECTION_KEYS;
pub use super::jwt::JWT_KEYS;

pub const BASIC_KEYS: &[&str] = &[
    "type",
    "realm",
    "users",
    "htpasswd",
    "max_failures",
    "backoff_initial",
    "backoff_max",
    "cache_ttl",
];

impl Reader<'_> {
    pub(super) fn authenticators(&mut self, node: Option<&Node>) -> Vec<Authenticator> {
        let Some(table) = as_table(node, "[auth]", self.diags) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, node) in &table.entries {
            let section = format!("[auth.{}]", key.name);
            let Some(t) = as_table(Some(node), &section, self.diags) else {
                continue;
            };
            if !valid_name(&key.name) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("authenticator name {:?} is not a plain name", key.name),
                    "use letters, digits, '-' and '_'",
                );
            }
            let kind = match t.get("type").map(|n| &n.value) {
                Some(Value::String(k)) if k == "jwt" => {
                    self.jwt(t, &section, &node.origin).map(AuthKind::Jwt)
                }
                Some(Value::String(k)) if k == "basic" => {
                    self.basic(t, &section, &node.origin).map(AuthKind::Basic)
                }
                Some(Value::String(k)) if k == "client_cert" => self
                    .client_cert(t, &section, &node.origin)
                    .map(AuthKind::ClientCert),
                Some(Value::String(k)) if k == "introspection" => self
                    .introspection(t, &section, &node.origin)
                    .map(AuthKind::Introspection),
                Some(_) => {
                    let at = &t.get("type").expect("matched above").origin;
                    self.diags.error_with_help(
                        at,
                        format!("{section}: unknown `type`"),
                        "use type = \"jwt\", type = \"introspection\", type = \"basic\" or type = \"client_cert\"",
                    );
                    None
                }
                None => {
                    self.diags.error_with_help(
                        &node.origin,
                        format!("{section} needs `type`"),
                        "add type = \"jwt\" (bearer tokens), type = \"introspection\" (opaque tokens, RFC 7662), type = \"basic\" (user and password) or type = \"client_cert\" (TLS client certificates)",
                    );
                    None
                }
            };
            match kind {
                Some(kind) => out.push(Authenticator {
                    name: key.name.clone(),
                    kind,
                    origin: node.origin.clone(),
                }),
                None => {
                    self.refused.auth.insert(key.name.clone());
                }
            }
        }
        out
    }

    fn basic(&mut self, t: &Table, section: &str, origin: &Origin) -> Option<BasicSettings> {
        let mut f = Fields::new(t, section.to_string(), BASIC_KEYS);
        let _ = f.string("type", self.diags);
        let realm = f.string("realm", self.diags);
        let users = f.table("users", self.diags);
        let htpasswd = f.string("htpasswd", self.diags);
        let max_failures = f.integer("max_failures", self.diags);
        let backoff_initial = f.duration("backoff_initial", DEFAULT_BACKOFF_INITIAL, self.diags);
        let backoff_max = f.duration("backoff_max", DEFAULT_BACKOFF_MAX, self.diags);
        let cache_ttl = f.tolerance("cache_ttl", DEFAULT_AUTH_CACHE_TTL, self.diags);
        f.finish(self.diags);

        let mut accounts = Vec::new();
        if let Some((table, _)) = users {
            for (user, node) in &table.entries {
                match &node.value {
                    Value::String(hash) => accounts.push(BasicUser {
                        user: user.name.clone(),
                        hash: hash.clone(),
                        origin: node.origin.clone(),
                    }),
                    other => self.diags.error(
                        &node.origin,
                        format!(
                            "the password hash of user {:?} must be a string, not {}",
                            user.name,
                            other.type_name()
                        ),
                    ),
                }
                if user.name.is_empty() || user.name.contains(':') {
                    self.diags.error(
                        &user.origin,
                        format!("user name {:?} cannot be empty or contain ':'", user.name),
                    );
                }
            }
        }
        let htpasswd = htpasswd.and_then(|(p, at)| self.existing_file(p, at, "htpasswd"));
        if accounts.is_empty() && htpasswd.is_none() && !self.diags.has_errors() {
            self.diags.error_with_help(
                origin,
                format!("{section} has no accounts"),
                "add users = { admin = \"<hash from `postern hash-password`>\" } or htpasswd = \"secrets/ops.htpasswd\"",
            );
        }
        // Its help is worded unlike `Fields::integer_in`'s, so it is read here.
        let max_failures = match max_failures {
            Some((n, _)) if (1..=1000).contains(&n) => n as u32,
            Some((n, at)) => {
                self.diags.error_with_help(
                    at,
                    format!("max_failures = {n} is out of range"),
                    "use 1 to 1000",
                );
                DEFAULT_MAX_FAILURES
            }
            None => DEFAULT_MAX_FAILURES,
        };
        if backoff_max < backoff_initial {
            self.diags.error(
                origin,
                format!("{section}: backoff_max is shorter than backoff_initial"),
            );
        }
        let realm = realm.map_or_else(
            || default_realm(section),
            |(r, at)| {
                if r.contains(['"', '\\']) || r.chars().any(char::is_control) {
                    self.diags.error(
                        at,
                        "realm cannot contain quotes, backslashes or control characters",
                    );
                }
                r.to_string()
            },
        );
        Some(BasicSettings {
            realm,
            users: accounts,
            htpasswd,
            max_failures,
            backoff_initial,
            backoff_max,
            cache_ttl,
        })
    }
}

/// "[auth.ops]" -> "ops", the default realm.
fn default_realm(section: &str) -> String {
    section
        .trim_start_matches("[auth.")
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

    fn basic(config: &Config, name: &str) -> BasicSettings {
        match &config.authenticator(name).expect("defined").kind {
            AuthKind::Basic(b) => b.clone(),
            other => panic!("{name} is {other:?}"),
        }
    }

    #[test]
    fn basic_defaults_and_settings() {
        let dir = Dir::new();
        dir.write("ops.htpasswd", "admin:x\n");
        let text = plain(&format!(
            "[auth.ops]\ntype = \"basic\"\nusers = {{ admin = \"{HASH}\" }}\n\n[auth.team]\ntype = \"basic\"\nrealm = \"Team\"\nhtpasswd = \"ops.htpasswd\"\nmax_failures = 10\nbackoff_initial = \"2s\"\nbackoff_max = \"1m\"\ncache_ttl = \"0s\"\n"
        ));
        let config = accepted(dir.load(&text, &[]), "two basic authenticators").config;
        let ops = basic(&config, "ops");
        assert_eq!(ops.realm, "ops", "the name is the default realm");
        assert_eq!(ops.users.len(), 1);
        assert_eq!(
            (ops.users[0].user.as_str(), ops.users[0].hash.as_str()),
            ("admin", HASH)
        );
        assert_eq!(ops.max_failures, DEFAULT_MAX_FAILURES);
        assert_eq!(ops.backoff_initial, DEFAULT_BACKOFF_INITIAL);
        assert_eq!(ops.backoff_max, DEFAULT_BACKOFF_MAX);
        assert_eq!(ops.cache_ttl, DEFAULT_AUTH_CACHE_TTL);
        let team = basic(&config, "team");
        assert_eq!(team.realm, "Team");
        assert_eq!(team.htpasswd, Some(dir.path().join("ops.htpasswd")));
        assert_eq!(team.max_failures, 10);
        assert_eq!(team.backoff_initial, Duration::from_secs(2));
        assert_eq!(team.backoff_max, Duration::from_secs(60));
        assert_eq!(
            team.cache_ttl,
            Duration::ZERO,
            "a cache lifetime may be zero"
        );
    }

    #[test]
    fn authenticator_table_problems() {
        run_cases(vec![
            case(
                "unknown authenticator type",
                plain("[auth.ops]\ntype = \"ldap\"\n"),
                "type = |\"ldap\"",
                "unknown `type`",
                Some("type = \"jwt\", type = \"introspection\", type = \"basic\" or type = \"client_cert\""),
            ),
            case(
                "authenticator without a type",
                plain("[auth.ops]\nrealm = \"x\"\n"),
                "|[auth.ops]",
                "[auth.ops] needs `type`",
                Some("type = \"basic\" (user and password)"),
            ),
            case(
                "authenticator name that is not plain",
                plain(&format!(
                    "[auth.\"o p\"]\ntype = \"basic\"\nusers = {{ admin = \"{HASH}\" }}\n"
                )),
                "[auth.|\"o p\"]",
                "authenticator name \"o p\" is not a plain name",
                Some("use letters, digits"),
            ),
        ]);
    }

    #[test]
    fn basic_problems() {
        let ops = |body: &str| plain(&format!("[auth.ops]\ntype = \"basic\"\n{body}\n"));
        run_cases(vec![
            case(
                "basic auth without accounts",
                ops("realm = \"management\""),
                "|[auth.ops]",
                "[auth.ops] has no accounts",
                Some("postern hash-password"),
            ),
            case(
                "a hash that is not a string",
                ops("users = { admin = 3 }"),
                "admin = |3",
                "the password hash of user \"admin\" must be a string, not an integer",
                None,
            ),
            case(
                "user name with a colon",
                ops(&format!("users = {{ \"a:b\" = \"{HASH}\" }}")),
                "|\"a:b\"",
                "user name \"a:b\" cannot be empty or contain ':'",
                None,
            ),
            case(
                "htpasswd file missing",
                ops("htpasswd = \"ops.htpasswd\""),
                "htpasswd = |\"ops.htpasswd\"",
                "`htpasswd` = \"ops.htpasswd\": cannot read",
                None,
            ),
            case(
                "max_failures out of range",
                ops(&format!("users = {{ admin = \"{HASH}\" }}\nmax_failures = 0")),
                "max_failures = |0",
                "max_failures = 0 is out of range",
                Some("use 1 to 1000"),
            ),
            case(
                "backoff_max shorter than backoff_initial",
                ops(&format!("users = {{ admin = \"{HASH}\" }}\nbackoff_initial = \"1m\"\nbackoff_max = \"1s\"")),
                "|[auth.ops]",
                "[auth.ops]: backoff_max is shorter than backoff_initial",
                None,
            ),
            case(
                "realm with a quote",
                ops(&format!("users = {{ admin = \"{HASH}\" }}\nrealm = 'a\"b'")),
                "realm = |'a",
                "realm cannot contain quotes, backslashes or control characters",
                None,
            ),
            case(
                "backoff_initial of zero",
                ops(&format!("users = {{ admin = \"{HASH}\" }}\nbackoff_initial = \"0s\"")),
                "backoff_initial = |\"0s\"",
                "`backoff_initial` must be longer than zero",
                None,
            ),
        ]);
    }
}
