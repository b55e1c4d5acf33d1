//! `[auth.NAME] type = "jwt"`: bearer tokens, verified against one key source.

use super::Reader;
use crate::diag::Origin;
use crate::fields::Fields;
use crate::model::*;
use crate::tree::{Table, Value};

pub const JWT_KEYS: &[&str] = &[
    "type",
    "issuer",
    "jwks_url",
    "keys",
    "secret_env",
    "audiences",
    "algorithms",
    "leeway",
    "required_claims",
    "cookie",
    "claims_to_headers",
    "refresh_interval",
    "refetch_cooldown",
    "ca",
];

/// JWS algorithms a key can verify; "none" is deliberately absent.
const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// Headers a claim may never be copied into: the gateway's own, framing, and credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-request-id",
];

impl Reader<'_> {
    pub(super) fn jwt(&mut self, t: &Table, section: &str, origin: &Origin) -> Option<JwtSettings> {
        let mut f = Fields::new(t, section.to_string(), JWT_KEYS);
        let _ = f.string("type", self.diags);
        let issuer = f.string("issuer", self.diags);
        let jwks_url = f.string("jwks_url", self.diags);
        let keys = f.strings("keys", self.diags);
        let secret_env = f.string("secret_env", self.diags);
        let audiences = f.strings("audiences", self.diags);
        let algorithms = f.strings("algorithms", self.diags);
        let leeway = f.tolerance("leeway", DEFAULT_JWT_LEEWAY, self.diags);
        let required_claims = f.strings("required_claims", self.diags);
        let cookie = f.string("cookie", self.diags);
        let claims_to_headers = f.table("claims_to_headers", self.diags);
        let refresh_interval = f.duration(
            "refresh_interval",
            DEFAULT_JWKS_REFRESH_INTERVAL,
            self.diags,
        );
        let refetch_cooldown = f.duration(
            "refetch_cooldown",
            DEFAULT_JWKS_REFETCH_COOLDOWN,
            self.diags,
        );
        let ca = f.string("ca", self.diags);
        f.finish(self.diags);
        let ca = match ca {
            Some((_, at)) if jwks_url.is_none() && !(keys.is_none() && secret_env.is_none()) => {
                self.diags.error_with_help(
                    at,
                    "`ca` is only used to fetch keys from jwks_url or the issuer",
                    "remove `ca`",
                );
                None
            }
            Some((path, at)) => self.existing_file(path, at, "ca"),
            None => None,
        };

        let sources = [jwks_url.is_some(), keys.is_some(), secret_env.is_some()];
        let key_help = "give exactly one of jwks_url = \"https://idp/.../certs\", keys = [\"certs/idp.pem\"] or secret_env = \"VAR\" (or only `issuer`, to discover the JWKS)";
        let source = match (jwks_url, keys, secret_env) {
            _ if sources.iter().filter(|s| **s).count() > 1 => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} names more than one key source"),
                    key_help,
                );
                return None;
            }
            (Some((url, at)), _, _) => {
                if !is_http_url(url) {
                    self.diags.error_with_help(at, format!("jwks_url {url:?} is not an http:// or https:// URL"), "write e.g. \"https://idp.example.com/realms/iams/protocol/openid-connect/certs\"");
                }
                JwtKeySource::JwksUrl(url.to_string())
            }
            (_, Some((files, at)), _) => {
                if files.is_empty() {
                    self.diags.error_with_help(at, "`keys` is empty", key_help);
                }
                let paths = files
                    .iter()
                    .filter_map(|(p, o)| self.existing_file(p, o, "keys"))
                    .collect();
                JwtKeySource::Files(paths)
            }
            (_, _, Some((var, _))) => JwtKeySource::SecretEnv(var.to_string()),
            (None, None, None) if issuer.is_some() => JwtKeySource::Discovery,
            (None, None, None) => {
                self.diags.error_with_help(
                    origin,
                    format!("{section} has no key source"),
                    key_help,
                );
                return None;
            }
        };
        if let Some((iss, at)) = issuer {
            if source == JwtKeySource::Discovery && !is_http_url(iss) {
                self.diags.error_with_help(
                    at,
                    format!(
                        "issuer {iss:?} is not an http(s) URL, so its keys cannot be discovered"
                    ),
                    "set jwks_url, or give the issuer URL as the IdP publishes it",
                );
            }
        }
        let hmac = matches!(source, JwtKeySource::SecretEnv(_));
        let algorithms = match algorithms {
            Some((list, at)) => self.algorithms(&list, at, hmac),
            None if hmac => vec![DEFAULT_JWT_HMAC_ALGORITHM.to_string()],
            None => vec![DEFAULT_JWT_ALGORITHM.to_string()],
        };
        let audiences: Vec<String> = audiences
            .map(|(a, _)| a.iter().map(|(s, _)| s.to_string()).collect())
            .unwrap_or_default();
        if audiences.is_empty() {
            self.diags.warning(
                origin,
                format!(
                    "{section} sets no `audiences`, so a token issued for any audience is accepted"
                ),
            );
        }
        let claims_to_headers = claims_to_headers
            .map(|(table, _)| self.claims_to_headers(table))
            .unwrap_or_default();
        Some(JwtSettings {
            keys: source,
            issuer: issuer.map(|(i, _)| i.to_string()),
            audiences,
            algorithms,
            leeway,
            required_claims: required_claims
                .map(|(c, _)| c.iter().map(|(s, _)| s.to_string()).collect())
                .unwrap_or_default(),
            cookie: cookie.map(|(c, _)| c.to_string()),
            claims_to_headers,
            refresh_interval,
            refetch_cooldown,
            ca,
        })
    }

    /// The algorithms listed, as JWS spells them, if they fit the key source.
    fn algorithms(&mut self, list: &[(&str, &Origin)], at: &Origin, hmac: bool) -> Vec<String> {
        if list.is_empty() {
            self.diags.error_with_help(
                at,
                "`algorithms` is empty",
                "list the JWS algorithms your IdP signs with, e.g. [\"RS256\"]",
            );
        }
        let mut algs = Vec::new();
        for (alg, at) in list {
            if alg.eq_ignore_ascii_case("none") {
                self.diags.error_with_help(
                    at,
                    "algorithm \"none\" is never accepted: it means an unsigned token",
                    "remove it",
                );
                continue;
            }
            let Some(known) = JWT_ALGORITHMS.iter().find(|a| a.eq_ignore_ascii_case(alg)) else {
                self.diags.error_with_help(
                    at,
                    format!("unknown algorithm {alg:?}"),
                    format!("use one of {}", JWT_ALGORITHMS.join(", ")),
                );
                continue;
            };
            if known.starts_with("HS") != hmac {
                let help = if hmac {
                    "a shared secret verifies only HS256, HS384 or HS512"
                } else {
                    "HS* algorithms need secret_env; public keys verify RS*, PS*, ES* and EdDSA"
                };
                self.diags.error_with_help(
                    at,
                    format!("algorithm {known} does not fit this key source"),
                    help,
                );
                continue;
            }
            algs.push(known.to_string());
        }
        algs
    }

    /// (claim, lower-case header) pairs; headers that cannot carry a claim are refused.
    pub(super) fn claims_to_headers(&mut self, table: &Table) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (claim, node) in &table.entries {
            let Value::String(header) = &node.value else {
                self.diags.error(
                    &node.origin,
                    format!(
                        "claims_to_headers.{} must be a header name string",
                        claim.name
                    ),
                );
                continue;
            };
            let lower = header.to_ascii_lowercase();
            let token = !lower.is_empty()
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !token || RESERVED_HEADERS.contains(&lower.as_str()) {
                self.diags.error_with_help(
                    &node.origin,
                    format!("claims_to_headers: {header:?} cannot carry a claim"),
                    "use a header of your own, such as \"X-Auth-Subject\"",
                );
                continue;
            }
            pairs.push((claim.name.clone(), lower));
        }
        pairs
    }
}

