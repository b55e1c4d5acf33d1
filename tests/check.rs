//! `postern check`, end to end: the binary is run on small configs written to
//! a temporary directory, and its exit code, route table and diagnostics are
//! compared with the contract in README.md ("Commands") and
//! docs/configuration.md: exit 0 ok, 1 bad config, 2 usage; every error printed as
//! `FILE:LINE:COL: error: MESSAGE`, followed by `  help: ...` when there is a
//! fix; nothing panics. Most single error cases are unit tests of the
//! loader, beside each section's reader in crates/config; these keep what
//! only the binary shows: exit codes, the printed route table, and the
//! rendered positions of errors that come from outside the loader
//! (certificates, keys, hashes) or from overlays and the environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{date_time_ymd, CertificateParams, KeyPair};
use tempfile::TempDir;

use crate::support::postern_command;

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// What one run of `postern` gave.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `postern ARGS` in `cwd`, with every inherited `POSTERN_*` variable
/// removed and only `env` set. Whatever the outcome, nothing may panic.
fn postern(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = postern_command();
    cmd.args(args).current_dir(cwd);
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("the postern binary runs");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stdout.contains("panicked"),
        "postern {args:?} panicked\n{}",
        run.show()
    );
    assert!(
        run.code.is_some(),
        "postern {args:?} was killed by a signal\n{}",
        run.show()
    );
    run
}

/// The shipped sample configuration.
fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml")
}

/// A temporary directory to run `postern check` in.
struct Workdir {
    dir: TempDir,
}

impl Workdir {
    fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    /// `postern check -c gateway.toml`, run from this directory.
    fn check(&self, env: &[(&str, &str)]) -> Run {
        postern(self.path(), &["check", "-c", "gateway.toml"], env)
    }

    /// Certificate material for the TLS cases:
    /// - `cert.pem` + `key.pem`: a valid pair for "localhost";
    /// - `other-key.pem`: a key that belongs to no certificate;
    /// - `expired.pem` + `expired-key.pem`: a pair that expired in 2001;
    /// - `future.pem` + `future-key.pem`: a pair not valid before 2200;
    /// - `encrypted-key.pem`: `key.pem`, password-protected;
    /// - `garbage.pem`: no PEM at all; `bad-pem.pem`: a certificate block that is not base64.
    fn write_tls_files(&self) {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed cert");
        self.write("cert.pem", &cert.pem());
        self.write("key.pem", &key.serialize_pem());

        let other = KeyPair::generate().expect("key");
        self.write("other-key.pem", &other.serialize_pem());

        let old_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        let expired = params.self_signed(&old_key).expect("expired cert");
        self.write("expired.pem", &expired.pem());
        self.write("expired-key.pem", &old_key.serialize_pem());

        let future_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = date_time_ymd(2200, 1, 1);
        params.not_after = date_time_ymd(2201, 1, 1);
        let future = params.self_signed(&future_key).expect("future cert");
        self.write("future.pem", &future.pem());
        self.write("future-key.pem", &future_key.serialize_pem());

        self.write("garbage.pem", "this is not a PEM file\n");
        self.write(
            "bad-pem.pem",
            "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
        );
        self.write_encrypted_key();
    }

