//! The gateway's own endpoints (`service = "metrics" | "health" | "admin"`),
//! reached through a route like any upstream, so the same deny, allow and
//! auth policies guard them. Each sees the path relative to its route's
//! `path_prefix`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use postern_config::{AuthKind, Config, JwtKeySource, RouteTarget, Service};
use serde_json::{json, Value};

use crate::metrics::metrics;
use crate::reload::Reloader;
use crate::snapshot::Snapshot;

/// What a built-in service answers.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json".to_string(),
            body: value.to_string().into_bytes(),
        }
    }
}

/// `None`: the service has nothing at this path or method (the caller
/// answers with the usual 404 or 405 error body).
pub enum Outcome {
    Reply(Reply),
    NotFound,
    MethodNotAllowed,
}

pub async fn serve(
    service: Service,
    method: &str,
    path: &str,
    snapshot: &Arc<Snapshot>,
    reloader: &Arc<Reloader>,
) -> Outcome {
    let path = path.trim_end_matches('/');
    match (service, method, path) {
        (Service::Metrics, "GET" | "HEAD", _) => {
            // Health is state, not an event: read it as of this scrape.
            for upstream in snapshot.upstreams() {
                let servers = upstream.pool.current();
                for server in &servers.servers {
                    server.metrics.healthy.set(i64::from(server.is_available()));
                }
                let up = servers.any_available();
                upstream.metrics.healthy.set(i64::from(up));
            }
            if let Some(store) = &snapshot.shared_store {
                metrics().sync_shared_store_errors(store.errors());
            }
            let (content_type, body) = metrics().render();
            Outcome::Reply(Reply {
                status: 200,
                content_type,
                body,
            })
        }
        (Service::Health, "GET" | "HEAD", "") => Outcome::Reply(health(snapshot).await),
        (Service::Health, "GET" | "HEAD", "/live") => {
            Outcome::Reply(Reply::json(200, json!({"status": "live"})))
        }
        (Service::Health, "GET" | "HEAD", "/ready") => {
            Outcome::Reply(if crate::health::is_draining() {
                Reply::json(503, json!({"status": "draining"}))
            } else {
                let any_required = snapshot.config.upstreams.iter().any(|u| u.required);
                let down = if any_required {
                    required_down(&upstream_states(&probe_servers(snapshot).await), snapshot)
                } else {
                    Vec::new()
                };
                if down.is_empty() {
                    Reply::json(200, json!({"status": "ready"}))
                } else {
                    Reply::json(503, json!({"status": "down", "required_down": down}))
                }
            })
        }
        (Service::Admin, "GET" | "HEAD", "/config") => {
            Outcome::Reply(Reply::json(200, masked_config(&snapshot.config)))
        }
        (Service::Admin, "GET" | "HEAD", "/info") => {
            Outcome::Reply(Reply::json(200, info(snapshot, reloader)))
        }
        (Service::Admin, "POST", "/reload") => {
            let reloader = Arc::clone(reloader);
            let outcome = tokio::task::spawn_blocking(move || reloader.reload("POST /reload"))
                .await
                .unwrap_or_else(|e| Err(vec![format!("reload did not finish: {e}")]));
            Outcome::Reply(match outcome {
                Ok(()) => Reply::json(200, json!({"result": "success"})),
                Err(errors) => Reply::json(422, json!({"result": "failure", "errors": errors})),
            })
        }
        (Service::Metrics, _, _) => Outcome::MethodNotAllowed,
        (Service::Health, _, "" | "/live" | "/ready")
        | (Service::Admin, _, "/config" | "/info" | "/reload") => Outcome::MethodNotAllowed,
        _ => Outcome::NotFound,
    }
}

/// 200 while the gateway serves and every `required` upstream is up; 503
/// while it drains or a required upstream is down. Every upstream's state is
/// listed either way (up while any of its servers is), and every server's,
/// and the shared store's when there is one: a degraded store limits per
/// instance, which serves, so it never fails the check.
async fn health(snapshot: &Snapshot) -> Reply {
    let servers = probe_servers(snapshot).await;
    let states = upstream_states(&servers);
    let word = |up: bool| Value::from(if up { "up" } else { "down" });
    let upstreams: serde_json::Map<String, Value> = states
        .iter()
        .map(|(name, up)| (name.clone(), word(*up)))
        .collect();
    let servers: serde_json::Map<String, Value> = servers
        .iter()
        .map(|(name, servers)| {
            let states = servers
                .iter()
                .map(|(address, up)| (address.to_string(), word(*up)))
                .collect::<serde_json::Map<_, _>>();
            (name.clone(), Value::Object(states))
        })
        .collect();
    let (status, mut body) = if crate::health::is_draining() {
        (
            503,
            json!({"status": "draining", "upstreams": upstreams, "servers": servers}),
        )
    } else {
        let down = required_down(&states, snapshot);
        if down.is_empty() {
            (
                200,
                json!({"status": "up", "upstreams": upstreams, "servers": servers}),
            )
        } else {
            (
                503,
                json!({"status": "down", "upstreams": upstreams, "servers": servers, "required_down": down}),
            )
        }
    };
    if let Some(store) = &snapshot.shared_store {
        body["shared_store"] = crate::rate_limit::store_health(store);
    }
    Reply::json(status, body)
}

