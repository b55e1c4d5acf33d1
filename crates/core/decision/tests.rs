//! Every refusal, the order of the checks, the redirect, strip_prefix and the
//! forwarding headers, on in-memory requests and made-up connections.

use std::net::IpAddr;

use http::request::Parts;
use pingora::http::RequestHeader;
use postern_config::{Diagnostics, ListenerKind, Service};
use postern_policy::host::HostPattern;

use super::*;
use crate::snapshot;

const CONFIG: &str = r#"
[gateway]
trusted_proxies = ["10.0.0.0/8"]
max_header_size = "1KB"
access_log = "off"

[[listeners]]
name = "web"
address = "127.0.0.1:18443"

[[listeners]]
name = "ops"
address = "127.0.0.1:18444"

[upstreams.data]
url = "http://127.0.0.1:9"

[[routes]]
name = "open"
upstream = "data"
listeners = ["web"]

[[routes]]
name = "api"
path_prefix = "/api"
strip_prefix = true
upstream = "data"

[[routes]]
name = "closed"
path_prefix = "/closed"
deny = true

[[routes]]
name = "inside"
path_prefix = "/inside"
allow = ["10.1.0.0/16"]
max_body_size = "10"
upstream = "data"

[[routes]]
name = "small"
path_prefix = "/small"
max_body_size = "10"
upstream = "data"

[[routes]]
name = "health"
path_prefix = "/health"
service = "health"

[[routes]]
name = "only"
host = "*.example.com"
path_prefix = "/only"
upstream = "data"
"#;

/// A snapshot compiled from TOML, as `postern run` would from a file.
fn snapshot_of(toml: &str) -> (Snapshot, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let loaded = postern_config::load(&path, &[]).unwrap_or_else(|diags| {
        let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        panic!("config does not load: {errors:?}")
    });
    let mut diags = Diagnostics::default();
    let snapshot = snapshot::compile(loaded.config, &mut diags).unwrap_or_else(|| {
        let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
        panic!("config does not compile: {errors:?}")
    });
    (snapshot, dir)
}

/// A GET with this Host.
fn request(target: &str, host: &[u8]) -> Parts {
    let mut parts = hostless(target);
    parts
        .headers
        .insert("host", http::HeaderValue::from_bytes(host).unwrap());
    parts
}

fn hostless(target: &str) -> Parts {
    let request = http::Request::builder().uri(target).body(()).unwrap();
    request.into_parts().0
}

/// A CONNECT to `authority`, with that Host.
fn connect(authority: &str) -> Parts {
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(authority)
        .header("host", authority)
        .body(())
        .unwrap();
    request.into_parts().0
}

/// A GET for `app.test`.
fn get(target: &str) -> Parts {
    request(target, b"app.test")
}

fn with(mut parts: Parts, name: &'static str, value: &str) -> Parts {
    parts.headers.append(name, value.parse().unwrap());
    parts
}

fn plain(peer: &str) -> Connection<'static> {
    Connection {
        listener: "web",
        kind: ListenerKind::Plain,
        peer: Some(peer.parse().unwrap()),
        local_port: 8080,
        certificate: None,
        client_certificate: None,
    }
}

const CLIENT: &str = "203.0.113.9";

