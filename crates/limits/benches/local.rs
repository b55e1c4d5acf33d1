//! What one local decision costs: `cargo bench -p postern-limits`. The figures go to
//! docs/rate-limits.md.
//!
//! - one hot key, let through and refused (the bucket lookup and the GCRA step);
//! - 100,000 clients in turn (a table too big for the CPU caches);
//! - a flood of new keys against a full table (the overflow path, with its sweeps).

use std::hint::black_box;

use criterion::Criterion;
use postern_limits::{LocalLimiter, Policy};

fn policy(rate: &str) -> Policy {
    Policy::new("login", rate.parse().unwrap(), None).unwrap()
}

fn local_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_check");

    let open = LocalLimiter::new(&policy("1000000/s"), 1000);
    group.bench_function("hot key, allowed", |b| {
        b.iter(|| open.check(black_box("203.0.113.7")))
    });

    let shut = LocalLimiter::new(&policy("1/h"), 1000);
    shut.check("203.0.113.7");
    group.bench_function("hot key, limited", |b| {
        b.iter(|| shut.check(black_box("203.0.113.7")))
    });

    let names: Vec<String> = (0..100_000)
        .map(|i| format!("10.1.{}.{}", i >> 8, i & 255))
        .collect();
    let many = LocalLimiter::new(&policy("100/s"), 1_000_000);
    let mut next = 0;
    group.bench_function("100k clients in turn", |b| {
        b.iter(|| {
            next = (next + 1) % names.len();
            many.check(black_box(&names[next]))
        })
    });

    let full = LocalLimiter::new(&policy("1/h"), 10_000);
    for i in 0..10_000 {
        full.check(&format!("tracked-{i}"));
    }
    let mut fresh = 0u64;
    group.bench_function("new keys at the cap", |b| {
        b.iter(|| {
            fresh += 1;
            full.check(black_box(&fresh.to_string()))
        })
    });
    group.finish();
}

// What `criterion_group!` and `criterion_main!` expand to, without the
// undocumented `pub fn` the first one makes.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    local_check(&mut criterion);
    criterion.final_summary();
}
