//! The typed configuration: what `gateway.toml` means once it has been read,
//! layered and checked. Names follow the reference in docs/configuration.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
pub use postern_limits::{LimitKey, Policy as LimitPolicy};
use postern_policy::host::HostPattern;
use postern_policy::source::Allowlist;

use crate::diag::Origin;

/// A whole configuration: `gateway.toml`, its overlays and the
/// environment overrides, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file, as given.
    pub file: PathBuf,
    /// The files that were layered over it, in order.
    pub overlays: Vec<PathBuf>,
    /// `[gateway]`.
    pub gateway: Gateway,
    /// `[[listeners]]`, in file order.
    pub listeners: Vec<Listener>,
    /// `[tls]` and its certificates.
    pub tls: Tls,
    /// `[upstreams.NAME]`.
    pub upstreams: Vec<Upstream>,
    /// `[auth.NAME]`.
    pub auth: Vec<Authenticator>,
    /// `[limits.NAME]`.
    pub limits: Vec<Limit>,
    /// `[[routes]]`, in file order.
    pub routes: Vec<Route>,
}

impl Config {
    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The authenticator called `name`.
    pub fn authenticator(&self, name: &str) -> Option<&Authenticator> {
        self.auth.iter().find(|a| a.name == name)
    }

    /// The limit called `name`.
    pub fn limit(&self, name: &str) -> Option<&Limit> {
        self.limits.iter().find(|l| l.name == name)
    }

    /// The listener called `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// `[gateway]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Worker threads per listener service.
    pub threads: usize,
    /// Peers whose X-Forwarded-For / Forwarded headers are believed.
    pub trusted_proxies: Allowlist,
    /// Where the access log goes.
    pub access_log: AccessLog,
    /// Request line plus headers, in bytes; more gets 431.
    pub max_header_size: u64,
    /// Request body limit for routes that set none; None: unlimited.
    pub max_body_size: Option<u64>,
    /// `request_buffer` for routes that set none: bodies up to this many
    /// bytes are read whole before the upstream is contacted; 0 streams.
    pub request_buffer: u64,
    /// Unix socket on which `postern run --upgrade` receives the listening
    /// sockets of the process it replaces.
    pub upgrade_socket: PathBuf,
    /// How long clients may take (`client_header_timeout` and kin).
    pub client_timeouts: ClientTimeouts,
    /// `resolver`: DNS servers asked for upstream host names; empty: the
    /// system's (/etc/resolv.conf).
    pub resolver: Vec<std::net::SocketAddr>,
    /// `shared_store`: the Redis that rate limits and basic-auth backoff are shared through.
    pub shared_store: Option<StoreUrl>,
}

/// A `shared_store` URL. It may hold a password, so it is shown (in `Debug`, logs and
/// `/config`) only with its userinfo replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    url: String,
    shown: String,
}

impl StoreUrl {
    /// `url`, checked by [`postern_limits::check_store_url`].
    pub fn new(url: &str) -> Result<StoreUrl, String> {
        postern_limits::check_store_url(url)?;
        Ok(StoreUrl {
            url: url.to_string(),
            shown: postern_limits::redact_url(url),
        })
    }

    /// The URL with its password: for connecting only.
    pub fn secret(&self) -> &str {
        &self.url
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({:?})", self.shown)
    }
}

/// One `[limits.NAME]` table.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The table's key; routes name it in `limit`.
    pub name: String,
    /// Rate and burst.
    pub policy: LimitPolicy,
    /// What the limit counts by.
    pub key: LimitKey,
    /// Where the table was written.
    pub origin: Origin,
}

/// How long a client may take, so slow or idle clients cannot hold
/// connections (and their memory) forever: slowloris and its kin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// From accepting a connection (or from the first byte of a later
    /// request on it) until the whole request head has arrived.
    pub header: Duration,
    /// The longest wait for the next piece of a request body.
    pub body: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub keepalive: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            header: DEFAULT_CLIENT_HEADER_TIMEOUT,
            body: DEFAULT_CLIENT_BODY_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

