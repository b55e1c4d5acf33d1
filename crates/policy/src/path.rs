//! The one canonical form of a request path.
//!
//! Routing, access policy and forwarding all read the output of [`canonicalize`],
//! and the gateway forwards exactly that path, so a backend never gets a path
//! that means something other than what the policy judged. Anything that common
//! servers read differently (encoded slashes, backslashes, `..;`, over-long
//! UTF-8) is refused rather than guessed at.

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
/// Expects a path from [`canonicalize`]. The leading `/` yields nothing and a
/// trailing `/` yields nothing either, so `"/"` gives no segments and `"/api"`
/// and `"/api/"` both give `["api"]`. A route prefix therefore matches a path
/// when the prefix's segments are a leading run of the path's segments, and a
/// trailing slash on either side never changes the answer:
///
/// - `"/admin;x=1/y"` gives `["admin", "y"]`;
/// - `"/a/;jsessionid=1"` gives `["a", ""]`, since that last segment is only parameters.
///
/// On a path that is not canonical, an empty piece between two slashes is
/// yielded as `""`.
pub fn match_segments(canonical_path: &str) -> impl Iterator<Item = &str> {
    let inner = canonical_path.strip_prefix('/').unwrap_or(canonical_path);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    let pieces = if inner.is_empty() {
        None
    } else {
        Some(inner.split('/'))
    };
    pieces
        .into_iter()
        .flatten()
        .map(|segment| segment.split_once(';').map_or(segment, |(name, _)| name))
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
        assert_eq!(segments("/a/;jsessionid=1"), vec!["a", ""]);
    }

    #[test]
    fn encoded_semicolon_is_not_a_parameter() {
        assert_eq!(segments("/a%3Bb/c"), vec!["a%3Bb", "c"]);
    }

    #[test]
    fn non_canonical_empty_pieces_are_yielded() {
        assert_eq!(segments("/a//b"), vec!["a", "", "b"]);
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
