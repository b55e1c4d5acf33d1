//! Counts the client connections each listener holds open, for
//! `postern_connections{listener}`.
//!
//! Pingora has no connection open/close hooks for a proxy, so the count
//! wraps the proxy application: a connection is counted from the moment
//! the listener hands it over (after the TLS handshake) until the
//! application lets go of it. A keep-alive connection re-enters the
//! application once per request and is counted the whole time it waits for
//! the next one, so idle connections show too.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;

/// A [`ServerApp`] that counts the connections in `inner` on `open`.
pub struct CountedConnections<A> {
    pub inner: Arc<A>,
    pub open: IntGauge,
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
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountedConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.open.inc();
        let _held = Held(self.open.clone());
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
