//! A request's journey through the gateway, in Pingora's hooks, in the order
//! they run. Each hook is short: the decisions are plain functions
//! (`decision.rs`, `auth.rs`, `forwarding.rs`), the limit and authentication
//! steps are in `proxy/admission.rs`, and the answers the gateway
//! writes itself are in `reply.rs`.
//!
//! request_filter: decide (refuse / redirect / serve / forward), then
//!   admit (rate limit, authenticate, rate limit by claim), then the
//!   upstream's health, then read the body up to request_buffer; anything
//!   but a forward is answered here and never reaches an upstream.
//! request_body_filter: the body read ahead goes first; max_body_size for
//!   bodies that declare no length.
//! upstream_peer: a server of the upstream's pool (pool.rs), its prebuilt peer.
//! fail_to_connect / error_while_proxy / connected_to_upstream: passive
//!   health, failover to the pool's other servers (failover.rs).
//! upstream_request_filter: canonical target and forwarding headers; a body
//!   read whole goes with a Content-Length.
//! response_filter: X-Request-Id, the route's response header edits.
//! fail_to_proxy: the JSON 502 / 504 (or 400 / 413).
//! logging: metrics and the access log, for every request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use postern_auth::Identity;
use postern_config::ListenerKind;
use postern_policy::forwarded::acceptable_request_id;
use postern_policy::source;

use crate::access_log;
use crate::client_cert::ClientCertificate;
use crate::client_timeouts::ClientStream;
use crate::decision::{decide, Connection, Decision, Forward, Seen};
use crate::failover::Attempts;
use crate::forwarding::{self, X_REQUEST_ID};
use crate::metrics::{metrics, RouteMetrics, UpstreamError};
use crate::reload::Reloader;
use crate::reply;
use crate::request_buffer::{self, PreRead};
use crate::response::ErrorKind;
use crate::response_headers::ResponseEdits;
use crate::snapshot::Snapshot;
use crate::tls::ConnectionCertificate;

mod admission;

/// The proxy logic of one listener; every listener shares the same snapshot.
pub struct Gateway {
    pub listener: Arc<str>,
    pub kind: ListenerKind,
    pub port: u16,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub reloader: Arc<Reloader>,
}

