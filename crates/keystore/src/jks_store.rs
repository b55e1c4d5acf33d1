//! JKS through the `jks` crate, which verifies the store's keyed SHA-1 digest
//! and undoes Sun's proprietary key protection (JKS keeps each private key as
//! a PKCS#8 `EncryptedPrivateKeyInfo` under OID 1.3.6.1.4.1.42.2.17.1.1).
//!
//! The `jks` crate trusts its input: its reader sizes buffers from the
//! file's length fields and its key decryptor indexes without bounds checks.
//! So this module first walks the file's structure with bounds checks (a
//! damaged file is an error here, never a huge allocation or a panic there),
//! and hands the decryptor only a protected key it has re-encoded itself.

use ::jks::{KeyStore, KeyStoreError, KeyStoreOptions};

use crate::{der, select, KeystoreError, RawEntry};

/// Sun's JKS key-protection algorithm, OID 1.3.6.1.4.1.42.2.17.1.1.
const KEY_PROTECTOR_OID: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x11, 0x01, 0x01];

pub(crate) fn read(
    bytes: &[u8],
    password: &str,
    alias: Option<&str>,
) -> Result<RawEntry, KeystoreError> {
    walk(bytes).map_err(KeystoreError::Damaged)?;
    let mut password = java_password(password)?;
    let result = read_checked(bytes, &password, alias);
    ::jks::zeroing(&mut password);
    result
}

fn read_checked(
    bytes: &[u8],
    password: &[u8],
    alias: Option<&str>,
) -> Result<RawEntry, KeystoreError> {
    // Aliases exactly as stored; `select` does the case-insensitive match.
    let mut store = KeyStore::with_options(KeyStoreOptions {
        case_exact_aliases: true,
        ..KeyStoreOptions::default()
    });
    store.load(bytes, password).map_err(|e| match e {
        KeyStoreError::InvalidDigest => KeystoreError::WrongPassword,
        other => KeystoreError::Damaged(other.to_string()),
    })?;

    let mut key_aliases: Vec<String> = store
        .aliases()
        .into_iter()
        .filter(|a| store.is_private_key_entry(a))
        .collect();
    key_aliases.sort();
    let entries = key_aliases.into_iter().map(|a| (Some(a), ())).collect();
    // Every JKS entry has an alias, so `chosen` is always `Some`.
    let (chosen, ()) = select(entries, alias)?;
    let chosen = chosen.unwrap_or_default();

    let entry = store
        .get_raw_private_key_entry(&chosen)
        .map_err(|e| KeystoreError::Damaged(e.to_string()))?;
    let protected = canonical_protected_key(&entry.private_key)?;
    let key = ::jks::keyprotector::decrypt(&protected, password, ::jks::common::password_bytes)
        .map_err(|e| match e {
            KeyStoreError::InvalidDigest => KeystoreError::KeyPassword {
                alias: chosen.clone(),
            },
            other => KeystoreError::Damaged(other.to_string()),
        })?;

    let mut certs = Vec::with_capacity(entry.certificate_chain.len());
    for cert in entry.certificate_chain {
        if cert.cert_type != "X.509" && cert.cert_type != "X509" {
            return Err(KeystoreError::Unsupported(format!(
                "the key entry {chosen:?} holds a {:?} certificate, not X.509",
                cert.cert_type
            )));
        }
        certs.push(cert.content);
    }
    Ok(RawEntry {
        alias: Some(chosen),
        key_pkcs8: key,
        certs,
        // keytool writes the leaf first; `key::check` confirms by public key.
        linked_leaf: Some(0),
        all_certs_belong: true,
    })
}

/// The password as Java hands it to JKS: UTF-16 code units, which the `jks`
/// crate builds by putting a zero byte before each byte it is given. Passing
/// Latin-1 bytes is therefore exact for every character up to U+00FF; beyond
/// that, the `jks` crate cannot express the password.
fn java_password(password: &str) -> Result<Vec<u8>, KeystoreError> {
    password
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| {
            KeystoreError::Unsupported(
                "the password has characters beyond Latin-1, which Postern cannot use with a \
                 JKS keystore: convert the keystore to PKCS#12 (keytool -importkeystore \
                 -deststoretype PKCS12)"
                    .into(),
            )
        })
}

/// Checks that `blob` is `EncryptedPrivateKeyInfo { { JKS key protector OID,
/// NULL? }, OCTET STRING }` and returns it in the one encoding the `jks`
/// crate's decryptor reads safely.
fn canonical_protected_key(blob: &[u8]) -> Result<Vec<u8>, KeystoreError> {
    let damaged = || KeystoreError::Damaged("the protected private key is malformed".into());
    let (0x30, content) = der::single(blob).ok_or_else(damaged)? else {
        return Err(damaged());
    };
    let items = der::elements(content).ok_or_else(damaged)?;
    let [(0x30, algorithm), (0x04, encrypted)] = items[..] else {
        return Err(damaged());
    };
    let alg = der::elements(algorithm).ok_or_else(damaged)?;
    match alg[..] {
        [(0x06, KEY_PROTECTOR_OID)] | [(0x06, KEY_PROTECTOR_OID), (0x05, [])] => {}
        [(0x06, _), ..] => {
            return Err(KeystoreError::Unsupported(
                "the private key is protected with an algorithm other than JKS's own: convert \
                 the keystore to PKCS#12 (keytool -importkeystore -deststoretype PKCS12)"
                    .into(),
            ))
        }
        _ => return Err(damaged()),
    }
    Ok(der::sequence(&[
        &der::sequence(&[&der::tlv(0x06, KEY_PROTECTOR_OID), &der::tlv(0x05, &[])]),
        &der::tlv(0x04, encrypted),
    ]))
}

