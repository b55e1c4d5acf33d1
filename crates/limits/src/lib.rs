//! Postern's rate-limiting engine, for the `[limits.NAME]` tables of gateway.toml (issue 19,
//! "Shield the backends"): the open endpoints of Domino and Keycloak that turn a password into
//! a token need a limit per client that holds however many gateway replicas run.
//!
//! - [`Policy`]: a name, a [`Rate`] (`"10/m"`) and a burst, parsed here so the config crate
//!   reports bad spellings; [`LimitKey`] says what a limit counts by.
//! - [`LocalLimiter`]: GCRA per key in this process (governor), in memory bounded whatever the
//!   number of distinct keys.
//! - [`SharedStore`] and [`Limiter`]: the same GCRA in Redis, one atomic round trip per
//!   decision, falling back to the local limiter at once when Redis is slow or gone.
//! - [`SharedStore::backoff_state`] and friends: the basic-auth backoff's failure counts in the
//!   same Redis (postern-auth holds the rules and the local fallback), one atomic round trip
//!   per check and per recorded failure.
//! - [`headers`]: `RateLimit-Policy`, `RateLimit` and `Retry-After` values for a decision.
//!
//! The semantics are nginx's `limit_req` with `burst` and `nodelay`: a request is let through
//! or refused at once, never queued. Nothing here knows about Pingora or HTTP requests; the
//! gateway extracts the key and turns a [`Decision`] into a response.

#[cfg(feature = "engine")]
mod backoff;
pub mod headers;
#[cfg(feature = "engine")]
mod limiter;
#[cfg(feature = "engine")]
mod local;
mod rate;
#[cfg(feature = "engine")]
mod shared;
mod store_url;

use std::time::Duration;

#[cfg(feature = "engine")]
pub use backoff::{BackoffKeys, BackoffRule, BackoffState};
#[cfg(feature = "engine")]
pub use limiter::Limiter;
#[cfg(feature = "engine")]
pub use local::{LocalLimiter, OVERFLOW_BUCKETS};
pub use rate::{LimitKey, Per, Policy, Rate, MAX_COUNT};
#[cfg(feature = "engine")]
pub use shared::{SharedStore, StoreHealth, StoreOptions};
pub use store_url::{check_store_url, redact_url};

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through. `remaining` more requests would be let through right now; after
    /// `reset` the bucket is full again.
    Allowed {
        /// Requests that would still be let through right now.
        remaining: u32,
        /// When the bucket is full again.
        reset: Duration,
    },
    /// Refuse it (429); a request after `retry_after` would be let through.
    Limited {
        /// How long until a request would be let through.
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether the request may go on.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}
