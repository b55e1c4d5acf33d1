//! The one canonical form of a request path.
//!
//! Routing, access policy and forwarding all read the output of [`canonicalize`],
//! and the gateway forwards exactly that path, so a backend never gets a path
//! that means something other than what the policy judged. Anything that common
//! servers read differently (encoded slashes, backslashes, `..;`, over-long
//! UTF-8, an encoded `;`) is refused rather than guessed at.
//!
//! The invariant, tested against a model of a lenient servlet-style backend
//! in `tests/lenient_invariant.rs`: for every target Postern accepts, the
//! route chosen on the canonical path is the route chosen on the path as such
//! a backend reads it (decoded repeatedly, `\` as `/`, `;` parameters cut
//! from each segment, empty segments merged, then dot segments resolved).
//! Besides the refusals above, three rules keep it: segments that are only
//! `;` parameters count for nothing in [`match_segments`], as the backend
//! merges them away; `%3B` is refused, as the backend would decode it into a
//! parameter; and double encoding (`%25` and two hex digits), which the
//! canonical form keeps as data, is refused by [`check_encoded_percent`]
//! once the route is known, unless that route opts out.

use std::fmt;

/// A request target split into its canonical path and raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// The canonical path: starts with `/`, no empty, `.` or `..` segments, and
    /// every escape that is left is an uppercase `%XX` of a byte that must stay encoded.
    pub path: String,
    /// Everything after the first `?`, unchanged; `None` when there was no `?`.
    pub query: Option<String>,
}

/// Why a request target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The target is the empty string.
    Empty,
    /// The path does not start with `/` (asterisk-form, absolute-form, relative paths).
    NotOriginForm,
    /// A `%2F`: some backends decode it into a separator, others do not.
    EncodedSlash,
    /// A `%5C`: Windows and some frameworks decode it into a separator.
    EncodedBackslash,
    /// A raw `\`: Windows and some frameworks treat it as a separator.
    Backslash,
    /// A `%00`: C-based backends end the path there.
    Nul,
    /// A raw control byte, or an encoded one other than `%00`.
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// The decoded path is not UTF-8 (over-long forms such as `%C0%AE` hide a `.` or `/`).
    InvalidUtf8,
    /// A `..` would climb above the root.
    ClimbsAboveRoot,
    /// A `.` or `..` segment carries `;` parameters, which Tomcat and Jetty
    /// strip, so `/a/..;/b` is `/b` to them but `/a/..;/b` to everyone else.
    DotSegmentParameter,
    /// A `..` would remove a segment that is only `;` parameters: Tomcat and
    /// Jetty see `/a/;x/../b` as `/a//../b`, which is `/b`, not `/a/b`.
    EmptySegmentParameter,
    /// A `#`: fragments are never part of a request target.
    Fragment,
    /// A `%3B`: a backend that decodes before it cuts `;` parameters reads
    /// `/admin%3Bx` as `/admin` and `/a/..%3B/admin` as `/admin`.
    EncodedSemicolon,
    /// A `%25` followed by two hex digits: a backend or filter that decodes
    /// once more reads `%252e%252e` as `..`, `%252f` as `/`, `%2500` as NUL.
    DoubleEncoding,
}

