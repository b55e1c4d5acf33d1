//! The small JSON bodies the gateway answers with when it answers itself:
//! `{"status":403,"error":"forbidden","route":"mgmt","request_id":"..."}`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    Misdirected,
    TooManyRequests,
    HeadersTooLarge,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::Misdirected => 421,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::BadGateway => 502,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// The kind answering with `status`; a status of no kind here is
    /// answered as the nearest general one (400 or 502).
    pub fn for_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            405 => ErrorKind::MethodNotAllowed,
            408 => ErrorKind::RequestTimeout,
            413 => ErrorKind::PayloadTooLarge,
            414 => ErrorKind::UriTooLong,
            421 => ErrorKind::Misdirected,
            429 => ErrorKind::TooManyRequests,
            431 => ErrorKind::HeadersTooLarge,
            503 => ErrorKind::ServiceUnavailable,
            504 => ErrorKind::GatewayTimeout,
            500..=599 => ErrorKind::BadGateway,
            _ => ErrorKind::BadRequest,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::Misdirected => "misdirected_request",
            ErrorKind::TooManyRequests => "too_many_requests",
            ErrorKind::HeadersTooLarge => "request_header_fields_too_large",
            ErrorKind::BadGateway => "bad_gateway",
            ErrorKind::ServiceUnavailable => "service_unavailable",
            ErrorKind::GatewayTimeout => "gateway_timeout",
        }
    }
}

/// The body with a `reason` a client can act on (a fixed phrase, such as
/// "client certificate required"), when the status alone does not say it.
pub fn explained_body(
    kind: ErrorKind,
    route: Option<&str>,
    request_id: &str,
    reason: Option<&str>,
) -> String {
    let mut body = serde_json::json!({
        "status": kind.status(),
        "error": kind.name(),
        "route": route,
        "request_id": request_id,
    });
    if let Some(reason) = reason {
        body["reason"] = serde_json::Value::from(reason);
    }
    body.to_string()
}

pub fn explained_response(
    kind: ErrorKind,
    route: Option<&str>,
    request_id: &str,
    reason: Option<&str>,
) -> Result<(ResponseHeader, Bytes)> {
    let body = explained_body(kind, route, request_id, reason);
    let mut header = ResponseHeader::build(kind.status(), Some(5))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("x-request-id", request_id)?;
    Ok((header, Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_matches_the_spec() {
        let body: serde_json::Value = serde_json::from_str(&explained_body(
            ErrorKind::Forbidden,
            Some("mgmt"),
            "abc",
            None,
        ))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status":403,"error":"forbidden","route":"mgmt","request_id":"abc"})
        );
        let body: serde_json::Value =
            serde_json::from_str(&explained_body(ErrorKind::NotFound, None, "x", None)).unwrap();
        assert_eq!(body["route"], serde_json::Value::Null);
        let body: serde_json::Value = serde_json::from_str(&explained_body(
            ErrorKind::Unauthorized,
            Some("admin"),
            "x",
            Some("client certificate required"),
        ))
        .unwrap();
        assert_eq!(body["reason"], "client certificate required");
        assert_eq!(body["status"], 401);
    }

    #[test]
    fn every_kind_is_found_by_its_status() {
        use ErrorKind::*;
        for kind in [
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            PayloadTooLarge,
            UriTooLong,
            Misdirected,
            TooManyRequests,
            HeadersTooLarge,
            BadGateway,
            ServiceUnavailable,
            GatewayTimeout,
        ] {
            assert_eq!(ErrorKind::for_status(kind.status()), kind);
        }
        assert_eq!(ErrorKind::for_status(500), BadGateway);
        assert_eq!(ErrorKind::for_status(418), BadRequest);
    }
}
