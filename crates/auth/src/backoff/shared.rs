//! The backoff as a basic authenticator uses it: in the shared store (`[gateway]
//! shared_store`) while it answers, so every gateway instance counts one client's failures
//! together, and in this process always, as the fallback.
//!
//! - A check, before any hashing, is one round trip to Redis (postern-limits'
//!   `backoff_state`), under the store's short timeout.
//! - A failure is one more, and the client waits for it: the 401 comes after a password hash
//!   anyway, so a round trip more costs nothing noticeable, and once a client has seen its
//!   401 the failure counts on every instance, before it can try again anywhere. A success
//!   goes to Redis only when the check saw failures to forgive, so the common case (cached
//!   credentials, no failures) costs the one check.
//! - Every failure and success is also recorded in the local [`Backoff`], so when Redis is
//!   slow or gone (the store turns Degraded, counts the error and reconnects in the
//!   background) the instance goes on at once with what it saw itself, as with no store.
//!
//! Keys in Redis hold no user name and no address in clear: both go through HMAC-SHA-256
//! under a key every instance derives the same way, from the authenticator's name and its
//! accounts' password hashes (the configuration all replicas share). A plain SHA-256 of a
//! user name would let anyone who reads Redis confirm guesses such as "admin" offline; the
//! keyed hash needs the password hashes, and whoever has them can attack the passwords
//! themselves. The price: replicas whose accounts differ (halfway through a rollout that
//! changes a password) count apart until they agree, as a reload started afresh before.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_limits::{BackoffKeys, BackoffRule, SharedStore};
use ring::hmac;

use super::{bucket, Backoff, BackoffPolicy, Scope, SOURCE_CEILING};

/// How one authenticator's backoff is shared.
pub struct SharedBackoff {
    store: Arc<SharedStore>,
    label: String,
    key: hmac::Key,
}

impl SharedBackoff {
    /// Shares through `store` the backoff of the authenticator `name`, whose accounts have
    /// the password hashes `hashes` (as written in the configuration, in any order).
    pub fn new<'a>(
        store: Arc<SharedStore>,
        name: &str,
        hashes: impl IntoIterator<Item = &'a str>,
    ) -> SharedBackoff {
        let mut hashes: Vec<&str> = hashes.into_iter().collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut seed = ring::digest::Context::new(&ring::digest::SHA256);
        seed.update(b"postern basic-auth backoff v1\0");
        for part in std::iter::once(name).chain(hashes) {
            seed.update(&(part.len() as u64).to_be_bytes());
            seed.update(part.as_bytes());
        }
        SharedBackoff {
            store,
            label: name.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, seed.finish().as_ref()),
        }
    }

    /// The digests of `source` and of (`source`, `user`), 128 bits each, in hex.
    fn digests(&self, source: IpAddr, user: Option<&str>) -> (String, Option<String>) {
        let address = match bucket(source) {
            IpAddr::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
            IpAddr::V6(v6) => [&[6u8][..], &v6.octets()].concat(),
        };
        let digest = |kind: &[u8], name: Option<&str>| {
            let mut ctx = hmac::Context::with_key(&self.key);
            ctx.update(kind);
            ctx.update(&address);
            if let Some(name) = name {
                ctx.update(&(name.len() as u64).to_be_bytes());
                ctx.update(name.as_bytes());
            }
            // One allocation per digest: this runs on every basic-auth request.
            let mut hex = String::with_capacity(32);
            for b in &ctx.sign().as_ref()[..16] {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        };
        (
            digest(b"source", None),
            user.map(|user| digest(b"user", Some(user))),
        )
    }
}

/// Where one request stands: whether it must wait, and whether a success has failures to
/// forgive in the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// How long the request must still wait, and who waits; `None`: it may go on.
    pub wait: Option<(Duration, Scope)>,
    shared_failures: bool,
}

/// The backoff of one basic authenticator: shared while the store answers, local always.
pub struct BackoffGate {
    policy: BackoffPolicy,
    local: Backoff,
    shared: Option<SharedBackoff>,
}

impl BackoffGate {
    /// A backoff under `policy`, shared through `shared` if given.
    pub fn new(policy: BackoffPolicy, shared: Option<SharedBackoff>) -> BackoffGate {
        BackoffGate {
            policy,
            local: Backoff::new(policy),
            shared,
        }
    }

    /// The per-instance backoff, which decides while the shared store does not answer.
    pub fn local(&self) -> &Backoff {
        &self.local
    }

    fn rule(&self) -> BackoffRule {
        BackoffRule {
            user_threshold: self.policy.max_failures,
            source_threshold: self.policy.max_failures.saturating_mul(SOURCE_CEILING),
            initial: self.policy.initial,
            max: self.policy.max,
        }
    }

    /// Where a request from `source` for `user` (none: the credentials name no user) stands.
    pub async fn check(&self, source: IpAddr, user: Option<&str>) -> Standing {
        if let Some(shared) = &self.shared {
            let (source_key, user_key) = shared.digests(source, user);
            let keys = BackoffKeys {
                label: &shared.label,
                source: &source_key,
                user: user_key.as_deref(),
            };
            if let Some(state) = shared.store.backoff_state(keys).await {
                // As the local backoff: the longer wait, the user's on a tie.
                let wait = [
                    (state.source_wait, Scope::Source),
                    (state.user_wait, Scope::User),
                ]
                .into_iter()
                .filter(|(wait, _)| !wait.is_zero())
                .max_by_key(|(wait, _)| *wait);
                return Standing {
                    wait,
                    shared_failures: state.user_failures > 0,
                };
            }
        }
        Standing {
            wait: self.local.wait(source, user, Instant::now()),
            shared_failures: false,
        }
    }

    /// Records a failure from `source` for `user` (none: only the source's count grows).
    pub async fn fail(&self, source: IpAddr, user: Option<&str>) {
        self.local.fail(source, user, Instant::now());
        if let Some(shared) = &self.shared {
            let (source_key, user_key) = shared.digests(source, user);
            let keys = BackoffKeys {
                label: &shared.label,
                source: &source_key,
                user: user_key.as_deref(),
            };
            // `None`: the store did not answer and is Degraded now; the local count stands.
            let _ = shared.store.backoff_fail(keys, self.rule()).await;
        }
    }

    /// A success of `user` from `source`, whose check gave `standing`: forgives its failures.
    pub async fn succeed(&self, source: IpAddr, user: &str, standing: &Standing) {
        self.local.succeed(source, user);
        let Some(shared) = self.shared.as_ref().filter(|_| standing.shared_failures) else {
            return;
        };
        let (source_key, user_key) = shared.digests(source, Some(user));
        let keys = BackoffKeys {
            label: &shared.label,
            source: &source_key,
            user: user_key.as_deref(),
        };
        let _ = shared.store.backoff_forgive(keys).await;
    }
}
