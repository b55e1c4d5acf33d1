//! A raw HTTP/1.1 client over TLS or plain TCP that sends request bytes
//! exactly as written, and the response it reads.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long one request (connect, send, whole response) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET target` for `host`, closing the connection after the response.
pub fn get(host: &str, target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// A request with extra header lines and a body (Content-Length is added
/// when the body is not empty), closing the connection after the response.
pub fn request(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One HTTP/1.1 response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// In arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} body is not JSON ({e}): {:?}\nheaders: {:?}",
                self.status,
                self.text(),
                self.headers
            )
        })
    }

    /// The upstream's echo JSON: asserts a 200 from the echo backend.
    pub fn echo(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected the upstream's 200, got {}: {}",
            self.status,
            self.text()
        );
        let echo = self.json();
        assert!(
            echo.get("backend").is_some(),
            "not an echo response: {echo}"
        );
        echo
    }
}

/// Asserts a response is the gateway's own JSON error with this status, error
/// name and route, and that its request id matches the `x-request-id` header.
pub fn assert_gateway_error(response: &Response, status: u16, error: &str, route: Option<&str>) {
    assert_eq!(
        response.status,
        status,
        "expected {status} {error}, got {} {}\nheaders: {:?}",
        response.status,
        response.text(),
        response.headers
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "error content-type is {content_type:?}"
    );
    let body = response.json();
    assert_eq!(body["status"], Value::from(status), "body: {body}");
    assert_eq!(body["error"], Value::from(error), "body: {body}");
    assert_eq!(
        body["route"],
        route.map_or(Value::Null, Value::from),
        "body: {body}"
    );
    let id = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request_id in {body}"));
    assert!(!id.is_empty(), "empty request_id in {body}");
    assert_eq!(
        response.header("x-request-id"),
        Some(id),
        "x-request-id header differs from the body's request_id"
    );
}

/// An HTTP/1.1 connection that keeps bytes read past one response for the next.
pub struct HttpConn<S> {
    pub stream: S,
    pub(super) buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> HttpConn<S> {
    pub fn new(stream: S) -> Self {
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `raw` exactly as given and reads one response (with a timeout).
    pub async fn send(&mut self, raw: &[u8]) -> io::Result<Response> {
        let head_request = raw.starts_with(b"HEAD ");
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.stream.write_all(raw).await?;
            self.stream.flush().await?;
            self.read_response(head_request).await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))?
    }

    /// Reads one response (e.g. after writing a request in pieces).
    pub async fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut parsed_headers);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (status, headers, len);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill().await? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "connection closed before a complete response head (got {:?})",
                                String::from_utf8_lossy(&self.buf)
                            ),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "unparsable response ({e}): {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
            }
        };
        self.buf.drain(..head_len);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if head_request || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            self.read_chunked().await?
        } else if let Some(length) = find("content-length") {
            let length: usize = length
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
            self.read_exact_body(length).await?
        } else {
            while self.fill().await? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut chunk).await {
            Ok(n) => n,
            // A peer that closes TLS without close_notify is still a close.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn read_exact_body(&mut self, length: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < length {
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {} of {length} bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..length).collect())
    }

    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
        }
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size).await?);
            self.read_line().await?;
        }
    }
}
