//! The one way to run the real `postern` binary: [`postern_command`] for
//! one-shot commands (`check`, `hash-password`), and [`Gateway`] for a
//! `postern run` on free loopback ports with a generated `gateway.toml`,
//! its stdout and stderr captured to files, killed when dropped.
//!
//! Both remove every inherited `POSTERN_*` variable: those are config
//! overrides and would change the config under test.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::net::TcpStream;

use super::http1::{get, HttpConn, Response};
use super::pki::Pki;
use super::tls_client::{tls_connect, TlsConn, TlsOptions};

/// How long the gateway may take to accept connections after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// `postern` with every inherited `POSTERN_*` variable removed; the caller
/// adds arguments, environment and stdio.
pub fn postern_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postern"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("POSTERN_") {
            command.env_remove(key);
        }
    }
    command
}

/// Binds `N` distinct free loopback ports at once, then releases them.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local addr").port();
    }
    ports
}

/// The `[gateway]` and `[tls]` settings of the generated `gateway.toml`.
#[derive(Clone)]
struct Settings {
    min_version: &'static str,
    strict_sni: bool,
    trusted_proxies: Vec<String>,
    /// `[gateway] resolver`; empty: left out, so the system's.
    resolver: Vec<String>,
    /// `[tls] hsts`; None: left out, so the default.
    hsts: Option<&'static str>,
    /// `[tls] client_ca`; None: no client certificates are asked for.
    client_ca: Option<PathBuf>,
}

impl Settings {
    /// The standard listeners on `[tls, redirect, plain]` and the three
    /// certificates of `pki`, then `body`.
    fn render(&self, pki: &Pki, [tls, redirect, plain]: [u16; 3], body: &str) -> String {
        // Each gateway hands its sockets over on its own upgrade socket, in its
        // own directory, so tests running in parallel cannot take each other's.
        let socket = pki
            .main
            .cert_path
            .parent()
            .expect("the PKI's directory")
            .join("upgrade.sock");
        let trusted: Vec<String> = self
            .trusted_proxies
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        let mut toml = format!(
            r#"[gateway]
threads = 2
trusted_proxies = [{trusted}]
upgrade_socket = '{socket}'
{resolver}
[[listeners]]
name = "https"
address = "127.0.0.1:{tls}"
tls = true

[[listeners]]
name = "http"
address = "127.0.0.1:{redirect}"
redirect_https = true

[[listeners]]
name = "ops"
address = "127.0.0.1:{plain}"

[tls]
min_version = "{min}"
strict_sni = {strict}
{hsts}"#,
            trusted = trusted.join(", "),
            socket = socket.display(),
            resolver = if self.resolver.is_empty() {
                String::new()
            } else {
                format!("resolver = {:?}\n", self.resolver)
            },
            min = self.min_version,
            strict = self.strict_sni,
            hsts = self
                .hsts
                .map_or(String::new(), |h| format!("hsts = {h:?}\n")),
        );
        if let Some(ca) = &self.client_ca {
            let _ = writeln!(toml, "client_ca = '{}'", ca.display());
        }
        for leaf in [&pki.main, &pki.wildcard, &pki.local] {
            let names: Vec<String> = leaf.names.iter().map(|n| format!("{n:?}")).collect();
            let _ = write!(
                toml,
                "\n[[tls.certificates]]\nserver_names = [{}]\ncert = '{}'\nkey = '{}'\n",
                names.join(", "),
                leaf.cert_path.display(),
                leaf.key_path.display(),
            );
        }
        toml.push('\n');
        toml.push_str(body);
        toml.push('\n');
        toml
    }
}

/// Settings of the generated `gateway.toml` outside the test's own body.
pub struct GatewayBuilder {
    body: String,
    env: Vec<(String, String)>,
    settings: Settings,
}

impl GatewayBuilder {
    /// `[tls] min_version` ("1.2" unless set).
    pub fn min_version(mut self, version: &'static str) -> Self {
        self.settings.min_version = version;
        self
    }

    /// Sets an environment variable for the gateway process (names starting
    /// with POSTERN_ are config overrides).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// `[tls] hsts = value` (the default unless set).
    pub fn hsts(mut self, value: &'static str) -> Self {
        self.settings.hsts = Some(value);
        self
    }

