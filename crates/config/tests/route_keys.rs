//! Route keys read from a real gateway.toml: `allow_encoded_percent`.

use std::path::Path;

use postern_config::{load, Config};

const BASE: &str = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:9000"

[upstreams.data]
url = "http://127.0.0.1:8880"
"#;

fn load_text(dir: &Path, text: &str) -> Result<Config, String> {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).expect("write gateway.toml");
    load(&path, &[])
        .map(|loaded| loaded.config)
        .map_err(|diags| diags.to_string())
}

#[test]
fn allow_encoded_percent_is_read_per_route_and_defaults_to_false() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load_text(
        dir.path(),
        &format!(
            "{BASE}
[[routes]]
name = \"files\"
path_prefix = \"/files\"
upstream = \"data\"
allow_encoded_percent = true

[[routes]]
name = \"rest\"
upstream = \"data\"
"
        ),
    )
    .expect("config is accepted");
    let flag = |name: &str| {
        config
            .routes
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.allow_encoded_percent)
    };
    assert_eq!(flag("files"), Some(true));
    assert_eq!(flag("rest"), Some(false));
}

#[test]
fn allow_encoded_percent_must_be_a_boolean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let errors = load_text(
        dir.path(),
        &format!(
            "{BASE}
[[routes]]
name = \"files\"
upstream = \"data\"
allow_encoded_percent = \"yes\"
"
        ),
    )
    .expect_err("a string is refused");
    assert!(
        errors.contains("gateway.toml:12:25:")
            && errors
                .contains("`allow_encoded_percent` in [[routes]] \"files\" must be true or false"),
        "{errors}"
    );
}