/// One request, as far as it got.
pub struct RequestCtx {
    started: Instant,
    request_id: HeaderValue,
    /// The configuration this request was decided on, kept to its end.
    snapshot: Option<Arc<Snapshot>>,
    seen: Seen,
    /// Set once the request passed every check and goes upstream.
    forward: Option<Forward>,
    /// Who the route's authenticator says the client is.
    identity: Option<Identity>,
    /// Why the gateway answered itself, for the access log.
    refusal: Option<Cow<'static, str>>,
    /// Which servers this request tried, and the one it is on.
    attempts: Attempts,
    /// Request body bytes sent on this upstream attempt, for max_body_size.
    body_bytes: u64,
    /// The body read before the upstream was contacted (request_buffer).
    pre_read: PreRead,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            snapshot: None,
            seen: Seen::default(),
            forward: None,
            identity: None,
            refusal: None,
            attempts: Attempts::default(),
            body_bytes: 0,
            pre_read: PreRead::default(),
        }
    }

    /// None: Pingora's default adds a response compression module at level
    /// 0 (disabled), which only costs allocations on every request.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.snapshot.load_full();
        // The head is in: from here the body has its own, per-read, limit.
        if let Some(clock) = session.stream().and_then(ClientStream::clock_of) {
            clock.stop();
        }
        session.set_read_timeout(Some(snapshot.config.gateway.client_timeouts.body));
        ctx.request_id = request_id(session.req_header());
        let (decision, seen) = decide(session.req_header(), &self.connection(session), &snapshot);
        ctx.seen = seen;
        ctx.snapshot = Some(Arc::clone(&snapshot));
        match decision {
            Decision::Refuse(refusal) => self.refuse(session, ctx, refusal).await?,
            Decision::Redirect(location) => {
                ctx.refusal = Some("redirect to https".into());
                reply::redirect(session, &location, &ctx.request_id, self.edits(ctx)).await?;
            }
            Decision::Serve {
                service,
                relative_path,
            } => {
                if self.admit(session, ctx).await? {
                    let route = ctx.seen.route.as_deref().map(|r| r.name.as_str());
                    let outcome = reply::serve_builtin(
                        session,
                        service,
                        &relative_path,
                        &snapshot,
                        &self.reloader,
                        route,
                        &ctx.request_id,
                        self.edits(ctx),
                    )
                    .await?;
                    ctx.refusal = outcome.map(Cow::Owned);
                }
            }
            Decision::Forward(forward) => {
                if !self.admit(session, ctx).await? {
                    return Ok(true);
                }
                // A pool whose every server is known dead gets a fast 503,
                // not a connect timeout.
                if !forward.upstream.pool.current().any_available() {
                    ctx.refusal =
                        Some(format!("upstream {} is unhealthy", forward.upstream.name).into());
                    self.answer(session, ctx, ErrorKind::ServiceUnavailable)
                        .await?;
                    return Ok(true);
                }
                ctx.forward = Some(forward);
                self.read_ahead(session, ctx).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Chunked bodies declare no length: count them as they stream.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.pre_read.replay_into(body);
        let limit = ctx.seen.route.as_ref().and_then(|r| r.max_body_size);
        if let (Some(limit), Some(chunk)) = (limit, body.as_ref()) {
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

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let forward = ctx.forward.as_ref().ok_or_else(not_forwarding)?;
        let peer =
            ctx.attempts
                .next_peer(&forward.upstream, session.req_header(), ctx.seen.client)?;
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(upstream) = ctx.forward.as_ref().map(|f| &f.upstream) {
            let retry = ctx
                .attempts
                .connect_failed(upstream, &session.req_header().method);
            if retry {
                e.set_retry(true);
            }
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        let upstreams_fault = e.esource() == &ErrorSource::Upstream;
        match ctx.forward.as_ref().map(|f| &f.upstream) {
            Some(upstream) if replayable && upstreams_fault => {
                match ctx.attempts.exchange_failed(upstream) {
                    Some(true) => e.set_retry(true),
                    Some(false) => e.set_retry(false),
                    // No other server: a stale pooled connection may still
                    // be retried on the same one, as Pingora does.
                    None => e.retry.decide_reuse(client_reused),
                }
            }
            _ if replayable => e.retry.decide_reuse(client_reused),
            _ => e.set_retry(false),
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
        ctx.attempts.connected();
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Every attempt sends the body from its start.
        ctx.body_bytes = 0;
        ctx.pre_read.new_attempt();
        if let Some(length) = ctx.pre_read.whole_length() {
            upstream_request.remove_header(&http::header::TRANSFER_ENCODING);
            upstream_request.insert_header(http::header::CONTENT_LENGTH, length.to_string())?;
        }
        if ctx.pre_read.started() {
            // Answered by the gateway: the upstream gets the body at once.
            upstream_request.remove_header(&http::header::EXPECT);
        }
        let forward = ctx.forward.as_ref().ok_or_else(not_forwarding)?;
        let client = ctx.seen.client.unwrap_or(forward.peer);
        let identity_headers = ctx
            .snapshot
            .as_ref()
            .map_or(&[][..], |s| &s.identity_headers);
        forwarding::rewrite(
            upstream_request,
            session.req_header(),
            forward,
            client,
            ctx.identity.as_ref(),
            identity_headers,
            &ctx.request_id,
        )?;
        forwarding::client_certificate(upstream_request, forward, client_certificate(session))
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.attempts.response_started();
        upstream_response.insert_header(X_REQUEST_ID.as_str(), ctx.request_id.clone())?;
        self.edits(ctx).apply(upstream_response)
    }

    /// The response's last byte is on its way to the client: the server is
    /// done with this request, for `least_requests`.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            ctx.attempts.finished();
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let Some(kind) = failure_kind(e) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.refusal = Some(kind.name().into());
        let upstream = ctx.seen.route.as_ref().and_then(|r| r.upstream());
        if let (Some(upstream), Some(error)) = (upstream, upstream_error(e)) {
            upstream.metrics.error(error);
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
            route_name(ctx).unwrap_or("-"),
            upstream.map_or("-", |u| u.name.as_str()),
            request_id_str(ctx),
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
            let route_metrics: &RouteMetrics = match &ctx.seen.route {
                Some(route) => &route.metrics,
                None => &metrics().unrouted,
            };
            route_metrics.answered(status, ctx.started.elapsed().as_secs_f64());
        }
        if access_log::enabled() {
            access_log::write(access_entry(session, ctx, &self.listener, status).to_json());
        }
    }
}

impl Gateway {
    /// What decide needs to know about the connection.
    fn connection<'s>(&'s self, session: &'s Session) -> Connection<'s> {
        let certificate = connection_certificate(session);
        Connection {
            listener: &self.listener,
            kind: self.kind,
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            local_port: session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map_or(self.port, |a| a.port()),
            certificate: certificate.map(|c| &c.names[..]),
            client_certificate: certificate.and_then(|c| c.client.as_ref()),
        }
    }

    /// Reads the body up to the route's request_buffer before the upstream
    /// is contacted (see `request_buffer`).
    async fn read_ahead(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let (Some(route), Some(snapshot)) = (ctx.seen.route.as_ref(), ctx.snapshot.as_ref()) else {
            return Err(not_forwarding());
        };
        let headers = &session.req_header().headers;
        // With Transfer-Encoding a Content-Length does not count.
        let declared = if headers.contains_key(http::header::TRANSFER_ENCODING) {
            None
        } else {
            crate::decision::declared_length(headers)
        };
        ctx.pre_read = request_buffer::read_ahead(
            session,
            declared,
            route.request_buffer,
            route.max_body_size,
            snapshot.config.gateway.client_timeouts.body,
        )
        .await?;
        Ok(())
    }

    async fn answer(&self, session: &mut Session, ctx: &RequestCtx, kind: ErrorKind) -> Result<()> {
        let edits = self.edits(ctx);
        reply::error(session, kind, route_name(ctx), &ctx.request_id, None, edits).await
    }

    /// The header changes for this request's response: HSTS if this is a TLS
    /// listener, and the route's own once one was chosen.
    fn edits<'c>(&self, ctx: &'c RequestCtx) -> ResponseEdits<'c> {
        ResponseEdits {
            hsts: ctx
                .snapshot
                .as_ref()
                .filter(|_| self.kind == ListenerKind::Tls)
                .and_then(|s| s.config.tls.hsts.as_ref()),
            route: ctx.seen.route.as_deref().map(|r| &r.response_headers),
        }
    }
}

