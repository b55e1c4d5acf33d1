//! `[auth.NAME] type = "introspection"`: opaque (or any) bearer tokens,
//! asked about at the IdP's RFC 7662 endpoint.

use super::jwt::is_http_url;
use super::Reader;
use crate::diag::Origin;
use crate::fields::Fields;
use crate::model::*;
use crate::tree::Table;

pub const INTROSPECTION_KEYS: &[&str] = &[
    "type",
    "introspection_url",
    "client_id",
    "client_secret_env",
    "audiences",
    "issuer",
    "cache_ttl",
    "ca",
];

impl Reader<'_> {
    pub(super) fn introspection(
        &mut self,
        t: &Table,
        section: &str,
        origin: &Origin,
    ) -> Option<IntrospectionSettings> {
        let mut f = Fields::new(t, section.to_string(), INTROSPECTION_KEYS);
        let _ = f.string("type", self.diags);
        let url = f.required_string(
            "introspection_url",
            origin,
            "introspection_url = \"https://idp.example.com/realms/iams/protocol/openid-connect/token/introspect\"",
            self.diags,
        );
        let client_id =
            f.required_string("client_id", origin, "client_id = \"postern\"", self.diags);
        let secret_env = f.required_string(
            "client_secret_env",
            origin,
            "client_secret_env = \"POSTERN_INTROSPECTION_SECRET\"",
            self.diags,
        );
        let audiences = f.strings("audiences", self.diags);
        let issuer = f.string("issuer", self.diags);
        let cache_ttl = f.tolerance("cache_ttl", DEFAULT_INTROSPECTION_CACHE_TTL, self.diags);
        let ca = f.string("ca", self.diags);
        f.finish(self.diags);

        let ca = ca.and_then(|(path, at)| self.existing_file(path, at, "ca"));
        let (url, url_at) = url?;
        if !is_http_url(url) {
            self.diags.error_with_help(
                url_at,
                format!("introspection_url {url:?} is not an http:// or https:// URL"),
                "write e.g. \"https://idp.example.com/realms/iams/protocol/openid-connect/token/introspect\"",
            );
        }
        let (client_id, id_at) = client_id?;
        if client_id.is_empty() {
            self.diags.error(
                id_at,
                "client_id is empty: the IdP needs the gateway's client id",
            );
        }
        let (secret_env, _) = secret_env?;
        Some(IntrospectionSettings {
            url: url.to_string(),
            client_id: client_id.to_string(),
            client_secret_env: secret_env.to_string(),
            audiences: audiences
                .map(|(a, _)| a.iter().map(|(s, _)| s.to_string()).collect())
                .unwrap_or_default(),
            issuer: issuer.map(|(i, _)| i.to_string()),
            cache_ttl,
            ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::*;
    use crate::testing::*;

    const FULL: &str = "[auth.opaque]\ntype = \"introspection\"\nintrospection_url = \"http://127.0.0.1:9/introspect\"\nclient_id = \"postern\"\nclient_secret_env = \"SECRET\"\naudiences = [\"Domino\"]\nissuer = \"http://idp\"\ncache_ttl = \"30s\"\n";

    #[test]
    fn introspection_settings_are_read() {
        let dir = Dir::new();
        let config = accepted(
            dir.load(&plain(FULL), &[]),
            "an introspection authenticator",
        )
        .config;
        let AuthKind::Introspection(s) = &config.authenticator("opaque").expect("defined").kind
        else {
            panic!("not introspection");
        };
        assert_eq!(s.url, "http://127.0.0.1:9/introspect");
        assert_eq!(s.client_id, "postern");
        assert_eq!(s.client_secret_env, "SECRET");
        assert_eq!(s.audiences, ["Domino"]);
        assert_eq!(s.issuer.as_deref(), Some("http://idp"));
        assert_eq!(s.cache_ttl, Duration::from_secs(30));
        assert!(s.ca.is_none());
        let short = "[auth.opaque]\ntype = \"introspection\"\nintrospection_url = \"http://127.0.0.1:9/introspect\"\nclient_id = \"postern\"\nclient_secret_env = \"SECRET\"\n";
        let config = accepted(dir.load(&plain(short), &[]), "defaults").config;
        let AuthKind::Introspection(s) = &config.authenticator("opaque").expect("defined").kind
        else {
            panic!("not introspection");
        };
        assert_eq!(s.cache_ttl, DEFAULT_INTROSPECTION_CACHE_TTL);
        assert!(s.audiences.is_empty() && s.issuer.is_none());
    }

    #[test]
    fn introspection_problems() {
        run_cases(vec![
            case(
                "introspection without a url",
                plain("[auth.opaque]\ntype = \"introspection\"\nclient_id = \"p\"\nclient_secret_env = \"S\"\n"),
                "|[auth.opaque]",
                "[auth.opaque] needs `introspection_url`",
                Some("token/introspect"),
            ),
            case(
                "introspection without a secret",
                plain("[auth.opaque]\ntype = \"introspection\"\nintrospection_url = \"http://x/i\"\nclient_id = \"p\"\n"),
                "|[auth.opaque]",
                "[auth.opaque] needs `client_secret_env`",
                Some("POSTERN_INTROSPECTION_SECRET"),
            ),
            case(
                "introspection url that is no URL",
                plain("[auth.opaque]\ntype = \"introspection\"\nintrospection_url = \"idp/introspect\"\nclient_id = \"p\"\nclient_secret_env = \"S\"\n"),
                "introspection_url = |\"idp/introspect\"",
                "introspection_url \"idp/introspect\" is not an http:// or https:// URL",
                Some("token/introspect"),
            ),
            case(
                "introspection with a jwt key",
                plain("[auth.opaque]\ntype = \"introspection\"\nintrospection_url = \"http://x/i\"\nclient_id = \"p\"\nclient_secret_env = \"S\"\njwks_url = \"http://x/certs\"\n"),
                "jwks_url",
                "unknown key `jwks_url` in [auth.opaque]",
                None,
            ),
        ]);
    }
}
