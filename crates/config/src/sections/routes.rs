//! `[[routes]]`: which requests go where, and under which policies.

use postern_policy::host::HostPattern;
use postern_policy::path::canonicalize;

use super::{valid_name, Reader};
use crate::diag::Origin;
use crate::fields::Fields;
use crate::model::*;
use crate::tree::{Table, Value};

pub const ROUTE_KEYS: &[&str] = &[
    "name",
    "host",
    "path_prefix",
    "strip_prefix",
    "upstream",
    "service",
    "auth",
    "limit",
    "require",
    "allow",
    "deny",
    "listeners",
    "max_body_size",
    "request_buffer",
    "allow_encoded_percent",
    "response_headers",
    "remove_response_headers",
    "forward_client_cert",
];

impl Reader<'_> {
    pub(super) fn route(&mut self, index: usize, table: &Table, origin: &Origin) -> Option<Route> {
        // Named by its name when it has one, so messages point at the route meant.
        let section = match table.get("name").map(|n| &n.value) {
            Some(Value::String(name)) => format!("[[routes]] {name:?}"),
            _ => format!("[[routes]] #{}", index + 1),
        };
        let mut f = Fields::new(table, section.clone(), ROUTE_KEYS);
        let name = f.required_string("name", origin, "name = \"api\"", self.diags);
        let host = f.string("host", self.diags);
        let prefix = f.string("path_prefix", self.diags);
        let strip_prefix = f
            .boolean("strip_prefix", self.diags)
            .is_some_and(|(strip, _)| strip);
        let upstream = f.string("upstream", self.diags);
        let service = f.string("service", self.diags);
        let auth = f.node("auth").map(|node| self.auth_names(node));
        let limit = f.string("limit", self.diags);
        let require = f.node("require").and_then(|node| self.require(node));
        let allow = f.strings("allow", self.diags);
        let deny = f.boolean("deny", self.diags).is_some_and(|(deny, _)| deny);
        let listeners = f.strings("listeners", self.diags);
        let max_body_size = f.size("max_body_size", self.diags);
        let request_buffer = f.size("request_buffer", self.diags);
        let allow_encoded_percent = f
            .boolean("allow_encoded_percent", self.diags)
            .is_some_and(|(allow, _)| allow);
        let response_headers = f
            .table("response_headers", self.diags)
            .map(|(table, _)| self.response_headers(table))
            .unwrap_or_default();
        let forward_client_cert = f
            .boolean("forward_client_cert", self.diags)
            .is_some_and(|(forward, _)| forward);
        let remove_response_headers = f
            .strings("remove_response_headers", self.diags)
            .map(|(names, _)| self.remove_response_headers(&names))
            .unwrap_or_default();
        f.finish(self.diags);

        let (name, _) = name?;
        if !valid_name(name) {
            self.diags.error_with_help(
                origin,
                format!("route name {name:?} is not a plain name"),
                "use letters, digits, '-' and '_'; the name shows in logs and metrics",
            );
        }
        let host = match host.map(|(h, at)| (h, at, HostPattern::parse(h))) {
            None => None,
            Some((_, _, Ok(pattern))) => Some(pattern),
            Some((h, at, Err(e))) => {
                self.diags.error_with_help(
                    at,
                    format!("route host {h:?} is not a host name or wildcard: {}", e.reason()),
                    "write \"api.example.com\" or \"*.example.com\" (no scheme, port or path); leave `host` out to match any host",
                );
                // Refused whole: read as "any host" it would collide falsely.
                return None;
            }
        };
        let path_prefix = match prefix {
            Some((p, at)) => self.path_prefix(p, at)?,
            None => DEFAULT_PATH_PREFIX.to_string(),
        };
        let target = match (upstream, service) {
            (Some(_), Some((_, at))) => {
                self.diags.error_with_help(
                    at,
                    "a route has either `upstream` or `service`, not both",
                    "remove one of them",
                );
                return None;
            }
            (Some((u, _)), None) => RouteTarget::Upstream(u.to_string()),
            (None, Some((s, at))) => match s {
                "metrics" => RouteTarget::Service(Service::Metrics),
                "health" => RouteTarget::Service(Service::Health),
                "admin" => RouteTarget::Service(Service::Admin),
                other => {
                    self.diags.error_with_help(
                        at,
                        format!("unknown built-in service {other:?}"),
                        "use service = \"metrics\", \"health\" or \"admin\"",
                    );
                    return None;
                }
            },
            (None, None) if deny => RouteTarget::Nothing,
            (None, None) => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} has no `upstream`"),
                    "add upstream = \"NAME\" naming an [upstreams.NAME] table, or deny = true to refuse the path",
                );
                return None;
            }
        };
        let allow = allow.map(|(entries, _)| self.allowlist(&entries, "allow"));
        if let Some((entries, at)) = &listeners {
            if entries.is_empty() {
                self.diags.error_with_help(
                    at,
                    "`listeners` is empty, so the route is served nowhere",
                    "remove `listeners` to serve the route on every listener",
                );
            }
        }
        let listeners =
            listeners.map(|(entries, _)| entries.iter().map(|(l, _)| l.to_string()).collect());
        Some(Route {
            name: name.to_string(),
            host,
            path_prefix,
            strip_prefix,
            allow_encoded_percent,
            target,
            allow,
            deny,
            max_body_size,
            request_buffer,
            response_headers,
            remove_response_headers,
            auth: auth.unwrap_or_default(),
            forward_client_cert,
            limit: limit.map(|(l, _)| l.to_string()),
            require,
            listeners,
            origin: origin.clone(),
        })
    }

    /// `written` if it is already canonical: requests are matched after
    /// canonicalisation, so any other spelling could never match.
    fn path_prefix(&mut self, written: &str, origin: &Origin) -> Option<String> {
        let help = "write a path such as \"/api\" or \"/api/v1\": it starts with '/', and matches whole segments";
        if written
            .split('/')
            .any(|segment| segment.contains('*') && segment != "*")
        {
            self.diags.error_with_help(
                origin,
                format!("path_prefix {written:?} uses `*` inside a segment"),
                "`*` stands for one whole segment, as in \"/realms/*/protocol\"; it cannot be part of one",
            );
            return None;
        }
        match canonicalize(written) {
            Ok(target) if target.query.is_some() => {
                self.diags.error_with_help(
                    origin,
                    format!("path_prefix {written:?} has a query"),
                    help,
                );
                None
            }
            Ok(target) => {
                let mut canonical = target.path;
                if canonical.len() > 1 && canonical.ends_with('/') {
                    canonical.pop();
                }
                if canonical != written {
                    self.diags.error_with_help(
                        origin,
                        format!("path_prefix {written:?} is not in canonical form"),
                        format!("write {canonical:?}; requests are matched after canonicalisation, so only that spelling can match"),
                    );
                    return None;
                }
                Some(canonical)
            }
            Err(e) => {
                self.diags.error_with_help(
                    origin,
                    format!("path_prefix {written:?} is not a valid path: {e}"),
                    help,
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn route(body: &str) -> String {
        plain(&format!(
            "[[routes]]\nname = \"r\"\nupstream = \"data\"\n{body}\n"
        ))
    }

    #[test]
    fn routes_are_read_with_their_defaults() {
        let dir = Dir::new();
        let text = plain("[[routes]]\nname = \"api\"\nupstream = \"data\"\n\n[[routes]]\nname = \"local\"\nhost = \"*.example.com\"\npath_prefix = \"/realms/*/protocol\"\nstrip_prefix = true\nservice = \"metrics\"\nallow = [\"loopback\", \"10.0.0.0/8\"]\nlisteners = [\"web\"]\nmax_body_size = \"1MB\"\nrequest_buffer = \"1MB\"\n\n[[routes]]\nname = \"closed\"\npath_prefix = \"/admin\"\ndeny = true\n");
        let routes = accepted(dir.load(&text, &[]), "three routes").config.routes;
        let api = &routes[0];
        assert_eq!(api.path_prefix, DEFAULT_PATH_PREFIX);
        assert_eq!(api.target, RouteTarget::Upstream("data".to_string()));
        assert!(api.host.is_none() && api.allow.is_none() && api.listeners.is_none());
        assert!(!api.strip_prefix && !api.deny);
        assert_eq!(api.max_body_size, None);
        assert_eq!(api.request_buffer, None);
        assert_eq!(
            api.origin.to_string(),
            dir.origin("gateway.toml", &text, "[[routes]]\nname = \"api\"")
        );
        let local = &routes[1];
        assert_eq!(local.host.as_ref().unwrap().to_string(), "*.example.com");
        assert_eq!(local.path_prefix, "/realms/*/protocol");
        assert!(local.strip_prefix);
        assert_eq!(local.target, RouteTarget::Service(Service::Metrics));
        assert!(local
            .allow
            .as_ref()
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
        assert_eq!(local.listeners, Some(vec!["web".to_string()]));
        assert_eq!(local.max_body_size, Some(1 << 20));
        assert_eq!(local.request_buffer, Some(1 << 20));
        assert_eq!(routes[2].target, RouteTarget::Nothing);
        assert!(routes[2].deny);
    }

    #[test]
    fn unknown_keys_in_routes() {
        run_cases(vec![
            case(
                "[[routes]], near: path_prefx",
                plain("[[routes]]\nname = \"r\"\npath_prefx = \"/x\"\nupstream = \"data\"\n"),
                "path_prefx",
                "unknown key `path_prefx` in [[routes]] \"r\"",
                Some("did you mean `path_prefix`?"),
            ),
            case(
                "[[routes]], near: upstram",
                plain("[[routes]]\nname = \"r\"\nupstram = \"data\"\n"),
                "upstram",
                "unknown key `upstram` in [[routes]] \"r\"",
                Some("did you mean `upstream`?"),
            ),
            case(
                "[[routes]], far",
                plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nrate_limit = 10\n"),
                "rate_limit",
                "unknown key `rate_limit` in [[routes]] \"r\"",
                Some("name, host, path_prefix, strip_prefix, upstream"),
            ),
            case(
                "[[routes]] without a name is numbered",
                plain("[[routes]]\nupstream = \"data\"\nrate_limit = 10\n"),
                "rate_limit",
                "unknown key `rate_limit` in [[routes]] #1",
                None,
            ),
        ]);
    }

    #[test]
    fn route_fields() {
        run_cases(vec![
            case(
                "deny = \"yes\"",
                route("deny = \"yes\""),
                "deny = |\"yes\"",
                "`deny` in [[routes]] \"r\" must be true or false, not a string",
                None,
            ),
            case(
                "route without a name",
                plain("[[routes]]\nupstream = \"data\"\n"),
                "|[[routes]]",
                "[[routes]] #1 needs `name`",
                Some("name = \"api\""),
            ),
            case(
                "route name that is not plain",
                plain("[[routes]]\nname = \"a b\"\nupstream = \"data\"\n"),
                "|[[routes]]",
                "route name \"a b\" is not a plain name",
                Some("logs and metrics"),
            ),
            case(
                "route without upstream",
                plain("[[routes]]\nname = \"r\"\n"),
                "|[[routes]]",
                "[[routes]] \"r\" has no `upstream`",
                Some("deny = true to refuse the path"),
            ),
            case(
                "upstream and service together",
                route("service = \"metrics\""),
                "service = |\"metrics\"",
                "a route has either `upstream` or `service`, not both",
                Some("remove one of them"),
            ),
            case(
                "unknown service",
                plain("[[routes]]\nname = \"r\"\nservice = \"status\"\n"),
                "service = |\"status\"",
                "unknown built-in service \"status\"",
                Some("\"metrics\", \"health\" or \"admin\""),
            ),
            case(
                "empty listeners",
                route("listeners = []"),
                "listeners = |[]",
                "`listeners` is empty, so the route is served nowhere",
                Some("remove `listeners`"),
            ),
            case(
                "max_body_size that is not a size",
                route("max_body_size = \"lots\""),
                "max_body_size = |\"lots\"",
                "`max_body_size`: \"lots\" does not start with a whole number",
                None,
            ),
        ]);
    }

    #[test]
    fn route_paths_hosts_and_allowlists() {
        run_cases(vec![
            case(
                "path_prefix with ..",
                route("path_prefix = \"/api/../x\""),
                "path_prefix = |\"/api/../x\"",
                "path_prefix \"/api/../x\" is not in canonical form",
                Some("write \"/x\""),
            ),
            case(
                "path_prefix with a trailing slash",
                route("path_prefix = \"/api/\""),
                "path_prefix = |\"/api/\"",
                "path_prefix \"/api/\" is not in canonical form",
                Some("write \"/api\""),
            ),
            case(
                "path_prefix with a double slash",
                route("path_prefix = \"/api//v1\""),
                "path_prefix = |\"/api//v1\"",
                "path_prefix \"/api//v1\" is not in canonical form",
                Some("write \"/api/v1\""),
            ),
            case(
                "path_prefix without a leading slash",
                route("path_prefix = \"api\""),
                "path_prefix = |\"api\"",
                "path_prefix \"api\" is not a valid path",
                Some("it starts with '/'"),
            ),
            case(
                "path_prefix with %2F",
                route("path_prefix = \"/a%2Fb\""),
                "path_prefix = |\"/a%2Fb\"",
                "path_prefix \"/a%2Fb\" is not a valid path: encoded '/' (%2F)",
                None,
            ),
            case(
                "path_prefix with a query",
                route("path_prefix = \"/a?b=1\""),
                "path_prefix = |\"/a?b=1\"",
                "path_prefix \"/a?b=1\" has a query",
                Some("it starts with '/'"),
            ),
            case(
                "path_prefix with * inside a segment",
                route("path_prefix = \"/api/v*\""),
                "path_prefix = |\"/api/v*\"",
                "path_prefix \"/api/v*\" uses `*` inside a segment",
                Some("one whole segment"),
            ),
            case(
                "host with a wildcard in the middle",
                route("host = \"a.*.com\""),
                "host = |\"a.*.com\"",
                "route host \"a.*.com\" is not a host name or wildcard",
                Some("\"*.example.com\""),
            ),
            case(
                "host with a scheme",
                route("host = \"https://x\""),
                "host = |\"https://x\"",
                "route host \"https://x\" is not a host name or wildcard",
                Some("no scheme, port or path"),
            ),
            case(
                "allow: prefix length 33",
                route("allow = [\"loopback\", \"10.0.0.0/33\"]"),
                "|\"10.0.0.0/33\"",
                "`allow`: \"10.0.0.0/33\" is not a CIDR",
                Some("write CIDRs such as \"10.0.0.0/8\""),
            ),
            case(
                "allow: a host name",
                route("allow = [\"example.com\"]"),
                "|\"example.com\"",
                "`allow`: \"example.com\" is not a CIDR",
                Some("\"loopback\""),
            ),
        ]);
    }
}
