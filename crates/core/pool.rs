//! An upstream's servers and how each request picks one.
//!
//! A [`Pool`] holds the current [`ServerSet`] behind an `ArcSwap`: the DNS
//! refresher (`resolve.rs`) swaps in a new set when a host name's addresses
//! change, and a request keeps the set it started with (in its context) for
//! every attempt, so failover never mixes two sets.
//!
//! Selection is lock-free: `round_robin` is an atomic counter, and
//! `least_requests` reads each server's in-flight gauge. `hash` uses
//! `pingora-load-balancing`'s Ketama ring (`KetamaHashing`), so losing or adding a
//! server moves only its own share of keys; walking the ring from the key's point
//! gives the next server when the chosen one is down. Pingora's `LoadBalancer`,
//! health checks and discovery are not used: health stays per server in
//! `health.rs` (its thresholds, passive ejection and state kept across
//! reloads), discovery is `resolve.rs` (a background task with its own
//! resolver), and the balancer's own health gate could not see either.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;
use pingora_load_balancing::selection::consistent::KetamaHashing;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use postern_config::{Balance, HashKey};

use crate::health::{ActiveCheck, UpstreamHealth};
use crate::metrics::ServerMetrics;

/// One address of a pool, ready to be connected to.
#[derive(Debug)]
pub struct Server {
    pub address: SocketAddr,
    /// The `servers` entry (or `url`) it came from, as written.
    pub url: String,
    /// Address, TLS, SNI, timeouts, CA and client certificate: each request
    /// gets a clone, as River does.
    pub peer: HttpPeer,
    /// Kept across reloads by upstream and address.
    pub health: Arc<UpstreamHealth>,
    /// `[upstreams.NAME.health]` against this server, if configured.
    pub check: Option<ActiveCheck>,
    /// Requests, errors, in flight (the gauge `least_requests` reads), healthy.
    pub metrics: ServerMetrics,
}

impl Server {
    pub fn is_available(&self) -> bool {
        self.health.is_available()
    }

    pub fn in_flight(&self) -> i64 {
        self.metrics.in_flight.get()
    }
}

/// The servers of a pool at one moment, sorted by address.
pub struct ServerSet {
    pub servers: Vec<Arc<Server>>,
    /// For `balance = "hash"`.
    ring: Option<Arc<KetamaHashing>>,
    by_address: HashMap<SocketAddr, usize>,
}

impl std::fmt::Debug for ServerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.servers.iter().map(|s| s.address))
            .finish()
    }
}

impl ServerSet {
    /// `servers` must be non-empty and without repeated addresses.
    pub fn new(mut servers: Vec<Arc<Server>>, balance: Balance) -> ServerSet {
        servers.sort_by_key(|s| s.address);
        let by_address = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.address, i))
            .collect();
        let ring = (balance == Balance::Hash).then(|| {
            let backends: BTreeSet<Backend> = servers
                .iter()
                .filter_map(|s| Backend::new(&s.address.to_string()).ok())
                .collect();
            Arc::new(KetamaHashing::build(&backends))
        });
        ServerSet {
            servers,
            ring,
            by_address,
        }
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.address).collect()
    }

    pub fn any_available(&self) -> bool {
        self.servers.iter().any(|s| s.is_available())
    }

    /// The server with `address`, if the set has it.
    pub fn get(&self, address: SocketAddr) -> Option<&Arc<Server>> {
        self.by_address.get(&address).map(|&i| &self.servers[i])
    }
}

/// An upstream's servers and its balancing.
#[derive(Debug)]
pub struct Pool {
    pub balance: Balance,
    pub hash_key: Option<HashKey>,
    set: ArcSwap<ServerSet>,
    turn: AtomicUsize,
}

impl Pool {
    pub fn new(set: ServerSet, balance: Balance, hash_key: Option<HashKey>) -> Pool {
        Pool {
            balance,
            hash_key,
            set: ArcSwap::from_pointee(set),
            turn: AtomicUsize::new(0),
        }
    }

    /// The servers now.
    pub fn current(&self) -> Arc<ServerSet> {
        self.set.load_full()
    }

    /// Swaps in the servers a new resolution found.
    pub fn replace(&self, set: ServerSet) {
        self.set.store(Arc::new(set));
    }

