//! `postern demo`: a newcomer's first minute. Runs the shipped gateway.toml
//! with stand-in backends on HCL Domino REST API's ports, a development token
//! issuer in place of Domino's built-in IdP, and prints curl lines that show
//! routing and each policy at work.
//!
//! Every printed line ends in `# <status> ...`, the status it gets against
//! the shipped gateway.toml; tests/demo.rs runs them and holds the demo to it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use postern_config::{ListenerKind, RouteTarget, Service};
use postern_echo::Responder;
use serde_json::{json, Value};

/// Domino REST API's ports (and the HTTP task's stand-in) and what each is.
const BACKENDS: [(u16, &str); 5] = [
    (8880, "data"),
    (8886, "health"),
    (8889, "management"),
    (8890, "metrics"),
    (8881, "domino-http"),
];

/// The issuer's signing key, beside the development certificates.
const TOKEN_KEY: &str = "certs/dev-token-key.pem";
const TOKEN_KID: &str = "postern-demo";
/// Where the shipped gateway.toml fetches the issuer's keys from.
const JWKS_PATH: &str = "/api/v1/auth/.well-known/jwks.json";
/// Domino REST API's login endpoint.
const LOGIN_PATH: &str = "/api/v1/auth";
/// The development accounts' password; any user name is accepted with it.
const DEMO_PASSWORD: &str = "demo";
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// A stand-in for Domino REST API's built-in IdP: `POST /api/v1/auth` with
/// `{"username","password"}` answers `{"bearer": <RS256 JWT>, ...}` as Domino
/// does, and the JWKS is published for the gateway to verify with.
struct DevIssuer {
    key: EncodingKey,
    jwks: Value,
}

impl DevIssuer {
    fn load(path: &Path) -> Result<DevIssuer, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = EncodingKey::from_rsa_pem(&pem)
            .map_err(|e| format!("{}: not an RSA private key: {e}", path.display()))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        jwk.common.key_id = Some(TOKEN_KID.to_string());
        let jwks =
            serde_json::to_value(JwkSet { keys: vec![jwk] }).map_err(|e| format!("JWKS: {e}"))?;
        Ok(DevIssuer { key, jwks })
    }

    fn respond(&self, method: &Method, path: &str, body: &[u8]) -> Option<(StatusCode, Value)> {
        match (method.as_str(), path.trim_end_matches('/')) {
            ("GET", JWKS_PATH) => Some((StatusCode::OK, self.jwks.clone())),
            ("POST", LOGIN_PATH) => Some(self.login(body)),
            _ => None,
        }
    }

    fn login(&self, body: &[u8]) -> (StatusCode, Value) {
        let refused = |message: &str| {
            (
                StatusCode::UNAUTHORIZED,
                json!({"status": 401, "message": message}),
            )
        };
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return refused("send JSON: {\"username\": \"...\", \"password\": \"...\"}");
        };
        let username = request["username"].as_str().unwrap_or("");
        if username.is_empty() || request["password"].as_str() != Some(DEMO_PASSWORD) {
            return refused("invalid user or password (the demo's password is \"demo\")");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = json!({
            "iss": "Domino",
            "aud": ["Domino"],
            "sub": format!("CN={username}/O=Postern Demo"),
            "CN": username,
            "scope": "$DATA",
            "iat": now,
            "exp": now + TOKEN_LIFETIME_SECS,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(TOKEN_KID.to_string());
        match jsonwebtoken::encode(&header, &claims, &self.key) {
            Ok(bearer) => (
                StatusCode::OK,
                json!({"bearer": bearer, "claims": claims, "expSeconds": TOKEN_LIFETIME_SECS}),
            ),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": 500, "message": format!("signing failed: {e}")}),
            ),
        }
    }
}

pub fn run(config_path: &Path) -> ExitCode {
    let Some(snapshot) = crate::load(config_path) else {
        return ExitCode::from(1);
    };
    let base_dir = config_path.parent().unwrap_or(Path::new("."));
    let taken = taken_ports(&snapshot.config);
    if !taken.is_empty() {
        for (addr, what, e) in &taken {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                eprintln!("postern demo: {addr} ({what}) is taken");
            } else {
                eprintln!("postern demo: {addr} ({what}) cannot be bound: {e}");
            }
        }
        eprintln!("  help: stop whatever listens there (another `postern demo`? a real Domino REST API?), or change the listener addresses in {}", config_path.display());
        return ExitCode::from(1);
    }
    let issuer = match DevIssuer::load(&base_dir.join(TOKEN_KEY)) {
        Ok(issuer) => Arc::new(issuer),
        Err(e) => {
            eprintln!("postern demo: cannot start the development token issuer: {e}\n  help: run certs/make-dev-certs.sh to make the development keys");
            return ExitCode::from(1);
        }
    };
    let backends = BACKENDS
        .iter()
        .map(|(port, name)| {
            let responder: Option<Responder> = (*name == "data").then(|| {
                let issuer = Arc::clone(&issuer);
                Arc::new(move |method: &Method, path: &str, body: &[u8]| {
                    issuer.respond(method, path, body)
                }) as Responder
            });
            (
                SocketAddr::from(([127, 0, 0, 1], *port)),
                name.to_string(),
                responder,
            )
        })
        .collect();
    if let Err(e) = postern_echo::spawn_background_with(backends) {
        eprintln!(
            "postern demo: cannot start the stand-in backends on 127.0.0.1:8880/8886/8889/8890/8881: {e}\n  help: stop whatever uses those ports (a real Domino REST API?) or run `postern run` against it instead"
        );
        return ExitCode::from(1);
    }
    print_tour(&snapshot.config, base_dir);
    crate::serve(snapshot, false)
}

