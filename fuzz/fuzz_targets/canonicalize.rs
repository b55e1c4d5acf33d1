//! The path canonicaliser: never panics, and what it accepts is a fixed
//! point with no dot segments or empty segments left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_policy::path::canonicalize;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(canonical) = canonicalize(target) {
        let path = &canonical.path;
        assert!(path.starts_with('/'), "{target:?} -> {path:?}");
        assert!(!path.contains("//"), "{target:?} -> {path:?}");
        assert!(!path.split('/').any(|s| s == "." || s == ".."), "{target:?} -> {path:?}");
        let again = canonicalize(path).expect("a canonical path is accepted");
        assert_eq!(&again.path, path, "canonicalising twice changed {target:?}");
    }
});
