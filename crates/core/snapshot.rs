//! A configuration compiled for serving: per-listener routers, resolved
//! upstream addresses, certificates. Built once per load; requests read it
//! through an `ArcSwap`, so a reload never blocks them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use pingora::upstreams::peer::HttpPeer;
use postern_auth::chain::AuthChain;
use postern_auth::claims::Requirement;
use postern_auth::Authenticator;
use postern_config::{Config, Diagnostics, ListenerKind, RouteTarget, Scheme, Service};
use postern_policy::hostmap::HostMap;
use postern_policy::router::{RouteEntry, Router};
use postern_policy::source::Allowlist;

use rustls::server::danger::ClientCertVerifier;

use crate::client_cert;
use crate::metrics::{RouteMetrics, UpstreamMetrics};
use crate::pool::{Pool, ServerSet, ServerTemplate};
use crate::rate_limit::{self, RouteLimit};
use crate::response_headers::RouteHeaders;
use crate::tls::{self, CertificateTable};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};

/// What a request forwarded to an upstream needs, compiled at load.
#[derive(Debug)]
pub struct UpstreamPlan {
    pub name: String,
    /// Its servers, each with a prebuilt peer, health and metrics: a request
    /// picks one; nothing is looked up by name.
    pub pool: Pool,
    /// `servers` (or `url`) as written, and how to set up a server for one
    /// of their addresses: for re-resolving host names.
    pub entries: Vec<postern_config::ServerAddress>,
    pub template: ServerTemplate,
    pub connect_timeout: Duration,
    pub resolve_interval: Duration,
    pub metrics: UpstreamMetrics,
}

impl UpstreamPlan {
    /// Whether some entry is a host name (not an IP literal).
    pub fn resolves_names(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.host.parse::<std::net::IpAddr>().is_err())
    }
}

/// What a route does with a request that passed its policies.
#[derive(Debug)]
pub enum RouteAction {
    /// `deny = true`: every request gets 403.
    Deny,
    /// A built-in endpoint instead of an upstream.
    Serve(Service),
    Forward(Arc<UpstreamPlan>),
}

/// Everything a request on a route needs, decided at load time.
#[derive(Debug)]
pub struct RoutePlan {
    pub name: String,
    pub action: RouteAction,
    pub strip_prefix: bool,
    /// Double encoding (`%25` and two hex digits) is forwarded, not refused.
    pub allow_encoded_percent: bool,
    pub allow: Option<Allowlist>,
    /// `auth` and `require`: None when the route authenticates nobody.
    pub auth: Option<Arc<AuthChain>>,
    /// The verified client certificate goes upstream (RFC 9440).
    pub forward_client_cert: bool,
    /// `limit`: the route's `[limits]` entry, compiled.
    pub limit: Option<Arc<RouteLimit>>,
    /// Largest request body forwarded; None: unlimited.
    pub max_body_size: Option<u64>,
    /// Bodies up to this are read whole before the upstream is contacted.
    pub request_buffer: u64,
    /// `response_headers` and `remove_response_headers`.
    pub response_headers: RouteHeaders,
    pub metrics: RouteMetrics,
}

impl RoutePlan {
    pub fn upstream(&self) -> Option<&Arc<UpstreamPlan>> {
        match &self.action {
            RouteAction::Forward(upstream) => Some(upstream),
            RouteAction::Deny | RouteAction::Serve(_) => None,
        }
    }
}

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    routers: HashMap<String, Router<Arc<RoutePlan>>>,
    pub certificates: Arc<CertificateTable>,
    /// Every name some certificate serves, for the https redirect.
    pub served_names: HostMap<()>,
    /// Where `redirect_https` sends clients: the first TLS listener's port.
    pub https_port: Option<u16>,
    /// Headers some authenticator sets from token claims: a client's copies
    /// are removed from every forwarded request.
    pub identity_headers: Vec<HeaderName>,
    /// `[tls] client_ca`, loaded. TLS listeners take it at startup.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// By name, sorted.
    upstreams: Vec<Arc<UpstreamPlan>>,
    /// `[gateway] shared_store`, one per process whatever the reloads.
    pub shared_store: Option<Arc<postern_limits::SharedStore>>,
}

impl Snapshot {
    pub fn router(&self, listener: &str) -> Option<&Router<Arc<RoutePlan>>> {
        self.routers.get(listener)
    }

    /// Every upstream that loaded, by name.
    pub fn upstreams(&self) -> &[Arc<UpstreamPlan>] {
        &self.upstreams
    }

    /// (server names, notAfter) of each loaded certificate, for metrics.
    pub fn certificate_expiries(&self) -> Vec<(String, i64)> {
        self.certificates
            .loaded()
            .iter()
            .map(|c| {
                let names: Vec<String> = c.names.iter().map(|n| n.to_string()).collect();
                (names.join(","), c.not_after)
            })
            .collect()
    }

    pub fn trusted_proxies(&self) -> &Allowlist {
        &self.config.gateway.trusted_proxies
    }
}