    /// The server for a request: healthy and not in `tried`. `key` is the
    /// value of `hash_key`, when the pool hashes and the request has it.
    pub fn choose(
        &self,
        set: &ServerSet,
        key: Option<&[u8]>,
        tried: &[SocketAddr],
    ) -> Option<Arc<Server>> {
        let usable = |s: &Server| s.is_available() && !tried.contains(&s.address);
        if let (Some(ring), Some(key)) = (&set.ring, key) {
            let mut nodes = ring.iter(key);
            // The ring has 160 points per server: enough steps to meet each.
            for _ in 0..set.servers.len() * 640 {
                let Some(server) = nodes.next().and_then(|b| match &b.addr {
                    pingora::protocols::l4::socket::SocketAddr::Inet(a) => set.get(*a),
                    _ => None,
                }) else {
                    break;
                };
                if usable(server) {
                    return Some(Arc::clone(server));
                }
            }
            return None;
        }
        // In turn among the usable servers (for least_requests: among those
        // with the fewest in flight), so a dead server's share is spread
        // evenly over the others rather than given to its successor.
        let least = match self.balance {
            Balance::LeastRequests => set
                .servers
                .iter()
                .filter(|s| usable(s))
                .map(|s| s.in_flight())
                .min(),
            Balance::RoundRobin | Balance::Hash => None,
        };
        let fits = |s: &&Arc<Server>| usable(s) && least.is_none_or(|min| s.in_flight() == min);
        let count = set.servers.iter().filter(fits).count();
        if count == 0 {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        set.servers
            .iter()
            .filter(fits)
            .nth(turn % count)
            // In-flight counts moved between the two passes.
            .or_else(|| set.servers.iter().find(|s| usable(s)))
            .cloned()
    }

    /// Whether a server other than those in `tried` could take a request.
    pub fn has_untried(&self, set: &ServerSet, tried: &[SocketAddr]) -> bool {
        set.servers
            .iter()
            .any(|s| s.is_available() && !tried.contains(&s.address))
    }
}

/// What every server of one upstream shares, to set up a server for an
/// address: at load, and when a host name resolves to a new address.
#[derive(Debug)]
pub struct ServerTemplate {
    pub upstream: String,
    /// TLS, timeouts, CA and client certificate; its address and SNI are
    /// replaced per server.
    pub peer: HttpPeer,
    pub health: Option<postern_config::HealthCheck>,
    /// The upstream's `ca`, read once, for the health-check clients.
    pub ca_pem: Option<Vec<u8>>,
}

impl ServerTemplate {
    /// The server at `address`, one of those `entry` stands for.
    pub fn server(
        &self,
        entry: &postern_config::ServerAddress,
        address: SocketAddr,
    ) -> Result<Arc<Server>, String> {
        let check = match &self.health {
            Some(settings) => Some(ActiveCheck::new(
                &entry.url,
                &entry.host,
                address,
                settings,
                self.ca_pem.as_deref(),
            )?),
            None => None,
        };
        let mut peer = self.peer.clone();
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(address);
        peer.sni = entry.host.clone();
        let health = crate::health::registered(&self.upstream, address);
        let metrics =
            ServerMetrics::new(&self.upstream, &address.to_string(), health.is_available());
        Ok(Arc::new(Server {
            address,
            url: entry.url.clone(),
            peer,
            health,
            check,
            metrics,
        }))
    }
}

/// A request's claim on a server: counted in flight until dropped (when
/// the request moves to another server, or ends).
#[derive(Debug)]
pub struct InFlight(pub Arc<Server>);

impl InFlight {
    pub fn new(server: Arc<Server>) -> InFlight {
        server.metrics.in_flight.inc();
        server.metrics.requests.inc();
        InFlight(server)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

/// The value of `hash_key` in a request, if it has one.
pub fn hash_value(
    key: &HashKey,
    headers: &http::HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Option<Vec<u8>> {
    match key {
        HashKey::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
        HashKey::Client => client.map(|ip| ip.to_string().into_bytes()),
        HashKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (n, value) = pair.trim().split_once('=')?;
                (n == name).then(|| value.trim_matches('"').as_bytes().to_vec())
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    /// A pool over three loopback servers; `upstream` keeps the health
    /// registry apart from other tests'.
    fn pool(upstream: &str, balance: Balance) -> (Pool, Arc<ServerSet>) {
        let template = ServerTemplate {
            upstream: upstream.to_string(),
            peer: HttpPeer::new("127.0.0.1:1", false, String::new()),
            health: None,
            ca_pem: None,
        };
        let servers = (1..=3)
            .map(|i| {
                let url = format!("http://127.0.0.{i}:80");
                let entry = postern_config::ServerAddress {
                    url: url.clone(),
                    host: format!("127.0.0.{i}"),
                    port: 80,
                };
                template
                    .server(&entry, SocketAddr::from(([127, 0, 0, i], 80)))
                    .expect("server")
            })
            .collect();
        let key = (balance == Balance::Hash).then_some(HashKey::Client);
        let pool = Pool::new(ServerSet::new(servers, balance), balance, key);
        let set = pool.current();
        (pool, set)
    }

    fn eject(server: &Server) {
        for _ in 0..3 {
            server.health.record_connect_failure(None);
        }
        assert!(!server.is_available());
    }

    fn counts(picks: impl Iterator<Item = Arc<Server>>) -> Vec<usize> {
        let mut counts = vec![0; 3];
        for s in picks {
            if let std::net::IpAddr::V4(ip) = s.address.ip() {
                counts[usize::from(ip.octets()[3]) - 1] += 1;
            }
        }
        counts
    }

    #[test]
    fn round_robin_takes_turns_and_spreads_a_dead_servers_share() {
        let (pool, set) = pool("unit-rr", Balance::RoundRobin);
        let picks = (0..300).map(|_| pool.choose(&set, None, &[]).expect("a server"));
        assert_eq!(counts(picks), [100, 100, 100]);
        eject(&set.servers[1]);
        let picks = (0..300).map(|_| pool.choose(&set, None, &[]).expect("a server"));
        assert_eq!(counts(picks), [150, 0, 150]);
        let all: Vec<SocketAddr> = set.addresses();
        assert!(
            pool.choose(&set, None, &all).is_none(),
            "every server tried"
        );
        assert!(!pool.has_untried(&set, &[all[0], all[2]]));
    }

    #[test]
    fn least_requests_prefers_fewest_in_flight() {
        let (pool, set) = pool("unit-least", Balance::LeastRequests);
        let busy = InFlight::new(Arc::clone(&set.servers[0]));
        let also_busy = InFlight::new(Arc::clone(&set.servers[2]));
        for _ in 0..10 {
            let s = pool.choose(&set, None, &[]).expect("a server");
            assert_eq!(s.address, set.servers[1].address);
        }
        drop((busy, also_busy));
        let picks = (0..30).map(|_| pool.choose(&set, None, &[]).expect("a server"));
        assert_eq!(counts(picks), [10, 10, 10], "ties in turn");
    }

    #[test]
    fn hash_sticks_and_walks_the_ring_past_tried_or_dead_servers() {
        let (pool, set) = pool("unit-hash", Balance::Hash);
        let first = pool
            .choose(&set, Some(b"session-1"), &[])
            .expect("a server");
        for _ in 0..20 {
            let again = pool
                .choose(&set, Some(b"session-1"), &[])
                .expect("a server");
            assert_eq!(again.address, first.address);
        }
        let next = pool
            .choose(&set, Some(b"session-1"), &[first.address])
            .expect("the next on the ring");
        assert_ne!(next.address, first.address);
        eject(&first);
        let moved = pool
            .choose(&set, Some(b"session-1"), &[])
            .expect("a server");
        assert_eq!(
            moved.address, next.address,
            "a dead server's key moves to the next"
        );
        let spread: std::collections::HashSet<SocketAddr> = (0..100)
            .filter_map(|i| pool.choose(&set, Some(format!("k{i}").as_bytes()), &[]))
            .map(|s| s.address)
            .collect();
        assert_eq!(spread.len(), 2, "keys spread over the live servers");
    }

    #[test]
    fn cookie_header_and_client_keys() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            "a=1; AUTH_SESSION_ID=abc.kc1 ; b=2".parse().unwrap(),
        );
        headers.append("cookie", "other=x".parse().unwrap());
        headers.insert("x-tenant", "t7".parse().unwrap());
        let cookie = HashKey::Cookie("AUTH_SESSION_ID".to_string());
        assert_eq!(
            hash_value(&cookie, &headers, None).as_deref(),
            Some(&b"abc.kc1"[..])
        );
        let absent = HashKey::Cookie("KC_RESTART".to_string());
        assert_eq!(hash_value(&absent, &headers, None), None);
        let header = HashKey::Header("x-tenant".to_string());
        assert_eq!(
            hash_value(&header, &headers, None).as_deref(),
            Some(&b"t7"[..])
        );
        let client = Some("192.0.2.7".parse().unwrap());
        assert_eq!(
            hash_value(&HashKey::Client, &headers, client).as_deref(),
            Some(&b"192.0.2.7"[..])
        );
    }
}
