//! Postern's request policy, as plain Rust that knows nothing of Pingora.
//!
//! Every decision the gateway makes about a request before forwarding it lives
//! here, so it can be unit-tested, property-tested and fuzzed without a socket:
//!
//! - [`path`]: the one canonical form of a request path (spec, "Request semantics" 1);
//! - [`host`]: normalising the `Host` a client asked for, and matching host patterns;
//! - [`hostmap`]: host dispatch (exact, wildcard, default), shared by routes and certificates;
//! - [`router`]: choosing the route for a (listener, host, path);
//! - [`source`]: deciding who the client is and whether a source allowlist admits it;
//! - [`forwarded`]: the forwarding headers the gateway sets for the upstream.

pub mod forwarded;
pub mod host;
pub mod hostmap;
pub mod path;
pub mod router;
pub mod source;
