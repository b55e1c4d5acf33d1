//! The gateway's Prometheus metrics, in one registry exposed by the
//! `metrics` built-in service.
//!
//! Label values are bounded by the configuration (route and upstream names,
//! status codes, fixed reasons), never taken from requests, so a client
//! cannot grow the number of series.

use std::sync::OnceLock;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub auth_decisions: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub certificate_expiry: GaugeVec,
    pub upstream_healthy: IntGaugeVec,
    pub connections: IntGaugeVec,
    /// Requests answered 429 by a `[limits]` limit, by route and limit.
    pub rate_limited: IntCounterVec,
    /// Failed calls to (and reconnections of) the shared store, synced at each scrape.
    pub shared_store_errors: IntCounter,
    /// Per server of a pool: requests, errors, in flight, healthy.
    pub server_requests: IntCounterVec,
    pub server_errors: IntCounterVec,
    pub server_in_flight: IntGaugeVec,
    pub server_healthy: IntGaugeVec,
    pub resolution_failures: IntCounterVec,
    /// Requests refused before a route was chosen, labelled route="-".
    pub unrouted: RouteMetrics,
}

fn build() -> Metrics {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "postern_requests_total",
            "Requests answered, by route and status code.",
        ),
        &["route", "code"],
    )
    .expect("valid metric");
    let request_duration = HistogramVec::new(
        HistogramOpts::new(
            "postern_request_duration_seconds",
            "Time from request received to response logged, by route.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
        &["route"],
    )
    .expect("valid metric");
    let upstream_errors = IntCounterVec::new(
        Opts::new(
            "postern_upstream_errors_total",
            "Failures talking to an upstream, by upstream and kind.",
        ),
        &["upstream", "kind"],
    )
    .expect("valid metric");
    let auth_decisions = IntCounterVec::new(
        Opts::new(
            "postern_auth_decisions_total",
            "Authentication decisions, by route, result and reason.",
        ),
        &["route", "result", "reason"],
    )
    .expect("valid metric");
    let config_reloads = IntCounterVec::new(
        Opts::new(
            "postern_config_reloads_total",
            "Configuration reloads, by result.",
        ),
        &["result"],
    )
    .expect("valid metric");
    let certificate_expiry = GaugeVec::new(
        Opts::new(
            "postern_tls_certificate_expiry_timestamp_seconds",
            "When each served certificate expires, as a Unix time.",
        ),
        &["certificate"],
    )
    .expect("valid metric");
    let upstream_healthy = IntGaugeVec::new(
        Opts::new(
            "postern_upstream_healthy",
            "1 when the upstream gets requests, 0 when health checks or ejection keep it out.",
        ),
        &["upstream"],
    )
    .expect("valid metric");
    let connections = IntGaugeVec::new(
        Opts::new(
            "postern_connections",
            "Client connections open now, by listener (counted after the TLS handshake).",
        ),
        &["listener"],
    )
    .expect("valid metric");
    let rate_limited = IntCounterVec::new(
        Opts::new(
            "postern_rate_limited_total",
            "Requests refused with 429 by a rate limit, by route and limit.",
        ),
        &["route", "limit"],
    )
    .expect("valid metric");
    let shared_store_errors = IntCounter::new(
        "postern_shared_store_errors_total",
        "Shared store (Redis) calls that failed or timed out, and failed reconnections; limits were decided per instance meanwhile.",
    )
    .expect("valid metric");
    let server = |name: &str, help: &str| Opts::new(name, help);
    let server_requests = IntCounterVec::new(
        server(
            "postern_upstream_server_requests_total",
            "Requests sent to each server of an upstream (each attempt counts).",
        ),
        &["upstream", "server"],
    )
    .expect("valid metric");
    let server_errors = IntCounterVec::new(
        server(
            "postern_upstream_server_errors_total",
            "Failed connects and failed exchanges, by upstream and server.",
        ),
        &["upstream", "server"],
    )
    .expect("valid metric");
    let server_in_flight = IntGaugeVec::new(
        server(
            "postern_upstream_server_in_flight",
            "Requests being served by each server now.",
        ),
        &["upstream", "server"],
    )
    .expect("valid metric");
    let server_healthy = IntGaugeVec::new(
        server(
            "postern_upstream_server_healthy",
            "1 when the server gets requests, 0 when health checks or ejection keep it out.",
        ),
        &["upstream", "server"],
    )
    .expect("valid metric");
    let resolution_failures = IntCounterVec::new(
        server(
            "postern_upstream_resolution_failures_total",
            "Failed DNS resolutions of an upstream's host names (the last good addresses stay).",
        ),
        &["upstream"],
    )
    .expect("valid metric");
    for collector in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(server_requests.clone()),
        Box::new(server_errors.clone()),
        Box::new(server_in_flight.clone()),
        Box::new(server_healthy.clone()),
        Box::new(resolution_failures.clone()),
        Box::new(request_duration.clone()),
        Box::new(upstream_errors.clone()),
        Box::new(auth_decisions.clone()),
        Box::new(config_reloads.clone()),
        Box::new(certificate_expiry.clone()),
        Box::new(upstream_healthy.clone()),
        Box::new(connections.clone()),
        Box::new(rate_limited.clone()),
        Box::new(shared_store_errors.clone()),
        Box::new(prometheus::process_collector::ProcessCollector::for_self()),
    ] {
        registry.register(collector).expect("unique metric names");
    }
    // Both results exist from the start, so a rate() works before the first reload.
    for result in ["success", "failure"] {
        config_reloads.with_label_values(&[result]);
    }
    Metrics {
        registry,
        requests,
        request_duration,
        upstream_errors,
        auth_decisions,
        config_reloads,
        certificate_expiry,
        upstream_healthy,
        connections,
        rate_limited,
        shared_store_errors,
        server_requests,
        server_errors,
        server_in_flight,
        server_healthy,
        resolution_failures,
        unrouted: RouteMetrics::new("-"),
    }
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

