//! Basic authentication for the functional accounts (health, management,
//! metrics).
//!
//! The journey of one check: a request without credentials gets the
//! challenge (it costs nothing, so even a source in backoff gets it); the
//! header is parsed strictly; a user, or a whole source, in backoff is
//! refused at once; a recently verified (user, password) is accepted from
//! the cache; otherwise the hash is checked on the blocking
//! pool under a global limit, against the user's hash or, for an unknown
//! user, a decoy of the same cost. Concurrent requests with the same
//! credentials share one check: when a busy client's cache entry expires,
//! its requests wait for one hash instead of each queueing another.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::sync::{watch, Semaphore};

use crate::backoff::{BackoffGate, BackoffPolicy, Scope, SharedBackoff, Standing};
use crate::cache::ExpiringCache;
use crate::hashes::PasswordHash;
use crate::{Denial, Identity, Verdict};

/// Longest Authorization value read; real ones are a few dozen bytes.
const MAX_HEADER: usize = 4096;
/// Checks that may wait for a hashing slot before new ones are turned away.
const MAX_WAITING_PER_SLOT: usize = 8;

/// HTTP basic authentication against argon2id and bcrypt hashes, with
/// a cache of verified credentials and a backoff per source.
pub struct BasicAuthenticator {
    name: String,
    challenge: String,
    accounts: HashMap<String, PasswordHash>,
    decoy: PasswordHash,
    cache: ExpiringCache<[u8; 32], String>,
    cache_key: ring::hmac::Key,
    cache_ttl: Duration,
    backoff: BackoffGate,
    hashing: Arc<Semaphore>,
    /// Checks waiting for or holding a hashing slot, and the most allowed.
    pending: AtomicUsize,
    hashing_capacity: usize,
    /// Checks under way, by credentials digest: the answer, once known.
    in_flight: Mutex<HashMap<[u8; 32], watch::Receiver<Option<bool>>>>,
}

/// Removes a finished check from `in_flight` however its future ends.
struct InFlight<'a> {
    map: &'a Mutex<HashMap<[u8; 32], watch::Receiver<Option<bool>>>>,
    digest: [u8; 32],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.map).remove(&self.digest);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, valid whatever a panicking holder did.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one check in `pending` for as long as it lives.
struct Pending<'a>(&'a AtomicUsize);