// Defaults for what `gateway.toml` leaves out. The readers take them from
// here and nowhere else, so docs/configuration.md has one place to agree with.

/// `[gateway] threads`.
pub const DEFAULT_THREADS: usize = 2;
/// `[gateway] max_header_size`: request line plus headers.
pub const DEFAULT_MAX_HEADER_SIZE: u64 = 32 * 1024;
/// `[gateway] request_buffer`: like nginx's request buffering, so a slow
/// or broken upload never holds an upstream worker.
pub const DEFAULT_REQUEST_BUFFER: u64 = 64 * 1024;
/// `[gateway] upgrade_socket`.
pub const DEFAULT_UPGRADE_SOCKET: &str = "/tmp/postern-upgrade.sock";
/// `[gateway] client_header_timeout`.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `[gateway] client_body_timeout`.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// `[gateway] keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// `[tls] min_version`.
pub const DEFAULT_TLS_MIN_VERSION: TlsVersion = TlsVersion::Tls12;
/// `[tls] hsts`: one year, the value browsers' preload lists ask for at least.
pub const DEFAULT_HSTS: &str = "max-age=31536000";

/// `[upstreams.NAME] connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `[upstreams.NAME] read_timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `[upstreams.NAME] write_timeout`.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[upstreams.NAME] idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[upstreams.NAME] resolve_interval`: how often host names are resolved again.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// `[upstreams.NAME.health] interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `[upstreams.NAME.health] timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// `[upstreams.NAME.health] healthy_threshold`.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// `[upstreams.NAME.health] unhealthy_threshold`.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

/// `[auth.NAME] leeway` (jwt): clock skew tolerated on exp and nbf.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
/// `[auth.NAME] refresh_interval` (jwt).
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// `[auth.NAME] refetch_cooldown` (jwt).
pub const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// `[auth.NAME] algorithms` (jwt) with public keys.
pub const DEFAULT_JWT_ALGORITHM: &str = "RS256";
/// `[auth.NAME] algorithms` (jwt) with `secret_env`.
pub const DEFAULT_JWT_HMAC_ALGORITHM: &str = "HS256";
/// `[auth.NAME] max_failures` (basic).
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// `[auth.NAME] backoff_initial` (basic).
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// `[auth.NAME] backoff_max` (basic).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(900);
/// `[auth.NAME] cache_ttl` (introspection).
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// `[auth.NAME] cache_ttl` (basic).
pub const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// `[[routes]] path_prefix`.
pub const DEFAULT_PATH_PREFIX: &str = "/";

/// Where the one-JSON-line-per-request access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// One JSON line per request on stdout.
    Stdout,
    /// No access log.
    Off,
    /// Appended to; relative paths are resolved against the config's directory.
    File(PathBuf),
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique; routes name it in `listeners`.
    pub name: String,
    /// The address to bind.
    pub address: SocketAddr,
    /// What the listener speaks.
    pub kind: ListenerKind,
    /// Where the entry was written.
    pub origin: Origin,
}

/// What a listener does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain HTTP, routes served.
    Plain,
    /// TLS terminated here, certificate chosen by SNI.
    Tls,
    /// Plain HTTP that only answers 308 to the https URL.
    RedirectHttps,
}

/// A TLS protocol version, `min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// The version as config spells it: "1.2" or "1.3".
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The oldest version offered to clients.
    pub min_version: TlsVersion,
    /// Refuse the handshake for a server name no certificate covers, instead
    /// of serving the default certificate.
    pub strict_sni: bool,
    /// `[[tls.certificates]]`, in file order; the first is the default.
    pub certificates: Vec<Certificate>,
    /// `hsts`: the Strict-Transport-Security value sent on every response of
    /// a TLS listener; None (`hsts = ""`): not sent.
    pub hsts: Option<HeaderValue>,
    /// `client_ca`: a PEM file of the CA(s) client certificates are verified
    /// against; with it, TLS listeners ask for (never require) a certificate.
    pub client_ca: Option<ClientCa>,
}

