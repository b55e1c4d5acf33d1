//! PKCS#12 (PFX) through the `p12-keystore` crate, which checks the MAC and
//! decrypts the bags (PBES2 with AES, and the legacy PBEs with RC2 and 3DES).
//!
//! Its low-level [`Pkcs12Archive`] is used rather than its `KeyStore`, which
//! drops keys that have no localKeyId: here a key is tied to its certificate
//! by localKeyId when there is one, and always checked by public key.

use p12_keystore::error::Error as P12Error;
use p12_keystore::Pkcs12Archive;

use crate::{select, KeystoreError, RawEntry};

pub(crate) fn read(
    bytes: &[u8],
    password: &str,
    alias: Option<&str>,
) -> Result<RawEntry, KeystoreError> {
    let archive = Pkcs12Archive::from_pkcs12(bytes, password).map_err(map_error)?;

    // Java marks trusted-certificate entries; they are not part of a key's
    // chain (Java writes a key entry's chain certificates unmarked).
    let certs: Vec<_> = archive
        .certs
        .iter()
        .filter(|c| !c.trusted || c.local_key_id.is_some())
        .collect();

    let entries = archive
        .keys
        .into_iter()
        .map(|key| {
            let linked = key.local_key_id.as_ref().and_then(|id| {
                certs
                    .iter()
                    .position(|c| c.local_key_id.as_deref() == Some(id.as_ref()))
            });
            let alias = key
                .friendly_name
                .clone()
                .or_else(|| linked.and_then(|l| certs[l].friendly_name.clone()));
            (alias, (key.key, linked))
        })
        .collect();
    let (alias, (key, linked)) = select(entries, alias)?;

    Ok(RawEntry {
        alias,
        key_pkcs8: key.as_der().to_vec(),
        certs: certs.iter().map(|c| c.cert.as_der().to_vec()).collect(),
        linked_leaf: linked,
        all_certs_belong: false,
    })
}

/// `p12-keystore`'s errors, as operators should read them. None of them
/// carries the password.
fn map_error(e: P12Error) -> KeystoreError {
    match e {
        // The MAC over the contents did not verify: the password (or the file).
        P12Error::MacError(_) => KeystoreError::WrongPassword,
        // Decryption gave garbage padding: a wrong password in a file without
        // a MAC.
        P12Error::UnpadError => KeystoreError::WrongPassword,
        P12Error::Pkcs5Error(detail) if detail.contains("decryption failed") => {
            KeystoreError::WrongPassword
        }
        P12Error::Pkcs5Error(detail) if detail.contains("unsupported") => {
            KeystoreError::Unsupported(format!(
                "the PKCS#12 file is encrypted in a way Postern cannot read ({detail}): \
                 re-export it with current OpenSSL defaults (openssl pkcs12 -export)"
            ))
        }
        P12Error::Pkcs5Error(detail) => KeystoreError::Damaged(detail),
        P12Error::UnsupportedContentType
        | P12Error::UnsupportedCertificateType
        | P12Error::UnsupportedEncryptionScheme
        | P12Error::UnsupportedMacAlgorithm => KeystoreError::Unsupported(format!(
            "the PKCS#12 file uses a feature Postern cannot read ({e}): re-export it with \
             current OpenSSL defaults (openssl pkcs12 -export)"
        )),
        P12Error::InvalidParameters => KeystoreError::Damaged(
            "invalid encryption parameters (or an iteration count above 1,000,000)".into(),
        ),
        other => KeystoreError::Damaged(other.to_string()),
    }
}
