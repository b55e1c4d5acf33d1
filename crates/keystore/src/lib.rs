//! Postern's keystore reader: the TLS certificate chain and private key out of
//! a PKCS#12 (PFX) or JKS keystore, as plain Rust that knows nothing of Pingora.
//!
//! HCL Domino REST API keeps its TLS identity in one keystore file
//! (`TLSFile`, with `TLSPassword`), PEM, PFX/PKCS#12 or JKS. This crate lets
//! the gateway's `keystore =` point at that same PFX or JKS file (PEM has
//! `cert =` and `key =`):
//!
//! - [`detect`] tells the two formats apart by content, never by file name;
//! - [`load`] opens the store with its password, picks the key entry (by
//!   `alias` when there are several), and returns a [`KeyEntry`]: the chain
//!   leaf first in issuing order and the key as PKCS#8, checked to be a key
//!   rustls can sign with and to match the leaf certificate.
//!
//! Failures are a [`KeystoreError`] whose text is meant for the operator and
//! never contains the password. The cryptography is the `p12-keystore` crate's
//! (PKCS#12: PBES2/AES and the legacy RC2/3DES PBEs, MAC check) and the `jks`
//! crate's (JKS store digest and Sun's key protection); this crate only checks
//! structure, chooses, orders and converts.

#![forbid(unsafe_code)]

mod chain;
mod der;
mod error;
mod jks_store;
mod key;
mod pkcs12;

use std::fmt;

pub use error::KeystoreError;

/// A keystore format [`load`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreKind {
    /// PKCS#12, also called PFX (`.p12`, `.pfx`): OpenSSL, Windows, Java 9+.
    Pkcs12,
    /// Java KeyStore (`.jks`), Sun's proprietary format.
    Jks,
}

impl fmt::Display for KeystoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pkcs12 => "PKCS#12",
            Self::Jks => "JKS",
        })
    }
}

/// The magic number a JKS file starts with.
const JKS_MAGIC: [u8; 4] = [0xFE, 0xED, 0xFE, 0xED];
/// The magic number a JCEKS file (Sun's other format) starts with.
const JCEKS_MAGIC: [u8; 4] = [0xCE, 0xCE, 0xCE, 0xCE];

/// Tells the keystore format from the bytes, never from a file extension.
///
/// JKS starts with the magic `0xFEEDFEED`; PKCS#12 is a DER `SEQUENCE`
/// whose first element is the version `INTEGER 3`. Anything else is an error
/// that says what the bytes look like (a PEM file, a lone DER certificate or
/// key, a JCEKS store, text, ...).
pub fn detect(bytes: &[u8]) -> Result<KeystoreKind, KeystoreError> {
    if bytes.is_empty() {
        return Err(KeystoreError::NotAKeystore(
            "the keystore file is empty".into(),
        ));
    }
    if bytes.starts_with(&JKS_MAGIC) {
        return Ok(KeystoreKind::Jks);
    }
    if bytes.starts_with(&JCEKS_MAGIC) {
        return Err(KeystoreError::Unsupported(
            "this is a JCEKS keystore, which Postern does not read: convert it to PKCS#12 with \
             keytool -importkeystore -srckeystore FILE -srcstoretype JCEKS -destkeystore NEW.p12 \
             -deststoretype PKCS12"
                .into(),
        ));
    }
    if bytes[0] == 0x30 {
        return match der::pfx_version(bytes) {
            Some(3) => Ok(KeystoreKind::Pkcs12),
            _ => Err(KeystoreError::NotAKeystore(der::describe_non_pfx(bytes))),
        };
    }
    if looks_like_pem(bytes) {
        return Err(KeystoreError::NotAKeystore(
            "this is a PEM file: use cert = and key = instead of keystore =".into(),
        ));
    }
    let head = &bytes[..bytes.len().min(512)];
    if head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return Err(KeystoreError::NotAKeystore(
            "this is a text file, not a PKCS#12 (PFX) or JKS keystore (if it is base64, \
             decode it to the binary file first)"
                .into(),
        ));
    }
    let start: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    Err(KeystoreError::NotAKeystore(format!(
        "this is not a PKCS#12 (PFX) or JKS keystore (it starts with the bytes {})",
        start.join(" ")
    )))
}

/// PEM anywhere near the start: OpenSSL's `pkcs12 -nodes` output, for one,
/// begins with "Bag Attributes" lines before the first `-----BEGIN`.
fn looks_like_pem(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    head.windows(11).any(|w| w == b"-----BEGIN ")
}

/// One key entry of a keystore: the certificate chain and the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The entry's alias (PKCS#12 friendlyName, JKS alias), if it has one.
    pub alias: Option<String>,
    /// Leaf first, then the rest of the chain in issuing order, DER.
    pub chain: Vec<Vec<u8>>,
    /// The private key as PKCS#8 DER (convert if the store holds another form).
    pub key_pkcs8: Vec<u8>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("alias", &self.alias)
            .field(
                "chain",
                &format_args!("[{} certificates]", self.chain.len()),
            )
            .field("key_pkcs8", &"<redacted>")
            .finish()
    }
}