    /// `[tls] strict_sni` (false unless set).
    pub fn strict_sni(mut self, strict: bool) -> Self {
        self.settings.strict_sni = strict;
        self
    }

    /// `[gateway] trusted_proxies` (none unless set).
    pub fn trusted_proxies(mut self, cidrs: &[&str]) -> Self {
        self.settings.trusted_proxies = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }

    /// `[tls] client_ca`: TLS clients are asked for a certificate from this CA.
    pub fn client_ca(mut self, path: &Path) -> Self {
        self.settings.client_ca = Some(path.to_path_buf());
        self
    }

    /// `[gateway] resolver` (the system's unless set).
    pub fn resolver(mut self, servers: &[&str]) -> Self {
        self.settings.resolver = servers.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Writes the config and starts the gateway; panics (with its stderr) if
    /// it does not come up.
    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::generate(dir.path());
        let config_path = dir.path().join("gateway.toml");
        let mut failure = String::new();
        // Free ports are found by binding and releasing them, so another test
        // may take one in between; the gateway then says so and we retry.
        for attempt in 0..4 {
            let ports = free_ports();
            let config = self.settings.render(&pki, ports, &self.body);
            std::fs::write(&config_path, &config).expect("write gateway.toml");
            let mut gateway = Gateway::spawn(
                &["run"],
                ports,
                pki.clone(),
                self.settings.clone(),
                self.env.clone(),
                &config_path,
                &attempt.to_string(),
            );
            match gateway.wait_ready().await {
                Ok(()) => {
                    gateway.dir = Some(dir);
                    return gateway;
                }
                Err(message) => {
                    gateway.kill();
                    let stderr = gateway.stderr();
                    failure = format!(
                        "{message}\n--- gateway.toml ---\n{}\n--- gateway stderr ---\n{stderr}",
                        gateway.config
                    );
                    if !stderr.contains("cannot listen") {
                        break;
                    }
                }
            }
        }
        panic!("the gateway did not start: {failure}");
    }
}

/// A running `postern run` with three listeners: `https` (TLS), `http`
/// (`redirect_https = true`) and `ops` (plain HTTP), all on 127.0.0.1.
/// Its config file can be rewritten and the process signalled.
/// Killed when dropped; its config and stderr are printed if the test is failing.
pub struct Gateway {
    /// The `https` listener's port.
    pub tls_port: u16,
    /// The `http` (redirect) listener's port.
    pub redirect_port: u16,
    /// The `ops` (plain HTTP) listener's port.
    pub plain_port: u16,
    /// The CA and certificates the gateway serves.
    pub pki: Pki,
    /// The `gateway.toml` the gateway was started with.
    pub config: String,
    settings: Settings,
    env: Vec<(String, String)>,
    config_path: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    child: Child,
    /// Holds the config and certificates; removed when dropped. `None` for
    /// a process started by [`Gateway::upgrade`], which shares its parent's.
    dir: Option<TempDir>,
}

impl Gateway {
    /// A gateway whose `gateway.toml` is the standard listeners and
    /// certificates followed by `body` (upstreams and routes).
    pub fn builder(body: impl Into<String>) -> GatewayBuilder {
        GatewayBuilder {
            body: body.into(),
            env: Vec::new(),
            settings: Settings {
                min_version: "1.2",
                strict_sni: false,
                trusted_proxies: Vec::new(),
                resolver: Vec::new(),
                hsts: None,
                client_ca: None,
            },
        }
    }

    /// The standard gateway with `body`, started.
    pub async fn start(body: impl Into<String>) -> Gateway {
        Gateway::builder(body).start().await
    }

    /// Spawns `postern ARGS -c config_path` with output going to
    /// `stdout-{tag}.log` and `stderr-{tag}.log` beside the config.
    fn spawn(
        args: &[&str],
        ports: [u16; 3],
        pki: Pki,
        settings: Settings,
        env: Vec<(String, String)>,
        config_path: &Path,
        tag: &str,
    ) -> Gateway {
        let config = std::fs::read_to_string(config_path).expect("read gateway.toml");
        let dir = config_path.parent().expect("config dir");
        let stderr_path = dir.join(format!("stderr-{tag}.log"));
        let stdout_path = dir.join(format!("stdout-{tag}.log"));
        let mut command = postern_command();
        command
            .args(args)
            .arg("-c")
            .arg(config_path)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().expect("spawn postern");
        Gateway {
            tls_port: ports[0],
            redirect_port: ports[1],
            plain_port: ports[2],
            pki,
            config,
            settings,
            env,
            config_path: config_path.to_path_buf(),
            stderr_path,
            stdout_path,
            child,
            dir: None,
        }
    }

