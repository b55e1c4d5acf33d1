//! Certificate renewal without a restart.
//!
//! certbot and friends renew by writing new files (often by swinging a
//! symlink). Every few seconds this watcher fingerprints the bytes of each
//! configured certificate and key; when they change it loads the whole set
//! again and, only if every certificate loads and checks, swaps it into the
//! SNI resolver. New handshakes get the new certificates; established
//! connections keep theirs. A broken new file leaves the old certificates
//! serving and is logged once per distinct broken state.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use postern_config::{Certificate, Diagnostics};

use crate::snapshot::Snapshot;
use crate::tls::{self, CertificateTable, SniResolver};

/// How often the files are looked at: cheap (a few small reads), and quick
/// enough that a renewal is live before anyone notices.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

pub struct CertificateWatcher {
    pub resolver: Arc<SniResolver>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

/// A digest of everything the certificates are loaded from; unreadable
/// files count as their error, so a file that disappears is a change too.
pub fn fingerprint(certificates: &[Certificate]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for c in certificates {
        for path in c.source_files() {
            path.hash(&mut hasher);
            match std::fs::read(path) {
                Ok(bytes) => bytes.hash(&mut hasher),
                Err(e) => e.kind().hash(&mut hasher),
            }
        }
    }
    hasher.finish()
}

impl CertificateWatcher {
    /// Loads the configured certificates again; installs them if all load.
    /// Returns whether the resolver now serves a new table.
    pub fn reload(&self) -> bool {
        let snapshot = self.snapshot.load_full();
        let tls_config = &snapshot.config.tls;
        let mut diags = Diagnostics::default();
        let loaded = tls::load_certificates(&tls_config.certificates, &mut diags);
        if diags.has_errors() || loaded.len() != tls_config.certificates.len() {
            for d in diags.errors() {
                log::error!(
                    target: "postern::tls",
                    "certificate change not applied, the previous certificates keep serving: {d}"
                );
            }
            return false;
        }
        for d in diags.warnings() {
            log::warn!(target: "postern::tls", "{d}");
        }
        let table = CertificateTable::new(loaded, tls_config.min_version, tls_config.strict_sni);
        let expiries: Vec<String> = table
            .loaded()
            .iter()
            .map(|c| format!("{} (notAfter {})", describe_names(c), c.not_after))
            .collect();
        let for_metrics: Vec<(String, i64)> = table
            .loaded()
            .iter()
            .map(|c| (describe_names(c).replace(' ', ","), c.not_after))
            .collect();
        crate::metrics::metrics().set_certificates(&for_metrics);
        self.resolver.replace(Arc::new(table));
        log::info!(
            target: "postern::tls",
            "certificates reloaded from disk: {}",
            expiries.join(", ")
        );
        true
    }
}

fn describe_names(c: &tls::LoadedCertificate) -> String {
    c.names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl BackgroundService for CertificateWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let current = |s: &Arc<ArcSwap<Snapshot>>| fingerprint(&s.load().config.tls.certificates);
        let mut applied = current(&self.snapshot);
        let mut failed: Option<u64> = None;
        let mut ticker = tokio::time::interval(WATCH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = current(&self.snapshot);
            if now == applied || Some(now) == failed {
                continue;
            }
            // A renewal tool may still be writing: let the files settle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let settled = current(&self.snapshot);
            if settled != now {
                continue;
            }
            if self.reload() {
                applied = settled;
                failed = None;
            } else {
                failed = Some(settled);
            }
        }
    }
}
