//! The layers of one configuration: the main file, then `gateway.d/*.toml`
//! beside it in name order, then `POSTERN_<SECTION>__<KEY>` environment
//! overrides, merged into one [`Table`] whose nodes remember their layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostics, Origin};
use crate::tree::{self, Table};

/// The merged tree and the overlay files that went into it, in order.
pub struct Layered {
    pub root: Table,
    pub overlays: Vec<PathBuf>,
}

/// Reads and merges every layer. Problems are added to `diags`; the tree is
/// returned even then, holding whatever could be read.
pub fn read_layers(path: &Path, env: &[(String, String)], diags: &mut Diagnostics) -> Layered {
    let main_name: Arc<str> = Arc::from(path.display().to_string());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.error_with_help(
                &Origin::file_start(&main_name),
                format!("cannot read the config file: {e}"),
                "pass the file with -c FILE, set POSTERN_CONFIG, or run from the directory that holds gateway.toml",
            );
            return Layered {
                root: Table::default(),
                overlays: Vec::new(),
            };
        }
    };
    let mut root = tree::parse_file(&main_name, &text, diags).unwrap_or_default();

    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let overlays = overlay_files(&base_dir, &main_name, diags);
    for overlay in &overlays {
        let name: Arc<str> = Arc::from(overlay.display().to_string());
        match std::fs::read_to_string(overlay) {
            Ok(text) => {
                if let Some(table) = tree::parse_file(&name, &text, diags) {
                    root.merge(table);
                }
            }
            Err(e) => diags.error(
                &Origin::file_start(&name),
                format!("cannot read this overlay: {e}"),
            ),
        }
    }
    tree::apply_env(&mut root, env, diags);
    Layered { root, overlays }
}

/// The `*.toml` files of `gateway.d/` beside the main file, in name order.
fn overlay_files(base_dir: &Path, main_name: &Arc<str>, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let dir = base_dir.join("gateway.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.error(
                &Origin::file_start(main_name),
                format!("cannot read the overlay directory {}: {e}", dir.display()),
            );
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_error_at, error_count, Dir};
    use crate::tree::Value;

    fn threads(root: &Table) -> Option<(i64, String)> {
        let Value::Table(gateway) = &root.get("gateway")?.value else {
            return None;
        };
        let node = gateway.get("threads")?;
        match node.value {
            Value::Integer(n) => Some((n, node.origin.to_string())),
            _ => None,
        }
    }

    #[test]
    fn a_missing_main_file_says_how_to_pass_one() {
        let dir = Dir::new();
        let mut diags = Diagnostics::default();
        let path = dir.path().join("nope.toml");
        read_layers(&path, &[], &mut diags);
        let error = diags.errors().next().expect("an error");
        assert_eq!(error.origin.to_string(), format!("{}:1:1", path.display()));
        assert!(error.message.starts_with("cannot read the config file: "));
        assert!(error.help.as_deref().is_some_and(
            |h| h.contains("pass the file with -c FILE") && h.contains("POSTERN_CONFIG")
        ));
    }

    #[test]
    fn overlays_apply_in_name_order_and_only_toml_files_count() {
        let dir = Dir::new();
        dir.write("gateway.toml", "[gateway]\nthreads = 1\n");
        // Written later-name first, so directory order is unlikely to be name order.
        dir.write("gateway.d/20-b.toml", "[gateway]\nthreads = 3\n");
        dir.write("gateway.d/10-a.toml", "[gateway]\nthreads = 2\n");
        dir.write("gateway.d/README", "this = = is not toml\n");
        let mut diags = Diagnostics::default();
        let layered = read_layers(&dir.main(), &[], &mut diags);
        assert!(diags.is_empty(), "{diags}");
        let overlays: Vec<_> = layered
            .overlays
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(overlays, ["10-a.toml", "20-b.toml"]);
        assert_eq!(
            threads(&layered.root),
            Some((
                3,
                dir.origin(
                    "gateway.d/20-b.toml",
                    "[gateway]\nthreads = 3\n",
                    "threads = |3"
                )
            ))
        );
    }

    #[test]
    fn syntax_errors_in_an_overlay_name_the_overlay() {
        let dir = Dir::new();
        dir.write("gateway.toml", "[gateway]\nthreads = 2\n");
        let overlay = "[gateway]\n\nthreads = = 4\n";
        dir.write("gateway.d/50-bad.toml", overlay);
        let mut diags = Diagnostics::default();
        read_layers(&dir.main(), &[], &mut diags);
        assert_error_at(
            &diags,
            &dir.origin("gateway.d/50-bad.toml", overlay, "threads = |= 4"),
            "this is not valid TOML",
            Some("toml.io"),
        );
        assert_eq!(error_count(&diags), 1, "{diags}");
    }

    #[test]
    fn the_environment_overrides_files_and_overlays() {
        let dir = Dir::new();
        dir.write("gateway.toml", "[gateway]\nthreads = 1\n");
        dir.write("gateway.d/10-a.toml", "[gateway]\nthreads = 2\n");
        let env = [("POSTERN_GATEWAY__THREADS".to_string(), "4".to_string())];
        let mut diags = Diagnostics::default();
        let layered = read_layers(&dir.main(), &env, &mut diags);
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(
            threads(&layered.root),
            Some((
                4,
                "environment variable POSTERN_GATEWAY__THREADS".to_string()
            ))
        );
    }
}