pub(super) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::*;

    fn jwt(body: &str) -> String {
        plain(&format!("[auth.idp]\ntype = \"jwt\"\n{body}"))
    }

    fn settings(text: &str, dir: &Dir) -> (JwtSettings, Vec<String>) {
        let loaded = accepted(dir.load(text, &[]), "jwt");
        let AuthKind::Jwt(settings) = &loaded.config.authenticator("idp").unwrap().kind else {
            panic!("idp is jwt");
        };
        (settings.clone(), warning_messages(&loaded.warnings))
    }

    #[test]
    fn key_sources_and_their_default_algorithm() {
        let dir = Dir::new();
        dir.write("idp.pem", "x");
        let cases = [
            (
                "jwks_url = \"https://idp.example.com/certs\"\n",
                JwtKeySource::JwksUrl("https://idp.example.com/certs".to_string()),
                DEFAULT_JWT_ALGORITHM,
            ),
            (
                "issuer = \"https://idp.example.com/realms/x\"\n",
                JwtKeySource::Discovery,
                "RS256",
            ),
            (
                "keys = [\"idp.pem\"]\n",
                JwtKeySource::Files(vec![dir.path().join("idp.pem")]),
                "RS256",
            ),
            (
                "secret_env = \"JWT_SECRET\"\n",
                JwtKeySource::SecretEnv("JWT_SECRET".to_string()),
                DEFAULT_JWT_HMAC_ALGORITHM,
            ),
        ];
        for (body, source, algorithm) in cases {
            let (jwt, _) = settings(&jwt(&format!("{body}audiences = [\"a\"]\n")), &dir);
            assert_eq!(jwt.keys, source, "{body}");
            assert_eq!(jwt.algorithms, [algorithm], "{body}");
            assert_eq!(jwt.leeway, DEFAULT_JWT_LEEWAY);
            assert_eq!(jwt.refresh_interval, DEFAULT_JWKS_REFRESH_INTERVAL);
            assert_eq!(jwt.refetch_cooldown, DEFAULT_JWKS_REFETCH_COOLDOWN);
        }
    }

    #[test]
    fn settings_are_read_and_headers_lower_cased() {
        let dir = Dir::new();
        let (jwt, warnings) = settings(
            &jwt("jwks_url = \"https://idp.example.com/certs\"\naudiences = [\"Domino\"]\nalgorithms = [\"rs256\", \"ES256\"]\nleeway = \"0s\"\nrequired_claims = [\"sub\"]\ncookie = \"KeepToken\"\nclaims_to_headers = { sub = \"X-Auth-Subject\" }\nrefresh_interval = \"10m\"\nrefetch_cooldown = \"1m\"\n"),
            &dir,
        );
        assert_eq!(jwt.audiences, ["Domino"]);
        assert_eq!(jwt.algorithms, ["RS256", "ES256"]);
        assert_eq!(jwt.leeway, Duration::ZERO, "a leeway may be zero");
        assert_eq!(jwt.required_claims, ["sub"]);
        assert_eq!(jwt.cookie.as_deref(), Some("KeepToken"));
        assert_eq!(
            jwt.claims_to_headers,
            [("sub".to_string(), "x-auth-subject".to_string())]
        );
        assert_eq!(jwt.refresh_interval, Duration::from_secs(600));
        assert_eq!(jwt.refetch_cooldown, Duration::from_secs(60));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn no_audiences_is_a_warning() {
        let dir = Dir::new();
        let (_, warnings) = settings(&jwt("jwks_url = \"https://idp.example.com/certs\"\n"), &dir);
        assert_eq!(
            warnings,
            ["[auth.idp] sets no `audiences`, so a token issued for any audience is accepted"]
        );
    }

    #[test]
    fn jwt_problems() {
        run_cases(vec![
            case(
                "jwt without a key source",
                jwt("audiences = [\"Domino\"]\n"),
                "|[auth.idp]",
                "[auth.idp] has no key source",
                Some("jwks_url"),
            ),
            case(
                "jwt with two key sources",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nsecret_env = \"POSTERN_TEST_UNSET\"\n"),
                "|[auth.idp]",
                "more than one key source",
                Some("exactly one of"),
            ),
            case(
                "alg none",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nalgorithms = [\"RS256\", \"none\"]\n"),
                "\"RS256\", |\"none\"",
                "algorithm \"none\" is never accepted",
                Some("remove it"),
            ),
            case(
                "HMAC algorithm with public keys",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nalgorithms = [\"HS256\"]\n"),
                "algorithms = [|\"HS256\"]",
                "algorithm HS256 does not fit this key source",
                Some("HS* algorithms need secret_env"),
            ),
            case(
                "public-key algorithm with a shared secret",
                jwt("secret_env = \"S\"\nalgorithms = [\"RS256\"]\n"),
                "algorithms = [|\"RS256\"]",
                "algorithm RS256 does not fit this key source",
                Some("a shared secret verifies only HS256"),
            ),
            case(
                "unknown algorithm",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nalgorithms = [\"RS257\"]\n"),
                "algorithms = [|\"RS257\"]",
                "unknown algorithm \"RS257\"",
                Some("use one of RS256"),
            ),
            case(
                "empty algorithms",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nalgorithms = []\n"),
                "algorithms = |[]",
                "`algorithms` is empty",
                None,
            ),
            case(
                "jwks_url that is not http(s)",
                jwt("jwks_url = \"ftp://idp.example.com/certs\"\n"),
                "jwks_url = |\"ftp:",
                "is not an http:// or https:// URL",
                None,
            ),
            case(
                "issuer to discover that is not a URL",
                jwt("issuer = \"my-idp\"\n"),
                "issuer = |\"my-idp\"",
                "issuer \"my-idp\" is not an http(s) URL, so its keys cannot be discovered",
                Some("set jwks_url"),
            ),
            case(
                "claim copied into Authorization",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nclaims_to_headers = { sub = \"Authorization\" }\n"),
                "sub = |\"Authorization\"",
                "cannot carry a claim",
                Some("X-Auth-Subject"),
            ),
            case(
                "claim copied into a header that is not a token",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nclaims_to_headers = { sub = \"X Subject\" }\n"),
                "sub = |\"X Subject\"",
                "claims_to_headers: \"X Subject\" cannot carry a claim",
                None,
            ),
            case(
                "missing static key file",
                jwt("keys = [\"nope.pem\"]\n"),
                "keys = [|\"nope.pem\"]",
                "nope.pem",
                None,
            ),
            case(
                "ca with static keys",
                jwt("keys = [\"idp.pem\"]\nca = \"ca.pem\"\n"),
                "ca = |\"ca.pem\"",
                "`ca` is only used to fetch keys from jwks_url or the issuer",
                Some("remove `ca`"),
            )
            .with_files(&["idp.pem", "ca.pem"]),
            case(
                "refresh_interval of zero",
                jwt("jwks_url = \"https://idp.example.com/certs\"\nrefresh_interval = \"0s\"\n"),
                "refresh_interval = |\"0s\"",
                "`refresh_interval` must be longer than zero",
                None,
            ),
        ]);
    }
}
