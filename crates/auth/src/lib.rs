//! Postern's authenticators, as plain Rust that knows nothing of Pingora.
//!
//! A route names an `[auth.NAME]`; the gateway asks it for a [`Verdict`] on
//! the request's credentials and forwards nothing unless it is
//! [`Verdict::Allow`]. Three kinds exist:
//!
//! * [`jwt::JwtAuthenticator`]: bearer tokens checked against a JWKS (fetched
//!   and rotated, see [`jwks`]), static public keys, or a shared secret.
//! * [`introspection::IntrospectionAuthenticator`]: bearer tokens (opaque or
//!   not) judged by the IdP's RFC 7662 endpoint, answers cached.
//! * [`basic::BasicAuthenticator`]: user and password against argon2id or
//!   bcrypt hashes, with a success cache and per-source backoff, shared by
//!   every gateway instance through `[gateway] shared_store` when it is set.
//! * [`client_cert::ClientCertAuthenticator`]: the TLS client certificate
//!   verified during the handshake, by subject or SAN.
//!
//! A route runs an [`chain::AuthChain`]: its authenticators in order, then
//! its `require` ([`claims::Requirement`]) on the claims they verified.
//!
//! [`build`] turns a loaded config's authenticator into one, reporting
//! problems (unreadable keys, weak hashes, missing secrets) against the
//! config line that caused them.

pub mod backoff;
pub mod basic;
pub mod cache;
pub mod chain;
pub mod claims;
pub mod client_cert;
pub mod hashes;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod keys;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_config::{AuthKind, Authenticator as AuthConfig, Diagnostics, JwtKeySource, Origin};

pub use hashes::{hash_password, PasswordHash, HOW_TO_HASH};

/// Who the request was authenticated as, and the headers that says upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (basic) or `sub` claim (JWT); for logs.
    pub subject: String,
    /// (lower-case header name, value) pairs to set on the forwarded request.
    pub headers: Vec<(String, String)>,
    /// The verified token's claims (JWT, introspection), shared with the
    /// cache so `require` and `claim:` rate-limit keys read them without
    /// parsing the token again.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl Identity {
    fn user(user: String) -> Self {
        Identity {
            subject: user,
            headers: Vec::new(),
            claims: None,
        }
    }
}

/// Why a request was refused, and how the gateway answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 400: the request cannot be judged (two Authorization headers).
    BadRequest {
        /// Why, for the log and the metrics label.
        reason: &'static str,
    },
    /// 401 with this `WWW-Authenticate` value. `reason` is for the log.
    Unauthorized {
        /// The `WWW-Authenticate` value.
        challenge: String,
        /// Why, for the log and the metrics label.
        reason: &'static str,
    },
    /// 401 without `WWW-Authenticate` (no HTTP scheme asks for a TLS client
    /// certificate): the connection presented none.
    CertificateRequired {
        /// Why, for the log, the metrics label and the response body.
        reason: &'static str,
    },
    /// 403: the credentials are good but do not open this route.
    Forbidden {
        /// A `WWW-Authenticate` value to send with it, if any.
        challenge: Option<String>,
        /// Why, for the log and the metrics label.
        reason: &'static str,
    },
    /// 429 with `Retry-After`.
    TooManyRequests {
        /// How long the source must wait.
        retry_after: Duration,
        /// Why, for the log.
        reason: &'static str,
    },
}

impl Denial {
    /// A fixed phrase, for the log and the metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::BadRequest { reason }
            | Denial::Unauthorized { reason, .. }
            | Denial::CertificateRequired { reason }
            | Denial::Forbidden { reason, .. }
            | Denial::TooManyRequests { reason, .. } => reason,
        }
    }
}

/// An authenticator's decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are good: forward, as this identity.
    Allow(Identity),
    /// Refuse the request.
    Deny(Denial),
}

impl Verdict {
    /// Whether the request may be forwarded.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// The parts of a request an authenticator reads.
pub struct Credentials<'a> {
    /// The `Authorization` header's value, if any.
    pub authorization: Option<&'a [u8]>,
    /// Every `Cookie` header line.
    pub cookies: Vec<&'a [u8]>,
    /// The client the gateway decided the request comes from.
    pub client: IpAddr,
    /// The connection's client certificate, verified during the handshake.
    pub client_certificate: Option<&'a client_cert::PresentedCertificate>,
}

