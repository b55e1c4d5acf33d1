//! One JSON line per request: who asked for what, what the gateway decided,
//! and how long it took.
//!
//! Only what the gateway decided on is written: the canonical path (never
//! the query, which may carry tokens), the route, the client it resolved,
//! and for refusals the reason. Headers are never logged, so tokens,
//! passwords and cookies cannot leak here. A failing log file (disk full)
//! is reported once and never stops a request.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use postern_config::AccessLog;
use serde_json::{json, Value};

enum Sink {
    Stdout,
    File(LineWriter<File>),
}

struct Writer {
    sink: Mutex<Sink>,
    failing: AtomicBool,
}

static WRITER: OnceLock<Option<Writer>> = OnceLock::new();

/// Opens the destination once, at startup. A file that cannot be opened is
/// an error the operator sees before anything is served.
pub fn open(destination: &AccessLog) -> Result<(), String> {
    let sink = match destination {
        AccessLog::Off => None,
        AccessLog::Stdout => Some(Sink::Stdout),
        AccessLog::File(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open access_log {}: {e}", path.display()))?;
            Some(Sink::File(LineWriter::new(file)))
        }
    };
    let _ = WRITER.set(sink.map(|sink| Writer {
        sink: Mutex::new(sink),
        failing: AtomicBool::new(false),
    }));
    Ok(())
}

/// Whether entries are written anywhere: when not, callers skip building them.
pub fn enabled() -> bool {
    matches!(WRITER.get(), Some(Some(_)))
}

/// Writes one entry (a JSON object) as a line.
pub fn write(entry: Value) {
    let Some(Some(writer)) = WRITER.get() else {
        return;
    };
    let mut line = entry.to_string();
    line.push('\n');
    let mut sink = writer.sink.lock().unwrap_or_else(|e| e.into_inner());
    let result = match &mut *sink {
        Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
        Sink::File(file) => file.write_all(line.as_bytes()),
    };
    match result {
        Ok(()) => {
            if writer.failing.swap(false, Ordering::Relaxed) {
                log::warn!("access log is writable again");
            }
        }
        Err(e) => {
            if !writer.failing.swap(true, Ordering::Relaxed) {
                log::error!("cannot write the access log ({e}); requests are still served, entries are lost until it recovers");
            }
        }
    }
}

/// The fields of one entry.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub client: Option<String>,
    pub listener: &'a str,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: Option<&'a str>,
    pub protocol: &'a str,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub status: u16,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub duration_ms: f64,
    pub user: Option<&'a str>,
    pub refused: Option<&'a str>,
    /// The subject (RFC 4514) of the connection's verified client certificate.
    pub client_cert: Option<&'a str>,
}

impl Entry<'_> {
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "time": rfc3339_now(),
            "request_id": self.request_id,
            "client": self.client,
            "listener": self.listener,
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "protocol": self.protocol,
            "route": self.route,
            "upstream": self.upstream,
            "status": self.status,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "duration_ms": (self.duration_ms * 1000.0).round() / 1000.0,
        });
        if let Some(user) = self.user {
            entry["user"] = Value::from(user);
        }
        if let Some(reason) = self.refused {
            entry["refused"] = Value::from(reason);
        }
        if let Some(subject) = self.client_cert {
            entry["client_cert"] = Value::from(subject);
        }
        entry
    }
}

/// `2026-11-22T23:05:01.123Z`, without a date crate.
fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        let year: i32 = t[..4].parse().unwrap();
        assert!((2024..2200).contains(&year), "{t}");
    }

    #[test]
    fn entries_carry_the_decision_and_nothing_else() {
        let entry = Entry {
            request_id: "abc",
            client: Some("192.0.2.1".into()),
            listener: "https",
            method: "GET",
            host: Some("api.example.com"),
            path: Some("/api/x"),
            protocol: "HTTP/1.1",
            route: Some("api"),
            upstream: Some("data"),
            status: 401,
            bytes_in: 0,
            bytes_out: 99,
            duration_ms: 1.23456,
            user: None,
            refused: Some("token expired"),
            client_cert: None,
        }
        .to_json();
        assert_eq!(entry["status"], 401);
        assert_eq!(entry["refused"], "token expired");
        assert_eq!(entry["duration_ms"], 1.235);
        assert!(entry.get("user").is_none());
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        for forbidden in ["query", "headers", "authorization", "cookie"] {
            assert!(!keys.iter().any(|k| k.as_str() == forbidden), "{keys:?}");
        }
    }
}
