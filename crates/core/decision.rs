//! What the gateway does with a request, decided from its head and the
//! connection alone. No Pingora type appears here, so every check, the
//! order of the checks and what each answers are unit-tested in memory
//! (`decision/tests.rs`).
//!
//! The checks, in the order the spec gives ("Request semantics"):
//!
//! 0. CONNECT: 405, as no tunnel is ever opened;
//! 1. limits: a request target over 8 KB is 414, a head over
//!    `max_header_size` is 431;
//! 2. the canonical path, or 400;
//! 3. the `Host` (or `:authority`), or 400;
//! 4. on a `redirect_https` listener: 308 to https (404 for a host no
//!    certificate serves);
//! 5. on a TLS listener: a Host the connection's certificate does not cover is 421;
//! 6. the route, or 404;
//! 7. double encoding (`%25` and two hex digits): 400, unless the route
//!    sets `allow_encoded_percent`;
//! 8. `deny`: 403;
//! 9. the client: the TCP peer, or the chain a trusted proxy sent (400 if unreadable);
//! 10. `allow`: 403 for a client outside it;
//! 11. a declared Content-Length over `max_body_size`: 413.
//!
//! Authentication (`auth.rs`) and upstream health follow in `proxy.rs`, so a
//! refused source never costs a password check.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, FORWARDED, HOST};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Uri};
use postern_config::{ListenerKind, Service};
use postern_policy::host::{normalize_host, HostPattern};
use postern_policy::path::{canonicalize, check_encoded_percent};
use postern_policy::router::strip_segments;
use postern_policy::source::{self, Client};

use crate::client_cert::ClientCertificate;
use crate::forwarding::X_FORWARDED_FOR;
use crate::response::ErrorKind;
use crate::snapshot::{RouteAction, RoutePlan, Snapshot, UpstreamPlan};

#[cfg(test)]
mod tests;

/// Longest request target accepted (nginx's large_client_header_buffers is 8k).
const MAX_URI: usize = 8 * 1024;

/// What is known about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The listener's name, which chooses its routes.
    pub listener: &'a str,
    pub kind: ListenerKind,
    /// The TCP peer; `None` for a peer without an IP address.
    pub peer: Option<IpAddr>,
    /// The gateway port the client connected to.
    pub local_port: u16,
    /// The names the connection's certificate serves (TLS listeners).
    pub certificate: Option<&'a [HostPattern]>,
    /// The client certificate verified during the handshake, if any.
    pub client_certificate: Option<&'a ClientCertificate>,
}

/// A request the gateway answers itself with an error, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: ErrorKind,
    /// A fixed phrase, for the log.
    pub reason: &'static str,
}

impl Refusal {
    const fn new(kind: ErrorKind, reason: &'static str) -> Self {
        Refusal { kind, reason }
    }
}

const DENIED: Refusal = Refusal::new(ErrorKind::Forbidden, "route denies every request");

#[derive(Debug)]
pub enum Decision {
    Refuse(Refusal),
    /// 308 to this `Location`.
    Redirect(String),
    /// A built-in endpoint, given the canonical path below the route's prefix.
    Serve {
        service: Service,
        relative_path: String,
    },
    Forward(Forward),
}

/// A request to forward, once authenticated.
#[derive(Debug)]
pub struct Forward {
    pub upstream: Arc<UpstreamPlan>,
    /// What is sent upstream: the canonical path (after `strip_prefix`) and
    /// the query. The client's own target when that already is canonical.
    pub target: PathAndQuery,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The chain a trusted proxy sent; `None` when the peer is not trusted,
    /// whose forwarding headers are replaced, never read.
    pub trusted_chain: Option<TrustedChain>,
    /// "https" or "http".
    pub proto: &'static str,
    pub local_port: u16,
    /// The route's `forward_client_cert`.
    pub forward_client_cert: bool,
}

/// The forwarding headers a trusted proxy sent, each header's lines joined.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrustedChain {
    pub x_forwarded_for: Option<String>,
    pub forwarded: Option<String>,
}

/// What was learnt about a request on the way to its decision, as far as the
/// checks got: for the access log, metrics and authentication.
#[derive(Debug, Default)]
pub struct Seen {
    /// The canonical path.
    pub path: Option<String>,
    /// The normalised host.
    pub host: Option<String>,
    pub route: Option<Arc<RoutePlan>>,
    /// The client the policies were applied to.
    pub client: Option<IpAddr>,
}

