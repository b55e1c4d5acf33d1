//! Client certificates (mTLS), end to end: the real `postern` binary with
//! `[tls] client_ca`, real TLS clients presenting certificates made here
//! with rcgen, and an echo upstream that reports the headers it received.

use std::io;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::support::pki::{ClientLeaf, ClientPki};
use crate::support::prometheus::{samples, series};
use crate::support::{
    assert_gateway_error, echo, postern_command, request, upstream, upstream_header, Gateway,
    Response, TlsOptions,
};

const HOST: &str = "api.example.com";

fn routes(upstreams: &str) -> String {
    format!(
        r#"{upstreams}
[auth.anyone]
type = "client_cert"

[auth.admins]
type = "client_cert"
subjects = ["CN=ops-admin,O=Example"]
claims_to_headers = {{ subject = "X-Client-Subject" }}

[auth.by-san]
type = "client_cert"
sans = ["ops-admin@example.com"]

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "data"

[[routes]]
name = "any"
path_prefix = "/any"
upstream = "data"
auth = "anyone"
listeners = ["https"]

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "data"
auth = "admins"
listeners = ["https"]

[[routes]]
name = "san"
path_prefix = "/san"
upstream = "data"
auth = "by-san"
listeners = ["https"]

[[routes]]
name = "fwd"
path_prefix = "/fwd"
upstream = "data"
auth = "anyone"
forward_client_cert = true
listeners = ["https"]

[[routes]]
name = "metrics"
path_prefix = "/metrics"
service = "metrics"
"#
    )
}

/// A gateway asking for client certificates from `pki`'s clients CA.
async fn mtls_gateway(pki: &ClientPki, data: &postern_echo::EchoServer) -> Gateway {
    Gateway::builder(routes(&upstream("data", data.local_addr(), "")))
        .client_ca(&pki.ca_path)
        .start()
        .await
}

fn options(client: Option<&ClientLeaf>) -> TlsOptions {
    let options = TlsOptions::sni(HOST);
    match client {
        Some(leaf) => options.client_cert(leaf.chain.clone(), leaf.key_pkcs8.clone()),
        None => options,
    }
}

/// One request on a fresh connection presenting `client` (or nothing).
async fn send_as(
    gw: &Gateway,
    client: Option<&ClientLeaf>,
    target: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let mut conn = gw.connect(options(client)).await?;
    conn.send(&request("GET", HOST, target, headers, b"")).await
}

