//! Brute-force backoff per user name and client source.
//!
//! Failures are counted twice: per (source, user name) and per source.
//! After `max_failures` failures in a row for one user name from one source,
//! that name must wait before it is heard from there again; after
//! [`SOURCE_CEILING`] times as many from one source, whatever the names, the
//! whole source must wait. So one user mistyping behind a shared NAT address
//! locks out only that account from that address, while spraying many names
//! from one address still meets the source's ceiling. Each further failure
//! doubles a wait up to a cap. While a request must wait it is refused
//! without any password hashing, so guessing costs the attacker time and the
//! gateway nothing. A success forgives that user's failures, in the source's
//! count too: a user who got in was mistyping, not guessing.
//!
//! IPv6 sources are tracked per /64, the block one client usually holds.
//! User names are kept as keyed hashes (per process), never as text, so
//! what is tracked per entry stays small whatever names are sent.
//!
//! [`Backoff`] is one instance's memory of failures; [`shared::BackoffGate`]
//! is what an authenticator uses: the same rules in the shared store when
//! `[gateway] shared_store` is set, with this one as its fallback.

pub mod shared;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use shared::{BackoffGate, SharedBackoff, Standing};

/// How many entries are tracked at once; beyond it the quiet ones are forgotten.
const MAX_TRACKED: usize = 100_000;

/// A source as a whole waits after this many times `max_failures` failures.
pub const SOURCE_CEILING: u32 = 4;

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

/// What a failure count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Source(IpAddr),
    /// A source and the keyed hash of a user name.
    User(IpAddr, u64),
}

/// Who must wait: one user name at a source, or the whole source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One user name at one source.
    User,
    /// Every request from the source, whatever the name.
    Source,
}

/// Failure counts and waits per source address.
pub struct Backoff {
    policy: BackoffPolicy,
    names: RandomState,
    records: Mutex<HashMap<Subject, Record>>,
}

impl Backoff {
    /// No source tracked yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            names: RandomState::new(),
            records: Mutex::new(HashMap::new()),
        }
    }

    fn source(&self, source: IpAddr) -> Subject {
        Subject::Source(bucket(source))
    }

    fn user(&self, source: IpAddr, user: &str) -> Subject {
        Subject::User(bucket(source), self.names.hash_one(user))
    }

    fn threshold(&self, subject: Subject) -> u32 {
        match subject {
            Subject::User(..) => self.policy.max_failures,
            Subject::Source(_) => self.policy.max_failures.saturating_mul(SOURCE_CEILING),
        }
    }

    /// How long a request from `source` for `user` (none: the credentials
    /// name no user) must still wait, if it must, and who waits.
    pub fn wait(
        &self,
        source: IpAddr,
        user: Option<&str>,
        now: Instant,
    ) -> Option<(Duration, Scope)> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let remaining = |subject: Subject| {
            let until = records.get(&subject)?.blocked_until?;
            (until > now).then(|| until - now)
        };
        let for_source = remaining(self.source(source)).map(|w| (w, Scope::Source));
        let for_user = user
            .and_then(|user| remaining(self.user(source, user)))
            .map(|w| (w, Scope::User));
        for_source
            .into_iter()
            .chain(for_user)
            .max_by_key(|(w, _)| *w)
    }

    /// Records a failure from `source` for `user` (none: the credentials
    /// name no user, so only the source's count grows); returns the wait it
    /// now imposes on that user, if any.
    pub fn fail(&self, source: IpAddr, user: Option<&str>, now: Instant) -> Option<Duration> {
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
        let mut subjects = vec![self.source(source)];
        subjects.extend(user.map(|user| self.user(source, user)));
        subjects
            .into_iter()
            .filter_map(|subject| {
                let threshold = self.threshold(subject);
                let record = records.entry(subject).or_insert(Record {
                    failures: 0,
                    last_failure: now,
                    blocked_until: None,
                });
                self.count(record, threshold, now)
            })
            .max()
    }

    /// One more failure on `record`; the wait it imposes, if any.
    fn count(&self, record: &mut Record, threshold: u32, now: Instant) -> Option<Duration> {
        // A subject that stayed quiet for the longest window after its last
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
        let over = record.failures.checked_sub(threshold)?;
        let window = self
            .policy
            .initial
            .checked_mul(1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.policy.max)
            .min(self.policy.max);
        record.blocked_until = Some(now + window);
        Some(window)
    }

    /// A success forgets `user`'s failures from `source`, and takes them
    /// off the source's count.
    pub fn succeed(&self, source: IpAddr, user: &str) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let Some(forgiven) = records.remove(&self.user(source, user)) else {
            return;
        };
        let subject = self.source(source);
        if let Some(record) = records.get_mut(&subject) {
            record.failures = record.failures.saturating_sub(forgiven.failures);
            let blocked = record.blocked_until.is_some_and(|u| u > Instant::now());
            if record.failures == 0 && !blocked {
                records.remove(&subject);
            }
        }
    }
}