impl Metrics {
    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            log::warn!("cannot encode metrics: {e}");
        }
        (encoder.format_type().to_string(), out)
    }

    /// Brings `postern_shared_store_errors_total` up to the store's own count.
    pub fn sync_shared_store_errors(&self, errors: u64) {
        let counted = self.shared_store_errors.get();
        if errors > counted {
            self.shared_store_errors.inc_by(errors - counted);
        }
    }

    /// Replaces the certificate expiry series with the served set.
    pub fn set_certificates(&self, certificates: &[(String, i64)]) {
        self.certificate_expiry.reset();
        for (name, not_after) in certificates {
            self.certificate_expiry
                .with_label_values(&[name.as_str()])
                .set(*not_after as f64);
        }
    }
}

/// One route's series, compiled into its plan so a request never hashes
/// labels. A series is created when it first counts something, as before:
/// /metrics shows no zero series for requests that never happened.
pub struct RouteMetrics {
    /// The route name, or "-" for requests refused before a route was chosen.
    route: String,
    /// `postern_requests_total` by status code, 100 to 599.
    by_status: Box<[OnceLock<IntCounter>]>,
    duration: OnceLock<Histogram>,
    auth_allowed: OnceLock<IntCounter>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteMetrics({:?})", self.route)
    }
}

const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 599;

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        RouteMetrics {
            route: route.to_string(),
            by_status: (FIRST_STATUS..=LAST_STATUS)
                .map(|_| OnceLock::new())
                .collect(),
            duration: OnceLock::new(),
            auth_allowed: OnceLock::new(),
        }
    }

    /// One answered request: its status and how long it took.
    pub fn answered(&self, status: u16, seconds: f64) {
        let m = metrics();
        let requests = |code: u16| {
            m.requests
                .with_label_values(&[self.route.as_str(), code.to_string().as_str()])
        };
        match status.checked_sub(FIRST_STATUS) {
            Some(i) if status <= LAST_STATUS => self.by_status[usize::from(i)]
                .get_or_init(|| requests(status))
                .inc(),
            _ => requests(status).inc(),
        }
        self.duration
            .get_or_init(|| m.request_duration.with_label_values(&[self.route.as_str()]))
            .observe(seconds);
    }

    pub fn auth_allowed(&self) {
        self.auth_allowed
            .get_or_init(|| {
                metrics()
                    .auth_decisions
                    .with_label_values(&[self.route.as_str(), "allow", "ok"])
            })
            .inc();
    }

    /// Denials are rare and their reasons many: looked up when they happen.
    pub fn auth_denied(&self, reason: &str) {
        metrics()
            .auth_decisions
            .with_label_values(&[self.route.as_str(), "deny", reason])
            .inc();
    }
}

/// How a request failed at its upstream, for `postern_upstream_errors_total`.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    Timeout,
    Connect,
    Protocol,
}

impl UpstreamError {
    fn label(self) -> &'static str {
        match self {
            UpstreamError::Timeout => "timeout",
            UpstreamError::Connect => "connect",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// One upstream's series, compiled into its plan.
#[derive(Debug)]
pub struct UpstreamMetrics {
    pub healthy: IntGauge,
    upstream: String,
    /// By [`UpstreamError`], created on the first error.
    errors: [OnceLock<IntCounter>; 3],
}

impl UpstreamMetrics {
    /// `available`: the upstream's health now, so the gauge starts true.
    pub fn new(upstream: &str, available: bool) -> Self {
        let healthy = metrics().upstream_healthy.with_label_values(&[upstream]);
        healthy.set(i64::from(available));
        UpstreamMetrics {
            healthy,
            upstream: upstream.to_string(),
            errors: Default::default(),
        }
    }

    pub fn error(&self, kind: UpstreamError) {
        self.errors[kind as usize]
            .get_or_init(|| {
                metrics()
                    .upstream_errors
                    .with_label_values(&[self.upstream.as_str(), kind.label()])
            })
            .inc();
    }
}

/// One server's series (labels: upstream name, server address), compiled
/// into the server.
#[derive(Debug)]
pub struct ServerMetrics {
    pub requests: IntCounter,
    pub errors: IntCounter,
    /// Shared by every plan of this server across reloads, so a request
    /// decided on an older configuration still counts.
    pub in_flight: IntGauge,
    pub healthy: IntGauge,
}

impl ServerMetrics {
    pub fn new(upstream: &str, server: &str, available: bool) -> Self {
        let m = metrics();
        let labels = [upstream, server];
        let healthy = m.server_healthy.with_label_values(&labels);
        healthy.set(i64::from(available));
        ServerMetrics {
            requests: m.server_requests.with_label_values(&labels),
            errors: m.server_errors.with_label_values(&labels),
            in_flight: m.server_in_flight.with_label_values(&labels),
            healthy,
        }
    }
}
