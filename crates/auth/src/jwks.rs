//! JWK Sets fetched from the identity provider, kept fresh without letting
//! clients drive the fetching.
//!
//! * The set is fetched on first use and again in the background once it is
//!   older than `refresh_interval`; requests never wait for a refresh.
//! * A token with an unknown `kid` may trigger one refetch (key rotation),
//!   at most once per `refetch_cooldown`; concurrent misses wait for that
//!   one fetch instead of starting their own, so a flood of random kids
//!   costs the IdP one request per cooldown.
//! * A failed fetch keeps the last good set serving; failures are logged
//!   and counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::keys::{parse_jwk_set, KeySet};

/// Largest JWKS or discovery document read.
const MAX_DOCUMENT: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// With no keys at all, requests may retry the IdP this often.
const EMPTY_RETRY: Duration = Duration::from_secs(1);

/// Where a JWK Set is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The JWK Set's URL.
    Jwks(String),
    /// The issuer, whose discovery document names the JWK Set.
    Discovery(String),
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// Fetch attempts.
    pub fetches: AtomicU64,
    /// Fetch attempts that failed.
    pub failures: AtomicU64,
}

#[derive(Debug, Default)]
struct Timing {
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_failed: bool,
    last_kid_refetch: Option<Instant>,
}

/// A JWK Set fetched over HTTP(S), refreshed in the background, and
/// fetched again (at most once per cooldown) for an unknown `kid`.
pub struct RemoteKeys {
    name: String,
    endpoint: Endpoint,
    client: reqwest::Client,
    current: RwLock<Option<Arc<KeySet>>>,
    /// Bumped by every successful fetch, so waiters can tell one happened.
    generation: AtomicU64,
    timing: Mutex<Timing>,
    fetch_lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    refresh_interval: Duration,
    cooldown: Duration,
    /// Fetch counters.
    pub stats: FetchStats,
}

impl RemoteKeys {
    /// Keys for `endpoint`, not fetched yet.
    pub fn new(
        name: &str,
        endpoint: Endpoint,
        client: reqwest::Client,
        refresh_interval: Duration,
        cooldown: Duration,
    ) -> Self {
        RemoteKeys {
            name: name.to_string(),
            endpoint,
            client,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            timing: Mutex::new(Timing::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            refresh_interval,
            cooldown,
            stats: FetchStats::default(),
        }
    }

    /// The HTTP client settings for fetching keys: timeouts, few
    /// redirects, Postern's user agent.
    pub fn client_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
            // Fetches are rare, and come from whichever runtime the request ran on.
            .pool_max_idle_per_host(0)
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many fetches have succeeded.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set: fetched now if there is none, refreshed in the
    /// background if it is old.
    pub async fn keys(self: &Arc<Self>) -> Option<(Arc<KeySet>, u64)> {
        let generation = self.generation();
        match self.snapshot() {
            Some(set) => {
                self.refresh_if_due();
                Some((set, generation))
            }
            None => {
                let _flight = self.fetch_lock.lock().await;
                if let Some(set) = self.snapshot() {
                    return Some((set, self.generation()));
                }
                let recently = {
                    let timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
                    timing
                        .last_attempt
                        .is_some_and(|t| t.elapsed() < EMPTY_RETRY)
                };
                if !recently {
                    self.fetch().await;
                }
                self.snapshot().map(|s| (s, self.generation()))
            }
        }
    }

    /// For a `kid` the set (of generation `seen`) does not know: refetch
    /// once, unless the cooldown forbids it or another request already did.
    pub async fn refetch_for_unknown_kid(&self, seen: u64) -> Option<Arc<KeySet>> {
        let _flight = self.fetch_lock.lock().await;
        if self.generation() != seen {
            return self.snapshot();
        }
        {
            let mut timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
            if timing
                .last_kid_refetch
                .is_some_and(|t| t.elapsed() < self.cooldown)
            {
                return None;
            }
            timing.last_kid_refetch = Some(Instant::now());
        }
        if self.fetch().await {
            self.snapshot()
        } else {
            None
        }
    }

    fn refresh_if_due(self: &Arc<Self>) {
        let due = {
            let timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
            match (timing.last_failed, timing.last_attempt, timing.fetched_at) {
                (true, Some(attempt), _) => {
                    attempt.elapsed() >= self.cooldown.min(self.refresh_interval)
                }
                (_, _, Some(fetched)) => fetched.elapsed() >= self.refresh_interval,
                _ => false,
            }
        };
        if !due || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            {
                let _flight = this.fetch_lock.lock().await;
                this.fetch().await;
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// One fetch; the caller holds `fetch_lock`. True when a set was installed.
    async fn fetch(&self) -> bool {
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.fetch_set().await;
        let mut timing = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        timing.last_attempt = Some(started);
        match result {
            Ok((set, skipped)) => {
                log::info!(
                    "auth {:?}: fetched {} signing key(s) from the IdP{}",
                    self.name,
                    set.keys.len(),
                    if skipped > 0 {
                        format!(" ({skipped} other key(s) skipped)")
                    } else {
                        String::new()
                    }
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                timing.fetched_at = Some(started);
                timing.last_failed = false;
                true
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                timing.last_failed = true;
                let keeping = if self.snapshot().is_some() {
                    "; the last good keys keep serving"
                } else {
                    "; no keys yet, so tokens are refused"
                };
                log::warn!("auth {:?}: JWKS fetch failed: {e}{keeping}", self.name);
                false
            }
        }
    }

    async fn fetch_set(&self) -> Result<(KeySet, usize), String> {
        let jwks_url = match &self.endpoint {
            Endpoint::Jwks(url) => url.clone(),
            Endpoint::Discovery(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc = self.get(&url).await?;
                let doc: serde_json::Value =
                    serde_json::from_slice(&doc).map_err(|e| format!("{url} is not JSON: {e}"))?;
                let jwks = doc
                    .get("jwks_uri")
                    .and_then(|u| u.as_str())
                    .ok_or_else(|| format!("{url} names no jwks_uri"))?;
                if !(jwks.starts_with("https://") || jwks.starts_with("http://")) {
                    return Err(format!("{url} names a jwks_uri that is not http(s)"));
                }
                jwks.to_string()
            }
        };
        let body = self.get(&jwks_url).await?;
        let (set, skipped) = parse_jwk_set(&body).map_err(|e| format!("{jwks_url} {e}"))?;
        if set.keys.is_empty() {
            return Err(format!("{jwks_url} holds no usable signing keys"));
        }
        Ok((set, skipped))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_DOCUMENT as u64)
        {
            return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
