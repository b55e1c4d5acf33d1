//! The floor under Postern's numbers: the smallest Pingora proxy that does
//! the same transport work (TLS termination with rustls, HTTP/1.1 and h2,
//! keep-alive to one upstream) and nothing else: no routing, no policy, no
//! forwarding headers, no metrics, no access log. `benches/compare/run.sh`
//! measures it beside postern and nginx, so the table shows what Pingora
//! itself costs and what Postern adds on top.
//!
//!   pingora-minimal LISTEN_ADDR CERT KEY UPSTREAM_ADDR

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::listening::Service;

struct Minimal {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream.as_str(), false, String::new());
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, upstream] = args.as_slice() else {
        eprintln!("usage: pingora-minimal LISTEN_ADDR CERT KEY UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let conf = ServerConf {
        threads: 1,
        work_stealing: std::env::var_os("NO_STEAL").is_none(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Minimal {
            upstream: upstream.clone(),
        },
    );
    let mut service = Service::new("minimal".to_string(), proxy);
    let mut tls = TlsSettings::intermediate(cert, key).expect("certificate and key");
    tls.enable_h2();
    service.add_tls_with_settings(listen, None, tls);
    server.add_service(service);
    server.run_forever();
}