type ServerStates = BTreeMap<String, Vec<(std::net::SocketAddr, bool)>>;

/// Each server's state: actively checked ones as last checked, the others
/// by a TCP connect, in parallel, bounded by a short timeout.
async fn probe_servers(snapshot: &Snapshot) -> ServerStates {
    let mut probes = tokio::task::JoinSet::new();
    let mut states = ServerStates::new();
    for upstream in snapshot.upstreams() {
        states.entry(upstream.name.clone()).or_default();
        for server in &upstream.pool.current().servers {
            let server = Arc::clone(server);
            let name = upstream.name.clone();
            probes.spawn(async move {
                let up = if server.check.is_some() {
                    server.is_available()
                } else {
                    tokio::time::timeout(
                        Duration::from_millis(500),
                        tokio::net::TcpStream::connect(server.address),
                    )
                    .await
                    .is_ok_and(|c| c.is_ok())
                };
                (name, server.address, up)
            });
        }
    }
    while let Some(Ok((name, address, up))) = probes.join_next().await {
        states.entry(name).or_default().push((address, up));
    }
    for servers in states.values_mut() {
        servers.sort();
    }
    states
}

/// An upstream is up while any of its servers is.
fn upstream_states(servers: &ServerStates) -> BTreeMap<String, bool> {
    servers
        .iter()
        .map(|(name, servers)| (name.clone(), servers.iter().any(|(_, up)| *up)))
        .collect()
}

/// The `required` upstreams that are down, by name.
fn required_down(states: &BTreeMap<String, bool>, snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .config
        .upstreams
        .iter()
        .filter(|u| u.required && !states.get(&u.name).copied().unwrap_or(false))
        .map(|u| u.name.clone())
        .collect()
}

fn info(snapshot: &Snapshot, reloader: &Reloader) -> Value {
    let certificates: Vec<Value> = reloader
        .resolver
        .current()
        .loaded()
        .iter()
        .map(|c| {
            json!({
                "names": c.names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "not_after": c.not_after,
            })
        })
        .collect();
    let upstreams: Vec<Value> = snapshot
        .upstreams()
        .iter()
        .map(|u| {
            let servers: Vec<Value> = u
                .pool
                .current()
                .servers
                .iter()
                .map(|s| {
                    json!({
                        "address": s.address.to_string(),
                        "url": s.url,
                        "state": if s.is_available() { "up" } else { "down" },
                        "in_flight": s.in_flight(),
                    })
                })
                .collect();
            json!({"name": u.name, "balance": u.pool.balance.as_str(), "servers": servers})
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "upstreams": upstreams,
        "uptime_seconds": reloader.started.elapsed().as_secs(),
        "config_file": snapshot.config.file.display().to_string(),
        "overlays": snapshot.config.overlays.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "certificates": certificates,
    })
}