async fn get_as(gw: &Gateway, client: Option<&ClientLeaf>, target: &str) -> Response {
    send_as(gw, client, target, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {target} failed: {e}"))
}

/// Why the handshake (or, in TLS 1.3, the first read after it) failed; the
/// gateway must not have answered at all.
async fn refusal(gw: &Gateway, options: TlsOptions) -> String {
    match gw.connect(options).await {
        Err(e) => e.to_string(),
        Ok(mut conn) => match conn.send(&request("GET", HOST, "/open", &[], b"")).await {
            Err(e) => e.to_string(),
            Ok(response) => panic!(
                "answered {} instead of ending the handshake",
                response.status
            ),
        },
    }
}

fn reason(response: &Response) -> Value {
    response.json()["reason"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_certificate_passes_and_none_is_401_while_open_routes_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClientPki::generate(dir.path());
    let data = echo("data").await;
    let gw = mtls_gateway(&pki, &data).await;

    // Asked for, not required: no certificate still reaches an open route.
    let open = get_as(&gw, None, "/open/x").await;
    assert_eq!(open.echo()["path"], "/open/x");
    let open_plain = gw
        .send_plain(gw.plain_port, request("GET", HOST, "/open/x", &[], b""))
        .await;
    assert_eq!(open_plain.status, 200, "the plain listener is unaffected");

    let missing = get_as(&gw, None, "/any/x").await;
    assert_gateway_error(&missing, 401, "unauthorized", Some("any"));
    assert_eq!(reason(&missing), "client certificate required");
    assert_eq!(
        missing.header("www-authenticate"),
        None,
        "no HTTP scheme asks for a certificate"
    );

    let allowed = get_as(&gw, Some(&pki.dev), "/any/x").await;
    assert_eq!(allowed.echo()["path"], "/any/x");
    let chained = get_as(&gw, Some(&pki.chained), "/any/x").await;
    assert_eq!(
        chained.status,
        200,
        "a leaf under an intermediate the client sends: {}",
        chained.text()
    );

    // Counted with their reasons.
    let text = gw.get(HOST, "/metrics").await.text();
    let all = samples(&text);
    let count = |result: &str, reason: &str| -> f64 {
        series(
            &all,
            "postern_auth_decisions_total",
            &[("route", "any"), ("result", result), ("reason", reason)],
        )
        .iter()
        .map(|s| s.value)
        .sum()
    };
    assert_eq!(count("deny", "client certificate required"), 1.0, "{text}");
    assert_eq!(count("allow", "ok"), 2.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_and_sans_decide_which_certificates_pass() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClientPki::generate(dir.path());
    let data = echo("data").await;
    let gw = mtls_gateway(&pki, &data).await;

    let admin = get_as(&gw, Some(&pki.admin), "/admin/x").await;
    let echoed = admin.echo();
    assert_eq!(
        upstream_header(&echoed, "x-client-subject"),
        ["CN=ops-admin,O=Example"],
        "the verified subject, mapped like claims_to_headers"
    );
    let dev = get_as(&gw, Some(&pki.dev), "/admin/x").await;
    assert_gateway_error(&dev, 403, "forbidden", Some("admin"));
    assert_eq!(reason(&dev), "client certificate not allowed on this route");
    let none = get_as(&gw, None, "/admin/x").await;
    assert_gateway_error(&none, 401, "unauthorized", Some("admin"));

    // A client cannot claim a subject with a header of its own.
    let forged = send_as(
        &gw,
        Some(&pki.dev),
        "/any/x",
        &[("X-Client-Subject", "CN=ops-admin,O=Example")],
    )
    .await
    .unwrap();
    assert_eq!(
        upstream_header(&forged.echo(), "x-client-subject"),
        Vec::<String>::new()
    );

    let by_san = get_as(&gw, Some(&pki.admin), "/san/x").await;
    assert_eq!(by_san.status, 200, "email SAN listed: {}", by_san.text());
    let other_san = get_as(&gw, Some(&pki.dev), "/san/x").await;
    assert_gateway_error(&other_san, 403, "forbidden", Some("san"));

    // The access log names the certificate's subject.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entry = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["route"] == "admin" && e["status"] == 200);
        if let Some(entry) = entry {
            assert_eq!(entry["client_cert"], "CN=ops-admin,O=Example", "{entry}");
            assert_eq!(entry["user"], "CN=ops-admin,O=Example", "{entry}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access log entry for the admin request:\n{}",
            gw.stdout()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_or_expired_ends_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClientPki::generate(dir.path());
    let data = echo("data").await;
    let gw = mtls_gateway(&pki, &data).await;

    for (versions, label) in [
        (&[&rustls::version::TLS13][..], "TLS 1.3"),
        (&[&rustls::version::TLS12][..], "TLS 1.2"),
    ] {
        let foreign = refusal(&gw, options(Some(&pki.foreign)).versions(versions)).await;
        assert!(
            foreign.contains("received fatal alert: UnknownCA"),
            "{label}, another CA: {foreign}"
        );
        let expired = refusal(&gw, options(Some(&pki.expired)).versions(versions)).await;
        assert!(
            expired.contains("received fatal alert: CertificateExpired"),
            "{label}, expired: {expired}"
        );
    }
    // Refused handshakes leave the gateway serving.
    assert_eq!(get_as(&gw, Some(&pki.admin), "/admin/x").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_is_forwarded_byte_exact_per_rfc9440() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClientPki::generate(dir.path());
    let data = echo("data").await;
    let gw = mtls_gateway(&pki, &data).await;
    let byte_sequence = |der: &[u8]| format!(":{}:", STANDARD.encode(der));
    let forged = [
        ("Client-Cert", ":Zm9yZ2Vk:"),
        ("Client-Cert-Chain", ":Zm9yZ2Vk:"),
    ];

    let chained = send_as(&gw, Some(&pki.chained), "/fwd/x", &forged)
        .await
        .unwrap();
    let echoed = chained.echo();
    assert_eq!(
        upstream_header(&echoed, "client-cert"),
        [byte_sequence(&pki.chained.chain[0])],
        "the leaf the client presented, and nothing the client wrote"
    );
    assert_eq!(
        upstream_header(&echoed, "client-cert-chain"),
        [byte_sequence(&pki.chained.chain[1])],
        "the intermediate, without the leaf"
    );

    let leaf_only = send_as(&gw, Some(&pki.admin), "/fwd/x", &forged)
        .await
        .unwrap();
    let echoed = leaf_only.echo();
    assert_eq!(
        upstream_header(&echoed, "client-cert"),
        [byte_sequence(&pki.admin.chain[0])]
    );
    assert_eq!(
        upstream_header(&echoed, "client-cert-chain"),
        Vec::<String>::new(),
        "a client that sent only its leaf has no chain to forward"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_client_cert_headers_never_reach_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClientPki::generate(dir.path());
    let data = echo("data").await;
    let gw = mtls_gateway(&pki, &data).await;
    let forged = [
        ("Client-Cert", ":Zm9yZ2Vk:"),
        ("Client-Cert-Chain", ":Zm9yZ2Vk:"),
    ];
    let cases: [(Option<&ClientLeaf>, &str); 3] = [
        (None, "/open/x"),
        (Some(&pki.admin), "/open/x"),
        (Some(&pki.admin), "/admin/x"),
    ];
    for (client, target) in cases {
        let response = send_as(&gw, client, target, &forged).await.unwrap();
        let echoed = response.echo();
        for name in ["client-cert", "client-cert-chain"] {
            assert_eq!(
                upstream_header(&echoed, name),
                Vec::<String>::new(),
                "{name} on {target} (certificate: {})",
                client.is_some()
            );
        }
    }
    // And on a plain listener, where no certificate can exist.
    let plain = gw
        .send_plain(gw.plain_port, request("GET", HOST, "/open/x", &forged, b""))
        .await;
    let echoed = plain.echo();
    assert_eq!(
        upstream_header(&echoed, "client-cert"),
        Vec::<String>::new()
    );
    assert_eq!(
        upstream_header(&echoed, "client-cert-chain"),
        Vec::<String>::new()
    );
}

#[test]
fn check_names_a_bad_client_ca_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients-ca.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:9000\"\n\n[tls]\nclient_ca = \"clients-ca.pem\"\n\n[upstreams.data]\nurl = \"http://127.0.0.1:8880\"\n",
    )
    .unwrap();
    let out = postern_command()
        .args(["check", "-c", "gateway.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gateway.toml:6:13: error: client_ca")
            && stderr.contains("clients-ca.pem holds no certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("help: give a PEM file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_client_ca_is_refused_and_the_old_ca_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClientPki::generate(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other = ClientPki::generate(other_dir.path());
    let data = echo("data").await;
    let gw = mtls_gateway(&pki, &data).await;

    let old = pki.ca_path.display().to_string();
    let new = other.ca_path.display().to_string();
    assert!(gw.config.contains(&old), "{}", gw.config);
    gw.rewrite(&gw.config.replace(&old, &new));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("[tls] client_ca changed") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.stderr().contains("needs an upgrade"), "{}", gw.stderr());
    assert_eq!(get_as(&gw, Some(&pki.admin), "/admin/x").await.status, 200);
    // The new file's CA is not trusted. It has the same name as the old one,
    // so rustls finds that issuer and the signature fails to verify.
    let refused = refusal(&gw, options(Some(&other.admin))).await;
    assert!(
        refused.contains("received fatal alert: DecryptError"),
        "{refused}"
    );
}
