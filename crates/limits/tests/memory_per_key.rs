//! What a tracked key costs: a million distinct clients in one limiter, measured as the
//! growth of the process's resident memory (Linux). Its own test binary, so nothing else
//! allocates meanwhile. `cargo test -p postern-limits --test memory_per_key -- --nocapture`
//! prints the figure docs/rate-limits.md quotes.

use postern_limits::{LocalLimiter, Policy};

const KEYS: usize = 1_000_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_million_tracked_keys_cost_a_few_dozen_bytes_each() {
    // 1/h: no key goes idle (and is evicted) however slowly the machine runs the test.
    let policy = Policy::new("login", "1/h".parse().unwrap(), None).unwrap();
    let names: Vec<String> = (0..KEYS)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let before = resident_bytes();
    let limiter = LocalLimiter::new(&policy, KEYS);
    for name in &names {
        assert!(limiter.check(name).is_allowed());
    }
    let after = resident_bytes();
    assert_eq!(limiter.tracked_keys(), KEYS);
    let per_key = (after - before) / KEYS;
    println!(
        "{KEYS} keys: {} bytes resident, {per_key} bytes per key",
        after - before
    );
    assert!(per_key <= 128, "{per_key} bytes per key");
}
