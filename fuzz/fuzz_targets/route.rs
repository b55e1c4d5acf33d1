//! The router on arbitrary hosts and paths: never panics, and a match never
//! claims more segments than the path has.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern_policy::host::HostPattern;
use postern_policy::path::{canonicalize, match_segments};
use postern_policy::router::{strip_segments, RouteEntry, Router};

fn router() -> &'static Router<&'static str> {
    static ROUTER: OnceLock<Router<&'static str>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let entry = |host: Option<&str>, prefix: &str, name: &'static str| RouteEntry {
            host: host.map(|h| HostPattern::parse(h).expect("host")),
            path_prefix: prefix.to_string(),
            value: name,
        };
        Router::new([
            entry(None, "/", "default"),
            entry(None, "/api", "api"),
            entry(None, "/realms/*/protocol/openid-connect/token/introspect", "introspect"),
            entry(Some("*.example.com"), "/metrics", "metrics"),
            entry(Some("api.example.com"), "/admin", "admin"),
        ])
    })
}

fuzz_target!(|input: (&str, &str)| {
    let (host, target) = input;
    let Ok(canonical) = canonicalize(target) else {
        return;
    };
    if let Some(found) = router().route(host, &canonical.path) {
        let segments = match_segments(&canonical.path).count();
        assert!(found.prefix_segments <= segments, "{host:?} {:?}", canonical.path);
        let _ = strip_segments(&canonical.path, found.prefix_segments);
    }
});
