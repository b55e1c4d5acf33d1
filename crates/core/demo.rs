//! `postern demo`: a newcomer's first minute. Runs the shipped gateway.toml
//! with stand-in backends on HCL Domino REST API's ports and prints curl
//! lines that show routing and each policy at work.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use postern_config::{ListenerKind, RouteTarget, Service};

/// Domino REST API's ports and what each one is.
const BACKENDS: [(u16, &str); 4] = [
    (8880, "data"),
    (8886, "health"),
    (8889, "management"),
    (8890, "metrics"),
];

pub fn run(config_path: &Path) -> ExitCode {
    let Some(snapshot) = crate::load(config_path) else {
        return ExitCode::from(1);
    };
    let backends = BACKENDS
        .iter()
        .map(|(port, name)| (SocketAddr::from(([127, 0, 0, 1], *port)), name.to_string()))
        .collect();
    if let Err(e) = postern_echo::spawn_background(backends) {
        eprintln!(
            "postern demo: cannot start the stand-in backends on 127.0.0.1:8880/8886/8889/8890: {e}\n  help: stop whatever uses those ports (a real Domino REST API?) or run `postern run` against it instead"
        );
        return ExitCode::from(1);
    }
    let config = &snapshot.config;
    let https = config
        .listeners
        .iter()
        .find(|l| l.kind == ListenerKind::Tls);
    let redirect = config
        .listeners
        .iter()
        .find(|l| l.kind == ListenerKind::RedirectHttps);
    let ca = config
        .file
        .parent()
        .unwrap_or(Path::new("."))
        .join("certs/dev-ca.pem");
    println!("postern demo: stand-in Domino REST API backends on 127.0.0.1:8880 (data), :8886 (health), :8889 (management), :8890 (metrics)");
    if let Some(https) = https {
        let port = https.address.port();
        let base = format!("curl --cacert {} https://localhost:{port}", ca.display());
        println!("Try, in another terminal (each backend answers with JSON saying who it is and what it received):");
        println!("  {base}/api/v1/info                      # path routing: data backend (8880)");
        println!("  {base}/health                           # health backend (8886)");
        println!("  {base}/mgmt/info                        # management (8889), loopback only, /mgmt stripped to /info");
        println!(
            "  {base}/mgmt/shutdown                    # 403: denied route, nothing forwarded"
        );
        println!(
            "  {base}/api/../mgmt/../metrics           # canonicalised to /metrics before routing"
        );
        println!(
            "  {base}/api/%2e%2e/%2fetc                # 400: encoded '/' never reaches a backend"
        );
        println!(
            "  curl --cacert {} --resolve metrics.localhost:{port}:127.0.0.1 https://metrics.localhost:{port}/metrics   # sub-domain routing: metrics (8890)",
            ca.display()
        );
        println!(
            "  curl --cacert {} -H 'Host: example.org' https://localhost:{port}/   # 421: host not covered by the certificate",
            ca.display()
        );
        println!("  {base}/api -H 'X-Forwarded-For: 10.9.9.9'   # client-sent forwarding headers are replaced");
    }
    if let Some(redirect) = redirect {
        println!(
            "  curl -i http://localhost:{}/api/x        # 308 to https",
            redirect.address.port()
        );
    }
    let service_route = |service: Service| {
        config.routes.iter().find_map(|r| match r.target {
            RouteTarget::Service(s) if s == service => Some(r.path_prefix.clone()),
            _ => None,
        })
    };
    if let Some(ops) = config.listeners.iter().find(|l| l.name == "ops") {
        let base = format!("curl http://localhost:{}", ops.address.port());
        if let Some(prefix) = service_route(Service::Health) {
            println!("  {base}{prefix}                 # the gateway's health, with each upstream up or down");
        }
        if let Some(prefix) = service_route(Service::Metrics) {
            println!("  {base}{prefix}                # Prometheus metrics");
        }
        if let Some(prefix) = service_route(Service::Admin) {
            println!("  {base}{prefix}/config          # the running config, secrets masked");
            println!(
                "  {base}{prefix}/reload -X POST  # reload gateway.toml (or: kill -HUP <pid>)"
            );
        }
    }
    crate::serve(snapshot, false)
}
