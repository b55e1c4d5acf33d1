//! `[limits.NAME]`: a rate, a burst and what to count by. The spellings are parsed by
//! postern-limits (the engine that enforces them), so the two can never disagree.

use postern_limits::{LimitKey, Policy, Rate, MAX_COUNT};

use super::{valid_name, Reader};
use crate::fields::{as_table, Fields};
use crate::model::Limit;
use crate::tree::Node;

pub const LIMIT_KEYS: &[&str] = &["rate", "burst", "key"];

impl Reader<'_> {
    pub(super) fn limits(&mut self, node: Option<&Node>) -> Vec<Limit> {
        let Some(table) = as_table(node, "[limits]", self.diags) else {
            return Vec::new();
        };
        let mut limits = Vec::new();
        for (key, node) in &table.entries {
            let section = format!("[limits.{}]", key.name);
            let Some(t) = as_table(Some(node), &section, self.diags) else {
                self.refused.limits.insert(key.name.clone());
                continue;
            };
            let mut f = Fields::new(t, section.clone(), LIMIT_KEYS);
            let rate = f.required_string("rate", &node.origin, "rate = \"10/m\"", self.diags);
            let burst = f.integer("burst", self.diags);
            let limit_key = f.string("key", self.diags);
            f.finish(self.diags);

            let mut ok = true;
            if !valid_name(&key.name) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("limit name {:?} is not a plain name", key.name),
                    "use letters, digits, '-' and '_'; the name is sent in the RateLimit headers",
                );
                ok = false;
            }
            let rate = match rate.map(|(text, at)| (text.parse::<Rate>(), at)) {
                Some((Ok(rate), _)) => Some(rate),
                Some((Err(message), at)) => {
                    self.diags.error_with_help(
                        at,
                        format!("{section}: {message}"),
                        "write e.g. rate = \"10/m\" (10 a minute), \"5/s\" or \"100/h\"",
                    );
                    None
                }
                None => None,
            };
            let burst = match burst {
                None => None,
                Some((n, _)) if (1..=i64::from(MAX_COUNT)).contains(&n) => Some(n as u32),
                Some((n, at)) => {
                    self.diags.error_with_help(
                        at,
                        format!("{section}: `burst` = {n} is out of range"),
                        format!("use 1 to {MAX_COUNT}: how many requests may come at once; leave it out to allow the rate's count"),
                    );
                    ok = false;
                    None
                }
            };
            let limit_key = match limit_key.map(|(text, at)| (text.parse::<LimitKey>(), at)) {
                None => Some(LimitKey::Client),
                Some((Ok(parsed), _)) => Some(parsed),
                Some((Err(message), at)) => {
                    self.diags.error_with_help(
                        at,
                        format!("{section}: {message}"),
                        "use key = \"client\" (the client address), \"header:X-Api-Key\", \"claim:sub\" (routes with a JWT authenticator) or \"route\" (one bucket for everybody)",
                    );
                    None
                }
            };
            let (Some(rate), Some(limit_key), true) = (rate, limit_key, ok) else {
                self.refused.limits.insert(key.name.clone());
                continue;
            };
            match Policy::new(&key.name, rate, burst) {
                Ok(policy) => limits.push(Limit {
                    name: key.name.clone(),
                    policy,
                    key: limit_key,
                    origin: node.origin.clone(),
                }),
                Err(message) => {
                    self.diags
                        .error(&node.origin, format!("{section}: {message}"));
                    self.refused.limits.insert(key.name.clone());
                }
            }
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use postern_limits::LimitKey;

    use crate::testing::*;

    #[test]
    fn limits_are_read_with_their_defaults() {
        let dir = Dir::new();
        let text = plain(
            "[limits.login]\nrate = \"10/m\"\n\n[limits.api]\nrate = \"5/s\"\nburst = 20\nkey = \"header:X-Api-Key\"\n\n[limits.token]\nrate = \"100/h\"\nkey = \"claim:sub\"\n",
        );
        let limits = accepted(dir.load(&text, &[]), "three limits").config.limits;
        assert_eq!(limits.len(), 3);
        let login = &limits[0];
        assert_eq!(login.name, "login");
        assert_eq!(login.key, LimitKey::Client);
        assert_eq!(login.policy.burst().get(), 10);
        assert_eq!(login.policy.rate().interval(), Duration::from_secs(6));
        assert_eq!(
            login.origin.to_string(),
            dir.origin("gateway.toml", &text, "[limits.login]")
        );
        assert_eq!(limits[1].policy.burst().get(), 20);
        assert_eq!(
            limits[1].key,
            LimitKey::Header(http::HeaderName::from_static("x-api-key"))
        );
        assert_eq!(limits[2].key, LimitKey::Claim("sub".into()));
    }

    #[test]
    fn bad_limits_are_refused_where_written() {
        run_cases(vec![
            case(
                "rate without a unit",
                plain("[limits.login]\nrate = \"10\"\n"),
                "rate = |\"10\"",
                "[limits.login]: rate \"10\": expected N/UNIT",
                Some("rate = \"10/m\""),
            ),
            case(
                "rate of zero",
                plain("[limits.login]\nrate = \"0/m\"\n"),
                "rate = |\"0/m\"",
                "the count must be at least 1",
                Some("rate = \"10/m\""),
            ),
            case(
                "rate missing",
                plain("[limits.login]\nburst = 5\n"),
                "|[limits.login]",
                "[limits.login] needs `rate`",
                Some("rate = \"10/m\""),
            ),
            case(
                "burst of zero",
                plain("[limits.login]\nrate = \"10/m\"\nburst = 0\n"),
                "burst = |0",
                "[limits.login]: `burst` = 0 is out of range",
                Some("use 1 to 1000000"),
            ),
            case(
                "unknown key spelling",
                plain("[limits.login]\nrate = \"10/m\"\nkey = \"ip\"\n"),
                "key = |\"ip\"",
                "[limits.login]: key \"ip\": expected \"client\"",
                Some("\"header:X-Api-Key\""),
            ),
            case(
                "unknown key in the table",
                plain("[limits.login]\nrate = \"10/m\"\nbrust = 3\n"),
                "brust",
                "unknown key `brust` in [limits.login]",
                Some("did you mean `burst`?"),
            ),
            case(
                "not a plain name",
                plain("[limits.\"log in\"]\nrate = \"10/m\"\n"),
                "[limits.|\"log in\"]",
                "limit name \"log in\" is not a plain name",
                Some("RateLimit headers"),
            ),
        ]);
    }
}
