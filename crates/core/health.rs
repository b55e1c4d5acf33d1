//! Server health: active checks where configured, passive ejection on
//! connect failures everywhere, so a dead server gets no requests and a pool
//! whose every server is dead costs clients a fast 503 instead of a connect
//! timeout each. Health is per server of a pool (per address).
//!
//! * Active (`[upstreams.NAME.health]`): `GET path` every `interval`; a 2xx
//!   or 3xx within `timeout` is a success. `unhealthy_threshold` failures in
//!   a row take the upstream out, `healthy_threshold` successes bring it back.
//!   A connect failure seen by real traffic counts as a failed check.
//! * Passive (no active check): `PASSIVE_FAILURES` connect failures in a row
//!   eject the upstream for `PASSIVE_EJECTION`; then traffic is tried again.
//!
//! State is kept by upstream name and server address across reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use postern_config::HealthCheck;

use crate::snapshot::Snapshot;

const PASSIVE_FAILURES: u32 = 3;

/// Set when the process starts draining (SIGTERM): readiness turns false so
/// load balancers stop sending before the listeners close.
static DRAINING: AtomicBool = AtomicBool::new(false);

pub fn is_draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}
const PASSIVE_EJECTION: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct UpstreamHealth {
    name: String,
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
}

impl UpstreamHealth {
    /// Whether requests should be sent to it now.
    pub fn is_available(&self) -> bool {
        if !self.healthy.load(Ordering::Acquire) {
            return false;
        }
        let ejected = self.ejected_until.lock().unwrap_or_else(|e| e.into_inner());
        ejected.is_none_or(|until| Instant::now() >= until)
    }

    /// One active check's result.
    pub fn record_check(&self, ok: bool, check: &HealthCheck) {
        if ok {
            self.failures.store(0, Ordering::Release);
            let successes = self.successes.fetch_add(1, Ordering::AcqRel) + 1;
            if !self.healthy.load(Ordering::Acquire) && successes >= check.healthy_threshold {
                self.healthy.store(true, Ordering::Release);
                log::warn!(target: "postern::health", "{} is healthy again", self.name);
            }
        } else {
            self.successes.store(0, Ordering::Release);
            let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
            if self.healthy.load(Ordering::Acquire) && failures >= check.unhealthy_threshold {
                self.healthy.store(false, Ordering::Release);
                log::error!(
                    target: "postern::health",
                    "{} is unhealthy after {failures} failed checks; it gets no requests until it recovers",
                    self.name
                );
            }
        }
    }

    /// A connect failure seen by a real request.
    pub fn record_connect_failure(&self, check: Option<&HealthCheck>) {
        match check {
            Some(check) => self.record_check(false, check),
            None => {
                let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if failures >= PASSIVE_FAILURES {
                    self.failures.store(0, Ordering::Release);
                    *self.ejected_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Instant::now() + PASSIVE_EJECTION);
                    log::error!(
                        target: "postern::health",
                        "{} refused {failures} connections in a row; ejected for {}s",
                        self.name,
                        PASSIVE_EJECTION.as_secs()
                    );
                }
            }
        }
    }

    /// A request reached it.
    pub fn record_connected(&self, check: Option<&HealthCheck>) {
        if check.is_none() {
            self.failures.store(0, Ordering::Release);
        }
    }
}

/// The health state of `upstream`'s server at `address`, kept across
/// reloads. Looked up when a configuration is compiled or a name resolved
/// again (each server holds its handle), never per request.
pub fn registered(upstream: &str, address: std::net::SocketAddr) -> Arc<UpstreamHealth> {
    let name = format!("upstream {upstream:?} server {address}");
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<UpstreamHealth>>>> = OnceLock::new();
    let mut registry = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Arc::clone(registry.entry(name.clone()).or_insert_with(|| {
        Arc::new(UpstreamHealth {
            name,
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
        })
    }))
}

/// An upstream's `[upstreams.NAME.health]` check against one server, ready
/// to run: its HTTP client is built (and its `ca` read) once, when the
/// server is set up.
#[derive(Debug)]
pub struct ActiveCheck {
    pub settings: HealthCheck,
    url: String,
    client: reqwest::Client,
}

impl ActiveCheck {
    /// `server_url`: the server's `servers` entry (scheme, host, port);
    /// the check connects to `address`, with the URL's host as Host and SNI.
    /// `ca_pem`: the upstream's `ca` file, already read.
    pub fn new(
        server_url: &str,
        host: &str,
        address: std::net::SocketAddr,
        settings: &HealthCheck,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0);
        if host.parse::<std::net::IpAddr>().is_err() {
            builder = builder.resolve(host, address);
        }
        for cert in ca_pem
            .map(|pem| reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default())
            .unwrap_or_default()
        {
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up its health-check client: {e}"))?;
        Ok(ActiveCheck {
            settings: settings.clone(),
            url: format!("{}{}", server_url.trim_end_matches('/'), settings.path),
            client,
        })
    }

    /// One check: a 2xx or 3xx within `timeout` is a success.
    async fn run(&self) -> bool {
        match self.client.get(&self.url).send().await {
            Ok(response) => {
                let status = response.status();
                status.is_success() || status.is_redirection()
            }
            Err(_) => false,
        }
    }
}

/// Runs the active checks of the current configuration.
pub struct HealthChecker {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_due: HashMap<(String, std::net::SocketAddr), Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => {
                    DRAINING.store(true, Ordering::Release);
                    return;
                }
            }
            let snapshot = self.snapshot.load_full();
            let now = Instant::now();
            for upstream in snapshot.upstreams() {
                let servers = upstream.pool.current();
                upstream
                    .metrics
                    .healthy
                    .set(i64::from(servers.any_available()));
                for server in &servers.servers {
                    server.metrics.healthy.set(i64::from(server.is_available()));
                    let Some(check) = &server.check else {
                        continue;
                    };
                    let due = next_due
                        .entry((upstream.name.clone(), server.address))
                        .or_insert(now);
                    if *due > now {
                        continue;
                    }
                    *due = now + check.settings.interval;
                    let server = Arc::clone(server);
                    tokio::spawn(async move {
                        if let Some(check) = &server.check {
                            let ok = check.run().await;
                            server.health.record_check(ok, &check.settings);
                        }
                    });
                }
            }
        }
    }
}
