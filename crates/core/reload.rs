//! Configuration reload without dropping a request: on SIGHUP or
//! `POST /reload`, the file is loaded and compiled exactly as at startup;
//! only a configuration with no errors is swapped in (routes, policies,
//! upstreams and certificates at once), and requests already decided finish
//! on the snapshot they started with. A bad file changes nothing and says why.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use postern_config::{Config, Diagnostics};

use crate::metrics::metrics;
use crate::snapshot::{self, Snapshot};
use crate::tls::SniResolver;

pub struct Reloader {
    pub config_path: PathBuf,
    pub shared: Arc<ArcSwap<Snapshot>>,
    pub resolver: Arc<SniResolver>,
    pub started: Instant,
    /// One reload at a time: two at once could install the older file last.
    serial: Mutex<()>,
}

impl Reloader {
    pub fn new(
        config_path: PathBuf,
        shared: Arc<ArcSwap<Snapshot>>,
        resolver: Arc<SniResolver>,
    ) -> Self {
        Reloader {
            config_path,
            shared,
            resolver,
            started: Instant::now(),
            serial: Mutex::new(()),
        }
    }

    /// Loads, checks and installs the configuration file; on failure the
    /// running configuration is untouched and the errors are returned.
    /// Blocking (files, DNS): call it off the async threads.
    pub fn reload(&self, trigger: &str) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.try_reload();
        let result = if outcome.is_ok() {
            "success"
        } else {
            "failure"
        };
        metrics().config_reloads.with_label_values(&[result]).inc();
        match &outcome {
            Ok(()) => log::info!(
                target: "postern::reload",
                "configuration reloaded from {} ({trigger})",
                self.config_path.display()
            ),
            Err(errors) => log::error!(
                target: "postern::reload",
                "reload failed ({trigger}); the previous configuration keeps serving:\n{}",
                errors.join("\n")
            ),
        }
        outcome
    }

    fn try_reload(&self) -> Result<(), Vec<String>> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut diags = Diagnostics::default();
        let config = match postern_config::load(&self.config_path, &env) {
            Ok(loaded) => {
                diags.extend(loaded.warnings);
                loaded.config
            }
            Err(errors) => return Err(lines(&errors)),
        };
        let current = self.shared.load_full();
        let ca_path = |c: &Config| c.tls.client_ca.as_ref().map(|ca| ca.path.clone());
        if ca_path(&current.config) != ca_path(&config) {
            return Err(vec![
                "[tls] client_ca changed: TLS listeners take it at startup, so this needs an upgrade: start `postern run --upgrade` with the new file, then send this process SIGQUIT (docs/operations.md); nothing was changed".to_string(),
            ]);
        }
        if let Some(change) = listener_change(&current.config, &config) {
            return Err(vec![format!(
                "{change}: listeners are bound at startup, so this needs an upgrade: start `postern run --upgrade` with the new file, then send this process SIGQUIT (docs/operations.md); nothing was changed"
            )]);
        }
        let Some(snapshot) = snapshot::compile(config, &mut diags) else {
            return Err(lines(&diags));
        };
        if diags.has_errors() {
            return Err(lines(&diags));
        }
        for warning in diags.warnings() {
            log::warn!(target: "postern::reload", "{warning}");
        }
        self.resolver.replace(Arc::clone(&snapshot.certificates));
        metrics().set_certificates(&snapshot.certificate_expiries());
        self.shared.store(Arc::new(snapshot));
        Ok(())
    }
}

fn lines(diags: &Diagnostics) -> Vec<String> {
    diags.errors().map(|d| d.to_string()).collect()
}

/// The first difference in listeners, which a reload cannot apply.
fn listener_change(old: &Config, new: &Config) -> Option<String> {
    let describe = |c: &Config| {
        c.listeners
            .iter()
            .map(|l| (l.name.clone(), l.address, l.kind))
            .collect::<Vec<_>>()
    };
    let (before, after) = (describe(old), describe(new));
    if before == after {
        return None;
    }
    for (name, address, kind) in &after {
        match before.iter().find(|(n, _, _)| n == name) {
            None => return Some(format!("listener {name:?} is new")),
            Some((_, a, k)) if a != address || k != kind => {
                return Some(format!("listener {name:?} changed from {a} to {address}"))
            }
            Some(_) => {}
        }
    }
    Some("listeners were removed".to_string())
}

/// Reloads on SIGHUP, as nginx and most daemons do.
pub struct HangupReload {
    pub reloader: Arc<Reloader>,
}

#[async_trait]
impl BackgroundService for HangupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(stream) => stream,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload only via POST /reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    let reloader = Arc::clone(&self.reloader);
                    let _ = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
