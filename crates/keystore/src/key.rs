//! The private key: what kind it is, whether rustls can sign with it, which
//! certificate it belongs to, and the one conversion some stores need.
//!
//! The signing library is rustls with ring, the provider the gateway runs, so
//! a key that passes here is one the listener can load. ring insists that an
//! EC key's PKCS#8 carries its public key, which Java (SunEC) leaves out; the
//! public key is then taken from the certificate and ring checks that it
//! matches the private key.

use std::borrow::Cow;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::SigningKey;
use x509_parser::asn1_rs::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::der;
use crate::KeystoreError;

const RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const RSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
const EC: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
const ED25519: &[u8] = &[0x2B, 0x65, 0x70];
const ED448: &[u8] = &[0x2B, 0x65, 0x71];
const DSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01];

/// The parts of a PKCS#8 `PrivateKeyInfo` this module looks at.
struct Pkcs8<'a> {
    /// The `AlgorithmIdentifier` content (OID and parameters).
    algorithm: &'a [u8],
    /// The algorithm OID's content bytes.
    oid: &'a [u8],
    /// For EC keys, the named curve from the parameters.
    curve: Option<&'a [u8]>,
    /// The `privateKey` OCTET STRING content.
    private_key: &'a [u8],
}

fn parse_pkcs8(bytes: &[u8]) -> Option<Pkcs8<'_>> {
    let (0x30, content) = der::single(bytes)? else {
        return None;
    };
    let items = der::elements(content)?;
    let [(0x02, _version), (0x30, algorithm), (0x04, private_key), ..] = items[..] else {
        return None;
    };
    let alg = der::elements(algorithm)?;
    let (0x06, oid) = *alg.first()? else {
        return None;
    };
    let curve = match alg.get(1) {
        Some(&(0x06, curve)) => Some(curve),
        _ => None,
    };
    Some(Pkcs8 {
        algorithm,
        oid,
        curve,
        private_key,
    })
}

/// "an RSA key", "an EC key on P-521", ...: for error messages.
fn describe(key: &Pkcs8<'_>) -> String {
    match key.oid {
        RSA => "an RSA key".into(),
        RSA_PSS => "an RSA-PSS key".into(),
        EC => match key.curve {
            Some(P256) => "an EC key on P-256".into(),
            Some(P384) => "an EC key on P-384".into(),
            Some(P521) => "an EC key on P-521".into(),
            Some(other) => format!("an EC key on curve {}", dotted(other)),
            None => "an EC key without a named curve".into(),
        },
        ED25519 => "an Ed25519 key".into(),
        ED448 => "an Ed448 key".into(),
        DSA => "a DSA key".into(),
        other => format!("a key of algorithm {}", dotted(other)),
    }
}

fn dotted(oid: &[u8]) -> String {
    Oid::new(Cow::Borrowed(oid)).to_id_string()
}

fn load_key(pkcs8: &[u8]) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pkcs8.to_vec(),
        )))
}

/// The certificates' SubjectPublicKeyInfo, DER, as rustls compares them.
fn spki(cert: &[u8]) -> Option<&[u8]> {
    X509Certificate::from_der(cert)
        .ok()
        .map(|(_, c)| c.tbs_certificate.subject_pki.raw)
}

/// The certificate's public key bits (the BIT STRING content).
fn public_key_bits(cert: &[u8]) -> Option<Vec<u8>> {
    X509Certificate::from_der(cert).ok().map(|(_, c)| {
        c.tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .to_vec()
    })
}

/// Indexes of `certs`, the store's linked leaf first.
fn leaf_candidates(count: usize, linked: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = linked.filter(|&l| l < count).into_iter().collect();
    order.extend((0..count).filter(|&i| Some(i) != linked));
    order
}

