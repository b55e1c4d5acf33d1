//! Ordering a certificate chain: leaf first, then each certificate's issuer,
//! by matching issuer and subject names (and, where two certificates share a
//! subject, the authority and subject key identifiers). Signatures are not
//! checked: the client does that; this only puts the store's certificates in
//! the order TLS sends them.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::KeystoreError;

/// `certs[leaf]`, then its issuer among `certs`, then that one's, and so on
/// until a self-issued certificate or one whose issuer is not there.
///
/// With `all_belong` (the certificates are the entry's own chain), a
/// certificate left over means the chain cannot be ordered: an error. Without
/// it (every certificate in a PKCS#12 file), leftovers are ignored. Exact
/// duplicates are dropped either way.
pub(crate) fn order(
    certs: &[Vec<u8>],
    leaf: usize,
    all_belong: bool,
) -> Result<Vec<Vec<u8>>, KeystoreError> {
    let mut parsed = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => parsed.push(cert),
            Err(_) => {
                return Err(KeystoreError::Chain(format!(
                    "certificate {} of the key entry is not a readable X.509 certificate",
                    i + 1
                )))
            }
        }
    }
    let Some(first) = parsed.get(leaf) else {
        return Err(KeystoreError::Chain(
            "the key entry has no certificate".into(),
        ));
    };
    let mut chain: Vec<usize> = vec![leaf];
    let mut current = first;
    while !self_issued(current) {
        let in_chain = |j: usize| chain.iter().any(|&c| certs[c] == certs[j]);
        let issuers: Vec<usize> = (0..parsed.len())
            .filter(|&j| !in_chain(j) && issued_by(current, &parsed[j]))
            .collect();
        let by_key_id = issuers
            .iter()
            .copied()
            .find(|&j| key_ids_match(current, &parsed[j]));
        let Some(next) = by_key_id.or(issuers.first().copied()) else {
            break;
        };
        chain.push(next);
        current = &parsed[next];
    }
    if all_belong {
        let leftover = (0..certs.len()).find(|&j| !chain.iter().any(|&c| certs[c] == certs[j]));
        if let Some(j) = leftover {
            return Err(KeystoreError::Chain(format!(
                "the certificates of the key entry do not form one chain: {} is not an issuer \
                 of {} or of its issuers",
                parsed[j].subject(),
                parsed[leaf].subject()
            )));
        }
    }
    Ok(chain.into_iter().map(|i| certs[i].clone()).collect())
}

fn same_name(a: &x509_parser::x509::X509Name<'_>, b: &x509_parser::x509::X509Name<'_>) -> bool {
    a.as_raw() == b.as_raw() || a.to_string() == b.to_string()
}

fn self_issued(cert: &X509Certificate<'_>) -> bool {
    same_name(cert.subject(), cert.issuer())
}

fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    same_name(cert.issuer(), issuer.subject())
}

/// Whether `cert`'s authority key identifier names `issuer`'s subject key
/// identifier (false when either is missing).
fn key_ids_match(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    let ski = issuer
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        });
    matches!((aki, ski), (Some(a), Some(s)) if a == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_missing_certificates_are_errors() {
        assert!(matches!(
            order(&[vec![0x30, 0x00]], 0, true),
            Err(KeystoreError::Chain(s)) if s.contains("certificate 1")
        ));
        assert!(matches!(order(&[], 0, false), Err(KeystoreError::Chain(_))));
    }
}
