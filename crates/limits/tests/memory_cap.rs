//! A flood of distinct keys does not grow memory past the cap.

use postern_limits::{LocalLimiter, Policy, OVERFLOW_BUCKETS};

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_million_distinct_keys_stay_within_the_cap() {
    const CAP: usize = 10_000;
    // 1/h: no key goes idle during the test, so nothing can be evicted to make room.
    let policy = Policy::new("login", "1/h".parse().unwrap(), None).unwrap();
    let limiter = LocalLimiter::new(&policy, CAP);
    let mut key = String::new();
    let mut allowed = 0;
    let mut after_cap = 0;
    for i in 0..1_000_000u32 {
        key.clear();
        key.push_str("client-");
        key.push_str(&i.to_string());
        if limiter.check(&key).is_allowed() {
            allowed += 1;
        }
        if i as usize == CAP * 2 {
            after_cap = resident_bytes();
        }
    }
    let grown = resident_bytes().saturating_sub(after_cap);
    assert!(
        limiter.tracked_keys() <= CAP + 4,
        "{} tracked",
        limiter.tracked_keys()
    );
    // The tracked keys, and at most one more per overflow bucket.
    assert!(allowed <= CAP + 4 + OVERFLOW_BUCKETS, "{allowed} allowed");
    println!("grew {grown} bytes over the last 980,000 keys");
    assert!(grown < 1 << 20, "memory grew {grown} bytes after the cap");
}
