//! Assembling the Pingora server: one proxy service per listener, all sharing
//! one configuration snapshot and one certificate resolver.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use postern_config::ListenerKind;

use pingora::services::listening::Service;

use crate::client_hello::MinimumVersionGate;
use crate::connections::ClientConnections;
use crate::health::HealthChecker;
use crate::proxy::Gateway;
use crate::reload::{HangupReload, Reloader};
use crate::renewal::CertificateWatcher;
use crate::snapshot::Snapshot;
use crate::tls::{HandshakeRecorder, SniResolver};

/// Socket buffering per client connection. Pingora reads through a 64 KB
/// buffer by default, which every idle keep-alive connection holds too. No
/// read buffer at all: above the socket a reader always has its own (rustls'
/// record buffer, Pingora's header and body buffers), so a second one only
/// copies. In benches/compare, memory per idle TLS connection went from
/// 105 KB (64 KB) to 51 KB (4 KB) to 24 KB (none, with the HTTP/1 loop in
/// `connections`) at the same request rate against the Pingora floor.
const CLIENT_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};

/// Binds every listener and serves until a signal stops the process. With
/// `upgrade`, first takes over the listening sockets of the gateway that is
/// running (it hands them over on SIGQUIT) and binds only new addresses.
pub fn run(snapshot: Snapshot, upgrade: bool) -> Result<std::convert::Infallible, String> {
    // Pingora exits the process when a bind fails, with a message that does
    // not say which listener; try each address first so the operator is told.
    // An upgrade takes its addresses over from the old process, still bound.
    for l in snapshot.config.listeners.iter().filter(|_| !upgrade) {
        if let Err(e) = std::net::TcpListener::bind(l.address) {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "; ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep postern)"
                }
                std::io::ErrorKind::AddrInUse => "; another process is listening there",
                _ => "",
            };
            return Err(format!(
                "{}: cannot listen on {} for listener {:?}: {e}{hint}",
                l.origin, l.address, l.name
            ));
        }
    }

    let conf = ServerConf {
        threads: snapshot.config.gateway.threads,
        // Each worker thread runs its own connections start to finish, as an
        // nginx worker does: 18% more requests per core than Pingora's
        // work-stealing default in benches/compare (docs/performance.md).
        work_stealing: false,
        // Pingora's default drain is 300 s; a gateway restart should not take minutes.
        grace_period_seconds: Some(5),
        graceful_shutdown_timeout_seconds: Some(10),
        upgrade_sock: snapshot
            .config
            .gateway
            .upgrade_socket
            .to_string_lossy()
            .into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    if upgrade {
        log::info!(
            "waiting on {} for the running gateway's sockets: send it SIGQUIT now",
            conf.upgrade_sock
        );
    }
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // As a service rather than `bootstrap()`: Pingora then knows which
    // addresses the listeners claim and closes inherited sockets no listener
    // wants any more (an address the new configuration dropped).
    let bootstrap = server.bootstrap_as_a_service();

    let resolver = Arc::new(SniResolver::new(Arc::clone(&snapshot.certificates)));
    let listeners = snapshot.config.listeners.clone();
    // Read once: a listener's rustls config is built at startup (see reload.rs).
    let client_verifier = snapshot.client_verifier.clone();
    let client_timeouts = snapshot.config.gateway.client_timeouts;
    let threads = snapshot.config.gateway.threads;
    crate::access_log::open(&snapshot.config.gateway.access_log)
        .map_err(|e| format!("{}: {e}", snapshot.config.file.display()))?;
    crate::metrics::metrics().set_certificates(&snapshot.certificate_expiries());
    let config_path = snapshot.config.file.clone();
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    let reloader = Arc::new(Reloader::new(
        config_path,
        Arc::clone(&shared),
        Arc::clone(&resolver),
    ));
    for l in listeners {
        let gateway = Gateway {
            listener: Arc::from(l.name.as_str()),
            kind: l.kind,
            port: l.address.port(),
            snapshot: Arc::clone(&shared),
            reloader: Arc::clone(&reloader),
        };
        let mut proxy = pingora::proxy::HttpProxy::new(gateway, server.configuration.clone());
        proxy.handle_init_modules();
        // An HTTP/2 connection with no open stream is an idle keep-alive
        // connection; HTTP/1 ones are timed by `ClientConnections`.
        let mut options = HttpServerOptions::default();
        options.h2_idle_timeout = Some(client_timeouts.keepalive);
        // Refused by `decide` with the usual JSON answer, not by Pingora with
        // an empty 405 before any hook runs (pingora-proxy lib.rs:383).
        options.allow_connect_method_proxying = true;
        proxy.server_options = Some(options);
        let connections = ClientConnections {
            inner: Arc::new(proxy),
            open: crate::metrics::metrics()
                .connections
                .with_label_values(&[l.name.as_str()]),
            snapshot: Arc::clone(&shared),
        };
        let mut service = Service::new(format!("postern listener {}", l.name), connections);
        let address = l.address.to_string();
        match l.kind {
            ListenerKind::Tls => {
                let recorder = HandshakeRecorder {
                    resolver: Arc::clone(&resolver),
                };
                let mut settings = TlsSettings::with_callbacks(Box::new(recorder))
                    .map_err(|e| format!("listener {:?}: {e}", l.name))?;
                settings.set_cert_resolver(resolver.clone());
                if let Some(verifier) = &client_verifier {
                    settings.set_client_cert_verifier(Arc::clone(verifier));
                }
                settings.enable_h2();
                // Handshakes run on threads of their own, as many as the workers, so a burst
                // of new connections does not stall requests on established ones: p99 at
                // 500 req/s during a handshake storm 5.9 -> 2.8 ms, for 4% fewer handshakes
                // a second on one core (docs/performance.md, "TLS handshake offload").
                settings.set_offload_threadpool(1, threads);
                service.add_listener(
                    ListenerConfig::tcp(address.as_str())
                        .tls(settings)
                        .l4_buffer(CLIENT_BUFFERS),
                );
                service
                    .endpoints()
                    .set_pre_tls_callback(Arc::new(MinimumVersionGate {
                        resolver: Arc::clone(&resolver),
                    }));
            }
            ListenerKind::Plain | ListenerKind::RedirectHttps => service
                .add_listener(ListenerConfig::tcp(address.as_str()).l4_buffer(CLIENT_BUFFERS)),
        }
        log::info!("listener {:?} on {} ({:?})", l.name, l.address, l.kind);
        server.add_service(service).add_dependency(&bootstrap);
    }
    let watcher = CertificateWatcher {
        resolver: Arc::clone(&resolver),
        snapshot: Arc::clone(&shared),
    };
    server.add_service(pingora::services::background::background_service(
        "certificate renewal",
        watcher,
    ));
    server.add_service(pingora::services::background::background_service(
        "upstream health checks",
        HealthChecker {
            snapshot: Arc::clone(&shared),
        },
    ));
    server.add_service(pingora::services::background::background_service(
        "upstream name resolution",
        crate::resolve::Refresher {
            snapshot: Arc::clone(&shared),
        },
    ));
    server.add_service(pingora::services::background::background_service(
        "reload on SIGHUP",
        HangupReload {
            reloader: Arc::clone(&reloader),
        },
    ));
    server.run_forever()
}
