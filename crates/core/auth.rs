//! The last check before a request is served or forwarded: the route's
//! authenticators and `require`, if it has them. It runs after deny and
//! allow (decision.rs), so a refused source never costs a password check.

use std::net::IpAddr;

use http::header::{AUTHORIZATION, COOKIE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName};
use postern_auth::chain::AuthChain;
use postern_auth::client_cert::PresentedCertificate;
use postern_auth::{Credentials, Denial, Identity, Verdict};

use crate::response::ErrorKind;

/// The route's verdict on the request's credentials; a refusal comes with
/// the name of the authenticator that gave it.
pub async fn authenticate<'a>(
    auth: &'a AuthChain,
    headers: &HeaderMap,
    client: IpAddr,
    client_certificate: Option<&PresentedCertificate>,
) -> Result<Identity, (Denial, &'a str)> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let (first, second) = (authorization.next(), authorization.next());
    if second.is_some() {
        let denial = Denial::BadRequest {
            reason: "more than one Authorization header",
        };
        return Err((denial, auth.name()));
    }
    let credentials = Credentials {
        authorization: first.map(|v| v.as_bytes()),
        cookies: headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect(),
        client,
        client_certificate,
    };
    let decision = auth.check(&credentials).await;
    match decision.verdict {
        Verdict::Allow(identity) => Ok(identity),
        Verdict::Deny(denial) => Err((denial, decision.by)),
    }
}

/// The reason put in the response body, for denials the status alone does
/// not explain: a missing or unaccepted client certificate.
pub fn explanation(denial: &Denial) -> Option<&'static str> {
    match denial {
        Denial::CertificateRequired { reason } => Some(reason),
        Denial::Forbidden { reason, .. } => Some(reason),
        _ => None,
    }
}

/// The error a denial is answered with, and the header that goes with it.
pub fn answer(denial: &Denial) -> (ErrorKind, Option<(HeaderName, String)>) {
    match denial {
        Denial::BadRequest { .. } => (ErrorKind::BadRequest, None),
        Denial::Unauthorized { challenge, .. } => (
            ErrorKind::Unauthorized,
            Some((WWW_AUTHENTICATE, challenge.clone())),
        ),
        // No HTTP authentication scheme asks for a TLS client certificate.
        Denial::CertificateRequired { .. } => (ErrorKind::Unauthorized, None),
        Denial::Forbidden { challenge, .. } => (
            ErrorKind::Forbidden,
            challenge.clone().map(|c| (WWW_AUTHENTICATE, c)),
        ),
        Denial::TooManyRequests { retry_after, .. } => (
            ErrorKind::TooManyRequests,
            Some((
                RETRY_AFTER,
                retry_after.as_secs_f64().ceil().max(1.0).to_string(),
            )),
        ),
    }
}
