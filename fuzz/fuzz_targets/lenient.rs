//! The invariant against lenient backends: for every target Postern
//! accepts, the route it chooses equals the route it would choose for the
//! path as a lenient servlet-style backend reads it, the forwarded path
//! reads the same, and strip_prefix removes exactly the prefix's segments.
//! The model and the check are the ones `cargo test` runs
//! (`crates/policy/tests/lenient_invariant.rs`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern_policy::router::Router;

#[path = "../../crates/policy/tests/support/lenient.rs"]
mod lenient;

fn router() -> &'static Router<&'static lenient::Route> {
    static ROUTER: OnceLock<Router<&'static lenient::Route>> = OnceLock::new();
    ROUTER.get_or_init(lenient::router)
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(broken) = lenient::check_invariant(router(), target) {
        panic!("{broken}");
    }
});