/// The block a source is tracked by: itself for IPv4, its /64 for IPv6.
pub(crate) fn bucket(source: IpAddr) -> IpAddr {
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

    /// The source's ceiling is 3 × SOURCE_CEILING = 12 failures.
    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            max_failures: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        }
    }

    const ADMIN: Option<&str> = Some("admin");

    fn wait(backoff: &Backoff, ip: IpAddr, user: Option<&str>, now: Instant) -> Option<Duration> {
        backoff.wait(ip, user, now).map(|(wait, _)| wait)
    }

    #[test]
    fn engages_after_max_failures_and_doubles_to_the_cap() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(backoff.fail(ip, ADMIN, t0), None);
        assert_eq!(backoff.fail(ip, ADMIN, t0), None);
        assert_eq!(wait(&backoff, ip, ADMIN, t0), None);
        assert_eq!(backoff.fail(ip, ADMIN, t0), Some(Duration::from_secs(1)));
        assert_eq!(
            backoff.wait(ip, ADMIN, t0),
            Some((Duration::from_secs(1), Scope::User))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            wait(&backoff, ip, ADMIN, t1),
            None,
            "released when the window ends"
        );
        assert_eq!(backoff.fail(ip, ADMIN, t1), Some(Duration::from_secs(2)));
        assert_eq!(backoff.fail(ip, ADMIN, t1), Some(Duration::from_secs(4)));
        assert_eq!(backoff.fail(ip, ADMIN, t1), Some(Duration::from_secs(8)));
        assert_eq!(
            backoff.fail(ip, ADMIN, t1),
            Some(Duration::from_secs(8)),
            "capped"
        );
        for _ in 0..100 {
            backoff.fail(ip, ADMIN, t1);
        }
        assert_eq!(wait(&backoff, ip, ADMIN, t1), Some(Duration::from_secs(8)));
    }

    #[test]
    fn success_resets_and_sources_are_separate() {
        let backoff = Backoff::new(policy());
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            backoff.fail(a, ADMIN, t0);
        }
        assert!(backoff.wait(a, ADMIN, t0).is_some());
        assert_eq!(backoff.wait(b, ADMIN, t0), None);
        backoff.succeed(a, "admin");
        assert_eq!(backoff.wait(a, ADMIN, t0), None);
        assert_eq!(backoff.fail(a, ADMIN, t0), None, "count starts again");
    }

    #[test]
    fn one_user_waiting_leaves_the_others_at_the_source_alone() {
        let backoff = Backoff::new(policy());
        let nat: IpAddr = "192.0.2.50".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            backoff.fail(nat, ADMIN, t0);
        }
        assert!(backoff.wait(nat, ADMIN, t0).is_some());
        assert_eq!(backoff.wait(nat, Some("bob"), t0), None);
        assert_eq!(
            backoff.wait(nat, None, t0),
            None,
            "the source is not waiting"
        );
        assert_eq!(
            backoff.fail(nat, Some("bob"), t0),
            None,
            "bob has his own count"
        );
        // User names are compared exactly.
        assert_eq!(backoff.wait(nat, Some("Admin"), t0), None);
    }

    #[test]
    fn many_names_from_one_source_meet_its_ceiling() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.60".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..11 {
            let user = format!("user{i}");
            assert_eq!(backoff.fail(ip, Some(&user), t0), None, "{user}");
        }
        assert_eq!(backoff.wait(ip, Some("user11"), t0), None);
        // The 12th failure (3 × SOURCE_CEILING) closes the whole source.
        assert_eq!(
            backoff.fail(ip, Some("user11"), t0),
            Some(Duration::from_secs(1))
        );
        for user in [Some("user0"), Some("someone new"), None] {
            assert_eq!(
                backoff.wait(ip, user, t0),
                Some((Duration::from_secs(1), Scope::Source)),
                "{user:?}"
            );
        }
        let elsewhere: IpAddr = "192.0.2.61".parse().unwrap();
        assert_eq!(backoff.wait(elsewhere, Some("user0"), t0), None);
    }

    #[test]
    fn nameless_failures_count_towards_the_source_only() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.70".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..11 {
            assert_eq!(backoff.fail(ip, None, t0), None);
        }
        assert_eq!(backoff.wait(ip, ADMIN, t0), None);
        assert_eq!(backoff.fail(ip, None, t0), Some(Duration::from_secs(1)));
        assert!(backoff.wait(ip, ADMIN, t0).is_some());
    }

    #[test]
    fn a_success_takes_its_own_failures_off_the_source_count() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.80".parse().unwrap();
        let t0 = Instant::now();
        // Admin mistypes twice and gets in, three times over: 6 failures,
        // all forgiven.
        for _ in 0..3 {
            backoff.fail(ip, ADMIN, t0);
            backoff.fail(ip, ADMIN, t0);
            backoff.succeed(ip, "admin");
        }
        for i in 0..11 {
            assert_eq!(backoff.fail(ip, Some(&format!("user{i}")), t0), None);
        }
        assert!(backoff.fail(ip, Some("user11"), t0).is_some());
        // A success of another user forgives only that user's failures.
        backoff.succeed(ip, "user0");
        assert!(
            backoff.wait(ip, None, t0).is_some(),
            "11 failures still count"
        );
        assert!(backoff.fail(ip, Some("user12"), t0).is_some());
    }

    #[test]
    fn ipv6_is_tracked_per_64_and_mapped_v4_as_v4() {
        let backoff = Backoff::new(policy());
        let t0 = Instant::now();
        for i in 0..3 {
            backoff.fail(format!("2001:db8:1:2::{i}").parse().unwrap(), ADMIN, t0);
        }
        assert!(backoff
            .wait("2001:db8:1:2:ffff::1".parse().unwrap(), ADMIN, t0)
            .is_some());
        assert!(backoff
            .wait("2001:db8:1:3::1".parse().unwrap(), ADMIN, t0)
            .is_none());
        for _ in 0..3 {
            backoff.fail("::ffff:192.0.2.7".parse().unwrap(), ADMIN, t0);
        }
        assert!(backoff
            .wait("192.0.2.7".parse().unwrap(), ADMIN, t0)
            .is_some());
    }

    #[test]
    fn waiting_out_a_capped_window_keeps_the_cap() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..6 {
            if let Some(wait) = wait(&backoff, ip, ADMIN, now) {
                now += wait;
            }
            backoff.fail(ip, ADMIN, now);
        }
        // Window 8 s (capped): wait it out, fail again, still capped.
        now += Duration::from_secs(8);
        assert_eq!(backoff.fail(ip, ADMIN, now), Some(Duration::from_secs(8)));
        // Quiet for longer than the cap after the window: forgiven.
        now += Duration::from_secs(8 + 9);
        assert_eq!(backoff.fail(ip, ADMIN, now), None);
    }

    #[test]
    fn a_long_quiet_source_starts_afresh() {
        let backoff = Backoff::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        backoff.fail(ip, ADMIN, t0);
        backoff.fail(ip, ADMIN, t0);
        let later = t0 + Duration::from_secs(9);
        assert_eq!(backoff.fail(ip, ADMIN, later), None);
    }
}
