//! A request's journey through the gateway, top to bottom in Pingora's hooks.
//!
//! `request_filter` decides everything: canonical path, host, certificate
//! coverage (421), route (404), deny and allow (403). Only a request that
//! passed every check gets an `upstream_peer`; `upstream_request_filter` then
//! rewrites it onto the same canonical path the decision was made on and sets
//! the forwarding headers. The decisions themselves are plain functions in
//! `postern-policy`; this file only wires them to Pingora.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;
use postern_auth::{Credentials, Denial, Identity, Verdict};
use postern_config::{ListenerKind, Service};
use postern_policy::forwarded::{acceptable_request_id, ForwardingHeaders, Hop};
use postern_policy::host::normalize_host;
use postern_policy::path::{canonicalize, check_encoded_percent};
use postern_policy::router::strip_segments;
use postern_policy::source::{self, Client};

use crate::access_log;
use crate::client_timeouts::ClientStream;
use crate::health;
use crate::metrics::metrics;
use crate::reload::Reloader;
use crate::response::{error_response, ErrorKind};
use crate::services;
use crate::snapshot::{RoutePlan, Snapshot};
use crate::tls::ConnectionCertificate;

/// Longest request target accepted (nginx's large_client_header_buffers is 8k).
const MAX_URI: usize = 8 * 1024;

/// The proxy logic of one listener; every listener shares the same snapshot.
pub struct Gateway {
    pub listener: Arc<str>,
    pub kind: ListenerKind,
    pub port: u16,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub reloader: Arc<Reloader>,
}

/// What one request has been decided to be.
pub struct RequestCtx {
    started: Instant,
    request_id: String,
    route: Option<Arc<RoutePlan>>,
    /// Path and query sent upstream: the canonical path, after strip_prefix.
    upstream_target: String,
    forwarding: Option<ForwardingHeaders>,
    /// Why the gateway answered itself, for the access log.
    refusal: Option<Cow<'static, str>>,
    client: Option<IpAddr>,
    /// Who the route's authenticator says the client is.
    identity: Option<Identity>,
    /// The configuration this request was decided on, kept to its end.
    snapshot: Option<Arc<Snapshot>>,
    /// The canonical path below the route's prefix, for built-in services.
    relative_path: String,
    /// The canonical path and normalised host, once known, for the access log.
    path: Option<String>,
    host: Option<String>,
    /// Connection attempts retried after a connect failure.
    retries: u32,
    /// Request body bytes seen so far, for max_body_size.
    body_bytes: u64,
}

impl RequestCtx {
    fn route_name(&self) -> Option<&str> {
        self.route.as_deref().map(|r| r.name.as_str())
    }
}

/// A request the gateway answers itself, and why.
struct Refusal {
    kind: ErrorKind,
    reason: &'static str,
}

impl Refusal {
    fn new(kind: ErrorKind, reason: &'static str) -> Self {
        Refusal { kind, reason }
    }
}

enum Decision {
    Forward,
    Redirect(String),
}

