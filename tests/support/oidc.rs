//! A real OpenID provider for the authorization tests: the npm package
//! `oidc-provider`, run by `tests/oidc/provider.mjs` (installed by
//! `scripts/install-deps --tests`, which runs `npm ci --prefix tests/oidc`).
//!
//! It issues client_credentials tokens: opaque ones (for introspection) and
//! JWT access tokens with realm and client roles (for `require`); see the
//! script's header for its clients and resources.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The gateway's client at the provider, for introspection.
pub const INTROSPECTION_CLIENT: (&str, &str) = ("postern", "postern-secret");
/// A client with realm role "user".
pub const APP: (&str, &str) = ("app", "app-secret");
/// A client with realm roles "user", "admin" and client role domino/"ops".
pub const ADMIN_APP: (&str, &str) = ("admin-app", "admin-secret");
/// Opaque tokens for audience "Domino".
pub const DOMINO_OPAQUE: &str = "urn:postern:domino";
/// Opaque tokens for audience "Mail".
pub const MAIL_OPAQUE: &str = "urn:postern:mail";
/// JWT access tokens for audience "Domino".
pub const DOMINO_JWT: &str = "urn:postern:jwt";

/// A running `oidc-provider`; stopped when dropped.
pub struct OidcProvider {
    port: u16,
    child: Option<Child>,
    output: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

fn script_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl OidcProvider {
    /// Starts the provider on a free loopback port and waits until it serves.
    pub async fn start() -> OidcProvider {
        OidcProvider::start_with_delay(Duration::ZERO).await
    }

    /// Like [`OidcProvider::start`], answering introspection calls `delay` late.
    pub async fn start_with_delay(delay: Duration) -> OidcProvider {
        let dir = script_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules is missing: run `scripts/install-deps --tests` (it runs `npm ci --prefix tests/oidc`)"
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("INTROSPECTION_DELAY_MS", delay.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` ({e}): run `scripts/install-deps --tests` to install Node.js")
            });
        let output = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("listening ") {
                    let _ = port_tx.send(port.trim().parse::<u16>().ok());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("piped");
        let lines = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let port =
            tokio::task::spawn_blocking(move || port_rx.recv_timeout(Duration::from_secs(60)))
                .await
                .expect("waiting for the provider");
        let port = match port {
            Ok(Some(port)) => port,
            _ => {
                let _ = child.kill();
                panic!(
                    "oidc-provider did not start within 60 s; its output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
        };
        OidcProvider {
            port,
            child: Some(child),
            output,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// `http://127.0.0.1:PORT`, the provider's issuer.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The RFC 7662 endpoint.
    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.issuer())
    }

    /// An access token for `client` with `scopes` (space-separated) for `resource`.
    pub async fn token(&self, client: (&str, &str), scopes: &str, resource: &str) -> String {
        let response = self
            .http
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client.0, Some(client.1))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scopes),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON token response");
        assert_eq!(status, 200, "token request refused: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_string()
    }

    /// Calls made to the introspection endpoint so far.
    pub async fn introspections(&self) -> u64 {
        let body: Value = self
            .http
            .get(format!("{}/_test/counts", self.issuer()))
            .send()
            .await
            .expect("the provider answers")
            .json()
            .await
            .expect("JSON counts");
        body["introspections"].as_u64().expect("a count")
    }

    /// Stops the provider (the IdP going down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the provider printed, for failure messages.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
