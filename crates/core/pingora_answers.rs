//! Pingora answers a few HTTP/1 requests itself before any `ProxyHttp` hook
//! runs: a request head it cannot parse or whose framing it refuses (an
//! invalid or negative Content-Length, a Transfer-Encoding that does not end
//! in chunked, Transfer-Encoding on HTTP/1.0, ...) gets an empty 400 with
//! `Server: Pingora` (pingora-proxy 0.9.1 `lib.rs` `handle_new_request`,
//! `respond_error(400)` at line 356, built by pingora-core
//! `protocols/http/error_resp.rs` `gen_error_response`). No hook can
//! change it, so `client_timeouts::ClientStream` watches what is written to
//! an HTTP/1 client while a request head is still being read (no hook has
//! seen the request yet): a response head that names Pingora as its
//! `Server` there is such an answer, and [`reshape`] gives the gateway's
//! own JSON answer to send instead.

use http::HeaderValue;
use pingora::http::ResponseHeader;

use crate::response::{explained_response, ErrorKind};
use crate::response_headers::ResponseEdits;

/// The answer to send instead of `written`, when `written` starts with the
/// head of an answer Pingora made itself; `None` for anything else.
pub fn reshape(written: &[u8], hsts: Option<&HeaderValue>) -> Option<(ErrorKind, Vec<u8>)> {
    let status = pingora_status(written)?;
    let kind = ErrorKind::for_status(status);
    let mut id = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().simple().encode_lower(&mut id);
    let (mut header, body) = explained_response(kind, None, id, None).ok()?;
    let edits = ResponseEdits { hsts, route: None };
    edits.apply_to_own(&mut header).ok()?;
    header
        .insert_header(http::header::CONNECTION, "close")
        .ok()?;
    let mut wire = to_wire(&header);
    wire.extend_from_slice(&body);
    Some((kind, wire))
}

/// The status of a response head in `written` that Pingora made itself.
fn pingora_status(written: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    // Pingora writes a head in one piece; anything else is not its answer.
    let httparse::Status::Complete(_) = response.parse(written).ok()? else {
        return None;
    };
    let by_pingora = response
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("server") && h.value.eq_ignore_ascii_case(b"pingora"));
    let status = response.code?;
    (by_pingora && status >= 400).then_some(status)
}

fn to_wire(header: &ResponseHeader) -> Vec<u8> {
    let mut wire = format!(
        "HTTP/1.1 {} {}\r\n",
        header.status.as_u16(),
        header.status.canonical_reason().unwrap_or("Error")
    )
    .into_bytes();
    for (name, value) in &header.headers {
        wire.extend_from_slice(name.as_str().as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINGORA_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";

    fn parse(wire: &[u8]) -> (u16, Vec<(String, String)>, serde_json::Value) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(wire).unwrap() else {
            panic!("incomplete head");
        };
        let headers = response
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        let body = serde_json::from_slice(&wire[len..]).unwrap();
        (response.code.unwrap(), headers, body)
    }

    #[test]
    fn pingoras_400_becomes_the_gateways_json_answer() {
        let hsts = HeaderValue::from_static("max-age=1");
        let (kind, wire) = reshape(PINGORA_400, Some(&hsts)).expect("reshaped");
        assert_eq!(kind, ErrorKind::BadRequest);
        let (status, headers, body) = parse(&wire);
        assert_eq!(status, 400);
        assert_eq!(body["error"], "bad_request");
        assert_eq!(body["route"], serde_json::Value::Null);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("server"), None);
        assert_eq!(header("x-content-type-options"), Some("nosniff"));
        assert_eq!(header("cache-control"), Some("no-store"));
        assert_eq!(header("strict-transport-security"), Some("max-age=1"));
        assert_eq!(header("connection"), Some("close"));
        assert_eq!(header("x-request-id"), body["request_id"].as_str());
        let length: usize = header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, body.to_string().len());
    }

    #[test]
    fn other_writes_are_left_alone() {
        for written in [
            &b"HTTP/1.1 200 OK\r\nServer: Pingora\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\nServer: echo\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\n",
            b"{\"status\":400}",
            b"",
        ] {
            assert!(
                reshape(written, None).is_none(),
                "{:?}",
                String::from_utf8_lossy(written)
            );
        }
    }
}
