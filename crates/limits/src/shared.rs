//! The shared store: GCRA buckets in Redis, so every gateway replica counts against one limit.
//! The basic-auth backoff shares the same connection (see the `backoff` module).
//!
//! One decision is one `EVALSHA` of `gcra.lua` (redis::Script falls back to `EVAL` on
//! NOSCRIPT), atomic on the server, with a short timeout. When Redis errs or is slow, the
//! store turns Degraded at once: decisions go to each instance's local limiter (so a cluster
//! of N replicas lets up to N times the limit through until Redis is back), the failure is
//! logged once and counted, and a background task reconnects. The caller never sees an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::{redact_url, Decision, Policy};

/// Tuning of the shared store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a decision waits for Redis before it is made locally instead.
    pub timeout: Duration,
    /// How often a Degraded store tries to reconnect.
    pub retry_every: Duration,
    /// Prefix of every rate-limit key the store writes, so it can share a Redis database.
    pub key_prefix: String,
    /// Prefix of every basic-auth backoff key (see the `backoff` module).
    pub backoff_prefix: String,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            timeout: Duration::from_millis(50),
            retry_every: Duration::from_secs(1),
            key_prefix: "postern:limit:".to_owned(),
            backoff_prefix: "postern:backoff:".to_owned(),
        }
    }
}

/// What `/health` can show about the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// Every decision goes through the store.
    Healthy,
    /// Deciding locally since `since`, because of `last_error` (no secrets in it).
    Degraded {
        /// When the store stopped answering.
        since: SystemTime,
        /// What the last failure said, without credentials.
        last_error: String,
    },
}

/// A connection to the Redis that all replicas share; one per process, for every limit.
pub struct SharedStore {
    client: redis::Client,
    /// The URL with its password replaced, the only form that is logged.
    shown_url: String,
    password: Option<String>,
    pub(crate) options: StoreOptions,
    script: redis::Script,
    /// `backoff.lua`, for the basic-auth backoff (see the `backoff` module).
    pub(crate) backoff_script: redis::Script,
    connection: Mutex<Option<ConnectionManager>>,
    healthy: AtomicBool,
    health: Mutex<StoreHealth>,
    errors: AtomicU64,
}