/// `[tls] client_ca`, and where it was written (for file errors at load).
#[derive(Debug, Clone)]
pub struct ClientCa {
    /// The PEM file.
    pub path: PathBuf,
    /// Where `client_ca` was written.
    pub origin: Origin,
}

/// One `[[tls.certificates]]` entry.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The SNI names it is served for.
    pub server_names: Vec<HostPattern>,
    /// Its files.
    pub source: CertificateSource,
    /// Where the entry was written.
    pub origin: Origin,
}

/// Where a certificate and its key are read from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// A PEM chain and a PEM key, `cert` and `key`.
    Pem {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A PKCS#12 (PFX) or JKS file, told apart by content.
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// The environment variable holding the password; none = empty password.
        password_env: Option<String>,
        /// The key entry to use when the store holds several.
        alias: Option<String>,
    },
}

impl Certificate {
    /// The files this certificate is loaded from, to watch for renewal.
    pub fn source_files(&self) -> Vec<&std::path::Path> {
        match &self.source {
            CertificateSource::Pem { cert, key } => vec![cert.as_path(), key.as_path()],
            CertificateSource::Keystore { path, .. } => vec![path.as_path()],
        }
    }

    /// The file to name in messages and the route table.
    pub fn display_path(&self) -> std::path::Display<'_> {
        match &self.source {
            CertificateSource::Pem { cert, .. } => cert.display(),
            CertificateSource::Keystore { path, .. } => path.display(),
        }
    }
}

/// How the gateway talks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS, the upstream's certificate verified.
    Https,
}

/// One `[upstreams.NAME]` table.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The table's key.
    pub name: String,
    /// `url`, as written; with `servers`, the first of them.
    pub url: String,
    /// From the URL's scheme; every server of a pool has the same.
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets), used to connect and as SNI.
    pub host: String,
    /// From the URL, or the scheme's default.
    pub port: u16,
    /// `servers`, or `url` as a pool of one; never empty.
    pub servers: Vec<ServerAddress>,
    /// `balance`.
    pub balance: Balance,
    /// `hash_key`, only with `balance = "hash"`.
    pub hash_key: Option<HashKey>,
    /// `resolve_interval`: host names among the servers are resolved again this often.
    pub resolve_interval: Duration,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `read_timeout`.
    pub read_timeout: Duration,
    /// `write_timeout`.
    pub write_timeout: Duration,
    /// How long an idle pooled connection to the upstream is kept for reuse.
    pub idle_timeout: Duration,
    /// Extra CA bundle for verifying an https upstream.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and key presented to an https upstream (mTLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Active health check, `[upstreams.NAME.health]`.
    pub health: Option<HealthCheck>,
    /// The gateway reports itself down (`/health`, `/health/ready`: 503)
    /// while this upstream is.
    pub required: bool,
    /// Where the table was written.
    pub origin: Origin,
}

/// One entry of `[upstreams.NAME] servers` (or its `url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// As written.
    pub url: String,
    /// Host name or IP literal (without brackets); a name may stand for
    /// several servers, one per address it resolves to.
    pub host: String,
    /// From the URL, or the scheme's default.
    pub port: u16,
}

/// `[upstreams.NAME] balance`: how a pool's server is chosen per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// `"round_robin"`: each server in turn.
    #[default]
    RoundRobin,
    /// `"least_requests"`: the server with the fewest requests in flight.
    LeastRequests,
    /// `"hash"`: consistent hashing on `hash_key`.
    Hash,
}

impl Balance {
    /// The name as written in gateway.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequests => "least_requests",
            Balance::Hash => "hash",
        }
    }
}

