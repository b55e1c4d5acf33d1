//! Documentation kept true to the code: every key the config loader accepts
//! is described in docs/configuration.md, and every doc page the README
//! links to exists.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_accepted_key_is_in_the_configuration_reference() {
    let reference = std::fs::read_to_string(repo().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let mut missing = Vec::new();
    for (section, keys) in postern_config::accepted_keys() {
        for key in keys {
            // As a table cell or inline code: `key`, `certificates[].key`, `health.key`.
            let documented = [
                format!("`{key}`"),
                format!("`certificates[].{key}`"),
                format!("`health.{key}`"),
                format!("[{key}]"),
            ]
            .iter()
            .any(|form| reference.contains(form.as_str()));
            if !documented {
                missing.push(format!("{section} {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the parser accepts but docs/configuration.md does not describe: {missing:?}"
    );
}

#[test]
fn readme_links_resolve() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut broken = Vec::new();
    for (start, _) in readme.match_indices("](") {
        let rest = &readme[start + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap_or("");
        if target.is_empty() || target.contains("://") {
            continue;
        }
        if !repo().join(target).exists() {
            broken.push(target.to_string());
        }
    }
    assert!(
        broken.is_empty(),
        "README links to missing files: {broken:?}"
    );
}
