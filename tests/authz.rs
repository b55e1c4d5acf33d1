//! Authorization beyond authentication, end to end: the real `postern`
//! binary, real TLS, and a real OpenID provider (`oidc-provider`, run by
//! `support::oidc`) that issues the tokens and answers token introspection.
//!
//! * `require`: JWT access tokens from the provider (keys found through its
//!   discovery document), with `scope` as a string, `scp` as an array, and
//!   Keycloak-style nested `realm_access` / `resource_access` roles.
//! * `auth = [...]`: every authenticator must pass; the first refusal answers.
//! * `type = "introspection"`: opaque tokens judged at the provider's RFC 7662
//!   endpoint; calls are counted at the provider.
//!
//! Every refusal is checked for its status, JSON body and challenge, and for
//! an upstream that received nothing.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use postern_echo::EchoServer;

use crate::support::oidc::{
    OidcProvider, ADMIN_APP, APP, DOMINO_JWT, DOMINO_OPAQUE, INTROSPECTION_CLIENT, MAIL_OPAQUE,
};
use crate::support::prometheus::{samples, value};
use crate::support::{assert_gateway_error, echo, request, upstream, Gateway, Response};

const HOST: &str = "api.example.com";
const SECRET_ENV: &str = "POSTERN_TEST_INTROSPECTION_SECRET";

/// The provider, an echo upstream and a gateway with these routes:
///
/// | route | path | auth | require |
/// |---|---|---|---|
/// | setup | /api/setup-v1 | idp | scope $SETUP |
/// | scp | /scp | idp | scp (array) $SETUP, MAIL |
/// | admin | /admin | idp | realm_access.roles admin, resource_access.domino.roles ops |
/// | chain | /chain | idp, mail (jwt for aud "Mail") | — |
/// | both | /both | idp, client (jwt, client_id to a header) | scope MAIL |
/// | opaque | /opaque | opaque (introspection, aud "Domino") | — |
/// | opaque-setup | /opaque-setup | opaque | scope $SETUP |
struct Env {
    idp: OidcProvider,
    data: EchoServer,
    gw: Gateway,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(OidcProvider::start().await).await
    }

    async fn start_with(idp: OidcProvider) -> Env {
        let data = echo("data").await;
        let issuer = idp.issuer();
        let body = format!(
            r#"{upstream}
[auth.idp]
type = "jwt"
issuer = "{issuer}"
audiences = ["Domino"]
claims_to_headers = {{ sub = "X-Auth-Subject" }}

[auth.mail]
type = "jwt"
issuer = "{issuer}"
audiences = ["Mail"]

[auth.client]
type = "jwt"
issuer = "{issuer}"
audiences = ["Domino"]
claims_to_headers = {{ client_id = "X-Auth-Client" }}

[auth.opaque]
type = "introspection"
introspection_url = "{introspection}"
client_id = "{client_id}"
client_secret_env = "{SECRET_ENV}"
audiences = ["Domino"]
issuer = "{issuer}"
cache_ttl = "60s"

[[routes]]
name = "setup"
host = "{HOST}"
path_prefix = "/api/setup-v1"
upstream = "data"
auth = "idp"
require = {{ scope = ["$SETUP"] }}

[[routes]]
name = "scp"
host = "{HOST}"
path_prefix = "/scp"
upstream = "data"
auth = "idp"
require = {{ scp = ["$SETUP", "MAIL"] }}

[[routes]]
name = "admin"
host = "{HOST}"
path_prefix = "/admin"
upstream = "data"
auth = "idp"
require = {{ "realm_access.roles" = ["admin"], "resource_access.domino.roles" = ["ops"] }}

[[routes]]
name = "chain"
host = "{HOST}"
path_prefix = "/chain"
upstream = "data"
auth = ["idp", "mail"]

[[routes]]
name = "both"
host = "{HOST}"
path_prefix = "/both"
upstream = "data"
auth = ["idp", "client"]
require = {{ scope = ["MAIL"] }}

[[routes]]
name = "opaque"
host = "{HOST}"
path_prefix = "/opaque"
upstream = "data"
auth = "opaque"

[[routes]]
name = "opaque-setup"
host = "{HOST}"
path_prefix = "/opaque-setup"
upstream = "data"
auth = "opaque"
require = {{ scope = ["$SETUP"] }}

[[routes]]
name = "metrics"
path_prefix = "/metrics"
service = "metrics"
listeners = ["ops"]
allow = ["loopback"]

[[routes]]
name = "postern-admin"
path_prefix = "/_postern"
service = "admin"
listeners = ["ops"]
allow = ["loopback"]
"#,
            upstream = upstream("data", data.local_addr(), ""),
            introspection = idp.introspection_url(),
            client_id = INTROSPECTION_CLIENT.0,
        );
        let gw = Gateway::builder(body)
            .env(SECRET_ENV, INTROSPECTION_CLIENT.1)
            .start()
            .await;
        Env { idp, data, gw }
    }

    async fn bearer(&self, target: &str, token: &str) -> Response {
        let value = format!("Bearer {token}");
        self.gw
            .send(
                HOST,
                request("GET", HOST, target, &[("Authorization", &value)], b""),
            )
            .await
    }

    /// The request must reach the upstream: returns what it saw.
    async fn passes(&self, case: &str, target: &str, token: &str) -> serde_json::Value {
        let before = self.data.requests_seen();
        let response = self.bearer(target, token).await;
        assert_eq!(
            response.status,
            200,
            "{case}: expected the upstream's 200, got {} {}\nheaders: {:?}\nprovider:\n{}",
            response.status,
            response.text(),
            response.headers,
            self.idp.output()
        );
        assert_eq!(
            self.data.requests_seen(),
            before + 1,
            "{case}: upstream count"
        );
        response.echo()
    }

    /// The request must be refused with `status` and reach nothing: returns
    /// the `WWW-Authenticate` value.
    async fn refused(
        &self,
        case: &str,
        target: &str,
        token: &str,
        status: u16,
        route: &str,
    ) -> String {
        let before = self.data.requests_seen();
        let response = self.bearer(target, token).await;
        assert_eq!(
            response.status,
            status,
            "{case}: expected {status}, got {} {}",
            response.status,
            response.text()
        );
        let error = if status == 403 {
            "forbidden"
        } else {
            "unauthorized"
        };
        assert_gateway_error(&response, status, error, Some(route));
        assert_eq!(
            self.data.requests_seen(),
            before,
            "{case}: a refused request reached the upstream"
        );
        response
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"))
            .to_string()
    }

    async fn decisions(&self, route: &str, result: &str, reason: &str) -> f64 {
        let text = self
            .gw
            .send_plain(
                self.gw.plain_port,
                "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .text();
        let labels = [("route", route), ("result", result), ("reason", reason)];
        value(&samples(&text), "postern_auth_decisions_total", &labels).unwrap_or(0.0)
    }
}

