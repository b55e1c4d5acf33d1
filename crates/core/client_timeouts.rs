//! Bounds how long a client may hold a connection without sending a
//! request: `[gateway] client_header_timeout` and `keepalive_timeout`.
//!
//! Pingora times each *read* of a request head, not the head as a whole, and
//! after the first request on a keep-alive connection it waits for the next
//! one without any limit. A slowloris client that trickles one header byte
//! every few seconds, or simply idles, would hold a connection (and its
//! buffers) for ever. So every client connection is wrapped in a
//! [`ClientStream`] whose reads fail once a [`HeadClock`] deadline passes:
//!
//! * on a new connection: the whole first request head within
//!   `client_header_timeout` of the TLS handshake;
//! * between keep-alive requests: the next request's first byte within
//!   `keepalive_timeout`, then its whole head within `client_header_timeout`;
//! * HTTP/2: the connection preface within `client_header_timeout`; after it
//!   Pingora's HTTP/2 idle timeout (set to `keepalive_timeout`) closes a
//!   connection with no stream, and a stream only exists once its whole
//!   header block has arrived.
//!
//! `request_filter` stops the clock once a head has been read, and `logging`
//! starts it again for the next request. Request bodies are bounded per read
//! by `client_body_timeout` (Pingora's downstream read timeout).
//!
//! [`ClientStream::wait_for_request`] lets `connections` wait for an HTTP/1
//! request's first byte before Pingora builds a session for it, so an idle
//! keep-alive connection holds no request state (see `connections`).
//!
//! While a head is being read no hook has seen the request, so whatever is
//! written then is an answer Pingora made itself; on HTTP/1 connections
//! [`ClientStream::reshape_pingora_answers`] has those replaced by the
//! gateway's JSON answer (see `pingora_answers`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use postern_config::ClientTimeouts;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::pingora_answers;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE_LEN: u64 = 24;

/// Where a connection is in its wait for a request head.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a keep-alive connection's next request to start.
    Idle { until: Instant, header: Duration },
    /// Receiving a request head, which must be complete by `until`.
    Head { until: Instant },
    /// HTTP/2: the preface must be complete by `until`; `left` bytes to go.
    Preface { until: Instant, left: u64 },
    /// A request is being served; its body reads have their own timeout.
    Stopped,
}

/// The deadline a connection's reads are held to, shared between the
/// stream and the proxy hooks that start and stop it.
#[derive(Debug)]
pub struct HeadClock {
    phase: Mutex<Phase>,
}

