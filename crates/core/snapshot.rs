//! A configuration compiled for serving: per-listener routers, resolved
//! upstream addresses, certificates. Built once per load; requests read it
//! through an `ArcSwap`, so a reload never blocks them.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use postern_auth::Authenticator;
use postern_config::{Config, Diagnostics, ListenerKind, RouteTarget, Scheme, Service};
use postern_policy::host::HostPattern;
use postern_policy::router::{RouteEntry, Router};
use postern_policy::source::Allowlist;

use crate::tls::{self, CertificateTable};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};

#[derive(Debug)]
pub struct UpstreamPlan {
    pub name: String,
    pub address: SocketAddr,
    pub tls: bool,
    /// SNI and certificate name for https upstreams.
    pub sni: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Extra trust anchors for an https upstream (`ca = "..."`).
    pub ca: Option<Arc<[WrappedX509]>>,
    /// The certificate and key presented to an https upstream (mTLS).
    pub client_identity: Option<Arc<CertKey>>,
}

/// Everything a request on a route needs, decided at load time.
#[derive(Debug)]
pub struct RoutePlan {
    pub name: String,
    pub strip_prefix: bool,
    /// Double encoding (`%25` and two hex digits) is forwarded, not refused.
    pub allow_encoded_percent: bool,
    pub deny: bool,
    pub allow: Option<Allowlist>,
    pub upstream: Option<Arc<UpstreamPlan>>,
    pub auth: Option<Arc<Authenticator>>,
    /// A built-in endpoint instead of an upstream.
    pub service: Option<Service>,
    /// Largest request body forwarded; None: unlimited.
    pub max_body_size: Option<u64>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    routers: HashMap<String, Router<Arc<RoutePlan>>>,
    pub certificates: Arc<CertificateTable>,
    /// Every name some certificate serves, for the https redirect.
    pub served_names: Vec<HostPattern>,
    /// Where `redirect_https` sends clients: the first TLS listener's port.
    pub https_port: Option<u16>,
    /// Headers some authenticator sets from token claims: a client's copies
    /// are removed from every forwarded request.
    pub identity_headers: Vec<String>,
    upstreams: HashMap<String, Arc<UpstreamPlan>>,
}

impl Snapshot {
    pub fn router(&self, listener: &str) -> Option<&Router<Arc<RoutePlan>>> {
        self.routers.get(listener)
    }

    /// Every upstream's resolved address, for health probes.
    pub fn upstream_addresses(&self) -> Vec<(String, SocketAddr)> {
        let mut all: Vec<_> = self
            .upstreams
            .values()
            .map(|u| (u.name.clone(), u.address))
            .collect();
        all.sort();
        all
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

    let mut upstreams = HashMap::new();
    for u in &config.upstreams {
        let address = match (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(address)) => address,
            Ok(None) | Err(_) => {
                diags.error_with_help(
                    &u.origin,
                    format!("upstream {:?}: host {:?} does not resolve", u.name, u.host),
                    "use an IP address or a name this machine can resolve; names are resolved when the config is loaded",
                );
                continue;
            }
        };
        let ca = match &u.ca {
            Some(path) => match load_ca(path) {
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
            None => None,
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
        upstreams.insert(
            u.name.clone(),
            Arc::new(UpstreamPlan {
                name: u.name.clone(),
                address,
                tls: u.scheme == Scheme::Https,
                sni: u.host.clone(),
                connect_timeout: u.connect_timeout,
                read_timeout: u.read_timeout,
                write_timeout: u.write_timeout,
                idle_timeout: u.idle_timeout,
                ca,
                client_identity,
            }),
        );
    }
    let env = |name: &str| std::env::var(name).ok();
    let mut authenticators = HashMap::new();
    for a in &config.auth {
        if let Some(built) = postern_auth::build(a, &env, diags) {
            authenticators.insert(a.name.clone(), Arc::new(built));
        }
    }
    let mut identity_headers: Vec<String> = authenticators
        .values()
        .flat_map(|a: &Arc<Authenticator>| a.owned_headers())
        .collect();
    identity_headers.sort();
    identity_headers.dedup();
    if diags.has_errors() {
        return None;
    }

    let plans: Vec<(Arc<RoutePlan>, &postern_config::Route)> = config
        .routes
        .iter()
        .map(|r| {
            let upstream = match &r.target {
                RouteTarget::Upstream(name) => upstreams.get(name).cloned(),
                RouteTarget::Nothing | RouteTarget::Service(_) => None,
            };
            let plan = RoutePlan {
                name: r.name.clone(),
                strip_prefix: r.strip_prefix,
                allow_encoded_percent: r.allow_encoded_percent,
                deny: r.deny,
                allow: r.allow.clone(),
                upstream,
                auth: r.auth.as_ref().and_then(|a| authenticators.get(a).cloned()),
                max_body_size: r.max_body_size.or(config.gateway.max_body_size),
                service: match &r.target {
                    RouteTarget::Service(service) => Some(*service),
                    _ => None,
                },
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

    let served_names = config
        .tls
        .certificates
        .iter()
        .flat_map(|c| c.server_names.iter().cloned())
        .collect();
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
        upstreams,
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

fn load_ca(path: &std::path::Path) -> Result<Arc<[WrappedX509]>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ca {}: {e}", path.display()))?;
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
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