/// (status, reason) of a refusal; panics on anything else.
fn refused(decision: &Decision) -> (u16, &'static str) {
    match decision {
        Decision::Refuse(refusal) => (refusal.kind.status(), refusal.reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn forwarded(decision: Decision) -> Forward {
    match decision {
        Decision::Forward(forward) => forward,
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn every_refusal() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let long_target = format!("/{}", "a".repeat(8 * 1024));
    let big_header = "x".repeat(1024);
    let names = [HostPattern::parse("other.test").unwrap()];
    let tls = Connection {
        kind: ListenerKind::Tls,
        certificate: Some(&names),
        ..plain(CLIENT)
    };
    let nowhere = Connection {
        listener: "no-such-listener",
        ..plain(CLIENT)
    };
    let no_peer = Connection {
        peer: None,
        ..plain(CLIENT)
    };
    let cases: Vec<(&str, Parts, Connection, u16, &str)> = vec![
        (
            "405 CONNECT, before anything else",
            with(connect("app.test:443"), "x-big", &big_header),
            plain(CLIENT),
            405,
            "CONNECT is not proxied",
        ),
        (
            "414",
            get(&long_target),
            plain(CLIENT),
            414,
            "request target too long",
        ),
        (
            "431",
            with(get("/"), "x-big", &big_header),
            plain(CLIENT),
            431,
            "request headers larger than max_header_size",
        ),
        (
            "400 %2F",
            get("/a%2Fb"),
            plain(CLIENT),
            400,
            "encoded '/' (%2F) in path",
        ),
        (
            "400 ..",
            get("/a/../.."),
            plain(CLIENT),
            400,
            "'..' climbs above the root",
        ),
        ("400 no Host", hostless("/"), plain(CLIENT), 400, "no Host"),
        (
            "400 Host not ASCII",
            request("/", b"caf\xc3\xa9.test"),
            plain(CLIENT),
            400,
            "Host is not visible ASCII",
        ),
        (
            "400 Host and authority differ",
            get("http://elsewhere.test/"),
            plain(CLIENT),
            400,
            "Host differs from the request target's authority",
        ),
        (
            "400 malformed Host",
            request("/", b"a..b"),
            plain(CLIENT),
            400,
            "malformed Host",
        ),
        (
            "421",
            get("/"),
            tls,
            421,
            "Host not covered by the connection's certificate",
        ),
        (
            "404 listener",
            get("/"),
            nowhere,
            404,
            "listener serves no routes",
        ),
        (
            "404 route",
            request("/elsewhere", b"www.example.com"),
            plain(CLIENT),
            404,
            "no route",
        ),
        (
            "403 deny",
            get("/closed/x"),
            plain(CLIENT),
            403,
            "route denies every request",
        ),
        ("403 no peer", get("/"), no_peer, 403, "no peer address"),
        (
            "400 chain",
            with(get("/"), "x-forwarded-for", "not-an-address"),
            plain("10.0.0.1"),
            400,
            "unreadable forwarding chain from a trusted proxy",
        ),
        (
            "403 allow",
            get("/inside"),
            plain(CLIENT),
            403,
            "client not in the route's allow list",
        ),
        (
            "413",
            with(get("/small"), "content-length", "11"),
            plain(CLIENT),
            413,
            "request body larger than max_body_size",
        ),
    ];
    for (name, parts, connection, status, reason) in cases {
        let (decision, _) = decide(&parts, &connection, &snapshot);
        assert_eq!(refused(&decision), (status, reason), "{name}");
    }
}

#[test]
fn the_first_failed_check_answers() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let long_target = format!("/closed/{}", "a".repeat(8 * 1024));
    let names = [HostPattern::parse("other.test").unwrap()];
    let tls = Connection {
        kind: ListenerKind::Tls,
        certificate: Some(&names),
        ..plain(CLIENT)
    };
    let nowhere = Connection {
        listener: "no-such-listener",
        ..plain(CLIENT)
    };
    // Each request fails two checks; the earlier one is the answer.
    let cases: Vec<(&str, Parts, Connection, u16)> = vec![
        (
            "limits before Host",
            hostless(&long_target),
            plain(CLIENT),
            414,
        ),
        ("path before Host", hostless("/a%2Fb"), plain(CLIENT), 400),
        (
            "Host before the listener's routes",
            request("/", b"a..b"),
            nowhere,
            400,
        ),
        ("421 before deny", get("/closed"), tls, 421),
        (
            "deny before the client chain",
            with(get("/closed"), "x-forwarded-for", "junk"),
            plain("10.0.0.1"),
            403,
        ),
        (
            "the chain before allow",
            with(get("/inside"), "x-forwarded-for", "junk"),
            plain("10.0.0.1"),
            400,
        ),
        (
            "allow before the body size",
            with(get("/inside"), "content-length", "99999"),
            plain(CLIENT),
            403,
        ),
    ];
    for (name, parts, connection, status) in cases {
        let (decision, _) = decide(&parts, &connection, &snapshot);
        assert_eq!(refused(&decision).0, status, "{name}");
    }
}

#[test]
fn what_was_seen_is_kept_for_the_log() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let (_, seen) = decide(&get("/inside/./x"), &plain(CLIENT), &snapshot);
    assert_eq!(seen.path.as_deref(), Some("/inside/x"));
    assert_eq!(seen.host.as_deref(), Some("app.test"));
    assert_eq!(seen.route.as_ref().map(|r| r.name.as_str()), Some("inside"));
    assert_eq!(seen.client, Some(CLIENT.parse().unwrap()));
    let (_, seen) = decide(&get("/a%2F"), &plain(CLIENT), &snapshot);
    assert!(seen.path.is_none() && seen.route.is_none());
}

#[test]
fn a_trusted_proxy_names_the_client_and_others_are_not_read() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let from_proxy = with(
        with(get("/inside"), "x-forwarded-for", "10.1.2.3"),
        "x-forwarded-for",
        "10.0.0.7",
    );
    let (decision, seen) = decide(&from_proxy, &plain("10.0.0.1"), &snapshot);
    let forward = forwarded(decision);
    assert_eq!(seen.client, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(
        forward.trusted_chain,
        Some(TrustedChain {
            x_forwarded_for: Some("10.1.2.3, 10.0.0.7".into()),
            forwarded: None,
        }),
        "lines of a list header are joined"
    );

    let spoofed = with(get("/"), "x-forwarded-for", "10.1.2.3");
    let (decision, seen) = decide(&spoofed, &plain(CLIENT), &snapshot);
    assert_eq!(seen.client, Some(CLIENT.parse().unwrap()));
    assert_eq!(forwarded(decision).trusted_chain, None);
}

#[test]
fn the_target_sent_upstream_is_canonical_and_stripped() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let target = |path: &str| -> String {
        let (decision, _) = decide(&get(path), &plain(CLIENT), &snapshot);
        forwarded(decision).target.as_str().to_string()
    };
    assert_eq!(target("/api/x/y?q=1"), "/x/y?q=1");
    assert_eq!(target("/api"), "/");
    assert_eq!(target("/api/"), "/");
    assert_eq!(target("/apix"), "/apix", "a prefix matches whole segments");
    assert_eq!(target("/a//b/./c/../d?k=v"), "/a/b/d?k=v");
    assert_eq!(target("/%7Euser"), "/~user");
    assert_eq!(target("/plain?x=1"), "/plain?x=1");
    assert_eq!(
        target("http://app.test/abs?x"),
        "/abs?x",
        "an absolute-form target goes upstream in origin form"
    );
}

#[test]
fn built_in_services_see_the_path_below_their_prefix() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let (decision, _) = decide(&get("/health/ready"), &plain(CLIENT), &snapshot);
    match decision {
        Decision::Serve {
            service,
            relative_path,
        } => {
            assert_eq!(service, Service::Health);
            assert_eq!(relative_path, "/ready");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn forwarding_headers_are_set_after_the_decision() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    // TLS listener so the proto is https.
    let names = [HostPattern::parse("app.test").unwrap()];
    let tls = |peer: &'static str| Connection {
        kind: ListenerKind::Tls,
        certificate: Some(&names),
        local_port: 8443,
        ..plain(peer)
    };
    let rewritten = |parts: Parts, connection: Connection| -> Vec<(String, String)> {
        let (decision, seen) = decide(&parts, &connection, &snapshot);
        let forward = forwarded(decision);
        let client_request = RequestHeader::from(parts);
        let mut upstream_request = client_request.clone();
        crate::forwarding::rewrite(
            &mut upstream_request,
            &client_request,
            &forward,
            seen.client.unwrap(),
            None,
            &[],
            &http::HeaderValue::from_static("req-1"),
        )
        .unwrap();
        let mut pairs: Vec<(String, String)> = upstream_request
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        pairs.push(("(target)".into(), upstream_request.uri.to_string()));
        pairs.sort();
        pairs
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = list
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };

    let spoofing = with(
        with(
            request("/api/x", b"App.test:8443"),
            "x-forwarded-for",
            "127.0.0.1",
        ),
        "x-real-ip",
        "127.0.0.1",
    );
    assert_eq!(
        rewritten(spoofing, tls(CLIENT)),
        pairs(&[
            ("(target)", "/x"),
            ("host", "App.test:8443"),
            ("x-forwarded-for", CLIENT),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "App.test:8443"),
            ("x-forwarded-port", "8443"),
            ("x-real-ip", CLIENT),
            (
                "forwarded",
                "for=203.0.113.9;proto=https;host=\"App.test:8443\""
            ),
            ("x-request-id", "req-1"),
        ]),
        "an untrusted peer's forwarding headers are replaced"
    );

    let via_proxy = with(request("/", b"app.test"), "x-forwarded-for", "198.51.100.4");
    assert_eq!(
        rewritten(via_proxy, tls("10.0.0.2")),
        pairs(&[
            ("(target)", "/"),
            ("host", "app.test"),
            ("x-forwarded-for", "198.51.100.4, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.test"),
            ("x-forwarded-port", "8443"),
            ("x-real-ip", "198.51.100.4"),
            ("forwarded", "for=10.0.0.2;proto=https;host=\"app.test\""),
            ("x-request-id", "req-1"),
        ]),
        "a trusted proxy's chain is extended"
    );
}