/// Compiles a checked configuration; what cannot be compiled (unreadable
/// certificates, upstream names that do not resolve) is added to `diags`.
pub fn compile(config: Config, diags: &mut Diagnostics) -> Option<Snapshot> {
    let loaded = tls::load_certificates(&config.tls.certificates, diags);
    let certificates = Arc::new(CertificateTable::new(
        loaded,
        config.tls.min_version,
        config.tls.strict_sni,
    ));

    let client_verifier = config
        .tls
        .client_ca
        .as_ref()
        .and_then(|ca| client_cert::verifier(ca, diags));

    let mut pending = Vec::new();
    for u in &config.upstreams {
        let mut resolved = Vec::new();
        for entry in &u.servers {
            match crate::resolve::lookup_now(&config.gateway.resolver, &entry.host, entry.port) {
                Ok(addresses) => resolved.push((entry, addresses)),
                Err(why) => diags.error_with_help(
                    &u.origin,
                    format!(
                        "upstream {:?}: host {:?} does not resolve: {why}",
                        u.name, entry.host
                    ),
                    "use an IP address or a name this machine can resolve; names are resolved when the config is loaded, then every resolve_interval",
                ),
            }
        }
        let Some((_, first)) = resolved.first() else {
            continue;
        };
        let Some(&address) = first.first() else {
            continue;
        };
        let ca_pem = match u.ca.as_deref().map(read_ca) {
            Some(Ok(pem)) => Some(pem),
            Some(Err(message)) => {
                diags.error_with_help(
                    &u.origin,
                    format!("upstream {:?}: {message}", u.name),
                    "give a PEM file of the CA certificate(s) that signed the upstream's certificate",
                );
                continue;
            }
            None => None,
        };
        let ca = match (&u.ca, &ca_pem) {
            (Some(path), Some(pem)) => match parse_ca(path, pem) {
                Ok(ca) => Some(ca),
                Err(message) => {
                    diags.error_with_help(
                        &u.origin,
                        format!("upstream {:?}: {message}", u.name),
                        "give a PEM file of the CA certificate(s) that signed the upstream's certificate",
                    );
                    continue;
                }
            },
            _ => None,
        };
        let client_identity = match &u.client_identity {
            Some((cert, key)) => match load_client_identity(cert, key) {
                Ok(identity) => Some(identity),
                Err((message, help)) => {
                    diags.error_with_help(
                        &u.origin,
                        format!("upstream {:?}: {message}", u.name),
                        help,
                    );
                    continue;
                }
            },
            None => None,
        };
        let mut peer = HttpPeer::new(address, u.scheme == Scheme::Https, u.host.clone());
        peer.options.connection_timeout = Some(u.connect_timeout);
        peer.options.read_timeout = Some(u.read_timeout);
        peer.options.write_timeout = Some(u.write_timeout);
        peer.options.idle_timeout = Some(u.idle_timeout);
        peer.options.ca = ca;
        peer.client_cert_key = client_identity;
        let template = ServerTemplate {
            upstream: u.name.clone(),
            peer,
            health: u.health.clone(),
            ca_pem,
        };
        let mut servers = Vec::new();
        for (entry, addresses) in &resolved {
            for &address in addresses {
                if servers
                    .iter()
                    .any(|s: &Arc<crate::pool::Server>| s.address == address)
                {
                    continue;
                }
                match template.server(entry, address) {
                    Ok(server) => servers.push(server),
                    Err(message) => {
                        diags.error(&u.origin, format!("upstream {:?}: {message}", u.name))
                    }
                }
            }
        }
        pending.push((u, template, servers));
    }
    let env = |name: &str| std::env::var(name).ok();
    // Before the authenticators: basic auth counts its failures there too.
    let shared_store = config.gateway.shared_store.as_ref().and_then(|url| {
        rate_limit::shared_store(
            url,
            &postern_config::Origin::file_start(&config_file(&config)),
            diags,
        )
    });
    let mut authenticators = HashMap::new();
    for a in &config.auth {
        if let Some(built) = postern_auth::build(a, &env, diags, shared_store.as_ref()) {
            authenticators.insert(a.name.clone(), Arc::new(built));
        }
    }
    // Claim headers were checked as header names when the config loaded.
    let mut identity_headers: Vec<HeaderName> = authenticators
        .values()
        .flat_map(|a: &Arc<Authenticator>| a.owned_headers())
        .filter_map(|name| HeaderName::try_from(name).ok())
        .collect();
    identity_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    identity_headers.dedup();
    if diags.has_errors() {
        return None;
    }
    let upstreams: HashMap<String, Arc<UpstreamPlan>> = pending
        .into_iter()
        .map(|(u, template, servers)| {
            let set = ServerSet::new(servers, u.balance);
            let plan = UpstreamPlan {
                name: u.name.clone(),
                metrics: UpstreamMetrics::new(&u.name, set.any_available()),
                pool: Pool::new(set, u.balance, u.hash_key.clone()),
                entries: u.servers.clone(),
                template,
                connect_timeout: u.connect_timeout,
                resolve_interval: u.resolve_interval,
            };
            (u.name.clone(), Arc::new(plan))
        })
        .collect();

    let plans: Vec<(Arc<RoutePlan>, &postern_config::Route)> = config
        .routes
        .iter()
        .map(|r| {
            let action = match &r.target {
                _ if r.deny => RouteAction::Deny,
                RouteTarget::Service(service) => RouteAction::Serve(*service),
                RouteTarget::Upstream(name) => match upstreams.get(name) {
                    Some(upstream) => RouteAction::Forward(Arc::clone(upstream)),
                    // Every name was checked by the loader; fail closed anyway.
                    None => RouteAction::Deny,
                },
                RouteTarget::Nothing => RouteAction::Deny,
            };
            let plan = RoutePlan {
                name: r.name.clone(),
                action,
                strip_prefix: r.strip_prefix,
                allow_encoded_percent: r.allow_encoded_percent,
                allow: r.allow.clone(),
                auth: route_chain(r, &authenticators),
                forward_client_cert: r.forward_client_cert,
                limit: r
                    .limit
                    .as_ref()
                    .and_then(|l| config.limit(l))
                    .map(|l| Arc::new(RouteLimit::new(&r.name, l, shared_store.as_ref()))),
                max_body_size: r.max_body_size.or(config.gateway.max_body_size),
                request_buffer: r.request_buffer.unwrap_or(config.gateway.request_buffer),
                response_headers: RouteHeaders {
                    set: r.response_headers.clone(),
                    remove: r.remove_response_headers.clone(),
                },
                metrics: RouteMetrics::new(&r.name),
            };
            (Arc::new(plan), r)
        })
        .collect();

    let mut routers = HashMap::new();
    for listener in &config.listeners {
        if listener.kind == ListenerKind::RedirectHttps {
            continue;
        }
        let entries = plans
            .iter()
            .filter(|(_, r)| {
                r.listeners
                    .as_ref()
                    .is_none_or(|ls| ls.contains(&listener.name))
            })
            .map(|(plan, r)| RouteEntry {
                host: r.host.clone(),
                path_prefix: r.path_prefix.clone(),
                value: Arc::clone(plan),
            });
        routers.insert(listener.name.clone(), Router::new(entries));
    }

    let mut served_names = HostMap::new();
    for name in config
        .tls
        .certificates
        .iter()
        .flat_map(|c| c.server_names.iter())
    {
        served_names.entry(Some(name), || ());
    }
    let https_port = config
        .listeners
        .iter()
        .find(|l| l.kind == ListenerKind::Tls)
        .map(|l| l.address.port());
    Some(Snapshot {
        config: Arc::new(config),
        routers,
        certificates,
        served_names,
        https_port,
        identity_headers,
        client_verifier,
        upstreams: sorted(upstreams),
        shared_store,
    })
}

