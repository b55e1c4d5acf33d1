//! Test support: configs written to a temporary directory and loaded, and
//! assertions on the findings in the `FILE:LINE:COL` terms an operator sees.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::diag::{Diagnostics, Severity};
use crate::load::{load, Loaded};

/// A plain listener and one upstream: valid on its own. Cases put their own
/// text *before* it, so the first occurrence of a needle is in the case's text.
pub const PLAIN: &str = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:9000"

[upstreams.data]
url = "http://127.0.0.1:8880"
"#;

/// A TLS listener; the case supplies the `[[tls.certificates]]`.
pub const TLS_LISTENER: &str = r#"
[[listeners]]
name = "https"
address = "127.0.0.1:8443"
tls = true
"#;

/// `extra`, then [`PLAIN`].
pub fn plain(extra: &str) -> String {
    format!("{extra}\n{PLAIN}")
}

/// `extra`, then one certificate entry using `cert` and `key`, then a TLS
/// listener and [`PLAIN`].
pub fn with_cert(extra: &str, cert: &str, key: &str) -> String {
    format!(
        "{extra}\n[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"{cert}\"\nkey = \"{key}\"\n{TLS_LISTENER}{PLAIN}"
    )
}

/// A temporary directory holding a `gateway.toml` and whatever it refers to.
pub struct Dir {
    dir: TempDir,
}

impl Dir {
    pub fn new() -> Self {
        Dir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The main file, `gateway.toml`.
    pub fn main(&self) -> PathBuf {
        self.path().join("gateway.toml")
    }

    pub fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    /// Writes `text` as `gateway.toml` and loads it with `env`.
    pub fn load(&self, text: &str, env: &[(&str, &str)]) -> Result<Loaded, Diagnostics> {
        self.write("gateway.toml", text);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&self.main(), &env)
    }

    /// `FILE:LINE:COL` of `needle` (see [`position`]) in `text`, which was
    /// written to `relative`.
    pub fn origin(&self, relative: &str, text: &str, needle: &str) -> String {
        format!(
            "{}:{}",
            self.path().join(relative).display(),
            position(text, needle)
        )
    }
}

/// `LINE:COL` of `needle` in `text` (first occurrence, 1-based, columns in
/// characters). A `|` in the needle marks the column meant; without one the
/// needle's first character is meant.
pub fn position(text: &str, needle: &str) -> String {
    let (before, after) = needle.split_once('|').unwrap_or(("", needle));
    let whole = format!("{before}{after}");
    let start = text
        .find(&whole)
        .unwrap_or_else(|| panic!("test bug: {whole:?} is not in\n{text}"));
    let offset = start + before.len();
    let line = text[..offset].matches('\n').count() + 1;
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    format!("{line}:{column}")
}

/// The errors of a load that must have failed.
pub fn rejected(result: Result<Loaded, Diagnostics>, context: &str) -> Diagnostics {
    match result {
        Ok(loaded) => panic!("{context}: accepted, with warnings:\n{}", loaded.warnings),
        Err(diags) => {
            assert!(diags.has_errors(), "{context}: refused without an error");
            diags
        }
    }
}

/// The config of a load that must have succeeded.
pub fn accepted(result: Result<Loaded, Diagnostics>, context: &str) -> Loaded {
    result.unwrap_or_else(|diags| panic!("{context}: refused:\n{diags}"))
}

/// Among the errors, one is at `origin`, says `message`, and (when given)
/// has a help that says `help`.
pub fn find_error(
    diags: &Diagnostics,
    origin: &str,
    message: &str,
    help: Option<&str>,
) -> Result<(), String> {
    let found = diags.errors().any(|d| {
        d.origin.to_string() == origin
            && d.message.contains(message)
            && help.is_none_or(|h| d.help.as_deref().is_some_and(|got| got.contains(h)))
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "expected `{origin}: error: ...{message}...`{}, got:\n{diags}",
            help.map_or(String::new(), |h| format!(" with `help: ...{h}...`"))
        ))
    }
}

pub fn assert_error_at(diags: &Diagnostics, origin: &str, message: &str, help: Option<&str>) {
    if let Err(e) = find_error(diags, origin, message, help) {
        panic!("{e}");
    }
}

pub fn error_count(diags: &Diagnostics) -> usize {
    diags.errors().count()
}

pub fn warning_messages(diags: &Diagnostics) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.message.clone())
        .collect()
}

/// One bad config and the one error it must produce.
pub struct Case {
    pub name: &'static str,
    pub toml: String,
    /// Files the config refers to, created (with placeholder content) beside it.
    pub files: &'static [&'static str],
    /// Where the error points, as a needle into `toml` (see [`position`]).
    pub at: &'static str,
    pub message: &'static str,
    pub help: Option<&'static str>,
}

pub fn case(
    name: &'static str,
    toml: String,
    at: &'static str,
    message: &'static str,
    help: Option<&'static str>,
) -> Case {
    Case {
        name,
        toml,
        files: &[],
        at,
        message,
        help,
    }
}

impl Case {
    pub fn with_files(self, files: &'static [&'static str]) -> Case {
        Case { files, ..self }
    }
}

/// Loads each case in a directory of its own; reports every failing case.
pub fn run_cases(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let dir = Dir::new();
        for file in c.files {
            dir.write(file, "placeholder\n");
        }
        let outcome = match dir.load(&c.toml, &[]) {
            Ok(_) => Err("accepted".to_string()),
            Err(diags) => find_error(
                &diags,
                &dir.origin("gateway.toml", &c.toml, c.at),
                c.message,
                c.help,
            ),
        };
        if let Err(e) = outcome {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n\n")
    );
}
