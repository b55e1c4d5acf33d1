//! Where a setting came from, and what is wrong with it.
//!
//! Every value in a loaded configuration remembers its [`Origin`]: a file, line
//! and column, or the environment variable that overrode it. Errors name that
//! origin and, where there is one, the fix, so an operator never has to guess
//! which of several layered files is at fault.

use std::fmt;
use std::sync::Arc;

/// The place a configuration value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A position in a config file (1-based line and column).
    File {
        /// The file as it was named.
        path: Arc<str>,
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        column: u32,
    },
    /// An environment variable override.
    Env {
        /// The variable's name, `POSTERN_...`.
        variable: Arc<str>,
    },
}

impl Origin {
    /// The origin for a byte offset in `text`, which was read from `path`.
    pub fn in_file(path: &Arc<str>, text: &str, offset: usize) -> Origin {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() as u32 + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() as u32 + 1;
        Origin::File {
            path: Arc::clone(path),
            line,
            column,
        }
    }

    /// The start of a file, for problems that belong to no particular value.
    pub fn file_start(path: &Arc<str>) -> Origin {
        Origin::File {
            path: Arc::clone(path),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{path}:{line}:{column}"),
            Origin::Env { variable } => write!(f, "environment variable {variable}"),
        }
    }
}

/// How bad a finding is: errors stop the gateway from starting, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stops the gateway from starting (and `postern check` exits 1).
    Error,
    /// Printed, but the configuration is used.
    Warning,
}

/// One finding about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where the offending value was written.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when that can be said.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {level}: {}", self.origin, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The findings of one load, in the order they were found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records an error at `origin`.
    pub fn error(&mut self, origin: &Origin, message: impl Into<String>) {
        self.push(Severity::Error, origin, message.into(), None);
    }

    /// Records an error at `origin` with how to fix it.
    pub fn error_with_help(
        &mut self,
        origin: &Origin,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, origin, message.into(), Some(help.into()));
    }

    /// Records a warning at `origin`.
    pub fn warning(&mut self, origin: &Origin, message: impl Into<String>) {
        self.push(Severity::Warning, origin, message.into(), None);
    }

    fn push(&mut self, severity: Severity, origin: &Origin, message: String, help: Option<String>) {
        self.items.push(Diagnostic {
            severity,
            origin: origin.clone(),
            message,
            help,
        });
    }

    /// Appends `other`'s findings after these.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// The errors, in the order found.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    /// The warnings, in the order found.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Every finding, in the order found.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The nearest of `candidates` to a misspelt `name`, if one is close enough to
/// be what the operator meant.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(distance, c)| *distance <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let path: Arc<str> = Arc::from("g.toml");
        let text = "a = 1\nbb = 2\n";
        assert_eq!(Origin::in_file(&path, text, 0).to_string(), "g.toml:1:1");
        assert_eq!(Origin::in_file(&path, text, 6).to_string(), "g.toml:2:1");
        assert_eq!(Origin::in_file(&path, text, 11).to_string(), "g.toml:2:6");
    }

    #[test]
    fn nearest_suggests_close_names_only() {
        let keys = ["threads", "trusted_proxies"];
        assert_eq!(nearest("thread", keys), Some("threads"));
        assert_eq!(nearest("trusted_proxy", keys), Some("trusted_proxies"));
        assert_eq!(nearest("colour", keys), None);
    }
}
