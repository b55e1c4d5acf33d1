//! A model of the backend, not gateway code: how a lenient servlet-style
//! stack (Tomcat, Jetty, Spring, Quarkus/RESTEasy) reads a request path, and
//! the invariant Postern keeps against it.
//!
//! The invariant: for every request target Postern accepts, the route it
//! chooses equals the route it would choose for the path as this reader
//! reads it. Shared by `tests/lenient_invariant.rs` and the `lenient` fuzz
//! target (`fuzz/fuzz_targets/lenient.rs`), so both assert the same thing.

use postern_policy::path::{canonicalize, check_encoded_percent, PathError};
use postern_policy::router::{strip_segments, RouteEntry, Router};

// The reader alone, so the end-to-end tests can take it without the rest.
#[path = "lenient_reader.rs"]
mod reader;
pub use reader::{lenient_read, Decoding};

/// Decoded segment names written as a path the router can read: every byte
/// but an unreserved one percent-encoded, as a canonical path encodes it.
pub fn routable(segments: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        for &b in segment {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// One route of the model gateway.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub name: &'static str,
    pub prefix: &'static str,
    /// Behind a policy (deny, allow or auth); the others are open.
    pub protected: bool,
    pub allow_encoded_percent: bool,
}

/// Open and protected prefixes side by side, nested both ways, a `*`
/// segment, and one open route that opts into encoded `%`.
pub const ROUTES: &[Route] = &[
    route("root", "/", false, false),
    route("api", "/api", false, false),
    route("admin", "/admin", true, false),
    route("manage", "/manage", true, false),
    route("metrics", "/metrics", true, false),
    route("api-admin", "/api/v1/admin", true, false),
    route("realm-protocol", "/realms/*/protocol", true, false),
    route("files", "/files", false, true),
];

const fn route(
    name: &'static str,
    prefix: &'static str,
    protected: bool,
    allow_encoded_percent: bool,
) -> Route {
    Route {
        name,
        prefix,
        protected,
        allow_encoded_percent,
    }
}

pub fn router() -> Router<&'static Route> {
    Router::new(ROUTES.iter().map(|r| RouteEntry {
        host: None,
        path_prefix: r.prefix.to_string(),
        value: r,
    }))
}

pub const HOST: &str = "app.example.com";

/// What Postern does with a target, in `Gateway::decide`'s order:
/// canonicalise (400), choose the route on the canonical path, then refuse
/// double encoding (400) unless that route allows it.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Refused(PathError),
    Routed {
        route: &'static Route,
        /// The canonical path (forwarded unless the route strips its prefix).
        path: String,
        prefix_segments: usize,
    },
}

pub fn postern(router: &Router<&'static Route>, target: &str) -> Decision {
    let canonical = match canonicalize(target) {
        Ok(canonical) => canonical,
        Err(e) => return Decision::Refused(e),
    };
    let found = router
        .route(HOST, &canonical.path)
        .expect("the model has a route for /");
    let route: &'static Route = found.value;
    if !route.allow_encoded_percent {
        if let Err(e) = check_encoded_percent(target) {
            return Decision::Refused(e);
        }
    }
    Decision::Routed {
        route,
        path: canonical.path,
        prefix_segments: found.prefix_segments,
    }
}

/// Checks the invariant for one target; `Err` says how it broke. Besides
/// the route itself: the canonical path Postern forwards reads the same to
/// the backend as the target did, and stripping the route's prefix removes
/// exactly the prefix's segments of that reading.
pub fn check_invariant(router: &Router<&'static Route>, target: &str) -> Result<(), String> {
    let Decision::Routed {
        route,
        path,
        prefix_segments,
    } = postern(router, target)
    else {
        return Ok(());
    };
    let decoding = if route.allow_encoded_percent {
        Decoding::Once
    } else {
        Decoding::Repeatedly
    };
    let read = lenient_read(target, decoding);
    let read_path = routable(&read);
    let backend = router
        .route(HOST, &read_path)
        .expect("the model has a route for /");
    if backend.value.name != route.name || backend.prefix_segments != prefix_segments {
        return Err(format!(
            "{target:?}: Postern routes {path:?} to {:?} ({prefix_segments} segments), \
             the backend reads {read_path:?}, which is {:?} ({} segments)",
            route.name, backend.value.name, backend.prefix_segments
        ));
    }
    let forwarded = lenient_read(&path, decoding);
    if forwarded != read {
        return Err(format!(
            "{target:?}: forwarded as {path:?}, which the backend reads as {:?}, not {read_path:?}",
            routable(&forwarded)
        ));
    }
    let stripped = strip_segments(&path, prefix_segments);
    let below = lenient_read(stripped, decoding);
    if below[..] != read[prefix_segments.min(read.len())..] {
        return Err(format!(
            "{target:?}: strip_prefix forwards {stripped:?}, read as {:?}; \
             below the prefix {:?} the backend reads {:?}",
            routable(&below),
            route.prefix,
            routable(&read[prefix_segments.min(read.len())..])
        ));
    }
    Ok(())
}
