//! The two path bypass classes of issue 16, through the real binary over
//! TLS: `;` parameters on an empty segment (and an escaped `;`), and double
//! encoding. Each target is sent raw, with an open route and a protected
//! route in front of two different echo upstreams. Every answer is a 400
//! (JSON, naming the route chosen first), the protected route's own policy,
//! or a forward the backend reads as Postern did; and the open route's
//! upstream never receives a path that a lenient backend reads as being
//! under the protected prefix (`crates/policy/tests/support/lenient.rs`
//! models that reader).

// The same model of a lenient backend as the policy crate's invariant test.
#[path = "../crates/policy/tests/support/lenient_reader.rs"]
mod lenient;

use crate::support::{assert_gateway_error, echo, upstream, Gateway};
use lenient::{lenient_read, Decoding};
use postern_echo::EchoServer;

const HOST: &str = "api.example.com";

/// `/` open to `open`, `/admin` behind an allowlist loopback is not in,
/// `/manage` (stripped) behind one it is in, both to `protected`; `/files`
/// open to `files`, allowing encoded `%`.
async fn gateway(open: &EchoServer, protected: &EchoServer, files: &EchoServer) -> Gateway {
    Gateway::start(format!(
        r#"{}{}{}
[[routes]]
name = "open"
upstream = "open"

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "protected"
allow = ["192.0.2.0/24"]

[[routes]]
name = "manage"
path_prefix = "/manage"
strip_prefix = true
upstream = "protected"
allow = ["loopback"]

[[routes]]
name = "files"
path_prefix = "/files"
upstream = "files"
allow_encoded_percent = true
"#,
        upstream("open", open.local_addr(), ""),
        upstream("protected", protected.local_addr(), ""),
        upstream("files", files.local_addr(), ""),
    ))
    .await
}

/// What a target must get.
enum Expect {
    /// 400 from the gateway, naming the route it chose on the canonical path
    /// (none when the canonical path itself was refused).
    Refused(Option<&'static str>),
    /// The protected `/admin` route's policy: 403.
    AdminPolicy,
    /// Forwarded to this upstream, which receives exactly this path.
    Forwarded(&'static str, &'static str),
}

/// Whether a lenient backend reads `path` as under `/admin` or `/manage`.
fn under_protected_prefix(path: &str) -> bool {
    lenient_read(path, Decoding::Repeatedly)
        .first()
        .is_some_and(|first| first == b"admin" || first == b"manage")
}

/// Sends each case and checks its answer; returns the gateway's log.
async fn run(cases: &[(&str, Expect)]) -> String {
    let open = echo("open").await;
    let protected = echo("protected").await;
    let files = echo("files").await;
    let gw = gateway(&open, &protected, &files).await;
    for (target, expect) in cases {
        let seen_before = open.requests_seen();
        let response = gw.get(HOST, target).await;
        match expect {
            Expect::Refused(route) => {
                assert_gateway_error(&response, 400, "bad_request", *route);
            }
            Expect::AdminPolicy => {
                assert_gateway_error(&response, 403, "forbidden", Some("admin"));
            }
            Expect::Forwarded(backend, path) => {
                let echoed = response.echo();
                assert_eq!(echoed["backend"], *backend, "{target}: {echoed}");
                assert_eq!(echoed["path"], *path, "{target}: {echoed}");
            }
        }
        if open.requests_seen() > seen_before {
            let received = open.last_request().expect("a request");
            let path = received["path"].as_str().unwrap_or_default().to_string();
            assert!(
                !under_protected_prefix(&path),
                "{target}: the open upstream received {path:?}, which a lenient backend reads under a protected prefix"
            );
        }
    }
    let allowed = cases
        .iter()
        .filter(|(_, e)| matches!(e, Expect::Forwarded("protected", _)))
        .count();
    assert_eq!(
        protected.requests_seen(),
        allowed as u64,
        "the protected upstream received only what its policy allowed"
    );
    gw.stderr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_only_segments_and_escaped_semicolons_cannot_skip_a_protected_prefix() {
    use Expect::*;
    let log = run(&[
        // Before the fix these went to the open route, as `/;x=1/admin`.
        ("/;x=1/admin", AdminPolicy),
        ("/;/admin/users", AdminPolicy),
        ("/;jsessionid=A1/admin", AdminPolicy),
        ("/;a/;b;c/admin", AdminPolicy),
        ("/admin;x=1/users", AdminPolicy),
        // Before the fix: `..%3B` and `%3B` were kept and routed to `/`.
        // Now refused with the canonical path, before any route is chosen.
        ("/api/..%3B/admin", Refused(None)),
        ("/api/..%3b/admin/users", Refused(None)),
        ("/%3Bx=1/admin", Refused(None)),
        ("/admin%3Bx/users", Refused(None)),
        // Read as /admin by both before and after.
        ("//admin", AdminPolicy),
        ("/x/%2e%2e/admin", AdminPolicy),
        // Refused before and after.
        ("/api/..;/admin", Refused(None)),
        ("/api/;x/../admin", Refused(None)),
        // Tomcat's encodeURL on a trailing-slash URL still reaches its route.
        (
            "/api/;jsessionid=A1",
            Forwarded("open", "/api/;jsessionid=A1"),
        ),
        // Allowed by the protected route's policy: stripped as the backend
        // reads it, the parameter-only segment going with the prefix.
        ("/;x=1/manage/status", Forwarded("protected", "/status")),
    ])
    .await;
    assert!(
        log.contains("400 bad_request: encoded ';' (%3B) in path"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_encoding_is_refused_unless_the_route_allows_it() {
    use Expect::*;
    let log = run(&[
        // Before the fix each was forwarded to the open upstream as is.
        ("/x/%252e%252e/admin", Refused(Some("open"))),
        ("/x/%252E%252E/admin/users", Refused(Some("open"))),
        ("/x/..%252fadmin", Refused(Some("open"))),
        ("/x/..%255cadmin", Refused(Some("open"))),
        ("/admin%2500", Refused(Some("open"))),
        ("/x/..%253b/admin", Refused(Some("open"))),
        ("/x/%25252e%25252e/admin", Refused(Some("open"))),
        ("/x/%25%32%65%25%32%65/admin", Refused(Some("open"))),
        ("/admin%252fx/..", Refused(Some("open"))),
        ("/x/%2541", Refused(Some("open"))),
        // The route is chosen first, so the 400 names it, and comes before
        // the route's own policy (this one would be 403).
        ("/admin/%2541", Refused(Some("admin"))),
        // The opt-out: forwarded unchanged to that route's upstream.
        ("/files/%2541", Forwarded("files", "/files/%2541")),
        (
            "/files/a%252fb/%252e%252e",
            Forwarded("files", "/files/a%252fb/%252e%252e"),
        ),
        // It belongs to the route the canonical path chose, not to a path
        // that would reach it once decoded.
        ("/%252e%252e/files/x", Refused(Some("open"))),
        // A `%25` that no decoding changes further is not double encoding.
        ("/x/100%25", Forwarded("open", "/x/100%25")),
        ("/x/%25zz", Forwarded("open", "/x/%25zz")),
    ])
    .await;
    assert!(
        log.contains("400 bad_request: double encoding in path: '%25' followed by two hex digits"),
        "{log}"
    );
}
