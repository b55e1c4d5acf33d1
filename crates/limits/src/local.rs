//! GCRA per key inside one process, on governor, with memory bounded whatever the number of
//! distinct keys.
//!
//! Keys are hashed (SipHash with a per-process random seed) to a `u64` before they are stored,
//! so a tracked key costs the same few bytes however long the header value or claim it came
//! from, and no token or address is kept in memory. Two keys colliding would share a bucket:
//! with a million keys the odds are about 3 in 100 million, and without the seed nobody can aim
//! for a collision.
//!
//! At most `max_keys` keys are tracked. Keys idle long enough that their bucket is full again
//! are dropped (`evict_idle`, run by [`crate::Limiter`] in the background and by `check` when
//! the table is full). A key that arrives while the table is still full is not tracked on its
//! own: it is hashed into one of [`OVERFLOW_BUCKETS`] shared buckets, so under a flood of
//! distinct keys new clients get a stricter limit, never a looser one, and memory stays put.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::{Decision, Policy};

/// How many shared buckets take the keys that arrive while the table is full.
pub const OVERFLOW_BUCKETS: usize = 1024;

/// A full table is swept at most once per this many checks, so a flood of new keys costs
/// one sweep per `max_keys / SWEEP_FRACTION` decisions, not one per decision.
const SWEEP_FRACTION: usize = 8;

/// governor's state store with a cap: a `DashMap` of tracked keys plus the overflow buckets.
struct BoundedStore {
    tracked: DashMap<u64, InMemoryState>,
    overflow: Box<[InMemoryState]>,
    max_keys: usize,
}

impl BoundedStore {
    fn new(max_keys: usize) -> BoundedStore {
        BoundedStore {
            tracked: DashMap::new(),
            overflow: (0..OVERFLOW_BUCKETS)
                .map(|_| InMemoryState::default())
                .collect(),
            max_keys,
        }
    }

    fn is_full(&self) -> bool {
        self.tracked.len() >= self.max_keys
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.tracked.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // Concurrent inserts may overshoot the cap by about one key per thread.
        if !self.is_full() {
            let state = self.tracked.entry(*key).or_default();
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let bucket = (*key % OVERFLOW_BUCKETS as u64) as usize;
        self.overflow[bucket].measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.tracked.retain(|_, state| !is_idle(state, drop_below));
    }

    fn shrink_to_fit(&self) {
        self.tracked.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.tracked.len()
    }

    fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }
}

/// Whether a bucket's theoretical arrival time is at or before `drop_below`, read through
/// governor's public compare-and-swap with a closure that never writes.
fn is_idle(state: &InMemoryState, drop_below: Nanos) -> bool {
    let idle = Cell::new(true);
    let _: Result<(), ()> = state.measure_and_replace(&NotKeyed::NonKey, |tat| {
        idle.set(tat.is_none_or(|tat| tat <= drop_below));
        Err(())
    });
    idle.get()
}

/// The per-instance limiter of one policy.
pub struct LocalLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<u64, BoundedStore, C, StateInformationMiddleware>,
    hasher: RandomState,
    interval: Duration,
    burst: u32,
    sweep_every: usize,
    checks_until_sweep: AtomicUsize,
}

impl LocalLimiter {
    /// A limiter for `policy` tracking at most `max_keys` keys (at least 1).
    pub fn new(policy: &Policy, max_keys: usize) -> LocalLimiter {
        LocalLimiter::with_clock(policy, max_keys, DefaultClock::default())
    }
}

impl<C: Clock> LocalLimiter<C> {
    /// As [`LocalLimiter::new`], on `clock` (a fake one in tests).
    pub fn with_clock(policy: &Policy, max_keys: usize, clock: C) -> LocalLimiter<C> {
        let interval = policy.rate().interval();
        // Rates are at most MAX_COUNT per second, so the interval is at least 1 µs.
        let quota = Quota::with_period(interval)
            .expect("a rate's interval is never zero")
            .allow_burst(policy.burst());
        let max_keys = max_keys.max(1);
        let sweep_every = (max_keys / SWEEP_FRACTION).max(1);
        let store = BoundedStore::new(max_keys);
        LocalLimiter {
            limiter: RateLimiter::new(quota, store, clock),
            hasher: RandomState::new(),
            interval,
            burst: policy.burst().get(),
            sweep_every,
            checks_until_sweep: AtomicUsize::new(sweep_every),
        }
    }

