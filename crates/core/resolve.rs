//! Host names of upstream servers: every A and AAAA address is a server.
//!
//! Names are resolved when a configuration is compiled (a name that does not
//! resolve refuses it) and again every `resolve_interval` by [`Refresher`], a
//! background task: requests never wait on DNS. A failed resolution keeps
//! the last good addresses, and is logged and counted
//! (`postern_upstream_resolution_failures_total`). The resolver is
//! hickory's, asking `[gateway] resolver` or, without it, the servers of
//! /etc/resolv.conf; nothing is cached, so a changed answer is seen at the
//! next interval.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::metrics::metrics;
use crate::pool::{Server, ServerSet};
use crate::snapshot::{Snapshot, UpstreamPlan};

/// A resolver asking `servers` (the system's when empty), without a cache.
fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if servers.is_empty() {
        TokioResolver::builder(provider)
            .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|address| {
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = address.port();
                NameServerConfig::new(address.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            provider,
        )
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot set up the resolver: {e}"))
}

/// The addresses of `host`, sorted, without repeats.
async fn lookup(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // A trailing dot: the name as written, not tried under search domains.
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    let answer = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let mut addresses: Vec<SocketAddr> =
        answer.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err("no A or AAAA records".to_string());
    }
    Ok(addresses)
}

/// The addresses of `host` now, for compiling a configuration: an IP literal
/// is itself; a name is asked of `servers` (the system's when empty). Runs
/// on a thread of its own, so it works from any context, async or not.
pub fn lookup_now(
    servers: &[SocketAddr],
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a resolver: {e}"))?;
                runtime.block_on(async {
                    let resolver = resolver(servers)?;
                    lookup(&resolver, host, port).await
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the resolver thread failed".to_string()))
    })
}

/// Resolves the host names of every pool again, each `resolve_interval`.
pub struct Refresher {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_due: HashMap<String, Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.snapshot.load_full();
            let now = Instant::now();
            for upstream in snapshot.upstreams() {
                if !upstream.resolves_names() {
                    continue;
                }
                // The first round comes one interval after the load, which
                // has just resolved every name.
                let due = next_due
                    .entry(upstream.name.clone())
                    .or_insert(now + upstream.resolve_interval);
                if *due > now {
                    continue;
                }
                *due = now + upstream.resolve_interval;
                let upstream = Arc::clone(upstream);
                let servers = snapshot.config.gateway.resolver.clone();
                tokio::spawn(async move { refresh(&upstream, &servers).await });
            }
        }
    }
}

/// One round for one upstream: a new server set if the addresses changed.
async fn refresh(upstream: &UpstreamPlan, servers: &[SocketAddr]) {
    let resolver = match resolver(servers) {
        Ok(resolver) => resolver,
        Err(why) => {
            failed(upstream, "-", &why);
            return;
        }
    };
    let current = upstream.pool.current();
    let mut next: Vec<Arc<Server>> = Vec::new();
    for entry in &upstream.entries {
        let kept = || -> Vec<Arc<Server>> {
            current
                .servers
                .iter()
                .filter(|s| s.url == entry.url)
                .cloned()
                .collect()
        };
        let addresses = match lookup(&resolver, &entry.host, entry.port).await {
            Ok(addresses) => addresses,
            Err(why) => {
                failed(upstream, &entry.host, &why);
                next.extend(kept());
                continue;
            }
        };
        for address in addresses {
            if next.iter().any(|s| s.address == address) {
                continue;
            }
            match current.get(address).filter(|s| s.url == entry.url) {
                Some(server) => next.push(Arc::clone(server)),
                None => match upstream.template.server(entry, address) {
                    Ok(server) => next.push(server),
                    Err(why) => failed(upstream, &entry.host, &why),
                },
            }
        }
    }
    let mut now: Vec<SocketAddr> = next.iter().map(|s| s.address).collect();
    now.sort();
    if now.is_empty() || now == current.addresses() {
        return;
    }
    log::warn!(
        target: "postern::upstream",
        "upstream {:?} now has servers {:?} (was {:?})",
        upstream.name,
        now,
        current.addresses()
    );
    upstream
        .pool
        .replace(ServerSet::new(next, upstream.pool.balance));
}

fn failed(upstream: &UpstreamPlan, host: &str, why: &str) {
    metrics()
        .resolution_failures
        .with_label_values(&[upstream.name.as_str()])
        .inc();
    log::error!(
        target: "postern::upstream",
        "upstream {:?}: resolving {host:?} failed, keeping its last addresses: {why}",
        upstream.name
    );
}
