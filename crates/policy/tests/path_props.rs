//! Properties of path canonicalisation that must hold for every input, not
//! only for the spellings in the table test.

use postern_policy::path::{canonicalize, match_segments, CanonicalTarget};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;

/// Pieces that usually canonicalise, covering every rewriting rule.
const GOOD_PIECES: &[&str] = &[
    "/", "//", ".", "..", "/.", "/..", "/./", "/../", "%2e", "%2E", "%2e%2e", ".%2E", "a", "b",
    "Z", "9", "~", "-", "_", "%41", "%7e", "%2d", ";", ";v=1", "%25", "%252e", "%252F", "%c3%a9",
    "%C3%A9", "é", "€", " ", "\"", "{", "*", "@", ":", "=", "?", "?x=1", "?a/../b", "%20",
];

/// Pieces that make canonicalisation refuse the target.
const BAD_PIECES: &[&str] = &[
    "%2f", "%2F", "%5c", "\\", "%00", "\0", "\r\n", "%0a", "%", "%z", "%4", "#", "%C0%AE", "%c3",
    "%80", "..;", ".;x", ";x/..", "%3b", "%3B",
];

fn target() -> impl Strategy<Value = String> {
    let piece = prop_oneof![20 => select(GOOD_PIECES), 1 => select(BAD_PIECES)];
    prop_oneof![
        8 => prop::collection::vec(piece, 0..12).prop_map(|p| format!("/{}", p.concat())),
        1 => any::<String>().prop_map(|s| format!("/{s}")),
        1 => "/[ -~]{0,40}",
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        // Refused targets are discarded, so allow plenty of them; running out
        // still fails the test, which keeps the accepted sample large.
        max_global_rejects: 1 << 16,
        ..ProptestConfig::default()
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn check_canonical_shape(path: &str) -> Result<(), TestCaseError> {
    prop_assert!(path.starts_with('/'), "{path:?} does not start with '/'");
    prop_assert!(!path.contains("//"), "{path:?} contains //");
    prop_assert!(path.is_ascii(), "{path:?} is not ASCII");
    for needle in ["%2F", "%2f", "%5C", "%5c", "\\", "?", "#"] {
        prop_assert!(!path.contains(needle), "{path:?} contains {needle:?}");
    }
    prop_assert!(
        !path.bytes().any(|b| b < 0x20 || b == 0x7F),
        "{path:?} contains a control character"
    );
    for segment in path.split('/').skip(1) {
        prop_assert!(
            segment != "." && segment != "..",
            "{path:?} has a dot segment"
        );
        if let Some((name, _)) = segment.split_once(';') {
            prop_assert!(
                !matches!(name, "." | ".."),
                "{path:?} has a dot segment with parameters"
            );
        }
    }
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
        prop_assert!(
            hex.len() == 2
                && hex
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{path:?} has an escape without two uppercase hex digits at {i}"
        );
        let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        prop_assert!(
            !is_unreserved(value),
            "{path:?} keeps an unreserved character encoded at {i}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonicalising_twice_equals_once(target in target()) {
        let once = canonicalize(&target);
        prop_assume!(once.is_ok());
        let once = once.unwrap();
        prop_assert_eq!(
            canonicalize(&once.path),
            Ok(CanonicalTarget { path: once.path.clone(), query: None })
        );
        if let Some(query) = &once.query {
            prop_assert_eq!(canonicalize(&format!("{}?{query}", once.path)), Ok(once.clone()));
        }
    }

    #[test]
    fn canonical_paths_have_one_shape(target in target()) {
        let once = canonicalize(&target);
        prop_assume!(once.is_ok());
        check_canonical_shape(&once.unwrap().path)?;
    }

    #[test]
    fn query_is_returned_unchanged(target in target()) {
        let once = canonicalize(&target);
        prop_assume!(once.is_ok());
        let expected = target.split_once('?').map(|(_, query)| query.to_owned());
        prop_assert_eq!(once.unwrap().query, expected);
    }
}

/// Ways to get from one segment to the next that canonicalise to a single '/'.
const SEPARATORS: &[&str] = &[
    "/",
    "//",
    "/./",
    "/.//",
    "//./",
    "/%2e/",
    "/%2E//",
    "/decoy/../",
    "/%64ecoy/%2e%2E/",
];

/// Endings, and whether each leaves a trailing slash.
const ENDINGS: &[(&str, bool)] = &[
    ("", false),
    ("/", true),
    ("//", true),
    ("/.", true),
    ("/./", true),
    ("/%2e", true),
    ("/decoy/..", true),
];

/// One spelling of a segment: how each character is written (raw, `%XX` or
/// `%xx`) and the separator before it.
type Spelling = (Vec<u8>, &'static str);

fn spelling() -> impl Strategy<Value = Spelling> {
    (prop::collection::vec(0u8..3, 8), select(SEPARATORS))
}

fn spell(segment: &str, (modes, separator): &Spelling) -> String {
    let mut out = (*separator).to_owned();
    for (c, mode) in segment.chars().zip(modes) {
        match mode {
            0 => out.push(c),
            1 => out.push_str(&format!("%{:02X}", u32::from(c))),
            _ => out.push_str(&format!("%{:02x}", u32::from(c))),
        }
    }
    out
}

fn spell_path(
    segments: &[String],
    spellings: &[Spelling],
    params: &[bool],
    ending: &str,
) -> String {
    let mut out = String::new();
    for ((segment, spelling), param) in segments.iter().zip(spellings).zip(params) {
        out.push_str(&spell(segment, spelling));
        if *param {
            out.push_str(";v=1");
        }
    }
    out.push_str(ending);
    if out.is_empty() {
        out.push('/');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn prefixes_match_however_they_are_spelled(
        segments in prop::collection::vec("[a-zA-Z0-9_~-][a-zA-Z0-9._~-]{0,7}", 1..6),
        path_spellings in prop::collection::vec(spelling(), 6),
        prefix_spellings in prop::collection::vec(spelling(), 6),
        params in prop::collection::vec(any::<bool>(), 6),
        prefix_len in any::<Index>(),
        (ending, trailing_slash) in select(ENDINGS),
        (prefix_ending, _) in select(ENDINGS),
    ) {
        let prefix_len = prefix_len.index(segments.len() + 1);
        let path = spell_path(&segments, &path_spellings, &params, ending);
        let prefix = spell_path(&segments[..prefix_len], &prefix_spellings, &[false; 6], prefix_ending);

        let mut expected = String::new();
        for (segment, param) in segments.iter().zip(&params) {
            expected.push('/');
            expected.push_str(segment);
            if *param {
                expected.push_str(";v=1");
            }
        }
        if trailing_slash {
            expected.push('/');
        }
        let canonical_path = canonicalize(&path).map(|t| t.path);
        prop_assert_eq!(canonical_path.as_deref(), Ok(expected.as_str()), "path {:?}", path);
        let canonical_prefix = canonicalize(&prefix).map(|t| t.path);
        prop_assert!(canonical_prefix.is_ok(), "prefix {:?}: {:?}", prefix, canonical_prefix);
        let canonical_prefix = canonical_prefix.unwrap();

        let path_segments: Vec<&str> = match_segments(&expected).collect();
        prop_assert_eq!(&path_segments, &segments);
        let prefix_segments: Vec<&str> = match_segments(&canonical_prefix).collect();
        prop_assert_eq!(&prefix_segments[..], &segments[..prefix_len]);
        prop_assert!(path_segments.starts_with(&prefix_segments));

        // A longer last segment is a different route, not a sub-path.
        if prefix_len > 0 {
            let mut longer = segments[..prefix_len].to_vec();
            longer[prefix_len - 1].push_str("zz");
            let longer = canonicalize(&format!("/{}", longer.join("/"))).unwrap().path;
            let longer_segments: Vec<&str> = match_segments(&longer).collect();
            prop_assert!(!path_segments.starts_with(&longer_segments), "{:?} under {:?}", expected, longer);
        }
    }
}
