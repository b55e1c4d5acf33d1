//! Verification keys for JWTs: from JWK Sets, PEM public keys and shared
//! secrets, each tied to the algorithm family it may verify.
//!
//! A key is only ever offered to a token whose algorithm fits it, so an RSA
//! public key can never be used as an HMAC secret (the classic key-confusion
//! attack), and a JWK that names its own `alg` verifies only that one. A JWK
//! whose `use` or `key_ops` does not allow verifying (RFC 7517 §4.2, §4.3)
//! verifies nothing.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
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

/// What identifies a published key from one fetch of its JWK Set to the
/// next: a digest of its `kid`, `alg` and public parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint([u8; 32]);

impl KeyFingerprint {
    fn of_jwk(jwk: &Jwk, alg: Option<Algorithm>) -> Option<Self> {
        let identity = serde_json::to_vec(&(&jwk.common.key_id, alg, &jwk.algorithm)).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &identity);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Some(KeyFingerprint(bytes))
    }

    /// For a key that is never fetched again (a PEM file, a secret): equal
    /// to no other key's, and derived from nothing secret.
    fn unique() -> Self {
        KeyFingerprint(rand::random())
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
    /// What the cache remembers it by, to drop tokens it verified once it is withdrawn.
    pub fingerprint: KeyFingerprint,
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

/// Why a JWK in a set verifies nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// Its `use` is not "sig", or its `key_ops` lacks "verify".
    NotForVerifying,
    /// Its `alg` is no signature algorithm of its key type, or it is a
    /// symmetric (`oct`) key, which a JWK Set must never publish.
    OtherAlgorithm,
}

/// What a token's `kid` names in a set, when no key there can verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// A usable key carries the kid, but for another algorithm or key type.
    OtherAlgorithm,
    /// The kid belongs to a JWK that verifies nothing ([`Withheld`]).
    Withheld(Withheld),
    /// No key carries it (or the token names no kid).
    Unknown,
}

/// The keys one authenticator verifies with.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Every key of the set.
    pub keys: Vec<VerifyingKey>,
    /// Kids of the set's JWKs that verify nothing, so a token naming one is
    /// refused for what it is, without refetching a set that already has it.
    pub withheld: HashMap<String, Withheld>,
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

    /// Whether the set publishes this `kid` at all, usable or not: a kid it
    /// does not is worth a refetch (the IdP may have rotated keys).
    pub fn publishes(&self, kid: &str) -> bool {
        self.withheld.contains_key(kid) || self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Why no key of the set fits a token with this `kid`.
    pub fn miss(&self, kid: Option<&str>) -> Miss {
        let Some(kid) = kid else {
            return Miss::Unknown;
        };
        if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
            Miss::OtherAlgorithm
        } else if let Some(why) = self.withheld.get(kid) {
            Miss::Withheld(*why)
        } else {
            Miss::Unknown
        }
    }

    /// Whether the key with this fingerprint is still in the set.
    pub fn holds(&self, fingerprint: KeyFingerprint) -> bool {
        self.keys.iter().any(|k| k.fingerprint == fingerprint)
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
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
            skipped += 1;
            continue;
        };
        match verifying_key_from_jwk(&jwk) {
            Ok(key) => set.keys.push(key),
            Err(why) => {
                skipped += 1;
                if let (Some(why), Some(kid)) = (why, &jwk.common.key_id) {
                    set.withheld.insert(kid.clone(), why);
                }
            }
        }
    }
    Ok((set, skipped))
}

