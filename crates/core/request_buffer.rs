//! Request buffering (`request_buffer`, like nginx's): a body up to the
//! route's buffer is read whole from the client before the upstream is
//! contacted, so a slow, broken or oversized upload is answered by the
//! gateway and never holds an upstream worker. A larger body streams, the
//! part already read first.
//!
//! Pingora sends a request body only from its own reads, except for one
//! replay: the "retry buffer" (pingora-core `protocols/http/v1/server.rs`
//! `enable_retry_buffering` / `get_retry_buffer`, 64 KB:
//! `protocols/http/v1/common.rs` `BODY_BUF_LIMIT`), which
//! `proxy_handle_downstream` (pingora-proxy `proxy_h1.rs`) sends before
//! reading any more of the body. When the whole body has been read, that
//! replay is the only way Pingora sends anything, so the body's last part
//! must be in it; the part before, if any, is kept here and put in front of
//! the first piece `request_body_filter` sees on every upstream attempt:
//!
//! * a declared Content-Length up to the buffer: everything but the last
//!   64 KB is read into [`PreRead::head`], then retry buffering is switched
//!   on for the rest. Any buffer size works.
//! * no declared length (chunked, or HTTP/2 without Content-Length): the
//!   retry buffer holds everything read, so a chunked body is read whole
//!   only while it fits in 64 KB (48 KB on HTTP/2, whose last DATA frame
//!   ends the body in the same read). Past that, or past the buffer, the
//!   rest streams: what was read goes first, from the retry buffer while it
//!   holds it, else from [`PreRead::head`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::ErrorType;

/// Pingora's retry buffer capacity (pingora-core `BODY_BUF_LIMIT`).
const RETRY_BUFFER: u64 = 64 * 1024;

/// The largest HTTP/2 DATA frame Pingora's server accepts (the h2 default
/// SETTINGS_MAX_FRAME_SIZE, which Pingora does not raise).
const H2_MAX_FRAME: u64 = 16 * 1024;

/// What was read of a request body before the upstream was contacted.
#[derive(Debug, Default)]
pub struct PreRead {
    /// Bytes read that Pingora's retry buffer does not replay; they go in
    /// front of the first body piece of every upstream attempt.
    head: Option<Bytes>,
    /// The whole body was read: its length, sent as Content-Length.
    whole: Option<u64>,
    /// The client asked for `100 Continue`, which the gateway answered.
    continued: bool,
    /// The head is still to be sent on this upstream attempt.
    head_due: bool,
}

impl PreRead {
    /// The body's length when it was read whole.
    pub fn whole_length(&self) -> Option<u64> {
        self.whole
    }

    /// Whether the gateway read from the body (and answered any `Expect`).
    pub fn started(&self) -> bool {
        self.continued || self.whole.is_some() || self.head.is_some()
    }

    /// A new upstream attempt starts: it gets the head again.
    pub fn new_attempt(&mut self) {
        self.head_due = self.head.is_some();
    }

    /// Puts the head in front of `piece` once per attempt.
    pub fn replay_into(&mut self, piece: &mut Option<Bytes>) {
        if !std::mem::take(&mut self.head_due) {
            return;
        }
        let Some(head) = &self.head else { return };
        *piece = Some(match piece.take().filter(|p| !p.is_empty()) {
            None => head.clone(),
            Some(rest) => {
                let mut joined = BytesMut::with_capacity(head.len() + rest.len());
                joined.extend_from_slice(head);
                joined.extend_from_slice(&rest);
                joined.freeze()
            }
        });
    }
}

/// Reads up to `buffer` bytes of the request body (none when `buffer` is 0
/// or the body is declared larger). Errors are the client's: a broken
/// framing, `max_body_size` passed, or `timeout` waiting for a piece.
pub async fn read_ahead(
    session: &mut Session,
    declared: Option<u64>,
    buffer: u64,
    max_body_size: Option<u64>,
    timeout: Duration,
) -> Result<PreRead> {
    let mut pre_read = PreRead::default();
    if buffer == 0 || session.is_body_empty() || declared.is_some_and(|len| len > buffer) {
        return Ok(pre_read);
    }
    if expects_continue(session) {
        // The client waits for this before sending; the upstream will not
        // be asked, since it gets the body with the request.
        session.write_continue_response().await?;
        pre_read.continued = true;
    }
    match declared {
        Some(length) => read_declared(session, length, timeout, &mut pre_read).await?,
        None => read_unsized(session, buffer, max_body_size, timeout, &mut pre_read).await?,
    }
    if session.is_body_done() {
        // Never leave Pingora with a read body and nothing to send.
        if session.get_retry_buffer().is_none() && !session.is_body_empty() {
            return Error::e_explain(
                ErrorType::InternalError,
                "request body was read but cannot be replayed",
            );
        }
        pre_read.whole = Some(session.body_bytes_read() as u64);
    }
    Ok(pre_read)
}

