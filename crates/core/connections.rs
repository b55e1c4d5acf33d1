//! What happens to every client connection before and around the HTTP
//! application: it is counted for `postern_connections{listener}`, and
//! wrapped so slow or idle clients are timed out (see `client_timeouts`).
//!
//! Pingora has no connection open/close hooks for a proxy, so this wraps the
//! proxy application: a connection is counted from the moment the listener
//! hands it over (after the TLS handshake) until the application lets go of
//! it, including while it idles between keep-alive requests.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
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

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.open.inc();
        let _held = Held(self.open.clone());
        let timeouts = self.snapshot.load().config.gateway.client_timeouts;
        let session = ClientStream::wrap(session, &timeouts);
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
