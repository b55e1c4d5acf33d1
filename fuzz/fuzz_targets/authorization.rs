//! The Authorization header parsers (Basic and Bearer, and the cookie
//! fallback): never panic; an accepted JWT is three base64url parts, an
//! accepted introspection token only RFC 6750 b64token characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_auth::basic::parse_basic;
use postern_auth::introspection::bearer_token;
use postern_auth::jwt::find_token;

fuzz_target!(|data: &[u8]| {
    if let Ok((user, password)) = parse_basic(data) {
        assert!(!user.is_empty() && !user.contains(':'));
        let _ = password;
    }
    if let Ok(token) = find_token(Some(data), &[], None) {
        assert_eq!(token.split('.').count(), 3);
    }
    if let Ok(token) = find_token(None, &[data], Some("KeepToken")) {
        assert_eq!(token.split('.').count(), 3);
    }
    if let Ok(token) = bearer_token(Some(data)) {
        assert!(!token.is_empty());
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
    }
});
