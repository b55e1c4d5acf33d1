//! `[upstreams.NAME]` and their `[upstreams.NAME.health]` checks.

use postern_policy::host::HostPattern;

use super::{valid_name, Reader};
use crate::diag::Origin;
use crate::fields::{as_table, Fields};
use crate::model::*;
use crate::tree::{Node, Table};

pub const UPSTREAM_KEYS: &[&str] = &[
    "url",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "idle_timeout",
    "ca",
    "client_cert",
    "client_key",
    "health",
    "required",
    "servers",
    "balance",
    "hash_key",
    "resolve_interval",
];
pub const HEALTH_KEYS: &[&str] = &[
    "path",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
];

impl Reader<'_> {
    pub(super) fn upstreams(&mut self, node: Option<&Node>) -> Vec<Upstream> {
        let Some(table) = as_table(node, "[upstreams]", self.diags) else {
            return Vec::new();
        };
        let mut upstreams = Vec::new();
        for (key, node) in &table.entries {
            let section = format!("[upstreams.{}]", key.name);
            let Some(t) = as_table(Some(node), &section, self.diags) else {
                continue;
            };
            if !valid_name(&key.name) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("upstream name {:?} is not a plain name", key.name),
                    "use letters, digits, '-' and '_'",
                );
            }
            let mut f = Fields::new(t, section.clone(), UPSTREAM_KEYS);
            let url = f.string("url", self.diags);
            let servers = f.strings("servers", self.diags);
            let balance = f.string("balance", self.diags);
            let hash_key = f.string("hash_key", self.diags);
            let resolve_interval =
                f.duration("resolve_interval", DEFAULT_RESOLVE_INTERVAL, self.diags);
            let connect_timeout =
                f.duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT, self.diags);
            let read_timeout = f.duration("read_timeout", DEFAULT_READ_TIMEOUT, self.diags);
            let write_timeout = f.duration("write_timeout", DEFAULT_WRITE_TIMEOUT, self.diags);
            let idle_timeout = f.duration("idle_timeout", DEFAULT_IDLE_TIMEOUT, self.diags);
            let required = f
                .boolean("required", self.diags)
                .is_some_and(|(required, _)| required);
            let ca = f.string("ca", self.diags);
            let client_cert = f.string("client_cert", self.diags);
            let client_key = f.string("client_key", self.diags);
            let health = f
                .table("health", self.diags)
                .and_then(|(t, at)| self.health_check(t, at, &section));
            f.finish(self.diags);

            let (balance, hash_key) = self.pool_balance(&section, balance, hash_key);
            let Some(pool) = self.pool_servers(&section, &node.origin, url, servers) else {
                self.refused.upstreams.insert(key.name.clone());
                continue;
            };
            let scheme = pool.scheme;
            let Some(first) = pool.servers.first().cloned() else {
                continue;
            };
            let ca = match ca {
                Some((_, at)) if scheme == Scheme::Http => {
                    self.diags.error_with_help(
                        at,
                        "`ca` is only used with an https:// upstream",
                        "remove `ca`, or use an https:// url",
                    );
                    None
                }
                Some((path, at)) => self.existing_file(path, at, "ca"),
                None => None,
            };
            let client_identity = match (client_cert, client_key) {
                (None, None) => None,
                (Some((_, at)), _) | (_, Some((_, at))) if scheme == Scheme::Http => {
                    self.diags.error_with_help(
                        at,
                        "a client certificate is only sent to an https:// upstream",
                        "remove client_cert and client_key, or use an https:// url",
                    );
                    None
                }
                (Some((cert, cert_at)), Some((key, key_at))) => {
                    let cert = self.existing_file(cert, cert_at, "client_cert");
                    let key = self.existing_file(key, key_at, "client_key");
                    cert.zip(key)
                }
                (Some((_, at)), None) | (None, Some((_, at))) => {
                    self.diags.error_with_help(
                        at,
                        "upstream mTLS needs both client_cert and client_key",
                        "add client_cert = \"certs/gateway-client.pem\" and client_key = \"certs/gateway-client.key\"",
                    );
                    None
                }
            };
            upstreams.push(Upstream {
                name: key.name.clone(),
                url: first.url,
                scheme,
                host: first.host,
                port: first.port,
                servers: pool.servers,
                balance,
                hash_key,
                resolve_interval,
                connect_timeout,
                read_timeout,
                write_timeout,
                idle_timeout,
                ca,
                client_identity,
                health,
                required,
                origin: node.origin.clone(),
            });
        }
        upstreams
    }

    fn health_check(&mut self, t: &Table, at: &Origin, upstream: &str) -> Option<HealthCheck> {
        let section = format!("{}.health", upstream.trim_end_matches(']')) + "]";
        let mut f = Fields::new(t, section.clone(), HEALTH_KEYS);
        let path = f.required_string("path", at, "path = \"/health\"", self.diags);
        let interval = f.duration("interval", DEFAULT_HEALTH_INTERVAL, self.diags);
        let timeout = f.duration("timeout", DEFAULT_HEALTH_TIMEOUT, self.diags);
        let healthy_threshold = f.integer_in(
            "healthy_threshold",
            1..=100,
            DEFAULT_HEALTHY_THRESHOLD,
            self.diags,
        );
        let unhealthy_threshold = f.integer_in(
            "unhealthy_threshold",
            1..=100,
            DEFAULT_UNHEALTHY_THRESHOLD,
            self.diags,
        );
        f.finish(self.diags);
        let (path, path_at) = path?;
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            self.diags.error_with_help(
                path_at,
                format!("health check path {path:?} is not an absolute path"),
                "write e.g. path = \"/health\"",
            );
            return None;
        }
        if timeout >= interval {
            self.diags.error_with_help(
                at,
                format!("{section}: timeout must be shorter than interval"),
                "e.g. interval = \"5s\", timeout = \"2s\"",
            );
        }
        Some(HealthCheck {
            path: path.to_string(),
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
        })
    }

    /// The scheme, host and port of `url`, which may name nothing else.
    pub(super) fn upstream_url(
        &mut self,
        url: &str,
        origin: &Origin,
    ) -> Option<(Scheme, String, u16)> {
        let help = "write http://HOST:PORT or https://HOST:PORT, e.g. \"http://127.0.0.1:8880\"";
        let scheme_is = |prefix: &str| {
            url.get(..prefix.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
        };
        let (scheme, rest) = if scheme_is("http://") {
            (Scheme::Http, &url["http://".len()..])
        } else if scheme_is("https://") {
            (Scheme::Https, &url["https://".len()..])
        } else {
            self.diags.error_with_help(
                origin,
                format!("upstream url {url:?} must start with http:// or https://"),
                help,
            );
            return None;
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            self.diags.error_with_help(
                origin,
                format!("upstream url {url:?} may name only a scheme, host and port"),
                "paths belong to routes: use path_prefix and strip_prefix",
            );
            return None;
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        // `[v6]`, `[v6]:port`, `host` or `host:port`.
        let (host, port_text) = match authority.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((v6, "")) => (v6, None),
                Some((v6, after)) => match after.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => ("", None),
                },
                None => ("", None),
            },
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port_text {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    self.diags.error_with_help(
                        origin,
                        format!("upstream url {url:?} has a bad port {p:?}"),
                        help,
                    );
                    return None;
                }
            },
        };
        let valid = host.parse::<std::net::IpAddr>().is_ok()
            || HostPattern::parse(host).is_ok_and(|p| !p.is_wildcard());
        if host.is_empty() || !valid {
            self.diags.error_with_help(
                origin,
                format!("upstream url {url:?} has no valid host"),
                help,
            );
            return None;
        }
        Some((scheme, host.to_ascii_lowercase(), port))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::*;

    fn upstream(body: &str) -> String {
        plain(&format!("[upstreams.slow]\n{body}\n"))
    }

    #[test]
    fn urls_give_scheme_host_and_port() {
        let dir = Dir::new();
        let text = plain(
            "[upstreams.v6]\nurl = \"http://[::1]\"\n\n[upstreams.v6port]\nurl = \"http://[::1]:8880\"\n\n[upstreams.secure]\nurl = \"HTTPS://Backend.Example.com/\"\n",
        );
        let config = accepted(dir.load(&text, &[]), "three upstreams").config;
        let got: Vec<_> = config
            .upstreams
            .iter()
            .map(|u| {
                (
                    u.name.as_str(),
                    u.url.as_str(),
                    u.scheme,
                    u.host.as_str(),
                    u.port,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("v6", "http://[::1]", Scheme::Http, "::1", 80),
                ("v6port", "http://[::1]:8880", Scheme::Http, "::1", 8880),
                (
                    "secure",
                    "HTTPS://Backend.Example.com/",
                    Scheme::Https,
                    "backend.example.com",
                    443
                ),
                (
                    "data",
                    "http://127.0.0.1:8880",
                    Scheme::Http,
                    "127.0.0.1",
                    8880
                ),
            ]
        );
    }

    #[test]
    fn timeouts_default_and_can_be_set() {
        let dir = Dir::new();
        let text = upstream(
            "url = \"https://127.0.0.1:8443\"\nconnect_timeout = \"500ms\"\nread_timeout = \"5m\"\nrequired = true\n",
        );
        let config = accepted(dir.load(&text, &[]), "durations").config;
        let slow = config.upstream("slow").unwrap();
        assert_eq!(slow.connect_timeout, Duration::from_millis(500));
        assert_eq!(slow.read_timeout, Duration::from_secs(300));
        assert_eq!(slow.write_timeout, DEFAULT_WRITE_TIMEOUT);
        assert_eq!(slow.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert!(slow.required);
        assert!(slow.health.is_none());
        let data = config.upstream("data").unwrap();
        assert_eq!(data.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(data.connect_timeout, Duration::from_secs(2));
        assert_eq!(data.read_timeout, DEFAULT_READ_TIMEOUT);
        assert!(!data.required);
    }

    #[test]
    fn health_checks_default_and_can_be_set() {
        let dir = Dir::new();
        let text = upstream(
            "url = \"http://127.0.0.1:8881\"\n\n[upstreams.slow.health]\npath = \"/ready\"\nunhealthy_threshold = 5\n",
        );
        let config = accepted(dir.load(&text, &[]), "health").config;
        assert_eq!(
            config.upstream("slow").unwrap().health,
            Some(HealthCheck {
                path: "/ready".to_string(),
                interval: DEFAULT_HEALTH_INTERVAL,
                timeout: DEFAULT_HEALTH_TIMEOUT,
                healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
                unhealthy_threshold: 5,
            })
        );
    }

    #[test]
    fn mtls_files_are_taken_from_the_config_directory() {
        let dir = Dir::new();
        dir.write("ca.pem", "x")
            .write("client.pem", "x")
            .write("client.key", "x");
        let text = upstream(
            "url = \"https://127.0.0.1:8443\"\nca = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"\n",
        );
        let config = accepted(dir.load(&text, &[]), "mtls").config;
        let slow = config.upstream("slow").unwrap();
        assert_eq!(slow.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(
            slow.client_identity,
            Some((dir.path().join("client.pem"), dir.path().join("client.key")))
        );
    }

    #[test]
    fn unknown_keys_in_upstreams() {
        run_cases(vec![
            case(
                "[upstreams.x], near",
                upstream("url = \"http://127.0.0.1:8881\"\nconect_timeout = \"2s\""),
                "conect_timeout",
                "unknown key `conect_timeout` in [upstreams.slow]",
                Some("did you mean `connect_timeout`?"),
            ),
            case(
                "[upstreams.x], far",
                upstream("url = \"http://127.0.0.1:8881\"\nretries = 3"),
                "retries",
                "unknown key `retries` in [upstreams.slow]",
                Some("the keys of [upstreams.slow] are: url, connect_timeout"),
            ),
            case(
                "[upstreams.x.health], near",
                upstream(
                    "url = \"http://127.0.0.1:8881\"\nhealth = { path = \"/h\", intervl = \"5s\" }",
                ),
                "intervl",
                "unknown key `intervl` in [upstreams.slow.health]",
                Some("did you mean `interval`?"),
            ),
        ]);
    }

    #[test]
    fn upstream_problems() {
        run_cases(vec![
            case(
                "url without a scheme",
                upstream("url = \"127.0.0.1:8881\""),
                "url = |\"127.0.0.1:8881\"",
                "upstream url \"127.0.0.1:8881\" must start with http:// or https://",
                Some("http://HOST:PORT"),
            ),
            case(
                "url with a path",
                upstream("url = \"http://127.0.0.1:8881/api\""),
                "url = |\"http://127.0.0.1:8881/api\"",
                "may name only a scheme, host and port",
                Some("use path_prefix and strip_prefix"),
            ),
            case(
                "url with a non-numeric port",
                upstream("url = \"http://127.0.0.1:88x1\""),
                "url = |\"http://127.0.0.1:88x1\"",
                "has a bad port \"88x1\"",
                Some("http://HOST:PORT"),
            ),
            case(
                "url with a port above 65535",
                upstream("url = \"http://127.0.0.1:70000\""),
                "url = |\"http://127.0.0.1:70000\"",
                "has a bad port \"70000\"",
                Some("http://HOST:PORT"),
            ),
            case(
                "url with port 0",
                upstream("url = \"http://127.0.0.1:0\""),
                "url = |\"http://127.0.0.1:0\"",
                "has a bad port \"0\"",
                Some("http://HOST:PORT"),
            ),
            case(
                "url with a wildcard host",
                upstream("url = \"http://*.example.com\""),
                "url = |\"http://*.example.com\"",
                "has no valid host",
                Some("http://HOST:PORT"),
            ),
            case(
                "upstream without url",
                upstream("connect_timeout = \"2s\""),
                "[upstreams.slow]",
                "[upstreams.slow] needs `url` or `servers`",
                Some("url = \"http://127.0.0.1:8880\""),
            ),
            case(
                "upstream name that is not plain",
                plain("[upstreams.\"a b\"]\nurl = \"http://127.0.0.1:8881\"\n"),
                "[upstreams.|\"a b\"]",
                "upstream name \"a b\" is not a plain name",
                Some("use letters, digits"),
            ),
            case(
                "duration without a unit",
                upstream("url = \"http://127.0.0.1:8881\"\nconnect_timeout = \"2\""),
                "connect_timeout = |\"2\"",
                "`connect_timeout`: \"2\" has no unit",
                None,
            ),
            case(
                "duration in an unknown unit",
                upstream("url = \"http://127.0.0.1:8881\"\nread_timeout = \"5 parsecs\""),
                "read_timeout = |\"5 parsecs\"",
                "`read_timeout`: \"5 parsecs\" has an unknown unit",
                None,
            ),
            case(
                "duration of zero",
                upstream("url = \"http://127.0.0.1:8881\"\nwrite_timeout = \"0s\""),
                "write_timeout = |\"0s\"",
                "`write_timeout` must be longer than zero",
                None,
            ),
            case(
                "ca on an http upstream",
                upstream("url = \"http://127.0.0.1:8881\"\nca = \"ca.pem\""),
                "ca = |\"ca.pem\"",
                "`ca` is only used with an https:// upstream",
                Some("remove `ca`"),
            )
            .with_files(&["ca.pem"]),
            case(
                "client_cert without client_key",
                upstream("url = \"https://127.0.0.1:8443\"\nclient_cert = \"client.pem\""),
                "client_cert = |\"client.pem\"",
                "upstream mTLS needs both client_cert and client_key",
                Some("client_key = \"certs/gateway-client.key\""),
            )
            .with_files(&["client.pem"]),
            case(
                "client certificate on an http upstream",
                upstream("url = \"http://127.0.0.1:8881\"\nclient_key = \"client.key\""),
                "client_key = |\"client.key\"",
                "a client certificate is only sent to an https:// upstream",
                None,
            ),
        ]);
    }

    #[test]
    fn health_check_problems() {
        let health = |body: &str| {
            upstream(&format!(
                "url = \"http://127.0.0.1:8881\"\n\n[upstreams.slow.health]\n{body}"
            ))
        };
        run_cases(vec![
            case(
                "health check without a path",
                health("interval = \"5s\""),
                "|[upstreams.slow.health]",
                "[upstreams.slow.health] needs `path`",
                Some("path = \"/health\""),
            ),
            case(
                "relative health check path",
                health("path = \"health\""),
                "path = |\"health\"",
                "health check path \"health\" is not an absolute path",
                Some("path = \"/health\""),
            ),
            case(
                "timeout not shorter than interval",
                health("path = \"/h\"\ninterval = \"2s\"\ntimeout = \"2s\""),
                "|[upstreams.slow.health]",
                "[upstreams.slow.health]: timeout must be shorter than interval",
                Some("interval = \"5s\", timeout = \"2s\""),
            ),
            case(
                "threshold out of range",
                health("path = \"/h\"\nhealthy_threshold = 101"),
                "healthy_threshold = |101",
                "`healthy_threshold` = 101 is out of range",
                Some("use 1 to 100"),
            ),
        ]);
    }
}