/// `[upstreams.NAME] hash_key`: what `balance = "hash"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `"cookie:NAME"`: the value of that cookie.
    Cookie(String),
    /// `"header:NAME"`: the value of that header (name lower-cased).
    Header(String),
    /// `"client"`: the client's address (after `trusted_proxies`).
    Client,
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Client => f.write_str("client"),
        }
    }
}

/// `[upstreams.NAME.health]`: an active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Requested with GET; a 2xx or 3xx answer is healthy.
    pub path: String,
    /// Time between two checks.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Successes in a row that bring an unhealthy upstream back.
    pub healthy_threshold: u32,
    /// Failures in a row that take a healthy upstream out.
    pub unhealthy_threshold: u32,
}

/// What a route forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// The upstream with this name.
    Upstream(String),
    /// One of the gateway's own endpoints.
    Service(Service),
    /// `deny = true` with nothing to forward to.
    Nothing,
}

/// The gateway's built-in endpoints, served behind the same route policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Prometheus text exposition.
    Metrics,
    /// `/`, `/live`, `/ready`.
    Health,
    /// `/config`, `/info`, `POST /reload`.
    Admin,
}

impl Service {
    /// The service as config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Service::Metrics => "metrics",
            Service::Health => "health",
            Service::Admin => "admin",
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique; named in errors, logs and metrics.
    pub name: String,
    /// `host`; None: any host.
    pub host: Option<HostPattern>,
    /// Canonical, no trailing slash except for "/".
    pub path_prefix: String,
    /// Forward the path without the prefix.
    pub strip_prefix: bool,
    /// Forward double encoding (`%25` and two hex digits) instead of
    /// refusing it: for a backend that decodes a path exactly once.
    pub allow_encoded_percent: bool,
    /// `upstream`, `service`, or nothing.
    pub target: RouteTarget,
    /// `allow`: the sources that may use the route; None: any.
    pub allow: Option<Allowlist>,
    /// `deny = true`: every request gets 403.
    pub deny: bool,
    /// `auth`: keys of `[auth]`, run in this order; empty: no authentication.
    pub auth: Vec<String>,
    /// `require`: claims the verified token must carry.
    pub require: Option<Require>,
    /// `forward_client_cert`: the verified client certificate goes upstream
    /// as RFC 9440 `Client-Cert` / `Client-Cert-Chain`.
    pub forward_client_cert: bool,
    /// A key of `[limits]`.
    pub limit: Option<String>,
    /// Overrides `[gateway] max_body_size` for this route.
    pub max_body_size: Option<u64>,
    /// Overrides `[gateway] request_buffer` for this route.
    pub request_buffer: Option<u64>,
    /// `response_headers`: set on every response, replacing any value the
    /// upstream sent; in file order, names lower-cased and unique.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `remove_response_headers`: removed from every response.
    pub remove_response_headers: Vec<HeaderName>,
    /// None: every listener that serves routes.
    pub listeners: Option<Vec<String>>,
    /// Where the entry was written.
    pub origin: Origin,
}

/// A named authenticator, `[auth.NAME]`.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The table's key.
    pub name: String,
    /// JWT or basic, with its settings.
    pub kind: AuthKind,
    /// Where the table was written.
    pub origin: Origin,
}

/// A route's `require = { CLAIM_PATH = [VALUES] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Require {
    /// (dotted claim path, values that must all be in that claim), in file order.
    pub claims: Vec<(String, Vec<String>)>,
    /// Where `require` was written.
    pub origin: Origin,
}

/// The kind of an authenticator, `type`.
#[derive(Debug, Clone)]
pub enum AuthKind {
    /// `type = "jwt"`.
    Jwt(JwtSettings),
    /// `type = "basic"`.
    Basic(BasicSettings),
    /// `type = "introspection"`.
    Introspection(IntrospectionSettings),
    /// `type = "client_cert"`.
    ClientCert(ClientCertSettings),
}

