//! `[limits.NAME]` on routes: the key a request counts by, the decision, and the headers that
//! tell the client where it stands. The algorithm and the shared store are postern-limits';
//! this module only connects them to requests.
//!
//! Where it runs (proxy.rs `admit`): after deny, allow and max_body_size (decision.rs), and
//! before authentication for every key but `claim:`, so a flood of bad passwords is refused
//! without a single hash; a `claim:` limit runs after the JWT was verified, on its claim.
//!
//! Limiters are kept by name across reloads while their policy and store are unchanged (as
//! upstream health is, see health.rs `registered`), so a reload does not hand every client a
//! fresh bucket. One shared store serves the whole process. Both live on a small runtime of
//! their own: the configuration is compiled outside any request, and Redis' connection task
//! and the idle-key sweeps must outlive whichever thread compiled it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName};
use postern_auth::Identity;
use postern_config::{Diagnostics, Limit, LimitKey, LimitPolicy, StoreUrl};
use postern_limits::{headers, Decision, Limiter, SharedStore, StoreHealth, StoreOptions};
use prometheus::IntCounter;
use serde_json::{json, Value};

use crate::metrics::metrics;

/// Keys tracked per limit and instance (about 36 bytes each, docs/rate-limits.md); beyond it
/// new keys share overflow buckets, so memory stays bounded whatever clients send.
pub const MAX_TRACKED_KEYS: usize = 200_000;

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A route's limit, compiled into its plan.
pub struct RouteLimit {
    limiter: Arc<Limiter>,
    key: LimitKey,
    /// The `RateLimit-Policy` value of its refusals, compiled at load.
    policy_header: String,
    /// `postern_rate_limited_total{route, limit}`.
    limited: IntCounter,
}

impl std::fmt::Debug for RouteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteLimit({:?})", self.limiter.policy().name())
    }
}

/// When a limit is checked relative to authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeAuth,
    AfterAuth,
}

impl RouteLimit {
    /// The limit `limit` as route `route` applies it.
    pub fn new(route: &str, limit: &Limit, shared: Option<&Arc<SharedStore>>) -> RouteLimit {
        let policy_header = headers::policy_header(&limit.policy);
        RouteLimit {
            limiter: limiter(limit, shared),
            key: limit.key.clone(),
            policy_header,
            limited: metrics()
                .rate_limited
                .with_label_values(&[route, limit.name.as_str()]),
        }
    }

    /// The `[limits]` name.
    pub fn name(&self) -> &str {
        self.limiter.policy().name()
    }

    /// Whether this limit is checked at `stage`.
    pub fn runs_at(&self, stage: Stage) -> bool {
        let after = matches!(self.key, LimitKey::Claim(_));
        (stage == Stage::AfterAuth) == after
    }

    /// Takes one request from the bucket of its key; a refusal is counted.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        identity: Option<&Identity>,
    ) -> Decision {
        let mut scratch = ClientKey::default();
        let key = request_key(&self.key, headers, client, identity, &mut scratch);
        let decision = self.limiter.check(&key).await;
        if !decision.is_allowed() {
            self.limited.inc();
        }
        decision
    }

    /// The headers of the 429 after `decision`: the policy, where the client stands and
    /// Retry-After. Allowed responses carry none of them (as with nginx's `limit_req` and
    /// Envoy's default): they would cost every request of a limited route two header inserts,
    /// about 4% of its CPU (docs/performance.md), for clients that rarely read them.
    pub fn headers(&self, decision: &Decision) -> Vec<(HeaderName, String)> {
        let policy = self.limiter.policy();
        let mut out = vec![
            (RATELIMIT_POLICY.clone(), self.policy_header.clone()),
            (
                RATELIMIT.clone(),
                headers::ratelimit_header(policy, decision),
            ),
        ];
        if let Some(seconds) = headers::retry_after(decision) {
            out.push((RETRY_AFTER, seconds));
        }
        out
    }
}

/// Room for the longest client key (39 bytes).
const CLIENT_KEY_BYTES: usize = 48;

