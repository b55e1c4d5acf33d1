//! Certificates made at test time with rcgen: a CA and the three leaves
//! every test gateway serves, written to the gateway's directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

/// One leaf certificate written to disk, and its DER to recognise it when served.
#[derive(Clone)]
pub struct Leaf {
    pub names: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
}

/// A test CA and the three leaves every test gateway serves, in this order
/// (so `main` is the default certificate for clients without SNI):
///
/// * `main`: api.example.com, metrics.example.com, example.com
/// * `wildcard`: *.example.net
/// * `local`: localhost, 127.0.0.1
#[derive(Clone)]
pub struct Pki {
    pub ca: CertificateDer<'static>,
    /// The CA, to issue more leaves later.
    ca_pem: String,
    ca_params: CertificateParams,
    ca_key_pem: String,
    pub main: Leaf,
    pub wildcard: Leaf,
    pub local: Leaf,
}

pub const MAIN_NAMES: [&str; 3] = ["api.example.com", "metrics.example.com", "example.com"];
pub const WILDCARD_NAMES: [&str; 1] = ["*.example.net"];
pub const LOCAL_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

impl Pki {
    /// Generates the CA and leaves and writes `<name>.pem` / `<name>.key` into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Postern Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        let ca_key_pem = ca_key.serialize_pem();
        let ca_params_kept = ca_params.clone();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |file: &str, names: &[&str]| -> Leaf {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names.clone()).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, &names[0]);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate().expect("generate leaf key");
            let cert = params.signed_by(&key, &issuer).expect("sign leaf");
            let cert_path = dir.join(format!("{file}.pem"));
            let key_path = dir.join(format!("{file}.key"));
            // The chain file holds the leaf then the CA, as fullchain.pem does.
            std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))
                .expect("write leaf");
            std::fs::write(&key_path, key.serialize_pem()).expect("write key");
            Leaf {
                names,
                cert_path,
                key_path,
                der: cert.der().clone(),
            }
        };
        Pki {
            ca: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            ca_params: ca_params_kept,
            ca_key_pem,
            main: leaf("main", &MAIN_NAMES),
            wildcard: leaf("wildcard", &WILDCARD_NAMES),
            local: leaf("local", &LOCAL_NAMES),
        }
    }

    /// Issues a new certificate and key for `leaf`'s names and replaces its
    /// files the way certbot does: written beside, then renamed over.
    /// Returns the new certificate.
    pub fn renew(&self, leaf: &Leaf) -> CertificateDer<'static> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).expect("CA key");
        let issuer = Issuer::new(self.ca_params.clone(), ca_key);
        let mut params = CertificateParams::new(leaf.names.clone()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, &leaf.names[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        let replace = |path: &Path, contents: String| {
            let staged = path.with_extension("new");
            std::fs::write(&staged, contents).expect("write renewed file");
            std::fs::rename(&staged, path).expect("rename renewed file");
        };
        replace(&leaf.key_path, key.serialize_pem());
        replace(&leaf.cert_path, format!("{}{}", cert.pem(), self.ca_pem));
        cert.der().clone()
    }

    /// Which of the three leaves `der` is, by name ("main", "wildcard", "local").
    pub fn which(&self, der: &CertificateDer<'_>) -> &'static str {
        if der.as_ref() == self.main.der.as_ref() {
            "main"
        } else if der.as_ref() == self.wildcard.der.as_ref() {
            "wildcard"
        } else if der.as_ref() == self.local.der.as_ref() {
            "local"
        } else {
            "unknown"
        }
    }
}

/// A client certificate as a test client presents it.
pub struct ClientLeaf {
    /// Leaf first, then any intermediates the client sends.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's PKCS#8 private key.
    pub key_pkcs8: Vec<u8>,
}

/// The client-certificate world of the mTLS tests, made with rcgen:
///
/// * `ca.pem` (the gateway's `client_ca`): "Postern Clients CA";
/// * `admin`: CN=ops-admin,O=Example, SANs ops-admin@example.com and
///   ops.example.com, issued by the clients CA;
/// * `dev`: CN=ops-dev,O=Example, SAN dev@example.com, issued by the clients CA;
/// * `chained`: CN=ops-chained,O=Example, issued by an intermediate the
///   clients CA signed; its chain holds the intermediate;
/// * `foreign`: the admin's subject and SANs, issued by another CA;
/// * `expired`: the admin's subject, from the clients CA, expired in 2020.
pub struct ClientPki {
    /// The clients CA as PEM, written to `ca_path`.
    pub ca_path: PathBuf,
    pub admin: ClientLeaf,
    pub dev: ClientLeaf,
    pub chained: ClientLeaf,
    pub foreign: ClientLeaf,
    pub expired: ClientLeaf,
}

fn client_ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("generate CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, key)
}

/// A clientAuth leaf `CN=<cn>,O=Example` (RFC 4514 order) with `sans`.
fn client_leaf(
    cn: &str,
    sans: &[&str],
    issuer: &Issuer<'_, KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    // Certificate order is O then CN; RFC 4514 prints the last RDN first.
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.distinguished_name.push(DnType::CommonName, cn);
    for san in sans {
        params.subject_alt_names.push(match san.contains('@') {
            true => rcgen::SanType::Rfc822Name((*san).try_into().expect("email SAN")),
            false => rcgen::SanType::DnsName((*san).try_into().expect("DNS SAN")),
        });
    }
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("generate client key");
    let cert = params.signed_by(&key, issuer).expect("sign client leaf");
    (cert, key)
}

impl ClientPki {
    /// Generates every certificate and writes the clients CA to `dir/clients-ca.pem`.
    pub fn generate(dir: &Path) -> ClientPki {
        let (ca_params, ca_key) = client_ca("Postern Clients CA");
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-sign clients CA");
        let ca_path = dir.join("clients-ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write clients-ca.pem");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |(cert, key): (rcgen::Certificate, KeyPair),
                    extra: &[CertificateDer<'static>]| {
            let mut chain = vec![cert.der().clone()];
            chain.extend_from_slice(extra);
            ClientLeaf {
                chain,
                key_pkcs8: key.serialize_der(),
            }
        };
        let admin_sans = ["ops-admin@example.com", "ops.example.com"];
        let admin = leaf(client_leaf("ops-admin", &admin_sans, &issuer), &[]);
        let dev = leaf(client_leaf("ops-dev", &["dev@example.com"], &issuer), &[]);

        let (mut mid_params, mid_key) = client_ca("Postern Clients Intermediate");
        mid_params.use_authority_key_identifier_extension = true;
        let mid_cert = mid_params
            .signed_by(&mid_key, &issuer)
            .expect("sign intermediate");
        let mid_der = mid_cert.der().clone();
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let chained = leaf(client_leaf("ops-chained", &[], &mid_issuer), &[mid_der]);

        let (other_params, other_key) = client_ca("Some Other CA");
        let other_issuer = Issuer::new(other_params, other_key);
        let foreign = leaf(client_leaf("ops-admin", &admin_sans, &other_issuer), &[]);

        let expired = {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "Example");
            params
                .distinguished_name
                .push(DnType::CommonName, "ops-admin");
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().expect("generate client key");
            let cert = params.signed_by(&key, &issuer).expect("sign expired leaf");
            leaf((cert, key), &[])
        };
        ClientPki {
            ca_path,
            admin,
            dev,
            chained,
            foreign,
            expired,
        }
    }
}
