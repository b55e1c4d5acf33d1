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
                let up = upstream.health.is_available();
                upstream.metrics.healthy.set(i64::from(up));
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
                    required_down(&probe_upstreams(snapshot).await, snapshot)
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
/// listed either way.
async fn health(snapshot: &Snapshot) -> Reply {
    let states = probe_upstreams(snapshot).await;
    let upstreams: serde_json::Map<String, Value> = states
        .iter()
        .map(|(name, up)| (name.clone(), Value::from(if *up { "up" } else { "down" })))
        .collect();
    if crate::health::is_draining() {
        return Reply::json(503, json!({"status": "draining", "upstreams": upstreams}));
    }
    let down = required_down(&states, snapshot);
    if !down.is_empty() {
        return Reply::json(
            503,
            json!({"status": "down", "upstreams": upstreams, "required_down": down}),
        );
    }
    Reply::json(200, json!({"status": "up", "upstreams": upstreams}))
}

/// Each upstream's state: actively checked ones as last checked, the others
/// by a TCP connect, in parallel, bounded by a short timeout.
async fn probe_upstreams(snapshot: &Snapshot) -> BTreeMap<String, bool> {
    let mut probes = tokio::task::JoinSet::new();
    for upstream in snapshot.upstreams() {
        let upstream = Arc::clone(upstream);
        probes.spawn(async move {
            let up = if upstream.check.is_some() {
                upstream.health.is_available()
            } else {
                tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(upstream.address),
                )
                .await
                .is_ok_and(|c| c.is_ok())
            };
            (upstream.name.clone(), up)
        });
    }
    let mut states = BTreeMap::new();
    while let Some(Ok((name, up))) = probes.join_next().await {
        states.insert(name, up);
    }
    states
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
    json!({
        "version": env!("CARGO_PKG_VERSION"),
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
        },
        "listeners": listeners,
        "tls": {"min_version": format!("{:?}", config.tls.min_version), "strict_sni": config.tls.strict_sni, "hsts": config.tls.hsts.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes())), "certificates": certificates},
        "upstreams": upstreams,
        "auth": auth,
        "routes": routes,
    })
}