    /// `key.pem` encrypted with `openssl`, or, where there is no openssl, a
    /// block with the header such a file has.
    fn write_encrypted_key(&self) {
        let made = Command::new("openssl")
            .args([
                "pkcs8",
                "-topk8",
                "-in",
                "key.pem",
                "-out",
                "encrypted-key.pem",
                "-passout",
                "pass:secret",
                "-v2",
                "aes-256-cbc",
            ])
            .current_dir(self.path())
            .output()
            .is_ok_and(|o| o.status.success());
        let written = std::fs::read_to_string(self.path().join("encrypted-key.pem"))
            .is_ok_and(|t| t.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        if !(made && written) {
            self.write(
                "encrypted-key.pem",
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
                 MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhoZW5jcnlwdAICCAAw\n\
                 DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEAAAAAAAAAAAAAAAAAAAAAAEQAAA\n\
                 -----END ENCRYPTED PRIVATE KEY-----\n",
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the output
// ---------------------------------------------------------------------------

/// `LINE:COL` of `needle` in `text` (first occurrence, 1-based, columns in
/// characters). A `|` in the needle marks the column meant; without one the
/// needle's first character is meant.
fn position(text: &str, needle: &str) -> String {
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

/// Is `line` one the contract allows on stderr: `FILE:LINE:COL: error: ...`
/// (or a warning), `environment variable NAME: error: ...`, a `  help:` line,
/// or the closing count?
fn well_formed(line: &str) -> bool {
    if line.is_empty() || line.starts_with("  help: ") || line.ends_with("nothing was started") {
        return true;
    }
    let Some((origin, _)) = line
        .split_once(": error: ")
        .or_else(|| line.split_once(": warning: "))
    else {
        return false;
    };
    if let Some(variable) = origin.strip_prefix("environment variable ") {
        return variable.starts_with("POSTERN_");
    }
    let mut parts = origin.rsplitn(3, ':');
    let column = parts.next().unwrap_or("");
    let line_no = parts.next().unwrap_or("");
    let file = parts.next().unwrap_or("");
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s != "0";
    !file.is_empty() && number(line_no) && number(column)
}

/// The run failed the way a bad config must: exit 1, nothing on stdout, and
/// every stderr line in the `file:line:col: error:` shape.
fn assert_rejected(run: &Run, context: &str) {
    assert_eq!(run.code, Some(1), "{context}: exit code\n{}", run.show());
    assert!(
        run.stdout.trim().is_empty(),
        "{context}: a rejected config prints nothing on stdout\n{}",
        run.show()
    );
    assert!(
        run.stderr.contains(": error: "),
        "{context}: no error reported\n{}",
        run.show()
    );
    for line in run.stderr.lines() {
        assert!(
            well_formed(line),
            "{context}: stderr line is not `FILE:LINE:COL: error: MESSAGE`: {line:?}\n{}",
            run.show()
        );
    }
}

/// Among the errors of `run`, one is at `origin` (e.g. "gateway.toml:3:7"),
/// says `message`, and is followed by a help line that says `help`.
fn assert_error_at(run: &Run, origin: &str, message: &str, help: Option<&str>, context: &str) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    let prefix = format!("{origin}: error: ");
    let found = lines.iter().enumerate().find(|(i, line)| {
        line.starts_with(&prefix)
            && line.contains(message)
            && help.is_none_or(|h| {
                lines
                    .get(i + 1)
                    .is_some_and(|next| next.starts_with("  help: ") && next.contains(h))
            })
    });
    assert!(
        found.is_some(),
        "{context}: expected `{prefix}...{message}...`{}\n{}",
        help.map_or(String::new(), |h| format!(" with `  help: ...{h}...`")),
        run.show()
    );
}

/// How many errors were printed.
fn error_count(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .count()
}

/// The run succeeded: exit 0, the route table, and the closing OK.
fn assert_accepted(run: &Run, context: &str) {
    assert_eq!(run.code, Some(0), "{context}: exit code\n{}", run.show());
    assert!(
        run.stdout.trim_end().ends_with(": OK"),
        "{context}: no OK line\n{}",
        run.show()
    );
    assert!(
        !run.stderr.contains("error"),
        "{context}: errors on an accepted config\n{}",
        run.show()
    );
}

/// The route names in the printed route table.
fn route_names(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("routes"))
        .skip(2) // the "routes (...)" title and the column header
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The `name address` pairs in the printed listener table.
fn listener_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("listeners:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Config building blocks
// ---------------------------------------------------------------------------

/// A plain listener and one upstream: valid on its own. Cases put their own
/// text *before* it, so the first occurrence of a needle is in the case's text.
const PLAIN: &str = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:9000"

[upstreams.data]
url = "http://127.0.0.1:8880"
"#;

/// A TLS listener; the case supplies the `[[tls.certificates]]`.
const TLS_LISTENER: &str = r#"
[[listeners]]
name = "https"
address = "127.0.0.1:8443"
tls = true
"#;

fn plain(extra: &str) -> String {
    format!("{extra}\n{PLAIN}")
}

/// `extra`, then one certificate entry using `cert` and `key`, then a TLS
/// listener and the plain base.
fn with_cert(extra: &str, cert: &str, key: &str) -> String {
    format!(
        "{extra}\n[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"{cert}\"\nkey = \"{key}\"\n{TLS_LISTENER}{PLAIN}"
    )
}

/// One bad config and the one error it must produce.
struct Case {
    name: &'static str,
    toml: String,
    /// Write the certificate files of [`Workdir::write_tls_files`] too.
    tls: bool,
    /// Where the error points, as a needle into `toml` (see [`position`]).
    at: &'static str,
    message: &'static str,
    help: Option<&'static str>,
}

fn case(
    name: &'static str,
    toml: String,
    at: &'static str,
    message: &'static str,
    help: Option<&'static str>,
) -> Case {
    Case {
        name,
        toml,
        tls: false,
        at,
        message,
        help,
    }
}

fn tls_case(
    name: &'static str,
    toml: String,
    at: &'static str,
    message: &'static str,
    help: Option<&'static str>,
) -> Case {
    Case {
        tls: true,
        ..case(name, toml, at, message, help)
    }
}

fn run_cases(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let dir = Workdir::new();
        if c.tls {
            dir.write_tls_files();
        }
        dir.write("gateway.toml", &c.toml);
        let run = dir.check(&[]);
        let origin = format!("gateway.toml:{}", position(&c.toml, c.at));
        let outcome = std::panic::catch_unwind(|| {
            assert_rejected(&run, c.name);
            assert_error_at(&run, &origin, c.message, c.help, c.name);
        });
        if outcome.is_err() {
            failures.push(c.name);
        }
    }
    assert!(failures.is_empty(), "failing cases: {failures:?}");
}

// ---------------------------------------------------------------------------
// Accepted configurations
// ---------------------------------------------------------------------------

const SHIPPED_ROUTES: &[&str] = &[
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
];

fn assert_shipped_table(run: &Run, context: &str) {
    assert_accepted(run, context);
    assert_eq!(
        route_names(&run.stdout),
        SHIPPED_ROUTES,
        "{context}\n{}",
        run.show()
    );
    let listeners = listener_lines(&run.stdout);
    assert_eq!(
        listeners,
        [
            ("https".to_string(), "127.0.0.1:8443".to_string()),
            ("http".to_string(), "127.0.0.1:8080".to_string()),
            ("ops".to_string(), "127.0.0.1:9180".to_string())
        ],
        "{context}\n{}",
        run.show()
    );
}

#[test]
fn shipped_config_is_accepted_with_dash_c() {
    let dir = Workdir::new();
    let config = repo_config();
    let run = postern(dir.path(), &["check", "-c", config.to_str().unwrap()], &[]);
    assert_shipped_table(&run, "check -c <repo>/gateway.toml");
    assert!(
        run.stdout
            .trim_end()
            .ends_with(&format!("{}: OK", config.display())),
        "{}",
        run.show()
    );
}

#[test]
fn shipped_config_is_found_through_postern_config() {
    let dir = Workdir::new();
    let config = repo_config();
    let run = postern(
        dir.path(),
        &["check"],
        &[("POSTERN_CONFIG", config.to_str().unwrap())],
    );
    assert_shipped_table(&run, "POSTERN_CONFIG=<repo>/gateway.toml postern check");
}

#[test]
fn dash_c_wins_over_postern_config() {
    let dir = Workdir::new();
    let config = repo_config();
    let run = postern(
        dir.path(),
        &["check", "-c", config.to_str().unwrap()],
        &[("POSTERN_CONFIG", "does-not-exist.toml")],
    );
    assert_shipped_table(&run, "-c beats POSTERN_CONFIG");
}

#[test]
fn gateway_toml_in_the_current_directory_is_the_default() {
    let dir = Workdir::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo_config()).unwrap();
    dir.write("gateway.toml", &text);
    for pem in ["dev-fullchain.pem", "dev-key.pem"] {
        let body = std::fs::read_to_string(repo.join("certs").join(pem)).unwrap();
        dir.write(&format!("certs/{pem}"), &body);
    }
    let run = postern(dir.path(), &["check"], &[]);
    assert_shipped_table(&run, "plain `postern check` beside gateway.toml");
    assert!(
        run.stdout.trim_end().ends_with("gateway.toml: OK"),
        "{}",
        run.show()
    );
}

#[test]
fn valid_variants_are_accepted() {
    let cases: &[(&str, String, &str)] = &[
        (
            "same host and prefix on disjoint listeners",
            r#"
[[listeners]]
name = "web"
address = "127.0.0.1:9000"

[[listeners]]
name = "ops"
address = "127.0.0.1:9001"

[upstreams.data]
url = "http://127.0.0.1:8880"

[[routes]]
name = "public-metrics"
path_prefix = "/metrics"
deny = true
listeners = ["web"]

[[routes]]
name = "ops-metrics"
path_prefix = "/metrics"
upstream = "data"
listeners = ["ops"]
"#
            .to_string(),
            "ops-metrics",
        ),
        (
            "allow = [\"loopback\"]",
            plain("[[routes]]\nname = \"local\"\nupstream = \"data\"\nallow = [\"loopback\", \"10.0.0.0/8\"]\n"),
            "allow loopback",
        ),
        (
            "https upstream and durations",
            plain("[upstreams.secure]\nurl = \"https://127.0.0.1:8443\"\nconnect_timeout = \"500ms\"\nread_timeout = \"5m\"\n\n[[routes]]\nname = \"s\"\nupstream = \"secure\"\n"),
            "https://127.0.0.1:8443",
        ),
        (
            "bracketed IPv6 upstream with a port",
            plain("[upstreams.v6]\nurl = \"http://[::1]:8880\"\n\n[[routes]]\nname = \"v6\"\nupstream = \"v6\"\n"),
            "http://[::1]:8880",
        ),
    ];
    let mut failures = Vec::new();
    for (name, toml, shown) in cases {
        let dir = Workdir::new();
        dir.write("gateway.toml", toml);
        let run = dir.check(&[]);
        let ok = std::panic::catch_unwind(|| {
            assert_accepted(&run, name);
            assert!(
                run.stdout.contains(shown),
                "{name}: table lacks {shown:?}\n{}",
                run.show()
            );
        });
        if ok.is_err() {
            failures.push(*name);
        }
    }
    assert!(failures.is_empty(), "rejected valid configs: {failures:?}");
}

// ---------------------------------------------------------------------------
// One error per config, at the right place
// ---------------------------------------------------------------------------

#[test]
fn certificate_problems() {
    run_cases(vec![
        tls_case(
            "certificate file missing",
            with_cert("", "missing.pem", "key.pem"),
            "cert = |\"missing.pem\"",
            "`cert` = \"missing.pem\": cannot read",
            Some("relative paths are taken from the directory of the main config file"),
        ),
        tls_case(
            "key file missing",
            with_cert("", "cert.pem", "missing-key.pem"),
            "key = |\"missing-key.pem\"",
            "`key` = \"missing-key.pem\": cannot read",
            Some("relative paths are taken from the directory of the main config file"),
        ),
        tls_case(
            "key of another certificate",
            with_cert("", "cert.pem", "other-key.pem"),
            "[[tls.certificates]]",
            "private key other-key.pem does not belong to certificate cert.pem",
            Some("give the key that was generated with this certificate"),
        ),
        tls_case(
            "encrypted key",
            with_cert("", "cert.pem", "encrypted-key.pem"),
            "[[tls.certificates]]",
            "private key encrypted-key.pem is encrypted",
            Some("openssl pkey"),
        ),
        tls_case(
            "expired certificate",
            with_cert("", "expired.pem", "expired-key.pem"),
            "[[tls.certificates]]",
            "certificate expired.pem has expired",
            Some("renew it"),
        ),
        tls_case(
            "certificate not valid yet",
            with_cert("", "future.pem", "future-key.pem"),
            "[[tls.certificates]]",
            "certificate future.pem is not valid until 2200",
            Some("clock"),
        ),
        tls_case(
            "certificate file without PEM",
            with_cert("", "garbage.pem", "key.pem"),
            "[[tls.certificates]]",
            "garbage.pem holds no certificate",
            Some("-----BEGIN CERTIFICATE-----"),
        ),
        tls_case(
            "certificate block that is not base64",
            with_cert("", "bad-pem.pem", "key.pem"),
            "[[tls.certificates]]",
            "certificate bad-pem.pem is not valid PEM",
            Some("-----BEGIN CERTIFICATE-----"),
        ),
        tls_case(
            "key file without PEM",
            with_cert("", "cert.pem", "garbage.pem"),
            "[[tls.certificates]]",
            "garbage.pem holds no usable private key",
            Some("PKCS#8"),
        ),
        tls_case(
            "certificate entry without key",
            format!("[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"cert.pem\"\n{TLS_LISTENER}{PLAIN}"),
            "[[tls.certificates]]",
            "[[tls.certificates]] #1 needs both `cert` and `key`",
            Some("key = \"certs/privkey.pem\""),
        ),
    ]);
}

/// Authenticators are checked the way everything else is: the error points
/// at the line that is wrong and says how to fix it, and no IdP is needed.
#[test]
fn authenticator_problems() {
    let jwt = |body: &str| plain(&format!("[auth.idp]\ntype = \"jwt\"\n{body}"));
    run_cases(vec![
        case(
            "require on a basic-auth route",
            plain("[auth.ops]\ntype = \"basic\"\nusers = { admin = \"$argon2id$v=19$m=19456,t=2,p=1$pVqmGEuwUbCGmUrK2XnzAA$+g3Q/xr5JxVS9OCH7lnqvtN89TjolZHHgpvVD9SzuPc\" }\n\n[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"ops\"\nrequire = { scope = [\"$SETUP\"] }\n"),
            "require = |{",
            "route \"r\" has `require`, but only \"ops\" (basic): no authenticator of it carries token claims",
            Some("add a type = \"jwt\" or type = \"introspection\" authenticator to the route's `auth`, or remove `require`"),
        ),
        case(
            "introspection secret not in the environment",
            plain("[auth.opaque]\ntype = \"introspection\"\nintrospection_url = \"https://idp.example.com/introspect\"\nclient_id = \"postern\"\nclient_secret_env = \"POSTERN_TEST_UNSET_SECRET\"\n"),
            "|[auth.opaque]",
            "[auth.opaque]: environment variable POSTERN_TEST_UNSET_SECRET (client_secret_env) is not set",
            Some("export POSTERN_TEST_UNSET_SECRET"),
        ),
        case(
            "basic auth without accounts",
            plain("[auth.ops]\ntype = \"basic\"\nrealm = \"management\"\n"),
            "|[auth.ops]",
            "[auth.ops] has no accounts",
            Some("postern hash-password"),
        ),
        case(
            "plaintext password",
            plain("[auth.ops]\ntype = \"basic\"\nusers = { admin = \"hunter2\" }\n"),
            "admin = |\"hunter2\"",
            "the password of user \"admin\" is not a password hash",
            Some("`postern hash-password` (argon2id) or `htpasswd -B` (bcrypt)"),
        ),
        case(
            "htpasswd MD5 hash inline",
            plain("[auth.ops]\ntype = \"basic\"\nusers = { admin = \"$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\" }\n"),
            "admin = |\"$apr1$",
            "MD5",
            Some("htpasswd -B"),
        ),
        case(
            "SHA-1 hash inline",
            plain("[auth.ops]\ntype = \"basic\"\nusers = { admin = \"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\" }\n"),
            "admin = |\"{SHA}",
            "SHA-1",
            Some("postern hash-password"),
        ),
        case(
            "unknown authenticator type",
            plain("[auth.ops]\ntype = \"ldap\"\n"),
            "type = |\"ldap\"",
            "unknown `type`",
            Some("type = \"jwt\", type = \"introspection\", type = \"basic\" or type = \"client_cert\""),
        ),
        case(
            "route names an undefined authenticator",
            plain("[[routes]]\nname = \"r\"\nupstream = \"data\"\nauth = \"ops\"\n"),
            "|[[routes]]",
            "route \"r\" names authenticator \"ops\", which is not defined",
            Some("add [auth.ops]"),
        ),
        case(
            "jwt without a key source",
            jwt("audiences = [\"Domino\"]\n"),
            "|[auth.idp]",
            "[auth.idp] has no key source",
            Some("jwks_url"),
        ),
        case(
            "jwt with two key sources",
            jwt("jwks_url = \"https://idp.example.com/certs\"\nsecret_env = \"POSTERN_TEST_UNSET\"\n"),
            "|[auth.idp]",
            "more than one key source",
            Some("exactly one of"),
        ),
        case(
            "alg none",
            jwt("jwks_url = \"https://idp.example.com/certs\"\nalgorithms = [\"RS256\", \"none\"]\n"),
            "\"RS256\", |\"none\"",
            "algorithm \"none\" is never accepted",
            Some("remove it"),
        ),
        case(
            "HMAC algorithm with public keys",
            jwt("jwks_url = \"https://idp.example.com/certs\"\nalgorithms = [\"HS256\"]\n"),
            "algorithms = [|\"HS256\"]",
            "algorithm HS256 does not fit this key source",
            Some("HS* algorithms need secret_env"),
        ),
        case(
            "jwks_url that is not http(s)",
            jwt("jwks_url = \"ftp://idp.example.com/certs\"\n"),
            "jwks_url = |\"ftp:",
            "is not an http:// or https:// URL",
            None,
        ),
        case(
            "secret_env not set",
            jwt("secret_env = \"POSTERN_TEST_SECRET_THAT_IS_NOT_SET\"\n"),
            "|[auth.idp]",
            "environment variable POSTERN_TEST_SECRET_THAT_IS_NOT_SET (secret_env) is not set",
            Some("export POSTERN_TEST_SECRET_THAT_IS_NOT_SET"),
        ),
        case(
            "claim copied into Authorization",
            jwt("jwks_url = \"https://idp.example.com/certs\"\nclaims_to_headers = { sub = \"Authorization\" }\n"),
            "sub = |\"Authorization\"",
            "cannot carry a claim",
            Some("X-Auth-Subject"),
        ),
        case(
            "missing static key file",
            jwt("keys = [\"nope.pem\"]\n"),
            "keys = [|\"nope.pem\"]",
            "nope.pem",
            None,
        ),
    ]);
}

// ---------------------------------------------------------------------------
// Errors that must not drag in other, false ones
// ---------------------------------------------------------------------------

/// `http://[::1]` is a complete URL (port 80, as for `http://127.0.0.1`);
/// it must not be refused as a "bad port".
#[test]
fn ipv6_upstream_without_a_port_is_accepted() {
    let dir = Workdir::new();
    dir.write(
        "gateway.toml",
        &plain("[upstreams.v6]\nurl = \"http://[::1]\"\n\n[[routes]]\nname = \"v6\"\nupstream = \"v6\"\n"),
    );
    let run = dir.check(&[]);
    assert_accepted(&run, "url = \"http://[::1]\"");
    assert!(run.stdout.contains("http://[::1]"), "{}", run.show());
}

// ---------------------------------------------------------------------------
// Several errors at once
// ---------------------------------------------------------------------------

#[test]
fn every_error_in_a_file_is_reported() {
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
    let dir = Workdir::new();
    dir.write("gateway.toml", toml);
    let run = dir.check(&[]);
    assert_rejected(&run, "six errors");
    let expected = [
        ("threads = |0", "`threads` = 0 is out of range"),
        ("colour", "unknown key `colour` in [gateway]"),
        ("connect_timeout = |\"2\"", "has no unit"),
        ("path_prefix = |\"/api/\"", "is not in canonical form"),
        (
            "[[routes]] # s",
            "names upstream \"dta\", which is not defined",
        ),
        ("|\"10.0.0.0/33\"", "is not a CIDR"),
    ];
    for (at, message) in expected {
        let origin = format!("gateway.toml:{}", position(toml, at));
        assert_error_at(&run, &origin, message, None, "six errors");
    }
    assert_eq!(error_count(&run), expected.len(), "{}", run.show());
    assert!(
        run.stderr.contains("gateway.toml: 6 error(s)"),
        "the closing count\n{}",
        run.show()
    );
}

// ---------------------------------------------------------------------------
// gateway.d overlays
// ---------------------------------------------------------------------------

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
    let mut failures = Vec::new();
    for (name, overlay, at, message, help) in cases {
        let dir = Workdir::new();
        dir.write("gateway.toml", &plain("[gateway]\nthreads = 2\n"));
        dir.write("gateway.d/50-bad.toml", overlay);
        let run = dir.check(&[]);
        let origin = format!("gateway.d/50-bad.toml:{}", position(overlay, at));
        let ok = std::panic::catch_unwind(|| {
            assert_rejected(&run, name);
            assert_error_at(&run, &origin, message, *help, name);
            assert_eq!(error_count(&run), 1, "{name}\n{}", run.show());
        });
        if ok.is_err() {
            failures.push(*name);
        }
    }
    assert!(
        failures.is_empty(),
        "overlay errors not reported at the overlay: {failures:?}"
    );
}

// ---------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------

#[test]
fn env_override_moves_a_listener() {
    let dir = Workdir::new();
    let config = repo_config();
    let run = postern(
        dir.path(),
        &["check", "-c", config.to_str().unwrap()],
        &[("POSTERN_LISTENERS__HTTPS__ADDRESS", "127.0.0.1:1")],
    );
    assert_accepted(&run, "POSTERN_LISTENERS__HTTPS__ADDRESS");
    let listeners = listener_lines(&run.stdout);
    assert!(
        listeners.contains(&("https".to_string(), "127.0.0.1:1".to_string())),
        "{}",
        run.show()
    );
    assert!(!run.stdout.contains("127.0.0.1:8443"), "{}", run.show());
}

// ---------------------------------------------------------------------------
// Missing file and usage
// ---------------------------------------------------------------------------

#[test]
fn missing_config_file_says_how_to_pass_one() {
    let dir = Workdir::new();
    for (args, file, env) in [
        (&["check", "-c", "nope.toml"][..], "nope.toml", None),
        (&["check"][..], "gateway.toml", None),
        (&["check"][..], "elsewhere.toml", Some("elsewhere.toml")),
    ] {
        let env: Vec<(&str, &str)> = env.map(|f| ("POSTERN_CONFIG", f)).into_iter().collect();
        let run = postern(dir.path(), args, &env);
        let context = format!("{args:?} with {env:?}");
        assert_rejected(&run, &context);
        assert!(
            run.stderr.starts_with(&format!("{file}:"))
                && run.stderr.contains("cannot read the config file"),
            "{context}\n{}",
            run.show()
        );
        assert!(
            run.stderr.contains("help: pass the file with -c FILE")
                && run.stderr.contains("POSTERN_CONFIG"),
            "{context}: the help says how to pass a file\n{}",
            run.show()
        );
    }
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = Workdir::new();
    for args in [
        &["check", "--bogus"][..],
        &["frobnicate"][..],
        &["check", "-c"][..],
        &[][..],
    ] {
        let run = postern(dir.path(), args, &[]);
        assert_eq!(run.code, Some(2), "postern {args:?}\n{}", run.show());
        assert!(
            run.stderr.contains("Usage:") || run.stderr.contains("--help"),
            "postern {args:?} says how to get help\n{}",
            run.show()
        );
    }
    for args in [&["--help"][..], &["check", "--help"][..]] {
        let run = postern(dir.path(), args, &[]);
        assert_eq!(run.code, Some(0), "postern {args:?}\n{}", run.show());
        assert!(run.stdout.contains("check"), "{}", run.show());
    }
}

/// Accepted, but worth a warning: a certificate close to expiry, and a chain
/// whose certificates are not each followed by their issuer.
#[test]
fn certificate_warnings() {
    let dir = Workdir::new();
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.not_after = soon.into();
    let expiring = params.self_signed(&key).expect("cert");
    let other_key = KeyPair::generate().expect("key");
    let mut other_params = CertificateParams::new(vec!["other.test".to_string()]).expect("params");
    other_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Some Other CA");
    let other = other_params.self_signed(&other_key).expect("cert");
    // The leaf followed by a certificate that did not issue it.
    dir.write("cert.pem", &format!("{}{}", expiring.pem(), other.pem()));
    dir.write("key.pem", &key.serialize_pem());
    dir.write("gateway.toml", &with_cert("", "cert.pem", "key.pem"));
    let run = dir.check(&[]);
    assert_accepted(&run, "warnings only");
    let warned = |needle: &str| {
        run.stderr
            .lines()
            .any(|l| l.contains(": warning: ") && l.contains(needle))
    };
    assert!(
        warned("certificate cert.pem expires in 9 day(s)")
            || warned("certificate cert.pem expires in 10 day(s)"),
        "{}",
        run.show()
    );
    assert!(
        warned("the chain in cert.pem is not in order: certificate #1"),
        "{}",
        run.show()
    );
}
