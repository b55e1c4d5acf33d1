//! Upstreams for the gateway under test: echo backends on free ports, their
//! `[upstreams.NAME]` tables, and what they report having received.

use std::net::SocketAddr;

use postern_echo::EchoServer;
use serde_json::Value;

/// Starts an echo backend on a free loopback port.
pub async fn echo(name: &str) -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().expect("addr"), name)
        .await
        .expect("start echo backend")
}

/// `[upstreams.NAME]` pointing at `addr`, plus any extra lines (timeouts).
pub fn upstream(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!("\n[upstreams.{name}]\nurl = \"http://{addr}\"\n{extra}\n")
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The values of one header as the upstream received them.
pub fn upstream_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