impl<'a> Pending<'a> {
    fn enter(counter: &'a AtomicUsize, capacity: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| Pending(counter))
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a basic authenticator is built from, already validated.
pub struct BasicSpec {
    /// The `[auth]` key.
    pub name: String,
    /// The realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// (user, hash) pairs; the first pair of a user wins.
    pub accounts: Vec<(String, PasswordHash)>,
    /// How long a verified user and password are remembered.
    pub cache_ttl: Duration,
    /// When failures cost waiting.
    pub backoff: BackoffPolicy,
    /// The store every gateway instance counts failures in, if one is configured.
    pub shared_backoff: Option<SharedBackoff>,
}

impl BasicAuthenticator {
    /// The authenticator, or None when there are no accounts.
    pub fn new(spec: BasicSpec) -> Option<Self> {
        let decoy = spec.accounts.first()?.1.decoy();
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut key = [0u8; 32];
        key.copy_from_slice(&rand::random::<[u8; 32]>());
        Some(BasicAuthenticator {
            name: spec.name,
            challenge: format!("Basic realm=\"{}\", charset=\"UTF-8\"", spec.realm),
            // The first definition of a user wins, as the config order says.
            accounts: spec.accounts.into_iter().rev().collect(),
            decoy,
            cache: ExpiringCache::new(10_000),
            cache_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            cache_ttl: spec.cache_ttl,
            backoff: BackoffGate::new(spec.backoff, spec.shared_backoff),
            hashing: Arc::new(Semaphore::new(slots)),
            pending: AtomicUsize::new(0),
            hashing_capacity: slots * (1 + MAX_WAITING_PER_SLOT),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The `[auth]` key.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn unauthorized(&self, reason: &'static str) -> Verdict {
        Verdict::Deny(Denial::Unauthorized {
            challenge: self.challenge.clone(),
            reason,
        })
    }

    /// A 429 while the user (or the whole source) waits out its backoff.
    fn backing_off(&self, standing: &Standing) -> Option<Verdict> {
        let (wait, scope) = standing.wait?;
        Some(Verdict::Deny(Denial::TooManyRequests {
            retry_after: wait,
            reason: match scope {
                Scope::User => "too many failed logins for this user from this source",
                Scope::Source => "too many failed logins from this source",
            },
        }))
    }

    /// Decides on the `Authorization` value of a request from `source`.
    pub async fn check(&self, authorization: Option<&[u8]>, source: IpAddr) -> Verdict {
        let now = Instant::now();
        let Some(authorization) = authorization else {
            // A browser's first request carries no credentials: not a
            // failure, and no hashing, so not refused by the backoff either.
            return self.unauthorized("no credentials");
        };
        let (user, password) = match parse_basic(authorization) {
            Ok(credentials) => credentials,
            Err(reason) => {
                let standing = self.backoff.check(source, None).await;
                if let Some(refusal) = self.backing_off(&standing) {
                    return refusal;
                }
                self.backoff.fail(source, None).await;
                return self.unauthorized(reason);
            }
        };
        let standing = self.backoff.check(source, Some(&user)).await;
        if let Some(refusal) = self.backing_off(&standing) {
            return refusal;
        }
        let digest = self.cache_digest(&user, &password);
        if self.cache.get(&digest, now).is_some() {
            self.backoff.succeed(source, &user, &standing).await;
            return Verdict::Allow(Identity::user(user));
        }

        // The same credentials already being checked: share that answer.
        let (answer, _in_flight) = loop {
            let waiting = {
                let mut in_flight = lock(&self.in_flight);
                match in_flight.get(&digest) {
                    Some(answer) => Some(answer.clone()),
                    None => {
                        let (answer, receiver) = watch::channel(None);
                        in_flight.insert(digest, receiver);
                        break (
                            answer,
                            InFlight {
                                map: &self.in_flight,
                                digest,
                            },
                        );
                    }
                }
            };
            if let Some(mut waiting) = waiting {
                if let Ok(verified) = waiting.wait_for(Option::is_some).await.map(|v| *v) {
                    return self
                        .conclude(verified == Some(true), user, source, &standing)
                        .await;
                }
                // That check was abandoned (its request went away): try again.
            }
        };

        // Hashing is the expensive part: bound how much of it can be queued.
        let Some(_pending) = Pending::enter(&self.pending, self.hashing_capacity) else {
            return Verdict::Deny(Denial::TooManyRequests {
                retry_after: Duration::from_secs(1),
                reason: "password checks are saturated",
            });
        };
        let Ok(permit) = Arc::clone(&self.hashing).acquire_owned().await else {
            return self.unauthorized("password checks are unavailable");
        };
        let known = self.accounts.get(&user).cloned();
        let hash = known.clone().unwrap_or_else(|| self.decoy.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let ok = hash.verify(password.as_bytes());
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false)
            && known.is_some();

        if verified {
            let now = Instant::now();
            self.cache
                .insert(digest, user.clone(), now + self.cache_ttl, now);
        }
        answer.send_replace(Some(verified));
        self.conclude(verified, user, source, &standing).await
    }

    /// Allows `user` when the check passed; otherwise counts a failure.
    async fn conclude(
        &self,
        verified: bool,
        user: String,
        source: IpAddr,
        standing: &Standing,
    ) -> Verdict {
        if verified {
            self.backoff.succeed(source, &user, standing).await;
            Verdict::Allow(Identity::user(user))
        } else {
            self.backoff.fail(source, Some(&user)).await;
            // Same answer for an unknown user and a wrong password.
            self.unauthorized("wrong user or password")
        }
    }

    fn cache_digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.cache_key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// Splits `Basic base64(user:password)`; the scheme is case-insensitive
/// (RFC 9110), the rest strict.
pub fn parse_basic(header: &[u8]) -> Result<(String, String), &'static str> {
    if header.len() > MAX_HEADER {
        return Err("Authorization header too long");
    }
    let text = std::str::from_utf8(header).map_err(|_| "Authorization header is not text")?;
    let (scheme, payload) = text
        .trim()
        .split_once(' ')
        .ok_or("Authorization header is not `Basic <credentials>`")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("Authorization scheme is not Basic");
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| "Basic credentials are not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "Basic credentials are not UTF-8")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("Basic credentials have no ':'")?;
    if user.is_empty() || decoded.chars().any(char::is_control) {
        return Err("Basic credentials are malformed");
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    fn quick_hash(password: &str) -> PasswordHash {
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let stored =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(password.as_bytes())
                .unwrap()
                .to_string();
        PasswordHash::parse(&stored).unwrap()
    }

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    fn authenticator(max_failures: u32) -> BasicAuthenticator {
        BasicAuthenticator::new(BasicSpec {
            name: "ops".into(),
            realm: "management".into(),
            accounts: vec![("admin".into(), quick_hash("right"))],
            cache_ttl: Duration::from_secs(60),
            backoff: BackoffPolicy {
                max_failures,
                initial: Duration::from_secs(60),
                max: Duration::from_secs(600),
            },
            shared_backoff: None,
        })
        .unwrap()
    }

    fn is_allowed(v: &Verdict) -> bool {
        matches!(v, Verdict::Allow(_))
    }

    /// A busy client whose cache entry is cold: every request with the same
    /// credentials waits for one hash, instead of each queueing its own and
    /// the excess being told 429.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_concurrent_checks_share_one_hash() {
        let slow = bcrypt::hash("right", 8).unwrap();
        let auth = Arc::new(
            BasicAuthenticator::new(BasicSpec {
                name: "ops".into(),
                realm: "management".into(),
                accounts: vec![("admin".into(), PasswordHash::parse(&slow).unwrap())],
                cache_ttl: Duration::from_secs(60),
                backoff: BackoffPolicy {
                    max_failures: 5,
                    initial: Duration::from_secs(60),
                    max: Duration::from_secs(600),
                },
                shared_backoff: None,
            })
            .unwrap(),
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..auth.hashing_capacity + 30 {
            let auth = Arc::clone(&auth);
            checks.spawn(async move { auth.check(Some(&basic("admin", "right")), ip).await });
        }
        let mut refused = 0;
        while let Some(verdict) = checks.join_next().await {
            if !is_allowed(&verdict.unwrap()) {
                refused += 1;
            }
        }
        assert_eq!(
            refused, 0,
            "identical credentials were refused while being checked"
        );
        assert!(
            lock(&auth.in_flight).is_empty(),
            "a finished check stayed in flight"
        );
    }

    #[tokio::test]
    async fn right_password_passes_and_is_cached() {
        let auth = authenticator(5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(is_allowed(
            &auth.check(Some(&basic("admin", "right")), ip).await
        ));
        assert_eq!(auth.cache.len(), 1);
        assert!(is_allowed(
            &auth.check(Some(&basic("admin", "right")), ip).await
        ));
        assert_eq!(auth.cache.len(), 1);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_look_the_same() {
        let auth = authenticator(5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let wrong = auth.check(Some(&basic("admin", "wrong")), ip).await;
        let unknown = auth.check(Some(&basic("nobody", "right")), ip).await;
        match (wrong, unknown) {
            (
                Verdict::Deny(Denial::Unauthorized {
                    challenge: a,
                    reason: ra,
                }),
                Verdict::Deny(Denial::Unauthorized {
                    challenge: b,
                    reason: rb,
                }),
            ) => {
                assert_eq!(a, b);
                assert_eq!(ra, rb);
                assert_eq!(a, "Basic realm=\"management\", charset=\"UTF-8\"");
            }
            other => panic!("{other:?}"),
        }
    }

    fn backing_off(verdict: Verdict) -> (Duration, &'static str) {
        match verdict {
            Verdict::Deny(Denial::TooManyRequests {
                retry_after,
                reason,
            }) => (retry_after, reason),
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn backoff_refuses_even_the_right_password() {
        let auth = authenticator(2);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        auth.check(Some(&basic("admin", "x")), ip).await;
        auth.check(Some(&basic("admin", "y")), ip).await;
        let (retry_after, reason) =
            backing_off(auth.check(Some(&basic("admin", "right")), ip).await);
        assert_eq!(retry_after.as_secs().div_ceil(60), 1);
        assert_eq!(
            reason,
            "too many failed logins for this user from this source"
        );
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert!(is_allowed(
            &auth.check(Some(&basic("admin", "right")), other).await
        ));
    }

    #[tokio::test]
    async fn no_credentials_get_the_challenge_even_in_backoff() {
        let auth = authenticator(2);
        let ip: IpAddr = "192.0.2.11".parse().unwrap();
        // Two user names, four malformed headers: the source's ceiling (8).
        for user in ["admin", "root"] {
            for _ in 0..2 {
                auth.check(Some(&basic(user, "x")), ip).await;
            }
        }
        for _ in 0..4 {
            auth.check(Some(b"Basic !!!"), ip).await;
        }
        let (_, reason) = backing_off(auth.check(Some(&basic("nobody", "x")), ip).await);
        assert_eq!(reason, "too many failed logins from this source");
        backing_off(auth.check(Some(b"Basic !!!"), ip).await);
        match auth.check(None, ip).await {
            Verdict::Deny(Denial::Unauthorized { challenge, reason }) => {
                assert_eq!(challenge, "Basic realm=\"management\", charset=\"UTF-8\"");
                assert_eq!(reason, "no credentials");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn one_user_in_backoff_does_not_lock_out_another() {
        let auth = BasicAuthenticator::new(BasicSpec {
            name: "ops".into(),
            realm: "management".into(),
            accounts: vec![
                ("admin".into(), quick_hash("right")),
                ("metrics".into(), quick_hash("scrape")),
            ],
            cache_ttl: Duration::from_secs(60),
            backoff: BackoffPolicy {
                max_failures: 2,
                initial: Duration::from_secs(60),
                max: Duration::from_secs(600),
            },
            shared_backoff: None,
        })
        .unwrap();
        let nat: IpAddr = "192.0.2.12".parse().unwrap();
        for _ in 0..3 {
            auth.check(Some(&basic("admin", "typo")), nat).await;
        }
        backing_off(auth.check(Some(&basic("admin", "right")), nat).await);
        assert!(is_allowed(
            &auth.check(Some(&basic("metrics", "scrape")), nat).await
        ));
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            parse_basic(&basic("admin", "pa:ss")).unwrap(),
            ("admin".into(), "pa:ss".into())
        );
        assert!(parse_basic(b"bAsIc YWRtaW46eA==").is_ok());
        for bad in [
            &b"Basic"[..],
            b"Basic ",
            b"Bearer abc",
            b"Basic !!!",
            b"Basic YWRtaW4=",     // "admin", no colon
            b"Basic OnBhc3N3b3Jk", // ":password", empty user
            b"Basic /w==",         // 0xff
            b"Basic YWRtaW46eAB5", // NUL in the password
            b"Basic \xff\xfe",
        ] {
            assert!(
                parse_basic(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_basic(&vec![b'a'; MAX_HEADER + 1]).is_err());
    }
}