/// What the TLS handshake recorded about the connection (TLS listeners).
fn connection_certificate(session: &Session) -> Option<&ConnectionCertificate> {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|tls| tls.extension.get::<ConnectionCertificate>())
}

/// The connection's verified client certificate, parsed at the handshake.
fn client_certificate(session: &Session) -> Option<&ClientCertificate> {
    connection_certificate(session).and_then(|c| c.client.as_ref())
}

fn route_name(ctx: &RequestCtx) -> Option<&str> {
    ctx.seen.route.as_deref().map(|r| r.name.as_str())
}

fn request_id_str(ctx: &RequestCtx) -> &str {
    ctx.request_id.to_str().unwrap_or("-")
}

fn not_forwarding() -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        "request state missing for this step",
    )
}

/// The client's X-Request-Id if short and plain, else a new one.
///
/// Sensitive, which only HPACK reads: a never-indexed literal on HTTP/2.
/// Indexed, a value unique to each response only churned the HPACK table
/// (52 value comparisons per response; docs/performance.md, HTTP/2).
fn request_id(req: &RequestHeader) -> HeaderValue {
    let mut id = match req
        .headers
        .get(&X_REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(acceptable_request_id))
    {
        Some(sent) => sent.clone(),
        None => {
            let mut id = uuid::Uuid::encode_buffer();
            uuid::Uuid::new_v4().simple().encode_lower(&mut id);
            // One allocation, shared by every copy (response, upstream request, log).
            let id = Bytes::from_owner(id).slice(..uuid::fmt::Simple::LENGTH);
            HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
        }
    };
    id.set_sensitive(true);
    id
}

/// The answer for a failed proxy attempt; `None` when the client went away.
fn failure_kind(e: &Error) -> Option<ErrorKind> {
    let kind = match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(400), _) => ErrorKind::BadRequest,
        (ErrorType::HTTPStatus(413), _) => ErrorKind::PayloadTooLarge,
        (ErrorType::HTTPStatus(code), _) if *code >= 500 => ErrorKind::BadGateway,
        (ErrorType::HTTPStatus(_), _) => ErrorKind::BadRequest,
        (ErrorType::ConnectTimedout, _) => ErrorKind::GatewayTimeout,
        (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => {
            ErrorKind::GatewayTimeout
        }
        (_, ErrorSource::Upstream) => ErrorKind::BadGateway,
        // client_body_timeout: the client stopped sending its body.
        (ErrorType::ReadTimedout, ErrorSource::Downstream) => ErrorKind::RequestTimeout,
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => return None,
        (_, ErrorSource::Downstream) => ErrorKind::BadRequest,
        (_, _) => ErrorKind::BadGateway,
    };
    Some(kind)
}

/// How a failure counts in `postern_upstream_errors_total`, if it was the upstream's.
fn upstream_error(e: &Error) -> Option<UpstreamError> {
    let upstreams_fault = e.esource() == &ErrorSource::Upstream
        || matches!(
            e.etype(),
            ErrorType::ConnectTimedout | ErrorType::ConnectRefused
        );
    upstreams_fault.then(|| match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            UpstreamError::Timeout
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectError
        | ErrorType::ConnectNoRoute
        | ErrorType::TLSHandshakeFailure => UpstreamError::Connect,
        _ => UpstreamError::Protocol,
    })
}

fn access_entry<'a>(
    session: &'a Session,
    ctx: &'a RequestCtx,
    listener: &'a str,
    status: u16,
) -> access_log::Entry<'a> {
    let req = session.req_header();
    access_log::Entry {
        request_id: request_id_str(ctx),
        // Before the client is resolved (refused early), the TCP peer.
        client: ctx
            .seen
            .client
            .or_else(|| {
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| source::unmap(a.ip()))
            })
            .map(|c| c.to_string()),
        listener,
        method: req.method.as_str(),
        host: ctx.seen.host.as_deref(),
        path: ctx.seen.path.as_deref(),
        protocol: if session.is_http2() {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        },
        route: route_name(ctx),
        upstream: ctx
            .seen
            .route
            .as_ref()
            .and_then(|r| r.upstream())
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
        client_cert: client_certificate(session).map(|c| c.presented.subject.as_str()),
    }
}
