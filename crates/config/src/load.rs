//! Loading a configuration: the layers are read and merged
//! ([`crate::layers`]), each section is given types ([`crate::sections`]),
//! and the pieces are checked against each other ([`crate::cross`]). Every
//! problem found is reported, not just the first.

use std::path::Path;
use std::sync::Arc;

use crate::cross::cross_check;
use crate::diag::{Diagnostics, Origin};
use crate::layers::read_layers;
use crate::model::Config;
use crate::sections::auth::{BASIC_KEYS, CLIENT_CERT_KEYS, INTROSPECTION_KEYS, JWT_KEYS};
use crate::sections::gateway::GATEWAY_KEYS;
use crate::sections::limits::LIMIT_KEYS;
use crate::sections::listeners::LISTENER_KEYS;
use crate::sections::routes::ROUTE_KEYS;
use crate::sections::tls::{CERTIFICATE_KEYS, TLS_KEYS};
use crate::sections::upstreams::{HEALTH_KEYS, UPSTREAM_KEYS};
use crate::sections::{Reader, TOP_LEVEL};

/// Every key the loader accepts, by section, so documentation can be
/// checked against the parser (see tests/docs.rs).
pub fn accepted_keys() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("top level", TOP_LEVEL),
        ("[gateway]", GATEWAY_KEYS),
        ("[[listeners]]", LISTENER_KEYS),
        ("[tls]", TLS_KEYS),
        ("[[tls.certificates]]", CERTIFICATE_KEYS),
        ("[upstreams.NAME]", UPSTREAM_KEYS),
        ("[upstreams.NAME.health]", HEALTH_KEYS),
        ("[auth.NAME] type = \"jwt\"", JWT_KEYS),
        ("[auth.NAME] type = \"basic\"", BASIC_KEYS),
        ("[auth.NAME] type = \"client_cert\"", CLIENT_CERT_KEYS),
        ("[limits.NAME]", LIMIT_KEYS),
        ("[auth.NAME] type = \"introspection\"", INTROSPECTION_KEYS),
        ("[[routes]]", ROUTE_KEYS),
    ]
}

/// A loaded configuration and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration, valid.
    pub config: Config,
    /// Warnings found while loading it (no errors: those fail the load).
    pub warnings: Diagnostics,
}