impl Gateway {
    /// Every check a request must pass before anything is forwarded, in the
    /// order the spec gives: canonical path, host, certificate, route, double
    /// encoding (per route), deny, allow.
    fn decide(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> Result<Decision, Refusal> {
        let req = session.req_header();
        let raw_target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        // Limits first: nothing else should spend time on an oversized request.
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
        if (header_bytes + raw_target.len()) as u64 > snapshot.config.gateway.max_header_size {
            return Err(Refusal::new(
                ErrorKind::HeadersTooLarge,
                "request headers larger than max_header_size",
            ));
        }
        let target = canonicalize(raw_target)
            .map_err(|e| Refusal::new(ErrorKind::BadRequest, e.reason()))?;
        ctx.path = Some(target.path.clone());

        let host_header = req.headers.get(http::header::HOST).map(|h| h.to_str());
        let authority = req.uri.authority().map(|a| a.as_str());
        let raw_host = match (host_header, authority) {
            (Some(Err(_)), _) => {
                return Err(Refusal::new(
                    ErrorKind::BadRequest,
                    "Host is not visible ASCII",
                ))
            }
            (Some(Ok(h)), Some(a)) if !h.eq_ignore_ascii_case(a) => {
                return Err(Refusal::new(
                    ErrorKind::BadRequest,
                    "Host differs from the request target's authority",
                ))
            }
            (Some(Ok(h)), _) => h,
            (None, Some(a)) => a,
            (None, None) => return Err(Refusal::new(ErrorKind::BadRequest, "no Host")),
        };
        let (host, _) = normalize_host(raw_host)
            .map_err(|_| Refusal::new(ErrorKind::BadRequest, "malformed Host"))?;
        ctx.host = Some(host.to_string());

        if self.kind == ListenerKind::RedirectHttps {
            if !snapshot.served_names.iter().any(|n| n.matches(&host)) {
                return Err(Refusal::new(
                    ErrorKind::NotFound,
                    "redirect requested for a host no certificate serves",
                ));
            }
            let port = match snapshot.https_port {
                Some(443) | None => String::new(),
                Some(p) => format!(":{p}"),
            };
            let query = target
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            return Ok(Decision::Redirect(format!(
                "https://{host}{port}{}{query}",
                target.path
            )));
        }

        if self.kind == ListenerKind::Tls {
            let covered = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|tls| tls.extension.get::<ConnectionCertificate>())
                .is_some_and(|cert| cert.covers(&host));
            if !covered {
                return Err(Refusal::new(
                    ErrorKind::Misdirected,
                    "Host not covered by the connection's certificate",
                ));
            }
        }

        let router = snapshot.router(&self.listener).ok_or(Refusal::new(
            ErrorKind::NotFound,
            "listener serves no routes",
        ))?;
        let matched = router
            .route(&host, &target.path)
            .ok_or(Refusal::new(ErrorKind::NotFound, "no route"))?;
        let route = Arc::clone(matched.value);
        ctx.route = Some(Arc::clone(&route));

        // Only now, with the route known: whether double encoding may pass
        // is the route's to say. The route was chosen on the canonical path,
        // which keeps `%25` as data; the check reads the target as received,
        // as a `..` may have removed the segment that held it.
        if !route.allow_encoded_percent {
            check_encoded_percent(raw_target)
                .map_err(|e| Refusal::new(ErrorKind::BadRequest, e.reason()))?;
        }

        if route.deny {
            return Err(Refusal::new(
                ErrorKind::Forbidden,
                "route denies every request",
            ));
        }

        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| source::unmap(a.ip()))
            .ok_or(Refusal::new(ErrorKind::Forbidden, "no peer address"))?;
        let trusted = snapshot.trusted_proxies();
        // A list header may arrive split over several lines; RFC 9110 says
        // they mean the same as one line joined with commas.
        let joined = |name| -> Option<String> {
            let lines: Vec<&str> = req
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("\u{fffd}"))
                .collect();
            (!lines.is_empty()).then(|| lines.join(", "))
        };
        let incoming_xff = joined("x-forwarded-for");
        let incoming_forwarded = joined("forwarded");
        let client = match source::client(
            peer,
            trusted,
            incoming_xff.as_deref(),
            incoming_forwarded.as_deref(),
        ) {
            Client::Known(ip) => ip,
            // Untrusted peers always resolve to themselves, so this is a trusted
            // proxy sending an unreadable chain: refuse rather than guess.
            Client::Unknown => {
                return Err(Refusal::new(
                    ErrorKind::BadRequest,
                    "unreadable forwarding chain from a trusted proxy",
                ))
            }
        };
        ctx.client = Some(client);
        if let Some(allow) = &route.allow {
            if !allow.contains(client) {
                return Err(Refusal::new(
                    ErrorKind::Forbidden,
                    "client not in the route's allow list",
                ));
            }
        }

        if let (Some(limit), Some(length)) = (route.max_body_size, declared_length(req)) {
            if length > limit {
                return Err(Refusal::new(
                    ErrorKind::PayloadTooLarge,
                    "request body larger than max_body_size",
                ));
            }
        }
        let below_prefix = strip_segments(&target.path, matched.prefix_segments);
        ctx.relative_path = below_prefix.to_string();
        let path = if route.strip_prefix {
            below_prefix
        } else {
            &target.path
        };
        ctx.upstream_target = match &target.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let local_port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map_or(self.port, |a| a.port());
        let hop = Hop {
            peer,
            peer_trusted: trusted.contains(peer),
            client,
            proto: if self.kind == ListenerKind::Tls {
                "https"
            } else {
                "http"
            },
            host: raw_host,
            port: local_port,
        };
        ctx.forwarding = Some(ForwardingHeaders::new(
            &hop,
            incoming_xff.as_deref(),
            incoming_forwarded.as_deref(),
        ));
        Ok(Decision::Forward)
    }

    /// The last check: the route's authenticator, if it has one. Runs after
    /// deny and allow, so a refused source never costs a password check.
    async fn authenticate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(auth) = ctx.route.as_ref().and_then(|r| r.auth.clone()) else {
            return Ok(false);
        };
        let client = ctx.client.ok_or_else(|| {
            Error::explain(ErrorType::InternalError, "authenticating without a client")
        })?;
        let req = session.req_header();
        let mut authorization = req.headers.get_all("authorization").iter();
        let verdict = match (authorization.next(), authorization.next()) {
            (_, Some(_)) => Verdict::Deny(Denial::Unauthorized {
                challenge: String::new(),
                reason: "more than one Authorization header".to_string(),
            }),
            (first, None) => {
                let credentials = Credentials {
                    authorization: first.map(|v| v.as_bytes()),
                    cookies: req
                        .headers
                        .get_all("cookie")
                        .iter()
                        .map(|v| v.as_bytes())
                        .collect(),
                    client,
                };
                auth.check(&credentials).await
            }
        };
        let route_label = ctx.route_name().unwrap_or("-").to_string();
        let denial = match verdict {
            Verdict::Allow(identity) => {
                metrics()
                    .auth_decisions
                    .with_label_values(&[route_label.as_str(), "allow", "ok"])
                    .inc();
                ctx.identity = Some(identity);
                return Ok(false);
            }
            Verdict::Deny(denial) => denial,
        };
        // Reasons are a fixed set of phrases, so the label stays bounded.
        metrics()
            .auth_decisions
            .with_label_values(&[route_label.as_str(), "deny", denial.reason()])
            .inc();
        let (kind, extra) = match &denial {
            Denial::Unauthorized { challenge, .. } if challenge.is_empty() => {
                (ErrorKind::BadRequest, None)
            }
            Denial::Unauthorized { challenge, .. } => (
                ErrorKind::Unauthorized,
                Some(("www-authenticate", challenge.clone())),
            ),
            Denial::TooManyRequests { retry_after, .. } => (
                ErrorKind::TooManyRequests,
                Some((
                    "retry-after",
                    retry_after.as_secs_f64().ceil().max(1.0).to_string(),
                )),
            ),
        };
        log::info!(
            target: "postern::policy",
            "refused {} {}: {} (listener={} route={} auth={} client={} request_id={})",
            kind.status(),
            kind.name(),
            denial.reason(),
            self.listener,
            ctx.route_name().unwrap_or("-"),
            auth.name(),
            client,
            ctx.request_id,
        );
        ctx.refusal = Some(denial.reason().to_string().into());
        let (mut header, body) = error_response(kind, ctx.route_name(), &ctx.request_id)?;
        if let Some((name, value)) = extra {
            header.insert_header(name, value)?;
        }
        self.write(session, header, body).await?;
        Ok(true)
    }

    async fn serve_builtin(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        service: Service,
    ) -> Result<()> {
        let snapshot = match &ctx.snapshot {
            Some(snapshot) => Arc::clone(snapshot),
            None => self.snapshot.load_full(),
        };
        let method = session.req_header().method.as_str().to_string();
        let outcome = services::serve(
            service,
            &method,
            &ctx.relative_path,
            &snapshot,
            &self.reloader,
        )
        .await;
        let reply = match outcome {
            services::Outcome::Reply(reply) => reply,
            services::Outcome::NotFound => {
                ctx.refusal = Some(format!("no {} endpoint here", service.name()).into());
                return self.answer(session, ctx, ErrorKind::NotFound).await;
            }
            services::Outcome::MethodNotAllowed => {
                ctx.refusal = Some(format!("method not allowed on {}", service.name()).into());
                return self.answer(session, ctx, ErrorKind::MethodNotAllowed).await;
            }
        };
        let mut header = ResponseHeader::build(reply.status, Some(4))?;
        header.insert_header("content-type", reply.content_type)?;
        header.insert_header("content-length", reply.body.len().to_string())?;
        header.insert_header("cache-control", "no-store")?;
        header.insert_header("x-request-id", ctx.request_id.as_str())?;
        let body = if method == "HEAD" {
            Bytes::new()
        } else {
            Bytes::from(reply.body)
        };
        self.write(session, header, body).await
    }

    async fn answer(&self, session: &mut Session, ctx: &RequestCtx, kind: ErrorKind) -> Result<()> {
        let (header, body) = error_response(kind, ctx.route_name(), &ctx.request_id)?;
        self.write(session, header, body).await
    }

    async fn write(
        &self,
        session: &mut Session,
        header: ResponseHeader,
        body: Bytes,
    ) -> Result<()> {
        // The request body (if any) is not read, so the connection cannot be
        // trusted to be at a request boundary: close it.
        if request_has_body(session.req_header()) {
            session.set_keepalive(None);
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }
}

