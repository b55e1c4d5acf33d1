//! The process logger: env_logger (`RUST_LOG`, default `info`), with
//! Pingora's per-connection handshake failures moved down from ERROR.
//!
//! Pingora logs every failed TLS handshake at ERROR, including a load
//! balancer's TCP health check that connects and closes without sending a
//! byte. Those are the client's doing, not the gateway's failing: nginx logs
//! them at `info`. Left at ERROR they would bury the errors an operator must
//! act on, so a closed-before-hello connection is logged at DEBUG and any
//! other failed handshake at INFO, under the target `postern::tls`.

use log::{Level, Log, Metadata, Record};

/// Pingora's accept loop, which logs the handshake failures.
const PINGORA_LISTENING: &str = "pingora_core::services::listening";
/// Where the demoted lines go, so `RUST_LOG=postern::tls=debug` shows them all.
const TARGET: &str = "postern::tls";

/// Installs the logger for the whole process; call once, first thing.
pub fn init() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max_level = inner.filter();
    if log::set_boxed_logger(Box::new(Demoting { inner })).is_ok() {
        log::set_max_level(max_level);
    }
}

struct Demoting {
    inner: env_logger::Logger,
}

impl Log for Demoting {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // A demoted line arrives as an ERROR, which is always let through
        // here; `log` decides below whether its new level is wanted.
        metadata.target() == PINGORA_LISTENING || self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.target() != PINGORA_LISTENING {
            return self.inner.log(record);
        }
        let message = record.args().to_string();
        let Some(level) = demoted_level(record.level(), &message) else {
            return self.inner.log(record);
        };
        let metadata = Metadata::builder().level(level).target(TARGET).build();
        if !self.inner.enabled(&metadata) {
            return;
        }
        self.inner.log(
            &Record::builder()
                .metadata(metadata)
                .args(format_args!("{message}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The level a line of Pingora's accept loop is logged at instead, when it
/// is a client's failed handshake; `None` keeps it as it is.
fn demoted_level(level: Level, message: &str) -> Option<Level> {
    if level != Level::Error {
        return None;
    }
    if !message.starts_with("Downstream handshake") {
        return None;
    }
    // rustls' words for a connection that closed before (or during) the hello.
    if message.contains("handshake eof") {
        Some(Level::Debug)
    } else {
        Some(Level::Info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_closed_before_its_hello_is_debug() {
        assert_eq!(
            demoted_level(
                Level::Error,
                "Downstream handshake error from 127.0.0.1:57864:  TLSHandshakeFailure context: tls connect error: tls handshake eof"
            ),
            Some(Level::Debug)
        );
    }

    #[test]
    fn other_failed_handshakes_are_info() {
        for message in [
            "Downstream handshake error from 127.0.0.1:57878:  TLSHandshakeFailure context: tls connect error: received corrupt message of type InvalidContentType",
            "Downstream handshake error: HandshakeError context: client does not offer TLS 1.3",
            "Downstream handshake timeout",
        ] {
            assert_eq!(demoted_level(Level::Error, message), Some(Level::Info), "{message}");
        }
    }

    #[test]
    fn the_accept_loops_own_errors_stay_errors() {
        assert_eq!(
            demoted_level(Level::Error, "Accept() failed Too many open files"),
            None
        );
        assert_eq!(demoted_level(Level::Error, "shutdown_signal error x"), None);
        assert_eq!(
            demoted_level(Level::Info, "Downstream handshake error"),
            None
        );
    }
}
