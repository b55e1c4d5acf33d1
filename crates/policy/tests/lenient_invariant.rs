//! The invariant against lenient backends (issue 16): for every request
//! target Postern accepts, the route it chooses equals the route it would
//! choose for the path as a lenient servlet-style backend reads it
//! (`support/lenient.rs` models that reader). Checked three ways: a table of
//! named bypass attempts with the answer each must get, a property over
//! generated targets that mix `;`, `.`, `%`, `/`, `\`, escapes and double
//! escapes, and a census of that generator, so the property cannot pass by
//! generating only targets that are refused or never near a protected prefix.

#[path = "support/lenient.rs"]
mod lenient;

use lenient::{check_invariant, lenient_read, postern, routable, router, Decision, Decoding};
use postern_policy::path::PathError;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// What Postern must answer: a route's name, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Route(&'static str),
    Refused(PathError),
}

fn answer(target: &str) -> Answer {
    match postern(&router(), target) {
        Decision::Refused(e) => Answer::Refused(e),
        Decision::Routed { route, .. } => Answer::Route(route.name),
    }
}

#[test]
fn named_bypass_attempts() {
    use Answer::{Refused, Route};
    use PathError::*;
    let cases: &[(&str, &str, Answer)] = &[
        // Class 1: `;` parameters on an empty segment.
        (
            "parameter-only first segment",
            "/;x=1/admin",
            Route("admin"),
        ),
        ("bare ';' segment", "/;/admin/users", Route("admin")),
        (
            "session id before the prefix",
            "/;jsessionid=A1/metrics",
            Route("metrics"),
        ),
        (
            "several parameter-only segments",
            "/;a/;b;c/manage/x",
            Route("manage"),
        ),
        (
            "parameter-only segment inside a nested prefix",
            "/api/;x/v1/;y/admin",
            Route("api-admin"),
        ),
        (
            "parameter-only segment before a `*`",
            "/realms/;x/master/protocol",
            Route("realm-protocol"),
        ),
        (
            "Tomcat encodeURL on a trailing slash",
            "/api/;jsessionid=A1",
            Route("api"),
        ),
        (
            "parameters on the prefix itself",
            "/admin;x=1/users",
            Route("admin"),
        ),
        (
            "`..;` segment",
            "/api/..;/admin",
            Refused(DotSegmentParameter),
        ),
        (
            "`.;` segment",
            "/api/.;x/admin",
            Refused(DotSegmentParameter),
        ),
        (
            "`..` removing a parameter-only segment",
            "/api/;x/../admin",
            Refused(EmptySegmentParameter),
        ),
        // Class 1, escaped: a decoding backend turns %3B into a parameter.
        (
            "escaped `..;`",
            "/api/..%3B/admin",
            Refused(EncodedSemicolon),
        ),
        (
            "escaped `..;`, lower case",
            "/api/..%3b/admin",
            Refused(EncodedSemicolon),
        ),
        ("escaped `.;`", "/api/.%3B/admin", Refused(EncodedSemicolon)),
        (
            "escaped parameter-only segment",
            "/%3Bx=1/admin",
            Refused(EncodedSemicolon),
        ),
        (
            "escaped parameter on the prefix",
            "/admin%3Bx/users",
            Refused(EncodedSemicolon),
        ),
        (
            "escaped `;` after the prefix",
            "/api/a%3Bb",
            Refused(EncodedSemicolon),
        ),
        // Class 2: double encoding.
        (
            "double-encoded `..`",
            "/api/%252e%252e/admin",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded `..`, upper case",
            "/api/%252E%252E/admin",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded `/`",
            "/api/..%252fadmin",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded `\\`",
            "/api/..%255cadmin",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded NUL",
            "/admin%2500.js",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded `;`",
            "/api/..%253B/admin",
            Refused(DoubleEncoding),
        ),
        (
            "triple-encoded `..`",
            "/api/%25252e%25252e/admin",
            Refused(DoubleEncoding),
        ),
        (
            "double encoding spelled with escapes",
            "/api/%25%32%65%25%32%65/admin",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded letter",
            "/%2561dmin",
            Refused(DoubleEncoding),
        ),
        (
            "double encoding in a segment `..` removes",
            "/admin%252fadmin/..",
            Refused(DoubleEncoding),
        ),
        (
            "double-encoded `/` before `..`",
            "/admin/%252f/..",
            Refused(DoubleEncoding),
        ),
        (
            "double encoding on a protected route",
            "/admin/%252e",
            Refused(DoubleEncoding),
        ),
        // Opt-out: `/files` allows encoded `%` for a backend that decodes once.
        (
            "encoded `%` on the opt-out route",
            "/files/%2541",
            Route("files"),
        ),
        (
            "double-encoded `..` on the opt-out route",
            "/files/%252e%252e/admin",
            Route("files"),
        ),
        (
            "opt-out is decided on the route, not the path",
            "/%252e%252e/files",
            Refused(DoubleEncoding),
        ),
        // Neither class: accepted, and read the same by both.
        (
            "`%25` not followed by two hex digits",
            "/api/%25zz",
            Route("api"),
        ),
        ("`%25` at the end", "/api/100%25", Route("api")),
        (
            "encoded dots resolve before routing",
            "/api/%2e%2e/admin",
            Route("admin"),
        ),
        (
            "encoded letters decode before routing",
            "/%61dmin",
            Route("admin"),
        ),
        (
            "detour back into a protected prefix",
            "/api/x/../../metrics",
            Route("metrics"),
        ),
        ("longer name is another route", "/adminx", Route("root")),
        ("plain open path", "/api/users", Route("api")),
    ];
    let router = router();
    let mut failures = Vec::new();
    for (name, target, expected) in cases {
        let got = answer(target);
        if got != *expected {
            failures.push(format!(
                "  {name}: {target:?} gave {got:?}, expected {expected:?}"
            ));
        }
        if let Err(broken) = check_invariant(&router, target) {
            failures.push(format!("  {name}: {broken}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_refusal_here_has_its_own_reason() {
    let reasons = [
        PathError::EncodedSemicolon.reason(),
        PathError::DoubleEncoding.reason(),
        PathError::DotSegmentParameter.reason(),
        PathError::EmptySegmentParameter.reason(),
    ];
    for (i, a) in reasons.iter().enumerate() {
        for b in &reasons[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert!(PathError::EncodedSemicolon.reason().contains("%3B"));
    assert!(PathError::DoubleEncoding.reason().contains("%25"));
}

#[test]
fn the_model_reads_paths_as_lenient_backends_do() {
    let show = |segments: Vec<Vec<u8>>| {
        let names: Vec<String> = segments
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        format!("/{}", names.join("/"))
    };
    let read = |target| show(lenient_read(target, Decoding::Repeatedly));
    assert_eq!(read("/;x=1/admin"), "/admin");
    assert_eq!(read("/api/..;/admin"), "/admin");
    assert_eq!(read("/api/..%3B/admin"), "/admin");
    assert_eq!(read("/api/%252e%252e/admin"), "/admin");
    assert_eq!(read("/api/%25252e%25252e%25252fadmin"), "/admin");
    assert_eq!(read("/api\\..\\admin"), "/admin");
    assert_eq!(read("/api/;x/../admin"), "/admin");
    assert_eq!(read("/admin%3Bx/users?q=/x"), "/admin/users");
    assert_eq!(read("/a%2500b"), "/a\0b");
    assert_eq!(read("/../../admin"), "/admin");
    assert_eq!(read("/100%25zz"), "/100%zz");
    let once = |target| show(lenient_read(target, Decoding::Once));
    assert_eq!(once("/files/%252e%252e/admin"), "/files/%2e%2e/admin");
    assert_eq!(once("/files/%2541"), "/files/%41");
    // What the router is given: the reading, encoded as a canonical path is.
    assert_eq!(
        routable(&lenient_read("/files/%2541", Decoding::Once)),
        "/files/%2541"
    );
}

/// Pieces of targets: separators, dots, parameters and names...
const PLAIN: &[&str] = &[
    "/",
    "/",
    "/",
    "//",
    ".",
    "..",
    "./",
    "../",
    ";",
    ";x=1",
    ";jsessionid=A1",
    "admin",
    "admin",
    "api",
    "api",
    "manage",
    "metrics",
    "files",
    "realms",
    "protocol",
    "v1",
    "x",
    "adm",
    "in",
    "2",
    "5",
    "e",
    "E",
    "f",
    "c",
    "b",
    "0",
    "3",
    "%2e",
    "%2E",
    "%41",
    "%61",
    "%61dmin",
    "adm%69n",
    "?x=/admin",
    "é",
];

/// ... and hostile ones: every escape and double escape of `.`, `/`, `\`,
/// NUL, `;` and `%`, a raw `\`, loose `%` that glue loose hex digits into
/// new escapes, fragments and bad escapes.
const HOSTILE: &[&str] = &[
    "\\",
    "%",
    "%2",
    "%25",
    "%2525",
    "%252e",
    "%252E",
    "%25252e",
    "%2f",
    "%252f",
    "%252F",
    "%5c",
    "%255c",
    "%255C",
    "%00",
    "%2500",
    "%3b",
    "%3B",
    "%253b",
    "%253B",
    "%2541",
    "%25%32%65",
    "#",
    " ",
    "%C3%A9",
    "%zz",
    "?",
];

/// Protected names, spelled in ways the canonical form decodes, and the
/// opt-out route with an encoded `%`.
const AIMED_AT: &[&str] = &[
    "admin",
    "%61dmin",
    "adm%69n",
    "manage",
    "metrics",
    "%6Detrics",
    "api/v1/admin",
    "realms/r1/protocol",
    "files/%2541",
    "files/%252e%252e",
];

/// What goes between segments on the way to a protected prefix.
const DETOURS: &[&str] = &[
    "/",
    "//",
    "/;x=1/",
    "/;/",
    "/%3B/",
    "/.;/",
    "/..;/",
    "/..%3B/",
    "/%2e/",
    "/x/../",
    "/x/%2e%2e/",
    "/x/%252e%252e/",
    "/%252e%252e/",
    "/x%252f..%252f",
    "\\",
    "/x/..\\",
    "/;jsessionid=A1/",
    "/api/..;/",
    "/api/;x/../",
    "/%25252e/",
    "/%2500/",
    "/%255c/",
];

fn piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => select(PLAIN), 1 => select(HOSTILE)]
}

fn free_target() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..14).prop_map(|p| format!("/{}", p.concat()))
}

/// A path shaped like a bypass: a detour, a name it aims at, more pieces.
fn aimed_target() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(select(DETOURS), 1..4),
        select(AIMED_AT),
        prop::collection::vec(piece(), 0..5),
    )
        .prop_map(|(detours, name, tail)| {
            let mut out = detours.concat();
            if !out.ends_with('/') && !out.ends_with('\\') {
                out.push('/');
            }
            out.push_str(name);
            out.push_str(&tail.concat());
            out
        })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![1 => free_target(), 1 => aimed_target()]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn accepted_targets_reach_the_route_a_lenient_backend_reads(target in target()) {
        let result = check_invariant(&router(), &target);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// The generator reaches every part of the invariant: targets accepted and
/// routed to protected prefixes through odd spellings, parameter-only
/// segments, the opt-out, and each new refusal. Every target it counts is
/// checked against the invariant too; `LENIENT_CENSUS_ROUNDS=1000000` runs a
/// longer search than the default 20,000.
#[test]
fn the_generator_covers_the_bypass_classes() {
    let router = router();
    let mut runner = TestRunner::deterministic();
    let strategy = target();
    let (mut total, mut accepted, mut protected, mut odd_protected) = (0, 0, 0, 0);
    let (mut parameter_only, mut semicolon, mut double, mut opt_out) = (0, 0, 0, 0);
    // Would have reached a protected prefix through an open route before the fix.
    let mut bypass_shaped = 0;
    let rounds: usize = std::env::var("LENIENT_CENSUS_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    for _ in 0..rounds {
        let target = strategy.new_tree(&mut runner).expect("tree").current();
        total += 1;
        if let Err(broken) = check_invariant(&router, &target) {
            panic!("{broken}");
        }
        let backend_reads = routable(&lenient_read(&target, Decoding::Repeatedly));
        let backend_route = router.route(lenient::HOST, &backend_reads).map(|m| m.value);
        match postern(&router, &target) {
            Decision::Routed { route, path, .. } => {
                accepted += 1;
                if route.protected {
                    protected += 1;
                    if path != backend_reads {
                        odd_protected += 1;
                    }
                }
                if path.split('/').any(|s| s.starts_with(';')) {
                    parameter_only += 1;
                }
                if route.allow_encoded_percent && path.contains("%25") {
                    opt_out += 1;
                }
            }
            Decision::Refused(e) => {
                if e == PathError::EncodedSemicolon {
                    semicolon += 1;
                }
                if e == PathError::DoubleEncoding {
                    double += 1;
                    if backend_route.is_some_and(|r| r.protected) {
                        bypass_shaped += 1;
                    }
                }
            }
        }
    }
    let census = format!(
        "{total} targets: {accepted} accepted, {protected} to protected routes \
         ({odd_protected} spelled unlike the backend's reading), {parameter_only} with \
         parameter-only segments, {opt_out} through the opt-out; refused: {semicolon} %3B, \
         {double} double encoding ({bypass_shaped} aimed at a protected prefix)"
    );
    println!("{census}");
    // Half of what a million targets gave (27.7%, 3.2%, 1.5%, 4.9%, 12%,
    // 23.5%, 3.6%, 1.6%), so a reseeded run passes and a broken generator fails.
    assert!(accepted * 5 >= total, "{census}");
    assert!(protected * 50 >= total, "{census}");
    assert!(odd_protected * 100 >= total, "{census}");
    assert!(parameter_only * 50 >= total, "{census}");
    assert!(semicolon * 20 >= total, "{census}");
    assert!(double * 10 >= total, "{census}");
    assert!(bypass_shaped * 50 >= total, "{census}");
    assert!(opt_out * 100 >= total, "{census}");
}
