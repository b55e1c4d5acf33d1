//! Brute-force backoff per client source.
//!
//! After `max_failures` failures in a row from one source, that source must
//! wait before it is heard again, and each further failure doubles the wait
//! up to a cap. While it waits its requests are refused without any password
//! hashing, so guessing costs the attacker time and the gateway nothing.
//! IPv6 sources are tracked per /64, the block one client usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many sources are tracked at once; beyond it the quiet ones are forgotten.
const MAX_TRACKED: usize = 100_000;

/// When failures from one source start to cost waiting.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    /// Failures from one source before it must wait.
    pub max_failures: u32,
    /// The first wait; each further failure doubles it.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts and waits per source address.
pub struct Backoff {
    policy: BackoffPolicy,
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Backoff {
    /// No source tracked yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// How long `source` must still wait, if it must.
    pub fn wait(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let until = records.get(&bucket(source))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failure; returns the wait it now imposes, if any.
    pub fn fail(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() >= MAX_TRACKED {
            let horizon = self.policy.max;
            records.retain(|_, r| {
                r.blocked_until.is_some_and(|u| u > now)
                    || now.saturating_duration_since(r.last_failure) < horizon
            });
            if records.len() >= MAX_TRACKED {
                records.retain(|_, r| r.blocked_until.is_some_and(|u| u > now));
            }
        }
        let record = records.entry(bucket(source)).or_insert(Record {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        // A source that stayed quiet for the longest window after its last
        // wait ended starts afresh; waiting out a capped window does not.
        let quiet_since = record
            .blocked_until
            .map_or(record.last_failure, |u| u.max(record.last_failure));
        if now.saturating_duration_since(quiet_since) > self.policy.max {
            record.failures = 0;
            record.blocked_until = None;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let over = record.failures.checked_sub(self.policy.max_failures)?;
        let window = self
            .policy
            .initial
            .checked_mul(1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.policy.max)
            .min(self.policy.max);
        record.blocked_until = Some(now + window);
        Some(window)
    }

    /// A success forgets the source's failures.
    pub fn succeed(&self, source: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.remove(&bucket(source));
    }
}

fn bucket(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            max_failures: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        }
    }

    #[test]
    fn engages_after_max_failures_and_doubles_to_the_cap() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(backoff.fail(ip, t0), None);
        assert_eq!(backoff.fail(ip, t0), None);
        assert_eq!(backoff.wait(ip, t0), None);
        assert_eq!(backoff.fail(ip, t0), Some(Duration::from_secs(1)));
        assert_eq!(backoff.wait(ip, t0), Some(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(backoff.wait(ip, t1), None, "released when the window ends");
        assert_eq!(backoff.fail(ip, t1), Some(Duration::from_secs(2)));
        assert_eq!(backoff.fail(ip, t1), Some(Duration::from_secs(4)));
        assert_eq!(backoff.fail(ip, t1), Some(Duration::from_secs(8)));
        assert_eq!(backoff.fail(ip, t1), Some(Duration::from_secs(8)), "capped");
        for _ in 0..100 {
            backoff.fail(ip, t1);
        }
        assert_eq!(backoff.wait(ip, t1), Some(Duration::from_secs(8)));
    }

    #[test]
    fn success_resets_and_sources_are_separate() {
        let backoff = Backoff::new(policy());
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            backoff.fail(a, t0);
        }
        assert!(backoff.wait(a, t0).is_some());
        assert_eq!(backoff.wait(b, t0), None);
        backoff.succeed(a);
        assert_eq!(backoff.wait(a, t0), None);
        assert_eq!(backoff.fail(a, t0), None, "count starts again");
    }

    #[test]
    fn ipv6_is_tracked_per_64_and_mapped_v4_as_v4() {
        let backoff = Backoff::new(policy());
        let t0 = Instant::now();
        for i in 0..3 {
            backoff.fail(format!("2001:db8:1:2::{i}").parse().unwrap(), t0);
        }
        assert!(backoff
            .wait("2001:db8:1:2:ffff::1".parse().unwrap(), t0)
            .is_some());
        assert!(backoff
            .wait("2001:db8:1:3::1".parse().unwrap(), t0)
            .is_none());
        for _ in 0..3 {
            backoff.fail("::ffff:192.0.2.7".parse().unwrap(), t0);
        }
        assert!(backoff.wait("192.0.2.7".parse().unwrap(), t0).is_some());
    }

    #[test]
    fn waiting_out_a_capped_window_keeps_the_cap() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..6 {
            if let Some(wait) = backoff.wait(ip, now) {
                now += wait;
            }
            backoff.fail(ip, now);
        }
        // Window 8 s (capped): wait it out, fail again, still capped.
        now += Duration::from_secs(8);
        assert_eq!(backoff.fail(ip, now), Some(Duration::from_secs(8)));
        // Quiet for longer than the cap after the window: forgiven.
        now += Duration::from_secs(8 + 9);
        assert_eq!(backoff.fail(ip, now), None);
    }

    #[test]
    fn a_long_quiet_source_starts_afresh() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        backoff.fail(ip, t0);
        backoff.fail(ip, t0);
        let later = t0 + Duration::from_secs(9);
        assert_eq!(backoff.fail(ip, later), None);
    }
}
