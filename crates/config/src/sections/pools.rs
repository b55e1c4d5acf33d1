//! The pool keys of `[upstreams.NAME]`: `servers` (or `url`, a pool of
//! one), `balance` and `hash_key`.

use super::Reader;
use crate::diag::Origin;
use crate::model::*;

const SERVERS_EXAMPLE: &str = "servers = [\"http://10.0.0.11:8080\", \"http://10.0.0.12:8080\"]";

/// What [`Reader::pool_servers`] found: the scheme every server shares and
/// the servers in the order written.
pub(super) struct PoolServers {
    pub scheme: Scheme,
    pub servers: Vec<ServerAddress>,
}

impl Reader<'_> {
    /// `url` or `servers`: exactly one of them, every server parsed, one
    /// scheme for all, none twice.
    pub(super) fn pool_servers(
        &mut self,
        section: &str,
        table_at: &Origin,
        url: Option<(&str, &Origin)>,
        servers: Option<(Vec<(&str, &Origin)>, &Origin)>,
    ) -> Option<PoolServers> {
        let written: Vec<(&str, &Origin)> = match (url, servers) {
            (None, None) => {
                self.diags.error_with_help(
                    table_at,
                    format!("{section} needs `url` or `servers`"),
                    format!("add e.g. url = \"http://127.0.0.1:8880\", or {SERVERS_EXAMPLE}"),
                );
                return None;
            }
            (Some(_), Some((_, at))) => {
                self.diags.error_with_help(
                    at,
                    format!("{section} has both `url` and `servers`"),
                    "keep one: `url` for a single server, `servers` for a pool",
                );
                return None;
            }
            (Some(url), None) => vec![url],
            (None, Some((list, at))) if list.is_empty() => {
                self.diags.error_with_help(
                    at,
                    format!("`servers` in {section} lists no server"),
                    format!("list one or more, e.g. {SERVERS_EXAMPLE}"),
                );
                return None;
            }
            (None, Some((list, _))) => list,
        };
        let mut scheme = None;
        let mut parsed: Vec<ServerAddress> = Vec::new();
        let mut ok = true;
        for (text, at) in written {
            let Some((this_scheme, host, port)) = self.upstream_url(text, at) else {
                ok = false;
                continue;
            };
            match scheme {
                None => scheme = Some(this_scheme),
                Some(first) if first != this_scheme => {
                    self.diags.error_with_help(
                        at,
                        format!("server {text:?} does not use the scheme of the first server"),
                        "a pool's servers are all http:// or all https://",
                    );
                    ok = false;
                    continue;
                }
                Some(_) => {}
            }
            if parsed.iter().any(|s| s.host == host && s.port == port) {
                self.diags.error_with_help(
                    at,
                    format!("server {text:?} is listed twice in {section}"),
                    "list each server once",
                );
                ok = false;
                continue;
            }
            parsed.push(ServerAddress {
                url: text.to_string(),
                host,
                port,
            });
        }
        Some(PoolServers {
            scheme: scheme.filter(|_| ok)?,
            servers: parsed,
        })
    }

    /// `balance` and `hash_key`, which only go together.
    pub(super) fn pool_balance(
        &mut self,
        section: &str,
        balance: Option<(&str, &Origin)>,
        hash_key: Option<(&str, &Origin)>,
    ) -> (Balance, Option<HashKey>) {
        let chosen = match balance {
            None => Balance::RoundRobin,
            Some(("round_robin", _)) => Balance::RoundRobin,
            Some(("least_requests", _)) => Balance::LeastRequests,
            Some(("hash", _)) => Balance::Hash,
            Some((other, at)) => {
                self.diags.error_with_help(
                    at,
                    format!("`balance` = {other:?} is not a balancing method"),
                    "use \"round_robin\" (the default), \"least_requests\" or \"hash\"",
                );
                Balance::RoundRobin
            }
        };
        let key = hash_key.and_then(|(text, at)| {
            let key = parse_hash_key(text);
            if key.is_none() {
                self.diags.error_with_help(
                    at,
                    format!("`hash_key` = {text:?} is not cookie:NAME, header:NAME or client"),
                    "write e.g. hash_key = \"cookie:AUTH_SESSION_ID\"",
                );
            }
            key.map(|key| (key, at))
        });
        match (chosen, key, hash_key) {
            (Balance::Hash, Some((key, _)), _) => (chosen, Some(key)),
            (Balance::Hash, None, None) => {
                let at = balance.map(|(_, at)| at).expect("hash was written");
                self.diags.error_with_help(
                    at,
                    format!("balance = \"hash\" in {section} needs `hash_key`"),
                    "add e.g. hash_key = \"cookie:AUTH_SESSION_ID\"",
                );
                (chosen, None)
            }
            (_, Some((_, at)), _) => {
                self.diags.error_with_help(
                    at,
                    "`hash_key` is only used with balance = \"hash\"",
                    "add balance = \"hash\", or remove hash_key",
                );
                (chosen, None)
            }
            _ => (chosen, None),
        }
    }
}

