//! Property tests of the policy crate's public API, with adversarial inputs:
//!
//! * [`canonicalize`] is idempotent, and its output always has one shape
//!   (rooted, no `//`, no `.`/`..` segments);
//! * a route covers every path under its prefix however that path is
//!   spelled: percent-encoded unreserved characters and UTF-8 (either hex
//!   case), `./` and `%2e/` segments, `x/../` detours, doubled slashes all
//!   reach the same route through [`Router::route`] as the plain path;
//! * spellings that some backend could read as another path (`%2F`, `%5C`,
//!   `\`, `%00`, `..;`, over-long UTF-8, bad escapes, control characters)
//!   are refused, never routed elsewhere.

use postern_policy::path::{canonicalize, match_segments, CanonicalTarget};
use postern_policy::router::{RouteEntry, Router};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files next to the tests; failures print their input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Adversarial request targets
// ---------------------------------------------------------------------------

/// Pieces a hostile client glues together: encoded dots, slashes and
/// backslashes in both hex cases, NUL, controls, Tomcat's `;`, over-long and
/// invalid UTF-8, double encoding, raw non-ASCII, fragments and queries.
const PIECES: &[&str] = &[
    "/",
    "//",
    "a",
    "b",
    "api",
    "admin",
    ".",
    "..",
    "./",
    "../",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%00",
    "%0a",
    "%0D",
    "%7f",
    "%09",
    "\t",
    "\r\n",
    ";",
    ";x=1",
    "..;",
    "..;x",
    ".;",
    "%3b",
    "%3B",
    "%25",
    "%252e",
    "%252f",
    "%",
    "%4",
    "%zz",
    "%g0",
    "%41",
    "%7e",
    "%7E",
    "~",
    "-",
    "_",
    "%2D",
    "%c0%ae",
    "%C0%AE",
    "%e0%80%ae",
    "%ed%a0%80",
    "%c3%a9",
    "%C3%A9",
    "%ff",
    "é",
    "ü",
    "\u{202e}",
    "\u{feff}",
    "\u{0}",
    "😀",
    "日本",
    " ",
    "\"",
    "<",
    ">",
    "{",
    "}",
    "|",
    "^",
    "`",
    "?",
    "?x=1",
    "?a/../b",
    "#",
    "#frag",
    "*",
    "@",
    ":",
    "!",
    "$",
    "&",
    "'",
    "(",
    ")",
    "+",
    ",",
    "=",
];

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly rooted concatenations of hostile pieces.
        8 => prop::collection::vec(select(PIECES), 0..16)
            .prop_map(|pieces| format!("/{}", pieces.concat())),
        // Sometimes not rooted at all.
        1 => prop::collection::vec(select(PIECES), 0..8).prop_map(|pieces| pieces.concat()),
        // And arbitrary Unicode after a slash.
        2 => any::<String>().prop_map(|s| format!("/{s}")),
    ]
}