impl PathError {
    /// A short human reason, for logs and error pages.
    pub fn reason(&self) -> &'static str {
        match self {
            PathError::Empty => "empty request target",
            PathError::NotOriginForm => "request target does not start with '/'",
            PathError::EncodedSlash => "encoded '/' (%2F) in path",
            PathError::EncodedBackslash => "encoded '\\' (%5C) in path",
            PathError::Backslash => "'\\' in path",
            PathError::Nul => "encoded NUL (%00) in path",
            PathError::ControlCharacter => "control character in request target",
            PathError::BadPercentEncoding => "'%' not followed by two hex digits",
            PathError::InvalidUtf8 => "path is not valid UTF-8 once decoded",
            PathError::ClimbsAboveRoot => "'..' climbs above the root",
            PathError::DotSegmentParameter => "'.' or '..' segment with ';' parameters",
            PathError::EmptySegmentParameter => "'..' after a segment of only ';' parameters",
            PathError::Fragment => "'#' fragment in request target",
            PathError::EncodedSemicolon => "encoded ';' (%3B) in path",
            PathError::DoubleEncoding => {
                "double encoding in path: '%25' followed by two hex digits"
            }
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// Canonicalises an origin-form request target ("/a/b?x=1").
///
/// The path is percent-decoded once: escapes of unreserved characters become
/// the character, every other escape stays encoded with uppercase hex, and raw
/// bytes that may not appear in a path (non-ASCII, space, `"`, `<`, `{`, ...)
/// are encoded. Repeated slashes collapse, then dot segments are removed as in
/// RFC 3986 section 5.2.4; a trailing slash is kept. The query is returned
/// unchanged, but may not hold control characters either.
pub fn canonicalize(target: &str) -> Result<CanonicalTarget, PathError> {
    if target.is_empty() {
        return Err(PathError::Empty);
    }
    if target.contains('#') {
        return Err(PathError::Fragment);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let normalized = normalize_bytes(raw_path)?;
    let path = remove_dot_segments(&normalized)?;
    // The query is forwarded as it came, so a CR or LF in it would end up in
    // the upstream request line.
    if query.is_some_and(|q| q.bytes().any(is_control)) {
        return Err(PathError::ControlCharacter);
    }
    Ok(CanonicalTarget {
        path,
        query: query.map(str::to_owned),
    })
}

/// Path segments with any ";params" cut off, for matching route prefixes.
///
/// Expects a path from [`canonicalize`]. A segment whose name is empty (only
/// `;` parameters, or nothing) yields nothing, because the backends that cut
/// `;` parameters also merge the segment left empty: Tomcat, Jetty and Spring
/// read `/;x=1/admin` as `/admin`. So `"/"` gives no segments, `"/api"` and
/// `"/api/"` both give `["api"]`, and a route prefix matches a path when the
/// prefix's segments are a leading run of the path's segments:
///
/// - `"/admin;x=1/y"` gives `["admin", "y"]`;
/// - `"/;x=1/admin"` gives `["admin"]`;
/// - `"/a/;jsessionid=1"` gives `["a"]` (Tomcat's `encodeURL` on `/a/`).
pub fn match_segments(canonical_path: &str) -> impl Iterator<Item = &str> {
    named_segments(canonical_path).map(|(name, _)| name)
}

/// The byte offset just past the `count`-th segment [`match_segments`]
/// yields (with its parameters), so the rest of the path starts with `/` or
/// is empty; `Some(0)` for no segments, `None` when the path has fewer.
pub fn end_of_segments(canonical_path: &str, count: usize) -> Option<usize> {
    match count {
        0 => Some(0),
        n => named_segments(canonical_path)
            .nth(n - 1)
            .map(|(_, end)| end),
    }
}

/// Each segment's name (before any `;`) and the byte offset after the whole
/// segment, skipping segments whose name is empty.
fn named_segments(path: &str) -> impl Iterator<Item = (&str, usize)> {
    let start = usize::from(path.starts_with('/'));
    path[start..]
        .split('/')
        .scan(start, |offset, piece| {
            let end = *offset + piece.len();
            *offset = end + 1;
            Some((piece.split_once(';').map_or(piece, |(name, _)| name), end))
        })
        .filter(|(name, _)| !name.is_empty())
}

/// Refuses double encoding in a request target's path: `%25` followed by
/// two hex digits, which a backend decoding once more reads as another byte
/// (`%252e` as `.`, `%252f` as `/`). Deeper nestings (`%25252e`) start the
/// same way. Other `%25` (`%25zz`, `%25` at the end) decode to a `%` that no
/// further decoding changes, and pass.
///
/// Takes the target as received, not the canonical path: a `..` may remove
/// the segment that held it (`/a%252fb/..`), and the backend, decoding
/// before it resolves dots, would have counted two segments there. The hex
/// digits may themselves be escaped (`%25%34%31`), as the canonical form
/// decodes them. The query is not looked at.
///
/// Run after the route is chosen, since a route may allow it
/// (`allow_encoded_percent = true`); call it on a target [`canonicalize`]
/// accepted (any other target gives that refusal instead).
pub fn check_encoded_percent(target: &str) -> Result<(), PathError> {
    let raw_path = target.split_once('?').map_or(target, |(path, _)| path);
    let normalized = normalize_bytes(raw_path)?;
    let doubled = normalized
        .as_bytes()
        .windows(5)
        .any(|w| w.starts_with(b"%25") && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit());
    if doubled {
        Err(PathError::DoubleEncoding)
    } else {
        Ok(())
    }
}

/// Decodes escapes once and re-encodes what must stay encoded, checking every
/// byte on the way. `raw` starts with `/`; the result does too.
fn normalize_bytes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // The path as the backend will finally read it, to check it is UTF-8:
    // over-long forms like %C0%AE decode to '.' in lenient decoders.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            let value = (hi << 4) | lo;
            match value {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                b';' => return Err(PathError::EncodedSemicolon),
                0 => return Err(PathError::Nul),
                _ if is_control(value) => return Err(PathError::ControlCharacter),
                _ if is_unreserved(value) => out.push(char::from(value)),
                _ => push_escape(&mut out, value),
            }
            decoded.push(value);
            i += 3;
            continue;
        }
        match byte {
            b'\\' => return Err(PathError::Backslash),
            _ if is_control(byte) => return Err(PathError::ControlCharacter),
            _ if is_path_char(byte) => out.push(char::from(byte)),
            _ => push_escape(&mut out, byte),
        }
        decoded.push(byte);
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    Ok(out)
}

/// Collapses empty segments and removes dot segments. Runs after decoding, so
/// `%2E` is already `.` here.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        // RFC 3986 keeps a trailing slash after a final "." or "..": "/a/b/.." is "/a/".
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                let removed = kept.pop().ok_or(PathError::ClimbsAboveRoot)?;
                if removed.starts_with(';') {
                    return Err(PathError::EmptySegmentParameter);
                }
            }
            _ => {
                if let Some((name, _)) = segment.split_once(';') {
                    if name == "." || name == ".." {
                        return Err(PathError::DotSegmentParameter);
                    }
                }
                kept.push(segment);
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|d| d as u8)
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7F
}

