//! Shared machinery for Postern's end-to-end tests, one module per job:
//!
//! * [`pki`]: certificates made at test time (rcgen);
//! * [`gateway`]: the one way to run the real `postern` binary;
//! * [`upstream`]: echo backends and their `[upstreams]` tables;
//! * [`echo_process`]: echo backends as separate processes, to kill;
//! * [`http1`]: a raw HTTP/1.1 client that sends bytes exactly as written;
//! * [`tls_client`]: the TLS side of that client (SNI, ALPN, versions);
//! * [`h2`]: just enough HTTP/2 for requests and hand-made frames;
//! * [`prometheus`]: the metrics exposition, read back;
//! * [`idp`]: an identity provider and signed tokens for the JWT tests;
//! * [`redis`]: a real redis-server for the shared-store tests;
//! * [`dns`]: dnsmasq as a real DNS server whose answers a test changes;
//! * [`oidc`]: a real OpenID provider (oidc-provider, run by Node.js).
//!
//! The names most tests use are re-exported here.

pub mod dns;
pub mod echo_process;
pub mod gateway;
pub mod h2;
pub mod http1;
pub mod idp;
pub mod oidc;
pub mod pki;
pub mod prometheus;
pub mod redis;
pub mod tls_client;
pub mod upstream;

pub use gateway::{free_ports, postern_command, Gateway};
pub use h2::{H2Conn, H2Response};
pub use http1::{assert_gateway_error, get, request, HttpConn, Response};
pub use tls_client::{tls_connect, TlsConn, TlsOptions};
pub use upstream::{closed_port, echo, upstream, upstream_header};