impl SharedStore {
    /// Opens the store at `url` (`redis://[:password@]host:port/db`, or `rediss://`) and waits
    /// for the first connection attempt. Only a URL that does not parse is an error; an
    /// unreachable Redis gives a Degraded store that keeps trying in the background. Must be
    /// called inside a tokio runtime.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Arc<SharedStore>, String> {
        let store = SharedStore::unconnected(url, options)?;
        if let Err(error) = store.reconnect().await {
            store.degrade(&error);
        }
        tokio::spawn(keep_connected(Arc::downgrade(&store)));
        Ok(store)
    }

    /// As [`SharedStore::connect`], without waiting: the store starts Degraded ("not connected
    /// yet") and connects in a task on the current tokio runtime, which must outlive it. For a
    /// caller that is not async, such as the gateway compiling its configuration.
    pub fn open(url: &str, options: StoreOptions) -> Result<Arc<SharedStore>, String> {
        let store = SharedStore::unconnected(url, options)?;
        let first = Arc::downgrade(&store);
        tokio::spawn(async move {
            if let Some(store) = first.upgrade() {
                if let Err(error) = store.reconnect().await {
                    store.degrade(&error);
                    log::warn!(
                        "shared store {}: {}; deciding limits locally (basic-auth backoff too) until it answers",
                        store.shown_url,
                        store.scrub(&error)
                    );
                }
            }
            keep_connected(first).await;
        });
        Ok(store)
    }

    fn unconnected(url: &str, options: StoreOptions) -> Result<Arc<SharedStore>, String> {
        let shown_url = redact_url(url);
        let client = redis::Client::open(url).map_err(|_| {
            format!(
                "shared_store {shown_url:?}: expected a URL such as \"redis://127.0.0.1:6379/0\""
            )
        })?;
        let password = client.get_connection_info().redis.password.clone();
        Ok(Arc::new(SharedStore {
            client,
            shown_url,
            password,
            options,
            script: redis::Script::new(include_str!("gcra.lua")),
            backoff_script: redis::Script::new(include_str!("backoff.lua")),
            connection: Mutex::new(None),
            healthy: AtomicBool::new(false),
            health: Mutex::new(StoreHealth::Degraded {
                since: SystemTime::now(),
                last_error: "not connected yet".to_owned(),
            }),
            errors: AtomicU64::new(0),
        }))
    }

    /// The URL as it may be shown: its password replaced by `***`.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Whether decisions are shared right now, or local and since when.
    pub fn health(&self) -> StoreHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Failed calls and reconnection attempts so far, for `postern_shared_store_errors_total`.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The shared decision, or `None` when it must be made locally.
    pub(crate) async fn check(&self, policy: &Policy, key: &str) -> Option<Decision> {
        let mut invocation = self.script.key(self.bucket(policy, key));
        invocation
            .arg(policy.rate().interval().as_micros() as u64)
            .arg(policy.burst().get());
        let (allowed, remaining, micros) = self.invoke::<(i64, i64, i64)>(&invocation).await?;
        let wait = Duration::from_micros(micros.max(0) as u64);
        Some(if allowed == 1 {
            Decision::Allowed {
                remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                reset: wait,
            }
        } else {
            Decision::Limited { retry_after: wait }
        })
    }

    /// Runs one script call within the timeout: its answer, or `None` (the store turns
    /// Degraded) when Redis errs or is slow, or at once while it is Degraded already.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        if !self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let mut connection = self.lock_connection().clone()?;
        let call = invocation.invoke_async::<T>(&mut connection);
        let error = match tokio::time::timeout(self.options.timeout, call).await {
            Ok(Ok(answer)) => return Some(answer),
            // The connection's own response timeout is the same as ours; either may fire.
            Ok(Err(error)) if !error.is_timeout() => error.to_string(),
            Ok(Err(_)) | Err(_) => format!("no answer within {:?}", self.options.timeout),
        };
        self.degrade(&error);
        None
    }

    /// The Redis key of a bucket: a digest of the client key, so a header value or token never
    /// lands in Redis and every key has the same short length.
    fn bucket(&self, policy: &Policy, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{}:{hex}", self.options.key_prefix, policy.name())
    }

    fn lock_connection(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection, checked with PING; on success the store is Healthy again.
    async fn reconnect(&self) -> Result<(), String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.options.retry_every.max(self.options.timeout))
            .set_response_timeout(self.options.timeout)
            .set_number_of_retries(0);
        let attempt = async {
            let mut connection =
                ConnectionManager::new_with_config(self.client.clone(), config).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let connection = match tokio::time::timeout(self.options.retry_every, attempt).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("no answer within {:?}", self.options.retry_every)),
        };
        *self.lock_connection() = Some(connection);
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = StoreHealth::Healthy;
        if !self.healthy.swap(true, Ordering::AcqRel) {
            log::info!(
                "shared store {}: connected, limits are shared",
                self.shown_url
            );
        }
        Ok(())
    }

    fn degrade(&self, error: &str) {
        let error = self.scrub(error);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let was_healthy = self.healthy.swap(false, Ordering::AcqRel);
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let since = match &*health {
            StoreHealth::Degraded { since, .. } if !was_healthy => *since,
            _ => SystemTime::now(),
        };
        *health = StoreHealth::Degraded {
            since,
            last_error: error.clone(),
        };
        if was_healthy {
            log::warn!(
                "shared store {}: {error}; deciding limits locally (basic-auth backoff too) until it answers again",
                self.shown_url
            );
        } else {
            log::debug!(
                "shared store {}: still unreachable: {error}",
                self.shown_url
            );
        }
    }

    /// Errors come from the redis crate; make sure none repeats the password.
    fn scrub(&self, error: &str) -> String {
        match &self.password {
            Some(password) if !password.is_empty() => error.replace(password.as_str(), "***"),
            _ => error.to_owned(),
        }
    }
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The shown URL only: the client's own Debug would print the password.
        write!(f, "SharedStore({:?})", self.shown_url)
    }
}

/// Reconnects a Degraded store every `retry_every`, until the store is dropped.
async fn keep_connected(store: Weak<SharedStore>) {
    loop {
        let Some(every) = store.upgrade().map(|s| s.options.retry_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        if !store.healthy.load(Ordering::Acquire) {
            if let Err(error) = store.reconnect().await {
                store.degrade(&error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_refused_without_its_password() {
        let Err(error) =
            SharedStore::connect("http://:s3cret@host/0", StoreOptions::default()).await
        else {
            panic!("http:// accepted");
        };
        assert!(error.contains("redis://127.0.0.1:6379/0"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_store_is_degraded_and_counted_not_an_error() {
        // Port 1 on loopback: nothing listens there, the refusal is immediate.
        let store = SharedStore::connect("redis://:s3cret@127.0.0.1:1/0", StoreOptions::default())
            .await
            .unwrap();
        assert!(store.errors() >= 1);
        let StoreHealth::Degraded { last_error, .. } = store.health() else {
            panic!("healthy without a server");
        };
        assert!(!last_error.contains("s3cret"), "{last_error}");
        let policy = Policy::new("login", "1/h".parse().unwrap(), None).unwrap();
        assert_eq!(store.check(&policy, "client").await, None);
        let keys = crate::BackoffKeys {
            label: "ops",
            source: "0123",
            user: Some("4567"),
        };
        assert_eq!(store.backoff_state(keys).await, None);
    }
}