#[tokio::test]
async fn a_token_with_the_scope_passes_and_one_without_gets_403_insufficient_scope() {
    let env = Env::start().await;
    let with = env.idp.token(APP, "MAIL $DATA $SETUP", DOMINO_JWT).await;
    let echo = env
        .passes("token with $SETUP", "/api/setup-v1/x", &with)
        .await;
    assert_eq!(echo["path"], "/api/setup-v1/x");
    let without = env.idp.token(APP, "MAIL $DATA", DOMINO_JWT).await;
    for round in ["first", "again, from the cache"] {
        let challenge = env
            .refused(round, "/api/setup-v1/x", &without, 403, "setup")
            .await;
        assert_eq!(
            challenge,
            "Bearer realm=\"idp\", error=\"insufficient_scope\", scope=\"$SETUP\""
        );
    }
    // Its own reason in the decisions counter, beside the passes.
    let denied = env.decisions("setup", "deny", "insufficient scope").await;
    assert_eq!(denied, 2.0);
}

#[tokio::test]
async fn nested_role_claims_are_required() {
    let env = Env::start().await;
    let admin = env.idp.token(ADMIN_APP, "MAIL", DOMINO_JWT).await;
    env.passes("realm admin with domino ops", "/admin/users", &admin)
        .await;
    let user = env.idp.token(APP, "MAIL", DOMINO_JWT).await;
    let challenge = env
        .refused("realm role user only", "/admin/users", &user, 403, "admin")
        .await;
    assert_eq!(
        challenge, "Bearer realm=\"idp\", error=\"insufficient_scope\"",
        "no scope attribute when only roles are required"
    );
}

#[tokio::test]
async fn scope_is_found_as_an_array_and_as_a_space_separated_string() {
    let env = Env::start().await;
    // The provider puts the scopes in `scope` as a string and in `scp` as an array.
    let token = env.idp.token(APP, "$SETUP MAIL", DOMINO_JWT).await;
    env.passes("scope string", "/api/setup-v1/x", &token).await;
    env.passes("scp array", "/scp/x", &token).await;
    let short = env.idp.token(APP, "MAIL", DOMINO_JWT).await;
    env.refused(
        "scope string lacks $SETUP",
        "/api/setup-v1/x",
        &short,
        403,
        "setup",
    )
    .await;
    let challenge = env
        .refused("scp array lacks $SETUP", "/scp/x", &short, 403, "scp")
        .await;
    assert_eq!(
        challenge,
        "Bearer realm=\"idp\", error=\"insufficient_scope\", scope=\"$SETUP MAIL\""
    );
}

