//! Password hashes basic auth accepts, and the ones it refuses at load.
//!
//! Accepted: argon2id PHC strings (what `postern hash-password` prints) and
//! bcrypt `$2a$`/`$2b$`/`$2y$` (what `htpasswd -B` writes). Refused, with
//! the way out: plaintext, and the fast hashes htpasswd can also write
//! (`$apr1$` MD5, `{SHA}` SHA-1, DES crypt), which a GPU guesses in bulk.

use argon2::password_hash::phc::PasswordHash as PhcHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// How to make an acceptable hash, for error messages.
pub const HOW_TO_HASH: &str =
    "hash it with `postern hash-password` (argon2id) or `htpasswd -B` (bcrypt)";

/// A password hash the gateway accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// A validated argon2id PHC string.
    Argon2id(String),
    /// A validated bcrypt string.
    Bcrypt(String),
}

impl PasswordHash {
    /// Reads a stored hash; the error says what it is and why it is refused.
    pub fn parse(stored: &str) -> Result<PasswordHash, String> {
        let stored = stored.trim();
        if stored.starts_with("$argon2") {
            let phc = PhcHash::new(stored)
                .map_err(|e| format!("is not a well-formed argon2 PHC string ({e})"))?;
            if phc.algorithm.as_str() != "argon2id" {
                return Err(format!(
                    "is {}, and only argon2id is accepted among argon2 variants",
                    phc.algorithm.as_str()
                ));
            }
            // Parameters must be ones argon2 can run with.
            argon2::Params::try_from(&phc)
                .map_err(|e| format!("has unusable argon2 parameters ({e})"))?;
            if phc.hash.is_none() || phc.salt.is_none() {
                return Err("is an argon2 PHC string without salt or hash".to_string());
            }
            return Ok(PasswordHash::Argon2id(stored.to_string()));
        }
        if ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|p| stored.starts_with(p))
        {
            let parts: bcrypt::HashParts = stored
                .parse()
                .map_err(|e| format!("is not a well-formed bcrypt hash ({e})"))?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err("is a bcrypt hash with a cost outside 4..31".to_string());
            }
            return Ok(PasswordHash::Bcrypt(stored.to_string()));
        }
        if stored.starts_with("$2x$") || stored.starts_with("$2$") {
            return Err("is an old bcrypt variant with known flaws".to_string());
        }
        if stored.starts_with("$apr1$") || stored.starts_with("$1$") {
            return Err("is an MD5-based hash, which is too fast to resist guessing".to_string());
        }
        if stored.starts_with("{SHA}") || stored.starts_with("{SSHA}") {
            return Err("is a SHA-1 hash, which is too fast to resist guessing".to_string());
        }
        if stored.starts_with("$5$") || stored.starts_with("$6$") {
            return Err("is a SHA-crypt hash, which is not supported".to_string());
        }
        if stored.len() == 13
            && stored
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
        {
            return Err("looks like a DES crypt hash or a plaintext password".to_string());
        }
        Err("is not a password hash (plaintext passwords are refused)".to_string())
    }

    /// Checks `password` in constant time with respect to its content.
    /// Slow by design: call it off the async threads.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Argon2id(phc) => match PhcHash::new(phc) {
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }

    /// A hash with the same algorithm and cost over a random password, so an
    /// unknown user costs what a wrong password does.
    pub fn decoy(&self) -> PasswordHash {
        let secret: [u8; 32] = rand::random();
        match self {
            PasswordHash::Argon2id(phc) => {
                let params = PhcHash::new(phc)
                    .ok()
                    .and_then(|p| argon2::Params::try_from(&p).ok())
                    .unwrap_or_default();
                let hasher =
                    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                match hasher.hash_password(&secret) {
                    Ok(hash) => PasswordHash::Argon2id(hash.to_string()),
                    Err(_) => self.clone(),
                }
            }
            PasswordHash::Bcrypt(hash) => {
                let cost = hash
                    .parse::<bcrypt::HashParts>()
                    .map(|p| p.get_cost())
                    .unwrap_or(bcrypt::DEFAULT_COST);
                match bcrypt::hash(secret, cost) {
                    Ok(decoy) => PasswordHash::Bcrypt(decoy),
                    Err(_) => self.clone(),
                }
            }
        }
    }
}

