//! `load` and `detect` against keystores made by openssl and keytool (see
//! tests/fixtures/README.md), plus stores built in memory with the `jks`
//! crate's writer for the cases keytool will not produce.

use std::time::SystemTime;

use postern_keystore::{detect, load, KeyEntry, KeystoreError, KeystoreKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const PASS: &str = "changeit";
const WRONG: &str = "Not-The-Password-42";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// rustls (with ring, the gateway's provider) takes the pair, which includes
/// checking that the key matches the leaf certificate.
fn assert_rustls_accepts(entry: &KeyEntry) {
    let chain = entry
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(entry.key_pkcs8.clone().into());
    rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .unwrap_or_else(|e| panic!("rustls rejects {:?}: {e}", entry.alias));
}

fn chain_of(leaf: &str) -> Vec<Vec<u8>> {
    vec![
        fixture(leaf),
        fixture("intermediate.der"),
        fixture("root.der"),
    ]
}

/// A store that must load: file, password, alias asked for, alias
/// expected back, and the leaf (the rest is intermediate then root).
struct Loads {
    file: &'static str,
    password: &'static str,
    ask: Option<&'static str>,
    alias: Option<&'static str>,
    leaf: &'static str,
}

const fn loads(file: &'static str, alias: &'static str, leaf: &'static str) -> Loads {
    Loads {
        file,
        password: PASS,
        ask: None,
        alias: Some(alias),
        leaf,
    }
}

#[test]
fn every_fixture_loads_leaf_first_and_rustls_accepts_it() {
    let cases = [
        loads("rsa-modern.p12", "server", "leaf-rsa.der"),
        loads("ec-modern.p12", "server-ec", "leaf-ec.der"),
        loads("rsa-legacy.p12", "server", "leaf-rsa.der"),
        Loads {
            password: "",
            ..loads("rsa-empty-password.p12", "server", "leaf-rsa.der")
        },
        Loads {
            alias: None,
            ..loads("ec-no-alias.p12", "", "leaf-ec.der")
        },
        loads("rsa-java.p12", "server", "leaf-rsa.der"),
        // No MAC, no encryption: the password does not matter.
        Loads {
            password: WRONG,
            ..loads("rsa-unencrypted.p12", "server", "leaf-rsa.der")
        },
        loads("rsa.jks", "server", "leaf-rsa.der"),
        loads("ec.jks", "server-ec", "leaf-ec.der"),
        Loads {
            ask: Some("server"),
            ..loads("two-keys.jks", "server", "leaf-rsa.der")
        },
        Loads {
            ask: Some("old"),
            ..loads("two-keys.jks", "old", "leaf-ec.der")
        },
    ];
    for case in cases {
        let file = case.file;
        let entry =
            load(&fixture(file), case.password, case.ask).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(entry.alias.as_deref(), case.alias, "{file}");
        assert!(
            entry.chain == chain_of(case.leaf),
            "{file}: chain is not leaf, intermediate, root"
        );
        assert_rustls_accepts(&entry);
    }
}

#[test]
fn detect_goes_by_content() {
    for p12 in [
        "rsa-modern.p12",
        "rsa-legacy.p12",
        "rsa-java.p12",
        "certs-only.p12",
    ] {
        assert_eq!(
            detect(&fixture(p12)).unwrap(),
            KeystoreKind::Pkcs12,
            "{p12}"
        );
    }
    for jks in ["rsa.jks", "two-keys.jks", "trusted-only.jks"] {
        assert_eq!(detect(&fixture(jks)).unwrap(), KeystoreKind::Jks, "{jks}");
    }
    let message = |name: &str| match load(&fixture(name), PASS, None) {
        Err(KeystoreError::NotAKeystore(s)) => s,
        other => panic!("{name}: {other:?}"),
    };
    for pem in ["leaf-rsa.pem", "leaf-ec.key.pem", "root.pem"] {
        assert_eq!(
            message(pem),
            "this is a PEM file: use cert = and key = instead of keystore ="
        );
    }
    assert!(message("leaf-rsa.der").contains("single DER-encoded certificate"));
    assert!(message("leaf-rsa.key.der").contains("private key"));
    assert!(message("leaf-ec.key.der").contains("private key"));
    match load(&fixture("jceks.jceks"), PASS, None) {
        Err(KeystoreError::Unsupported(s)) => assert!(s.contains("JCEKS"), "{s}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_password_is_said_without_the_password() {
    for file in [
        "rsa-modern.p12",
        "rsa-legacy.p12",
        "rsa-java.p12",
        "rsa.jks",
        "two-keys.jks",
        "trusted-only.jks",
    ] {
        let err = load(&fixture(file), WRONG, Some("server")).unwrap_err();
        assert_eq!(err, KeystoreError::WrongPassword, "{file}");
        assert_eq!(
            err.to_string(),
            "the keystore password is wrong (or the file is damaged)"
        );
        assert!(!format!("{err} {err:?}").contains(WRONG));
    }
    // The empty-password store refuses a password, and the others refuse "".
    assert_eq!(
        load(&fixture("rsa-empty-password.p12"), PASS, None).unwrap_err(),
        KeystoreError::WrongPassword
    );
    assert_eq!(
        load(&fixture("rsa-modern.p12"), "", None).unwrap_err(),
        KeystoreError::WrongPassword
    );
    assert_eq!(
        load(&fixture("rsa.jks"), "", None).unwrap_err(),
        KeystoreError::WrongPassword
    );
}

#[test]
fn jks_alias_choice_is_case_insensitive_and_lists_the_key_entries() {
    let store = fixture("two-keys.jks");
    for (asked, leaf) in [
        ("server", "leaf-rsa.der"),
        ("SERVER", "leaf-rsa.der"),
        ("Old", "leaf-ec.der"),
    ] {
        let entry = load(&store, PASS, Some(asked)).unwrap();
        assert_eq!(entry.chain[0], fixture(leaf), "{asked}");
        assert_rustls_accepts(&entry);
    }
    let available = vec!["old".to_owned(), "server".to_owned()];
    let err = load(&store, PASS, None).unwrap_err();
    assert_eq!(
        err,
        KeystoreError::SeveralKeys {
            available: available.clone()
        }
    );
    assert_eq!(
        err.to_string(),
        "the keystore holds several private keys: set alias = ... to choose one of: old, server"
    );
    // "rootca" is there, but as a trusted certificate, not a key entry.
    for wanted in ["nope", "rootca"] {
        let err = load(&store, PASS, Some(wanted)).unwrap_err();
        assert_eq!(
            err,
            KeystoreError::AliasNotFound {
                wanted: wanted.to_owned(),
                available: available.clone()
            }
        );
        assert!(err.to_string().contains("old, server"), "{err}");
    }
}

#[test]
fn pkcs12_alias_choice() {
    let store = fixture("rsa-modern.p12");
    assert_eq!(
        load(&store, PASS, Some("server")).unwrap().alias.as_deref(),
        Some("server")
    );
    assert_eq!(
        load(&store, PASS, Some("Server")).unwrap().alias.as_deref(),
        Some("server")
    );
    assert_eq!(
        load(&store, PASS, Some("other")).unwrap_err(),
        KeystoreError::AliasNotFound {
            wanted: "other".into(),
            available: vec!["server".into()]
        }
    );
}

#[test]
fn stores_without_a_key_entry() {
    for file in ["trusted-only.jks", "certs-only.p12"] {
        let err = load(&fixture(file), PASS, None).unwrap_err();
        assert_eq!(err, KeystoreError::NoKeyEntry, "{file}");
        assert_eq!(
            err.to_string(),
            "the keystore holds no private key entry, only trusted certificates"
        );
    }
}

#[test]
fn jks_key_with_its_own_password() {
    let err = load(&fixture("keypass-differs.jks"), PASS, None).unwrap_err();
    assert_eq!(
        err,
        KeystoreError::KeyPassword {
            alias: "server".into()
        }
    );
    assert!(!err.to_string().contains(PASS));
}

#[test]
fn key_types_rustls_cannot_use_are_unsupported() {
    match load(&fixture("dsa.jks"), PASS, None) {
        Err(KeystoreError::Unsupported(s)) => assert!(s.contains("a DSA key"), "{s}"),
        other => panic!("{other:?}"),
    }
}

/// A JKS written by the `jks` crate (keytool always writes chains in order,
/// so it cannot make these).
fn jks_with_chain(key: &str, chain: &[&str]) -> Vec<u8> {
    // Keep the alias's case as given (keytool would lowercase it).
    let mut store = jks::KeyStore::with_options(jks::KeyStoreOptions {
        case_exact_aliases: true,
        ..Default::default()
    });
    let entry = jks::PrivateKeyEntry {
        creation_time: SystemTime::UNIX_EPOCH,
        private_key: fixture(key),
        certificate_chain: chain
            .iter()
            .map(|c| jks::Certificate {
                cert_type: "X.509".into(),
                content: fixture(c),
            })
            .collect(),
    };
    store
        .set_private_key_entry("Mixed-Case", entry, PASS.as_bytes())
        .unwrap();
    let mut out = Vec::new();
    store.store(&mut out, PASS.as_bytes()).unwrap();
    out
}

#[test]
fn jks_chain_out_of_order_is_reordered() {
    for order in [
        ["root.der", "leaf-rsa.der", "intermediate.der"],
        ["intermediate.der", "root.der", "leaf-rsa.der"],
        ["leaf-rsa.der", "root.der", "intermediate.der"],
    ] {
        let store = jks_with_chain("leaf-rsa.key.der", &order);
        let entry = load(&store, PASS, Some("mixed-case")).unwrap();
        assert_eq!(entry.alias.as_deref(), Some("Mixed-Case"));
        assert!(entry.chain == chain_of("leaf-rsa.der"), "{order:?}");
        assert_rustls_accepts(&entry);
    }
}

#[test]
fn jks_chain_that_cannot_be_ordered_or_does_not_match() {
    let store = jks_with_chain(
        "leaf-ec.key.der",
        &["leaf-ec.der", "unrelated.der", "intermediate.der"],
    );
    match load(&store, PASS, None) {
        Err(KeystoreError::Chain(s)) => assert!(s.contains("Unrelated"), "{s}"),
        other => panic!("{other:?}"),
    }
    let store = jks_with_chain("leaf-ec.key.der", &["leaf-rsa.der", "intermediate.der"]);
    match load(&store, PASS, None) {
        Err(KeystoreError::Chain(s)) => assert!(s.contains("matches its private key"), "{s}"),
        other => panic!("{other:?}"),
    }
}

/// Deterministic xorshift, so failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn random_bytes_are_a_clear_error() {
    for seed in 1..200u64 {
        // Some start like a JKS or a PFX, to get past `detect`.
        let prefix: &[u8] = match seed % 3 {
            0 => &[0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2],
            1 => &[0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03],
            _ => &[],
        };
        let bytes = [prefix, &noise(seed, (seed as usize * 37) % 3000)].concat();
        let err = load(&bytes, PASS, None).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}

/// The stores the corruption tests damage: file, alias to ask for, and how
/// many bytes apart the quick test flips. A flip in an encrypted PKCS#12
/// mostly ends at its MAC, which costs a PBKDF run (slow unoptimised): few of
/// those. The unencrypted PKCS#12 and the JKS stores are cheap, and the
/// unencrypted one lets flips reach the parsers behind the integrity checks.
const CORRUPTIBLE: [(&str, &str, usize); 9] = [
    ("rsa-modern.p12", "server", 250),
    ("ec-modern.p12", "server-ec", 250),
    ("rsa-legacy.p12", "server", 250),
    ("rsa-java.p12", "server", 600),
    ("rsa-unencrypted.p12", "server", 11),
    ("rsa.jks", "server", 5),
    ("two-keys.jks", "old", 9),
    ("ec-keytool.jks", "gen", 3),
    ("trusted-only.jks", "rootca", 3),
];

const MASKS: [u8; 4] = [0x01, 0x80, 0xFF, 0x55];

/// Cuts `file` every `cut_step` bytes (each cut must be an error) and flips
/// the byte every `flip_step` bytes (`load` may succeed or fail), with every
/// one of [`MASKS`] or, unless `all_masks`, with one in turn. None of it may
/// panic.
fn corrupt(file: &str, alias: &str, cut_step: usize, flip_step: usize, all_masks: bool) {
    let good = fixture(file);
    for len in (0..good.len()).step_by(cut_step).chain([good.len() - 1]) {
        assert!(
            load(&good[..len], PASS, Some(alias)).is_err(),
            "{file} cut at {len}"
        );
    }
    for (n, at) in (0..good.len()).step_by(flip_step).enumerate() {
        let masks = if all_masks {
            &MASKS[..]
        } else {
            &MASKS[n % 4..n % 4 + 1]
        };
        for mask in masks {
            let mut bad = good.clone();
            bad[at] ^= mask;
            let _ = load(&bad, PASS, Some(alias));
        }
    }
}

/// Cut each keystore at many lengths and flip bytes all over it: `load`
/// returns an error (or, for a harmless flip, the entry), never panics.
#[test]
fn truncated_and_corrupted_keystores_never_panic() {
    for (file, alias, flip_step) in CORRUPTIBLE {
        corrupt(file, alias, 5, flip_step, false);
    }
}

/// Every cut, every byte flipped four ways: half a minute in release, so run
/// by hand: `cargo test -p postern-keystore --release -- --ignored`.
#[test]
#[ignore]
fn exhaustive_corruption_never_panics() {
    for (file, alias, _) in CORRUPTIBLE {
        corrupt(file, alias, 1, 1, true);
    }
}

/// keytool's own EC keys come without the public key inside the PKCS#8,
/// which ring refuses; `load` adds it from the certificate (and ring checks
/// that it belongs to the private key).
#[test]
fn keytool_generated_ec_keys_get_their_public_key() {
    let mut store = jks::KeyStore::new();
    store
        .load(&fixture("ec-keytool.jks")[..], PASS.as_bytes())
        .unwrap();
    let raw = store.get_private_key_entry("gen", PASS.as_bytes()).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    assert!(
        provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(raw.private_key.into()))
            .is_err(),
        "the fixture no longer shows the problem"
    );
    for file in ["ec-keytool.jks", "ec384-keytool.p12"] {
        let entry = load(&fixture(file), PASS, None).unwrap();
        assert_eq!(entry.alias.as_deref(), Some("gen"), "{file}");
        assert_eq!(entry.chain.len(), 1, "{file}");
        assert_rustls_accepts(&entry);
    }
}

/// Java hands JKS the password as UTF-16; `load` takes a `&str`. Characters
/// up to U+00FF work; beyond, the error says so (without the password).
#[test]
fn jks_password_beyond_ascii() {
    let password = "pässwörd";
    let latin1: Vec<u8> = password.chars().map(|c| c as u8).collect();
    let mut store = jks::KeyStore::new();
    let entry = jks::PrivateKeyEntry {
        creation_time: SystemTime::UNIX_EPOCH,
        private_key: fixture("leaf-rsa.key.der"),
        certificate_chain: vec![jks::Certificate {
            cert_type: "X.509".into(),
            content: fixture("leaf-rsa.der"),
        }],
    };
    store
        .set_private_key_entry("server", entry, &latin1)
        .unwrap();
    let mut bytes = Vec::new();
    store.store(&mut bytes, &latin1).unwrap();

    let entry = load(&bytes, password, None).unwrap();
    assert_rustls_accepts(&entry);
    assert_eq!(
        load(&bytes, "passwörd", None).unwrap_err(),
        KeystoreError::WrongPassword
    );
    match load(&bytes, "pässwörd€", None) {
        Err(KeystoreError::Unsupported(s)) => assert!(!s.contains("pässwörd"), "{s}"),
        other => panic!("{other:?}"),
    }
}
