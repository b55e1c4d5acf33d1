//! Reading the layered tree into the typed [`Config`], and checking that the
//! pieces fit together (names referenced exist, no two routes collide, files
//! are there). Every problem found is reported, not just the first.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postern_policy::host::HostPattern;
use postern_policy::path::canonicalize;
use postern_policy::source::Allowlist;

use crate::diag::{nearest, Diagnostics, Origin};
use crate::duration::parse_duration;
use crate::model::*;
use crate::tree::{self, Node, Table, Value};

const TOP_LEVEL: &[&str] = &["gateway", "listeners", "tls", "upstreams", "auth", "routes"];
const GATEWAY_KEYS: &[&str] = &[
    "threads",
    "trusted_proxies",
    "access_log",
    "max_header_size",
    "max_body_size",
    "upgrade_socket",
    "client_header_timeout",
    "client_body_timeout",
    "keepalive_timeout",
];
const LISTENER_KEYS: &[&str] = &["name", "address", "tls", "redirect_https"];
const TLS_KEYS: &[&str] = &["min_version", "strict_sni", "certificates"];
const CERTIFICATE_KEYS: &[&str] = &[
    "server_names",
    "cert",
    "key",
    "keystore",
    "password_env",
    "alias",
];
/// Durations that may be zero.
const ZERO_ALLOWED: &[&str] = &["leeway", "cache_ttl"];
const JWT_KEYS: &[&str] = &[
    "type",
    "issuer",
    "jwks_url",
    "keys",
    "secret_env",
    "audiences",
    "algorithms",
    "leeway",
    "required_claims",
    "cookie",
    "claims_to_headers",
    "refresh_interval",
    "refetch_cooldown",
    "ca",
];
const BASIC_KEYS: &[&str] = &[
    "type",
    "realm",
    "users",
    "htpasswd",
    "max_failures",
    "backoff_initial",
    "backoff_max",
    "cache_ttl",
];
/// JWS algorithms a key can verify; "none" is deliberately absent.
const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];
/// Headers a claim may never be copied into: the gateway's own, framing, and credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-request-id",
];
const UPSTREAM_KEYS: &[&str] = &[
    "url",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "idle_timeout",
    "ca",
    "client_cert",
    "client_key",
    "health",
    "required",
];
const HEALTH_KEYS: &[&str] = &[
    "path",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
];
const ROUTE_KEYS: &[&str] = &[
    "name",
    "host",
    "path_prefix",
    "strip_prefix",
    "upstream",
    "service",
    "auth",
    "allow",
    "deny",
    "listeners",
    "max_body_size",
];

/// Every key the loader accepts, by section, so documentation can be
/// checked against the parser (see tests/docs.rs).
pub fn accepted_keys() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("top level", TOP_LEVEL),
        ("[gateway]", GATEWAY_KEYS),
        ("[[listeners]]", LISTENER_KEYS),
        ("[tls]", TLS_KEYS),
        ("[[tls.certificates]]", CERTIFICATE_KEYS),
        ("[upstreams.NAME]", UPSTREAM_KEYS),
        ("[upstreams.NAME.health]", HEALTH_KEYS),
        ("[auth.NAME] type = \"jwt\"", JWT_KEYS),
        ("[auth.NAME] type = \"basic\"", BASIC_KEYS),
        ("[[routes]]", ROUTE_KEYS),
    ]
}

/// A loaded configuration and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration, valid.
    pub config: Config,
    /// Warnings found while loading it (no errors: those fail the load).
    pub warnings: Diagnostics,
}

/// Loads `path`, the `gateway.d/*.toml` files beside it, and `POSTERN_*`
/// overrides from `env`. Returns every error found, or the config.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, Diagnostics> {
    let mut diags = Diagnostics::default();
    let main_name: Arc<str> = Arc::from(path.display().to_string());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.error_with_help(
                &Origin::file_start(&main_name),
                format!("cannot read the config file: {e}"),
                "pass the file with -c FILE, set POSTERN_CONFIG, or run from the directory that holds gateway.toml",
            );
            return Err(diags);
        }
    };
    let mut root = tree::parse_file(&main_name, &text, &mut diags).unwrap_or_default();

    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let overlays = overlay_files(&base_dir, &main_name, &mut diags);
    for overlay in &overlays {
        let name: Arc<str> = Arc::from(overlay.display().to_string());
        match std::fs::read_to_string(overlay) {
            Ok(text) => {
                if let Some(table) = tree::parse_file(&name, &text, &mut diags) {
                    root.merge(table);
                }
            }
            Err(e) => diags.error(
                &Origin::file_start(&name),
                format!("cannot read this overlay: {e}"),
            ),
        }
    }
    tree::apply_env(&mut root, env, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }

    let mut reader = Reader {
        diags: &mut diags,
        base_dir: &base_dir,
        main: Origin::file_start(&main_name),
        refused_upstreams: HashSet::new(),
        refused_listeners: HashSet::new(),
        refused_auth: HashSet::new(),
    };
    let config = reader.config(&root, path.to_path_buf(), overlays);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(Loaded {
            config,
            warnings: diags,
        })
    }
}

fn overlay_files(base_dir: &Path, main_name: &Arc<str>, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let dir = base_dir.join("gateway.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.error(
                &Origin::file_start(main_name),
                format!("cannot read the overlay directory {}: {e}", dir.display()),
            );
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
}

struct Reader<'d> {
    diags: &'d mut Diagnostics,
    base_dir: &'d Path,
    main: Origin,
    /// Names whose definition was refused (already reported), so references
    /// to them are not reported again as undefined.
    refused_upstreams: HashSet<String>,
    refused_listeners: HashSet<String>,
    refused_auth: HashSet<String>,
}

