//! Headers the gateway puts on responses: Strict-Transport-Security on the
//! TLS listener, a route's `response_headers` and `remove_response_headers`
//! on upstream and gateway-made answers alike, and `nosniff` / `no-store`
//! on everything the gateway writes itself.

use crate::support::{assert_gateway_error, echo, get, upstream, Gateway, Response};

const HSTS: &str = "strict-transport-security";

/// `api` forwards to the echo backend; `closed` refuses.
fn routes(data: std::net::SocketAddr, api_extra: &str, closed_extra: &str) -> String {
    format!(
        "{}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"data\"\n{api_extra}\n\n\
         [[routes]]\nname = \"closed\"\npath_prefix = \"/closed\"\ndeny = true\n{closed_extra}\n",
        upstream("data", data, "")
    )
}

fn assert_own_answer_headers(response: &Response) {
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{:?}",
        response.headers
    );
    assert_eq!(response.header_all("cache-control"), ["no-store"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_on_every_tls_response_and_never_on_plain_listeners() {
    let data = echo("data").await;
    let gw = Gateway::start(routes(data.local_addr(), "", "")).await;

    let forwarded = gw.get("api.example.com", "/api/x").await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(forwarded.header_all(HSTS), ["max-age=31536000"]);
    let unrouted = gw.get("api.example.com", "/nowhere").await;
    assert_gateway_error(&unrouted, 404, "not_found", None);
    assert_eq!(unrouted.header_all(HSTS), ["max-age=31536000"]);
    let refused = gw.get("api.example.com", "/closed").await;
    assert_gateway_error(&refused, 403, "forbidden", Some("closed"));
    assert_eq!(refused.header_all(HSTS), ["max-age=31536000"]);

    let plain = gw
        .send_plain(gw.plain_port, get("api.example.com", "/api/x"))
        .await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header(HSTS), None, "{:?}", plain.headers);
    let plain_error = gw
        .send_plain(gw.plain_port, get("api.example.com", "/closed"))
        .await;
    assert_eq!(plain_error.status, 403);
    assert_eq!(plain_error.header(HSTS), None);
    let redirect = gw
        .send_plain(gw.redirect_port, get("api.example.com", "/api/x"))
        .await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header(HSTS), None);
    assert_own_answer_headers(&redirect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_configurable_and_empty_turns_it_off() {
    let data = echo("data").await;
    let custom = Gateway::builder(routes(data.local_addr(), "", ""))
        .hsts("max-age=600; includeSubDomains")
        .start()
        .await;
    let response = custom.get("api.example.com", "/api/x").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header_all(HSTS),
        ["max-age=600; includeSubDomains"]
    );

    let off = Gateway::builder(routes(data.local_addr(), "", ""))
        .hsts("")
        .start()
        .await;
    let forwarded = off.get("api.example.com", "/api/x").await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(forwarded.header(HSTS), None, "{:?}", forwarded.headers);
    let unrouted = off.get("api.example.com", "/nowhere").await;
    assert_gateway_error(&unrouted, 404, "not_found", None);
    assert_eq!(unrouted.header(HSTS), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_sets_and_removes_headers_on_upstream_and_own_answers() {
    let data = echo("data").await;
    let set =
        "response_headers = { \"X-Frame-Options\" = \"DENY\", \"Content-Type\" = \"text/plain\" }";
    let gw = Gateway::start(routes(
        data.local_addr(),
        set,
        "response_headers = { \"X-Frame-Options\" = \"DENY\" }\nremove_response_headers = [\"Cache-Control\"]",
    ))
    .await;

    let forwarded = gw.get("api.example.com", "/api/x").await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(forwarded.header_all("x-frame-options"), ["DENY"]);
    assert_eq!(
        forwarded.header_all("content-type"),
        ["text/plain"],
        "replaces the echo's application/json"
    );
    assert_eq!(forwarded.header("x-content-type-options"), None);

    let refused = gw.get("api.example.com", "/closed").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "forbidden");
    assert_eq!(refused.header_all("x-frame-options"), ["DENY"]);
    assert_eq!(
        refused.header("cache-control"),
        None,
        "removed by the route"
    );
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_removes_upstream_headers() {
    let data = echo("data").await;
    let gw = Gateway::start(routes(
        data.local_addr(),
        "remove_response_headers = [\"Content-Type\", \"X-Request-Id\"]",
        "",
    ))
    .await;
    let forwarded = gw.get("api.example.com", "/api/x").await;
    assert_eq!(forwarded.status, 200);
    assert_eq!(
        forwarded.header("content-type"),
        None,
        "{:?}",
        forwarded.headers
    );
    assert_eq!(forwarded.header("x-request-id"), None);
    assert_eq!(forwarded.echo()["path"], "/api/x", "the body still arrives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_neither_sniffed_nor_cached() {
    let data = echo("data").await;
    let gw = Gateway::start(routes(data.local_addr(), "", "")).await;
    let unrouted = gw.get("api.example.com", "/nowhere").await;
    assert_gateway_error(&unrouted, 404, "not_found", None);
    assert_own_answer_headers(&unrouted);
    let refused = gw.get("api.example.com", "/closed").await;
    assert_gateway_error(&refused, 403, "forbidden", Some("closed"));
    assert_own_answer_headers(&refused);
    let plain = gw
        .send_plain(gw.plain_port, get("api.example.com", "/closed"))
        .await;
    assert_gateway_error(&plain, 403, "forbidden", Some("closed"));
    assert_own_answer_headers(&plain);

    drop(data);
    let down = gw.get("api.example.com", "/api/x").await;
    assert_eq!(down.status / 100, 5, "{}", down.text());
    assert_eq!(down.json()["status"], down.status);
    assert_own_answer_headers(&down);
}