/// Every check a request must pass before anything is forwarded.
pub fn decide(
    request: &Parts,
    connection: &Connection<'_>,
    snapshot: &Snapshot,
) -> (Decision, Seen) {
    let mut seen = Seen::default();
    let decision = check(request, connection, snapshot, &mut seen).unwrap_or_else(Decision::Refuse);
    (decision, seen)
}

fn check(
    req: &Parts,
    conn: &Connection<'_>,
    snapshot: &Snapshot,
    seen: &mut Seen,
) -> Result<Decision, Refusal> {
    let Seen {
        path: seen_path,
        host: seen_host,
        route: seen_route,
        client: seen_client,
    } = seen;
    // Postern opens no tunnels. Pingora would refuse CONNECT itself, before
    // any hook and with a bare 405; it lets it through (`server.rs`) so the
    // refusal is answered here like any other.
    if req.method == http::Method::CONNECT {
        return Err(Refusal::new(
            ErrorKind::MethodNotAllowed,
            "CONNECT is not proxied",
        ));
    }
    let raw_target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // Limits first: nothing else should spend time on an oversized request.
    check_limits(req, raw_target, snapshot.config.gateway.max_header_size)?;
    let target =
        canonicalize(raw_target).map_err(|e| Refusal::new(ErrorKind::BadRequest, e.reason()))?;
    let query = target.query;
    let path: &str = seen_path.insert(target.path);

    let (host, _) = normalize_host(requested_host(&req.headers, &req.uri)?)
        .map_err(|_| Refusal::new(ErrorKind::BadRequest, "malformed Host"))?;
    let host: &str = seen_host.insert(host);

    match conn.kind {
        ListenerKind::RedirectHttps => {
            return redirect(snapshot, host, path, query.as_deref()).map(Decision::Redirect)
        }
        ListenerKind::Tls => {
            let covered = conn
                .certificate
                .is_some_and(|names| names.iter().any(|n| n.matches(host)));
            if !covered {
                return Err(Refusal::new(
                    ErrorKind::Misdirected,
                    "Host not covered by the connection's certificate",
                ));
            }
        }
        _ => {}
    }

    let router = snapshot.router(conn.listener).ok_or(Refusal::new(
        ErrorKind::NotFound,
        "listener serves no routes",
    ))?;
    let matched = router
        .route(host, path)
        .ok_or(Refusal::new(ErrorKind::NotFound, "no route"))?;
    let route: &RoutePlan = seen_route.insert(Arc::clone(matched.value));
    // Only now, with the route known: whether double encoding may pass is
    // the route's to say. The route was chosen on the canonical path, which
    // keeps `%25` as data; the check reads the target as received, as a
    // `..` may have removed the segment that held it.
    if !route.allow_encoded_percent {
        check_encoded_percent(raw_target)
            .map_err(|e| Refusal::new(ErrorKind::BadRequest, e.reason()))?;
    }
    if matches!(route.action, RouteAction::Deny) {
        return Err(DENIED);
    }

    let peer = conn
        .peer
        .map(source::unmap)
        .ok_or(Refusal::new(ErrorKind::Forbidden, "no peer address"))?;
    let trusted = snapshot.trusted_proxies();
    // An untrusted peer's forwarding headers are never read.
    let trusted_chain = trusted.contains(peer).then(|| TrustedChain {
        x_forwarded_for: joined(&req.headers, &X_FORWARDED_FOR),
        forwarded: joined(&req.headers, &FORWARDED),
    });
    let client = match &trusted_chain {
        None => peer,
        Some(chain) => match source::client(
            peer,
            trusted,
            chain.x_forwarded_for.as_deref(),
            chain.forwarded.as_deref(),
        ) {
            Client::Known(ip) => ip,
            // A trusted proxy sent a chain that cannot be read: refuse rather than guess.
            Client::Unknown => {
                return Err(Refusal::new(
                    ErrorKind::BadRequest,
                    "unreadable forwarding chain from a trusted proxy",
                ))
            }
        },
    };
    *seen_client = Some(client);
    if route
        .allow
        .as_ref()
        .is_some_and(|allow| !allow.contains(client))
    {
        return Err(Refusal::new(
            ErrorKind::Forbidden,
            "client not in the route's allow list",
        ));
    }
    if let (Some(limit), Some(length)) = (route.max_body_size, declared_length(&req.headers)) {
        if length > limit {
            return Err(Refusal::new(
                ErrorKind::PayloadTooLarge,
                "request body larger than max_body_size",
            ));
        }
    }

    let below_prefix = strip_segments(path, matched.prefix_segments);
    let upstream = match &route.action {
        RouteAction::Forward(upstream) => Arc::clone(upstream),
        RouteAction::Serve(service) => {
            return Ok(Decision::Serve {
                service: *service,
                relative_path: below_prefix.to_string(),
            })
        }
        RouteAction::Deny => return Err(DENIED),
    };
    let sent_path = if route.strip_prefix {
        below_prefix
    } else {
        path
    };
    Ok(Decision::Forward(Forward {
        upstream,
        target: upstream_target(&req.uri, raw_target, sent_path, query.as_deref())?,
        peer,
        trusted_chain,
        proto: if conn.kind == ListenerKind::Tls {
            "https"
        } else {
            "http"
        },
        local_port: conn.local_port,
        forward_client_cert: route.forward_client_cert,
    }))
}

