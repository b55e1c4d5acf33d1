//! `[tls]` and its `[[tls.certificates]]`. Only where the files are is
//! checked here; what is in them is checked when they are loaded.

use postern_policy::host::HostPattern;

use super::Reader;
use crate::diag::Origin;
use crate::fields::{as_table, Fields};
use crate::model::*;
use crate::tree::{Node, Table};

pub const TLS_KEYS: &[&str] = &[
    "min_version",
    "strict_sni",
    "hsts",
    "client_ca",
    "certificates",
];
pub const CERTIFICATE_KEYS: &[&str] = &[
    "server_names",
    "cert",
    "key",
    "keystore",
    "password_env",
    "alias",
];

impl Reader<'_> {
    pub(super) fn tls(&mut self, node: Option<&Node>) -> Tls {
        let mut tls = Tls {
            min_version: DEFAULT_TLS_MIN_VERSION,
            strict_sni: false,
            certificates: Vec::new(),
            hsts: Some(http::HeaderValue::from_static(DEFAULT_HSTS)),
            client_ca: None,
        };
        let Some(table) = as_table(node, "[tls]", self.diags) else {
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
        if let Some((value, origin)) = f.string("hsts", self.diags) {
            tls.hsts = self.hsts(value, origin);
        }
        if let Some((written, origin)) = f.string("client_ca", self.diags) {
            // What is in the file is checked when it is loaded (postern check).
            tls.client_ca = self
                .existing_file(written, origin, "client_ca")
                .map(|path| ClientCa {
                    path,
                    origin: origin.clone(),
                });
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn pem_and_keystore_certificates_are_read() {
        let dir = Dir::new();
        dir.write("cert.pem", "x")
            .write("key.pem", "x")
            .write("store.pfx", "x");
        let text = format!(
            "[tls]\nmin_version = \"1.3\"\nstrict_sni = true\n\n[[tls.certificates]]\nserver_names = [\"localhost\", \"*.example.com\"]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[[tls.certificates]]\nserver_names = [\"other.test\"]\nkeystore = \"store.pfx\"\npassword_env = \"STORE_PASSWORD\"\nalias = \"server\"\n{TLS_LISTENER}{PLAIN}"
        );
        let tls = accepted(dir.load(&text, &[]), "two certificates")
            .config
            .tls;
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert!(tls.strict_sni);
        let pem = &tls.certificates[0];
        assert_eq!(pem.server_names.len(), 2);
        assert!(matches!(&pem.source, CertificateSource::Pem { cert, key }
            if *cert == dir.path().join("cert.pem") && *key == dir.path().join("key.pem")));
        assert!(matches!(&tls.certificates[1].source,
            CertificateSource::Keystore { path, password_env: Some(env), alias: Some(alias) }
            if *path == dir.path().join("store.pfx") && env == "STORE_PASSWORD" && alias == "server"));
    }

    #[test]
    fn client_ca_is_read_relative_to_the_config() {
        let dir = Dir::new();
        dir.write("clients-ca.pem", "x");
        let text = plain("[tls]\nclient_ca = \"clients-ca.pem\"\n");
        let tls = accepted(dir.load(&text, &[]), "client_ca").config.tls;
        assert_eq!(
            tls.client_ca.map(|ca| ca.path),
            Some(dir.path().join("clients-ca.pem"))
        );
    }

    #[test]
    fn defaults_apply_without_a_tls_section() {
        let dir = Dir::new();
        let tls = accepted(dir.load(&plain(""), &[]), "no [tls]").config.tls;
        assert_eq!(tls.min_version, DEFAULT_TLS_MIN_VERSION);
        assert!(!tls.strict_sni);
        assert!(tls.certificates.is_empty());
        assert!(
            tls.client_ca.is_none(),
            "no client certificates are asked for"
        );
    }

    #[test]
    fn tls_section_problems() {
        run_cases(vec![
            case(
                "min_version = \"1.1\"",
                plain("[tls]\nmin_version = \"1.1\"\n"),
                "min_version = |\"1.1\"",
                "`min_version` = \"1.1\" is not supported",
                Some("use \"1.2\" or \"1.3\""),
            ),
            case(
                "client_ca missing",
                plain("[tls]\nclient_ca = \"clients-ca.pem\"\n"),
                "client_ca = |\"clients-ca.pem\"",
                "`client_ca` = \"clients-ca.pem\": cannot read",
                Some("relative paths are taken from the directory of the main config file"),
            ),
            case(
                "strict_sni = \"yes\"",
                plain("[tls]\nstrict_sni = \"yes\"\n"),
                "strict_sni = |\"yes\"",
                "`strict_sni` in [tls] must be true or false, not a string",
                None,
            ),
        ]);
    }

    #[test]
    fn certificate_problems() {
        let entry = |body: &str| {
            format!("[[tls.certificates]]\nserver_names = [\"localhost\"]\n{body}\n{TLS_LISTENER}{PLAIN}")
        };
        run_cases(vec![
            case(
                "certificate file missing",
                with_cert("", "missing.pem", "key.pem"),
                "cert = |\"missing.pem\"",
                "`cert` = \"missing.pem\": cannot read",
                Some("relative paths are taken from the directory of the main config file"),
            )
            .with_files(&["key.pem"]),
            case(
                "key file missing",
                with_cert("", "cert.pem", "missing-key.pem"),
                "key = |\"missing-key.pem\"",
                "`key` = \"missing-key.pem\": cannot read",
                Some("relative paths are taken from the directory of the main config file"),
            )
            .with_files(&["cert.pem"]),
            case(
                "certificate path that is a directory",
                with_cert("", "certs", "key.pem"),
                "cert = |\"certs\"",
                "`cert` = \"certs\" is not a file",
                None,
            )
            .with_files(&["certs/inside.pem", "key.pem"]),
            case(
                "certificate entry without key",
                entry("cert = \"cert.pem\""),
                "[[tls.certificates]]",
                "[[tls.certificates]] #1 needs both `cert` and `key`",
                Some("key = \"certs/privkey.pem\""),
            )
            .with_files(&["cert.pem"]),
            case(
                "certificate entry without server_names",
                format!("[[tls.certificates]]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{TLS_LISTENER}{PLAIN}"),
                "[[tls.certificates]]",
                "[[tls.certificates]] #1 needs `server_names`",
                Some("server_names = [\"example.com\", \"*.example.com\"]"),
            )
            .with_files(&["cert.pem", "key.pem"]),
            case(
                "empty server_names",
                format!("[[tls.certificates]]\nserver_names = []\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{TLS_LISTENER}{PLAIN}"),
                "server_names = |[]",
                "`server_names` is empty",
                None,
            )
            .with_files(&["cert.pem", "key.pem"]),
            case(
                "server name with a scheme",
                format!("[[tls.certificates]]\nserver_names = [\"https://x\"]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{TLS_LISTENER}{PLAIN}"),
                "|\"https://x\"",
                "server name \"https://x\" is not a host name or wildcard",
                Some("\"*.example.com\""),
            )
            .with_files(&["cert.pem", "key.pem"]),
            case(
                "keystore and cert together",
                entry("cert = \"cert.pem\"\nkeystore = \"store.pfx\""),
                "keystore = |\"store.pfx\"",
                "[[tls.certificates]] #1 has both `keystore` and `cert`/`key`",
                Some("not both"),
            )
            .with_files(&["cert.pem", "store.pfx"]),
            case(
                "password_env on a PEM certificate",
                entry("cert = \"cert.pem\"\nkey = \"key.pem\"\npassword_env = \"P\""),
                "password_env = |\"P\"",
                "`password_env` belongs to a keystore, and this certificate is PEM",
                Some("PEM keys must not be encrypted"),
            )
            .with_files(&["cert.pem", "key.pem"]),
            case(
                "keystore missing",
                entry("keystore = \"store.pfx\""),
                "keystore = |\"store.pfx\"",
                "`keystore` = \"store.pfx\": cannot read",
                None,
            ),
        ]);
    }
}