/// Every address the demo would listen on that something else holds, and
/// what the demo wanted it for; checked before anything starts or prints.
fn taken_ports(config: &postern_config::Config) -> Vec<(SocketAddr, String, std::io::Error)> {
    let backends = BACKENDS.iter().map(|(port, name)| {
        (
            SocketAddr::from(([127, 0, 0, 1], *port)),
            format!("the stand-in {name} backend"),
        )
    });
    let listeners = config
        .listeners
        .iter()
        .map(|l| (l.address, format!("listener {:?}", l.name)));
    backends
        .chain(listeners)
        .filter_map(|(addr, what)| {
            std::net::TcpListener::bind(addr)
                .err()
                .map(|e| (addr, what, e))
        })
        .collect()
}

/// `path` for a shell line, absolute so the line works from any directory.
fn shell_path(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// What to try, one curl line each, with the status it gets. `curl -i`
/// shows the status line (and headers such as WWW-Authenticate) first.
fn print_tour(config: &postern_config::Config, base_dir: &Path) {
    println!("postern demo: stand-in Domino REST API backends on 127.0.0.1:8880 (data, with a development token issuer), :8886 (health), :8889 (management), :8890 (metrics), :8881 (the Domino HTTP task)");
    let ca = shell_path(&base_dir.join("certs/dev-ca.pem"));
    if let Some(https) = config
        .listeners
        .iter()
        .find(|l| l.kind == ListenerKind::Tls)
    {
        let port = https.address.port();
        let c = format!("curl -si --cacert {ca} https://localhost:{port}");
        // The login line's body is the token, so no -i there.
        let login = format!("curl -s --cacert {ca} https://localhost:{port}");
        println!("Try, in another terminal (each backend answers with JSON saying who it is and what it received):");
        println!("  {c}/api/v1/scopes   # 401 the REST API needs a token");
        println!("  TOKEN=$({login}{LOGIN_PATH} -H 'Content-Type: application/json' -d '{{\"username\":\"alice\",\"password\":\"{DEMO_PASSWORD}\"}}' | sed 's/.*\"bearer\":\"\\([^\"]*\\)\".*/\\1/')   # log in as Domino's /api/v1/auth does");
        println!("  {c}/api/v1/scopes -H \"Authorization: Bearer $TOKEN\"   # 200 a valid JWT reaches the data backend (8880)");
        println!(
            "  {c}/keep/x -H \"Authorization: Bearer $TOKEN.x\"   # 401 a tampered token does not"
        );
        println!("  {c}/health   # 401 health (8886) has its own account");
        println!("  {c}/health -u monitor:change-me   # 200 health backend");
        println!(
            "  {c}/metrics -u monitor:change-me   # 401 the health account cannot read metrics"
        );
        println!("  {c}/metrics -u prometheus:change-me   # 200 metrics (8890), loopback and the collector network only");
        println!("  {c}/manage/info -u admin:change-me   # 200 management (8889), loopback and the admin network only, /manage stripped");
        println!("  {c}/api/../manage/info -u admin:change-me --path-as-is   # 200 canonicalised to /manage/info before routing and policy");
        println!(
            "  {c}/api/%2e%2e/%2fetc --path-as-is   # 400 an encoded '/' never reaches a backend"
        );
        println!("  {c}/names.nsf   # 200 everything else goes to the Domino HTTP task");
        println!("  {c}/ -H 'Host: example.org'   # 421 a host the certificate does not cover");
    }
    if let Some(redirect) = config
        .listeners
        .iter()
        .find(|l| l.kind == ListenerKind::RedirectHttps)
    {
        println!(
            "  curl -si http://localhost:{}/api/x   # 308 to https",
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
        let c = format!("curl -si http://localhost:{}", ops.address.port());
        if let Some(prefix) = service_route(Service::Health) {
            println!("  {c}{prefix}   # 200 the gateway's health, with each upstream up or down");
        }
        if let Some(prefix) = service_route(Service::Metrics) {
            println!("  {c}{prefix}   # 200 the gateway's Prometheus metrics");
        }
        if let Some(prefix) = service_route(Service::Admin) {
            println!("  {c}{prefix}/config   # 200 the running config, secrets masked");
            println!(
                "  {c}{prefix}/reload -X POST   # 200 reload gateway.toml (or: kill -HUP <pid>)"
            );
        }
    }
}
