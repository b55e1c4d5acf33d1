//! Choosing the route for a request.
//!
//! The most specific host wins (exact, then wildcard, then any host); within
//! it the longest `path_prefix`, compared on whole segments, so `/api` covers
//! `/api` and `/api/x` but never `/apix`. A host whose routes match no path
//! does not fall through to a less specific host's routes: the host is chosen
//! first, as nginx chooses its `server` block before a `location`.
//!
//! The router is built once per listener at config load; a lookup allocates
//! nothing.

use crate::host::HostPattern;
use crate::hostmap::HostMap;
use crate::path::{end_of_segments, match_segments};

/// One route as the router sees it; `value` is whatever the caller attaches.
#[derive(Debug, Clone)]
pub struct RouteEntry<T> {
    /// The host pattern the route is for; `None` serves any host.
    pub host: Option<HostPattern>,
    /// A canonical path prefix ("/", "/api", "/api/v1").
    pub path_prefix: String,
    /// What the caller gets back when this route matches.
    pub value: T,
}

/// One segment of a `path_prefix`: a literal, or `*`, which stands for any
/// one non-empty segment (Keycloak's `/realms/*/protocol/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
}

impl Segment {
    fn matches(&self, segment: Option<&str>) -> bool {
        match (self, segment) {
            (Segment::Literal(want), Some(got)) => want == got,
            (Segment::Any, Some(got)) => !got.is_empty(),
            (_, None) => false,
        }
    }
}

#[derive(Debug)]
struct Compiled<T> {
    segments: Vec<Segment>,
    value: T,
}

/// Routes of one host pattern, longest prefix first.
#[derive(Debug)]
struct HostGroup<T> {
    routes: Vec<Compiled<T>>,
}

impl<T> HostGroup<T> {
    fn new() -> Self {
        HostGroup { routes: Vec::new() }
    }

    fn find(&self, path: &str) -> Option<Match<'_, T>> {
        self.routes.iter().find_map(|route| {
            let mut path_segments = match_segments(path);
            let matched = route
                .segments
                .iter()
                .all(|want| want.matches(path_segments.next()));
            matched.then_some(Match {
                value: &route.value,
                prefix_segments: route.segments.len(),
            })
        })
    }
}

/// The chosen route and how many leading path segments its prefix covered.
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a, T> {
    /// The matched route's value.
    pub value: &'a T,
    /// How many leading path segments the route's prefix covered.
    pub prefix_segments: usize,
}

/// Routes by host (exact, then wildcard, then any host) and longest
/// path prefix within the host.
#[derive(Debug)]
pub struct Router<T> {
    /// Every host pattern's routes; the default group holds host-less routes.
    groups: HostMap<HostGroup<T>>,
}

impl<T> Router<T> {
    /// Builds the router from every route entry.
    pub fn new(entries: impl IntoIterator<Item = RouteEntry<T>>) -> Self {
        let mut groups = HostMap::new();
        for entry in entries {
            let group = groups.entry(entry.host.as_ref(), HostGroup::new);
            group.routes.push(Compiled {
                segments: match_segments(&entry.path_prefix)
                    .filter(|s| !s.is_empty())
                    .map(|s| match s {
                        "*" => Segment::Any,
                        literal => Segment::Literal(literal.to_string()),
                    })
                    .collect(),
                value: entry.value,
            });
        }
        for group in groups.values_mut() {
            // Longest first; at equal length a literal segment beats `*` at
            // the first place they differ; otherwise config order (stable).
            group.routes.sort_by_key(|r| {
                (
                    std::cmp::Reverse(r.segments.len()),
                    r.segments
                        .iter()
                        .map(|s| *s == Segment::Any)
                        .collect::<Vec<bool>>(),
                )
            });
        }
        Router { groups }
    }

    /// The route for a normalised host (see [`crate::host::normalize_host`])
    /// and a canonical path (see [`crate::path::canonicalize`]). The host's
    /// most specific pattern is chosen first; its routes are the only ones tried.
    pub fn route(&self, host: &str, path: &str) -> Option<Match<'_, T>> {
        self.groups.get(host)?.find(path)
    }
}