/// A client address as a bucket key, written on the stack: a `client` limit is checked on
/// every request of its route, and an address needs no allocation.
struct ClientKey {
    bytes: [u8; CLIENT_KEY_BYTES],
}

impl Default for ClientKey {
    fn default() -> ClientKey {
        ClientKey {
            bytes: [0; CLIENT_KEY_BYTES],
        }
    }
}

impl ClientKey {
    /// IPv6 clients count per /64, the block one client usually holds, so hopping addresses
    /// inside it gains nothing.
    fn write(&mut self, client: IpAddr) -> &str {
        use std::io::Write as _;
        let mut out = &mut self.bytes[..];
        // At most 39 bytes ("ffff:ffff:ffff:ffff::/64" or a dotted quad): always fits.
        let _ = match client {
            IpAddr::V4(v4) => write!(out, "{v4}"),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                write!(out, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        let written = CLIENT_KEY_BYTES - out.len();
        std::str::from_utf8(&self.bytes[..written]).unwrap_or("")
    }
}

/// The bucket a request counts in. Requests without the header or claim share one bucket.
fn request_key<'r>(
    key: &LimitKey,
    headers: &'r HeaderMap,
    client: IpAddr,
    identity: Option<&'r Identity>,
    scratch: &'r mut ClientKey,
) -> Cow<'r, str> {
    match key {
        LimitKey::Client => Cow::Borrowed(scratch.write(client)),
        LimitKey::Header(name) => headers
            .get(name)
            .map_or(Cow::Borrowed(""), |v| String::from_utf8_lossy(v.as_bytes())),
        LimitKey::Claim(claim) => identity
            .and_then(|i| i.claims.as_deref())
            .and_then(|claims| claim_value(claims, claim))
            .unwrap_or(Cow::Borrowed("")),
        LimitKey::Route => Cow::Borrowed(""),
    }
}

/// A claim as text: by its exact name, else as a dotted path into nested objects
/// (`realm_access.name`). Objects and arrays are no key.
fn claim_value<'c>(claims: &'c serde_json::Map<String, Value>, name: &str) -> Option<Cow<'c, str>> {
    let value = claims.get(name).or_else(|| {
        let mut parts = name.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.get(part))
    })?;
    match value {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// The runtime the shared store's connection and the limiters' sweeps run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postern-limits")
            .enable_all()
            .build()
            .expect("a one-thread tokio runtime")
    })
}

/// The process's shared store for `url`: the one already open when the URL is unchanged,
/// else a new one (connecting in the background). A URL the redis crate refuses is added to
/// `diags`, shown without its password.
pub fn shared_store(
    url: &StoreUrl,
    origin: &postern_config::Origin,
    diags: &mut Diagnostics,
) -> Option<Arc<SharedStore>> {
    static STORE: Mutex<Option<(String, Arc<SharedStore>)>> = Mutex::new(None);
    let mut current = STORE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((open_url, store)) = current.as_ref() {
        if open_url == url.secret() {
            return Some(Arc::clone(store));
        }
    }
    let _context = runtime().enter();
    match SharedStore::open(url.secret(), StoreOptions::default()) {
        Ok(store) => {
            *current = Some((url.secret().to_string(), Arc::clone(&store)));
            Some(store)
        }
        Err(message) => {
            diags.error_with_help(
                origin,
                message,
                "write redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS)",
            );
            None
        }
    }
}

/// The limiter of `limit`: the running one if its policy and store are unchanged, so its
/// counters survive a reload.
fn limiter(limit: &Limit, shared: Option<&Arc<SharedStore>>) -> Arc<Limiter> {
    struct Registered {
        policy: LimitPolicy,
        shared: Option<Weak<SharedStore>>,
        limiter: Weak<Limiter>,
    }
    static REGISTRY: OnceLock<Mutex<HashMap<String, Registered>>> = OnceLock::new();
    let mut registry = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let same_store = |registered: &Option<Weak<SharedStore>>| match (registered, shared) {
        (None, None) => true,
        (Some(weak), Some(store)) => weak.as_ptr() == Arc::as_ptr(store),
        _ => false,
    };
    if let Some(running) = registry
        .get(&limit.name)
        .filter(|r| r.policy == limit.policy && same_store(&r.shared))
    {
        if let Some(limiter) = running.limiter.upgrade() {
            return limiter;
        }
    }
    let _context = runtime().enter();
    let limiter = Arc::new(Limiter::new(
        limit.policy.clone(),
        MAX_TRACKED_KEYS,
        shared.cloned(),
    ));
    registry.insert(
        limit.name.clone(),
        Registered {
            policy: limit.policy.clone(),
            shared: shared.map(Arc::downgrade),
            limiter: Arc::downgrade(&limiter),
        },
    );
    limiter
}