/// Loads `path`, the `gateway.d/*.toml` files beside it, and `POSTERN_*`
/// overrides from `env`. Returns every error found, or the config.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, Diagnostics> {
    let mut diags = Diagnostics::default();
    let layered = read_layers(path, env, &mut diags);
    // A layer that cannot be read would make every finding below a guess.
    if diags.has_errors() {
        return Err(diags);
    }

    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let main = Origin::file_start(&Arc::from(path.display().to_string()));
    let mut reader = Reader::new(&mut diags, &base_dir);
    let config = reader.config(&layered.root, path.to_path_buf(), layered.overlays);
    let refused = reader.refused;
    cross_check(&config, &refused, &main, &mut diags);
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(Loaded {
            config,
            warnings: diags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn accepted_keys_name_every_section_once() {
        let sections: Vec<&str> = accepted_keys().iter().map(|(s, _)| *s).collect();
        assert_eq!(
            sections,
            [
                "top level",
                "[gateway]",
                "[[listeners]]",
                "[tls]",
                "[[tls.certificates]]",
                "[upstreams.NAME]",
                "[upstreams.NAME.health]",
                "[auth.NAME] type = \"jwt\"",
                "[auth.NAME] type = \"basic\"",
                "[auth.NAME] type = \"client_cert\"",
                "[limits.NAME]",
                "[auth.NAME] type = \"introspection\"",
                "[[routes]]",
            ]
        );
    }

    #[test]
    fn the_shipped_config_loads_and_the_environment_moves_a_listener() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gateway.toml");
        let env = [(
            "POSTERN_LISTENERS__HTTPS__ADDRESS".to_string(),
            "127.0.0.1:1".to_string(),
        )];
        let config = accepted(load(&shipped, &env), "shipped gateway.toml").config;
        let listeners: Vec<_> = config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.address.to_string()))
            .collect();
        assert_eq!(
            listeners,
            [
                ("https", "127.0.0.1:1".to_string()),
                ("http", "127.0.0.1:8080".to_string()),
                ("ops", "127.0.0.1:9180".to_string()),
            ]
        );
        let mut routes: Vec<_> = config.routes.iter().map(|r| r.name.as_str()).collect();
        routes.sort();
        assert_eq!(
            routes,
            [
                "admin-ui",
                "api",
                "domino",
                "health",
                "keep",
                "login",
                "management",
                "metrics",
                "oauth",
                "openapi",
                "postern-admin",
                "postern-health",
                "postern-metrics",
                "setup",
                "well-known",
            ]
        );
    }

    #[test]
    fn toml_syntax_errors() {
        run_cases(vec![
            case(
                "extra =",
                "[gateway]\nthreads = = 2\n".to_string(),
                "threads = |= 2",
                "this is not valid TOML",
                Some("toml.io"),
            ),
            case(
                "duplicate key",
                plain("[gateway]\nthreads = 2\nthreads = 3\n"),
                "threads = 3",
                "this is not valid TOML",
                Some("toml.io"),
            ),
        ]);
    }

    #[test]
    fn every_error_in_a_file_is_reported_in_file_order() {
        let toml = r#"[gateway]
threads = 0
colour = "red"

[[listeners]]
name = "web"
address = "127.0.0.1:9000"

[upstreams.data]
url = "http://127.0.0.1:8880"
connect_timeout = "2"

[[routes]]
name = "r"
path_prefix = "/api/"
upstream = "data"

[[routes]] # s
name = "s"
upstream = "dta"
allow = ["10.0.0.0/33"]
"#;
        let dir = Dir::new();
        let diags = rejected(dir.load(toml, &[]), "six errors");
        let expected = [
            ("threads = |0", "`threads` = 0 is out of range"),
            ("colour", "unknown key `colour` in [gateway]"),
            ("connect_timeout = |\"2\"", "has no unit"),
            ("path_prefix = |\"/api/\"", "is not in canonical form"),
            ("|\"10.0.0.0/33\"", "is not a CIDR"),
            (
                "[[routes]] # s",
                "names upstream \"dta\", which is not defined",
            ),
        ];
        let got: Vec<(String, &str)> = diags
            .errors()
            .map(|d| (d.origin.to_string(), d.message.as_str()))
            .collect();
        assert_eq!(got.len(), expected.len(), "{diags}");
        for ((origin, message), (at, want)) in got.iter().zip(expected) {
            assert_eq!(*origin, dir.origin("gateway.toml", toml, at), "{diags}");
            assert!(message.contains(want), "{message:?} lacks {want:?}");
        }
    }

    #[test]
    fn an_overlay_overrides_threads_and_replaces_trusted_proxies() {
        let dir = Dir::new();
        let main = plain("[gateway]\nthreads = 0\ntrusted_proxies = [\"not-a-cidr\"]\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\n");
        // Without the overlay, both values are wrong.
        let diags = rejected(dir.load(&main, &[]), "main file alone");
        assert_eq!(error_count(&diags), 2, "{diags}");
        // The overlay sets threads and replaces the array: were the arrays
        // concatenated, "not-a-cidr" would still be there.
        dir.write(
            "gateway.d/10-site.toml",
            "[gateway]\nthreads = 4\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        );
        let config = accepted(dir.load(&main, &[]), "with the overlay").config;
        assert_eq!(config.gateway.threads, 4);
        assert_eq!(config.gateway.trusted_proxies.entries(), ["10.0.0.0/8"]);
        assert_eq!(config.overlays, [dir.path().join("gateway.d/10-site.toml")]);
    }

    #[test]
    fn overlay_errors_name_the_overlay() {
        let cases: &[(&str, &str, &str, &str, Option<&str>)] = &[
            (
                "wrong type",
                "# site settings\n[gateway]\nthreads = \"many\"\n",
                "threads = |\"many\"",
                "`threads` in [gateway] must be an integer",
                None,
            ),
            (
                "unknown key",
                "[gateway]\nthread = 4\n",
                "thread = 4",
                "unknown key `thread` in [gateway]",
                Some("did you mean `threads`?"),
            ),
            (
                "TOML syntax",
                "[gateway]\n\nthreads = = 4\n",
                "threads = |= 4",
                "this is not valid TOML",
                Some("toml.io"),
            ),
        ];
        for (name, overlay, at, message, help) in cases {
            let dir = Dir::new();
            dir.write("gateway.d/50-bad.toml", overlay);
            let diags = rejected(dir.load(&plain("[gateway]\nthreads = 2\n"), &[]), name);
            let origin = dir.origin("gateway.d/50-bad.toml", overlay, at);
            assert_error_at(&diags, &origin, message, *help);
            assert_eq!(error_count(&diags), 1, "{name}\n{diags}");
        }
    }

    #[test]
    fn overlays_apply_in_name_order() {
        let dir = Dir::new();
        dir.write(
            "gateway.d/20-b.toml",
            "[upstreams.data]\nurl = \"http://127.0.0.1:7002\"\n",
        )
        .write(
            "gateway.d/10-a.toml",
            "[upstreams.data]\nurl = \"http://127.0.0.1:7001\"\n",
        )
        .write("gateway.d/README", "this = = is not toml\n");
        let text = plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\n");
        let config = accepted(dir.load(&text, &[]), "two overlays").config;
        assert_eq!(
            config.upstream("data").unwrap().url,
            "http://127.0.0.1:7002"
        );

        // The same, seen through errors: only the later file's bad value counts.
        let dir = Dir::new();
        dir.write("gateway.d/10-a.toml", "[gateway]\nthreads = 0\n")
            .write("gateway.d/20-b.toml", "[gateway]\nthreads = 3\n");
        accepted(dir.load(&plain(""), &[]), "20-b.toml fixes 10-a.toml");

        let dir = Dir::new();
        dir.write("gateway.d/10-a.toml", "[gateway]\nthreads = 3\n")
            .write("gateway.d/20-b.toml", "[gateway]\nthreads = 0\n");
        let diags = rejected(dir.load(&plain(""), &[]), "20-b.toml breaks 10-a.toml");
        assert_error_at(
            &diags,
            &format!("{}:2:11", dir.path().join("gateway.d/20-b.toml").display()),
            "`threads` = 0 is out of range",
            Some("use 1 to 1024"),
        );
    }

    #[test]
    fn an_env_override_of_threads_is_applied() {
        let dir = Dir::new();
        let text = plain("[gateway]\nthreads = 0\n");
        rejected(dir.load(&text, &[]), "threads = 0 in the file");
        let config = accepted(
            dir.load(&text, &[("POSTERN_GATEWAY__THREADS", "4")]),
            "POSTERN_GATEWAY__THREADS=4",
        )
        .config;
        assert_eq!(config.gateway.threads, 4);
    }

    #[test]
    fn env_override_errors_name_the_variable() {
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (
                "threads = zero",
                "",
                "POSTERN_GATEWAY__THREADS",
                "zero",
                "`threads` in [gateway] must be an integer",
            ),
            (
                "threads = 0",
                "",
                "POSTERN_GATEWAY__THREADS",
                "0",
                "`threads` = 0 is out of range",
            ),
            (
                "misspelt key",
                "",
                "POSTERN_GATEWAY__THREAD",
                "4",
                "unknown key `thread` in [gateway]",
            ),
            (
                "route that does not exist",
                "[[routes]]\nname = \"api\"\nupstream = \"data\"\n",
                "POSTERN_ROUTES__NOPE__DENY",
                "true",
                "no [[routes]] entry with name",
            ),
            (
                "route that does not exist, in a file without routes",
                "",
                "POSTERN_ROUTES__NOPE__DENY",
                "true",
                "no [[routes]] entry with name",
            ),
        ];
        for (name, extra, variable, value, message) in cases {
            let dir = Dir::new();
            let diags = rejected(dir.load(&plain(extra), &[(variable, value)]), name);
            let origin = format!("environment variable {variable}");
            assert_error_at(&diags, &origin, message, None);
            assert_eq!(error_count(&diags), 1, "{name}\n{diags}");
        }
    }
}
