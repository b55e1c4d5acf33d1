//! What happens to every client connection before and around the HTTP
//! application: it is counted for `postern_connections{listener}`, and
//! wrapped so slow or idle clients are timed out (see `client_timeouts`).
//!
//! Pingora has no connection open/close hooks for a proxy, so this wraps the
//! proxy application: a connection is counted from the moment the listener
//! hands it over (after the TLS handshake) until the application lets go of
//! it, including while it idles between keep-alive requests.
//!
//! HTTP/1 connections are served request by request here rather than in
//! Pingora's own keep-alive loop, for memory: Pingora allocates a request's
//! whole proxy state (a 14.6 KB future and a 4 KB header buffer) before the
//! request's first byte arrives, so every idle keep-alive connection would
//! hold it. Here a session is built only once the client has started a
//! request; otherwise the loop is Pingora's (`HttpServerApp for T` in
//! pingora-core `apps/mod.rs`): the same keep-alive settings, carried from
//! one request to the next, and idle connections closed at shutdown.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Shutdown, Ssl, Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;

use crate::client_timeouts::ClientStream;
use crate::snapshot::Snapshot;

/// A [`ServerApp`] that counts the connections in `inner` on `open` and
/// holds each to the client timeouts of the configuration it arrives under.
pub struct ClientConnections<A> {
    pub inner: Arc<A>,
    pub open: IntGauge,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

/// Decrements the gauge however `process_new` ends, even if its future is
/// dropped mid-request on shutdown.
struct Held(IntGauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Pingora's default keep-alive for a new HTTP/1 connection, in seconds;
/// `client_timeouts` bounds the wait itself.
const PINGORA_KEEPALIVE_SECONDS: u64 = 60;

impl<A: HttpServerApp + Send + Sync + 'static> ClientConnections<A> {
    /// Whether Pingora would serve `stream` as plain HTTP/1 (not HTTP/2 by
    /// ALPN or prior knowledge, not a custom protocol).
    fn speaks_http1(&self, stream: &ClientStream) -> bool {
        let options = self.inner.server_options();
        let h2c = options.is_some_and(|o| o.h2c) && stream.get_ssl_digest().is_none();
        let custom = options.is_some_and(|o| o.force_custom);
        !h2c && !custom && matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1))
    }

    async fn serve_http1(
        self: &Arc<Self>,
        mut client: Box<ClientStream>,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // What a request leaves for the next one on the connection; Pingora's
        // proxy always hands it back with a reusable stream.
        let mut carried: Option<HttpPersistentSettings> = None;
        let hsts = client
            .get_ssl_digest()
            .and_then(|_| self.snapshot.load().config.tls.hsts.clone());
        client.reshape_pingora_answers(hsts);
        loop {
            if !next_request_started(&mut client, shutdown).await {
                return None;
            }
            let mut session = ServerSession::new_http1(client);
            match carried.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    let keepalive = (!*shutdown.borrow()).then_some(PINGORA_KEEPALIVE_SECONDS);
                    session.set_keepalive(keepalive);
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (stream, settings) = reused.consume();
            carried = settings;
            // Pingora hands back the stream it was given, which is ours.
            client = stream.into_any().downcast::<ClientStream>().ok()?;
        }
    }
}

/// How long closing an idle connection may take to say goodbye (a TLS
/// close_notify) to a client that is not reading.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long a connection that is idle when the gateway starts to stop may
/// still start a request. A keep-alive client sends its next request as soon
/// as it has read a response; closing the connection at once would cross
/// that request, which then fails. Served now, it is answered with
/// `Connection: close` (Pingora ends keep-alive once shutdown has begun).
const LAST_CALL: Duration = Duration::from_millis(250);

/// Waits for the client to start its next request. `false`: it closed the
/// connection or broke it, or the connection is being closed because a
/// client timeout passed or the gateway is shutting down (an idle
/// connection has nothing left to finish).
async fn next_request_started(client: &mut ClientStream, shutdown: &ShutdownWatch) -> bool {
    let mut stopping = shutdown.clone();
    let waited = tokio::select! {
        biased;
        started = client.wait_for_request() => started,
        () = async { drop(stopping.wait_for(|stopping| *stopping).await) } => {
            tokio::time::timeout(LAST_CALL, client.wait_for_request())
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(io::ErrorKind::TimedOut, "the gateway is shutting down"))
                })
        }
    };
    match waited {
        Ok(started) => started,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            log::debug!("closing an idle client connection: {e}");
            let _ = tokio::time::timeout(CLOSE_GRACE, Shutdown::shutdown(client)).await;
            false
        }
        Err(e) => {
            log::debug!("client connection broke while idle: {e}");
            false
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.open.inc();
        let _held = Held(self.open.clone());
        let timeouts = self.snapshot.load().config.gateway.client_timeouts;
        let client = ClientStream::wrap(session, &timeouts);
        if self.speaks_http1(&client) {
            self.serve_http1(client, shutdown).await
        } else {
            ServerApp::process_new(&self.inner, client as Stream, shutdown).await
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
