//! Postern's end-to-end tests, in one binary (as ripgrep does): one module
//! per file beside this one, and the shared harness in `support/`.
//!
//! `cargo test --test tests` runs them all; `cargo test --test tests
//! routing::` one module; `cargo test --test tests routing::deny_answers`
//! one test.

mod support;

mod access_log;
mod auth_basic;
mod auth_jwt;
mod authz;
mod check;
mod client_cert;
mod demo;
mod deploy;
mod docs;
mod error_shape;
mod faults;
mod forwarding;
mod http2;
mod keystore;
mod limits;
mod operations;
mod path_bypass;
mod pools;
mod presets;
mod rate_limits;
mod request_buffering;
mod response_headers;
mod routing;
mod shared_backoff;
mod slow_clients;
mod smuggling;
mod tls;
mod upstream_health;
mod upstream_tls;
mod websocket;
