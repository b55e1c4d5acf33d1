//! A route's `auth` (one authenticator or a chain of them) and `require`
//! (the claims a verified token must carry).

use super::Reader;
use crate::model::Require;
use crate::tree::{Node, Table, Value};

impl Reader<'_> {
    /// `auth = "a"` or `auth = ["a", "b"]`: the authenticators, in order.
    pub(super) fn auth_names(&mut self, node: &Node) -> Vec<String> {
        let help =
            "write auth = \"idp\", or auth = [\"admins\", \"idp\"] for several that must all pass";
        let items: Vec<&Node> = match &node.value {
            Value::String(_) => vec![node],
            Value::Array(items) if !items.is_empty() => items.iter().collect(),
            other => {
                let what = match other {
                    Value::Array(_) => "an empty array",
                    other => other.type_name(),
                };
                self.diags.error_with_help(
                    &node.origin,
                    format!("`auth` must be a name or an array of names, not {what}"),
                    help,
                );
                return Vec::new();
            }
        };
        let mut names: Vec<String> = Vec::new();
        for item in items {
            match &item.value {
                Value::String(name) if names.contains(name) => self.diags.error_with_help(
                    &item.origin,
                    format!("`auth` names {name:?} twice"),
                    "name each authenticator once",
                ),
                Value::String(name) => names.push(name.clone()),
                other => self.diags.error_with_help(
                    &item.origin,
                    format!("`auth` must hold names, not {}", other.type_name()),
                    help,
                ),
            }
        }
        names
    }

    /// `require = { CLAIM_PATH = [VALUES] }`.
    pub(super) fn require(&mut self, node: &Node) -> Option<Require> {
        let example =
            "write require = { scope = [\"$SETUP\"], \"realm_access.roles\" = [\"admin\"] }";
        let Value::Table(table) = &node.value else {
            self.diags.error_with_help(
                &node.origin,
                format!("`require` must be a table, not {}", node.value.type_name()),
                example,
            );
            return None;
        };
        if table.entries.is_empty() {
            self.diags.error_with_help(
                &node.origin,
                "`require` is empty, so it requires nothing",
                "remove it, or list claims and values",
            );
            return None;
        }
        // `realm_access.roles = [..]` unquoted is a dotted TOML key, read as
        // nested tables: it means the same path as the quoted spelling.
        let mut flat = Vec::new();
        let mut pending: Vec<(String, &Table)> = vec![(String::new(), table)];
        while let Some((prefix, table)) = pending.pop() {
            for (key, value) in &table.entries {
                let path = format!("{prefix}{}", key.name);
                match &value.value {
                    Value::Table(inner) if !inner.entries.is_empty() => {
                        pending.push((format!("{path}."), inner));
                    }
                    _ => flat.push((path, key, value)),
                }
            }
        }
        let mut claims = Vec::new();
        for (path, key, value) in flat {
            let path = path.as_str();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("`require`: {path:?} is not a claim path"),
                    "write a claim name, or names joined by '.' into nested objects, as \"realm_access.roles\"",
                );
                continue;
            }
            let items = match &value.value {
                Value::Array(items) if !items.is_empty() => items,
                _ => {
                    self.diags.error_with_help(
                        &value.origin,
                        format!("`require`: {path:?} must list the values it needs"),
                        example,
                    );
                    continue;
                }
            };
            let mut values = Vec::new();
            for item in items {
                match &item.value {
                    Value::String(v) if usable_value(v) => values.push(v.clone()),
                    Value::String(v) => self.diags.error_with_help(
                        &item.origin,
                        format!("`require`: {v:?} cannot be a claim value"),
                        "values are single words: no spaces, quotes, backslashes or control characters",
                    ),
                    other => self.diags.error(
                        &item.origin,
                        format!("`require`: values must be strings, not {}", other.type_name()),
                    ),
                }
            }
            claims.push((path.to_string(), values));
        }
        Some(Require {
            claims,
            origin: node.origin.clone(),
        })
    }
}

/// A value `require` can look for: one word, safe to quote in a challenge.
fn usable_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\')
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    fn route(body: &str) -> String {
        plain(&format!(
            "[[routes]]\nname = \"r\"\nupstream = \"data\"\n{body}\n"
        ))
    }

    #[test]
    fn auth_chains_and_requirements_are_read() {
        let dir = Dir::new();
        let text = plain("[auth.a]\ntype = \"jwt\"\nsecret_env = \"S\"\n\n[auth.b]\ntype = \"jwt\"\nsecret_env = \"S\"\n\n[[routes]]\nname = \"one\"\nupstream = \"data\"\nauth = \"a\"\nrequire = { scope = [\"$SETUP\", \"MAIL\"], \"realm_access.roles\" = [\"admin\"], resource_access.domino.roles = [\"ops\"] }\n\n[[routes]]\nname = \"two\"\npath_prefix = \"/x\"\nupstream = \"data\"\nauth = [\"b\", \"a\"]\n");
        let routes = accepted(dir.load(&text, &[]), "chains").config.routes;
        assert_eq!(routes[0].auth, ["a"]);
        let mut claims = routes[0].require.as_ref().expect("require").claims.clone();
        claims.sort();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            claims,
            [
                ("realm_access.roles".to_string(), strings(&["admin"])),
                (
                    "resource_access.domino.roles".to_string(),
                    strings(&["ops"])
                ),
                ("scope".to_string(), strings(&["$SETUP", "MAIL"])),
            ]
        );
        assert_eq!(routes[1].auth, ["b", "a"], "in the order written");
        assert!(routes[1].require.is_none());
    }

    #[test]
    fn auth_and_require_problems() {
        let jwt = "[auth.a]\ntype = \"jwt\"\nsecret_env = \"S\"\n\n";
        let with = |body: &str| {
            plain(&format!(
                "{jwt}[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"a\"\n{body}\n"
            ))
        };
        run_cases(vec![
            case(
                "auth as a number",
                route("auth = 3"),
                "auth = |3",
                "`auth` must be a name or an array of names, not an integer",
                Some("auth = [\"admins\", \"idp\"]"),
            ),
            case(
                "auth as an empty array",
                route("auth = []"),
                "auth = |[]",
                "`auth` must be a name or an array of names, not an empty array",
                None,
            ),
            case(
                "auth naming one twice",
                plain(&format!(
                    "{jwt}[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = [\"a\", \"a\"]\n"
                )),
                "auth = [\"a\", |\"a\"]",
                "`auth` names \"a\" twice",
                Some("name each authenticator once"),
            ),
            case(
                "require as a list",
                with("require = [\"scope\"]"),
                "require = |[",
                "`require` must be a table, not an array",
                Some("realm_access.roles"),
            ),
            case(
                "require that is empty",
                with("require = {}"),
                "require = |{}",
                "`require` is empty, so it requires nothing",
                Some("remove it"),
            ),
            case(
                "require with a single string",
                with("require = { scope = \"x\" }"),
                "scope = |\"x\"",
                "`require`: \"scope\" must list the values it needs",
                None,
            ),
            case(
                "require with an empty path segment",
                with("require = { \"realm_access..roles\" = [\"x\"] }"),
                "|\"realm_access..roles\"",
                "`require`: \"realm_access..roles\" is not a claim path",
                Some("joined by '.'"),
            ),
            case(
                "require with a value holding a space",
                with("require = { scope = [\"a b\"] }"),
                "|\"a b\"",
                "`require`: \"a b\" cannot be a claim value",
                Some("single words"),
            ),
        ]);
    }
}