/// Checked here because Pingora's connector panics on a certificate or key
/// it cannot parse, and would only find out at the first request.
fn load_client_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<CertKey>, (String, String)> {
    let (chain, key_der) = tls::read_pem(cert, key)?;
    for der in &chain {
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            (
                format!(
                    "client_cert {} holds a certificate that does not parse: {e}",
                    cert.display()
                ),
                "give a PEM certificate chain, leaf first".to_string(),
            )
        })?;
    }
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider).map_err(
        |e| {
            (
                format!(
                    "client_key {} cannot be used with client_cert {}: {e}",
                    key.display(),
                    cert.display()
                ),
                "give the key that was generated with the client certificate".to_string(),
            )
        },
    )?;
    Ok(Arc::new(CertKey::new(
        chain.iter().map(|c| c.to_vec()).collect(),
        key_der.secret_der().to_vec(),
    )))
}

fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read ca {}: {e}", path.display()))
}

fn parse_ca(path: &std::path::Path, pem: &[u8]) -> Result<Arc<[WrappedX509]>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca {} is not valid PEM: {e}", path.display()))?;
    if ders.is_empty() {
        return Err(format!("ca {} holds no certificate", path.display()));
    }
    ders.into_iter()
        .map(|der| {
            // Pingora's parser panics on bad DER: check it here first.
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
                format!(
                    "ca {} holds a certificate that does not parse: {e}",
                    path.display()
                )
            })?;
            Ok(WrappedX509::new(der.to_vec(), parse_x509))
        })
        .collect()
}

fn config_file(config: &Config) -> Arc<str> {
    Arc::from(config.file.display().to_string())
}

fn sorted(upstreams: HashMap<String, Arc<UpstreamPlan>>) -> Vec<Arc<UpstreamPlan>> {
    let mut all: Vec<_> = upstreams.into_values().collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}
/// The route's authenticators in order, with its compiled `require`. Every
/// name was checked by the loader; one that did not build fails the load.
fn route_chain(
    route: &postern_config::Route,
    authenticators: &HashMap<String, Arc<Authenticator>>,
) -> Option<Arc<AuthChain>> {
    let steps = route
        .auth
        .iter()
        .filter_map(|a| authenticators.get(a).cloned())
        .collect();
    let require = route.require.as_ref().map(|r| Requirement::new(&r.claims));
    AuthChain::new(steps, require).map(Arc::new)
}