/// The `shared_store` part of `/health`: whether limits and basic-auth backoff are shared
/// right now.
pub fn store_health(store: &SharedStore) -> Value {
    match store.health() {
        StoreHealth::Healthy => json!({"status": "up", "url": store.shown_url()}),
        StoreHealth::Degraded { since, last_error } => json!({
            "status": "degraded",
            "url": store.shown_url(),
            "since": since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            "error": last_error,
            "effect": "rate limits and basic-auth backoff are counted per instance until it answers",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn claims(json: Value) -> Identity {
        Identity {
            subject: String::new(),
            headers: Vec::new(),
            claims: json.as_object().cloned().map(Arc::new),
        }
    }

    #[test]
    fn keys_come_from_the_client_a_header_a_claim_or_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k1"));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let key = |k: &str, identity: Option<&Identity>| {
            let mut scratch = ClientKey::default();
            request_key(&k.parse().unwrap(), &headers, v4, identity, &mut scratch).into_owned()
        };
        assert_eq!(key("client", None), "192.0.2.7");
        assert_eq!(key("header:X-Api-Key", None), "k1");
        assert_eq!(key("header:X-Other", None), "");
        assert_eq!(key("route", None), "");
        let user =
            claims(json!({"sub": "alice", "n": 7, "realm_access": {"name": "r"}, "roles": ["a"]}));
        assert_eq!(key("claim:sub", Some(&user)), "alice");
        assert_eq!(key("claim:n", Some(&user)), "7");
        assert_eq!(key("claim:realm_access.name", Some(&user)), "r");
        assert_eq!(key("claim:roles", Some(&user)), "");
        assert_eq!(key("claim:sub", None), "");
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let headers = HeaderMap::new();
        let key = |ip: &str| {
            let mut scratch = ClientKey::default();
            request_key(
                &LimitKey::Client,
                &headers,
                ip.parse().unwrap(),
                None,
                &mut scratch,
            )
            .into_owned()
        };
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "ffff:ffff:ffff:ffff::/64"
        );
        assert_eq!(key("255.255.255.255"), "255.255.255.255");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn claim_limits_run_after_authentication_the_others_before() {
        let limit = |key: &str| Limit {
            name: "l".into(),
            policy: LimitPolicy::new("l", "1/s".parse().unwrap(), None).unwrap(),
            key: key.parse().unwrap(),
            origin: postern_config::Origin::file_start(&Arc::from("t.toml")),
        };
        let by_claim = RouteLimit::new("r", &limit("claim:sub"), None);
        assert!(by_claim.runs_at(Stage::AfterAuth) && !by_claim.runs_at(Stage::BeforeAuth));
        let by_client = RouteLimit::new("r", &limit("client"), None);
        assert!(by_client.runs_at(Stage::BeforeAuth) && !by_client.runs_at(Stage::AfterAuth));
    }

    #[test]
    fn an_unchanged_limit_keeps_its_counters_across_a_reload() {
        let limit = |rate: &str| Limit {
            name: "kept".into(),
            policy: LimitPolicy::new("kept", rate.parse().unwrap(), None).unwrap(),
            key: LimitKey::Client,
            origin: postern_config::Origin::file_start(&Arc::from("t.toml")),
        };
        let first = limiter(&limit("1/h"), None);
        let again = limiter(&limit("1/h"), None);
        assert!(Arc::ptr_eq(&first, &again));
        let changed = limiter(&limit("2/h"), None);
        assert!(!Arc::ptr_eq(&first, &changed));
    }
}
