//! How a lenient servlet-style backend (Tomcat, Jetty, Spring,
//! Quarkus/RESTEasy) reads a request path: a model of the backend, not
//! gateway code. `lenient.rs` beside it builds the invariant on it; the
//! end-to-end path tests (tests/path_bypass.rs) use the reader alone.

/// How many times the backend percent-decodes a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// Until nothing changes: a container, then a framework filter, then
    /// the application each decoding once more.
    Repeatedly,
    /// Exactly once: what a route with `allow_encoded_percent` promises.
    Once,
}

/// The path of `target` as the lenient backend reads it, as decoded segment
/// names: the query and fragment cut off; percent-decoded as `decoding`
/// says; `\` read as `/`; each segment's `;` parameters removed; the empty
/// segments that leaves merged away; then `.` and `..` resolved (a `..` at
/// the root stays at the root).
pub fn lenient_read(target: &str, decoding: Decoding) -> Vec<Vec<u8>> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let mut bytes = target.as_bytes()[..end].to_vec();
    loop {
        let decoded = decode_once(&bytes);
        // Each pass that changes anything is shorter, so this ends.
        let changed = decoded != bytes;
        bytes = decoded;
        if !changed || decoding == Decoding::Once {
            break;
        }
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for piece in bytes.split(|&b| b == b'/' || b == b'\\') {
        let name = piece.split(|&b| b == b';').next().unwrap_or_default();
        match name {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(name.to_vec()),
        }
    }
    segments
}

fn decode_once(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