/// The key a JWK verifies with; an error says why it verifies nothing
/// (`None`: it cannot be read).
fn verifying_key_from_jwk(jwk: &Jwk) -> Result<VerifyingKey, Option<Withheld>> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return Err(Some(Withheld::NotForVerifying));
    }
    // RFC 7517 §4.3: present, key_ops lists every use the key is for.
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err(Some(Withheld::NotForVerifying));
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Ed,
        // Symmetric keys are never published: a JWKS "oct" key is refused.
        AlgorithmParameters::OctetKey(_) => return Err(Some(Withheld::OtherAlgorithm)),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(named) => Some(signing_algorithm(named).ok_or(Some(Withheld::OtherAlgorithm))?),
    };
    if alg.is_some_and(|a| family_of(a) != family) {
        return Err(Some(Withheld::OtherAlgorithm));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| None)?;
    let fingerprint = KeyFingerprint::of_jwk(jwk, alg).ok_or(None)?;
    Ok(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        key,
        fingerprint,
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
                    fingerprint: KeyFingerprint::unique(),
                }],
                withheld: HashMap::new(),
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
            fingerprint: KeyFingerprint::unique(),
        }],
        withheld: HashMap::new(),
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
        assert!(set.publishes("k1"));
        assert!(!set.publishes("k2"));
        // Skipped, but published: the kids of the enc, oct and wrong-alg keys.
        assert_eq!(set.withheld.get("enc"), Some(&Withheld::NotForVerifying));
        assert_eq!(set.withheld.get("sym"), Some(&Withheld::OtherAlgorithm));
        assert_eq!(
            set.withheld.get("wrong-alg"),
            Some(&Withheld::OtherAlgorithm)
        );
        assert!(!set.publishes("odd"), "an unreadable JWK publishes nothing");
    }

    /// RSA_JWK with these fields replaced (a `null` removes one).
    fn rsa_jwk_with(changes: serde_json::Value) -> serde_json::Value {
        let mut jwk: serde_json::Value = serde_json::from_str(RSA_JWK).unwrap();
        for (field, value) in changes.as_object().unwrap() {
            if value.is_null() {
                jwk.as_object_mut().unwrap().remove(field);
            } else {
                jwk[field] = value.clone();
            }
        }
        jwk
    }

    fn parse_one(jwk: serde_json::Value) -> KeySet {
        let doc = serde_json::json!({ "keys": [jwk] }).to_string();
        parse_jwk_set(doc.as_bytes()).unwrap().0
    }

    #[test]
    fn key_ops_without_verify_verify_nothing() {
        use serde_json::json;
        for ops in [
            json!(["encrypt"]),
            json!(["sign"]),
            json!(["wrapKey", "unwrapKey"]),
            json!([]),
        ] {
            for with_use in [json!(null), json!("sig")] {
                let set = parse_one(rsa_jwk_with(json!({ "key_ops": ops, "use": with_use })));
                assert!(set.keys.is_empty(), "key_ops {ops} (use {with_use})");
                assert_eq!(
                    set.miss(Some("k1")),
                    Miss::Withheld(Withheld::NotForVerifying)
                );
                assert!(set.publishes("k1"));
            }
        }
        for ops in [json!(["verify"]), json!(["sign", "verify"])] {
            let set = parse_one(rsa_jwk_with(json!({ "key_ops": ops, "use": null })));
            assert_eq!(set.keys.len(), 1, "key_ops {ops}");
            assert!(set.withheld.is_empty());
        }
        // key_ops that is not a list of strings is no JWK at all.
        let set = parse_one(rsa_jwk_with(json!({ "key_ops": "verify" })));
        assert!(set.keys.is_empty());
        // A JWK Set file of such keys only is refused at load.
        let doc = json!({ "keys": [rsa_jwk_with(json!({ "key_ops": ["encrypt"] }))] });
        assert!(parse_key_file(doc.to_string().as_bytes()).is_err());
    }

    #[test]
    fn a_miss_says_what_the_kid_names() {
        use serde_json::json;
        let doc = json!({ "keys": [
            rsa_jwk_with(json!({})),
            rsa_jwk_with(json!({ "kid": "rsa-oaep", "alg": "RSA-OAEP", "use": null })),
            rsa_jwk_with(json!({ "kid": "enc", "use": "enc" })),
        ]});
        let (set, _) = parse_jwk_set(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.candidates(Some("k1"), Algorithm::ES256).count(), 0);
        assert_eq!(set.miss(Some("k1")), Miss::OtherAlgorithm);
        assert_eq!(
            set.miss(Some("rsa-oaep")),
            Miss::Withheld(Withheld::OtherAlgorithm)
        );
        assert_eq!(
            set.miss(Some("enc")),
            Miss::Withheld(Withheld::NotForVerifying)
        );
        assert_eq!(set.miss(Some("nobody")), Miss::Unknown);
        assert_eq!(set.miss(None), Miss::Unknown);
    }

    #[test]
    fn fingerprints_follow_the_published_key() {
        use serde_json::json;
        let fingerprint = |jwk: serde_json::Value| parse_one(jwk).keys[0].fingerprint;
        let original = fingerprint(rsa_jwk_with(json!({})));
        assert_eq!(
            original,
            fingerprint(rsa_jwk_with(json!({ "use": null, "x5t": "abc" }))),
            "the same key fetched again"
        );
        assert_ne!(original, fingerprint(rsa_jwk_with(json!({ "kid": "k2" }))));
        assert_ne!(original, fingerprint(rsa_jwk_with(json!({ "alg": null }))));
        assert_ne!(original, fingerprint(rsa_jwk_with(json!({ "e": "AQAD" }))));
        let set = parse_one(rsa_jwk_with(json!({})));
        assert!(set.holds(original));
        assert!(!parse_one(rsa_jwk_with(json!({ "kid": "k2" }))).holds(original));
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