/// Hashes a new password as `postern hash-password` prints it.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// One `user:hash` line of an htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdEntry {
    /// 1-based line number.
    pub line: usize,
    /// The user name before the `:`.
    pub user: String,
    /// The hash after the `:`, as written.
    pub hash: String,
}

/// Splits an htpasswd file into entries; blank lines and `#` comments are
/// skipped. Errors carry the 1-based line.
pub fn parse_htpasswd(text: &str) -> Result<Vec<HtpasswdEntry>, (usize, String)> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = trimmed.split_once(':') else {
            return Err((line, "is not `user:hash`".to_string()));
        };
        if user.is_empty() {
            return Err((line, "has an empty user name".to_string()));
        }
        entries.push(HtpasswdEntry {
            line,
            user: user.to_string(),
            hash: hash.to_string(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cheap parameters keep the tests fast; the format is what matters here.
    fn quick_argon2(password: &[u8]) -> String {
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password)
            .unwrap()
            .to_string()
    }

    #[test]
    fn argon2id_round_trip() {
        let stored = quick_argon2(b"s3cret");
        let hash = PasswordHash::parse(&stored).unwrap();
        assert!(hash.verify(b"s3cret"));
        assert!(!hash.verify(b"s3cret "));
        assert!(!hash.verify(b""));
        let decoy = hash.decoy();
        assert!(!decoy.verify(b"s3cret"));
        assert_ne!(decoy, hash);
    }

    #[test]
    fn hash_password_prints_argon2id_phc() {
        let printed = hash_password(b"correct horse").unwrap();
        assert!(
            printed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{printed}"
        );
        assert!(PasswordHash::parse(&printed)
            .unwrap()
            .verify(b"correct horse"));
    }

    #[test]
    fn bcrypt_variants_are_accepted() {
        let b = bcrypt::hash("pw", 4).unwrap();
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let stored = format!("{prefix}{}", &b[4..]);
            let hash = PasswordHash::parse(&stored).unwrap_or_else(|e| panic!("{stored}: {e}"));
            assert!(hash.verify(b"pw"), "{prefix}");
            assert!(!hash.verify(b"pW"), "{prefix}");
        }
        // Written by `htpasswd -nbB -C 4 user pw`.
        let htpasswd = "$2y$04$UGXzy41fYLE3SlCm7g1ZPemCwOivsakZdylYk0MpO8xu7RH9XXQQC";
        let hash = PasswordHash::parse(htpasswd).unwrap();
        assert!(hash.verify(b"pw"));
        assert!(!hash.verify(b"definitely not it"));
    }

    #[test]
    fn weak_and_plain_passwords_are_refused_with_a_reason() {
        let cases = [
            ("hunter2", "plaintext"),
            ("$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "MD5"),
            ("$1$saltsalt$abcdefghijklmnopqrstuv", "MD5"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("$6$salt$hash", "SHA-crypt"),
            ("rl7.KKq8oJkDE", "DES"),
            (
                "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
                "argon2i",
            ),
            ("$argon2id$v=19$m=19456,t=2,p=1$not valid", "argon2"),
            (
                "$2y$99$UGXzy41fYLE3SlCm7g1ZPemCwOivsakZdylYk0MpO8xu7RH9XXQQC",
                "bcrypt",
            ),
            ("$2y$10$short", "bcrypt"),
            ("", "not a password hash"),
        ];
        for (stored, mention) in cases {
            let err = PasswordHash::parse(stored).expect_err(stored);
            assert!(err.contains(mention), "{stored:?}: {err}");
        }
    }

    #[test]
    fn htpasswd_lines() {
        let text = "# ops accounts\n\nadmin:$2y$05$abc\n  metrics:$argon2id$x  \n";
        let entries = parse_htpasswd(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line, 3);
        assert_eq!(entries[1].user, "metrics");
        assert_eq!(entries[1].hash, "$argon2id$x");
        assert_eq!(parse_htpasswd("ok:x\nnocolon\n").unwrap_err().0, 2);
        assert_eq!(parse_htpasswd(":x\n").unwrap_err().0, 1);
    }
}
