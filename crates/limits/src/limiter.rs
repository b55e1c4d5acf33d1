//! One limit as the gateway uses it: shared when a store is configured and answering, local
//! otherwise, and never an error.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::{Decision, LocalLimiter, Policy, SharedStore};

/// The limiter of one `[limits.NAME]`.
pub struct Limiter {
    policy: Policy,
    local: Arc<LocalLimiter>,
    shared: Option<Arc<SharedStore>>,
}

impl Limiter {
    /// A limiter for `policy`, tracking at most `max_keys` keys locally (see [`LocalLimiter`]),
    /// deciding through `shared` while it answers. Inside a tokio runtime, a background task
    /// evicts idle keys once per refill time (between 1 and 60 seconds).
    pub fn new(policy: Policy, max_keys: usize, shared: Option<Arc<SharedStore>>) -> Limiter {
        let local = Arc::new(LocalLimiter::new(&policy, max_keys));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let every = policy
                .refill()
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            runtime.spawn(evict_idle(Arc::downgrade(&local), every));
        }
        Limiter {
            policy,
            local,
            shared,
        }
    }

    /// The limit this limiter enforces.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The per-instance limiter, used while the shared store does not answer.
    pub fn local(&self) -> &LocalLimiter {
        &self.local
    }

    /// Decides one request for `key`: in the shared store if there is one and it answers in
    /// time, else in this process.
    pub async fn check(&self, key: &str) -> Decision {
        if let Some(shared) = &self.shared {
            if let Some(decision) = shared.check(&self.policy, key).await {
                return decision;
            }
        }
        self.local.check(key)
    }
}

async fn evict_idle(local: Weak<LocalLimiter>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(local) = local.upgrade() else {
            return;
        };
        local.evict_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_keys_are_evicted_in_the_background() {
        // Refilled in 1 ms, so every key is idle by the first sweep, one second in.
        let policy = Policy::new("login", "1000/s".parse().unwrap(), Some(1)).unwrap();
        let limiter = Limiter::new(policy, 100, None);
        for i in 0..50 {
            assert!(limiter.check(&format!("client-{i}")).await.is_allowed());
        }
        assert_eq!(limiter.local().tracked_keys(), 50);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(limiter.local().tracked_keys(), 0);
    }
}