/// One `[auth.NAME]` authenticator, built.
pub enum Authenticator {
    /// `type = "jwt"`.
    Jwt(Box<jwt::JwtAuthenticator>),
    /// `type = "basic"`.
    Basic(Box<basic::BasicAuthenticator>),
    /// `type = "client_cert"`.
    ClientCert(Box<client_cert::ClientCertAuthenticator>),
    /// `type = "introspection"`.
    Introspection(Box<introspection::IntrospectionAuthenticator>),
}

impl Authenticator {
    /// The `[auth]` key it was built from.
    pub fn name(&self) -> &str {
        match self {
            Authenticator::Jwt(a) => a.name(),
            Authenticator::Basic(a) => a.name(),
            Authenticator::ClientCert(a) => a.name(),
            Authenticator::Introspection(a) => a.name(),
        }
    }

    /// Whether a pass carries token claims a route's `require` can read.
    pub fn carries_claims(&self) -> bool {
        match self {
            Authenticator::Jwt(_) | Authenticator::Introspection(_) => true,
            Authenticator::Basic(_) => false,
            Authenticator::ClientCert(_) => false,
        }
    }

    /// Decides on a request's credentials.
    pub async fn check(&self, credentials: &Credentials<'_>) -> Verdict {
        match self {
            Authenticator::Jwt(a) => {
                a.check(credentials.authorization, &credentials.cookies)
                    .await
            }
            Authenticator::Basic(a) => a.check(credentials.authorization, credentials.client).await,
            Authenticator::ClientCert(a) => a.check(credentials.client_certificate),
            Authenticator::Introspection(a) => a.check(credentials.authorization).await,
        }
    }

    /// Request headers only this authenticator may set upstream.
    pub fn owned_headers(&self) -> Vec<String> {
        match self {
            Authenticator::Jwt(a) => a.owned_headers().map(str::to_string).collect(),
            Authenticator::Basic(_) | Authenticator::Introspection(_) => Vec::new(),
            Authenticator::ClientCert(a) => a.owned_headers().map(str::to_string).collect(),
        }
    }
}

/// Builds an authenticator from config, reading key files, htpasswd files
/// and secrets. `env` looks up environment variables (a parameter so tests
/// need not touch the process environment). A basic authenticator counts
/// its failures in `shared_store` too, when there is one.
pub fn build(
    config: &AuthConfig,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
    shared_store: Option<&Arc<postern_limits::SharedStore>>,
) -> Option<Authenticator> {
    match &config.kind {
        AuthKind::Jwt(settings) => {
            build_jwt(config, settings, env, diags).map(|a| Authenticator::Jwt(Box::new(a)))
        }
        AuthKind::Basic(settings) => build_basic(config, settings, diags, shared_store)
            .map(|a| Authenticator::Basic(Box::new(a))),
        AuthKind::ClientCert(settings) => Some(Authenticator::ClientCert(Box::new(
            client_cert::ClientCertAuthenticator::new(client_cert::ClientCertSpec {
                name: config.name.clone(),
                subjects: settings.subjects.clone(),
                sans: settings.sans.clone(),
                claims_to_headers: settings.claims_to_headers.clone(),
            }),
        ))),
        AuthKind::Introspection(settings) => build_introspection(config, settings, env, diags)
            .map(|a| Authenticator::Introspection(Box::new(a))),
    }
}

/// An HTTP client trusting the system roots and, if given, a PEM CA file.
fn http_client(
    builder: reqwest::ClientBuilder,
    ca: Option<&std::path::Path>,
) -> Option<reqwest::Client> {
    let mut builder = builder;
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).ok()?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => {
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            _ => return None,
        }
    }
    builder.build().ok()
}

