//! `[auth.NAME] type = "client_cert"`: the connection's verified client
//! certificate, optionally narrowed to listed subjects or SANs.

use super::Reader;
use crate::diag::Origin;
use crate::fields::Fields;
use crate::model::*;
use crate::tree::Table;

pub const CLIENT_CERT_KEYS: &[&str] = &["type", "subjects", "sans", "claims_to_headers"];

/// What a client certificate authenticator can copy into a header.
const CERTIFICATE_FIELDS: &[&str] = &["subject"];

impl Reader<'_> {
    pub(super) fn client_cert(
        &mut self,
        t: &Table,
        section: &str,
        origin: &Origin,
    ) -> Option<ClientCertSettings> {
        let mut f = Fields::new(t, section.to_string(), CLIENT_CERT_KEYS);
        let _ = f.string("type", self.diags);
        let subjects = f.strings("subjects", self.diags);
        let sans = f.strings("sans", self.diags);
        let claims_to_headers = f.table("claims_to_headers", self.diags);
        f.finish(self.diags);

        let mut settings = ClientCertSettings::default();
        for (subject, at) in subjects.into_iter().flat_map(|(list, _)| list) {
            if self.subject_is_rfc4514(subject, at) {
                settings.subjects.push(subject.to_string());
            }
        }
        for (san, at) in sans.into_iter().flat_map(|(list, _)| list) {
            if san.is_empty() || san.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.diags.error_with_help(
                    at,
                    format!("{section}: SAN {san:?} is empty or holds spaces"),
                    "write a DNS name (\"ops.example.com\"), an email (\"ops-admin@example.com\") or a URI (\"spiffe://example.com/ops\")",
                );
                continue;
            }
            settings.sans.push(san.to_string());
        }
        if let Some((table, _)) = claims_to_headers {
            for (field, header) in self.claims_to_headers(table) {
                if CERTIFICATE_FIELDS.contains(&field.as_str()) {
                    settings.claims_to_headers.push((field, header));
                } else {
                    let at = table.get(&field).map(|n| n.origin.clone());
                    self.diags.error_with_help(
                        at.as_ref().unwrap_or(origin),
                        format!("{section}: a client certificate has no field {field:?} to copy"),
                        "use claims_to_headers = { subject = \"X-Client-Subject\" }",
                    );
                }
            }
        }
        Some(settings)
    }

    /// The subject is compared as written with the certificate's RFC 4514
    /// string, so spellings that can never match are refused here.
    fn subject_is_rfc4514(&mut self, subject: &str, at: &Origin) -> bool {
        let help = "write the DN as RFC 4514 prints it, most specific first and no spaces after commas: \"CN=ops-admin,O=Example\" (`openssl x509 -noout -subject -nameopt RFC2253 -in client.pem` shows it)";
        if !subject.contains('=') {
            self.diags.error_with_help(
                at,
                format!("subject {subject:?} is not a distinguished name"),
                help,
            );
            return false;
        }
        if subject.contains(", ") || subject.starts_with(' ') || subject.ends_with(' ') {
            self.diags.error_with_help(
                at,
                format!("subject {subject:?} has spaces around its separators, so no certificate's RFC 4514 subject can equal it"),
                help,
            );
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn settings(config: &Config, name: &str) -> ClientCertSettings {
        match &config.authenticator(name).expect("defined").kind {
            AuthKind::ClientCert(c) => c.clone(),
            other => panic!("{name} is {other:?}"),
        }
    }

    const CA: &str = "[tls]\nclient_ca = \"clients-ca.pem\"\n";

    #[test]
    fn subjects_sans_and_headers_are_read() {
        let dir = Dir::new();
        dir.write("clients-ca.pem", "x");
        let text = plain(&format!(
            "{CA}[auth.admins]\ntype = \"client_cert\"\nsubjects = [\"CN=ops-admin,O=Example\"]\nsans = [\"ops-admin@example.com\"]\nclaims_to_headers = {{ subject = \"X-Client-Subject\" }}\n\n[auth.anyone]\ntype = \"client_cert\"\n"
        ));
        let config = accepted(dir.load(&text, &[]), "client_cert").config;
        let admins = settings(&config, "admins");
        assert_eq!(admins.subjects, ["CN=ops-admin,O=Example"]);
        assert_eq!(admins.sans, ["ops-admin@example.com"]);
        assert_eq!(
            admins.claims_to_headers,
            [("subject".to_string(), "x-client-subject".to_string())]
        );
        let anyone = settings(&config, "anyone");
        assert!(anyone.subjects.is_empty() && anyone.sans.is_empty());
    }

    #[test]
    fn client_cert_problems() {
        let admins = |body: &str| {
            plain(&format!(
                "{CA}[auth.admins]\ntype = \"client_cert\"\n{body}\n"
            ))
        };
        const FILES: &[&str] = &["clients-ca.pem"];
        run_cases(vec![
            case(
                "subject with spaces after commas",
                admins("subjects = [\"CN=ops-admin, O=Example\"]"),
                "|\"CN=ops-admin, O=Example\"",
                "has spaces around its separators",
                Some("\"CN=ops-admin,O=Example\""),
            )
            .with_files(FILES),
            case(
                "subject that is no DN",
                admins("subjects = [\"ops-admin\"]"),
                "|\"ops-admin\"]",
                "subject \"ops-admin\" is not a distinguished name",
                Some("RFC 4514"),
            )
            .with_files(FILES),
            case(
                "SAN with a space",
                admins("sans = [\"ops admin\"]"),
                "|\"ops admin\"",
                "SAN \"ops admin\" is empty or holds spaces",
                None,
            )
            .with_files(FILES),
            case(
                "unknown certificate field for a header",
                admins("claims_to_headers = { issuer = \"X-Issuer\" }"),
                "issuer = |\"X-Issuer\"",
                "a client certificate has no field \"issuer\" to copy",
                Some("subject = \"X-Client-Subject\""),
            )
            .with_files(FILES),
            case(
                "a key of another authenticator type",
                admins("realm = \"ops\""),
                "|realm",
                "unknown key `realm` in [auth.admins]",
                None,
            )
            .with_files(FILES),
        ]);
    }
}
