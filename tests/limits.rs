//! Request size limits: an oversized request is answered by the gateway
//! (413, 414, 431) and never reaches the upstream.

use crate::support::{assert_gateway_error, echo, get, request, upstream, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_before_the_upstream() {
    let data = echo("data").await;
    // The generated config has its own [gateway]; the limit comes by override.
    let gw = Gateway::builder(format!(
        "{}\n\
         [[routes]]\nname = \"upload\"\npath_prefix = \"/upload\"\nupstream = \"data\"\nmax_body_size = \"1KB\"\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"data\"\n",
        upstream("data", data.local_addr(), "")
    ))
    .env("POSTERN_GATEWAY__MAX_HEADER_SIZE", "8KB")
    .start()
    .await;

    // Within the limit: forwarded.
    let small = gw
        .send(
            "api.example.com",
            request("POST", "api.example.com", "/upload/x", &[], &[b'a'; 1024]),
        )
        .await;
    assert_eq!(small.status, 200);
    assert_eq!(data.requests_seen(), 1);

    let declared = gw
        .send(
            "api.example.com",
            request("POST", "api.example.com", "/upload/x", &[], &[b'a'; 1025]),
        )
        .await;
    assert_gateway_error(&declared, 413, "payload_too_large", Some("upload"));
    assert_eq!(
        data.requests_seen(),
        1,
        "a declared oversize body is never forwarded"
    );

    // A chunked body declares nothing: it is counted as it streams.
    let chunk = "a".repeat(600);
    let chunked = format!(
        "POST /upload/x HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let streamed = gw.send("api.example.com", chunked).await;
    assert_gateway_error(&streamed, 413, "payload_too_large", Some("upload"));

    // Other routes have no body limit here.
    let big = gw
        .send(
            "api.example.com",
            request("POST", "api.example.com", "/api/x", &[], &[b'a'; 64 * 1024]),
        )
        .await;
    assert_eq!(big.status, 200);

    let seen = data.requests_seen();
    let huge_header = "b".repeat(9 * 1024);
    let headers = gw
        .send(
            "api.example.com",
            request(
                "GET",
                "api.example.com",
                "/api/x",
                &[("X-Big", &huge_header)],
                b"",
            ),
        )
        .await;
    assert_gateway_error(&headers, 431, "request_header_fields_too_large", None);

    let long_target = format!("/api/{}", "c".repeat(9 * 1024));
    let uri = gw
        .send("api.example.com", get("api.example.com", &long_target))
        .await;
    assert_gateway_error(&uri, 414, "uri_too_long", None);
    assert_eq!(
        data.requests_seen(),
        seen,
        "nothing oversized was forwarded"
    );
}
