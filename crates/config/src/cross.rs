//! Checks that need the whole config: every name a route refers to exists,
//! no two listeners collide at bind time, no two routes claim the same
//! requests, and a TLS listener has a certificate to serve.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;

use crate::diag::{nearest, Diagnostics, Origin};
use crate::model::*;
use crate::sections::Refused;

/// Reports what does not fit together. `main` stands for the whole file;
/// names in `refused` were reported already and are not reported again.
pub fn cross_check(config: &Config, refused: &Refused, main: &Origin, diags: &mut Diagnostics) {
    listeners(config, main, diags);
    certificates(config, diags);
    routes(config, refused, diags);
    client_certificates(config, diags);
}

/// Client certificates exist only where `[tls] client_ca` asks for them, and
/// only on TLS listeners: a client_cert authenticator or `forward_client_cert`
/// anywhere else could never see one.
fn client_certificates(config: &Config, diags: &mut Diagnostics) {
    let add_ca = "add client_ca = \"certs/clients-ca.pem\" under [tls]: the PEM file of the CA that signs your client certificates";
    let is_client_cert = |name: &str| {
        config
            .authenticator(name)
            .is_some_and(|a| matches!(a.kind, AuthKind::ClientCert(_)))
    };
    if config.tls.client_ca.is_none() {
        for a in config.auth.iter().filter(|a| is_client_cert(&a.name)) {
            diags.error_with_help(
                &a.origin,
                format!("[auth.{}] checks client certificates, but [tls] has no `client_ca`, so no client is ever asked for one", a.name),
                add_ca,
            );
        }
    }
    for route in &config.routes {
        if route.forward_client_cert && config.tls.client_ca.is_none() {
            diags.error_with_help(
                &route.origin,
                format!("route {:?} sets forward_client_cert, but [tls] has no `client_ca`, so no client is ever asked for a certificate", route.name),
                add_ca,
            );
        }
        // `iter` over the route's authenticator names, however many it has.
        let Some(authenticator) = route.auth.iter().find(|a| is_client_cert(a)) else {
            continue;
        };
        let plain = config.listeners.iter().find(|l| {
            l.kind == ListenerKind::Plain
                && route
                    .listeners
                    .as_ref()
                    .is_none_or(|names| names.contains(&l.name))
        });
        if let Some(listener) = plain {
            let tls: Vec<String> = config
                .listeners
                .iter()
                .filter(|l| l.kind == ListenerKind::Tls)
                .map(|l| format!("{:?}", l.name))
                .collect();
            diags.error_with_help(
                &route.origin,
                format!(
                    "route {:?} uses client certificate authenticator {authenticator:?} but is served on plain listener {:?}, where no certificate can be presented",
                    route.name, listener.name
                ),
                format!("add listeners = [{}] to serve the route on TLS listeners only", tls.join(", ")),
            );
        }
    }
}

fn listeners(config: &Config, main: &Origin, diags: &mut Diagnostics) {
    if config.listeners.is_empty() && !diags.has_errors() {
        diags.error_with_help(
            main,
            "no [[listeners]] are configured, so the gateway would serve nothing",
            "add [[listeners]] with name = \"https\", address = \"0.0.0.0:443\", tls = true",
        );
    }
    let mut listener_names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if !listener_names.insert(l.name.as_str()) {
            diags.error_with_help(
                &l.origin,
                format!("listener name {:?} is used twice", l.name),
                "give each listener its own name",
            );
        }
        if let Some(other) = config.listeners[..i]
            .iter()
            .find(|o| binds_overlap(o.address, l.address))
        {
            diags.error_with_help(
                &l.origin,
                format!("listener address {} and {} of listener {:?} cannot both be bound: a wildcard address takes port {} on every interface", l.address, other.address, other.name, l.address.port()),
                "listen on the wildcard address only, or give each listener a specific address",
            );
        }
        if !addresses.insert(l.address) {
            diags.error_with_help(
                &l.origin,
                format!("listener address {} is used twice", l.address),
                "give each listener its own address",
            );
        }
    }
    let has_tls = config.listeners.iter().any(|l| l.kind == ListenerKind::Tls);
    if has_tls && config.tls.certificates.is_empty() && !diags.has_errors() {
        let at = config
            .listeners
            .iter()
            .find(|l| l.kind == ListenerKind::Tls)
            .map_or_else(|| main.clone(), |l| l.origin.clone());
        diags.error_with_help(
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
            diags.error_with_help(
                &redirect.origin,
                "`redirect_https` needs a tls listener to redirect to",
                "add a listener with tls = true, or remove redirect_https",
            );
        }
    }
}

