//! Verification keys for JWTs: from JWK Sets, PEM public keys and shared
//! secrets, each tied to the algorithm family it may verify.
//!
//! A key is only ever offered to a token whose algorithm fits it, so an RSA
//! public key can never be used as an HMAC secret (the classic key-confusion
//! attack), and a JWK that names its own `alg` verifies only that one.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The family an algorithm's key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// RS*, PS*.
    Rsa,
    /// ES256, ES384.
    Ec,
    /// EdDSA.
    Ed,
    /// HS256, HS384, HS512.
    Hmac,
}

/// The key family `alg` needs.
pub fn family_of(alg: Algorithm) -> KeyFamily {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => KeyFamily::Ec,
        Algorithm::EdDSA => KeyFamily::Ed,
        _ => KeyFamily::Rsa,
    }
}

/// One key that can verify tokens of its family.
pub struct VerifyingKey {
    /// The `kid` it is published under, if any.
    pub kid: Option<String>,
    /// Set when the key names its algorithm (a JWK's `alg`).
    pub alg: Option<Algorithm>,
    /// The algorithm family it verifies.
    pub family: KeyFamily,
    /// The key material.
    pub key: DecodingKey,
}

impl VerifyingKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.family == family_of(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

/// The keys one authenticator verifies with.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Every key of the set.
    pub keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// The keys a token may be checked with: those that fit its algorithm
    /// and, when it names a `kid`, carry that kid or none at all (a PEM key
    /// or a secret has no kid, and must still verify Keycloak's tokens).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        self.keys.iter().filter(move |k| {
            k.fits(alg)
                && match (kid, k.kid.as_deref()) {
                    (Some(wanted), Some(own)) => wanted == own,
                    _ => true,
                }
        })
    }

    /// Whether any key carries this `kid` at all, whatever its type.
    pub fn knows_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Reads a JWK Set document. Keys that are not for signatures, of a type
/// this gateway cannot verify, or malformed are skipped (and counted in the
/// second value), as an IdP may publish encryption keys alongside.
pub fn parse_jwk_set(json: &[u8]) -> Result<(KeySet, usize), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("is not a JWK Set (no \"keys\" array)")?;
    let mut set = KeySet::default();
    let mut skipped = 0;
    for value in keys {
        match serde_json::from_value::<Jwk>(value.clone())
            .ok()
            .and_then(|jwk| verifying_key_from_jwk(&jwk))
        {
            Some(key) => set.keys.push(key),
            None => skipped += 1,
        }
    }
    Ok((set, skipped))
}

fn verifying_key_from_jwk(jwk: &Jwk) -> Option<VerifyingKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Ed,
        // Symmetric keys are never published: a JWKS "oct" key is refused.
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(named) => Some(signing_algorithm(named)?),
    };
    if alg.is_some_and(|a| family_of(a) != family) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        key,
    })
}

fn signing_algorithm(named: KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// Reads a PEM public key (RSA, EC or Ed25519), or a JWK Set file.
pub fn parse_key_file(bytes: &[u8]) -> Result<KeySet, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim_start().starts_with('{') {
        let (set, _) = parse_jwk_set(bytes)?;
        if set.keys.is_empty() {
            return Err("is a JWK Set with no usable signature keys".to_string());
        }
        return Ok(set);
    }
    if text.contains("PRIVATE KEY") {
        return Err(
            "holds a private key; give the public key (openssl pkey -in KEY -pubout)".to_string(),
        );
    }
    if !text.contains("-----BEGIN") {
        return Err("is neither a PEM public key nor a JWK Set".to_string());
    }
    let attempts: [(KeyFamily, PemParser); 3] = [
        (KeyFamily::Rsa, DecodingKey::from_rsa_pem),
        (KeyFamily::Ec, DecodingKey::from_ec_pem),
        (KeyFamily::Ed, DecodingKey::from_ed_pem),
    ];
    for (family, parse) in attempts {
        if let Ok(key) = parse(bytes) {
            return Ok(KeySet {
                keys: vec![VerifyingKey {
                    kid: None,
                    alg: None,
                    family,
                    key,
                }],
            });
        }
    }
    Err("holds no RSA, EC or Ed25519 public key that can be read".to_string())
}

/// An HMAC secret; RFC 7518 requires at least the hash's size.
pub fn secret_key(secret: &[u8], algorithms: &[Algorithm]) -> Result<KeySet, String> {
    let needed = algorithms
        .iter()
        .map(|a| match a {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        })
        .max()
        .unwrap_or(32);
    if secret.len() < needed {
        return Err(format!(
            "is {} bytes; the algorithms allowed need a secret of at least {needed} bytes",
            secret.len()
        ));
    }
    Ok(KeySet {
        keys: vec![VerifyingKey {
            kid: None,
            alg: None,
            family: KeyFamily::Hmac,
            key: DecodingKey::from_secret(secret),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;

    #[test]
    fn jwk_sets_keep_signature_keys_and_skip_the_rest() {
        let doc = format!(
            r#"{{"keys":[{RSA_JWK},
                {{"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"}},
                {{"kty":"oct","kid":"sym","k":"c2VjcmV0"}},
                {{"kty":"XYZ","kid":"odd"}},
                {{"kty":"EC","kid":"wrong-alg","crv":"P-256","alg":"RS256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}}"#
        );
        let (set, skipped) = parse_jwk_set(doc.as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(skipped, 4);
        let key = &set.keys[0];
        assert_eq!(key.kid.as_deref(), Some("k1"));
        assert!(key.fits(Algorithm::RS256));
        assert!(!key.fits(Algorithm::RS384), "the JWK names RS256 only");
        assert!(!key.fits(Algorithm::HS256));
        assert_eq!(set.candidates(Some("k1"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("k2"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("k1"), Algorithm::HS256).count(), 0);
        assert!(set.knows_kid("k1"));
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(parse_jwk_set(b"not json").is_err());
        assert!(parse_jwk_set(b"{\"keys\": 3}").is_err());
        assert!(parse_key_file(b"-----BEGIN PRIVATE KEY-----\n").is_err());
        assert!(parse_key_file(b"hello").is_err());
        assert!(parse_key_file(b"{\"keys\":[]}").is_err());
    }

    #[test]
    fn secrets_must_be_long_enough() {
        assert!(secret_key(&[7; 31], &[Algorithm::HS256]).is_err());
        assert!(secret_key(&[7; 32], &[Algorithm::HS256]).is_ok());
        assert!(secret_key(&[7; 32], &[Algorithm::HS256, Algorithm::HS512]).is_err());
        let set = secret_key(&[7; 64], &[Algorithm::HS512]).unwrap();
        assert!(set.keys[0].fits(Algorithm::HS384));
        assert!(!set.keys[0].fits(Algorithm::RS256));
        assert_eq!(
            set.candidates(Some("any-kid"), Algorithm::HS512).count(),
            1,
            "a key without kid serves tokens with any kid"
        );
    }
}