/// The keys of one table, read one by one; what is left over is unknown.
struct Fields<'a> {
    table: &'a Table,
    section: String,
    known: &'static [&'static str],
    read: HashSet<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(table: &'a Table, section: impl Into<String>, known: &'static [&'static str]) -> Self {
        Fields {
            table,
            section: section.into(),
            known,
            read: HashSet::new(),
        }
    }

    fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        debug_assert!(self.known.contains(&key), "{key} missing from known keys");
        self.read.insert(key);
        self.table.get(key)
    }

    fn typed<T>(
        &mut self,
        key: &'static str,
        want: &str,
        diags: &mut Diagnostics,
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Option<(T, &'a Origin)> {
        let node = self.node(key)?;
        match pick(&node.value) {
            Some(v) => Some((v, &node.origin)),
            None => {
                diags.error(
                    &node.origin,
                    format!(
                        "`{key}` in {} must be {want}, not {}",
                        self.section,
                        node.value.type_name()
                    ),
                );
                None
            }
        }
    }

    fn string(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(&'a str, &'a Origin)> {
        self.typed(key, "a string", diags, |v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// A string that must be there: missing is reported at `at`, the table.
    fn required_string(
        &mut self,
        key: &'static str,
        at: &Origin,
        example: &str,
        diags: &mut Diagnostics,
    ) -> Option<(&'a str, &'a Origin)> {
        if self.table.get(key).is_none() {
            self.read.insert(key);
            diags.error_with_help(
                at,
                format!("{} needs `{key}`", self.section),
                format!("add e.g. {example}"),
            );
            return None;
        }
        self.string(key, diags)
    }

    fn boolean(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(bool, &'a Origin)> {
        self.typed(key, "true or false", diags, |v| match v {
            Value::Boolean(b) => Some(*b),
            _ => None,
        })
    }

    fn integer(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<(i64, &'a Origin)> {
        if let Some(Node {
            value: Value::IntegerOutOfRange,
            origin,
        }) = self.table.get(key)
        {
            self.read.insert(key);
            diags.error(
                origin,
                format!("`{key}` in {} is out of range", self.section),
            );
            return None;
        }
        self.typed(key, "an integer", diags, |v| match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        })
    }

    fn strings(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(Vec<(&'a str, &'a Origin)>, &'a Origin)> {
        let section = self.section.clone();
        let (items, origin) = self.typed(key, "an array of strings", diags, |v| match v {
            Value::Array(items) => Some(items),
            _ => None,
        })?;
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Value::String(s) => out.push((s.as_str(), &item.origin)),
                other => diags.error(
                    &item.origin,
                    format!(
                        "`{key}` in {section} must hold strings, not {}",
                        other.type_name()
                    ),
                ),
            }
        }
        Some((out, origin))
    }

    fn tables(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Vec<(&'a Table, &'a Origin)> {
        let section = self.section.clone();
        let Some((items, _)) = self.typed(key, "an array of tables", diags, |v| match v {
            Value::Array(items) => Some(items),
            _ => None,
        }) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Table(t) => Some((t, &item.origin)),
                other => {
                    diags.error(
                        &item.origin,
                        format!(
                            "`{key}` in {section} must hold tables, not {}",
                            other.type_name()
                        ),
                    );
                    None
                }
            })
            .collect()
    }

    fn table(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(&'a Table, &'a Origin)> {
        self.typed(key, "a table", diags, |v| match v {
            Value::Table(t) => Some(t),
            _ => None,
        })
    }

    fn size(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<u64> {
        let (text, origin) = self.string(key, diags)?;
        match crate::size::parse_size(text) {
            Ok(size) => Some(size),
            Err(message) => {
                diags.error(origin, format!("`{key}`: {message}"));
                None
            }
        }
    }

    fn duration(
        &mut self,
        key: &'static str,
        default: Duration,
        diags: &mut Diagnostics,
    ) -> Duration {
        match self.string(key, diags) {
            Some((text, origin)) => match parse_duration(text) {
                // A tolerance may be zero; a timeout or interval may not.
                Ok(d) if d.is_zero() && !ZERO_ALLOWED.contains(&key) => {
                    diags.error(origin, format!("`{key}` must be longer than zero"));
                    default
                }
                Ok(d) => d,
                Err(message) => {
                    diags.error(origin, format!("`{key}`: {message}"));
                    default
                }
            },
            None => default,
        }
    }

    /// Reports keys nobody read, with the nearest known key as the fix.
    fn finish(self, diags: &mut Diagnostics) {
        for (key, _) in &self.table.entries {
            if self.read.contains(key.name.as_str()) {
                continue;
            }
            let message = format!("unknown key `{}` in {}", key.name, self.section);
            match nearest(&key.name, self.known.iter().copied()) {
                Some(near) => {
                    diags.error_with_help(&key.origin, message, format!("did you mean `{near}`?"))
                }
                None => diags.error_with_help(
                    &key.origin,
                    message,
                    format!(
                        "the keys of {} are: {}",
                        self.section,
                        self.known.join(", ")
                    ),
                ),
            }
        }
    }
}

impl Reader<'_> {
    fn config(&mut self, root: &Table, file: PathBuf, overlays: Vec<PathBuf>) -> Config {
        let mut top = Fields::new(root, "the top level", TOP_LEVEL);
        let gateway = self.gateway(top.node("gateway"));
        let listener_tables = top.tables("listeners", self.diags);
        let tls_node = top.node("tls");
        let upstreams_node = top.node("upstreams");
        let auth_node = top.node("auth");
        let route_tables = top.tables("routes", self.diags);
        top.finish(self.diags);

        let listeners = self.listeners(&listener_tables);
        let tls = self.tls(tls_node);
        let upstreams = self.upstreams(upstreams_node);
        let auth = self.authenticators(auth_node);
        let routes: Vec<Route> = route_tables
            .iter()
            .enumerate()
            .filter_map(|(i, (t, origin))| self.route(i, t, origin))
            .collect();

        let config = Config {
            file,
            overlays,
            gateway,
            listeners,
            tls,
            upstreams,
            auth,
            routes,
        };
        self.cross_check(&config);
        config
    }

    fn gateway(&mut self, node: Option<&Node>) -> Gateway {
        let mut gateway = Gateway {
            threads: 2,
            trusted_proxies: Allowlist::default(),
            access_log: AccessLog::Stdout,
            max_header_size: 32 * 1024,
            max_body_size: None,
            upgrade_socket: PathBuf::from(DEFAULT_UPGRADE_SOCKET),
            client_timeouts: ClientTimeouts::default(),
        };
        let Some(table) = self.table(node, "[gateway]") else {
            return gateway;
        };
        let mut f = Fields::new(table, "[gateway]", GATEWAY_KEYS);
        if let Some((threads, origin)) = f.integer("threads", self.diags) {
            if (1..=1024).contains(&threads) {
                gateway.threads = threads as usize;
            } else {
                self.diags.error_with_help(
                    origin,
                    format!("`threads` = {threads} is out of range"),
                    "use 1 to 1024; one per CPU core is a good start",
                );
            }
        }
        if let Some((entries, _)) = f.strings("trusted_proxies", self.diags) {
            gateway.trusted_proxies = self.allowlist(&entries, "trusted_proxies");
        }
        if let Some(size) = f.size("max_header_size", self.diags) {
            if size < 1024 {
                self.diags.error_with_help(
                    &table.get("max_header_size").expect("read above").origin,
                    "`max_header_size` below 1KB would refuse ordinary browsers",
                    "use e.g. \"32KB\" (the default)",
                );
            }
            gateway.max_header_size = size;
        }
        gateway.max_body_size = f.size("max_body_size", self.diags);
        if let Some((log, at)) = f.string("access_log", self.diags) {
            gateway.access_log = match log {
                "stdout" => AccessLog::Stdout,
                "off" => AccessLog::Off,
                "" => {
                    self.diags.error_with_help(
                        at,
                        "`access_log` is empty",
                        "use \"stdout\", \"off\" or a file path",
                    );
                    AccessLog::Stdout
                }
                path => AccessLog::File(self.base_dir.join(path)),
            };
        }
        if let Some((socket, at)) = f.string("upgrade_socket", self.diags) {
            if socket.is_empty() {
                self.diags.error_with_help(
                    at,
                    "`upgrade_socket` is empty",
                    format!("use a path such as {DEFAULT_UPGRADE_SOCKET:?} (the default)"),
                );
            } else {
                gateway.upgrade_socket = self.base_dir.join(socket);
            }
        }
        let defaults = ClientTimeouts::default();
        gateway.client_timeouts = ClientTimeouts {
            header: f.duration("client_header_timeout", defaults.header, self.diags),
            body: f.duration("client_body_timeout", defaults.body, self.diags),
            keepalive: f.duration("keepalive_timeout", defaults.keepalive, self.diags),
        };
        f.finish(self.diags);
        gateway
    }

    fn table<'a>(&mut self, node: Option<&'a Node>, section: &str) -> Option<&'a Table> {
        let node = node?;
        match &node.value {
            Value::Table(t) => Some(t),
            other => {
                self.diags.error(
                    &node.origin,
                    format!("{section} must be a table, not {}", other.type_name()),
                );
                None
            }
        }
    }

    fn allowlist(&mut self, entries: &[(&str, &Origin)], key: &str) -> Allowlist {
        let mut good = Vec::new();
        for (entry, origin) in entries {
            match Allowlist::parse_entry(entry) {
                Ok(_) => good.push(*entry),
                Err(e) => self.diags.error_with_help(
                    origin,
                    format!("`{key}`: {e}"),
                    "write CIDRs such as \"10.0.0.0/8\" or \"fd00::/8\", single addresses, or \"loopback\"",
                ),
            }
        }
        Allowlist::parse(good).expect("entries were checked one by one")
    }

    fn listeners(&mut self, tables: &[(&Table, &Origin)]) -> Vec<Listener> {
        let mut listeners = Vec::new();
        for (i, (table, origin)) in tables.iter().enumerate() {
            let section = format!("[[listeners]] #{}", i + 1);
            let mut f = Fields::new(table, section.clone(), LISTENER_KEYS);
            let name = f.required_string("name", origin, "name = \"https\"", self.diags);
            let address =
                f.required_string("address", origin, "address = \"0.0.0.0:443\"", self.diags);
            let tls = f.boolean("tls", self.diags);
            let redirect = f.boolean("redirect_https", self.diags);
            f.finish(self.diags);

            let address = address.and_then(|(text, at)| match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.diags.error_with_help(
                        at,
                        format!("listener address {text:?} is not IP:PORT"),
                        "write e.g. \"0.0.0.0:443\", \"127.0.0.1:9000\" or \"[::]:443\"",
                    );
                    None
                }
            });
            let kind = match (tls.map(|t| t.0), redirect) {
                (Some(true), Some((true, at))) => {
                    self.diags.error_with_help(
                        at,
                        "a listener cannot both terminate TLS and redirect to https",
                        "set `redirect_https = true` on the plain-HTTP listener only",
                    );
                    ListenerKind::Tls
                }
                (Some(true), _) => ListenerKind::Tls,
                (_, Some((true, _))) => ListenerKind::RedirectHttps,
                _ => ListenerKind::Plain,
            };
            if let (Some((name, _)), None) = (name, address) {
                self.refused_listeners.insert(name.to_string());
            }
            if let (Some((name, _)), Some(address)) = (name, address) {
                listeners.push(Listener {
                    name: name.to_string(),
                    address,
                    kind,
                    origin: (*origin).clone(),
                });
            }
        }
        listeners
    }

    fn tls(&mut self, node: Option<&Node>) -> Tls {
        let mut tls = Tls {
            min_version: TlsVersion::Tls12,
            strict_sni: false,
            certificates: Vec::new(),
        };
        let Some(table) = self.table(node, "[tls]") else {
            return tls;
        };
        let mut f = Fields::new(table, "[tls]", TLS_KEYS);
        if let Some((v, origin)) = f.string("min_version", self.diags) {
            match v {
                "1.2" => tls.min_version = TlsVersion::Tls12,
                "1.3" => tls.min_version = TlsVersion::Tls13,
                other => self.diags.error_with_help(
                    origin,
                    format!("`min_version` = {other:?} is not supported"),
                    "use \"1.2\" or \"1.3\"; older versions are unsafe and never offered",
                ),
            }
        }
        if let Some((strict, _)) = f.boolean("strict_sni", self.diags) {
            tls.strict_sni = strict;
        }
        let certs = f.tables("certificates", self.diags);
        f.finish(self.diags);
        for (i, (table, origin)) in certs.iter().enumerate() {
            if let Some(cert) = self.certificate(i, table, origin) {
                tls.certificates.push(cert);
            }
        }
        tls
    }

    fn certificate(&mut self, index: usize, table: &Table, origin: &Origin) -> Option<Certificate> {
        let section = format!("[[tls.certificates]] #{}", index + 1);
        let mut f = Fields::new(table, section.clone(), CERTIFICATE_KEYS);
        if table.get("server_names").is_none() {
            self.diags.error_with_help(
                origin,
                format!("{section} needs `server_names`"),
                "add e.g. server_names = [\"example.com\", \"*.example.com\"]",
            );
        }
        let names = f.strings("server_names", self.diags);
        let cert = f.string("cert", self.diags);
        let key = f.string("key", self.diags);
        let keystore = f.string("keystore", self.diags);
        let password_env = f.string("password_env", self.diags);
        let alias = f.string("alias", self.diags);
        f.finish(self.diags);

        let mut server_names = Vec::new();
        if let Some((names, at)) = &names {
            if names.is_empty() {
                self.diags.error_with_help(
                    at,
                    "`server_names` is empty",
                    "list the names this certificate serves, e.g. [\"example.com\", \"*.example.com\"]",
                );
            }
            for (name, at) in names {
                match HostPattern::parse(name) {
                    Ok(p) => server_names.push(p),
                    Err(e) => self.diags.error_with_help(
                        at,
                        format!("server name {name:?} is not a host name or wildcard: {e:?}"),
                        "write \"example.com\", \"*.example.com\" or an IP address",
                    ),
                }
            }
        }
        let source = match (cert, key, keystore) {
            (None, None, Some((path, at))) => {
                let path = self.existing_file(path, at, "keystore");
                CertificateSource::Keystore {
                    path: path?,
                    password_env: password_env.map(|(v, _)| v.to_string()),
                    alias: alias.map(|(a, _)| a.to_string()),
                }
            }
            (Some(_), _, Some((_, at))) | (_, Some(_), Some((_, at))) => {
                self.diags.error_with_help(
                    at,
                    format!("{section} has both `keystore` and `cert`/`key`"),
                    "use either keystore = \"server.pfx\" (PKCS#12 or JKS) or cert and key (PEM), not both",
                );
                return None;
            }
            (Some(cert), Some(key), None) => {
                for (name, given) in [("password_env", password_env), ("alias", alias)] {
                    if let Some((_, at)) = given {
                        self.diags.error_with_help(
                            at,
                            format!("`{name}` belongs to a keystore, and this certificate is PEM"),
                            format!("remove `{name}`; PEM keys must not be encrypted"),
                        );
                    }
                }
                let cert = self.existing_file(cert.0, cert.1, "cert");
                let key = self.existing_file(key.0, key.1, "key");
                CertificateSource::Pem {
                    cert: cert?,
                    key: key?,
                }
            }
            _ => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} needs both `cert` and `key`, or a `keystore`"),
                    "add cert = \"certs/fullchain.pem\" and key = \"certs/privkey.pem\", or keystore = \"certs/server.pfx\" with password_env",
                );
                return None;
            }
        };
        Some(Certificate {
            server_names,
            source,
            origin: origin.clone(),
        })
    }

    fn existing_file(&mut self, written: &str, origin: &Origin, key: &str) -> Option<PathBuf> {
        let path = self.base_dir.join(written);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(path),
            Ok(_) => {
                self.diags
                    .error(origin, format!("`{key}` = {written:?} is not a file"));
                None
            }
            Err(e) => {
                self.diags.error_with_help(
                    origin,
                    format!("`{key}` = {written:?}: cannot read {}: {e}", path.display()),
                    "relative paths are taken from the directory of the main config file",
                );
                None
            }
        }
    }

    fn upstreams(&mut self, node: Option<&Node>) -> Vec<Upstream> {
        let Some(table) = self.table(node, "[upstreams]") else {
            return Vec::new();
        };
        let mut upstreams = Vec::new();
        for (key, node) in &table.entries {
            let section = format!("[upstreams.{}]", key.name);
            let Some(t) = self.table(Some(node), &section) else {
                continue;
            };
            if !valid_name(&key.name) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("upstream name {:?} is not a plain name", key.name),
                    "use letters, digits, '-' and '_'",
                );
            }
            let mut f = Fields::new(t, section.clone(), UPSTREAM_KEYS);
            let url = f.required_string(
                "url",
                &node.origin,
                "url = \"http://127.0.0.1:8880\"",
                self.diags,
            );
            let connect_timeout = f.duration("connect_timeout", Duration::from_secs(2), self.diags);
            let read_timeout = f.duration("read_timeout", Duration::from_secs(60), self.diags);
            let write_timeout = f.duration("write_timeout", Duration::from_secs(60), self.diags);
            let idle_timeout = f.duration("idle_timeout", Duration::from_secs(60), self.diags);
            let required = f
                .boolean("required", self.diags)
                .is_some_and(|(required, _)| required);
            let ca = f.string("ca", self.diags);
            let client_cert = f.string("client_cert", self.diags);
            let client_key = f.string("client_key", self.diags);
            let health = f
                .table("health", self.diags)
                .and_then(|(t, at)| self.health_check(t, at, &section));
            f.finish(self.diags);

            let Some((scheme, host, port)) = url.and_then(|(url, at)| self.upstream_url(url, at))
            else {
                self.refused_upstreams.insert(key.name.clone());
                continue;
            };
            let url = url.map_or("", |(u, _)| u);
            let ca = match ca {
                Some((_, at)) if scheme == Scheme::Http => {
                    self.diags.error_with_help(
                        at,
                        "`ca` is only used with an https:// upstream",
                        "remove `ca`, or use an https:// url",
                    );
                    None
                }
                Some((path, at)) => self.existing_file(path, at, "ca"),
                None => None,
            };
            let client_identity = match (client_cert, client_key) {
                (None, None) => None,
                (Some((_, at)), _) | (_, Some((_, at))) if scheme == Scheme::Http => {
                    self.diags.error_with_help(
                        at,
                        "a client certificate is only sent to an https:// upstream",
                        "remove client_cert and client_key, or use an https:// url",
                    );
                    None
                }
                (Some((cert, cert_at)), Some((key, key_at))) => {
                    let cert = self.existing_file(cert, cert_at, "client_cert");
                    let key = self.existing_file(key, key_at, "client_key");
                    cert.zip(key)
                }
                (Some((_, at)), None) | (None, Some((_, at))) => {
                    self.diags.error_with_help(
                        at,
                        "upstream mTLS needs both client_cert and client_key",
                        "add client_cert = \"certs/gateway-client.pem\" and client_key = \"certs/gateway-client.key\"",
                    );
                    None
                }
            };
            upstreams.push(Upstream {
                name: key.name.clone(),
                url: url.to_string(),
                scheme,
                host,
                port,
                connect_timeout,
                read_timeout,
                write_timeout,
                idle_timeout,
                ca,
                client_identity,
                health,
                required,
                origin: node.origin.clone(),
            });
        }
        upstreams
    }

    fn health_check(&mut self, t: &Table, at: &Origin, upstream: &str) -> Option<HealthCheck> {
        let section = format!("{}.health", upstream.trim_end_matches(']')) + "]";
        let mut f = Fields::new(t, section.clone(), HEALTH_KEYS);
        let path = f.required_string("path", at, "path = \"/health\"", self.diags);
        let interval = f.duration("interval", Duration::from_secs(5), self.diags);
        let timeout = f.duration("timeout", Duration::from_secs(2), self.diags);
        let mut threshold = |key: &'static str, default: u32, f: &mut Fields<'_>| match f
            .integer(key, self.diags)
        {
            None => default,
            Some((n, _)) if (1..=100).contains(&n) => n as u32,
            Some((n, at)) => {
                self.diags.error_with_help(
                    at,
                    format!("`{key}` = {n} is out of range"),
                    "use 1 to 100",
                );
                default
            }
        };
        let healthy_threshold = threshold("healthy_threshold", 2, &mut f);
        let unhealthy_threshold = threshold("unhealthy_threshold", 3, &mut f);
        f.finish(self.diags);
        let (path, path_at) = path?;
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            self.diags.error_with_help(
                path_at,
                format!("health check path {path:?} is not an absolute path"),
                "write e.g. path = \"/health\"",
            );
            return None;
        }
        if timeout >= interval {
            self.diags.error_with_help(
                at,
                format!("{section}: timeout must be shorter than interval"),
                "e.g. interval = \"5s\", timeout = \"2s\"",
            );
        }
        Some(HealthCheck {
            path: path.to_string(),
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
        })
    }

    fn upstream_url(&mut self, url: &str, origin: &Origin) -> Option<(Scheme, String, u16)> {
        let help = "write http://HOST:PORT or https://HOST:PORT, e.g. \"http://127.0.0.1:8880\"";
        let scheme_is = |prefix: &str| {
            url.get(..prefix.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
        };
        let (scheme, rest) = if scheme_is("http://") {
            (Scheme::Http, &url["http://".len()..])
        } else if scheme_is("https://") {
            (Scheme::Https, &url["https://".len()..])
        } else {
            self.diags.error_with_help(
                origin,
                format!("upstream url {url:?} must start with http:// or https://"),
                help,
            );
            return None;
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            self.diags.error_with_help(
                origin,
                format!("upstream url {url:?} may name only a scheme, host and port"),
                "paths belong to routes: use path_prefix and strip_prefix",
            );
            return None;
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        // `[v6]`, `[v6]:port`, `host` or `host:port`.
        let (host, port_text) = match authority.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((v6, "")) => (v6, None),
                Some((v6, after)) => match after.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => ("", None),
                },
                None => ("", None),
            },
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port_text {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    self.diags.error_with_help(
                        origin,
                        format!("upstream url {url:?} has a bad port {p:?}"),
                        help,
                    );
                    return None;
                }
            },
        };
        let valid = host.parse::<std::net::IpAddr>().is_ok()
            || HostPattern::parse(host).is_ok_and(|p| !p.is_wildcard());
        if host.is_empty() || !valid {
            self.diags.error_with_help(
                origin,
                format!("upstream url {url:?} has no valid host"),
                help,
            );
            return None;
        }
        Some((scheme, host.to_ascii_lowercase(), port))
    }

    fn authenticators(&mut self, node: Option<&Node>) -> Vec<Authenticator> {
        let Some(table) = self.table(node, "[auth]") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, node) in &table.entries {
            let section = format!("[auth.{}]", key.name);
            let Some(t) = self.table(Some(node), &section) else {
                continue;
            };
            if !valid_name(&key.name) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("authenticator name {:?} is not a plain name", key.name),
                    "use letters, digits, '-' and '_'",
                );
            }
            let kind = match t.get("type").map(|n| &n.value) {
                Some(Value::String(k)) if k == "jwt" => {
                    self.jwt(t, &section, &node.origin).map(AuthKind::Jwt)
                }
                Some(Value::String(k)) if k == "basic" => {
                    self.basic(t, &section, &node.origin).map(AuthKind::Basic)
                }
                Some(_) => {
                    let at = &t.get("type").expect("matched above").origin;
                    self.diags.error_with_help(
                        at,
                        format!("{section}: unknown `type`"),
                        "use type = \"jwt\" or type = \"basic\"",
                    );
                    None
                }
                None => {
                    self.diags.error_with_help(
                        &node.origin,
                        format!("{section} needs `type`"),
                        "add type = \"jwt\" (bearer tokens) or type = \"basic\" (user and password)",
                    );
                    None
                }
            };
            if kind.is_none() {
                self.refused_auth.insert(key.name.clone());
            }
            if let Some(kind) = kind {
                out.push(Authenticator {
                    name: key.name.clone(),
                    kind,
                    origin: node.origin.clone(),
                });
            }
        }
        out
    }

    fn jwt(&mut self, t: &Table, section: &str, origin: &Origin) -> Option<JwtSettings> {
        let mut f = Fields::new(t, section.to_string(), JWT_KEYS);
        let _ = f.string("type", self.diags);
        let issuer = f.string("issuer", self.diags);
        let jwks_url = f.string("jwks_url", self.diags);
        let keys = f.strings("keys", self.diags);
        let secret_env = f.string("secret_env", self.diags);
        let audiences = f.strings("audiences", self.diags);
        let algorithms = f.strings("algorithms", self.diags);
        let leeway = f.duration("leeway", Duration::from_secs(60), self.diags);
        let required_claims = f.strings("required_claims", self.diags);
        let cookie = f.string("cookie", self.diags);
        let claims_to_headers = f.table("claims_to_headers", self.diags);
        let refresh_interval = f.duration("refresh_interval", Duration::from_secs(300), self.diags);
        let refetch_cooldown = f.duration("refetch_cooldown", Duration::from_secs(30), self.diags);
        let ca = f.string("ca", self.diags);
        f.finish(self.diags);
        let ca = match ca {
            Some((_, at)) if jwks_url.is_none() && !(keys.is_none() && secret_env.is_none()) => {
                self.diags.error_with_help(
                    at,
                    "`ca` is only used to fetch keys from jwks_url or the issuer",
                    "remove `ca`",
                );
                None
            }
            Some((path, at)) => self.existing_file(path, at, "ca"),
            None => None,
        };

        let sources = [jwks_url.is_some(), keys.is_some(), secret_env.is_some()];
        let key_help = "give exactly one of jwks_url = \"https://idp/.../certs\", keys = [\"certs/idp.pem\"] or secret_env = \"VAR\" (or only `issuer`, to discover the JWKS)";
        let source = match (jwks_url, keys, secret_env) {
            _ if sources.iter().filter(|s| **s).count() > 1 => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} names more than one key source"),
                    key_help,
                );
                return None;
            }
            (Some((url, at)), _, _) => {
                if !is_http_url(url) {
                    self.diags.error_with_help(at, format!("jwks_url {url:?} is not an http:// or https:// URL"), "write e.g. \"https://idp.example.com/realms/iams/protocol/openid-connect/certs\"");
                }
                JwtKeySource::JwksUrl(url.to_string())
            }
            (_, Some((files, at)), _) => {
                if files.is_empty() {
                    self.diags.error_with_help(at, "`keys` is empty", key_help);
                }
                let paths = files
                    .iter()
                    .filter_map(|(p, o)| self.existing_file(p, o, "keys"))
                    .collect();
                JwtKeySource::Files(paths)
            }
            (_, _, Some((var, _))) => JwtKeySource::SecretEnv(var.to_string()),
            (None, None, None) if issuer.is_some() => JwtKeySource::Discovery,
            (None, None, None) => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} has no key source"),
                    key_help,
                );
                return None;
            }
        };
        if let Some((iss, at)) = issuer {
            if source == JwtKeySource::Discovery && !is_http_url(iss) {
                self.diags.error_with_help(
                    at,
                    format!(
                        "issuer {iss:?} is not an http(s) URL, so its keys cannot be discovered"
                    ),
                    "set jwks_url, or give the issuer URL as the IdP publishes it",
                );
            }
        }
        let hmac = matches!(source, JwtKeySource::SecretEnv(_));
        let mut algs = Vec::new();
        match algorithms {
            Some((list, at)) => {
                if list.is_empty() {
                    self.diags.error_with_help(
                        at,
                        "`algorithms` is empty",
                        "list the JWS algorithms your IdP signs with, e.g. [\"RS256\"]",
                    );
                }
                for (alg, at) in list {
                    if alg.eq_ignore_ascii_case("none") {
                        self.diags.error_with_help(
                            at,
                            "algorithm \"none\" is never accepted: it means an unsigned token",
                            "remove it",
                        );
                        continue;
                    }
                    let Some(known) = JWT_ALGORITHMS.iter().find(|a| a.eq_ignore_ascii_case(alg))
                    else {
                        self.diags.error_with_help(
                            at,
                            format!("unknown algorithm {alg:?}"),
                            format!("use one of {}", JWT_ALGORITHMS.join(", ")),
                        );
                        continue;
                    };
                    if known.starts_with("HS") != hmac {
                        let help = if hmac {
                            "a shared secret verifies only HS256, HS384 or HS512"
                        } else {
                            "HS* algorithms need secret_env; public keys verify RS*, PS*, ES* and EdDSA"
                        };
                        self.diags.error_with_help(
                            at,
                            format!("algorithm {known} does not fit this key source"),
                            help,
                        );
                        continue;
                    }
                    algs.push(known.to_string());
                }
            }
            None => algs.push(if hmac { "HS256" } else { "RS256" }.to_string()),
        }
        let audiences: Vec<String> = audiences
            .map(|(a, _)| a.iter().map(|(s, _)| s.to_string()).collect())
            .unwrap_or_default();
        if audiences.is_empty() {
            self.diags.warning(
                origin,
                format!(
                    "{section} sets no `audiences`, so a token issued for any audience is accepted"
                ),
            );
        }
        let mut pairs = Vec::new();
        if let Some((table, _)) = claims_to_headers {
            for (claim, node) in &table.entries {
                let Value::String(header) = &node.value else {
                    self.diags.error(
                        &node.origin,
                        format!(
                            "claims_to_headers.{} must be a header name string",
                            claim.name
                        ),
                    );
                    continue;
                };
                let lower = header.to_ascii_lowercase();
                let token = !lower.is_empty()
                    && lower
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !token || RESERVED_HEADERS.contains(&lower.as_str()) {
                    self.diags.error_with_help(
                        &node.origin,
                        format!("claims_to_headers: {header:?} cannot carry a claim"),
                        "use a header of your own, such as \"X-Auth-Subject\"",
                    );
                    continue;
                }
                pairs.push((claim.name.clone(), lower));
            }
        }
        Some(JwtSettings {
            keys: source,
            issuer: issuer.map(|(i, _)| i.to_string()),
            audiences,
            algorithms: algs,
            leeway,
            required_claims: required_claims
                .map(|(c, _)| c.iter().map(|(s, _)| s.to_string()).collect())
                .unwrap_or_default(),
            cookie: cookie.map(|(c, _)| c.to_string()),
            claims_to_headers: pairs,
            refresh_interval,
            refetch_cooldown,
            ca,
        })
    }

    fn basic(&mut self, t: &Table, section: &str, origin: &Origin) -> Option<BasicSettings> {
        let mut f = Fields::new(t, section.to_string(), BASIC_KEYS);
        let _ = f.string("type", self.diags);
        let realm = f.string("realm", self.diags);
        let users = f.table("users", self.diags);
        let htpasswd = f.string("htpasswd", self.diags);
        let max_failures = f.integer("max_failures", self.diags);
        let backoff_initial = f.duration("backoff_initial", Duration::from_secs(1), self.diags);
        let backoff_max = f.duration("backoff_max", Duration::from_secs(900), self.diags);
        let cache_ttl = f.duration("cache_ttl", Duration::from_secs(60), self.diags);
        f.finish(self.diags);

        let mut accounts = Vec::new();
        if let Some((table, _)) = users {
            for (user, node) in &table.entries {
                match &node.value {
                    Value::String(hash) => accounts.push(BasicUser {
                        user: user.name.clone(),
                        hash: hash.clone(),
                        origin: node.origin.clone(),
                    }),
                    other => self.diags.error(
                        &node.origin,
                        format!(
                            "the password hash of user {:?} must be a string, not {}",
                            user.name,
                            other.type_name()
                        ),
                    ),
                }
                if user.name.is_empty() || user.name.contains(':') {
                    self.diags.error(
                        &user.origin,
                        format!("user name {:?} cannot be empty or contain ':'", user.name),
                    );
                }
            }
        }
        let htpasswd = htpasswd.and_then(|(p, at)| self.existing_file(p, at, "htpasswd"));
        if accounts.is_empty() && htpasswd.is_none() && !self.diags.has_errors() {
            self.diags.error_with_help(
                origin,
                format!("{section} has no accounts"),
                "add users = { admin = \"<hash from `postern hash-password`>\" } or htpasswd = \"secrets/ops.htpasswd\"",
            );
        }
        let max_failures = match max_failures {
            Some((n, _)) if (1..=1000).contains(&n) => n as u32,
            Some((n, at)) => {
                self.diags.error_with_help(
                    at,
                    format!("max_failures = {n} is out of range"),
                    "use 1 to 1000",
                );
                5
            }
            None => 5,
        };
        if backoff_max < backoff_initial {
            self.diags.error(
                origin,
                format!("{section}: backoff_max is shorter than backoff_initial"),
            );
        }
        let realm = realm.map_or_else(
            || t_name(section),
            |(r, at)| {
                if r.contains(['"', '\\']) || r.chars().any(char::is_control) {
                    self.diags.error(
                        at,
                        "realm cannot contain quotes, backslashes or control characters",
                    );
                }
                r.to_string()
            },
        );
        Some(BasicSettings {
            realm,
            users: accounts,
            htpasswd,
            max_failures,
            backoff_initial,
            backoff_max,
            cache_ttl,
        })
    }

    fn route(&mut self, index: usize, table: &Table, origin: &Origin) -> Option<Route> {
        let fallback = format!("[[routes]] #{}", index + 1);
        let name_hint = table.get("name").and_then(|n| match &n.value {
            Value::String(s) => Some(s.clone()),
            _ => None,
        });
        let section = match &name_hint {
            Some(n) => format!("[[routes]] {n:?}"),
            None => fallback.clone(),
        };
        let mut f = Fields::new(table, section.clone(), ROUTE_KEYS);
        let name = f.required_string("name", origin, "name = \"api\"", self.diags);
        let host = f.string("host", self.diags);
        let prefix = f.string("path_prefix", self.diags);
        let strip_prefix = f
            .boolean("strip_prefix", self.diags)
            .map(|b| b.0)
            .unwrap_or(false);
        let upstream = f.string("upstream", self.diags);
        let service = f.string("service", self.diags);
        let auth = f.string("auth", self.diags);
        let allow = f.strings("allow", self.diags);
        let deny = f.boolean("deny", self.diags).map(|b| b.0).unwrap_or(false);
        let listeners = f.strings("listeners", self.diags);
        let max_body_size = f.size("max_body_size", self.diags);
        f.finish(self.diags);

        let (name, _) = name?;
        if !valid_name(name) {
            self.diags.error_with_help(
                origin,
                format!("route name {name:?} is not a plain name"),
                "use letters, digits, '-' and '_'; the name shows in logs and metrics",
            );
        }
        let host = match host.map(|(h, at)| (h, at, HostPattern::parse(h))) {
            None => None,
            Some((_, _, Ok(pattern))) => Some(pattern),
            Some((h, at, Err(e))) => {
                self.diags.error_with_help(
                    at,
                    format!("route host {h:?} is not a host name or wildcard: {}", e.reason()),
                    "write \"api.example.com\" or \"*.example.com\" (no scheme, port or path); leave `host` out to match any host",
                );
                // Refused whole: read as "any host" it would collide falsely.
                return None;
            }
        };
        let path_prefix = match prefix {
            Some((p, at)) => self.path_prefix(p, at)?,
            None => "/".to_string(),
        };
        let target = match (upstream, service) {
            (Some(_), Some((_, at))) => {
                self.diags.error_with_help(
                    at,
                    "a route has either `upstream` or `service`, not both",
                    "remove one of them",
                );
                return None;
            }
            (Some((u, _)), None) => RouteTarget::Upstream(u.to_string()),
            (None, Some((s, at))) => match s {
                "metrics" => RouteTarget::Service(Service::Metrics),
                "health" => RouteTarget::Service(Service::Health),
                "admin" => RouteTarget::Service(Service::Admin),
                other => {
                    self.diags.error_with_help(
                        at,
                        format!("unknown built-in service {other:?}"),
                        "use service = \"metrics\", \"health\" or \"admin\"",
                    );
                    return None;
                }
            },
            (None, None) if deny => RouteTarget::Nothing,
            (None, None) => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} has no `upstream`"),
                    "add upstream = \"NAME\" naming an [upstreams.NAME] table, or deny = true to refuse the path",
                );
                return None;
            }
        };
        let allow = allow.map(|(entries, _)| self.allowlist(&entries, "allow"));
        if let Some((entries, at)) = &listeners {
            if entries.is_empty() {
                self.diags.error_with_help(
                    at,
                    "`listeners` is empty, so the route is served nowhere",
                    "remove `listeners` to serve the route on every listener",
                );
            }
        }
        let listeners =
            listeners.map(|(entries, _)| entries.iter().map(|(l, _)| l.to_string()).collect());
        Some(Route {
            name: name.to_string(),
            host,
            path_prefix,
            strip_prefix,
            target,
            allow,
            deny,
            max_body_size,
            auth: auth.map(|(a, _)| a.to_string()),
            listeners,
            origin: origin.clone(),
        })
    }

    fn path_prefix(&mut self, written: &str, origin: &Origin) -> Option<String> {
        let help = "write a path such as \"/api\" or \"/api/v1\": it starts with '/', and matches whole segments";
        if written
            .split('/')
            .any(|segment| segment.contains('*') && segment != "*")
        {
            self.diags.error_with_help(
                origin,
                format!("path_prefix {written:?} uses `*` inside a segment"),
                "`*` stands for one whole segment, as in \"/realms/*/protocol\"; it cannot be part of one",
            );
            return None;
        }
        match canonicalize(written) {
            Ok(target) if target.query.is_some() => {
                self.diags.error_with_help(
                    origin,
                    format!("path_prefix {written:?} has a query"),
                    help,
                );
                None
            }
            Ok(target) => {
                let mut canonical = target.path;
                if canonical.len() > 1 && canonical.ends_with('/') {
                    canonical.pop();
                }
                if canonical != written {
                    self.diags.error_with_help(
                        origin,
                        format!("path_prefix {written:?} is not in canonical form"),
                        format!("write {canonical:?}; requests are matched after canonicalisation, so only that spelling can match"),
                    );
                    return None;
                }
                Some(canonical)
            }
            Err(e) => {
                self.diags.error_with_help(
                    origin,
                    format!("path_prefix {written:?} is not a valid path: {e}"),
                    help,
                );
                None
            }
        }
    }

    /// Checks that need the whole config: references and collisions.
    fn cross_check(&mut self, config: &Config) {
        let main = self.main.clone();
        if config.listeners.is_empty() && !self.diags.has_errors() {
            self.diags.error_with_help(
                &main,
                "no [[listeners]] are configured, so the gateway would serve nothing",
                "add [[listeners]] with name = \"https\", address = \"0.0.0.0:443\", tls = true",
            );
        }
        let mut listener_names = HashSet::new();
        let mut addresses = HashSet::new();
        for l in &config.listeners {
            if !listener_names.insert(l.name.as_str()) {
                self.diags.error_with_help(
                    &l.origin,
                    format!("listener name {:?} is used twice", l.name),
                    "give each listener its own name",
                );
            }
            if let Some(other) = config
                .listeners
                .iter()
                .take_while(|o| !std::ptr::eq(*o, l))
                .find(|o| binds_overlap(o.address, l.address))
            {
                self.diags.error_with_help(
                    &l.origin,
                    format!("listener address {} and {} of listener {:?} cannot both be bound: a wildcard address takes port {} on every interface", l.address, other.address, other.name, l.address.port()),
                    "listen on the wildcard address only, or give each listener a specific address",
                );
            }
            if !addresses.insert(l.address) {
                self.diags.error_with_help(
                    &l.origin,
                    format!("listener address {} is used twice", l.address),
                    "give each listener its own address",
                );
            }
        }
        let has_tls = config.listeners.iter().any(|l| l.kind == ListenerKind::Tls);
        if has_tls && config.tls.certificates.is_empty() && !self.diags.has_errors() {
            let at = config
                .listeners
                .iter()
                .find(|l| l.kind == ListenerKind::Tls)
                .map(|l| l.origin.clone())
                .unwrap_or(main.clone());
            self.diags.error_with_help(
                &at,
                "a tls listener needs at least one [[tls.certificates]]",
                "add [[tls.certificates]] with server_names, cert and key",
            );
        }
        if let Some(redirect) = config
            .listeners
            .iter()
            .find(|l| l.kind == ListenerKind::RedirectHttps)
        {
            if !has_tls {
                self.diags.error_with_help(
                    &redirect.origin,
                    "`redirect_https` needs a tls listener to redirect to",
                    "add a listener with tls = true, or remove redirect_https",
                );
            }
        }
        let mut cert_names = HashSet::new();
        for cert in &config.tls.certificates {
            for name in &cert.server_names {
                if !cert_names.insert(name.to_string()) {
                    self.diags.warning(
                        &cert.origin,
                        format!("server name {name} is listed for more than one certificate; the first one serves it"),
                    );
                }
            }
        }

        let mut route_names = HashSet::new();
        let mut claimed: Vec<(String, String, BTreeSet<&str>, &Route)> = Vec::new();
        for route in &config.routes {
            if !route_names.insert(route.name.as_str()) {
                self.diags.error_with_help(
                    &route.origin,
                    format!("route name {:?} is used twice", route.name),
                    "give each route its own name",
                );
            }
            if let RouteTarget::Upstream(u) = &route.target {
                if config.upstream(u).is_none() && !self.refused_upstreams.contains(u) {
                    let known: Vec<&str> =
                        config.upstreams.iter().map(|u| u.name.as_str()).collect();
                    let help = match nearest(u, known.iter().copied()) {
                        Some(n) => format!("did you mean {n:?}?"),
                        None if known.is_empty() => {
                            format!("add [upstreams.{u}] with url = \"http://127.0.0.1:8880\"")
                        }
                        None => format!("the upstreams are: {}", known.join(", ")),
                    };
                    self.diags.error_with_help(
                        &route.origin,
                        format!(
                            "route {:?} names upstream {u:?}, which is not defined",
                            route.name
                        ),
                        help,
                    );
                }
            }
            if let Some(a) = &route.auth {
                if config.authenticator(a).is_none() && !self.refused_auth.contains(a) {
                    let known: Vec<&str> = config.auth.iter().map(|a| a.name.as_str()).collect();
                    let help = match nearest(a, known.iter().copied()) {
                        Some(n) => format!("did you mean {n:?}?"),
                        None if known.is_empty() => {
                            format!("add [auth.{a}] with type = \"jwt\" or type = \"basic\"")
                        }
                        None => format!("the authenticators are: {}", known.join(", ")),
                    };
                    self.diags.error_with_help(
                        &route.origin,
                        format!(
                            "route {:?} names authenticator {a:?}, which is not defined",
                            route.name
                        ),
                        help,
                    );
                }
                if route.deny {
                    self.diags.warning(
                        &route.origin,
                        format!(
                            "route {:?} has deny = true, so its `auth` is never used",
                            route.name
                        ),
                    );
                }
            }
            let serving: BTreeSet<&str> = match &route.listeners {
                Some(names) => {
                    for n in names {
                        match config.listener(n) {
                            None if self.refused_listeners.contains(n) => {}
                            None => {
                                let known = config.listeners.iter().map(|l| l.name.as_str());
                                let help = nearest(n, known).map_or_else(
                                    || format!("the listeners are: {}", config.listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")),
                                    |near| format!("did you mean {near:?}?"),
                                );
                                self.diags.error_with_help(&route.origin, format!("route {:?} names listener {n:?}, which is not defined", route.name), help);
                            }
                            Some(l) if l.kind == ListenerKind::RedirectHttps => self.diags.warning(
                                &route.origin,
                                format!("route {:?} lists listener {n:?}, which only redirects to https and serves no routes", route.name),
                            ),
                            Some(_) => {}
                        }
                    }
                    names.iter().map(String::as_str).collect()
                }
                None => config
                    .listeners
                    .iter()
                    .filter(|l| l.kind != ListenerKind::RedirectHttps)
                    .map(|l| l.name.as_str())
                    .collect(),
            };
            let host = route
                .host
                .as_ref()
                .map_or_else(|| "*any*".to_string(), |h| h.to_string());
            if let Some((_, _, _, other)) = claimed.iter().find(|(h, p, ls, _)| {
                *h == host && *p == route.path_prefix && !ls.is_disjoint(&serving)
            }) {
                self.diags.error_with_help(
                    &route.origin,
                    format!(
                        "routes {:?} and {:?} both claim host {} and path_prefix {:?} on the same listener",
                        other.name, route.name, route.host.as_ref().map_or("(any)".to_string(), |h| h.to_string()), route.path_prefix
                    ),
                    "change the host or path_prefix of one of them, or give them different `listeners`",
                );
            }
            claimed.push((host, route.path_prefix.clone(), serving, route));
        }
    }
}

/// Whether two distinct listen addresses would collide at bind time: the same
/// port where one is a wildcard of the other's family (or `[::]`, which on
/// Linux also takes IPv4).
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a == b || a.port() != b.port() {
        return false;
    }
    let covers = |wild: SocketAddr, other: SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    covers(a, b) || covers(b, a)
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// "[auth.ops]" -> "ops", the default realm.
fn t_name(section: &str) -> String {
    section
        .trim_start_matches("[auth.")
        .trim_end_matches(']')
        .to_string()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