fn check_shape(target: &str, canonical: &CanonicalTarget) -> Result<(), TestCaseError> {
    let path = &canonical.path;
    prop_assert!(
        path.starts_with('/'),
        "{target:?} gave {path:?}, not rooted"
    );
    prop_assert!(!path.contains("//"), "{target:?} gave {path:?}, with //");
    prop_assert!(!path.contains('?'), "{target:?} gave {path:?}, with ?");
    for segment in path.split('/').skip(1) {
        let name = segment.split_once(';').map_or(segment, |(name, _)| name);
        prop_assert!(
            name != "." && name != "..",
            "{target:?} gave {path:?}, with a dot segment {segment:?}"
        );
    }
    // Whatever is left encoded is an upper-case escape of a byte that must
    // stay encoded: never a way to spell '.', '/', '\' or NUL.
    for forbidden in ["%2E", "%2F", "%5C", "%00", "%2e", "%2f", "%5c"] {
        prop_assert!(
            !path.contains(forbidden),
            "{target:?} gave {path:?}, with {forbidden}"
        );
    }
    prop_assert!(
        path.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#'),
        "{target:?} gave {path:?}, with bytes that may not be forwarded raw"
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn canonicalising_twice_equals_once(target in target()) {
        if let Ok(once) = canonicalize(&target) {
            let twice = canonicalize(&once.path);
            prop_assert_eq!(
                twice.as_ref().map(|t| t.path.as_str()),
                Ok(once.path.as_str()),
                "target {:?}", target
            );
            prop_assert_eq!(twice.unwrap().query, None);
            // With its query put back it is the same target again.
            if let Some(query) = &once.query {
                let again = canonicalize(&format!("{}?{query}", once.path));
                prop_assert_eq!(again, Ok(once.clone()), "target {:?}", target);
            }
        }
    }

    #[test]
    fn canonical_paths_are_rooted_without_dot_segments_or_double_slashes(target in target()) {
        if let Ok(canonical) = canonicalize(&target) {
            check_shape(&target, &canonical)?;
        }
    }

    #[test]
    fn refusals_are_stable_and_nothing_panics(target in target()) {
        // Same input, same answer (no hidden state), and no panic on any input.
        prop_assert_eq!(canonicalize(&target), canonicalize(&target));
    }
}

// ---------------------------------------------------------------------------
// Routes and spellings
// ---------------------------------------------------------------------------

/// The route table: nested prefixes, a `*` segment and a non-ASCII prefix,
/// all written canonically as `path_prefix` must be.
const ROUTES: &[(&str, &str)] = &[
    ("/", "root"),
    ("/api", "api"),
    ("/api/v1", "api-v1"),
    ("/api/v1/admin", "api-v1-admin"),
    ("/admin", "admin"),
    ("/realms/*/protocol", "realms-protocol"),
    ("/%C3%A9t%C3%A9", "ete"),
    ("/~user/files", "user-files"),
];

fn router() -> Router<&'static str> {
    Router::new(ROUTES.iter().map(|(prefix, name)| RouteEntry {
        host: None,
        path_prefix: (*prefix).to_string(),
        value: *name,
    }))
}

/// The segments of a route prefix as they are spelled plainly (decoded).
fn prefix_segments(prefix: &str) -> Vec<String> {
    match_segments(prefix)
        .map(|s| match s {
            "*" => "master".to_string(),
            "%C3%A9t%C3%A9" => "été".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// One character of a logical segment: unreserved ASCII, a few sub-delims
/// (which stay raw), characters that are always encoded (space, `"`, `<`),
/// and non-ASCII.
fn segment_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => select(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
                .chars()
                .collect::<Vec<_>>()
        ),
        2 => select(vec!['!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@']),
        1 => select(vec![' ', '"', '<', '>', '{', '}', '|', '^', '`']),
        2 => select(vec!['é', 'ß', 'ü', 'Ω', '日', '😀', '\u{202e}', '\u{a0}']),
    ]
}

/// A segment that means itself: never `.` or `..`, never empty, no `;`.
fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(segment_char(), 1..6)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .prop_filter("dot segments are not names", |s| s != "." && s != "..")
}

/// How one character is written: raw, or percent-encoded (each byte of its
/// UTF-8) in upper, lower or mixed hex.
#[derive(Debug, Clone, Copy)]
enum CharSpelling {
    Raw,
    Upper,
    Lower,
    Mixed,
}

fn char_spelling() -> impl Strategy<Value = CharSpelling> {
    prop_oneof![
        4 => Just(CharSpelling::Raw),
        1 => Just(CharSpelling::Upper),
        1 => Just(CharSpelling::Lower),
        1 => Just(CharSpelling::Mixed),
    ]
}

/// Whether encoding `c` leaves its meaning alone: unreserved characters,
/// characters the canonical form encodes anyway, and non-ASCII (whose
/// canonical form is its encoded UTF-8). Sub-delims do not qualify: `%2B`
/// and `+` are different paths to a backend.
fn encodable(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '_' | '~' | ' ' | '"' | '<' | '>' | '{' | '}' | '|' | '^' | '`'
        )
        || !c.is_ascii()
}