/// Removes the first `segments` segments of a canonical path, for
/// `strip_prefix`: ("/api/x", 1) -> "/x"; ("/api", 1) -> "/".
///
/// Segments are counted as [`match_segments`] counts them, so a segment of
/// only `;` parameters before or inside the prefix goes with it:
/// ("/;x=1/api/x", 1) -> "/x", the path below the prefix the route matched.
pub fn strip_segments(path: &str, segments: usize) -> &str {
    if segments == 0 {
        return path;
    }
    match end_of_segments(path, segments) {
        Some(end) if end < path.len() => &path[end..],
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: Option<&str>, prefix: &str, name: &'static str) -> RouteEntry<&'static str> {
        RouteEntry {
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            path_prefix: prefix.to_string(),
            value: name,
        }
    }

    fn router() -> Router<&'static str> {
        Router::new([
            entry(None, "/", "default"),
            entry(None, "/api", "any-api"),
            entry(None, "/api/v1/admin", "any-admin"),
            entry(Some("*.example.com"), "/", "wild"),
            entry(Some("api.example.com"), "/", "api-root"),
            entry(Some("api.example.com"), "/metrics", "api-metrics"),
            entry(Some("only.example.com"), "/x", "only-x"),
        ])
    }

    fn pick(host: &str, path: &str) -> Option<&'static str> {
        let r = router();
        r.route(host, path).map(|m| *m.value)
    }

    #[test]
    fn star_matches_one_whole_segment() {
        let r = Router::new([
            entry(None, "/", "default"),
            entry(None, "/realms", "realms"),
            entry(
                None,
                "/realms/*/protocol/openid-connect/token/introspect",
                "introspect",
            ),
            entry(
                None,
                "/realms/master/protocol/openid-connect/token/introspect",
                "master-introspect",
            ),
            entry(None, "/realms/*/protocol", "protocol"),
        ]);
        let pick = |path: &str| r.route("h", path).map(|m| (*m.value, m.prefix_segments));
        assert_eq!(
            pick("/realms/iams/protocol/openid-connect/token/introspect"),
            Some(("introspect", 6))
        );
        assert_eq!(
            pick("/realms/master/protocol/openid-connect/token/introspect"),
            Some(("master-introspect", 6)),
            "a literal beats * at the same length"
        );
        assert_eq!(pick("/realms/iams/protocol/x"), Some(("protocol", 3)));
        assert_eq!(pick("/realms/iams/account"), Some(("realms", 1)));
        assert_eq!(
            pick("/realms//protocol"),
            Some(("realms", 1)),
            "* needs a segment"
        );
        assert_eq!(pick("/realms/a;x=1/protocol"), Some(("protocol", 3)));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        assert_eq!(pick("api.example.com", "/x"), Some("api-root"));
        assert_eq!(pick("www.example.com", "/x"), Some("wild"));
        assert_eq!(pick("example.org", "/x"), Some("default"));
    }

    #[test]
    fn wildcard_matches_one_label_only() {
        assert_eq!(pick("a.b.example.com", "/x"), Some("default"));
        assert_eq!(pick("example.com", "/x"), Some("default"));
    }

    #[test]
    fn longest_prefix_on_whole_segments() {
        assert_eq!(pick("h", "/api"), Some("any-api"));
        assert_eq!(pick("h", "/api/"), Some("any-api"));
        assert_eq!(pick("h", "/api/x"), Some("any-api"));
        assert_eq!(pick("h", "/apix"), Some("default"));
        assert_eq!(pick("h", "/api/v1/admin/users"), Some("any-admin"));
        assert_eq!(pick("h", "/api/v1/adminx"), Some("any-api"));
        assert_eq!(pick("api.example.com", "/metrics/x"), Some("api-metrics"));
    }

    #[test]
    fn path_parameters_do_not_dodge_a_prefix() {
        assert_eq!(
            pick("h", "/api;jsessionid=1/v1/admin;x/y"),
            Some("any-admin")
        );
    }

    #[test]
    fn chosen_host_does_not_fall_through() {
        assert_eq!(pick("only.example.com", "/x/y"), Some("only-x"));
        assert_eq!(pick("only.example.com", "/y"), None);
    }

    #[test]
    fn no_routes_no_match() {
        let r: Router<()> = Router::new([]);
        assert!(r.route("h", "/").is_none());
    }

    #[test]
    fn strip_prefix_keeps_a_rooted_path() {
        assert_eq!(strip_segments("/api/x/y", 1), "/x/y");
        assert_eq!(strip_segments("/api", 1), "/");
        assert_eq!(strip_segments("/api/", 1), "/");
        assert_eq!(strip_segments("/a/b/c", 2), "/c");
        assert_eq!(strip_segments("/a/b", 0), "/a/b");
        assert_eq!(strip_segments("/api;v=1/x", 1), "/x");
    }

    #[test]
    fn parameter_only_segments_route_and_strip_with_the_prefix() {
        assert_eq!(pick("h", "/;x=1/api/v1/admin/users"), Some("any-admin"));
        assert_eq!(pick("h", "/api/;x=1/v1/;y/admin"), Some("any-admin"));
        assert_eq!(
            pick("api.example.com", "/;jsessionid=1/metrics"),
            Some("api-metrics")
        );
        assert_eq!(pick("h", "/api/;jsessionid=1"), Some("any-api"));
        assert_eq!(strip_segments("/;x=1/api/users", 1), "/users");
        assert_eq!(strip_segments("/api/;x/v1/;y/admin/z", 3), "/z");
        assert_eq!(strip_segments("/api/;jsessionid=1", 1), "/;jsessionid=1");
        assert_eq!(strip_segments("/;x/api", 1), "/");
    }
}