fn certificates(config: &Config, diags: &mut Diagnostics) {
    let mut cert_names = HashSet::new();
    for cert in &config.tls.certificates {
        for name in &cert.server_names {
            if !cert_names.insert(name.to_string()) {
                diags.warning(
                    &cert.origin,
                    format!("server name {name} is listed for more than one certificate; the first one serves it"),
                );
            }
        }
    }
}

fn routes(config: &Config, refused: &Refused, diags: &mut Diagnostics) {
    let mut route_names = HashSet::new();
    let mut claimed: Vec<(String, String, BTreeSet<&str>, &Route)> = Vec::new();
    for route in &config.routes {
        if !route_names.insert(route.name.as_str()) {
            diags.error_with_help(
                &route.origin,
                format!("route name {:?} is used twice", route.name),
                "give each route its own name",
            );
        }
        if let RouteTarget::Upstream(u) = &route.target {
            if config.upstream(u).is_none() && !refused.upstreams.contains(u) {
                let known: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
                let help = match nearest(u, known.iter().copied()) {
                    Some(n) => format!("did you mean {n:?}?"),
                    None if known.is_empty() => {
                        format!("add [upstreams.{u}] with url = \"http://127.0.0.1:8880\"")
                    }
                    None => format!("the upstreams are: {}", known.join(", ")),
                };
                diags.error_with_help(
                    &route.origin,
                    format!(
                        "route {:?} names upstream {u:?}, which is not defined",
                        route.name
                    ),
                    help,
                );
            }
        }
        for a in &route.auth {
            if config.authenticator(a).is_none() && !refused.auth.contains(a) {
                let known: Vec<&str> = config.auth.iter().map(|a| a.name.as_str()).collect();
                let help = match nearest(a, known.iter().copied()) {
                    Some(n) => format!("did you mean {n:?}?"),
                    None if known.is_empty() => {
                        format!("add [auth.{a}] with type = \"jwt\" or type = \"basic\"")
                    }
                    None => format!("the authenticators are: {}", known.join(", ")),
                };
                diags.error_with_help(
                    &route.origin,
                    format!(
                        "route {:?} names authenticator {a:?}, which is not defined",
                        route.name
                    ),
                    help,
                );
            }
        }
        if !route.auth.is_empty() && route.deny {
            diags.warning(
                &route.origin,
                format!(
                    "route {:?} has deny = true, so its `auth` is never used",
                    route.name
                ),
            );
        }
        if let Some(require) = &route.require {
            check_require(config, route, require, refused, diags);
        }
        route_limit(config, route, refused, diags);
        let serving = serving_listeners(config, route, refused, diags);
        let host = route
            .host
            .as_ref()
            .map_or_else(|| "*any*".to_string(), |h| h.to_string());
        if let Some((_, _, _, other)) = claimed.iter().find(|(h, p, ls, _)| {
            *h == host && *p == route.path_prefix && !ls.is_disjoint(&serving)
        }) {
            diags.error_with_help(
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

/// A route's `limit` must name a `[limits]` table; one keyed by a claim needs the route to
/// verify a JWT, or there would be no claim to count by.
fn route_limit(config: &Config, route: &Route, refused: &Refused, diags: &mut Diagnostics) {
    let Some(name) = &route.limit else {
        return;
    };
    let Some(limit) = config.limit(name) else {
        if !refused.limits.contains(name) {
            let known: Vec<&str> = config.limits.iter().map(|l| l.name.as_str()).collect();
            let help = match nearest(name, known.iter().copied()) {
                Some(n) => format!("did you mean {n:?}?"),
                None if known.is_empty() => {
                    format!("add [limits.{name}] with rate = \"10/m\"")
                }
                None => format!("the limits are: {}", known.join(", ")),
            };
            diags.error_with_help(
                &route.origin,
                format!(
                    "route {:?} names limit {name:?}, which is not defined",
                    route.name
                ),
                help,
            );
        }
        return;
    };
    if let LimitKey::Claim(claim) = &limit.key {
        let jwt = route
            .auth
            .iter()
            .filter_map(|a| config.authenticator(a))
            .any(|a| a.kind.carries_claims());
        let auth_refused = route.auth.iter().any(|a| refused.auth.contains(a));
        if !jwt && !auth_refused {
            diags.error_with_help(
                &route.origin,
                format!(
                    "route {:?} uses limit {name:?}, keyed by claim {claim:?}, but the route has no JWT authenticator",
                    route.name
                ),
                format!("add auth = \"NAME\" naming a type = \"jwt\" authenticator to the route, or give [limits.{name}] key = \"client\""),
            );
        }
    }
}

/// The listeners `route` is served on; the ones it names must exist.
fn serving_listeners<'c>(
    config: &'c Config,
    route: &'c Route,
    refused: &Refused,
    diags: &mut Diagnostics,
) -> BTreeSet<&'c str> {
    let Some(names) = &route.listeners else {
        return config
            .listeners
            .iter()
            .filter(|l| l.kind != ListenerKind::RedirectHttps)
            .map(|l| l.name.as_str())
            .collect();
    };
    for n in names {
        match config.listener(n) {
            None if refused.listeners.contains(n) => {}
            None => {
                let known = config.listeners.iter().map(|l| l.name.as_str());
                let help = nearest(n, known).map_or_else(
                    || {
                        let all: Vec<&str> =
                            config.listeners.iter().map(|l| l.name.as_str()).collect();
                        format!("the listeners are: {}", all.join(", "))
                    },
                    |near| format!("did you mean {near:?}?"),
                );
                diags.error_with_help(
                    &route.origin,
                    format!(
                        "route {:?} names listener {n:?}, which is not defined",
                        route.name
                    ),
                    help,
                );
            }
            Some(l) if l.kind == ListenerKind::RedirectHttps => diags.warning(
                &route.origin,
                format!("route {:?} lists listener {n:?}, which only redirects to https and serves no routes", route.name),
            ),
            Some(_) => {}
        }
    }
    names.iter().map(String::as_str).collect()
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

/// `require` reads token claims: some authenticator of the route must carry them.
fn check_require(
    config: &Config,
    route: &Route,
    require: &Require,
    refused: &Refused,
    diags: &mut Diagnostics,
) {
    if route.auth.iter().any(|a| refused.auth.contains(a)) {
        return; // already reported; its kind is unknown
    }
    let kinds: Vec<&AuthKind> = route
        .auth
        .iter()
        .filter_map(|a| config.authenticator(a).map(|a| &a.kind))
        .collect();
    if kinds.iter().any(|k| k.carries_claims()) {
        return;
    }
    let has = if route.auth.is_empty() {
        "no `auth`".to_string()
    } else {
        let named: Vec<String> = route
            .auth
            .iter()
            .zip(&kinds)
            .map(|(a, k)| format!("{a:?} ({})", k.name()))
            .collect();
        format!("only {}", named.join(", "))
    };
    diags.error_with_help(
        &require.origin,
        format!(
            "route {:?} has `require`, but {has}: no authenticator of it carries token claims",
            route.name
        ),
        "add a type = \"jwt\" or type = \"introspection\" authenticator to the route's `auth`, or remove `require`",
    );
}

#[cfg(test)]
mod client_cert_tests {
    use crate::testing::*;

    const ADMINS: &str = "[auth.admins]\ntype = \"client_cert\"\n";

    fn tls_config(extra: &str) -> String {
        format!("{extra}\n[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{TLS_LISTENER}{PLAIN}")
    }

    #[test]
    fn client_certificates_need_a_client_ca_and_a_tls_listener() {
        const FILES: &[&str] = &["cert.pem", "key.pem", "ca.pem"];
        run_cases(vec![
            case(
                "client_cert authenticator without client_ca",
                tls_config(ADMINS),
                "|[auth.admins]",
                "[auth.admins] checks client certificates, but [tls] has no `client_ca`",
                Some("add client_ca = \"certs/clients-ca.pem\" under [tls]"),
            )
            .with_files(FILES),
            case(
                "forward_client_cert without client_ca",
                tls_config("[[routes]]\nname = \"kc\"\nupstream = \"data\"\nforward_client_cert = true\nlisteners = [\"https\"]\n"),
                "|[[routes]]",
                "route \"kc\" sets forward_client_cert, but [tls] has no `client_ca`",
                Some("client_ca"),
            )
            .with_files(FILES),
            case(
                "client_cert route served on a plain listener",
                tls_config(&format!("[tls]\nclient_ca = \"ca.pem\"\n\n{ADMINS}\n[[routes]]\nname = \"admin\"\nupstream = \"data\"\nauth = \"admins\"\n")),
                "|[[routes]]",
                "route \"admin\" uses client certificate authenticator \"admins\" but is served on plain listener \"web\"",
                Some("add listeners = [\"https\"]"),
            )
            .with_files(FILES),
        ]);
    }

    #[test]
    fn a_client_cert_route_on_tls_listeners_loads() {
        let dir = Dir::new();
        for file in ["cert.pem", "key.pem", "ca.pem"] {
            dir.write(file, "x");
        }
        let text = tls_config(&format!("[tls]\nclient_ca = \"ca.pem\"\n\n{ADMINS}\n[[routes]]\nname = \"admin\"\nupstream = \"data\"\nauth = \"admins\"\nforward_client_cert = true\nlisteners = [\"https\"]\n"));
        let config = accepted(dir.load(&text, &[]), "client_cert on TLS").config;
        assert!(config.routes[0].forward_client_cert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

    #[test]
    fn wildcard_binds_cover_specific_ones_on_the_same_port() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(binds_overlap(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(binds_overlap(addr("127.0.0.1:80"), addr("0.0.0.0:80")));
        assert!(binds_overlap(addr("[::]:80"), addr("127.0.0.1:80")));
        assert!(binds_overlap(addr("[::]:80"), addr("[::1]:80")));
        assert!(!binds_overlap(addr("0.0.0.0:80"), addr("[::1]:80")));
        assert!(!binds_overlap(addr("0.0.0.0:80"), addr("127.0.0.1:81")));
        assert!(!binds_overlap(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(
            !binds_overlap(addr("0.0.0.0:80"), addr("0.0.0.0:80")),
            "that is `used twice`"
        );
    }

    #[test]
    fn route_references_and_collisions() {
        run_cases(vec![
            case(
                "undefined upstream, near",
                plain("[[routes]]\nname = \"r\"\nupstream = \"dat\"\n"),
                "[[routes]]",
                "route \"r\" names upstream \"dat\", which is not defined",
                Some("did you mean \"data\"?"),
            ),
            case(
                "undefined upstream, far",
                plain("[[routes]]\nname = \"r\"\nupstream = \"backend\"\n"),
                "[[routes]]",
                "route \"r\" names upstream \"backend\", which is not defined",
                Some("the upstreams are: data"),
            ),
            case(
                "undefined upstream, none defined",
                "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:9000\"\n\n[[routes]]\nname = \"r\"\nupstream = \"backend\"\n".to_string(),
                "[[routes]]",
                "route \"r\" names upstream \"backend\", which is not defined",
                Some("add [upstreams.backend] with url = \"http://127.0.0.1:8880\""),
            ),
            case(
                "undefined listener, near",
                plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nlisteners = [\"wbe\"]\n"),
                "[[routes]]",
                "route \"r\" names listener \"wbe\", which is not defined",
                Some("did you mean \"web\"?"),
            ),
            case(
                "undefined listener, far",
                plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nlisteners = [\"management\"]\n"),
                "[[routes]]",
                "route \"r\" names listener \"management\", which is not defined",
                Some("the listeners are: web"),
            ),
            case(
                "require on a basic-auth route",
                plain("[auth.ops]\ntype = \"basic\"\nusers = { admin = \"x\" }\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"ops\"\nrequire = { scope = [\"x\"] }\n"),
                "require = |{",
                "route \"r\" has `require`, but only \"ops\" (basic): no authenticator of it carries token claims",
                Some("add a type = \"jwt\" or type = \"introspection\" authenticator"),
            ),
            case(
                "require on a route without auth",
                plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nrequire = { scope = [\"x\"] }\n"),
                "require = |{",
                "route \"r\" has `require`, but no `auth`: no authenticator of it carries token claims",
                Some("or remove `require`"),
            ),
            case(
                "one of two authenticators undefined",
                plain("[auth.ops]\ntype = \"basic\"\nusers = { admin = \"x\" }\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = [\"ops\", \"idp\"]\n"),
                "|[[routes]]",
                "route \"r\" names authenticator \"idp\", which is not defined",
                Some("the authenticators are: ops"),
            ),
            case(
                "route names an undefined authenticator",
                plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"ops\"\n"),
                "|[[routes]]",
                "route \"r\" names authenticator \"ops\", which is not defined",
                Some("add [auth.ops]"),
            ),
            case(
                "route names an undefined limit, near",
                plain("[limits.login]\nrate = \"10/m\"\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nlimit = \"logn\"\n"),
                "|[[routes]]",
                "route \"r\" names limit \"logn\", which is not defined",
                Some("did you mean \"login\"?"),
            ),
            case(
                "route names an undefined limit, none defined",
                plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nlimit = \"login\"\n"),
                "|[[routes]]",
                "route \"r\" names limit \"login\", which is not defined",
                Some("add [limits.login] with rate = \"10/m\""),
            ),
            case(
                "claim key without an authenticator",
                plain("[limits.per-user]\nrate = \"10/m\"\nkey = \"claim:sub\"\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nlimit = \"per-user\"\n"),
                "|[[routes]]",
                "route \"r\" uses limit \"per-user\", keyed by claim \"sub\", but the route has no JWT authenticator",
                Some("type = \"jwt\" authenticator"),
            ),
            case(
                "claim key behind basic auth",
                plain(&format!("[auth.ops]\ntype = \"basic\"\nusers = {{ admin = \"{HASH}\" }}\n\n[limits.per-user]\nrate = \"10/m\"\nkey = \"claim:sub\"\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"ops\"\nlimit = \"per-user\"\n")),
                "|[[routes]]",
                "keyed by claim \"sub\", but the route has no JWT authenticator",
                Some("key = \"client\""),
            ),
            case(
                "duplicate route name",
                plain("[[routes]]\nname = \"r\"\npath_prefix = \"/a\"\nupstream = \"data\"\n\n[[routes]] # second\nname = \"r\"\npath_prefix = \"/b\"\nupstream = \"data\"\n"),
                "[[routes]] # second",
                "route name \"r\" is used twice",
                Some("give each route its own name"),
            ),
            case(
                "same host and path_prefix on one listener",
                plain("[[routes]]\nname = \"a\"\nhost = \"api.example.com\"\npath_prefix = \"/x\"\nupstream = \"data\"\n\n[[routes]] # second\nname = \"b\"\nhost = \"api.example.com\"\npath_prefix = \"/x\"\ndeny = true\n"),
                "[[routes]] # second",
                "routes \"a\" and \"b\" both claim host api.example.com and path_prefix \"/x\" on the same listener",
                Some("give them different `listeners`"),
            ),
            case(
                "same path_prefix, any host, one listener",
                plain("[[routes]]\nname = \"a\"\npath_prefix = \"/x\"\nupstream = \"data\"\n\n[[routes]] # second\nname = \"b\"\npath_prefix = \"/x\"\nupstream = \"data\"\n"),
                "[[routes]] # second",
                "routes \"a\" and \"b\" both claim host (any) and path_prefix \"/x\"",
                Some("change the host or path_prefix"),
            ),
        ]);
    }

    #[test]
    fn listener_collisions_and_tls() {
        run_cases(vec![
            case(
                "duplicate address",
                "[[listeners]]\nname = \"a\"\naddress = \"127.0.0.1:9000\"\n\n[[listeners]] # second\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n\n[[routes]]\nname = \"r\"\ndeny = true\n".to_string(),
                "[[listeners]] # second",
                "listener address 127.0.0.1:9000 is used twice",
                Some("give each listener its own address"),
            ),
            case(
                "duplicate name",
                plain("[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:9001\"\n"),
                "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:9000\"",
                "listener name \"web\" is used twice",
                Some("give each listener its own name"),
            ),
            case(
                "wildcard and specific address on one port",
                "[[listeners]]\nname = \"all\"\naddress = \"0.0.0.0:9002\"\n\n[[listeners]] # second\nname = \"local\"\naddress = \"127.0.0.1:9002\"\n\n[[routes]]\nname = \"r\"\ndeny = true\n".to_string(),
                "[[listeners]] # second",
                "listener address 127.0.0.1:9002 and 0.0.0.0:9002 of listener \"all\" cannot both be bound: a wildcard address takes port 9002 on every interface",
                Some("listen on the wildcard address only"),
            ),
            case(
                "tls listener without certificates",
                plain(TLS_LISTENER),
                "[[listeners]]",
                "a tls listener needs at least one [[tls.certificates]]",
                Some("add [[tls.certificates]]"),
            ),
            case(
                "redirect_https without a tls listener",
                plain("[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:8080\"\nredirect_https = true\n"),
                "[[listeners]]",
                "`redirect_https` needs a tls listener to redirect to",
                Some("add a listener with tls = true"),
            ),
            case(
                "no listeners at all",
                "[upstreams.data]\nurl = \"http://127.0.0.1:8880\"\n".to_string(),
                "|[upstreams.data]",
                "no [[listeners]] are configured, so the gateway would serve nothing",
                Some("tls = true"),
            ),
        ]);
    }

    #[test]
    fn same_host_and_prefix_on_disjoint_listeners_is_fine() {
        let dir = Dir::new();
        let text = "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:9000\"\n\n[[listeners]]\nname = \"ops\"\naddress = \"127.0.0.1:9001\"\n\n[upstreams.data]\nurl = \"http://127.0.0.1:8880\"\n\n[[routes]]\nname = \"public-metrics\"\npath_prefix = \"/metrics\"\ndeny = true\nlisteners = [\"web\"]\n\n[[routes]]\nname = \"ops-metrics\"\npath_prefix = \"/metrics\"\nupstream = \"data\"\nlisteners = [\"ops\"]\n";
        let config = accepted(dir.load(text, &[]), "disjoint listeners").config;
        let names: Vec<_> = config.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["public-metrics", "ops-metrics"]);
    }

    #[test]
    fn warnings_do_not_refuse_the_config() {
        let dir = Dir::new();
        dir.write("a.pem", "x")
            .write("b.pem", "x")
            .write("k.pem", "x");
        let text = format!("[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"a.pem\"\nkey = \"k.pem\"\n\n[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"b.pem\"\nkey = \"k.pem\"\n\n[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:8080\"\nredirect_https = true\n\n[auth.ops]\ntype = \"basic\"\nusers = {{ admin = \"x\" }}\n\n[[routes]]\nname = \"closed\"\ndeny = true\nauth = \"ops\"\nlisteners = [\"http\"]\n{TLS_LISTENER}{PLAIN}");
        let loaded = accepted(dir.load(&text, &[]), "warnings only");
        assert_eq!(
            warning_messages(&loaded.warnings),
            [
                "server name localhost is listed for more than one certificate; the first one serves it",
                "route \"closed\" has deny = true, so its `auth` is never used",
                "route \"closed\" lists listener \"http\", which only redirects to https and serves no routes",
            ]
        );
    }

    /// A config with one mistake reports that one mistake: an upstream,
    /// listener or host that was refused must not be reported again as
    /// missing or as colliding with another route.
    #[test]
    fn one_mistake_gives_one_error() {
        let cases: &[(&str, String, &str)] = &[
            (
                "bad upstream url, route names that upstream",
                plain("[upstreams.slow]\nurl = \"127.0.0.1:8881\"\n\n[[routes]]\nname = \"r\"\nupstream = \"slow\"\n"),
                "url = |\"127.0.0.1:8881\"",
            ),
            (
                "bad listener address, route names that listener",
                plain("[[listeners]]\nname = \"ops\"\naddress = \"localhost:9001\"\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nlisteners = [\"ops\"]\n"),
                "address = |\"localhost:9001\"",
            ),
            (
                "bad host on a route, another route on / for any host",
                plain("[[routes]]\nname = \"any\"\nupstream = \"data\"\n\n[[routes]]\nname = \"bad-host\"\nhost = \"a.*.com\"\nupstream = \"data\"\n"),
                "host = |\"a.*.com\"",
            ),
            (
                "bad authenticator, route names it",
                plain("[auth.ops]\ntype = \"ldap\"\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"ops\"\n"),
                "type = |\"ldap\"",
            ),
        ];
        for (name, toml, at) in cases {
            let dir = Dir::new();
            let diags = rejected(dir.load(toml, &[]), name);
            assert_error_at(&diags, &dir.origin("gateway.toml", toml, at), "", None);
            assert_eq!(
                error_count(&diags),
                1,
                "{name}: one mistake, one error\n{diags}"
            );
        }
    }
}
