//! The last check before a request is served or forwarded: the route's
//! authenticators and `require`, if it has them. It runs after deny and
//! allow (decision.rs), so a refused source never costs a password check.

use std::net::IpAddr;

use http::header::{AUTHORIZATION, COOKIE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName};
use postern_auth::chain::AuthChain;
use postern_auth::{Credentials, Denial, Identity, Verdict};

use crate::response::ErrorKind;

/// The route's verdict on the request's credentials; a refusal comes with
/// the name of the authenticator that gave it.
pub async fn authenticate<'a>(
    auth: &'a AuthChain,
    headers: &HeaderMap,
    client: IpAddr,
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
        // A client_cert authenticator's certificate goes here, from the session.
    };
    let decision = auth.check(&credentials).await;
    match decision.verdict {
        Verdict::Allow(identity) => Ok(identity),
        Verdict::Deny(denial) => Err((denial, decision.by)),
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
        Denial::Forbidden { challenge, .. } => (
            ErrorKind::Forbidden,
            Some((WWW_AUTHENTICATE, challenge.clone())),
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