/// Bounds-checked reader over the file.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("the file ends inside {what}"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self, what: &str) -> Result<usize, String> {
        let b = self.take(2, what)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self, what: &str) -> Result<usize, String> {
        let b = self.take(4, what)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(n).map_err(|_| format!("{what} is too large"))
    }

    /// A `u32` count or length that must fit in what is left of the file,
    /// with at least `min_each` bytes per counted item.
    fn bounded(&mut self, min_each: usize, what: &str) -> Result<usize, String> {
        let n = self.u32(what)?;
        if n.saturating_mul(min_each) > self.bytes.len() {
            return Err(format!("{what} ({n}) runs past the end of the file"));
        }
        Ok(n)
    }

    fn certificate(&mut self, version: usize) -> Result<(), String> {
        if version == 2 {
            let len = self.u16("a certificate type")?;
            self.take(len, "a certificate type")?;
        }
        let len = self.bounded(1, "a certificate length")?;
        self.take(len, "a certificate")?;
        Ok(())
    }
}

/// The JKS layout, as Java's `JavaKeyStore.engineStore` writes it: magic,
/// version (1 or 2), entry count, entries, then a 20-byte SHA-1 digest.
/// Every length is checked against the bytes that remain.
fn walk(bytes: &[u8]) -> Result<(), String> {
    let mut r = Reader { bytes };
    r.take(4, "the magic number")?;
    let version = r.u32("the version")?;
    if version != 1 && version != 2 {
        return Err(format!("unknown JKS version {version}"));
    }
    // Smallest entry: tag, empty alias, timestamp, certificate length.
    let count = r.bounded(4 + 2 + 8 + 4, "the entry count")?;
    for _ in 0..count {
        let tag = r.u32("an entry tag")?;
        let alias_len = r.u16("an alias")?;
        let alias = r.take(alias_len, "an alias")?;
        if std::str::from_utf8(alias).is_err() {
            return Err("an alias is not valid UTF-8".into());
        }
        r.take(8, "an entry date")?;
        match tag {
            1 => {
                let len = r.bounded(1, "a private key length")?;
                r.take(len, "a private key")?;
                let certs = r.bounded(4, "a certificate count")?;
                for _ in 0..certs {
                    r.certificate(version)?;
                }
            }
            2 => r.certificate(version)?,
            3 => return Err("a secret-key entry, which only JCEKS stores hold".into()),
            other => return Err(format!("unknown entry type {other}")),
        }
    }
    r.take(20, "the integrity digest")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_passwords_map_to_java_chars() {
        assert_eq!(java_password("changeit").unwrap(), b"changeit");
        assert_eq!(java_password("é").unwrap(), vec![0xE9]);
        assert_eq!(java_password("").unwrap(), Vec::<u8>::new());
        assert!(matches!(
            java_password("pass€"),
            Err(KeystoreError::Unsupported(s)) if !s.contains("pass€")
        ));
    }

    #[test]
    fn walk_rejects_lengths_past_the_end() {
        let mut file = vec![0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2];
        file.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(walk(&file).unwrap_err().contains("entry count"));
        // One key entry claiming a 4 GiB key.
        let mut file = vec![0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1];
        file.extend_from_slice(&[0, 0, 0, 1, 0, 1, b'a']);
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&u32::MAX.to_be_bytes());
        file.extend_from_slice(&[0; 20]);
        assert!(walk(&file).unwrap_err().contains("private key length"));
    }

    /// Whatever passes `canonical_protected_key` is safe for the `jks`
    /// decryptor, which indexes without checking.
    #[test]
    fn protected_key_rebuild_keeps_the_decryptor_in_bounds() {
        let good = der::sequence(&[
            &der::sequence(&[&der::tlv(0x06, KEY_PROTECTOR_OID), &der::tlv(0x05, &[])]),
            &der::tlv(0x04, &[7u8; 64]),
        ]);
        assert_eq!(canonical_protected_key(&good).unwrap(), good);
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for i in 0..good.len() {
            for x in [0x01, 0x80, 0xFF] {
                let mut bad = good.clone();
                bad[i] ^= x;
                cases.push(bad);
            }
        }
        cases.push(der::sequence(&[
            &der::sequence(&[&der::tlv(0x06, KEY_PROTECTOR_OID)]),
            &der::tlv(0x04, &[]),
        ]));
        for case in cases {
            if let Ok(canonical) = canonical_protected_key(&case) {
                let _ = ::jks::keyprotector::decrypt(
                    &canonical,
                    b"changeit",
                    ::jks::common::password_bytes,
                );
            }
        }
    }
}
