//! Just enough HTTP/2 to send requests and raw frames over a TLS connection
//! that negotiated h2.

use std::io;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::http1::REQUEST_TIMEOUT;
use super::tls_client::TlsConn;

/// One HTTP/2 response: the raw HPACK block of its HEADERS and its DATA.
///
/// The header block is not decoded (there is no HPACK decoder here, and the
/// status may be a dynamic-table reference); gateway errors and the echo
/// backend both put everything a test needs, status included, in the body.
#[derive(Debug, Clone)]
pub struct H2Response {
    pub header_block: Vec<u8>,
    pub body: Vec<u8>,
}

impl H2Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP/2 response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Just enough HTTP/2 (RFC 9113) to send header-only requests on one
/// connection and read each response's body: HPACK literals without
/// indexing or Huffman coding, SETTINGS and PING acknowledged, no flow
/// control beyond the default 64 KiB windows.
pub struct H2Conn {
    conn: TlsConn,
    next_stream: u32,
}

const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_SETTINGS: u8 = 0x4;
const H2_PING: u8 = 0x6;
const H2_GOAWAY: u8 = 0x7;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_STREAM: u8 = 0x1;
const H2_END_HEADERS: u8 = 0x4;
const H2_ACK: u8 = 0x1;

impl H2Conn {
    /// Sends the connection preface on a connection that negotiated h2.
    pub async fn handshake(mut conn: TlsConn) -> io::Result<H2Conn> {
        assert_eq!(
            conn.alpn().as_deref(),
            Some(&b"h2"[..]),
            "h2 not negotiated"
        );
        conn.stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await?;
        let mut h2 = H2Conn {
            conn,
            next_stream: 1,
        };
        h2.send_frame(H2_SETTINGS, 0, 0, &[]).await?;
        Ok(h2)
    }

    /// The next frame from the gateway: (type, flags, stream, payload).
    pub async fn next_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.read_frame())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 frame in time"))?
    }

    /// A header block of literal fields without indexing, new names, no
    /// Huffman coding.
    pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0x00);
            hpack_string(&mut block, name.as_bytes());
            hpack_string(&mut block, value.as_bytes());
        }
        block
    }

    /// Writes one frame as given (tests of protocol abuse use it directly).
    pub async fn send_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let len = payload.len() as u32;
        let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        frame.extend_from_slice(payload);
        self.conn.stream.write_all(&frame).await?;
        self.conn.stream.flush().await
    }

    async fn read_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
        let head = self.read_exact(9).await?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let payload = self.read_exact(len).await?;
        Ok((head[3], head[4], stream, payload))
    }

    async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.conn.buf.len() < n {
            if self.conn.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "HTTP/2 connection closed",
                ));
            }
        }
        Ok(self.conn.buf.drain(..n).collect())
    }

    /// Sends a GET with these pseudo-headers and headers and reads the response.
    pub async fn get(
        &mut self,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<H2Response> {
        let pseudo = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority),
            (":path", path),
        ];
        self.request(&pseudo, headers).await
    }

    /// Sends a body-less request with exactly these pseudo-headers (e.g. a
    /// CONNECT, which has no `:path`) and headers, and reads the response.
    pub async fn request(
        &mut self,
        pseudo: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> io::Result<H2Response> {
        let stream = self.next_stream;
        self.next_stream += 2;
        let mut block = Self::header_block(pseudo);
        block.extend(Self::header_block(headers));
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.send_frame(H2_HEADERS, H2_END_STREAM | H2_END_HEADERS, stream, &block)
                .await?;
            let mut response = H2Response {
                header_block: Vec::new(),
                body: Vec::new(),
            };
            loop {
                let (kind, flags, id, payload) = self.read_frame().await?;
                match kind {
                    H2_SETTINGS if flags & H2_ACK == 0 => {
                        self.send_frame(H2_SETTINGS, H2_ACK, 0, &[]).await?
                    }
                    H2_PING if flags & H2_ACK == 0 => {
                        self.send_frame(H2_PING, H2_ACK, 0, &payload).await?
                    }
                    H2_GOAWAY => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("GOAWAY {payload:?}"),
                        ))
                    }
                    H2_RST_STREAM if id == stream => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!("RST_STREAM {payload:?}"),
                        ))
                    }
                    H2_HEADERS | H2_CONTINUATION if id == stream => {
                        response.header_block.extend(unpad(kind, flags, &payload));
                        if flags & H2_END_STREAM != 0 {
                            return Ok(response);
                        }
                    }
                    H2_DATA if id == stream => {
                        response.body.extend(unpad(kind, flags, &payload));
                        if flags & H2_END_STREAM != 0 {
                            return Ok(response);
                        }
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 response in time"))?
    }
}

fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // 7-bit prefix integer (RFC 7541 5.1), Huffman bit clear.
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128 + 128) as u8);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

/// A frame's payload without padding (and without HEADERS priority fields).
fn unpad(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let mut data = payload;
    let mut pad = 0;
    if flags & PADDED != 0 && kind != H2_CONTINUATION && !data.is_empty() {
        pad = usize::from(data[0]);
        data = &data[1..];
    }
    if kind == H2_HEADERS && flags & PRIORITY != 0 && data.len() >= 5 {
        data = &data[5..];
    }
    data[..data.len().saturating_sub(pad)].to_vec()
}
