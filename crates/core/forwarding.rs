//! What the upstream sees of a forwarded request: the canonical target the
//! decision was made on, identity headers only from a verified token, the
//! forwarding headers (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`) replaced,
//! and the request id.

use std::net::IpAddr;

use http::header::{FORWARDED, HOST};
use http::{HeaderName, HeaderValue, Uri};
use pingora::http::RequestHeader;
use pingora::Result;
use postern_auth::Identity;
use postern_policy::forwarded::{ChainHeaders, Hop};

use crate::client_cert::{ClientCertificate, CLIENT_CERT, CLIENT_CERT_CHAIN};
use crate::decision::{requested_host, Forward};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Rewrites the upstream request (Pingora's copy of the client's) for
/// `forward`, made on behalf of `client`.
pub fn rewrite(
    upstream_request: &mut RequestHeader,
    client_request: &RequestHeader,
    forward: &Forward,
    client: IpAddr,
    identity: Option<&Identity>,
    identity_headers: &[HeaderName],
    request_id: &HeaderValue,
) -> Result<()> {
    upstream_request.set_uri(Uri::from(forward.target.clone()));
    for name in identity_headers {
        upstream_request.remove_header(name);
    }
    for (name, value) in identity.map_or(&[][..], |i| &i.headers) {
        upstream_request.insert_header(name.clone(), value.as_str())?;
    }

    // As the client sent it (decide checked that Host and :authority agree).
    let host = client_request
        .headers
        .get(HOST)
        .cloned()
        .or_else(|| {
            let authority = requested_host(&client_request.headers, &client_request.uri).ok()?;
            HeaderValue::from_str(authority).ok()
        })
        .unwrap_or_else(|| HeaderValue::from_static(""));
    let chain = forward.trusted_chain.as_ref();
    let computed = ChainHeaders::new(
        &Hop {
            peer: forward.peer,
            peer_trusted: chain.is_some(),
            client,
            proto: forward.proto,
            host: host.to_str().unwrap_or(""),
            port: forward.local_port,
        },
        chain.and_then(|c| c.x_forwarded_for.as_deref()),
        chain.and_then(|c| c.forwarded.as_deref()),
    );
    // Static names: Pingora copies a name only when it is not one.
    upstream_request.insert_header(X_FORWARDED_FOR.as_str(), computed.x_forwarded_for)?;
    upstream_request.insert_header(
        X_FORWARDED_PROTO.as_str(),
        HeaderValue::from_static(forward.proto),
    )?;
    upstream_request.insert_header(X_FORWARDED_HOST.as_str(), host)?;
    upstream_request.insert_header(
        X_FORWARDED_PORT.as_str(),
        HeaderValue::from(forward.local_port),
    )?;
    upstream_request.insert_header(X_REAL_IP.as_str(), computed.x_real_ip)?;
    upstream_request.insert_header(FORWARDED.as_str(), computed.forwarded)?;
    upstream_request.insert_header(X_REQUEST_ID.as_str(), request_id.clone())?;
    Ok(())
}

/// RFC 9440: a client's own `Client-Cert` / `Client-Cert-Chain` never pass
/// (on any route); with `forward_client_cert` the verified ones are set.
pub fn client_certificate(
    upstream_request: &mut RequestHeader,
    forward: &Forward,
    verified: Option<&ClientCertificate>,
) -> Result<()> {
    upstream_request.remove_header(&CLIENT_CERT);
    upstream_request.remove_header(&CLIENT_CERT_CHAIN);
    let Some(cert) = verified.filter(|_| forward.forward_client_cert) else {
        return Ok(());
    };
    upstream_request.insert_header(CLIENT_CERT.as_str(), cert.header.clone())?;
    if let Some(chain) = &cert.chain_header {
        upstream_request.insert_header(CLIENT_CERT_CHAIN.as_str(), chain.clone())?;
    }
    Ok(())
}