fn spell_char(out: &mut String, c: char, spelling: CharSpelling) {
    if matches!(spelling, CharSpelling::Raw) || !encodable(c) {
        out.push(c);
        return;
    }
    let mut buf = [0u8; 4];
    for (i, byte) in c.encode_utf8(&mut buf).bytes().enumerate() {
        let hex = match spelling {
            CharSpelling::Lower => format!("{byte:02x}"),
            CharSpelling::Mixed if i % 2 == 0 => {
                let h = format!("{byte:02x}");
                format!("{}{}", &h[..1], h[1..].to_uppercase())
            }
            CharSpelling::Mixed => {
                let h = format!("{byte:02X}");
                format!("{}{}", &h[..1], h[1..].to_lowercase())
            }
            _ => format!("{byte:02X}"),
        };
        out.push('%');
        out.push_str(&hex);
    }
}

fn spell_segment(segment: &str, spellings: &[CharSpelling]) -> String {
    let mut out = String::new();
    for (i, c) in segment.chars().enumerate() {
        spell_char(&mut out, c, spellings[i % spellings.len()]);
    }
    out
}

/// What goes before a segment besides its `/`: nothing, or a detour that
/// canonicalises away.
#[derive(Debug, Clone)]
enum Detour {
    None,
    /// Extra slashes: `//`, `///`.
    Slashes(usize),
    /// A `.` segment, spelled `.`, `%2e` or `%2E`.
    Dot(&'static str),
    /// `x/../`, with `..` spelled `..`, `%2e%2e`, `.%2E`, ...
    UpAndBack(String, &'static str),
    /// `x/y/../../`.
    TwoUpAndBack(String, String, &'static str),
}

const DOTS: &[&str] = &["."];
const DOT_SPELLINGS: &[&str] = &[".", "%2e", "%2E"];
const DOTDOT_SPELLINGS: &[&str] = &["..", "%2e%2e", "%2E%2E", ".%2e", "%2E.", "%2e%2E"];

fn detour() -> impl Strategy<Value = Detour> {
    prop_oneof![
        6 => Just(Detour::None),
        2 => (1usize..3).prop_map(Detour::Slashes),
        2 => select(DOT_SPELLINGS).prop_map(Detour::Dot),
        2 => (segment(), select(DOTDOT_SPELLINGS)).prop_map(|(x, up)| Detour::UpAndBack(x, up)),
        1 => (segment(), segment(), select(DOTDOT_SPELLINGS))
            .prop_map(|(x, y, up)| Detour::TwoUpAndBack(x, y, up)),
    ]
}

fn spell_detour(out: &mut String, detour: &Detour, spellings: &[CharSpelling]) {
    match detour {
        Detour::None => {}
        Detour::Slashes(n) => out.push_str(&"/".repeat(*n)),
        Detour::Dot(dot) => {
            out.push('/');
            out.push_str(dot);
        }
        Detour::UpAndBack(x, up) => {
            out.push('/');
            out.push_str(&spell_segment(x, spellings));
            out.push('/');
            out.push_str(up);
        }
        Detour::TwoUpAndBack(x, y, up) => {
            for s in [x, y] {
                out.push('/');
                out.push_str(&spell_segment(s, spellings));
            }
            out.push('/');
            out.push_str(up);
            out.push('/');
            out.push_str(up);
        }
    }
}

/// A path under one route's prefix, and a way of spelling it.
#[derive(Debug, Clone)]
struct Case {
    /// Index into ROUTES of the prefix the path is under.
    route: usize,
    /// The plain path's segments: the prefix's, then the suffix's.
    segments: Vec<String>,
    /// How many of `segments` are the prefix's.
    prefix_len: usize,
    trailing_slash: bool,
    /// One detour and one set of character spellings per segment.
    detours: Vec<Detour>,
    spellings: Vec<Vec<CharSpelling>>,
    /// Spelled after the last segment (before a trailing slash).
    final_dots: Vec<&'static str>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..ROUTES.len(),
        prop::collection::vec(segment(), 0..5),
        any::<bool>(),
        prop::collection::vec(detour(), 12),
        prop::collection::vec(prop::collection::vec(char_spelling(), 1..5), 12),
        prop::collection::vec(select(DOTS), 0..2),
    )
        .prop_map(
            |(route, suffix, trailing_slash, detours, spellings, final_dots)| {
                let mut segments = prefix_segments(ROUTES[route].0);
                let prefix_len = segments.len();
                segments.extend(suffix);
                Case {
                    route,
                    segments,
                    prefix_len,
                    trailing_slash,
                    detours,
                    spellings,
                    final_dots,
                }
            },
        )
}

impl Case {
    /// The path written plainly, one `/` before each segment.
    fn plain(&self) -> String {
        let mut out: String = self.segments.iter().map(|s| format!("/{s}")).collect();
        if self.trailing_slash || out.is_empty() {
            out.push('/');
        }
        out
    }

    /// The same path, spelled with detours, encodings and extra slashes.
    fn spelled(&self) -> String {
        let mut out = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            spell_detour(&mut out, &self.detours[i], &self.spellings[i]);
            out.push('/');
            out.push_str(&spell_segment(segment, &self.spellings[i]));
        }
        if !self.segments.is_empty() {
            // "/a/." is "/a/": only with a trailing slash do these keep the path.
            if self.trailing_slash {
                for dot in &self.final_dots {
                    out.push('/');
                    out.push_str(dot);
                }
            }
        }
        if self.trailing_slash || out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Where the prefix ends in `spelled()`: the byte offset after it.
    fn spelled_prefix_end(&self) -> usize {
        let mut out = String::new();
        for i in 0..self.prefix_len {
            spell_detour(&mut out, &self.detours[i], &self.spellings[i]);
            out.push('/');
            out.push_str(&spell_segment(&self.segments[i], &self.spellings[i]));
        }
        out.len()
    }
}

fn route_of(router: &Router<&'static str>, path: &str) -> Option<(&'static str, usize)> {
    router
        .route("app.example.com", path)
        .map(|m| (*m.value, m.prefix_segments))
}

proptest! {
    #![proptest_config(config(2048))]

    /// The plain path is under its route and goes there (or to a longer
    /// route whose prefix it also has); any equivalent spelling is accepted,
    /// canonicalises to the same path and goes to the same route.
    #[test]
    fn every_spelling_of_a_path_reaches_the_same_route(case in case()) {
        let router = router();
        let plain = case.plain();
        let canonical = canonicalize(&plain);
        prop_assert!(canonical.is_ok(), "plain {:?}: {:?}", plain, canonical);
        let canonical = canonical.unwrap().path;
        let expected = route_of(&router, &canonical);
        let (name, covered) = expected.unwrap_or_else(|| panic!("no route for {canonical:?}"));
        prop_assert!(
            covered >= case.prefix_len,
            "{:?} is under {:?} but went to the less specific {:?}",
            canonical, ROUTES[case.route].0, name
        );
        if covered == case.prefix_len {
            prop_assert_eq!(name, ROUTES[case.route].1, "route for {:?}", canonical);
        }

        let spelled = case.spelled();
        let respelled = canonicalize(&spelled);
        prop_assert_eq!(
            respelled.as_ref().map(|t| t.path.as_str()),
            Ok(canonical.as_str()),
            "{:?} spelled {:?}", plain, spelled
        );
        prop_assert_eq!(route_of(&router, &respelled.unwrap().path), expected, "spelled {:?}", spelled);
    }
}

/// Ways to write a path that some server reads as a different path. Each is
/// documented as refused (docs/security.md, "Path canonicalisation").
#[derive(Debug, Clone)]
enum Poison {
    /// A separator written as `%2F`, `%2f`, `%5C`, `%5c` or `\`.
    Separator(&'static str),
    /// Appended to a segment: NUL, controls, bad escapes, a fragment.
    InSegment(&'static str),
    /// A whole extra segment: `..;`, `.;x`, over-long or surrogate UTF-8 dots.
    Segment(&'static str),
}

const POISON_SEPARATORS: &[&str] = &["%2F", "%2f", "%5C", "%5c", "\\"];
const POISON_IN_SEGMENT: &[&str] = &[
    "%00",
    "%0a",
    "%0D",
    "%09",
    "%7F",
    "%1b",
    "\u{0}",
    "\t",
    "\r",
    "\n",
    "%",
    "%4",
    "%zz",
    "%g1",
    "%%41",
    "#",
    "#x",
    "%C0%AE",
    "%c0%2e",
    "%E0%80%AE",
    "%ED%A0%80",
    "%ff",
    "%C3",
];
const POISON_SEGMENTS: &[&str] = &[
    "..;",
    "..;x=1",
    "%2e%2e;x",
    ".;",
    ".;jsessionid=1",
    "%2E;a",
    "%C0%AE%C0%AE",
    "%c0%ae",
    "%e0%80%ae%e0%80%ae",
    "%F0%80%80%AE",
];

fn poison() -> impl Strategy<Value = Poison> {
    prop_oneof![
        select(POISON_SEPARATORS).prop_map(Poison::Separator),
        select(POISON_IN_SEGMENT).prop_map(Poison::InSegment),
        select(POISON_SEGMENTS).prop_map(Poison::Segment),
    ]
}

/// Byte offsets of the `/` that start segments in `spelled` (not inside
/// escapes, so every one is a real separator).
fn slashes(spelled: &str) -> Vec<usize> {
    spelled.match_indices('/').map(|(i, _)| i).collect()
}

/// Encodings of a dot that look like one to a double-decoding backend, but
/// are a plain name to Postern: a new segment, never `.` or `..`.
const LOOKALIKES: &[&str] = &["%252e", "%252E%252e", "%25%32%65", "..%20", "...", ".%20."];

proptest! {
    #![proptest_config(config(2048))]

    /// One documented-as-refused spelling anywhere in an otherwise valid
    /// path: the whole request is refused, never routed.
    #[test]
    fn ambiguous_spellings_are_refused_never_routed(
        case in case(),
        poison in poison(),
        at in any::<Index>(),
    ) {
        let spelled = case.spelled();
        let cuts = slashes(&spelled);
        let poisoned = match &poison {
            Poison::Separator(sep) => {
                let i = cuts[at.index(cuts.len())];
                format!("{}{sep}{}", &spelled[..i], &spelled[i + 1..])
            }
            Poison::InSegment(bad) => {
                // Before a separator, or at the very end: inside the segment
                // that precedes it.
                let mut ends: Vec<usize> = cuts.iter().copied().filter(|&i| i > 0).collect();
                ends.push(spelled.len());
                let i = ends[at.index(ends.len())];
                format!("{}{bad}{}", &spelled[..i], &spelled[i..])
            }
            Poison::Segment(bad) => {
                let i = cuts[at.index(cuts.len())];
                format!("{}/{bad}{}", &spelled[..i], &spelled[i..])
            }
        };
        let result = canonicalize(&poisoned);
        prop_assert!(
            result.is_err(),
            "{:?} (from {:?} with {:?}) was accepted as {:?}, routed to {:?}",
            poisoned, spelled, poison, result,
            result.as_ref().ok().and_then(|t| route_of(&router(), &t.path))
        );
    }

    /// A double-encoded or otherwise fake dot after the prefix is a name, not
    /// a step up: the path stays under its route.
    #[test]
    fn lookalike_dots_never_climb_out_of_a_prefix(
        case in case(),
        lookalike in select(LOOKALIKES),
        repeat in 1usize..4,
        at in any::<Index>(),
    ) {
        let spelled = case.spelled();
        let start = case.spelled_prefix_end();
        // Insert after the prefix: a segment boundary at or after its end.
        let mut cuts: Vec<usize> = slashes(&spelled).into_iter().filter(|&i| i >= start).collect();
        if cuts.is_empty() || !spelled[start..].starts_with('/') {
            cuts.push(start);
        }
        let i = cuts[at.index(cuts.len())];
        let climb = format!("/{lookalike}").repeat(repeat);
        let attempt = format!("{}{climb}{}", &spelled[..i], &spelled[i..]);
        let canonical = canonicalize(&attempt);
        prop_assert!(canonical.is_ok(), "{:?}: {:?}", attempt, canonical);
        let path = canonical.unwrap().path;
        let routed = route_of(&router(), &path);
        prop_assert!(
            routed.is_some_and(|(_, covered)| covered >= case.prefix_len),
            "{:?} (canonical {:?}) left {:?} for {:?}",
            attempt, path, ROUTES[case.route].0, routed
        );
    }
}
