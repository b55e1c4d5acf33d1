//! TLS termination: certificate choice by SNI, the default certificate, 421
//! for hosts the connection's certificate does not cover, ALPN and
//! `min_version`.

use crate::support;
use crate::support::{
    assert_gateway_error, echo, get, upstream, upstream_header, Gateway, H2Conn, TlsOptions,
};

fn any_host_route(data: std::net::SocketAddr) -> String {
    format!(
        r#"{}
[[routes]]
name = "all"
upstream = "data"
"#,
        upstream("data", data, ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    let cases = [
        ("api.example.com", "main"),
        ("metrics.example.com", "main"),
        ("example.com", "main"),
        ("localhost", "local"),
        ("foo.example.net", "wildcard"),
        ("bar.example.net", "wildcard"),
        ("API.EXAMPLE.COM", "main"),
    ];
    for (name, expected) in cases {
        let mut conn = gw.tls(name).await;
        let chain = conn.peer_certificates();
        assert!(!chain.is_empty(), "{name}: no certificate");
        assert_eq!(
            gw.pki.which(&chain[0]),
            expected,
            "certificate for SNI {name}"
        );
        let response = conn
            .send(get(name, "/x").as_bytes())
            .await
            .expect("response");
        assert_eq!(response.echo()["backend"], "data", "{name}");
    }
    assert_eq!(data.requests_seen(), cases.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_sni_get_the_default_certificate() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    // The first configured certificate (api/metrics/example.com).
    let mut conn = gw
        .connect(TlsOptions::no_sni("api.example.com"))
        .await
        .expect("no-SNI handshake verified as api.example.com");
    assert_eq!(gw.pki.which(&conn.peer_certificates()[0]), "main");
    let response = conn
        .send(get("metrics.example.com", "/x").as_bytes())
        .await
        .expect("response");
    assert_eq!(response.echo()["backend"], "data");

    // A name the default certificate does not carry is misdirected.
    let mut conn = gw
        .connect(TlsOptions::no_sni("api.example.com"))
        .await
        .expect("handshake");
    let response = conn
        .send(get("localhost", "/x").as_bytes())
        .await
        .expect("response");
    assert_gateway_error(&response, 421, "misdirected_request", None);

    // An SNI no certificate serves also gets the default certificate.
    let conn = gw
        .connect(TlsOptions::sni("unknown.example.org").verify_as("example.com"))
        .await
        .expect("unknown SNI handshake");
    assert_eq!(gw.pki.which(&conn.peer_certificates()[0]), "main");
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_outside_the_connections_certificate_is_421() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    for host in [
        "other.example.org",
        // Served by the gateway, but by another certificate.
        "foo.example.net",
        "localhost",
        "a.api.example.com",
    ] {
        let response = gw.send("api.example.com", get(host, "/x")).await;
        assert_gateway_error(&response, 421, "misdirected_request", None);
    }
    // The wildcard certificate covers one label only.
    let response = gw
        .send("foo.example.net", get("a.b.example.net", "/x"))
        .await;
    assert_gateway_error(&response, 421, "misdirected_request", None);
    assert_eq!(
        data.requests_seen(),
        0,
        "a misdirected request was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_of_one_certificate_share_a_connection() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    let mut conn = gw.tls("api.example.com").await;
    for host in ["api.example.com", "metrics.example.com", "example.com"] {
        let raw = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let echo_json = conn.send(raw.as_bytes()).await.expect("response").echo();
        assert_eq!(echo_json["headers"]["x-forwarded-host"][0], host);
    }
    // A misdirected request on the same connection is refused alone.
    let response = conn
        .send(b"GET /x HTTP/1.1\r\nHost: foo.example.net\r\n\r\n")
        .await
        .expect("response");
    assert_gateway_error(&response, 421, "misdirected_request", None);
    assert_eq!(data.requests_seen(), 3);

    // Likewise under the wildcard certificate.
    let mut conn = gw.tls("foo.example.net").await;
    let raw = get("bar.example.net", "/x");
    let echo_json = conn.send(raw.as_bytes()).await.expect("response").echo();
    assert_eq!(
        echo_json["headers"]["x-forwarded-host"][0],
        "bar.example.net"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiates_h2_or_http11() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    let conn = gw
        .connect(TlsOptions::sni("api.example.com").alpn(&[b"h2", b"http/1.1"]))
        .await
        .expect("handshake offering h2");
    assert_eq!(conn.alpn().as_deref(), Some(&b"h2"[..]));

    let mut conn = gw
        .connect(TlsOptions::sni("api.example.com").alpn(&[b"http/1.1"]))
        .await
        .expect("handshake offering http/1.1");
    assert_eq!(conn.alpn().as_deref(), Some(&b"http/1.1"[..]));
    let response = conn
        .send(get("api.example.com", "/x").as_bytes())
        .await
        .expect("response");
    assert_eq!(response.echo()["backend"], "data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_13_refuses_tls12_clients() {
    let data = echo("data").await;
    let gw = Gateway::builder(any_host_route(data.local_addr()))
        .min_version("1.3")
        .start()
        .await;

    // A TLS 1.2 client that lists no TLS 1.3 cipher suite is refused.
    let tls12_suites = TlsOptions::sni("api.example.com").tls12_suites_only();
    if let Ok(conn) = gw.connect(tls12_suites).await {
        panic!(
            "a TLS 1.2 client offering only TLS 1.2 suites was served with \
             min_version = \"1.3\", negotiating {:?}",
            conn.protocol_version()
        );
    }

    // So must be one that lists TLS 1.3 suites but supports only TLS 1.2
    // (the supported_versions extension decides the version, not the suites).
    let tls12 = TlsOptions::sni("api.example.com").versions(&[&rustls::version::TLS12]);
    if let Ok(conn) = gw.connect(tls12).await {
        panic!(
            "a TLS 1.2-only client (SNI api.example.com) completed a handshake with \
             min_version = \"1.3\", negotiating {:?}",
            conn.protocol_version()
        );
    }

    let mut conn = gw
        .connect(TlsOptions::sni("api.example.com").versions(&[&rustls::version::TLS13]))
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let response = conn
        .send(get("api.example.com", "/x").as_bytes())
        .await
        .expect("response");
    assert_eq!(response.echo()["backend"], "data");

    // Without SNI, too.
    let tls12_no_sni = TlsOptions::no_sni("api.example.com").versions(&[&rustls::version::TLS12]);
    if let Ok(conn) = gw.connect(tls12_no_sni).await {
        panic!(
            "a TLS 1.2-only client without SNI completed a handshake with \
             min_version = \"1.3\", negotiating {:?}",
            conn.protocol_version()
        );
    }
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_12_serves_tls12_clients() {
    let data = echo("data").await;
    let gw = Gateway::builder(any_host_route(data.local_addr()))
        .min_version("1.2")
        .start()
        .await;

    let mut conn = gw
        .connect(TlsOptions::sni("api.example.com").versions(&[&rustls::version::TLS12]))
        .await
        .expect("TLS 1.2 handshake with min_version 1.2");
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let response = conn
        .send(get("api.example.com", "/x").as_bytes())
        .await
        .expect("response");
    assert_eq!(response.echo()["backend"], "data");

    let conn = gw
        .connect(TlsOptions::sni("api.example.com"))
        .await
        .expect("default handshake");
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_chain_verifies_and_wrong_names_do_not() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    // The chain is leaf then CA, as configured.
    let conn = gw.tls("localhost").await;
    let chain = conn.peer_certificates();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].as_ref(), gw.pki.ca.as_ref());

    // SNI localhost, but the client expects example.com: the certificate served
    // (the local one) must not verify.
    let result = gw
        .connect(TlsOptions::sni("localhost").verify_as("example.com"))
        .await;
    assert!(
        result.is_err(),
        "the localhost certificate verified as example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_is_shared_by_hosts_of_its_certificate_only() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    let conn = gw
        .connect(TlsOptions::sni("api.example.com").alpn(&[b"h2"]))
        .await
        .expect("h2 handshake");
    let mut h2 = H2Conn::handshake(conn).await.expect("h2 preface");

    for host in ["api.example.com", "metrics.example.com", "example.com"] {
        let response = h2.get(host, "/h2/./x?q=1", &[]).await.expect("h2 response");
        let echo_json = response.json();
        assert_eq!(echo_json["backend"], "data", "{host}: {echo_json}");
        assert_eq!(echo_json["path"], "/h2/x");
        assert_eq!(echo_json["query"], "q=1");
        assert_eq!(upstream_header(&echo_json, "x-forwarded-host"), [host]);
        assert_eq!(upstream_header(&echo_json, "x-forwarded-proto"), ["https"]);
        assert_eq!(
            upstream_header(&echo_json, "x-forwarded-for"),
            ["127.0.0.1"]
        );
    }
    assert_eq!(data.requests_seen(), 3);

    for host in ["foo.example.net", "other.example.org", "localhost"] {
        let response = h2.get(host, "/x", &[]).await.expect("h2 response");
        let body = response.json();
        assert_eq!(body["status"], 421, "{host}: {body}");
        assert_eq!(body["error"], "misdirected_request", "{host}: {body}");
        assert_eq!(body["route"], serde_json::Value::Null, "{host}: {body}");
    }

    // A host header that disagrees with :authority is not a way around 421.
    let response = h2
        .get("api.example.com", "/x", &[("host", "foo.example.net")])
        .await;
    if let Ok(response) = response {
        let body = String::from_utf8_lossy(&response.body);
        assert!(!body.contains("\"backend\""), "forwarded: {body}");
    }
    assert_eq!(
        data.requests_seen(),
        3,
        "a misdirected h2 request was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_get_the_same_path_canonicalisation() {
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;
    let conn = gw
        .connect(TlsOptions::sni("api.example.com").alpn(&[b"h2"]))
        .await
        .expect("h2 handshake");
    let mut h2 = H2Conn::handshake(conn).await.expect("h2 preface");

    let response = h2
        .get("api.example.com", "/a/%2e%2e//b/%41", &[])
        .await
        .expect("h2 response");
    let echo_json = response.json();
    assert_eq!(echo_json["backend"], "data", "{echo_json}");
    assert_eq!(echo_json["path"], "/b/A");

    for path in ["/a/%2fb", "/../x", "/a/..;/b", "/a/%00"] {
        let response = h2
            .get("api.example.com", path, &[])
            .await
            .expect("h2 response");
        let body = response.json();
        assert_eq!(body["status"], 400, "{path}: {body}");
        assert_eq!(body["error"], "bad_request", "{path}: {body}");
    }
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sni_refuses_names_no_certificate_serves() {
    let data = echo("data").await;
    let gw = Gateway::builder(any_host_route(data.local_addr()))
        .strict_sni(true)
        .start()
        .await;

    if let Ok(conn) = gw
        .connect(TlsOptions::sni("unknown.example.org").verify_as("example.com"))
        .await
    {
        panic!(
            "strict_sni served {:?} to an unknown name",
            gw.pki.which(&conn.peer_certificates()[0])
        );
    }
    // Known names, wildcards, and clients without SNI are still served.
    for (sni, leaf) in [("api.example.com", "main"), ("www.example.net", "wildcard")] {
        let conn = gw.tls(sni).await;
        assert_eq!(gw.pki.which(&conn.peer_certificates()[0]), leaf, "{sni}");
    }
    let conn = gw
        .connect(TlsOptions::no_sni("api.example.com"))
        .await
        .expect("no-SNI client gets the default certificate");
    assert_eq!(gw.pki.which(&conn.peer_certificates()[0]), "main");
    assert!(
        gw.stderr()
            .contains("no certificate serves \"unknown.example.org\""),
        "the refusal is logged\n{}",
        gw.stderr()
    );
}

/// certbot replaces the files; the gateway serves the new certificate to new
/// connections within seconds, with no restart and no failed request, while
/// connections made before keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_is_served_without_restart() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let data = echo("data").await;
    let gw = Arc::new(Gateway::start(any_host_route(data.local_addr())).await);
    let mut before = gw.tls("api.example.com").await;
    let old_der = before.peer_certificates()[0].clone();

    // Traffic on fresh connections throughout the renewal.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (gw, stop, failures, sent) = (gw.clone(), stop.clone(), failures.clone(), sent.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = match gw.connect(TlsOptions::sni("api.example.com")).await {
                    Ok(mut conn) => conn
                        .send(get("api.example.com", "/x").as_bytes())
                        .await
                        .is_ok_and(|r| r.status == 200),
                    Err(_) => false,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_der = gw.pki.renew(&gw.pki.main);
    assert_ne!(new_der, old_der);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let conn = gw.tls("api.example.com").await;
        if conn.peer_certificates()[0] == new_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within 15 s\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic task");

    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests during renewal"
    );
    assert!(sent.load(Ordering::Relaxed) > 10, "the traffic loop ran");
    // The connection made before the renewal still has the old certificate and works.
    assert_eq!(before.peer_certificates()[0], old_der);
    let response = before
        .send(get("api.example.com", "/x").as_bytes())
        .await
        .expect("old connection still serves");
    assert_eq!(response.status, 200);
    assert!(
        gw.stderr().contains("certificates reloaded from disk"),
        "{}",
        gw.stderr()
    );
}

/// A renewal that leaves a broken key keeps the old certificate serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_renewal_keeps_the_old_certificate() {
    use std::time::Duration;

    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;
    std::fs::write(
        &gw.pki.main.key_path,
        "-----BEGIN PRIVATE KEY-----\ngarbage\n",
    )
    .expect("break the key");
    // Two watch intervals and the settling pause.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mut conn = gw.tls("api.example.com").await;
    assert_eq!(gw.pki.which(&conn.peer_certificates()[0]), "main");
    let response = conn
        .send(get("api.example.com", "/x").as_bytes())
        .await
        .expect("response");
    assert_eq!(response.status, 200);
    let stderr = gw.stderr();
    assert!(
        stderr.contains("previous certificates keep serving"),
        "the broken renewal is logged\n{stderr}"
    );
    assert_eq!(
        stderr.matches("previous certificates keep serving").count(),
        1,
        "logged once, not at every look\n{stderr}"
    );
}

/// TLS 1.2 offers only ECDHE with AES-128-GCM, so the server, not the
/// client's order, decides the suite (testssl.sh's "cipher order" check), and
/// a client without it is refused rather than served something weaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_gets_aes128_gcm_whatever_the_client_prefers() {
    use rustls::CipherSuite::*;
    let data = echo("data").await;
    let gw = Gateway::start(any_host_route(data.local_addr())).await;

    let prefers_others = [
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let mut conn = gw
        .connect(TlsOptions::sni("api.example.com").tls12_suites(&prefers_others))
        .await
        .expect("a TLS 1.2 client offering AES-128-GCM among others is served");
    let suite = conn
        .stream
        .get_ref()
        .1
        .negotiated_cipher_suite()
        .map(|s| s.suite());
    assert!(
        matches!(
            suite,
            Some(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        ),
        "negotiated {suite:?}"
    );
    let response = conn
        .send(support::get("api.example.com", "/").as_bytes())
        .await
        .unwrap();
    assert_eq!(response.status, 200);

    let without_aes128 = gw
        .connect(TlsOptions::sni("api.example.com").tls12_suites(&prefers_others[..4]))
        .await;
    assert!(
        without_aes128.is_err(),
        "a TLS 1.2 client without AES-128-GCM was served"
    );
}
