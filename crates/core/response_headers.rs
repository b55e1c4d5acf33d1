//! The headers the gateway puts on responses: HSTS on a TLS listener, a
//! route's `response_headers` / `remove_response_headers`, and the two
//! headers every answer the gateway writes itself carries. The same code
//! runs for upstream responses (`response_filter`) and the gateway's own
//! (`reply.rs`), so a route's settings hold for both.

use http::header::{CACHE_CONTROL, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::Result;

/// A route's header changes, compiled at load from its config.
#[derive(Debug, Default)]
pub struct RouteHeaders {
    /// `response_headers`: set, replacing what was there.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// `remove_response_headers`.
    pub remove: Vec<HeaderName>,
}

/// What to change on one response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseEdits<'a> {
    /// Strict-Transport-Security, on a TLS listener with `hsts` on.
    pub hsts: Option<&'a HeaderValue>,
    /// The route's changes, once a route was chosen.
    pub route: Option<&'a RouteHeaders>,
}

impl ResponseEdits<'_> {
    /// For an upstream's response. The route's settings come last, so a route
    /// may replace (or remove) the listener's HSTS with its own.
    pub fn apply(&self, header: &mut ResponseHeader) -> Result<()> {
        if let Some(hsts) = self.hsts {
            header.insert_header(STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
        if let Some(route) = self.route {
            for name in &route.remove {
                header.remove_header(name);
            }
            for (name, value) in &route.set {
                header.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }

    /// For an answer the gateway wrote itself: never sniffed as another
    /// type, never cached (errors and redirects depend on the request).
    pub fn apply_to_own(&self, header: &mut ResponseHeader) -> Result<()> {
        header.insert_header(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))?;
        header.insert_header(CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
        self.apply(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_response() -> ResponseHeader {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("server", "echo").unwrap();
        header
            .insert_header("x-frame-options", "SAMEORIGIN")
            .unwrap();
        header
    }

    #[test]
    fn route_removes_then_sets_and_hsts_is_added() {
        let route = RouteHeaders {
            set: vec![(
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            )],
            remove: vec![HeaderName::from_static("server")],
        };
        let hsts = HeaderValue::from_static("max-age=60");
        let mut header = upstream_response();
        let edits = ResponseEdits {
            hsts: Some(&hsts),
            route: Some(&route),
        };
        edits.apply(&mut header).unwrap();
        assert_eq!(header.headers["strict-transport-security"], "max-age=60");
        assert_eq!(header.headers["x-frame-options"], "DENY");
        assert_eq!(header.headers.get_all("x-frame-options").iter().count(), 1);
        assert!(header.headers.get("server").is_none());
        assert!(header.headers.get("x-content-type-options").is_none());
    }

    #[test]
    fn gateway_answers_carry_nosniff_and_no_store() {
        let mut header = ResponseHeader::build(404, None).unwrap();
        ResponseEdits::default().apply_to_own(&mut header).unwrap();
        assert_eq!(header.headers["x-content-type-options"], "nosniff");
        assert_eq!(header.headers["cache-control"], "no-store");
        assert!(header.headers.get("strict-transport-security").is_none());
    }
}