    /// Decides one request for `key`, at once.
    pub fn check(&self, key: &str) -> Decision {
        self.sweep_if_full();
        let hashed = self.hasher.hash_one(key);
        match self.limiter.check_key(&hashed) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                // Each spent request comes back after one interval.
                let reset = self.interval * self.burst.saturating_sub(remaining);
                Decision::Allowed { remaining, reset }
            }
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Drops the keys whose buckets are full again: they would decide exactly like a new key.
    pub fn evict_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys have a bucket of their own (the overflow buckets not counted).
    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }

    fn sweep_if_full(&self) {
        let countdown = self.checks_until_sweep.fetch_sub(1, Ordering::Relaxed);
        if countdown > 1 {
            return;
        }
        self.checks_until_sweep
            .store(self.sweep_every, Ordering::Relaxed);
        if self.limiter.len() >= self.sweep_threshold() {
            self.limiter.retain_recent();
        }
    }

    fn sweep_threshold(&self) -> usize {
        // Sweeping a table far from full only costs time.
        (self.sweep_every * SWEEP_FRACTION) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(
        rate: &str,
        burst: Option<u32>,
        max_keys: usize,
    ) -> (LocalLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let policy = Policy::new("login", rate.parse().unwrap(), burst).unwrap();
        let clock = FakeRelativeClock::default();
        (
            LocalLimiter::with_clock(&policy, max_keys, clock.clone()),
            clock,
        )
    }

    fn allowed_now(limiter: &LocalLimiter<FakeRelativeClock>, key: &str) -> usize {
        (0..1000)
            .take_while(|_| limiter.check(key).is_allowed())
            .count()
    }

    #[test]
    fn burst_is_allowed_at_once_then_one_per_interval() {
        let (limiter, clock) = limiter("10/m", Some(5), 100);
        assert_eq!(
            limiter.check("a"),
            Decision::Allowed {
                remaining: 4,
                reset: Duration::from_secs(6)
            }
        );
        assert_eq!(allowed_now(&limiter, "a"), 4);
        assert_eq!(
            limiter.check("a"),
            Decision::Limited {
                retry_after: Duration::from_secs(6)
            }
        );
        clock.advance(Duration::from_secs(4));
        assert_eq!(
            limiter.check("a"),
            Decision::Limited {
                retry_after: Duration::from_secs(2)
            }
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            limiter.check("a"),
            Decision::Allowed {
                remaining: 0,
                reset: Duration::from_secs(30)
            }
        );
        assert!(!limiter.check("a").is_allowed());
        // A minute idle refills the whole burst, and no more than it.
        clock.advance(Duration::from_secs(60));
        assert_eq!(allowed_now(&limiter, "a"), 5);
    }

    #[test]
    fn default_burst_is_the_rate_count() {
        let (limiter, clock) = limiter("10/m", None, 100);
        assert_eq!(allowed_now(&limiter, "a"), 10);
        clock.advance(Duration::from_secs(30));
        assert_eq!(allowed_now(&limiter, "a"), 5);
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let (limiter, _clock) = limiter("2/h", None, 100);
        assert_eq!(allowed_now(&limiter, "a"), 2);
        assert_eq!(allowed_now(&limiter, "b"), 2);
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn idle_keys_are_evicted_busy_ones_kept() {
        let (limiter, clock) = limiter("10/m", None, 100);
        limiter.check("idle");
        clock.advance(Duration::from_secs(55));
        limiter.check("busy");
        clock.advance(Duration::from_secs(5));
        limiter.evict_idle();
        assert_eq!(limiter.tracked_keys(), 1);
        // The busy key kept its state: a fresh key would be allowed 10.
        assert_eq!(allowed_now(&limiter, "busy"), 9);
    }

    #[test]
    fn at_the_cap_new_keys_share_overflow_buckets_and_memory_stays() {
        let (limiter, _clock) = limiter("1/h", None, 10);
        for i in 0..10 {
            assert!(limiter.check(&format!("k{i}")).is_allowed());
        }
        assert_eq!(limiter.tracked_keys(), 10);
        // More distinct keys than overflow buckets: some must collide and be refused,
        // and the table does not grow.
        let allowed = (0..OVERFLOW_BUCKETS * 4)
            .filter(|i| limiter.check(&format!("new{i}")).is_allowed())
            .count();
        assert_eq!(limiter.tracked_keys(), 10);
        assert!(
            allowed <= OVERFLOW_BUCKETS,
            "{allowed} new keys let through"
        );
        assert!(allowed > 0);
        // Tracked keys keep their own buckets.
        assert!(!limiter.check("k0").is_allowed());
    }

    #[test]
    fn a_full_table_of_idle_keys_is_swept_on_demand() {
        let (limiter, clock) = limiter("60/m", Some(1), 16);
        for i in 0..16 {
            limiter.check(&format!("k{i}"));
        }
        clock.advance(Duration::from_secs(10));
        // Enough checks to trigger a sweep; then a new key gets a bucket of its own again.
        for _ in 0..4 {
            limiter.check("k0");
        }
        assert!(limiter.tracked_keys() < 16, "{}", limiter.tracked_keys());
    }
}
