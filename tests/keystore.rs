//! TLS from the keystores Domino REST API operators already have: PKCS#12
//! (modern and legacy encryption, empty password) and JKS, served by the
//! real gateway and checked by a real TLS client against the fixtures' CA.
//! The fixtures and the openssl/keytool commands that made them are in
//! crates/keystore/tests/fixtures/.

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;

use crate::support::{echo, get, postern_command, tls_connect, upstream, Gateway, TlsOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/keystore/tests/fixtures")
        .join(name)
}

fn der(name: &str) -> CertificateDer<'static> {
    CertificateDer::from(std::fs::read(fixture(name)).expect("fixture"))
}

const RSA_NAME: &str = "domino.example.test";

fn config(data: std::net::SocketAddr, certificate: &str) -> String {
    format!(
        "{}\n[[routes]]\nname = \"all\"\nupstream = \"data\"\n\n{certificate}\n",
        upstream("data", data, "")
    )
}

/// Each keystore kind is served with its whole chain, and requests work.
/// (Both fixture leaves, RSA and EC, carry the SAN domino.example.test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystores_are_served_with_their_chain() {
    let data = echo("data").await;
    let root = der("root.der");
    let cases = [
        (
            "PKCS#12, AES (OpenSSL 3)",
            "rsa-modern.p12",
            Some("changeit"),
            None,
            RSA_NAME,
            "leaf-rsa.der",
        ),
        (
            "PKCS#12, RC2/3DES (-legacy)",
            "rsa-legacy.p12",
            Some("changeit"),
            None,
            RSA_NAME,
            "leaf-rsa.der",
        ),
        (
            "PKCS#12, empty password",
            "rsa-empty-password.p12",
            None,
            None,
            RSA_NAME,
            "leaf-rsa.der",
        ),
        (
            "PKCS#12 from keytool",
            "rsa-java.p12",
            Some("changeit"),
            None,
            RSA_NAME,
            "leaf-rsa.der",
        ),
        (
            "JKS, RSA",
            "rsa.jks",
            Some("changeit"),
            None,
            RSA_NAME,
            "leaf-rsa.der",
        ),
        (
            "JKS, EC",
            "ec.jks",
            Some("changeit"),
            None,
            RSA_NAME,
            "leaf-ec.der",
        ),
        (
            "JKS, two keys, alias",
            "two-keys.jks",
            Some("changeit"),
            Some("OLD"),
            RSA_NAME,
            "leaf-ec.der",
        ),
    ];
    for (case, file, password, alias, name, leaf) in cases {
        let mut entry = format!(
            "[[tls.certificates]]\nserver_names = [\"{name}\"]\nkeystore = '{}'\n",
            fixture(file).display()
        );
        if password.is_some() {
            entry.push_str("password_env = \"KEYSTORE_TEST_PASSWORD\"\n");
        }
        if let Some(alias) = alias {
            entry.push_str(&format!("alias = \"{alias}\"\n"));
        }
        let mut builder = Gateway::builder(config(data.local_addr(), &entry));
        if let Some(password) = password {
            builder = builder.env("KEYSTORE_TEST_PASSWORD", password);
        }
        let gw = builder.start().await;
        let mut conn = tls_connect(gw.tls_port, &root, TlsOptions::sni(name))
            .await
            .unwrap_or_else(|e| panic!("{case}: handshake verified against the root CA: {e}"));
        let chain = conn.peer_certificates();
        assert_eq!(chain[0], der(leaf), "{case}: the leaf");
        assert_eq!(
            chain.get(1),
            Some(&der("intermediate.der")),
            "{case}: intermediate served next"
        );
        let response = conn
            .send(get(name, "/x").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{case}: request: {e}"));
        assert_eq!(response.status, 200, "{case}");
        assert_eq!(response.echo()["backend"], "data", "{case}");
    }
}

fn check(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).expect("write config");
    let mut command = postern_command();
    command.args(["check", "-c"]).arg(&path);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run postern check");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn keystore_config(entry: &str) -> String {
    format!(
        "[[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:8443\"\ntls = true\n\n\
         [upstreams.data]\nurl = \"http://127.0.0.1:8880\"\n\n\
         [[routes]]\nname = \"all\"\nupstream = \"data\"\n\n\
         [[tls.certificates]]\nserver_names = [\"{RSA_NAME}\"]\n{entry}"
    )
}

/// Bad keystores are refused by `postern check` with the file named, the
/// fix given, and never the password.
#[test]
fn keystore_problems_are_reported_by_check() {
    let secret = "hunter2-not-the-password";
    // (case, certificate entry, environment, expected in the error)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong password",
            format!(
                "keystore = '{}'\npassword_env = \"KS_PW\"\n",
                fixture("rsa-modern.p12").display()
            ),
            vec![("KS_PW", secret)],
            "password is wrong",
        ),
        (
            "password variable not set",
            format!(
                "keystore = '{}'\npassword_env = \"KS_PW_UNSET_FOR_TEST\"\n",
                fixture("rsa-modern.p12").display()
            ),
            vec![],
            "environment variable KS_PW_UNSET_FOR_TEST (password_env) is not set",
        ),
        (
            "several keys, no alias",
            format!(
                "keystore = '{}'\npassword_env = \"KS_PW\"\n",
                fixture("two-keys.jks").display()
            ),
            vec![("KS_PW", "changeit")],
            "old, server",
        ),
        (
            "alias not in the store",
            format!(
                "keystore = '{}'\npassword_env = \"KS_PW\"\nalias = \"nope\"\n",
                fixture("two-keys.jks").display()
            ),
            vec![("KS_PW", "changeit")],
            "nope",
        ),
        (
            "a truststore, no key",
            format!(
                "keystore = '{}'\npassword_env = \"KS_PW\"\n",
                fixture("trusted-only.jks").display()
            ),
            vec![("KS_PW", "changeit")],
            "no private key",
        ),
        (
            "a PEM file given as keystore",
            format!("keystore = '{}'\n", fixture("leaf-rsa.pem").display()),
            vec![],
            "PEM",
        ),
        (
            "keystore and cert together",
            format!(
                "keystore = '{}'\ncert = '{}'\nkey = '{}'\n",
                fixture("rsa-modern.p12").display(),
                fixture("leaf-rsa.pem").display(),
                fixture("leaf-rsa.key.pem").display()
            ),
            vec![],
            "has both `keystore` and `cert`/`key`",
        ),
    ];
    let mut failures = Vec::new();
    for (case, entry, env, expected) in cases {
        let (code, stderr) = check(&keystore_config(&entry), &env);
        let ok = code == 1
            && stderr
                .lines()
                .any(|l| l.contains(": error: ") && l.contains(expected))
            && !stderr.contains(secret);
        if !ok {
            failures.push(format!("{case}: exit {code}\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));

    // And a good one passes.
    let good = format!(
        "keystore = '{}'\npassword_env = \"KS_PW\"\n",
        fixture("rsa.jks").display()
    );
    let (code, stderr) = check(&keystore_config(&good), &[("KS_PW", "changeit")]);
    assert_eq!(code, 0, "{stderr}");
}
