//! One reader per section of `gateway.toml`, each beside the keys it accepts.
//!
//! The readers share a [`Reader`]: the findings so far, the directory that
//! relative paths are taken from, and the names whose definition was refused
//! (so [`crate::cross`] does not report references to them a second time).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use postern_policy::source::Allowlist;

use crate::diag::{Diagnostics, Origin};
use crate::fields::Fields;
use crate::model::{Config, Route};
use crate::tree::Table;

pub mod auth;
pub mod client_cert;
pub mod gateway;
mod headers;
mod introspection;
mod jwt;
pub mod limits;
pub mod listeners;
mod pools;
mod route_auth;
pub mod routes;
pub mod tls;
pub mod upstreams;

pub const TOP_LEVEL: &[&str] = &[
    "gateway",
    "listeners",
    "tls",
    "upstreams",
    "auth",
    "limits",
    "routes",
];

/// Names whose definition was refused, and so already reported.
#[derive(Debug, Default)]
pub struct Refused {
    pub upstreams: HashSet<String>,
    pub listeners: HashSet<String>,
    pub auth: HashSet<String>,
    pub limits: HashSet<String>,
}

pub struct Reader<'d> {
    pub diags: &'d mut Diagnostics,
    /// Relative paths are taken from here: the main file's directory.
    pub base_dir: &'d Path,
    pub refused: Refused,
}

impl<'d> Reader<'d> {
    pub fn new(diags: &'d mut Diagnostics, base_dir: &'d Path) -> Self {
        Reader {
            diags,
            base_dir,
            refused: Refused::default(),
        }
    }

    /// Reads every section, in the order a reader of the file expects its
    /// findings: the top level's own keys first, then section by section.
    pub fn config(&mut self, root: &Table, file: PathBuf, overlays: Vec<PathBuf>) -> Config {
        let mut top = Fields::new(root, "the top level", TOP_LEVEL);
        let gateway = self.gateway(top.node("gateway"));
        let listener_tables = top.tables("listeners", self.diags);
        let tls_node = top.node("tls");
        let upstreams_node = top.node("upstreams");
        let auth_node = top.node("auth");
        let limits_node = top.node("limits");
        let route_tables = top.tables("routes", self.diags);
        top.finish(self.diags);

        let listeners = self.listeners(&listener_tables);
        let tls = self.tls(tls_node);
        let upstreams = self.upstreams(upstreams_node);
        let auth = self.authenticators(auth_node);
        let limits = self.limits(limits_node);
        let routes: Vec<Route> = route_tables
            .iter()
            .enumerate()
            .filter_map(|(i, (t, origin))| self.route(i, t, origin))
            .collect();
        Config {
            file,
            overlays,
            gateway,
            listeners,
            tls,
            upstreams,
            auth,
            limits,
            routes,
        }
    }

    /// Source addresses for `key`; bad entries are reported and left out.
    fn allowlist(&mut self, entries: &[(&str, &Origin)], key: &str) -> Allowlist {
        let mut good = Vec::new();
        for (entry, origin) in entries {
            match Allowlist::parse_entry(entry) {
                Ok(_) => good.push(*entry),
                Err(e) => self.diags.error_with_help(
                    origin,
                    format!("`{key}`: {e}"),
                    "write CIDRs such as \"10.0.0.0/8\" or \"fd00::/8\", single addresses, or \"loopback\"",
                ),
            }
        }
        Allowlist::parse(good).expect("entries were checked one by one")
    }

    /// `written`, taken from the base directory, if it is a file that exists.
    fn existing_file(&mut self, written: &str, origin: &Origin, key: &str) -> Option<PathBuf> {
        let path = self.base_dir.join(written);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Some(path),
            Ok(_) => {
                self.diags
                    .error(origin, format!("`{key}` = {written:?} is not a file"));
                None
            }
            Err(e) => {
                self.diags.error_with_help(
                    origin,
                    format!("`{key}` = {written:?}: cannot read {}: {e}", path.display()),
                    "relative paths are taken from the directory of the main config file",
                );
                None
            }
        }
    }
}

/// A name that shows in logs, metrics and URLs: letters, digits, '-', '_'.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{case, plain, run_cases};

    #[test]
    fn plain_names_only() {
        assert!(valid_name("api-v2_internal"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn unknown_top_level_keys_are_named_with_the_nearest_or_the_list() {
        run_cases(vec![
            case(
                "top level, near",
                plain("[[route]]\nname = \"x\"\n"),
                "[[|route]]",
                "unknown key `route` in the top level",
                Some("did you mean `routes`?"),
            ),
            case(
                "top level, far",
                plain("colour = \"blue\"\n"),
                "colour",
                "unknown key `colour` in the top level",
                Some("gateway, listeners, tls, upstreams, auth, limits, routes"),
            ),
            case(
                "a section that is not a table",
                plain("gateway = 3\n"),
                "gateway = |3",
                "[gateway] must be a table, not an integer",
                None,
            ),
        ]);
    }
}