/// Checks that rustls can sign with the PKCS#8 key `pkcs8` and finds its
/// certificate among `certs` (preferring `linked`, the one the store ties to
/// the key). Returns the key (converted if needed) and the leaf's index.
pub(crate) fn check(
    pkcs8: Vec<u8>,
    certs: &[Vec<u8>],
    linked: Option<usize>,
) -> Result<(Vec<u8>, usize), KeystoreError> {
    let Some(info) = parse_pkcs8(&pkcs8) else {
        return Err(KeystoreError::Unsupported(
            "the private key in the keystore is not a PKCS#8 PrivateKeyInfo".into(),
        ));
    };
    let no_match =
        || KeystoreError::Chain("no certificate in the key entry matches its private key".into());
    match load_key(&pkcs8) {
        Ok(signing_key) => {
            let Some(public) = signing_key.public_key() else {
                // Every ring key knows its public key; this is for the record.
                return linked
                    .filter(|&l| l < certs.len())
                    .or((!certs.is_empty()).then_some(0))
                    .map(|leaf| (pkcs8, leaf))
                    .ok_or_else(no_match);
            };
            let leaf = leaf_candidates(certs.len(), linked)
                .into_iter()
                .find(|&i| spki(&certs[i]) == Some(public.as_ref()))
                .ok_or_else(no_match)?;
            Ok((pkcs8, leaf))
        }
        Err(rustls_error) => {
            if info.oid == EC && !ec_has_public_key(info.private_key) {
                for i in leaf_candidates(certs.len(), linked) {
                    let Some(point) = public_key_bits(&certs[i]) else {
                        continue;
                    };
                    let Some(with_public) = add_ec_public_key(&info, &point) else {
                        continue;
                    };
                    if load_key(&with_public).is_ok() {
                        // ring derived the public key from the private one and
                        // found it equal to this certificate's.
                        return Ok((with_public, i));
                    }
                }
                if matches!(info.curve, Some(P256 | P384)) {
                    // A curve ring signs with: the key is fine, the
                    // certificates are not its.
                    return Err(no_match());
                }
            }
            Err(KeystoreError::Unsupported(format!(
                "the private key is {}, which the gateway's TLS library (rustls with ring) \
                 cannot use ({rustls_error})",
                describe(&info)
            )))
        }
    }
}

/// Whether an `ECPrivateKey` carries its `[1] publicKey`.
fn ec_has_public_key(ec_private_key: &[u8]) -> bool {
    match der::single(ec_private_key) {
        Some((0x30, content)) => {
            der::elements(content).is_some_and(|items| items.iter().any(|&(tag, _)| tag == 0xA1))
        }
        _ => false,
    }
}

/// The PKCS#8 key rebuilt with `point` as the EC public key: `PrivateKeyInfo
/// { 0, algorithm, ECPrivateKey { 1, privateKey, [0] curve, [1] point } }`.
fn add_ec_public_key(info: &Pkcs8<'_>, point: &[u8]) -> Option<Vec<u8>> {
    let (0x30, content) = der::single(info.private_key)? else {
        return None;
    };
    let items = der::elements(content)?;
    let [(0x02, [1]), (0x04, secret), ..] = items[..] else {
        return None;
    };
    let curve = info.curve.or_else(|| {
        items
            .iter()
            .find_map(|&(tag, c)| match (tag, der::single(c)) {
                (0xA0, Some((0x06, oid))) => Some(oid),
                _ => None,
            })
    })?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    let ec_private_key = der::sequence(&[
        &der::tlv(0x02, &[1]),
        &der::tlv(0x04, secret),
        &der::tlv(0xA0, &der::tlv(0x06, curve)),
        &der::tlv(0xA1, &der::tlv(0x03, &bits)),
    ]);
    Some(der::sequence(&[
        &der::tlv(0x02, &[0]),
        &der::tlv(0x30, info.algorithm),
        &der::tlv(0x04, &ec_private_key),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_algorithms() {
        let key = |oid: &'static [u8], curve: Option<&'static [u8]>| Pkcs8 {
            algorithm: &[],
            oid,
            curve,
            private_key: &[],
        };
        assert_eq!(describe(&key(RSA, None)), "an RSA key");
        assert_eq!(describe(&key(EC, Some(P521))), "an EC key on P-521");
        assert_eq!(describe(&key(DSA, None)), "a DSA key");
        assert_eq!(
            describe(&key(&[0x2A, 0x03], None)),
            "a key of algorithm 1.2.3"
        );
    }

    #[test]
    fn garbage_is_not_pkcs8() {
        assert!(matches!(
            check(vec![1, 2, 3], &[], None),
            Err(KeystoreError::Unsupported(_))
        ));
        assert!(parse_pkcs8(&[0x30, 0x00]).is_none());
    }
}