impl HeadClock {
    fn new(phase: Phase) -> Self {
        HeadClock {
            phase: Mutex::new(phase),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The phase is plain data, valid whatever a panicking holder did.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request head has been read: stop holding reads to a deadline.
    pub fn stop(&self) {
        *self.lock() = Phase::Stopped;
    }

    /// A response is done and the connection may carry another request.
    pub fn await_next_request(&self, timeouts: &ClientTimeouts) {
        *self.lock() = Phase::Idle {
            until: Instant::now() + timeouts.keepalive,
            header: timeouts.header,
        };
    }

    /// No hook has seen the current request yet: its head is awaited or
    /// being read.
    fn reading_head(&self) -> bool {
        matches!(*self.lock(), Phase::Idle { .. } | Phase::Head { .. })
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.lock() {
            Phase::Idle { until, .. } | Phase::Head { until } | Phase::Preface { until, .. } => {
                Some(until)
            }
            Phase::Stopped => None,
        }
    }

    /// `n` bytes arrived: a keep-alive request has started, or the HTTP/2
    /// preface is that much nearer done.
    fn received(&self, n: u64) {
        let mut phase = self.lock();
        match *phase {
            Phase::Idle { header, .. } => {
                *phase = Phase::Head {
                    until: Instant::now() + header,
                }
            }
            Phase::Preface { until, left } if left > n => {
                *phase = Phase::Preface {
                    until,
                    left: left - n,
                }
            }
            Phase::Preface { .. } => *phase = Phase::Stopped,
            Phase::Head { .. } | Phase::Stopped => {}
        }
    }
}

/// A client connection whose reads fail with `TimedOut` once its
/// [`HeadClock`] deadline has passed. Everything else passes through.
#[derive(Debug)]
pub struct ClientStream {
    inner: Stream,
    clock: Arc<HeadClock>,
    timer: Pin<Box<Sleep>>,
    /// The first byte of a request, read by `wait_for_request` and handed
    /// out again by the next read.
    first_byte: Option<u8>,
    /// HTTP/1 only: Pingora's own answers are replaced.
    reshaping: Option<Reshaping>,
}

/// Replacing an answer Pingora wrote before any hook ran.
#[derive(Debug)]
struct Reshaping {
    /// Strict-Transport-Security for the replacement, on a TLS listener.
    hsts: Option<HeaderValue>,
    /// The replacement and how much of it is written; once set, whatever
    /// Pingora writes after it (the connection then closes) is dropped.
    sending: Option<(Vec<u8>, usize)>,
}

/// Writes what is left of `pending` to `inner`.
fn drain(
    inner: &mut Stream,
    pending: &mut (Vec<u8>, usize),
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while pending.1 < pending.0.len() {
        let n = std::task::ready!(Pin::new(&mut *inner).poll_write(cx, &pending.0[pending.1..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        pending.1 += n;
    }
    Poll::Ready(Ok(()))
}

impl ClientStream {
    /// Wraps a freshly accepted (and, on TLS, handshaken) connection.
    pub fn wrap(inner: Stream, timeouts: &ClientTimeouts) -> Box<ClientStream> {
        let until = Instant::now() + timeouts.header;
        let phase = if matches!(inner.selected_alpn_proto(), Some(ALPN::H2)) {
            Phase::Preface {
                until,
                left: H2_PREFACE_LEN,
            }
        } else {
            Phase::Head { until }
        };
        Box::new(ClientStream {
            inner,
            clock: Arc::new(HeadClock::new(phase)),
            timer: Box::pin(tokio::time::sleep_until(until)),
            first_byte: None,
            reshaping: None,
        })
    }

    /// Replaces the answers Pingora writes before any hook runs with the
    /// gateway's JSON answer, carrying `hsts` if given. HTTP/1 only: on
    /// HTTP/2 the bytes are frames.
    pub fn reshape_pingora_answers(&mut self, hsts: Option<HeaderValue>) {
        self.reshaping = Some(Reshaping {
            hsts,
            sending: None,
        });
    }

    fn replacing(&self) -> bool {
        self.reshaping.as_ref().is_some_and(|r| r.sending.is_some())
    }

    /// Waits, under the connection's deadline, until the client sends the
    /// first byte of a request, which the next read returns. `Ok(false)`:
    /// the client closed the connection instead.
    pub async fn wait_for_request(&mut self) -> io::Result<bool> {
        if self.first_byte.is_some() {
            return Ok(true);
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_read(cx, &mut buf)).await?;
        let Some(&first) = buf.filled().first() else {
            return Ok(false);
        };
        self.first_byte = Some(first);
        Ok(true)
    }

    /// The clock of a connection this module wrapped, if `stream` is one.
    pub fn clock_of(stream: &Stream) -> Option<&Arc<HeadClock>> {
        stream
            .as_ref()
            .as_any()
            .downcast_ref::<ClientStream>()
            .map(|s| &s.clock)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() > 0 {
            if let Some(first) = this.first_byte.take() {
                buf.put_slice(&[first]);
                return Poll::Ready(Ok(()));
            }
        }
        if let Some(deadline) = this.clock.deadline() {
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            if this.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client did not send a complete request head in time (client_header_timeout / keepalive_timeout)",
                )));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.clock.received(read as u64);
        }
        polled
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(reshaping) = this.reshaping.as_mut() {
            if reshaping.sending.is_none() && this.clock.reading_head() {
                if let Some((kind, wire)) = pingora_answers::reshape(buf, reshaping.hsts.as_ref()) {
                    log::info!(
                        target: "postern::policy",
                        "refused {} {}: the request head was refused while parsing it",
                        kind.status(),
                        kind.name(),
                    );
                    reshaping.sending = Some((wire, 0));
                }
            }
            if let Some(pending) = reshaping.sending.as_mut() {
                std::task::ready!(drain(&mut this.inner, pending, cx))?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(pending) = this.reshaping.as_mut().and_then(|r| r.sending.as_mut()) {
            std::task::ready!(drain(&mut this.inner, pending, cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(pending) = this.reshaping.as_mut().and_then(|r| r.sending.as_mut()) {
            std::task::ready!(drain(&mut this.inner, pending, cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.reshaping.is_some() && (self.replacing() || self.clock.reading_head()) {
            // One piece at a time, so a head is seen whole by poll_write.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        if let Some(pending) = self.reshaping.as_mut().and_then(|r| r.sending.as_mut()) {
            let inner = &mut self.inner;
            let sent = std::future::poll_fn(|cx| drain(inner, pending, cx));
            // A client that does not read gets no more of it.
            let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
        }
        self.inner.shutdown().await
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.inner.set_socket_digest(socket_digest)
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.first_byte.is_some() {
            // The socket no longer starts where the client's bytes do.
            return Ok(false);
        }
        // Peeked bytes are read again later; the clock counts them then.
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> ClientTimeouts {
        ClientTimeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(60),
            keepalive: Duration::from_secs(60),
        }
    }

    /// `deadline` is `after` from some moment between `before` and now.
    fn assert_deadline(clock: &HeadClock, before: Instant, after: Duration) {
        let deadline = clock.deadline().expect("a deadline");
        assert!(deadline >= before + after, "{deadline:?} too early");
        assert!(deadline <= Instant::now() + after, "{deadline:?} too late");
    }

    #[test]
    fn idle_keepalive_gets_the_header_timeout_once_a_request_starts() {
        let clock = HeadClock::new(Phase::Stopped);
        assert_eq!(clock.deadline(), None);
        let before = Instant::now();
        clock.await_next_request(&timeouts());
        assert_deadline(&clock, before, Duration::from_secs(60));
        let before = Instant::now();
        clock.received(1);
        assert_deadline(&clock, before, Duration::from_secs(10));
        // More bytes of the same head do not extend it.
        let deadline = clock.deadline();
        std::thread::sleep(Duration::from_millis(5));
        clock.received(100);
        assert_eq!(clock.deadline(), deadline);
        clock.stop();
        assert_eq!(clock.deadline(), None);
    }

    #[test]
    fn the_h2_preface_stops_the_clock_when_complete() {
        let until = Instant::now() + Duration::from_secs(10);
        let clock = HeadClock::new(Phase::Preface {
            until,
            left: H2_PREFACE_LEN,
        });
        clock.received(10);
        assert_eq!(clock.deadline(), Some(until));
        clock.received(13);
        assert_eq!(clock.deadline(), Some(until));
        clock.received(1);
        assert_eq!(clock.deadline(), None);
    }
}
