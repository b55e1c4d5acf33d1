//! JWT header and claims decoding, and JWK Set parsing (what an IdP sends):
//! never panic, and nothing unsigned verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_auth::keys::{parse_jwk_set, secret_key};

fuzz_target!(|data: &[u8]| {
    let _ = parse_jwk_set(data);
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jsonwebtoken::decode_header(token);
    let keys = secret_key(&[7u8; 64], &[jsonwebtoken::Algorithm::HS256]).expect("key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    for key in keys.candidates(None, jsonwebtoken::Algorithm::HS256) {
        let _ = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation);
    }
});
