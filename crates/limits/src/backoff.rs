//! The basic-auth backoff's counts in the shared store, so a password-guesser spread over the
//! replicas meets one `max_failures` and one doubling wait, as against a single gateway.
//!
//! The rules are postern-auth's (`backoff.rs`); this module only stores them in Redis: each
//! operation is one call of `backoff.lua`, atomic on the server, under the store's timeout,
//! degrading the store (and so falling back to each instance's own backoff) like a rate-limit
//! decision. Keys arrive already hashed (postern-auth keys them so that no user name reaches
//! Redis); here they only get the store's backoff prefix.

use std::time::Duration;

use crate::SharedStore;

/// The records one request touches: its source's and, when the credentials name a user, that
/// user's at the source. Both are opaque, fixed-length digests chosen by the caller.
#[derive(Debug, Clone, Copy)]
pub struct BackoffKeys<'a> {
    /// What keeps these records apart from another authenticator's (its `[auth]` name).
    pub label: &'a str,
    /// The source's digest.
    pub source: &'a str,
    /// The (source, user name) digest, if the credentials named a user.
    pub user: Option<&'a str>,
}

/// When failures cost waiting; the thresholds are already those of user and source.
#[derive(Debug, Clone, Copy)]
pub struct BackoffRule {
    /// Failures in a row of one user at one source before it waits.
    pub user_threshold: u32,
    /// Failures in a row from one source, whatever the names, before the source waits.
    pub source_threshold: u32,
    /// The first wait; each further failure doubles it.
    pub initial: Duration,
    /// The longest wait, and how long a quiet record is kept.
    pub max: Duration,
}

/// Where a request stands, as the store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffState {
    /// How long the whole source must still wait (zero: it need not).
    pub source_wait: Duration,
    /// How long the user must still wait at this source (zero: it need not).
    pub user_wait: Duration,
    /// The user's failures in a row at this source: a success has something to forgive.
    pub user_failures: u32,
}

impl SharedStore {
    /// Where `keys` stand; `None` when the store does not answer (decide locally).
    pub async fn backoff_state(&self, keys: BackoffKeys<'_>) -> Option<BackoffState> {
        let mut invocation = self.backoff_script.prepare_invoke();
        self.backoff_keys(&mut invocation, keys);
        invocation.arg("check");
        let (source, user, failures) = self.invoke::<(i64, i64, i64)>(&invocation).await?;
        let millis = |ms: i64| Duration::from_millis(ms.max(0) as u64);
        Some(BackoffState {
            source_wait: millis(source),
            user_wait: millis(user),
            user_failures: failures.clamp(0, i64::from(u32::MAX)) as u32,
        })
    }

    /// Counts one failure for `keys`: the longest wait it now imposes (`Some(None)`: none), or
    /// `None` when the store does not answer.
    pub async fn backoff_fail(
        &self,
        keys: BackoffKeys<'_>,
        rule: BackoffRule,
    ) -> Option<Option<Duration>> {
        let mut invocation = self.backoff_script.prepare_invoke();
        self.backoff_keys(&mut invocation, keys);
        invocation
            .arg("fail")
            .arg(rule.user_threshold)
            .arg(rule.source_threshold)
            .arg(millis(rule.initial))
            .arg(millis(rule.max));
        let imposed = self.invoke::<i64>(&invocation).await?;
        Some((imposed >= 0).then(|| Duration::from_millis(imposed as u64)))
    }

    /// Forgets the user's failures at the source, and takes them off the source's count;
    /// `None` when the store does not answer.
    pub async fn backoff_forgive(&self, keys: BackoffKeys<'_>) -> Option<()> {
        if keys.user.is_none() {
            return Some(());
        }
        let mut invocation = self.backoff_script.prepare_invoke();
        self.backoff_keys(&mut invocation, keys);
        invocation.arg("forgive");
        self.invoke::<i64>(&invocation).await.map(|_| ())
    }

    /// KEYS[1] the source's record, KEYS[2] the user's at that source, as the script reads them.
    fn backoff_keys(&self, invocation: &mut redis::ScriptInvocation<'_>, keys: BackoffKeys<'_>) {
        let source = format!(
            "{}{}:{}",
            self.options.backoff_prefix, keys.label, keys.source
        );
        if let Some(user) = keys.user {
            let user = format!("{source}:{user}");
            invocation.key(source).key(user);
        } else {
            invocation.key(source);
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