/// The running configuration with every secret replaced: password hashes,
/// and anything read from the environment shows only the variable's name.
pub fn masked_config(config: &Config) -> Value {
    const MASK: &str = "***";
    let listeners: Vec<Value> = config
        .listeners
        .iter()
        .map(|l| json!({"name": l.name, "address": l.address.to_string(), "kind": format!("{:?}", l.kind)}))
        .collect();
    let certificates: Vec<Value> = config
        .tls
        .certificates
        .iter()
        .map(|c| {
            json!({
                "server_names": c.server_names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "file": c.display_path().to_string(),
            })
        })
        .collect();
    let upstreams: Vec<Value> = config
        .upstreams
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "url": u.url,
                "servers": u.servers.iter().map(|s| s.url.as_str()).collect::<Vec<_>>(),
                "balance": u.balance.as_str(),
                "hash_key": u.hash_key.as_ref().map(|k| k.to_string()),
                "resolve_interval_ms": u.resolve_interval.as_millis() as u64,
                "connect_timeout_ms": u.connect_timeout.as_millis() as u64,
                "read_timeout_ms": u.read_timeout.as_millis() as u64,
                "write_timeout_ms": u.write_timeout.as_millis() as u64,
                "idle_timeout_ms": u.idle_timeout.as_millis() as u64,
                "required": u.required,
                "ca": u.ca.as_ref().map(|p| p.display().to_string()),
                "client_cert": u.client_identity.as_ref().map(|(c, _)| c.display().to_string()),
            })
        })
        .collect();
    let auth: Vec<Value> = config
        .auth
        .iter()
        .map(|a| match &a.kind {
            AuthKind::Jwt(j) => {
                let keys = match &j.keys {
                    JwtKeySource::JwksUrl(url) => json!({"jwks_url": url}),
                    JwtKeySource::Discovery => json!({"discovery": true}),
                    JwtKeySource::Files(files) => json!({"keys": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>()}),
                    JwtKeySource::SecretEnv(var) => json!({"secret_env": var, "secret": MASK}),
                };
                json!({
                    "name": a.name, "type": "jwt", "keys": keys, "issuer": j.issuer,
                    "audiences": j.audiences, "algorithms": j.algorithms,
                    "leeway_seconds": j.leeway.as_secs(), "required_claims": j.required_claims,
                    "cookie": j.cookie, "claims_to_headers": j.claims_to_headers,
                })
            }
            // The secret itself is never shown: only the variable it comes from.
            AuthKind::Introspection(i) => json!({
                "name": a.name, "type": "introspection", "introspection_url": i.url,
                "client_id": i.client_id, "client_secret_env": i.client_secret_env,
                "client_secret": MASK, "audiences": i.audiences, "issuer": i.issuer,
                "cache_ttl_seconds": i.cache_ttl.as_secs(),
            }),
            AuthKind::Basic(b) => json!({
                "name": a.name, "type": "basic", "realm": b.realm,
                "users": b.users.iter().map(|u| (u.user.clone(), Value::from(MASK))).collect::<serde_json::Map<_, _>>(),
                "htpasswd": b.htpasswd.as_ref().map(|p| p.display().to_string()),
                "max_failures": b.max_failures,
            }),
            AuthKind::ClientCert(c) => json!({
                "name": a.name, "type": "client_cert", "subjects": c.subjects,
                "sans": c.sans, "claims_to_headers": c.claims_to_headers,
            }),
        })
        .collect();
    let routes: Vec<Value> = config
        .routes
        .iter()
        .map(|r| {
            let target = match &r.target {
                RouteTarget::Upstream(u) => json!({"upstream": u}),
                RouteTarget::Service(s) => json!({"service": s.name()}),
                RouteTarget::Nothing => Value::Null,
            };
            json!({
                "name": r.name,
                "host": r.host.as_ref().map(|h| h.to_string()),
                "path_prefix": r.path_prefix,
                "strip_prefix": r.strip_prefix,
                "allow_encoded_percent": r.allow_encoded_percent,
                "target": target,
                "allow": r.allow.as_ref().map(|a| a.entries().to_vec()),
                "deny": r.deny,
                "auth": r.auth,
                "forward_client_cert": r.forward_client_cert,
                "limit": r.limit,
                "require": r.require.as_ref().map(|q| q.claims.iter().map(|(p, v)| (p.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>()),
                "listeners": r.listeners,
                "response_headers": r.response_headers.iter()
                    .map(|(n, v)| (n.to_string(), Value::from(String::from_utf8_lossy(v.as_bytes()))))
                    .collect::<serde_json::Map<_, _>>(),
                "remove_response_headers": r.remove_response_headers.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "file": config.file.display().to_string(),
        "gateway": {
            "threads": config.gateway.threads,
            "trusted_proxies": config.gateway.trusted_proxies.entries(),
            "shared_store": config.gateway.shared_store.as_ref().map(|u| u.shown()),
        },
        "limits": config.limits.iter().map(|l| json!({
            "name": l.name,
            "rate": l.policy.rate().to_string(),
            "burst": l.policy.burst().get(),
            "key": limit_key(&l.key),
        })).collect::<Vec<_>>(),
        "listeners": listeners,
        "tls": {"min_version": format!("{:?}", config.tls.min_version), "strict_sni": config.tls.strict_sni, "client_ca": config.tls.client_ca.as_ref().map(|ca| ca.path.display().to_string()), "hsts": config.tls.hsts.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes())), "certificates": certificates},
        "upstreams": upstreams,
        "auth": auth,
        "routes": routes,
    })
}

/// A limit's key as config spells it.
fn limit_key(key: &postern_config::LimitKey) -> String {
    use postern_config::LimitKey;
    match key {
        LimitKey::Client => "client".to_string(),
        LimitKey::Route => "route".to_string(),
        LimitKey::Header(name) => format!("header:{name}"),
        LimitKey::Claim(claim) => format!("claim:{claim}"),
    }
}
