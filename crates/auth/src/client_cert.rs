//! `type = "client_cert"`: the client certificate rustls verified against
//! `[tls] client_ca` during the handshake, matched against the listed
//! subjects or SANs. Parsing happens once per connection (in the gateway);
//! a request costs a few string comparisons.

use crate::{Denial, Identity, Verdict};

/// What the gateway learnt from a connection's verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// The leaf's subject as an RFC 4514 string ("CN=ops-admin,O=Example").
    pub subject: String,
    /// The leaf's DNS, email (rfc822Name) and URI subject alternative names.
    pub sans: Vec<String>,
}

/// What a `type = "client_cert"` authenticator accepts.
#[derive(Debug, Clone, Default)]
pub struct ClientCertSpec {
    /// The `[auth]` key.
    pub name: String,
    /// Exact RFC 4514 subjects.
    pub subjects: Vec<String>,
    /// SANs; any one matching passes (DNS names case-insensitively).
    pub sans: Vec<String>,
    /// (field, lower-case header): `subject` copied upstream.
    pub claims_to_headers: Vec<(String, String)>,
}

/// Reason for a request on a connection that presented no certificate.
pub const NO_CERTIFICATE: &str = "client certificate required";
/// Reason for a verified certificate that is not among the allowed ones.
pub const NOT_ALLOWED: &str = "client certificate not allowed on this route";

/// A built `type = "client_cert"` authenticator.
#[derive(Debug)]
pub struct ClientCertAuthenticator {
    spec: ClientCertSpec,
}

impl ClientCertAuthenticator {
    /// Builds it; nothing can fail once the config loaded.
    pub fn new(spec: ClientCertSpec) -> Self {
        ClientCertAuthenticator { spec }
    }

    /// The `[auth]` key it was built from.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Request headers only this authenticator may set upstream.
    pub fn owned_headers(&self) -> impl Iterator<Item = &str> {
        self.spec.claims_to_headers.iter().map(|(_, h)| h.as_str())
    }

    /// 401 without a certificate, 403 for one not listed, else the identity
    /// (the subject) with the configured headers.
    pub fn check(&self, presented: Option<&PresentedCertificate>) -> Verdict {
        let Some(cert) = presented else {
            return Verdict::Deny(Denial::CertificateRequired {
                reason: NO_CERTIFICATE,
            });
        };
        let unrestricted = self.spec.subjects.is_empty() && self.spec.sans.is_empty();
        let subject_listed = self.spec.subjects.contains(&cert.subject);
        // DNS names compare case-insensitively; emails and URIs as written.
        let san_listed = cert.sans.iter().any(|presented| {
            let dns = !presented.contains(['@', ':']);
            self.spec.sans.iter().any(|allowed| {
                allowed == presented || (dns && allowed.eq_ignore_ascii_case(presented))
            })
        });
        if !(unrestricted || subject_listed || san_listed) {
            return Verdict::Deny(Denial::Forbidden {
                challenge: None,
                reason: NOT_ALLOWED,
            });
        }
        let headers = self
            .spec
            .claims_to_headers
            .iter()
            .filter(|(field, _)| field == "subject")
            .map(|(_, header)| (header.clone(), cert.subject.clone()))
            .collect();
        Verdict::Allow(Identity {
            subject: cert.subject.clone(),
            headers,
            claims: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented() -> PresentedCertificate {
        PresentedCertificate {
            subject: "CN=ops-admin,O=Example".into(),
            sans: vec![
                "ops-admin@example.com".into(),
                "Ops.Example.com".into(),
                "spiffe://example.com/ops".into(),
            ],
        }
    }

    fn authenticator(subjects: &[&str], sans: &[&str]) -> ClientCertAuthenticator {
        ClientCertAuthenticator::new(ClientCertSpec {
            name: "admins".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            claims_to_headers: vec![("subject".into(), "x-client-subject".into())],
        })
    }

    fn denial(verdict: Verdict) -> Denial {
        match verdict {
            Verdict::Deny(d) => d,
            Verdict::Allow(i) => panic!("allowed as {i:?}"),
        }
    }

    #[test]
    fn no_certificate_is_401_and_an_unlisted_one_403() {
        let admins = authenticator(&["CN=ops-admin,O=Example"], &[]);
        assert_eq!(
            denial(admins.check(None)),
            Denial::CertificateRequired {
                reason: NO_CERTIFICATE
            }
        );
        let other = PresentedCertificate {
            subject: "CN=intruder,O=Example".into(),
            sans: vec!["ops-admin@example.org".into()],
        };
        assert!(matches!(
            denial(admins.check(Some(&other))),
            Denial::Forbidden {
                reason: NOT_ALLOWED,
                challenge: None
            }
        ));
    }

    #[test]
    fn subjects_match_exactly_and_sans_by_any() {
        let cert = presented();
        let allowed = |a: ClientCertAuthenticator| a.check(Some(&cert)).is_allowed();
        assert!(
            allowed(authenticator(&[], &[])),
            "nothing listed: any verified certificate"
        );
        assert!(allowed(authenticator(&["CN=ops-admin,O=Example"], &[])));
        assert!(!allowed(authenticator(
            &["CN=ops-admin,O=Example,C=DE"],
            &[]
        )));
        assert!(
            !allowed(authenticator(&["cn=ops-admin,o=example"], &[])),
            "exact"
        );
        assert!(allowed(authenticator(
            &["CN=x"],
            &["ops-admin@example.com"]
        )));
        assert!(
            allowed(authenticator(&[], &["ops.example.com"])),
            "DNS ignores case"
        );
        assert!(
            !allowed(authenticator(&[], &["OPS-ADMIN@example.com"])),
            "email as written"
        );
        assert!(allowed(authenticator(&[], &["spiffe://example.com/ops"])));
        assert!(!allowed(authenticator(&[], &["example.com"])));
    }

    #[test]
    fn the_subject_is_the_identity_and_may_go_upstream() {
        let Verdict::Allow(identity) = authenticator(&[], &[]).check(Some(&presented())) else {
            panic!("refused");
        };
        assert_eq!(identity.subject, "CN=ops-admin,O=Example");
        assert_eq!(
            identity.headers,
            [(
                "x-client-subject".to_string(),
                "CN=ops-admin,O=Example".to_string()
            )]
        );
    }
}
