//! The answers the gateway writes itself: JSON errors, the https redirect and
//! the built-in services.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use postern_config::Service;

use crate::forwarding::X_REQUEST_ID;
use crate::reload::Reloader;
use crate::response::{explained_response, ErrorKind};
use crate::response_headers::ResponseEdits;
use crate::services::{self, Outcome};
use crate::snapshot::Snapshot;

/// The JSON error body for `kind`, with one extra header if given.
pub async fn error(
    session: &mut Session,
    kind: ErrorKind,
    route: Option<&str>,
    request_id: &HeaderValue,
    extra: Option<(HeaderName, String)>,
    edits: ResponseEdits<'_>,
) -> Result<()> {
    explained_error(session, kind, route, request_id, extra, None, edits).await
}

/// An error whose body also says why (`reason`), for refusals the client
/// can fix itself, such as a missing client certificate.
pub async fn explained_error(
    session: &mut Session,
    kind: ErrorKind,
    route: Option<&str>,
    request_id: &HeaderValue,
    extra: Option<(HeaderName, String)>,
    reason: Option<&str>,
    edits: ResponseEdits<'_>,
) -> Result<()> {
    let id = request_id.to_str().unwrap_or("-");
    let (header, body) = explained_response(kind, route, id, reason)?;
    write_with(session, header, body, extra, edits).await
}

/// The JSON error body for `kind` with several extra headers (a 429's rate-limit headers).
pub async fn error_with_headers(
    session: &mut Session,
    kind: ErrorKind,
    route: Option<&str>,
    request_id: &HeaderValue,
    extra: Vec<(HeaderName, String)>,
    edits: ResponseEdits<'_>,
) -> Result<()> {
    let id = request_id.to_str().unwrap_or("-");
    let (header, body) = explained_response(kind, route, id, None)?;
    write_with(session, header, body, extra, edits).await
}

/// `header` plus `extra`, then the body.
async fn write_with(
    session: &mut Session,
    mut header: ResponseHeader,
    body: Bytes,
    extra: impl IntoIterator<Item = (HeaderName, String)>,
    edits: ResponseEdits<'_>,
) -> Result<()> {
    for (name, value) in extra {
        header.insert_header(name, value)?;
    }
    write(session, header, body, edits).await
}

/// 308 to `location`.
pub async fn redirect(
    session: &mut Session,
    location: &str,
    request_id: &HeaderValue,
    edits: ResponseEdits<'_>,
) -> Result<()> {
    let mut header = ResponseHeader::build(308, Some(4))?;
    header.insert_header("location", location)?;
    header.insert_header("content-length", "0")?;
    header.insert_header(X_REQUEST_ID.as_str(), request_id.clone())?;
    write(session, header, Bytes::new(), edits).await
}

/// Answers with a built-in service; returns why, when the answer is the
/// usual 404 or 405 error instead.
// Each argument is one thing the answer needs from a different place.
#[allow(clippy::too_many_arguments)]
pub async fn serve_builtin(
    session: &mut Session,
    service: Service,
    relative_path: &str,
    snapshot: &Arc<Snapshot>,
    reloader: &Arc<Reloader>,
    route: Option<&str>,
    request_id: &HeaderValue,
    edits: ResponseEdits<'_>,
) -> Result<Option<String>> {
    let method = session.req_header().method.clone();
    let outcome =
        services::serve(service, method.as_str(), relative_path, snapshot, reloader).await;
    let reply = match outcome {
        Outcome::Reply(reply) => reply,
        Outcome::NotFound => {
            error(session, ErrorKind::NotFound, route, request_id, None, edits).await?;
            return Ok(Some(format!("no {} endpoint here", service.name())));
        }
        Outcome::MethodNotAllowed => {
            error(
                session,
                ErrorKind::MethodNotAllowed,
                route,
                request_id,
                None,
                edits,
            )
            .await?;
            return Ok(Some(format!("method not allowed on {}", service.name())));
        }
    };
    let mut header = ResponseHeader::build(reply.status, Some(4))?;
    header.insert_header("content-type", reply.content_type)?;
    header.insert_header("content-length", reply.body.len().to_string())?;
    header.insert_header(X_REQUEST_ID.as_str(), request_id.clone())?;
    let body = if method == http::Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(reply.body)
    };
    write(session, header, body, edits).await?;
    Ok(None)
}

async fn write(
    session: &mut Session,
    mut header: ResponseHeader,
    body: Bytes,
    edits: ResponseEdits<'_>,
) -> Result<()> {
    edits.apply_to_own(&mut header)?;
    // The request body (if any) is not read, so the connection cannot be
    // trusted to be at a request boundary: close it.
    if request_has_body(session) {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

fn request_has_body(session: &Session) -> bool {
    let headers = &session.req_header().headers;
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}