/// The Content-Length a request declares, if it is one number.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn request_has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            route: None,
            upstream_target: String::new(),
            forwarding: None,
            refusal: None,
            client: None,
            identity: None,
            snapshot: None,
            relative_path: String::new(),
            path: None,
            host: None,
            retries: 0,
            body_bytes: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.snapshot.load_full();
        // The head is in: from here the body has its own, per-read, limit.
        let timeouts = &snapshot.config.gateway.client_timeouts;
        if let Some(clock) = session.stream().and_then(ClientStream::clock_of) {
            clock.stop();
        }
        session.set_read_timeout(Some(timeouts.body));
        ctx.request_id = session
            .req_header()
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable_request_id(v))
            .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string);

        ctx.snapshot = Some(Arc::clone(&snapshot));
        match self.decide(session, ctx, &snapshot) {
            Ok(Decision::Forward) => {
                if self.authenticate(session, ctx).await? {
                    return Ok(true);
                }
                if let Some(service) = ctx.route.as_ref().and_then(|r| r.service) {
                    self.serve_builtin(session, ctx, service).await?;
                    return Ok(true);
                }
                // A known-dead upstream gets a fast 503, not a connect timeout.
                if let Some(upstream) = ctx.route.as_ref().and_then(|r| r.upstream.as_ref()) {
                    if !health::state(&upstream.name).is_available() {
                        ctx.refusal =
                            Some(format!("upstream {} is unhealthy", upstream.name).into());
                        self.answer(session, ctx, ErrorKind::ServiceUnavailable)
                            .await?;
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Ok(Decision::Redirect(location)) => {
                let mut header = ResponseHeader::build(308, Some(4))?;
                header.insert_header("location", location)?;
                header.insert_header("content-length", "0")?;
                header.insert_header("x-request-id", ctx.request_id.as_str())?;
                ctx.refusal = Some("redirect to https".into());
                self.write(session, header, Bytes::new()).await?;
                Ok(true)
            }
            Err(refusal) => {
                ctx.refusal = Some(refusal.reason.into());
                // Refused before the forwarding chain was read: the peer.
                let client = ctx.client.or_else(|| {
                    session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| source::unmap(a.ip()))
                });
                log::info!(
                    target: "postern::policy",
                    "refused {} {}: {} (listener={} route={} client={} request_id={})",
                    refusal.kind.status(),
                    refusal.kind.name(),
                    refusal.reason,
                    self.listener,
                    ctx.route_name().unwrap_or("-"),
                    client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                    ctx.request_id,
                );
                self.answer(session, ctx, refusal.kind).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // request_filter only lets a request through with a route that forwards.
        let upstream = ctx
            .route
            .as_ref()
            .and_then(|r| r.upstream.as_ref())
            .ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "forwarding without an upstream")
            })?;
        let mut peer = HttpPeer::new(upstream.address, upstream.tls, upstream.sni.clone());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.write_timeout);
        peer.options.idle_timeout = Some(upstream.idle_timeout);
        if let Some(ca) = &upstream.ca {
            peer.options.ca = Some(Arc::clone(ca));
        }
        if let Some(identity) = &upstream.client_identity {
            peer.client_cert_key = Some(Arc::clone(identity));
        }
        Ok(Box::new(peer))
    }

    /// Chunked bodies declare no length: count them as they stream.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(limit), Some(chunk)) = (
            ctx.route.as_ref().and_then(|r| r.max_body_size),
            body.as_ref(),
        ) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body larger than max_body_size",
                );
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(upstream) = ctx.route.as_ref().and_then(|r| r.upstream.as_ref()) {
            let check = ctx
                .snapshot
                .as_ref()
                .and_then(|s| s.config.upstream(&upstream.name))
                .and_then(|u| u.health.as_ref());
            health::state(&upstream.name).record_connect_failure(check);
        }
        // Nothing was sent yet, so an idempotent request may try once more.
        let idempotent = matches!(
            session.req_header().method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        );
        if idempotent && ctx.retries == 0 {
            ctx.retries += 1;
            e.set_retry(true);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(upstream) = ctx.route.as_ref().and_then(|r| r.upstream.as_ref()) {
            let check = ctx
                .snapshot
                .as_ref()
                .and_then(|s| s.config.upstream(&upstream.name))
                .and_then(|u| u.health.as_ref());
            health::state(&upstream.name).record_connected(check);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let uri: http::Uri = ctx.upstream_target.parse().map_err(|_| {
            Error::explain(
                ErrorType::HTTPStatus(400),
                "canonical target is not a valid URI",
            )
        })?;
        upstream_request.set_uri(uri);
        // Identity headers come from a verified token or not at all.
        if let Some(snapshot) = &ctx.snapshot {
            for name in &snapshot.identity_headers {
                upstream_request.remove_header(name.as_str());
            }
        }
        if let Some(identity) = &ctx.identity {
            for (name, value) in &identity.headers {
                upstream_request.insert_header(name.clone(), value.as_str())?;
            }
        }
        if let Some(forwarding) = &ctx.forwarding {
            for (name, value) in forwarding.pairs() {
                upstream_request.insert_header(name, value)?;
            }
        }
        upstream_request.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let kind = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(400), _) => Some(ErrorKind::BadRequest),
            (ErrorType::HTTPStatus(413), _) => Some(ErrorKind::PayloadTooLarge),
            (ErrorType::HTTPStatus(code), _) if *code >= 500 => Some(ErrorKind::BadGateway),
            (ErrorType::HTTPStatus(_), _) => Some(ErrorKind::BadRequest),
            (ErrorType::ConnectTimedout, _) => Some(ErrorKind::GatewayTimeout),
            (
                ErrorType::ReadTimedout | ErrorType::WriteTimedout,
                pingora::ErrorSource::Upstream,
            ) => Some(ErrorKind::GatewayTimeout),
            (_, pingora::ErrorSource::Upstream) => Some(ErrorKind::BadGateway),
            // client_body_timeout: the client stopped sending its body.
            (ErrorType::ReadTimedout, pingora::ErrorSource::Downstream) => {
                Some(ErrorKind::RequestTimeout)
            }
            (
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                pingora::ErrorSource::Downstream,
            ) => None,
            (_, pingora::ErrorSource::Downstream) => Some(ErrorKind::BadRequest),
            (_, _) => Some(ErrorKind::BadGateway),
        };
        let Some(kind) = kind else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.refusal = Some(kind.name().into());
        if let Some(upstream) = ctx.route.as_ref().and_then(|r| r.upstream.as_ref()) {
            if e.esource() == &pingora::ErrorSource::Upstream
                || matches!(
                    e.etype(),
                    ErrorType::ConnectTimedout | ErrorType::ConnectRefused
                )
            {
                let error_kind = match e.etype() {
                    ErrorType::ConnectTimedout
                    | ErrorType::ReadTimedout
                    | ErrorType::WriteTimedout => "timeout",
                    ErrorType::ConnectRefused
                    | ErrorType::ConnectError
                    | ErrorType::ConnectNoRoute
                    | ErrorType::TLSHandshakeFailure => "connect",
                    _ => "protocol",
                };
                metrics()
                    .upstream_errors
                    .with_label_values(&[upstream.name.as_str(), error_kind])
                    .inc();
            }
        }
        // A response may already have started; then there is nothing to add.
        if session.response_written().is_none() {
            session.set_keepalive(None);
            if let Err(write_error) = self.answer(session, ctx, kind).await {
                log::debug!(
                    "could not send the {} response: {write_error}",
                    kind.status()
                );
            }
        }
        log::warn!(
            target: "postern::upstream",
            "{} for route {} upstream {}: {e} (request_id={})",
            kind.status(),
            ctx.route_name().unwrap_or("-"),
            ctx.route.as_ref().and_then(|r| r.upstream.as_ref()).map_or("-", |u| u.name.as_str()),
            ctx.request_id,
        );
        FailToProxy {
            error_code: kind.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        // The connection may now wait for another request: time that wait.
        if let Some(clock) = session.stream().and_then(ClientStream::clock_of) {
            let snapshot = self.snapshot.load();
            clock.await_next_request(&snapshot.config.gateway.client_timeouts);
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if status != 0 {
            let route = ctx.route_name().unwrap_or("-");
            let m = metrics();
            m.requests
                .with_label_values(&[route, status.to_string().as_str()])
                .inc();
            m.request_duration
                .with_label_values(&[route])
                .observe(ctx.started.elapsed().as_secs_f64());
        }
        if !access_log::enabled() {
            return;
        }
        let req = session.req_header();
        let entry = access_log::Entry {
            request_id: &ctx.request_id,
            // Before the client is resolved (refused early), the TCP peer.
            client: ctx
                .client
                .or_else(|| {
                    session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| source::unmap(a.ip()))
                })
                .map(|c| c.to_string()),
            listener: &self.listener,
            method: req.method.as_str(),
            host: ctx.host.as_deref(),
            path: ctx.path.as_deref(),
            protocol: if session.is_http2() {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            route: ctx.route_name(),
            upstream: ctx
                .route
                .as_ref()
                .and_then(|r| r.upstream.as_ref())
                .map(|u| u.name.as_str()),
            status,
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
            user: ctx
                .identity
                .as_ref()
                .map(|i| i.subject.as_str())
                .filter(|s| !s.is_empty()),
            refused: ctx.refusal.as_deref(),
        };
        access_log::write(entry.to_json());
    }
}
