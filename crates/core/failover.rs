//! One request's attempts at its upstream's servers, and when a failure
//! moves it to another, as nginx's `proxy_next_upstream error timeout`:
//!
//! * a failed connect sent nothing, so any method moves on;
//! * a connection that dies after the request was sent, before any response
//!   byte, moves an idempotent request on (the caller checks the method and
//!   that the body can be replayed);
//! * each other server is tried at most once, and every attempt after the
//!   first connects within what is left of one `connect_timeout` from the
//!   first attempt.
//!
//! The request keeps the server set it started with, so a DNS refresh in
//! between cannot make it try a server twice.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::pool::{hash_value, InFlight, ServerSet};
use crate::snapshot::UpstreamPlan;

/// The shortest connect a retry is given, so a budget nearly spent still
/// makes one real attempt rather than an instant timeout.
const MIN_RETRY_CONNECT: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
pub struct Attempts {
    set: Option<Arc<ServerSet>>,
    /// The server of the current attempt, counted in flight.
    current: Option<InFlight>,
    tried: Vec<SocketAddr>,
    started: Option<Instant>,
    /// The next attempt goes to the current server again.
    same_again: bool,
    /// A pool of one's single connect retry was used.
    retried_same: bool,
    response_started: bool,
}

impl Attempts {
    /// The peer for the next attempt: the balancer's choice among the servers
    /// not tried yet (or the current one again, when so decided).
    pub fn next_peer(
        &mut self,
        upstream: &UpstreamPlan,
        req: &RequestHeader,
        client: Option<IpAddr>,
    ) -> Result<HttpPeer> {
        let set = Arc::clone(self.set.get_or_insert_with(|| upstream.pool.current()));
        let first = self.started.is_none();
        let started = *self.started.get_or_insert_with(Instant::now);
        let again = std::mem::take(&mut self.same_again)
            .then(|| self.current.as_ref().map(|c| Arc::clone(&c.0)))
            .flatten();
        let server = match again {
            Some(server) => server,
            None => {
                let pool = &upstream.pool;
                let key = pool
                    .hash_key
                    .as_ref()
                    .and_then(|k| hash_value(k, &req.headers, client));
                pool.choose(&set, key.as_deref(), &self.tried)
                    .ok_or_else(|| {
                        Error::explain(
                            ErrorType::ConnectNoRoute,
                            format!("no server of upstream {} is available", upstream.name),
                        )
                    })?
            }
        };
        if !self.tried.contains(&server.address) {
            self.tried.push(server.address);
        }
        let mut peer = server.peer.clone();
        if !first {
            let left = upstream.connect_timeout.saturating_sub(started.elapsed());
            peer.options.connection_timeout = Some(left.max(MIN_RETRY_CONNECT));
        }
        // Replacing the previous claim takes it out of flight.
        self.current = Some(InFlight::new(server));
        Ok(peer)
    }

    /// A connect failed: passive health, and whether to try again.
    pub fn connect_failed(&mut self, upstream: &UpstreamPlan, method: &Method) -> bool {
        let Some(server) = self.current.as_ref().map(|c| &c.0) else {
            return false;
        };
        server
            .health
            .record_connect_failure(server.check.as_ref().map(|c| &c.settings));
        server.metrics.errors.inc();
        if self.another_in_budget(upstream) {
            return true;
        }
        let single = self.set.as_ref().is_some_and(|s| s.servers.len() == 1);
        if single && method.is_idempotent() && !self.retried_same {
            self.retried_same = true;
            self.same_again = true;
            return true;
        }
        false
    }

    /// An exchange failed after connecting (the request is replayable).
    /// `Some(retry)`: decided; `None`: no other server, the caller applies
    /// Pingora's policy for stale pooled connections (same server again).
    pub fn exchange_failed(&mut self, upstream: &UpstreamPlan) -> Option<bool> {
        if let Some(current) = &self.current {
            current.0.metrics.errors.inc();
        }
        if self.response_started {
            return Some(false);
        }
        if self.another_in_budget(upstream) {
            return Some(true);
        }
        self.same_again = true;
        None
    }

    fn another_in_budget(&self, upstream: &UpstreamPlan) -> bool {
        let in_budget = self
            .started
            .is_some_and(|t| t.elapsed() < upstream.connect_timeout);
        let untried = self
            .set
            .as_ref()
            .is_some_and(|set| upstream.pool.has_untried(set, &self.tried));
        in_budget && untried
    }

    /// The connection is up: the server answers connects again.
    pub fn connected(&self) {
        if let Some(server) = self.current.as_ref().map(|c| &c.0) {
            server
                .health
                .record_connected(server.check.as_ref().map(|c| &c.settings));
        }
    }

    /// The upstream's response is complete: the server no longer counts
    /// this request in flight.
    pub fn finished(&mut self) {
        self.current = None;
    }

    /// The upstream's response head arrived: no more failover.
    pub fn response_started(&mut self) {
        self.response_started = true;
    }
}
