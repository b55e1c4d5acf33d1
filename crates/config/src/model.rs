//! The typed configuration: what `gateway.toml` means once it has been read,
//! layered and checked. Names follow `shared/spec/gateway.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use postern_policy::host::HostPattern;
use postern_policy::source::Allowlist;

use crate::diag::Origin;

#[derive(Debug, Clone)]
pub struct Config {
    /// The main file, as given.
    pub file: PathBuf,
    /// The files that were layered over it, in order.
    pub overlays: Vec<PathBuf>,
    pub gateway: Gateway,
    pub listeners: Vec<Listener>,
    pub tls: Tls,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
}

impl Config {
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub threads: usize,
    /// Peers whose X-Forwarded-For / Forwarded headers are believed.
    pub trusted_proxies: Allowlist,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub kind: ListenerKind,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain HTTP, routes served.
    Plain,
    /// TLS terminated here, certificate chosen by SNI.
    Tls,
    /// Plain HTTP that only answers 308 to the https URL.
    RedirectHttps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub min_version: TlsVersion,
    pub certificates: Vec<Certificate>,
}

#[derive(Debug, Clone)]
pub struct Certificate {
    pub server_names: Vec<HostPattern>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub url: String,
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets), used to connect and as SNI.
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Extra CA bundle for verifying an https upstream.
    pub ca: Option<PathBuf>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Upstream(String),
    /// `deny = true` with nothing to forward to.
    Nothing,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub host: Option<HostPattern>,
    /// Canonical, no trailing slash except for "/".
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub target: RouteTarget,
    pub allow: Option<Allowlist>,
    pub deny: bool,
    /// None: every listener that serves routes.
    pub listeners: Option<Vec<String>>,
    pub origin: Origin,
}
