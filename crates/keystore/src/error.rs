//! [`KeystoreError`]: what went wrong, worded for the operator who set
//! `keystore =`. No message ever contains the password.

use std::fmt;

/// Why a keystore could not give a certificate chain and private key.
///
/// The `Display` text is meant for operators and is a complete explanation
/// (the caller adds which file it was). It never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeystoreError {
    /// The bytes are not a PKCS#12 or JKS keystore; says what they look like.
    NotAKeystore(String),
    /// A keystore this crate recognises but cannot use (JCEKS, a key type
    /// rustls cannot sign with, a password JKS cannot encode, ...).
    Unsupported(String),
    /// The keystore's integrity check failed: nearly always a wrong
    /// password, sometimes a damaged file.
    WrongPassword,
    /// The store opened, but the key entry has a password of its own (JKS
    /// allows a key password different from the store password).
    KeyPassword {
        /// The entry whose key did not decrypt.
        alias: String,
    },
    /// The keystore structure is broken or cut short.
    Damaged(String),
    /// The keystore holds no private key entry.
    NoKeyEntry,
    /// `alias` named an entry that is not among the key entries.
    AliasNotFound {
        /// The alias asked for.
        wanted: String,
        /// The aliases of the key entries the store does hold.
        available: Vec<String>,
    },
    /// Several key entries and no `alias` to choose between them.
    SeveralKeys {
        /// The aliases of the key entries.
        available: Vec<String>,
    },
    /// The key entry's certificates cannot be made into a chain for its key
    /// (no certificate matches the key, or the chain cannot be ordered).
    Chain(String),
}

impl fmt::Display for KeystoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAKeystore(what) => f.write_str(what),
            Self::Unsupported(what) => f.write_str(what),
            Self::WrongPassword => {
                f.write_str("the keystore password is wrong (or the file is damaged)")
            }
            Self::KeyPassword { alias } => write!(
                f,
                "the keystore password opens the store but not the private key of entry \
                 {alias:?}, which has a password of its own: give the key the store password \
                 (keytool -keypasswd -alias {alias} -keystore FILE)"
            ),
            Self::Damaged(what) => write!(f, "the keystore file is damaged or truncated: {what}"),
            Self::NoKeyEntry => f.write_str(
                "the keystore holds no private key entry, only trusted certificates",
            ),
            Self::AliasNotFound { wanted, available } => write!(
                f,
                "the keystore has no private key entry with alias {wanted:?}; its key entries are: {}",
                list(available)
            ),
            Self::SeveralKeys { available } => write!(
                f,
                "the keystore holds several private keys: set alias = ... to choose one of: {}",
                list(available)
            ),
            Self::Chain(what) => write!(f, "the keystore's certificate chain is unusable: {what}"),
        }
    }
}

impl std::error::Error for KeystoreError {}

fn list(aliases: &[String]) -> String {
    if aliases.is_empty() {
        "(none)".to_owned()
    } else {
        aliases.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_the_operator_types_them() {
        let e = KeystoreError::SeveralKeys {
            available: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "the keystore holds several private keys: set alias = ... to choose one of: a, b"
        );
        let e = KeystoreError::AliasNotFound {
            wanted: "x".into(),
            available: vec![],
        };
        assert!(e.to_string().ends_with("are: (none)"), "{e}");
    }
}