/// `cookie:NAME`, `header:NAME` or `client`; names are HTTP tokens.
fn parse_hash_key(text: &str) -> Option<HashKey> {
    let token = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match text.split_once(':') {
        None if text == "client" => Some(HashKey::Client),
        Some(("cookie", name)) if token(name) => Some(HashKey::Cookie(name.to_string())),
        Some(("header", name)) if token(name) => Some(HashKey::Header(name.to_ascii_lowercase())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::*;

    fn upstream(body: &str) -> String {
        plain(&format!("[upstreams.kc]\n{body}\n"))
    }

    #[test]
    fn servers_make_a_pool_and_url_a_pool_of_one() {
        let dir = Dir::new();
        let text = upstream(
            "servers = [\"http://10.0.0.11:8080\", \"http://KC-2.internal:8080\"]\nbalance = \"hash\"\nhash_key = \"cookie:AUTH_SESSION_ID\"\nresolve_interval = \"5s\"\n",
        );
        let config = accepted(dir.load(&text, &[]), "a pool").config;
        let kc = config.upstream("kc").unwrap();
        let servers: Vec<_> = kc
            .servers
            .iter()
            .map(|s| (s.url.as_str(), s.host.as_str(), s.port))
            .collect();
        assert_eq!(
            servers,
            [
                ("http://10.0.0.11:8080", "10.0.0.11", 8080),
                ("http://KC-2.internal:8080", "kc-2.internal", 8080)
            ]
        );
        assert_eq!(kc.url, "http://10.0.0.11:8080");
        assert_eq!(kc.balance, Balance::Hash);
        assert_eq!(
            kc.hash_key,
            Some(HashKey::Cookie("AUTH_SESSION_ID".to_string()))
        );
        assert_eq!(kc.resolve_interval, Duration::from_secs(5));

        let data = config.upstream("data").unwrap();
        assert_eq!(data.servers.len(), 1);
        assert_eq!(data.servers[0].url, "http://127.0.0.1:8880");
        assert_eq!(data.balance, Balance::RoundRobin);
        assert_eq!(data.hash_key, None);
        assert_eq!(data.resolve_interval, DEFAULT_RESOLVE_INTERVAL);
    }

    #[test]
    fn hash_keys_and_balances() {
        assert_eq!(parse_hash_key("client"), Some(HashKey::Client));
        assert_eq!(
            parse_hash_key("header:X-Tenant"),
            Some(HashKey::Header("x-tenant".to_string()))
        );
        for bad in ["cookie:", "cookie:a b", "query:x", "Client", "header:a:b"] {
            assert_eq!(parse_hash_key(bad), None, "{bad}");
        }
        let dir = Dir::new();
        let text = upstream("servers = [\"http://10.0.0.11:8080\"]\nbalance = \"least_requests\"");
        let config = accepted(dir.load(&text, &[]), "least_requests").config;
        assert_eq!(
            config.upstream("kc").unwrap().balance,
            Balance::LeastRequests
        );
    }

    #[test]
    fn pool_problems() {
        run_cases(vec![
            case(
                "a pool with no servers",
                upstream("servers = []"),
                "servers = |[]",
                "`servers` in [upstreams.kc] lists no server",
                Some("servers = [\"http://10.0.0.11:8080\""),
            ),
            case(
                "both url and servers",
                upstream("url = \"http://10.0.0.1:80\"\nservers = [\"http://10.0.0.11:8080\"]"),
                "servers = |[",
                "[upstreams.kc] has both `url` and `servers`",
                Some("keep one"),
            ),
            case(
                "neither url nor servers",
                upstream("resolve_interval = \"5s\""),
                "[upstreams.kc]",
                "[upstreams.kc] needs `url` or `servers`",
                Some("servers = ["),
            ),
            case(
                "a bad server url",
                upstream("servers = [\"http://10.0.0.11:8080\", \"10.0.0.12:8080\"]"),
                "|\"10.0.0.12:8080\"",
                "upstream url \"10.0.0.12:8080\" must start with http:// or https://",
                Some("http://HOST:PORT"),
            ),
            case(
                "mixed schemes",
                upstream("servers = [\"http://10.0.0.11:8080\", \"https://10.0.0.12:8443\"]"),
                "|\"https://10.0.0.12:8443\"",
                "does not use the scheme of the first server",
                Some("all http:// or all https://"),
            ),
            case(
                "a server twice",
                upstream("servers = [\"http://10.0.0.11:8080\", \"http://10.0.0.11:8080/\"]"),
                "|\"http://10.0.0.11:8080/\"",
                "is listed twice in [upstreams.kc]",
                Some("list each server once"),
            ),
            case(
                "an unknown balance",
                upstream("servers = [\"http://10.0.0.11:8080\"]\nbalance = \"random\""),
                "balance = |\"random\"",
                "`balance` = \"random\" is not a balancing method",
                Some("\"least_requests\""),
            ),
            case(
                "a bad hash_key",
                upstream(
                    "servers = [\"http://10.0.0.11:8080\"]\nbalance = \"hash\"\nhash_key = \"session\"",
                ),
                "hash_key = |\"session\"",
                "`hash_key` = \"session\" is not cookie:NAME, header:NAME or client",
                Some("hash_key = \"cookie:AUTH_SESSION_ID\""),
            ),
            case(
                "hash_key without balance = hash",
                upstream("servers = [\"http://10.0.0.11:8080\"]\nhash_key = \"client\""),
                "hash_key = |\"client\"",
                "`hash_key` is only used with balance = \"hash\"",
                Some("add balance = \"hash\""),
            ),
            case(
                "balance = hash without hash_key",
                upstream("servers = [\"http://10.0.0.11:8080\"]\nbalance = \"hash\""),
                "balance = |\"hash\"",
                "balance = \"hash\" in [upstreams.kc] needs `hash_key`",
                Some("hash_key = \"cookie:AUTH_SESSION_ID\""),
            ),
        ]);
    }
}