/// RFC 3986 unreserved: the only escapes whose decoding never changes meaning.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Bytes RFC 3986 allows raw in a path (pchar and `/`); `%` is handled apart.
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<&str> {
        match_segments(path).collect()
    }

    /// The prefix rule the router is expected to apply to these segments.
    fn under(path: &str, prefix: &str) -> bool {
        let mut path_segments = match_segments(path);
        match_segments(prefix).all(|p| path_segments.next() == Some(p))
    }

    #[test]
    fn root_has_no_segments() {
        assert_eq!(segments("/"), Vec::<&str>::new());
    }

    #[test]
    fn trailing_slash_adds_no_segment() {
        assert_eq!(segments("/a"), vec!["a"]);
        assert_eq!(segments("/a/"), vec!["a"]);
        assert_eq!(segments("/a/b/"), vec!["a", "b"]);
    }

    #[test]
    fn parameters_are_cut() {
        assert_eq!(segments("/admin;x=1/y"), vec!["admin", "y"]);
        assert_eq!(segments("/a;b;c/d;e"), vec!["a", "d"]);
        assert_eq!(segments("/a/;jsessionid=1"), vec!["a"]);
    }

    #[test]
    fn parameter_only_segments_count_for_nothing() {
        assert_eq!(segments("/;x=1/admin"), vec!["admin"]);
        assert_eq!(segments("/;/;a;b/admin/;c/x"), vec!["admin", "x"]);
        assert_eq!(segments("/;jsessionid=1"), Vec::<&str>::new());
        assert!(under("/;x=1/admin/users", "/admin"));
        assert!(!under("/;x=1/admin/users", "/users"));
    }

    #[test]
    fn end_of_segments_includes_parameters_and_skipped_segments() {
        let path = "/;x/api;v=1/;y/users/";
        assert_eq!(end_of_segments(path, 0), Some(0));
        assert_eq!(&path[end_of_segments(path, 1).unwrap()..], "/;y/users/");
        assert_eq!(&path[end_of_segments(path, 2).unwrap()..], "/");
        assert_eq!(end_of_segments(path, 3), None);
        assert_eq!(end_of_segments("/", 1), None);
    }

    #[test]
    fn double_encoding_is_found_however_deep() {
        for target in [
            "/%252e%252e/admin",
            "/a%252Fb",
            "/%255c",
            "/%2500",
            "/%253B",
            "/%25252e",
            "/x/%2541",
            "/%25ab",
            "/%25%34%31",
            "/%25%61b",
            "/admin%252fadmin/..",
            "/a/%252f/..?q",
        ] {
            assert_eq!(
                check_encoded_percent(target),
                Err(PathError::DoubleEncoding),
                "{target}"
            );
        }
        for target in [
            "/",
            "/a%25",
            "/a%25zz",
            "/%254",
            "/%25%25",
            "/%3F%25x",
            "/a?%252e%252e",
        ] {
            assert_eq!(check_encoded_percent(target), Ok(()), "{target}");
        }
    }

    #[test]
    fn encoded_semicolon_is_refused() {
        for target in ["/admin%3Bx", "/a/..%3b/admin", "/%3Bx/admin", "/a;b%3Bc"] {
            assert_eq!(
                canonicalize(target),
                Err(PathError::EncodedSemicolon),
                "{target}"
            );
        }
    }

    #[test]
    fn non_canonical_empty_pieces_are_skipped() {
        assert_eq!(segments("/a//b"), vec!["a", "b"]);
    }

    #[test]
    fn prefix_matching() {
        for path in ["/api", "/api/", "/api/x", "/api;v=1/x", "/api/x/y/"] {
            assert!(under(path, "/api"), "{path} should be under /api");
            assert!(under(path, "/api/"), "{path} should be under /api/");
            assert!(under(path, "/"), "{path} should be under /");
        }
        for path in ["/apix", "/ap", "/", "/x/api", "/API"] {
            assert!(!under(path, "/api"), "{path} should not be under /api");
        }
    }

    #[test]
    fn canonical_paths_match_their_own_prefixes() {
        let canonical = canonicalize("/api/./v1/../v2//users/").unwrap();
        assert_eq!(canonical.path, "/api/v2/users/");
        assert_eq!(segments(&canonical.path), vec!["api", "v2", "users"]);
        assert!(under(&canonical.path, "/api/v2"));
        assert!(!under(&canonical.path, "/api/v1"));
    }

    #[test]
    fn every_error_has_a_distinct_reason() {
        let all = [
            PathError::Empty,
            PathError::NotOriginForm,
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::Backslash,
            PathError::Nul,
            PathError::ControlCharacter,
            PathError::BadPercentEncoding,
            PathError::InvalidUtf8,
            PathError::ClimbsAboveRoot,
            PathError::DotSegmentParameter,
            PathError::EmptySegmentParameter,
            PathError::Fragment,
            PathError::EncodedSemicolon,
            PathError::DoubleEncoding,
        ];
        let mut reasons: Vec<&str> = all.iter().map(PathError::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(
            PathError::EncodedSlash.reason(),
            "encoded '/' (%2F) in path"
        );
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "encoded '/' (%2F) in path"
        );
    }
}