/// Reads the certificate chain and private key of one key entry.
///
/// `password` may be empty (Domino's `TLSPassword: ""` works). `alias`: when
/// the store holds several key entries, pick this one (an exact match first,
/// then ignoring case, as keytool lowercases JKS aliases); when `None` and
/// there are several, the error lists the aliases. Trusted-certificate
/// entries are never chosen.
///
/// The chain comes back leaf first in issuing order, whatever order the store
/// kept it in; the key is PKCS#8, one rustls (with ring) can sign with, and
/// matches the leaf.
pub fn load(bytes: &[u8], password: &str, alias: Option<&str>) -> Result<KeyEntry, KeystoreError> {
    let raw = match detect(bytes)? {
        KeystoreKind::Pkcs12 => pkcs12::read(bytes, password, alias)?,
        KeystoreKind::Jks => jks_store::read(bytes, password, alias)?,
    };
    let (key_pkcs8, leaf) = key::check(raw.key_pkcs8, &raw.certs, raw.linked_leaf)?;
    let chain = chain::order(&raw.certs, leaf, raw.all_certs_belong)?;
    Ok(KeyEntry {
        alias: raw.alias,
        chain,
        key_pkcs8,
    })
}

/// A key entry as a format module found it, before the checks [`load`] makes.
struct RawEntry {
    alias: Option<String>,
    /// PKCS#8 DER, decrypted.
    key_pkcs8: Vec<u8>,
    /// The certificates to build the chain from, in the store's order.
    certs: Vec<Vec<u8>>,
    /// The certificate the store itself ties to the key, if any.
    linked_leaf: Option<usize>,
    /// Whether `certs` is the entry's own chain (JKS), so that a certificate
    /// left over after ordering means the chain is broken; otherwise (PKCS#12)
    /// it is every certificate in the file and leftovers are ignored.
    all_certs_belong: bool,
}

/// How an entry without an alias is shown in lists.
const UNNAMED: &str = "(an entry without alias)";

/// Picks one key entry from `(alias, entry)` pairs, as [`load`] describes.
fn select<T>(
    mut entries: Vec<(Option<String>, T)>,
    wanted: Option<&str>,
) -> Result<(Option<String>, T), KeystoreError> {
    let names = |entries: &[(Option<String>, T)]| -> Vec<String> {
        entries
            .iter()
            .map(|(a, _)| a.clone().unwrap_or_else(|| UNNAMED.to_owned()))
            .collect()
    };
    match wanted {
        Some(wanted) => {
            if entries.is_empty() {
                return Err(KeystoreError::NoKeyEntry);
            }
            let exact = entries
                .iter()
                .position(|(a, _)| a.as_deref() == Some(wanted));
            let index = exact.or_else(|| {
                let folded: Vec<usize> = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, (a, _))| {
                        a.as_deref()
                            .is_some_and(|a| a.to_lowercase() == wanted.to_lowercase())
                    })
                    .map(|(i, _)| i)
                    .collect();
                (folded.len() == 1).then(|| folded[0])
            });
            match index {
                Some(i) => Ok(entries.swap_remove(i)),
                None => Err(KeystoreError::AliasNotFound {
                    wanted: wanted.to_owned(),
                    available: names(&entries),
                }),
            }
        }
        None => match entries.len() {
            0 => Err(KeystoreError::NoKeyEntry),
            1 => Ok(entries.remove(0)),
            _ => Err(KeystoreError::SeveralKeys {
                available: names(&entries),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[Option<&str>]) -> Vec<(Option<String>, usize)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.map(str::to_owned), i))
            .collect()
    }

    #[test]
    fn select_prefers_exact_then_case_insensitive() {
        let e = entries(&[Some("Server"), Some("server"), Some("old")]);
        assert_eq!(select(e.clone(), Some("server")).unwrap().1, 1);
        assert_eq!(select(e.clone(), Some("Server")).unwrap().1, 0);
        assert_eq!(select(e.clone(), Some("OLD")).unwrap().1, 2);
        // Two entries differ only by case: ambiguous without the exact spelling.
        assert!(matches!(
            select(e, Some("SERVER")),
            Err(KeystoreError::AliasNotFound { .. })
        ));
    }

    #[test]
    fn select_single_without_alias_and_lists_several() {
        assert_eq!(select(entries(&[None]), None).unwrap().1, 0);
        let err = select(entries(&[Some("a"), None]), None).unwrap_err();
        assert_eq!(
            err,
            KeystoreError::SeveralKeys {
                available: vec!["a".into(), UNNAMED.into()]
            }
        );
        assert_eq!(
            select(entries(&[]), Some("a")).unwrap_err(),
            KeystoreError::NoKeyEntry
        );
        assert_eq!(
            select(entries(&[]), None).unwrap_err(),
            KeystoreError::NoKeyEntry
        );
    }

    #[test]
    fn detect_says_what_the_bytes_are() {
        let not = |b: &[u8]| match detect(b) {
            Err(KeystoreError::NotAKeystore(s)) => s,
            other => panic!("{other:?}"),
        };
        assert!(not(b"").contains("empty"));
        assert_eq!(
            not(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
            "this is a PEM file: use cert = and key = instead of keystore ="
        );
        assert!(
            not(b"Bag Attributes\n    localKeyID: 01\n-----BEGIN PRIVATE KEY-----\n")
                .contains("PEM")
        );
        assert!(not(b"hello: world\n").contains("text file"));
        assert!(not(&[0x01, 0x02, 0x03, 0xff]).contains("01 02 03 ff"));
        assert!(not(&[0x30]).contains("DER"));
        assert!(matches!(
            detect(&[0xCE, 0xCE, 0xCE, 0xCE, 0, 0, 0, 2]),
            Err(KeystoreError::Unsupported(s)) if s.contains("JCEKS")
        ));
        assert_eq!(
            detect(&[0xFE, 0xED, 0xFE, 0xED]).unwrap(),
            KeystoreKind::Jks
        );
        assert_eq!(
            detect(&[0x30, 0x03, 0x02, 0x01, 0x03]).unwrap(),
            KeystoreKind::Pkcs12
        );
    }
}