#[tokio::test]
async fn every_authenticator_of_a_chain_must_pass_and_the_first_refusal_answers() {
    let env = Env::start().await;
    let token = env.idp.token(APP, "MAIL", DOMINO_JWT).await;
    // idp passes (aud Domino), mail refuses (it wants aud Mail).
    let challenge = env
        .refused("second refuses", "/chain/x", &token, 401, "chain")
        .await;
    assert!(
        challenge.starts_with("Bearer realm=\"mail\", error=\"invalid_token\""),
        "the second authenticator's challenge: {challenge}"
    );
    // Both pass: the identity headers of both go upstream, client copies do not.
    let before = env.data.requests_seen();
    let value = format!("Bearer {token}");
    let response = env
        .gw
        .send(
            HOST,
            request(
                "GET",
                HOST,
                "/both/x",
                &[("Authorization", &value), ("X-Auth-Client", "forged")],
                b"",
            ),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.data.requests_seen(), before + 1);
    let echo = response.echo();
    let headers = &echo["headers"];
    assert_eq!(
        crate::support::upstream_header(&echo, "x-auth-subject"),
        ["app"],
        "{headers}"
    );
    assert_eq!(
        crate::support::upstream_header(&echo, "x-auth-client"),
        ["app"],
        "{headers}"
    );
    // A chain's `require` still holds.
    let no_mail = env.idp.token(APP, "$DATA", DOMINO_JWT).await;
    env.refused("chain without MAIL", "/both/x", &no_mail, 403, "both")
        .await;
}

#[tokio::test]
async fn introspection_passes_active_tokens_and_refuses_inactive_and_foreign_ones() {
    let env = Env::start().await;
    let active = env.idp.token(APP, "MAIL $SETUP", DOMINO_OPAQUE).await;
    assert!(!active.contains('.'), "an opaque token: {active}");
    env.passes("active", "/opaque/x", &active).await;
    env.passes("active, cached", "/opaque/x", &active).await;
    env.passes("active, with $SETUP", "/opaque-setup/x", &active)
        .await;
    assert_eq!(
        env.idp.introspections().await,
        1,
        "one call, then the cache"
    );

    let inactive = "bm90IGEgdG9rZW4gdGhlIHByb3ZpZGVyIGlzc3VlZA";
    let challenge = env
        .refused("inactive", "/opaque/x", inactive, 401, "opaque")
        .await;
    assert_eq!(
        challenge,
        "Bearer realm=\"opaque\", error=\"invalid_token\", error_description=\"token inactive\""
    );
    let mail = env.idp.token(APP, "MAIL", MAIL_OPAQUE).await;
    let challenge = env
        .refused("audience Mail", "/opaque/x", &mail, 401, "opaque")
        .await;
    assert!(challenge.contains("wrong audience"), "{challenge}");
    let no_setup = env.idp.token(APP, "MAIL", DOMINO_OPAQUE).await;
    env.refused(
        "active, no $SETUP",
        "/opaque-setup/x",
        &no_setup,
        403,
        "opaque-setup",
    )
    .await;
    assert_eq!(env.decisions("opaque", "deny", "token inactive").await, 1.0);

    // /config names the secret's variable, never the secret.
    let config = env
        .gw
        .send_plain(
            env.gw.plain_port,
            "GET /_postern/config HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(config.status, 200, "{}", config.text());
    let text = config.text();
    assert!(
        !text.contains(INTROSPECTION_CLIENT.1),
        "the secret is shown: {text}"
    );
    let opaque = config.json()["auth"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "opaque").cloned())
        .expect("[auth.opaque] in /config");
    assert_eq!(opaque["client_secret_env"], SECRET_ENV, "{opaque}");
    assert_eq!(opaque["client_secret"], "***", "{opaque}");
    let log = format!("{}{}", env.gw.stdout(), env.gw.stderr());
    assert!(
        !log.contains(INTROSPECTION_CLIENT.1),
        "the secret is logged"
    );
    assert!(!log.contains(&active), "a token is logged");
}

#[tokio::test]
async fn with_the_idp_stopped_cached_tokens_pass_and_unknown_ones_are_refused() {
    let mut env = Env::start().await;
    let cached = env.idp.token(APP, "MAIL", DOMINO_OPAQUE).await;
    let unknown = env.idp.token(APP, "MAIL", DOMINO_OPAQUE).await;
    env.passes("before the stop", "/opaque/x", &cached).await;
    env.idp.stop();
    env.passes("cached, IdP down", "/opaque/x", &cached).await;
    let challenge = env
        .refused("uncached, IdP down", "/opaque/x", &unknown, 401, "opaque")
        .await;
    assert!(
        challenge.contains("token could not be checked"),
        "{challenge}"
    );
    let log = format!("{}{}", env.gw.stdout(), env.gw.stderr());
    assert!(
        log.contains("[auth.opaque]: introspection at") && !log.contains(&unknown),
        "the failure is logged, the token never:\n{log}"
    );
}

#[tokio::test]
async fn one_introspection_call_serves_100_concurrent_requests_with_one_token() {
    let idp = OidcProvider::start_with_delay(Duration::from_millis(700)).await;
    let env = Env::start_with(idp).await;
    let token = env.idp.token(APP, "MAIL", DOMINO_OPAQUE).await;
    let before = env.data.requests_seen();
    let statuses: Vec<u16> = stream::iter(0..100)
        .map(|_| {
            let token = token.clone();
            let env = &env;
            async move { env.bearer("/opaque/x", &token).await.status }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(env.data.requests_seen(), before + 100);
    assert_eq!(env.idp.introspections().await, 1, "{}", env.idp.output());
}
