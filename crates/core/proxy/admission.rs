//! Between the route decision and forwarding: the route's rate limit and
//! authenticators, in the order that keeps a flood cheap (a limit keyed by
//! client, header or route before any password is hashed, one keyed by a
//! claim after the token was verified), and the answer to a refusal.

use pingora::prelude::*;
use pingora::proxy::Session;
use postern_policy::source;

use super::{not_forwarding, request_id_str, route_name, Gateway, RequestCtx};
use crate::auth;
use crate::decision::Refusal;
use crate::rate_limit::Stage;
use crate::reply;
use crate::response::ErrorKind;

impl Gateway {
    /// The route's limit and authenticator, in the order that keeps a
    /// flood cheap (rate_limit.rs); `false` when one refused (and answered).
    pub(super) async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        Ok(self.limit(session, ctx, Stage::BeforeAuth).await?
            && self.authenticate(session, ctx).await?
            && self.limit(session, ctx, Stage::AfterAuth).await?)
    }

    /// The route's limit if it runs at `stage`; `false` when it refused
    /// (with 429, its headers and the JSON body).
    async fn limit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        stage: Stage,
    ) -> Result<bool> {
        let Some(limit) = ctx.seen.route.as_ref().and_then(|r| r.limit.clone()) else {
            return Ok(true);
        };
        let client = ctx.seen.client.ok_or_else(not_forwarding)?;
        if !limit.runs_at(stage) {
            return Ok(true);
        }
        let headers = &session.req_header().headers;
        let decision = limit.check(headers, client, ctx.identity.as_ref()).await;
        if decision.is_allowed() {
            return Ok(true);
        }
        log::info!(
            target: "postern::policy",
            "refused 429 too_many_requests: over limit {} (listener={} route={} client={client} request_id={})",
            limit.name(),
            self.listener,
            route_name(ctx).unwrap_or("-"),
            request_id_str(ctx),
        );
        ctx.refusal = Some(format!("over limit {}", limit.name()).into());
        let edits = self.edits(ctx);
        reply::error_with_headers(
            session,
            ErrorKind::TooManyRequests,
            route_name(ctx),
            &ctx.request_id,
            limit.headers(&decision),
            edits,
        )
        .await?;
        Ok(false)
    }

    /// Runs the route's authenticator; `false` when it refused (and the
    /// refusal was answered).
    async fn authenticate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(route) = ctx.seen.route.clone() else {
            return Err(not_forwarding());
        };
        let Some(authenticator) = route.auth.as_deref() else {
            return Ok(true);
        };
        let client = ctx.seen.client.ok_or_else(not_forwarding)?;
        let connection = self.connection(session);
        let presented = connection.client_certificate.map(|c| &c.presented);
        let headers = &session.req_header().headers;
        let (denial, by) = match auth::authenticate(authenticator, headers, client, presented).await
        {
            Ok(identity) => {
                route.metrics.auth_allowed();
                ctx.identity = Some(identity);
                return Ok(true);
            }
            Err(refusal) => refusal,
        };
        // Reasons are a fixed set of phrases, so the label stays bounded.
        route.metrics.auth_denied(denial.reason());
        let (kind, extra) = auth::answer(&denial);
        log::info!(
            target: "postern::policy",
            "refused {} {}: {} (listener={} route={} auth={} client={} request_id={})",
            kind.status(),
            kind.name(),
            denial.reason(),
            self.listener,
            route.name,
            by,
            client,
            request_id_str(ctx),
        );
        ctx.refusal = Some(denial.reason().into());
        let edits = self.edits(ctx);
        reply::explained_error(
            session,
            kind,
            Some(&route.name),
            &ctx.request_id,
            extra,
            auth::explanation(&denial),
            edits,
        )
        .await?;
        Ok(false)
    }

    pub(super) async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Refusal,
    ) -> Result<()> {
        ctx.refusal = Some(refusal.reason.into());
        if session.req_header().method == http::Method::CONNECT {
            // The client may already be sending what it meant to tunnel.
            session.set_keepalive(None);
        }
        // Refused before the forwarding chain was read: the peer.
        let client = ctx.seen.client.or_else(|| {
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
            route_name(ctx).unwrap_or("-"),
            client.map_or_else(|| "-".to_string(), |c| c.to_string()),
            request_id_str(ctx),
        );
        self.answer(session, ctx, refusal.kind).await
    }
}