#[test]
fn redirect_https_keeps_the_canonical_path_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["app.test".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config = format!(
        r#"
[gateway]
access_log = "off"

[[listeners]]
name = "tls"
address = "127.0.0.1:18443"
tls = true

[[listeners]]
name = "redirect"
address = "127.0.0.1:18080"
redirect_https = true

[[tls.certificates]]
server_names = ["app.test"]
cert = "{}"
key = "{}"

[upstreams.data]
url = "http://127.0.0.1:9"

[[routes]]
name = "open"
upstream = "data"
"#,
        cert.display(),
        key.display()
    );
    let (snapshot, _config_dir) = snapshot_of(&config);
    let redirect = Connection {
        listener: "redirect",
        kind: ListenerKind::RedirectHttps,
        ..plain(CLIENT)
    };
    let (decision, _) = decide(&get("/a/./b//c?x=1&y"), &redirect, &snapshot);
    match decision {
        Decision::Redirect(location) => {
            assert_eq!(location, "https://app.test:18443/a/b/c?x=1&y")
        }
        other => panic!("{other:?}"),
    }
    let (decision, _) = decide(&request("/", b"APP.test."), &redirect, &snapshot);
    assert!(matches!(decision, Decision::Redirect(l) if l == "https://app.test:18443/"));
    let (decision, _) = decide(&request("/", b"other.test"), &redirect, &snapshot);
    assert_eq!(
        refused(&decision),
        (404, "redirect requested for a host no certificate serves")
    );
    // Checks that come after the redirect never run on its listener.
    let (decision, _) = decide(
        &get("/x"),
        &Connection {
            peer: None,
            ..redirect
        },
        &snapshot,
    );
    assert!(matches!(decision, Decision::Redirect(_)));
}

#[test]
fn a_peer_is_matched_as_ipv4_when_mapped() {
    let (snapshot, _dir) = snapshot_of(CONFIG);
    let mapped: IpAddr = "::ffff:10.1.0.5".parse().unwrap();
    let connection = Connection {
        peer: Some(mapped),
        ..plain(CLIENT)
    };
    let (decision, seen) = decide(&get("/inside"), &connection, &snapshot);
    assert_eq!(seen.client, Some("10.1.0.5".parse().unwrap()));
    assert_eq!(
        forwarded(decision).peer,
        "10.1.0.5".parse::<IpAddr>().unwrap()
    );
}