fn build_introspection(
    config: &AuthConfig,
    settings: &postern_config::IntrospectionSettings,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Option<introspection::IntrospectionAuthenticator> {
    let at = &config.origin;
    let var = &settings.client_secret_env;
    let Some(secret) = env(var).filter(|s| !s.is_empty()) else {
        diags.error_with_help(
            at,
            format!(
                "[auth.{}]: environment variable {var} (client_secret_env) is not set",
                config.name
            ),
            format!("export {var} with the client secret the IdP gave client {:?} before starting the gateway", settings.client_id),
        );
        return None;
    };
    let builder = reqwest::Client::builder()
        .timeout(introspection::CALL_TIMEOUT)
        .connect_timeout(introspection::CALL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let Some(client) = http_client(builder, settings.ca.as_deref()) else {
        diags.error_with_help(
            at,
            format!("[auth.{}]: cannot set up the introspection client (is `ca` a PEM certificate file?)", config.name),
            "give `ca` as a PEM file of the CA that signed the IdP's certificate, or remove it",
        );
        return None;
    };
    Some(introspection::IntrospectionAuthenticator::new(
        introspection::IntrospectionSpec {
            name: config.name.clone(),
            url: settings.url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: secret,
            audiences: settings.audiences.clone(),
            issuer: settings.issuer.clone(),
            cache_ttl: settings.cache_ttl,
            client,
        },
    ))
}

fn build_jwt(
    config: &AuthConfig,
    settings: &postern_config::JwtSettings,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Option<jwt::JwtAuthenticator> {
    let at = &config.origin;
    let algorithms: Vec<_> = settings
        .algorithms
        .iter()
        .filter_map(|a| jwt::parse_algorithm(a))
        .collect();
    let remote = |endpoint: jwks::Endpoint| -> Option<jwt::KeySource> {
        let client = http_client(jwks::RemoteKeys::client_builder(), settings.ca.as_deref())?;
        Some(jwt::KeySource::Remote(Arc::new(jwks::RemoteKeys::new(
            &config.name,
            endpoint,
            client,
            settings.refresh_interval,
            settings.refetch_cooldown,
        ))))
    };
    let keys = match &settings.keys {
        JwtKeySource::JwksUrl(_) | JwtKeySource::Discovery => {
            let endpoint = match (&settings.keys, &settings.issuer) {
                (JwtKeySource::JwksUrl(url), _) => jwks::Endpoint::Jwks(url.clone()),
                (_, Some(issuer)) => jwks::Endpoint::Discovery(issuer.clone()),
                (_, None) => return None,
            };
            match remote(endpoint) {
                Some(source) => source,
                None => {
                    diags.error_with_help(
                        at,
                        format!("[auth.{}]: cannot set up the JWKS client (is `ca` a PEM certificate file?)", config.name),
                        "give `ca` as a PEM file of the CA that signed the IdP's certificate, or remove it",
                    );
                    return None;
                }
            }
        }
        JwtKeySource::Files(paths) => {
            let mut set = keys::KeySet::default();
            for path in paths {
                let parsed = std::fs::read(path)
                    .map_err(|e| format!("cannot be read: {e}"))
                    .and_then(|bytes| keys::parse_key_file(&bytes));
                match parsed {
                    Ok(found) => {
                        set.keys.extend(found.keys);
                        set.withheld.extend(found.withheld);
                    }
                    Err(e) => diags.error_with_help(
                        at,
                        format!("[auth.{}]: key file {} {e}", config.name, path.display()),
                        "give PEM public keys (-----BEGIN PUBLIC KEY-----) or a JWK Set file, as the IdP publishes them",
                    ),
                }
            }
            for alg in &algorithms {
                if !set.keys.iter().any(|k| k.fits(*alg)) && !set.keys.is_empty() {
                    diags.error_with_help(
                        at,
                        format!("[auth.{}]: no key in `keys` can verify {alg:?}", config.name),
                        "list only the algorithms the keys are for (RSA: RS*/PS*, EC: ES*, Ed25519: EdDSA)",
                    );
                }
            }
            jwt::KeySource::Static(Arc::new(set))
        }
        JwtKeySource::SecretEnv(var) => {
            let Some(secret) = env(var).filter(|s| !s.is_empty()) else {
                diags.error_with_help(
                    at,
                    format!(
                        "[auth.{}]: environment variable {var} (secret_env) is not set",
                        config.name
                    ),
                    format!("export {var} with the shared HMAC secret before starting the gateway"),
                );
                return None;
            };
            match keys::secret_key(secret.as_bytes(), &algorithms) {
                Ok(set) => jwt::KeySource::Static(Arc::new(set)),
                Err(e) => {
                    // Never echo the secret itself.
                    diags.error_with_help(
                        at,
                        format!("[auth.{}]: the secret in {var} {e}", config.name),
                        "use a random secret, e.g. `openssl rand -base64 48`",
                    );
                    return None;
                }
            }
        }
    };
    Some(jwt::JwtAuthenticator::new(jwt::JwtSpec {
        name: config.name.clone(),
        keys,
        issuer: settings.issuer.clone(),
        audiences: settings.audiences.clone(),
        algorithms,
        leeway: settings.leeway,
        required_claims: settings.required_claims.clone(),
        cookie: settings.cookie.clone(),
        claims_to_headers: settings.claims_to_headers.clone(),
    }))
}

/// A line of a file other than the config (an htpasswd file), as an origin.
fn file_line(path: &std::path::Path, line: usize) -> Origin {
    Origin::File {
        path: Arc::from(path.display().to_string()),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: 1,
    }
}

fn build_basic(
    config: &AuthConfig,
    settings: &postern_config::BasicSettings,
    diags: &mut Diagnostics,
    shared_store: Option<&Arc<postern_limits::SharedStore>>,
) -> Option<basic::BasicAuthenticator> {
    let mut accounts = Vec::new();
    // The hashes as written: what every instance keys the shared backoff with.
    let mut written = Vec::new();
    let mut ok = true;
    for user in &settings.users {
        match PasswordHash::parse(&user.hash) {
            Ok(hash) => {
                accounts.push((user.user.clone(), hash));
                written.push(user.hash.clone());
            }
            Err(e) => {
                ok = false;
                diags.error_with_help(
                    &user.origin,
                    format!("the password of user {:?} {e}", user.user),
                    HOW_TO_HASH,
                );
            }
        }
    }
    if let Some(path) = &settings.htpasswd {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Err(e) => {
                ok = false;
                diags.error_with_help(
                    &config.origin,
                    format!(
                        "[auth.{}]: cannot read htpasswd file {shown}: {e}",
                        config.name
                    ),
                    "check the path and that the gateway's user can read it",
                );
            }
            Ok(text) => match hashes::parse_htpasswd(&text) {
                Err((line, e)) => {
                    ok = false;
                    diags.error_with_help(
                        &file_line(path, line),
                        format!("[auth.{}]: line {line} {e}", config.name),
                        "each line is `user:hash`, as `htpasswd -B` writes it",
                    );
                }
                Ok(entries) => {
                    for entry in entries {
                        match PasswordHash::parse(&entry.hash) {
                            Ok(hash) => {
                                accounts.push((entry.user, hash));
                                written.push(entry.hash);
                            }
                            Err(e) => {
                                ok = false;
                                diags.error_with_help(
                                    &file_line(path, entry.line),
                                    format!(
                                        "[auth.{}]: the password of user {:?} {e}",
                                        config.name, entry.user
                                    ),
                                    HOW_TO_HASH,
                                );
                            }
                        }
                    }
                }
            },
        }
    }
    if !ok {
        return None;
    }
    let built = basic::BasicAuthenticator::new(basic::BasicSpec {
        name: config.name.clone(),
        realm: settings.realm.clone(),
        accounts,
        cache_ttl: settings.cache_ttl,
        backoff: backoff::BackoffPolicy {
            max_failures: settings.max_failures,
            initial: settings.backoff_initial,
            max: settings.backoff_max,
        },
        shared_backoff: shared_store.map(|store| {
            backoff::SharedBackoff::new(
                Arc::clone(store),
                &config.name,
                written.iter().map(String::as_str),
            )
        }),
    });
    if built.is_none() {
        diags.error_with_help(
            &config.origin,
            format!("[auth.{}] has no accounts", config.name),
            "add users = { admin = \"<hash from `postern hash-password`>\" } or an htpasswd file with at least one line",
        );
    }
    built
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: accounts, hashes and keys stay out of debug output.
        let kind = match self {
            Authenticator::Jwt(_) => "jwt",
            Authenticator::Basic(_) => "basic",
            Authenticator::ClientCert(_) => "client_cert",
            Authenticator::Introspection(_) => "introspection",
        };
        write!(f, "Authenticator({kind} {:?})", self.name())
    }
}