    /// Starts `postern run --upgrade` on this gateway's config file, which
    /// takes over the listening sockets once this process gets SIGQUIT.
    /// `ports` are the new file's listeners.
    pub fn upgrade(&self, ports: [u16; 3]) -> Gateway {
        Gateway::spawn(
            &["run", "--upgrade"],
            ports,
            self.pki.clone(),
            self.settings.clone(),
            self.env.clone(),
            &self.config_path,
            "upgrade",
        )
    }

    /// The listener ports: `[tls, redirect, plain]`.
    pub fn ports(&self) -> [u16; 3] {
        [self.tls_port, self.redirect_port, self.plain_port]
    }

    /// This gateway's standard listeners and certificates, then `body`: a
    /// config it can reload.
    pub fn config_with(&self, body: &str) -> String {
        self.config_on(self.ports(), body)
    }

    /// The standard listeners on `ports` and this gateway's certificates,
    /// then `body`.
    pub fn config_on(&self, ports: [u16; 3], body: &str) -> String {
        self.settings.render(&self.pki, ports, body)
    }

    /// Replaces the config file the way an editor or deployment tool does:
    /// written beside it, then renamed over it.
    pub fn rewrite(&self, contents: &str) {
        let staged = self.config_path.with_extension("toml.new");
        std::fs::write(&staged, contents).expect("write new gateway.toml");
        std::fs::rename(&staged, &self.config_path).expect("rename new gateway.toml");
    }

    /// The process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` ("HUP", "TERM", "QUIT") with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Asserts the process exits, with status 0, within `limit`; `after`
    /// says what should have stopped it.
    pub async fn assert_exits_zero(&mut self, limit: Duration, after: &str) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            assert!(
                Instant::now() <= deadline,
                "postern still running {limit:?} after {after}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            status.code(),
            Some(0),
            "postern exited with {status} after {after}:\n{}",
            self.stderr()
        );
    }

    /// Everything the gateway has written to stdout so far (the access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the gateway has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let ports = self.ports();
        let mut ready = [false; 3];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("postern exited during startup with {status}"));
            }
            for (port, ready) in ports.iter().zip(ready.iter_mut()) {
                if !*ready {
                    *ready = TcpStream::connect(("127.0.0.1", *port)).await.is_ok();
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postern did not accept connections on {ports:?} within {STARTUP_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A TLS connection to the `https` listener.
    pub async fn connect(&self, options: TlsOptions) -> io::Result<TlsConn> {
        tls_connect(self.tls_port, &self.pki.ca, options).await
    }

    /// A TLS connection with SNI `name`, ALPN http/1.1; panics on failure.
    pub async fn tls(&self, name: &str) -> TlsConn {
        self.connect(TlsOptions::sni(name))
            .await
            .unwrap_or_else(|e| panic!("TLS connection with SNI {name} failed: {e}"))
    }

    /// Sends `raw` on a fresh TLS connection with SNI `sni` and reads one response.
    pub async fn send(&self, sni: &str, raw: impl AsRef<[u8]>) -> Response {
        let mut conn = self.tls(sni).await;
        conn.send(raw.as_ref())
            .await
            .unwrap_or_else(|e| panic!("request over TLS (SNI {sni}) failed: {e}"))
    }

    /// `GET target` with `Host: host`, SNI `host`, `Connection: close`.
    pub async fn get(&self, host: &str, target: &str) -> Response {
        self.send(host, get(host, target)).await
    }

    /// Sends `raw` over plain TCP to `port` and reads one response.
    pub async fn send_plain(&self, port: u16, raw: impl AsRef<[u8]>) -> Response {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        let mut conn = HttpConn::new(stream);
        conn.send(raw.as_ref())
            .await
            .unwrap_or_else(|e| panic!("plain request to port {port} failed: {e}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let config =
                std::fs::read_to_string(&self.config_path).unwrap_or_else(|_| self.config.clone());
            eprintln!(
                "--- gateway.toml ---\n{config}\n--- postern stderr ---\n{}--- end of postern stderr ---",
                self.stderr()
            );
        }
    }
}