impl AuthKind {
    /// The `type` as written.
    pub fn name(&self) -> &'static str {
        match self {
            AuthKind::Jwt(_) => "jwt",
            AuthKind::Basic(_) => "basic",
            AuthKind::Introspection(_) => "introspection",
            AuthKind::ClientCert(_) => "client_cert",
        }
    }

    /// Whether a pass comes with token claims a route's `require` can read.
    pub fn carries_claims(&self) -> bool {
        match self {
            AuthKind::Jwt(_) | AuthKind::Introspection(_) => true,
            AuthKind::Basic(_) | AuthKind::ClientCert(_) => false,
        }
    }
}

/// The settings of a `type = "client_cert"` authenticator: which verified
/// client certificates pass. Both empty: any certificate `client_ca` verified.
#[derive(Debug, Clone, Default)]
pub struct ClientCertSettings {
    /// Exact subject DNs, as RFC 4514 strings ("CN=ops-admin,O=Example").
    pub subjects: Vec<String>,
    /// Subject alternative names (DNS, email or URI); any one matching passes.
    pub sans: Vec<String>,
    /// (field, lower-case header) pairs set on the forwarded request; the
    /// field is `subject`.
    pub claims_to_headers: Vec<(String, String)>,
}

/// The settings of a `type = "introspection"` authenticator (RFC 7662).
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    /// The IdP's introspection endpoint.
    pub url: String,
    /// The gateway's client id at the IdP (HTTP basic user).
    pub client_id: String,
    /// The environment variable holding the client secret.
    pub client_secret_env: String,
    /// Active tokens must name one of these in `aud`; empty: not checked.
    pub audiences: Vec<String>,
    /// The `iss` active tokens must carry, if set.
    pub issuer: Option<String>,
    /// The longest an active answer is reused.
    pub cache_ttl: Duration,
    /// A PEM CA bundle trusted for the endpoint, beside the system roots.
    pub ca: Option<PathBuf>,
}

/// Where a JWT authenticator gets its verification keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// A JWK Set fetched over HTTP(S) and refreshed.
    JwksUrl(String),
    /// The JWK Set named by `{issuer}/.well-known/openid-configuration`.
    Discovery,
    /// PEM public keys or JWK Set files.
    Files(Vec<PathBuf>),
    /// An HMAC secret taken from this environment variable.
    SecretEnv(String),
}

/// The settings of a `type = "jwt"` authenticator.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Where verification keys come from.
    pub keys: JwtKeySource,
    /// The `iss` tokens must carry, if set.
    pub issuer: Option<String>,
    /// Tokens must name one of these in `aud`; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Upper-case JWS names ("RS256"); never "none".
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Claims every token must carry.
    pub required_claims: Vec<String>,
    /// Also read the token from this cookie (Domino's is "KeepToken").
    pub cookie: Option<String>,
    /// (claim, header) pairs set on the forwarded request.
    pub claims_to_headers: Vec<(String, String)>,
    /// How often a JWK Set is fetched again.
    pub refresh_interval: Duration,
    /// The least time between two fetches caused by unknown `kid`s.
    pub refetch_cooldown: Duration,
    /// A PEM CA bundle trusted for fetching keys, beside the system roots.
    pub ca: Option<PathBuf>,
}

/// One basic-auth account: the user, the hash as written, and where.
#[derive(Debug, Clone)]
pub struct BasicUser {
    /// The user name.
    pub user: String,
    /// The password hash, as written.
    pub hash: String,
    /// Where the account was written.
    pub origin: Origin,
}

/// The settings of a `type = "basic"` authenticator.
#[derive(Debug, Clone)]
pub struct BasicSettings {
    /// The realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// Accounts written in the config.
    pub users: Vec<BasicUser>,
    /// An htpasswd file with more accounts.
    pub htpasswd: Option<PathBuf>,
    /// Failures from one source before it must wait.
    pub max_failures: u32,
    /// The first wait; each further failure doubles it up to `backoff_max`.
    pub backoff_initial: Duration,
    /// The longest wait.
    pub backoff_max: Duration,
    /// How long a successful verification is remembered.
    pub cache_ttl: Duration,
}