fn check_limits(req: &Parts, raw_target: &str, max_header_size: u64) -> Result<(), Refusal> {
    let target_len = raw_target.len()
        + req.uri.scheme_str().map_or(0, |s| s.len() + 3)
        + req.uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > MAX_URI {
        return Err(Refusal::new(
            ErrorKind::UriTooLong,
            "request target too long",
        ));
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if (header_bytes + raw_target.len()) as u64 > max_header_size {
        return Err(Refusal::new(
            ErrorKind::HeadersTooLarge,
            "request headers larger than max_header_size",
        ));
    }
    Ok(())
}

/// The host the client asked for, as sent: the `Host` header, else the
/// target's authority (HTTP/2's `:authority`); both must agree.
pub fn requested_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Result<&'a str, Refusal> {
    let host_header = headers.get(HOST).map(|h| h.to_str());
    let authority = uri.authority().map(|a| a.as_str());
    match (host_header, authority) {
        (Some(Err(_)), _) => Err(Refusal::new(
            ErrorKind::BadRequest,
            "Host is not visible ASCII",
        )),
        (Some(Ok(h)), Some(a)) if !h.eq_ignore_ascii_case(a) => Err(Refusal::new(
            ErrorKind::BadRequest,
            "Host differs from the request target's authority",
        )),
        (Some(Ok(h)), _) => Ok(h),
        (None, Some(a)) => Ok(a),
        (None, None) => Err(Refusal::new(ErrorKind::BadRequest, "no Host")),
    }
}

/// Where a `redirect_https` listener sends the client.
fn redirect(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    query: Option<&str>,
) -> Result<String, Refusal> {
    if snapshot.served_names.get_named(host).is_none() {
        return Err(Refusal::new(
            ErrorKind::NotFound,
            "redirect requested for a host no certificate serves",
        ));
    }
    let mut location = format!("https://{host}");
    if let Some(port) = snapshot.https_port.filter(|&p| p != 443) {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(path);
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    Ok(location)
}

/// A list header may arrive split over several lines; RFC 9110 says they
/// mean the same as one line joined with commas.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .collect();
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// The Content-Length a request declares, if it is one number.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The target sent upstream. The client's own when it already is the
/// canonical one (the common case: nothing is formatted or parsed).
fn upstream_target(
    uri: &Uri,
    raw_target: &str,
    path: &str,
    query: Option<&str>,
) -> Result<PathAndQuery, Refusal> {
    let unchanged = match query {
        None => raw_target == path,
        Some(query) => {
            raw_target
                .strip_prefix(path)
                .and_then(|rest| rest.strip_prefix('?'))
                == Some(query)
        }
    };
    if let (true, Some(sent)) = (unchanged, uri.path_and_query()) {
        return Ok(sent.clone());
    }
    let rewritten = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    PathAndQuery::try_from(rewritten)
        .map_err(|_| Refusal::new(ErrorKind::BadRequest, "canonical target is not a valid URI"))
}