async fn read_declared(
    session: &mut Session,
    length: u64,
    timeout: Duration,
    pre_read: &mut PreRead,
) -> Result<()> {
    let mut head = BytesMut::new();
    let mut read = 0u64;
    // Pingora's reads stop at the declared end, so the retry buffer,
    // switched on with at most its capacity left, takes the rest whole.
    while length.saturating_sub(read) > RETRY_BUFFER {
        let Some(piece) = read_piece(session, timeout).await? else {
            break;
        };
        read += piece.len() as u64;
        head.extend_from_slice(&piece);
    }
    session.enable_retry_buffering();
    while !session.is_body_done() {
        if read_piece(session, timeout).await?.is_none() {
            break;
        }
    }
    pre_read.head = (!head.is_empty()).then(|| head.freeze());
    Ok(())
}

async fn read_unsized(
    session: &mut Session,
    buffer: u64,
    max_body_size: Option<u64>,
    timeout: Duration,
    pre_read: &mut PreRead,
) -> Result<()> {
    session.enable_retry_buffering();
    // Only needed if the retry buffer overflows and drops what it held.
    let mut copy = BytesMut::new();
    let mut read = 0u64;
    let h2 = session.is_http2();
    while !session.is_body_done() {
        let room_for_a_frame = !h2 || read + H2_MAX_FRAME <= RETRY_BUFFER;
        if read > buffer || session.retry_buffer_truncated() || !room_for_a_frame {
            break;
        }
        let Some(piece) = read_piece(session, timeout).await? else {
            break;
        };
        read += piece.len() as u64;
        if max_body_size.is_some_and(|limit| read > limit) {
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body larger than max_body_size",
            );
        }
        copy.extend_from_slice(&piece);
    }
    if session.retry_buffer_truncated() {
        pre_read.head = Some(copy.freeze());
    }
    Ok(())
}

async fn read_piece(session: &mut Session, timeout: Duration) -> Result<Option<Bytes>> {
    match tokio::time::timeout(timeout, session.read_request_body()).await {
        Ok(piece) => piece.map_err(|e| e.into_down()),
        Err(_) => Err(Error::explain(
            ErrorType::ReadTimedout,
            "client stopped sending its request body (client_body_timeout)",
        )
        .into_down()),
    }
}

fn expects_continue(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_head(head: &'static [u8]) -> PreRead {
        PreRead {
            head: Some(Bytes::from_static(head)),
            ..PreRead::default()
        }
    }

    #[test]
    fn the_head_goes_in_front_once_per_attempt() {
        let mut pre_read = with_head(b"head-");
        pre_read.new_attempt();
        let mut piece = Some(Bytes::from_static(b"tail"));
        pre_read.replay_into(&mut piece);
        assert_eq!(piece.as_deref(), Some(&b"head-tail"[..]));
        let mut next = Some(Bytes::from_static(b"more"));
        pre_read.replay_into(&mut next);
        assert_eq!(next.as_deref(), Some(&b"more"[..]));
        // A retried attempt starts over.
        pre_read.new_attempt();
        let mut end = None;
        pre_read.replay_into(&mut end);
        assert_eq!(end.as_deref(), Some(&b"head-"[..]));
    }

    #[test]
    fn nothing_is_added_without_a_head() {
        let mut pre_read = PreRead::default();
        pre_read.new_attempt();
        let mut piece = Some(Bytes::from_static(b"x"));
        pre_read.replay_into(&mut piece);
        assert_eq!(piece.as_deref(), Some(&b"x"[..]));
        let mut end = None;
        pre_read.replay_into(&mut end);
        assert_eq!(end, None);
        assert!(!pre_read.started());
    }
}
