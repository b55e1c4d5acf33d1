//! Basic authentication and source allowlists end to end, through the real
//! `postern` binary over real TLS: hashes made by `postern hash-password`
//! (argon2id) and by the real `htpasswd -B` (bcrypt, apache2-utils), refused
//! credentials, the brute-force backoff, weak hashes refused at load, and
//! allow/deny deciding before authentication.
//!
//! Every refusal is checked for its status, its JSON error, its challenge
//! and an upstream that received nothing.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use postern_echo::EchoServer;
use serde_json::Value;

use crate::support::{
    assert_gateway_error, closed_port, echo, postern_command, request, upstream, upstream_header,
    Gateway, Response,
};

const HOST: &str = "api.example.com";
const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------
// Hashes from the real tools
// ---------------------------------------------------------------------------

/// `postern hash-password` with `password` and a newline on stdin: the
/// printed PHC string.
fn hash_password(password: &str) -> String {
    let mut child = postern_command()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postern hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("postern hash-password");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "postern hash-password failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    let hash = stdout.trim().to_string();
    assert!(
        hash.starts_with("$argon2id$v=19$") && !hash.contains(char::is_whitespace),
        "postern hash-password did not print one argon2id PHC string: {stdout:?}\nstderr: {stderr}"
    );
    assert!(
        !hash.contains(password),
        "the hash contains the password: {hash:?}"
    );
    hash
}

/// Runs the real `htpasswd` (apache2-utils).
fn htpasswd(args: &[&str]) -> Output {
    let out = Command::new("htpasswd")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `htpasswd` ({e}): these tests need the real htpasswd from \
                 apache2-utils (apt-get install apache2-utils, or scripts/install-deps)"
            )
        });
    assert!(
        out.status.success(),
        "htpasswd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `htpasswd -n -b FLAG user password`: the hash part of the printed line.
fn htpasswd_hash(flag: &str, user: &str, password: &str) -> String {
    let out = htpasswd(&["-n", "-b", flag, user, password]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (name, hash) = line
        .split_once(':')
        .unwrap_or_else(|| panic!("htpasswd printed {line:?}"));
    assert_eq!(name, user);
    hash.to_string()
}

/// A bcrypt hash exactly as `htpasswd -B` writes it (`$2y$`).
fn bcrypt_hash(user: &str, password: &str) -> String {
    let hash = htpasswd_hash("-B", user, password);
    assert!(hash.starts_with("$2y$"), "htpasswd -B printed {hash:?}");
    hash
}

/// `Authorization: Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    basic_raw(format!("{user}:{password}").as_bytes())
}

fn basic_raw(credentials: &[u8]) -> String {
    format!("Basic {}", STANDARD.encode(credentials))
}

// ---------------------------------------------------------------------------
// Gateway and assertions
// ---------------------------------------------------------------------------

/// A route of the test gateway and its basic realm.
#[derive(Clone, Copy)]
struct Route {
    target: &'static str,
    name: &'static str,
    realm: &'static str,
}

const MGMT: Route = Route {
    target: "/mgmt/config",
    name: "mgmt",
    realm: "management",
};

/// An echo upstream and a gateway; `body` has `{UPSTREAM}` for `[upstreams.data]`.
struct BasicEnv {
    data: EchoServer,
    gw: Gateway,
}

impl BasicEnv {
    async fn start(body: &str) -> BasicEnv {
        let data = echo("data").await;
        let gw =
            Gateway::start(body.replace("{UPSTREAM}", &upstream("data", data.local_addr(), "")))
                .await;
        BasicEnv { data, gw }
    }

    /// `[auth.ops]` (realm "management") with `accounts` and `extra`, and
    /// route `mgmt` on `api.example.com/mgmt` behind it.
    async fn ops(accounts: &str, extra: &str) -> BasicEnv {
        BasicEnv::start(&format!(
            r#"{{UPSTREAM}}
[auth.ops]
type = "basic"
realm = "management"
{accounts}
{extra}

[[routes]]
name = "mgmt"
host = "{HOST}"
path_prefix = "/mgmt"
upstream = "data"
auth = "ops"
"#
        ))
        .await
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.gw
            .send(HOST, request("GET", HOST, target, headers, b""))
            .await
    }

    async fn with_auth(&self, route: Route, authorization: &str) -> Response {
        self.get(route.target, &[("Authorization", authorization)])
            .await
    }

    /// Forwarded, with the Authorization header unchanged.
    async fn accepted(&self, case: &str, route: Route, authorization: &str) -> Value {
        let before = self.data.requests_seen();
        let response = self.with_auth(route, authorization).await;
        assert_eq!(
            response.status,
            200,
            "{case}: expected the upstream's 200, got {} {}\nheaders: {:?}",
            response.status,
            response.text(),
            response.headers
        );
        let echo = response.echo();
        assert_eq!(
            upstream_header(&echo, "authorization"),
            [authorization],
            "{case}: the Authorization header reaches the upstream unchanged"
        );
        assert_eq!(
            self.data.requests_seen(),
            before + 1,
            "{case}: upstream request count"
        );
        echo
    }

    /// 401 with the Basic challenge; nothing forwarded.
    async fn refused(&self, case: &str, route: Route, headers: &[(&str, &str)]) {
        let before = self.data.requests_seen();
        let response = self.get(route.target, headers).await;
        assert_basic_refusal(&response, route, case);
        assert_eq!(
            self.data.requests_seen(),
            before,
            "{case}: a refused request reached the upstream"
        );
    }

    async fn refused_auth(&self, case: &str, route: Route, authorization: &str) {
        self.refused(case, route, &[("Authorization", authorization)])
            .await
    }

    /// 429 with Retry-After, nothing forwarded: returns Retry-After in seconds.
    async fn backed_off(&self, case: &str, route: Route, authorization: &str) -> u64 {
        let before = self.data.requests_seen();
        let response = self.with_auth(route, authorization).await;
        assert_eq!(
            response.status,
            429,
            "{case}: expected 429, got {} {}\nheaders: {:?}",
            response.status,
            response.text(),
            response.headers
        );
        assert_gateway_error(&response, 429, "too_many_requests", Some(route.name));
        let retry_after = response
            .header("retry-after")
            .unwrap_or_else(|| panic!("{case}: 429 without Retry-After: {:?}", response.headers));
        let seconds: u64 = retry_after.trim().parse().unwrap_or_else(|_| {
            panic!("{case}: Retry-After {retry_after:?} is not a number of seconds")
        });
        assert!(seconds >= 1, "{case}: Retry-After {seconds} while refusing");
        assert_eq!(
            self.data.requests_seen(),
            before,
            "{case}: a request during backoff reached the upstream"
        );
        seconds
    }
}

/// A basic-auth refusal: 401, the JSON error for `route` and
/// `WWW-Authenticate: Basic realm="<realm>"...`.
fn assert_basic_refusal(response: &Response, route: Route, case: &str) {
    assert_eq!(
        response.status,
        401,
        "{case}: expected 401, got {} {}\nheaders: {:?}",
        response.status,
        response.text(),
        response.headers
    );
    assert_gateway_error(response, 401, "unauthorized", Some(route.name));
    let challenge = response.header("www-authenticate").unwrap_or_else(|| {
        panic!(
            "{case}: 401 without WWW-Authenticate: {:?}",
            response.headers
        )
    });
    assert!(
        challenge.starts_with(&format!("Basic realm=\"{}\"", route.realm)),
        "{case}: challenge {challenge:?} is not Basic realm=\"{}\"",
        route.realm
    );
}

// ---------------------------------------------------------------------------
// Accepted hashes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2id_hash_from_postern_hash_password_is_accepted() {
    let hash = hash_password(PASSWORD);
    let again = hash_password(PASSWORD);
    assert_ne!(hash, again, "two hashes of one password share a salt");
    // Spaces and non-ASCII survive the stdin line and the UTF-8 credentials.
    let unicode_password = "pässwörd mit Leerzeichen ✓";
    let unicode_hash = hash_password(unicode_password);

    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{hash}', \"jürgen\" = '{unicode_hash}' }}"),
        "max_failures = 1000",
    )
    .await;
    let echo = env
        .accepted("admin, argon2id", MGMT, &basic("admin", PASSWORD))
        .await;
    assert_eq!(echo["path"], "/mgmt/config");
    // Again (a cache of verified credentials may answer).
    env.accepted("admin again", MGMT, &basic("admin", PASSWORD))
        .await;
    env.accepted(
        "UTF-8 user and password",
        MGMT,
        &basic("jürgen", unicode_password),
    )
    .await;
    env.refused_auth("admin, wrong password", MGMT, &basic("admin", "wrong"))
        .await;
    env.refused_auth(
        "admin, the password with a trailing newline",
        MGMT,
        &basic("admin", &format!("{PASSWORD}\n")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_hash_from_real_htpasswd_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ops.htpasswd");
    let path = file.to_str().expect("utf-8 path");
    htpasswd(&["-B", "-b", "-c", path, "alice", "alice-secret"]);
    htpasswd(&["-B", "-b", path, "bob", "bob-secret"]);
    let text = std::fs::read_to_string(&file).expect("read htpasswd file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "htpasswd file: {text:?}");
    assert!(
        lines[0].starts_with("alice:$2y$"),
        "htpasswd file: {text:?}"
    );
    assert!(lines[1].starts_with("bob:$2y$"), "htpasswd file: {text:?}");

    let inline = bcrypt_hash("carol", "carol-secret");
    let env = BasicEnv::start(&format!(
        r#"{{UPSTREAM}}
[auth.ops]
type = "basic"
realm = "management"
htpasswd = '{path}'
max_failures = 1000

[auth.inline]
type = "basic"
realm = "inline"
users = {{ carol = '{inline}' }}
max_failures = 1000

[[routes]]
name = "mgmt"
host = "{HOST}"
path_prefix = "/mgmt"
upstream = "data"
auth = "ops"

[[routes]]
name = "inline"
host = "{HOST}"
path_prefix = "/inline"
upstream = "data"
auth = "inline"
"#
    ))
    .await;
    let inline_route = Route {
        target: "/inline/x",
        name: "inline",
        realm: "inline",
    };

    env.accepted("alice from the file", MGMT, &basic("alice", "alice-secret"))
        .await;
    env.accepted("bob from the file", MGMT, &basic("bob", "bob-secret"))
        .await;
    env.accepted(
        "carol, inline $2y$ hash",
        inline_route,
        &basic("carol", "carol-secret"),
    )
    .await;
    env.refused_auth(
        "alice with bob's password",
        MGMT,
        &basic("alice", "bob-secret"),
    )
    .await;
    env.refused_auth(
        "carol on the file's route",
        MGMT,
        &basic("carol", "carol-secret"),
    )
    .await;
    env.refused_auth(
        "alice on the inline route",
        inline_route,
        &basic("alice", "alice-secret"),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Refused credentials
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_refused() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let env = BasicEnv::start(&format!(
        r#"{{UPSTREAM}}
[auth.ops]
type = "basic"
realm = "management"
users = {{ admin = '{hash}' }}
max_failures = 1000

[auth.plain-realm]
type = "basic"
users = {{ admin = '{hash}' }}
max_failures = 1000

[[routes]]
name = "mgmt"
host = "{HOST}"
path_prefix = "/mgmt"
upstream = "data"
auth = "ops"

[[routes]]
name = "health"
host = "{HOST}"
path_prefix = "/health"
upstream = "data"
auth = "plain-realm"
"#
    ))
    .await;
    let cases = [
        ("wrong password", basic("admin", "wrong")),
        ("empty password", basic("admin", "")),
        ("password prefix", basic("admin", &PASSWORD[..10])),
        (
            "password plus a character",
            basic("admin", &format!("{PASSWORD}x")),
        ),
        ("unknown user", basic("mallory", PASSWORD)),
        ("user in another case", basic("Admin", PASSWORD)),
        ("empty user", basic("", PASSWORD)),
        ("the hash as the password", basic("admin", &hash)),
    ];
    for (case, authorization) in &cases {
        env.refused_auth(case, MGMT, authorization).await;
    }
    env.refused("no Authorization header", MGMT, &[]).await;

    // Without `realm`, the realm is the authenticator's name.
    let health = Route {
        target: "/health",
        name: "health",
        realm: "plain-realm",
    };
    env.refused_auth(
        "default realm, wrong password",
        health,
        &basic("admin", "x"),
    )
    .await;
    env.refused("default realm, no credentials", health, &[])
        .await;

    // Controls: the right password works on both routes.
    env.accepted("control: admin", MGMT, &basic("admin", PASSWORD))
        .await;
    env.accepted(
        "control: admin on /health",
        health,
        &basic("admin", PASSWORD),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_is_refused() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{hash}' }}"),
        "max_failures = 1000",
    )
    .await;
    let encoded = STANDARD.encode(format!("admin:{PASSWORD}"));
    let cases = [
        ("Basic with no payload", "Basic".to_string()),
        ("Basic and a space", "Basic ".to_string()),
        ("not base64", "Basic !!!not*base64!!!".to_string()),
        (
            "base64 cut short",
            format!("Basic {}", &encoded[..encoded.len() - 3]),
        ),
        ("no colon", basic_raw(format!("admin{PASSWORD}").as_bytes())),
        ("only a colon", basic_raw(b":")),
        (
            "credentials not base64-encoded",
            format!("Basic admin:{PASSWORD}"),
        ),
        (
            "Bearer scheme on a basic route",
            "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_string(),
        ),
        ("Digest scheme", "Digest username=\"admin\"".to_string()),
        ("payload without a scheme", encoded.clone()),
    ];
    for (case, authorization) in &cases {
        env.refused_auth(case, MGMT, authorization).await;
    }
    env.accepted("control: well formed", MGMT, &basic("admin", PASSWORD))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_credentials_are_refused() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let latin_password = "pässwort";
    let latin_hash = bcrypt_hash("jorg", latin_password);
    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{hash}', jorg = '{latin_hash}' }}"),
        "max_failures = 1000",
    )
    .await;
    let mut password_then_ff = format!("admin:{PASSWORD}").into_bytes();
    password_then_ff.push(0xff);
    let cases: [(&str, Vec<u8>); 5] = [
        ("0xff in the password", b"admin:\xffsecret".to_vec()),
        ("0xff 0xfe as the user", b"\xff\xfe:secret".to_vec()),
        ("the right password then 0xff", password_then_ff),
        (
            "the right password in Latin-1, not UTF-8",
            b"jorg:p\xe4sswort".to_vec(),
        ),
        ("a lone continuation byte", b"admin:\x80".to_vec()),
    ];
    for (case, credentials) in &cases {
        env.refused_auth(case, MGMT, &basic_raw(credentials)).await;
    }
    // The gateway is unharmed, and the UTF-8 password works.
    env.accepted("control: admin", MGMT, &basic("admin", PASSWORD))
        .await;
    env.accepted("control: UTF-8 ä", MGMT, &basic("jorg", latin_password))
        .await;
}

// ---------------------------------------------------------------------------
// Brute-force backoff
// ---------------------------------------------------------------------------

/// Sleeps `seconds` plus a margin.
async fn wait_out(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds) + Duration::from_millis(250)).await;
}

/// `[auth.ops]` with admin's bcrypt hash, max_failures = 3,
/// backoff_initial = 1s and backoff_max = 2s.
async fn backoff_env() -> BasicEnv {
    let hash = bcrypt_hash("admin", PASSWORD);
    BasicEnv::ops(
        &format!("users = {{ admin = '{hash}' }}"),
        r#"max_failures = 3
backoff_initial = "1s"
backoff_max = "2s""#,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_engages_and_releases() {
    let env = backoff_env().await;
    let right = basic("admin", PASSWORD);
    let wrong = basic("admin", "wrong");

    // max_failures failures are answered 401, each checked.
    for i in 1..=3 {
        env.refused_auth(&format!("wrong password #{i}"), MGMT, &wrong)
            .await;
    }
    // Then 429, without checking: the right password too.
    let first = env
        .backed_off("right password after 3 failures", MGMT, &right)
        .await;
    assert_eq!(
        first, 1,
        "Retry-After of the first window (backoff_initial = 1s)"
    );
    let retry = env
        .backed_off("wrong password during the window", MGMT, &wrong)
        .await;
    assert!(retry <= 2, "Retry-After {retry} beyond backoff_max (2s)");

    // Released after Retry-After: the right password works again.
    wait_out(retry).await;
    env.accepted("right password after the window", MGMT, &right)
        .await;

    // The success reset the count: max_failures - 1 failures do not engage
    // the backoff, max_failures do, and the window is backoff_initial again.
    for i in 1..=2 {
        env.refused_auth(&format!("wrong password #{i} after success"), MGMT, &wrong)
            .await;
    }
    env.accepted("right password after 2 failures", MGMT, &right)
        .await;
    for i in 1..=3 {
        env.refused_auth(
            &format!("wrong password #{i} after the second success"),
            MGMT,
            &wrong,
        )
        .await;
    }
    let reset = env
        .backed_off("right password after 3 new failures", MGMT, &right)
        .await;
    assert_eq!(
        reset, 1,
        "after a success the window starts again at backoff_initial"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_window_doubles_up_to_backoff_max() {
    let env = backoff_env().await;
    let right = basic("admin", PASSWORD);
    let wrong = basic("admin", "wrong");

    for i in 1..=3 {
        env.refused_auth(&format!("wrong password #{i}"), MGMT, &wrong)
            .await;
    }
    let retry = env
        .backed_off("right password after 3 failures", MGMT, &right)
        .await;
    assert_eq!(retry, 1, "Retry-After of the first window (1s)");

    // After the window, one more failure: the window doubles to 2 s.
    wait_out(retry).await;
    env.refused_auth("wrong password #4, after the first window", MGMT, &wrong)
        .await;
    let doubled_at = Instant::now();
    let doubled = env
        .backed_off("right password after failure #4", MGMT, &right)
        .await;
    assert!(
        (1..=2).contains(&doubled),
        "Retry-After {doubled} after the window doubled to 2s"
    );
    // Past what backoff_initial alone would give, still refused.
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(doubled_at.elapsed())).await;
    let retry = env
        .backed_off("right password 1.3 s into the doubled window", MGMT, &right)
        .await;

    // Another consecutive failure: 4 s, capped at backoff_max = 2 s.
    wait_out(retry).await;
    env.refused_auth("wrong password #5, after the doubled window", MGMT, &wrong)
        .await;
    let capped = env
        .backed_off(
            "right password after failure #5 (window capped at 2s)",
            MGMT,
            &right,
        )
        .await;
    assert!(
        (1..=2).contains(&capped),
        "Retry-After {capped}: the window must be capped at backoff_max = 2s"
    );

    // Released: the right password works again.
    wait_out(capped).await;
    env.accepted("right password after the capped window", MGMT, &right)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_resets_the_failure_count() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{hash}' }}"),
        r#"max_failures = 3
backoff_initial = "30s""#,
    )
    .await;
    let right = basic("admin", PASSWORD);
    let wrong = basic("admin", "wrong");
    // 2 + 2 + 2 failures: never 3 in a row, so never a 429.
    for round in 1..=3 {
        for i in 1..=2 {
            env.refused_auth(&format!("round {round}: wrong password #{i}"), MGMT, &wrong)
                .await;
        }
        env.accepted(&format!("round {round}: right password"), MGMT, &right)
            .await;
    }
    // The third consecutive failure engages it (the count is real).
    for i in 1..=3 {
        env.refused_auth(&format!("final: wrong password #{i}"), MGMT, &wrong)
            .await;
    }
    let retry = env
        .backed_off("final: right password after 3 failures", MGMT, &right)
        .await;
    assert!(
        (29..=30).contains(&retry),
        "Retry-After {retry} for backoff_initial = 30s"
    );
}

// ---------------------------------------------------------------------------
// Weak hashes are refused when the config is loaded
// ---------------------------------------------------------------------------

/// A config for `postern check`/`run` whose `[auth.ops]` has `accounts`.
fn weak_hash_config(port: u16, accounts: &str) -> String {
    format!(
        r#"[[listeners]]
name = "web"
address = "127.0.0.1:{port}"

[upstreams.data]
url = "http://127.0.0.1:8880"

[auth.ops]
type = "basic"
realm = "management"
{accounts}

[[routes]]
name = "mgmt"
upstream = "data"
auth = "ops"
"#
    )
}

/// `postern ARGS` in `dir`, without inherited `POSTERN_*` variables, killed
/// after 15 s.
fn postern(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = postern_command();
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run postern");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("postern output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// "LINE:" of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("test bug: {needle:?} not in\n{text}"))
        + 1
}

/// Is `line` a `FILE:LINE:COL: error: MESSAGE` line?
fn is_located_error(line: &str) -> bool {
    let Some((origin, _)) = line.split_once(": error: ") else {
        return false;
    };
    let mut parts = origin.rsplitn(3, ':');
    let number = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s != "0" && s.bytes().all(|b| b.is_ascii_digit()))
    };
    number(parts.next()) && number(parts.next()) && parts.next().is_some_and(|f| !f.is_empty())
}

/// Exit 1; a `FILE:LINE:COL: error:` line for which `located` holds
/// (described by `where_`); and help that says how to hash.
fn assert_refused_with_hashing_help(
    (code, stderr): (Option<i32>, &str),
    located: impl Fn(&str) -> bool,
    where_: &str,
    case: &str,
) {
    assert_eq!(code, Some(1), "{case}: exit code\n--- stderr ---\n{stderr}");
    assert!(
        stderr.contains("postern hash-password") || stderr.contains("htpasswd -B"),
        "{case}: the error does not say how to hash (`postern hash-password` or `htpasswd -B`)\n{stderr}"
    );
    assert!(
        stderr.lines().any(|l| is_located_error(l) && located(l)),
        "{case}: no `FILE:LINE:COL: error:` {where_}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{case}: panicked\n{stderr}");
}

#[test]
fn weak_password_hashes_are_refused_at_config_load() {
    let md5 = htpasswd_hash("-m", "admin", PASSWORD);
    let sha1 = htpasswd_hash("-s", "admin", PASSWORD);
    let crypt = htpasswd_hash("-d", "admin", "secret");
    assert!(md5.starts_with("$apr1$"), "htpasswd -m printed {md5:?}");
    assert!(sha1.starts_with("{SHA}"), "htpasswd -s printed {sha1:?}");
    let bcrypt = bcrypt_hash("admin", PASSWORD);

    let weak = [
        ("plaintext", PASSWORD.to_string()),
        ("MD5 $apr1$", md5),
        ("SHA1 {SHA}", sha1),
        ("crypt", crypt),
    ];
    let port = closed_port();
    for (case, hash) in &weak {
        // Inline in `users`.
        let dir = tempfile::tempdir().expect("temp dir");
        let config = weak_hash_config(port, &format!("users = {{ admin = '{hash}' }}"));
        std::fs::write(dir.path().join("gateway.toml"), &config).expect("write config");
        let line = line_of(&config, "users = ");
        let (code, _, stderr) = postern(dir.path(), &["check", "-c", "gateway.toml"]);
        let origin = format!("gateway.toml:{line}:");
        assert_refused_with_hashing_help(
            (code, &stderr),
            |l| l.starts_with(&origin),
            &format!("at {origin} (the user's line)"),
            &format!("check, users = {{ admin = {case} }}"),
        );

        // In an htpasswd file.
        std::fs::write(dir.path().join("ops.htpasswd"), format!("admin:{hash}\n"))
            .expect("write htpasswd");
        let config = weak_hash_config(port, "htpasswd = \"ops.htpasswd\"");
        std::fs::write(dir.path().join("gateway.toml"), &config).expect("write config");
        let (code, _, stderr) = postern(dir.path(), &["check", "-c", "gateway.toml"]);
        // Where exactly is not fixed (the file's line, the `htpasswd` key,
        // or the [auth.ops] table), but the error must name the file.
        assert_refused_with_hashing_help(
            (code, &stderr),
            |l| l.contains("ops.htpasswd"),
            "that names ops.htpasswd",
            &format!("check, htpasswd file with a {case} hash"),
        );
    }

    // `run` refuses what `check` refuses, before serving anything.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = weak_hash_config(port, &format!("users = {{ admin = '{PASSWORD}' }}"));
    std::fs::write(dir.path().join("gateway.toml"), &config).expect("write config");
    let line = line_of(&config, "users = ");
    let (code, _, stderr) = postern(dir.path(), &["run", "-c", "gateway.toml"]);
    let origin = format!("gateway.toml:{line}:");
    assert_refused_with_hashing_help(
        (code, &stderr),
        |l| l.starts_with(&origin),
        &format!("at {origin} (the user's line)"),
        "run, plaintext password",
    );

    // Control: the same configs with a bcrypt hash are accepted, inline
    // and in the file.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("gateway.toml"),
        weak_hash_config(port, &format!("users = {{ admin = '{bcrypt}' }}")),
    )
    .expect("write config");
    let (code, stdout, stderr) = postern(dir.path(), &["check", "-c", "gateway.toml"]);
    assert_eq!(
        code,
        Some(0),
        "control: bcrypt inline\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    std::fs::write(dir.path().join("ops.htpasswd"), format!("admin:{bcrypt}\n"))
        .expect("write htpasswd");
    std::fs::write(
        dir.path().join("gateway.toml"),
        weak_hash_config(port, "htpasswd = \"ops.htpasswd\""),
    )
    .expect("write config");
    let (code, stdout, stderr) = postern(dir.path(), &["check", "-c", "gateway.toml"]);
    assert_eq!(
        code,
        Some(0),
        "control: bcrypt htpasswd file\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Source allowlists, and their order with authentication
// ---------------------------------------------------------------------------

const SPOOFS: [(&str, &str); 5] = [
    ("X-Forwarded-For", "10.1.2.3"),
    ("X-Forwarded-For", "10.1.2.3, 10.0.0.1"),
    ("Forwarded", "for=10.1.2.3"),
    ("X-Real-IP", "10.1.2.3"),
    ("X-Forwarded-For", "127.0.0.1, 10.1.2.3"),
];

fn admin_net_routes() -> &'static str {
    r#"{UPSTREAM}
[[routes]]
name = "admin-net"
host = "api.example.com"
path_prefix = "/admin"
upstream = "data"
allow = ["10.0.0.0/8"]

[[routes]]
name = "local"
host = "api.example.com"
path_prefix = "/local"
upstream = "data"
allow = ["loopback"]
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_ignores_forwarding_headers_from_an_untrusted_peer() {
    let env = BasicEnv::start(admin_net_routes()).await;
    for (name, value) in SPOOFS {
        let response = env.get("/admin/x", &[(name, value)]).await;
        assert_gateway_error(&response, 403, "forbidden", Some("admin-net"));
        assert_eq!(
            env.data.requests_seen(),
            0,
            "{name}: {value} from an untrusted peer reached the upstream"
        );
    }
    let all: Vec<(&str, &str)> = SPOOFS.to_vec();
    let response = env.get("/admin/x", &all).await;
    assert_gateway_error(&response, 403, "forbidden", Some("admin-net"));
    assert_eq!(env.data.requests_seen(), 0);

    // Control: the loopback-only route takes us, as the peer we are.
    env.get("/local/x", &[]).await.echo();
    assert_eq!(env.data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_believes_forwarding_headers_only_from_trusted_proxies() {
    // Control for the test above: with 127.0.0.1 a trusted proxy, the same
    // header does decide, so the refusal there is the peer being untrusted.
    let data = echo("data").await;
    let gw = Gateway::builder(
        admin_net_routes().replace("{UPSTREAM}", &upstream("data", data.local_addr(), "")),
    )
    .trusted_proxies(&["127.0.0.1/32"])
    .start()
    .await;
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let gw = &gw;
        async move {
            gw.send(HOST, request("GET", HOST, "/admin/x", &headers, b""))
                .await
        }
    };
    send(vec![("X-Forwarded-For", "10.1.2.3")]).await.echo();
    assert_eq!(data.requests_seen(), 1);
    let response = send(vec![("X-Forwarded-For", "192.0.2.1")]).await;
    assert_gateway_error(&response, 403, "forbidden", Some("admin-net"));
    let response = send(vec![]).await;
    assert_gateway_error(&response, 403, "forbidden", Some("admin-net"));
    assert_eq!(data.requests_seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_run_before_basic_auth() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let env = BasicEnv::start(&format!(
        r#"{{UPSTREAM}}
[auth.ops]
type = "basic"
realm = "management"
users = {{ admin = '{hash}' }}
max_failures = 2
backoff_initial = "1m"

[[routes]]
name = "mgmt"
host = "{HOST}"
path_prefix = "/mgmt"
upstream = "data"
auth = "ops"

[[routes]]
name = "admin-net"
host = "{HOST}"
path_prefix = "/admin"
upstream = "data"
allow = ["10.0.0.0/8"]
auth = "ops"

[[routes]]
name = "closed"
host = "{HOST}"
path_prefix = "/closed"
upstream = "data"
deny = true
auth = "ops"
"#
    ))
    .await;
    let right = basic("admin", PASSWORD);
    let wrong = basic("admin", "wrong");
    for (target, route) in [("/admin/x", "admin-net"), ("/closed/x", "closed")] {
        for (what, headers) in [
            ("valid credentials", vec![("Authorization", right.as_str())]),
            (
                "valid credentials and X-Forwarded-For: 10.1.2.3",
                vec![
                    ("Authorization", right.as_str()),
                    ("X-Forwarded-For", "10.1.2.3"),
                ],
            ),
            ("no credentials", vec![]),
            ("wrong password", vec![("Authorization", wrong.as_str())]),
            (
                "wrong password again",
                vec![("Authorization", wrong.as_str())],
            ),
            (
                "wrong password a third time",
                vec![("Authorization", wrong.as_str())],
            ),
        ] {
            let response = env.get(target, &headers).await;
            assert_eq!(
                response.status,
                403,
                "{target} with {what}: expected 403, got {} {}",
                response.status,
                response.text()
            );
            assert_gateway_error(&response, 403, "forbidden", Some(route));
            assert!(
                response.header("www-authenticate").is_none(),
                "{target} with {what}: a 403 from allow/deny carries no auth challenge"
            );
            assert_eq!(
                env.data.requests_seen(),
                0,
                "{target} with {what}: forwarded"
            );
        }
    }
    // The wrong passwords above were never checked, so they did not count
    // towards max_failures = 2: the auth-only route still lets admin in.
    env.accepted("admin on the auth-only route", MGMT, &right)
        .await;
    env.refused("control: no credentials on the auth-only route", MGMT, &[])
        .await;
}

// ---------------------------------------------------------------------------
// Backoff per user name, with a ceiling per source
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_get_the_challenge_during_backoff() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{hash}' }}"),
        r#"max_failures = 3
backoff_initial = "30s""#,
    )
    .await;
    for i in 1..=3 {
        env.refused_auth(
            &format!("wrong password #{i}"),
            MGMT,
            &basic("admin", "wrong"),
        )
        .await;
    }
    env.backed_off(
        "right password after 3 failures",
        MGMT,
        &basic("admin", PASSWORD),
    )
    .await;
    // A request without credentials costs no hashing: the browser gets the
    // challenge it needs to ask for a password, not 429.
    env.refused("no credentials while admin backs off", MGMT, &[])
        .await;
    env.backed_off("admin still backs off", MGMT, &basic("admin", PASSWORD))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_backing_off_does_not_block_another_from_the_same_address() {
    let admin_hash = bcrypt_hash("admin", PASSWORD);
    let metrics_password = "scrape me";
    let metrics_hash = bcrypt_hash("metrics", metrics_password);
    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{admin_hash}', metrics = '{metrics_hash}' }}"),
        r#"max_failures = 3
backoff_initial = "30s""#,
    )
    .await;
    // Every request comes from 127.0.0.1: one address, as behind a NAT.
    for i in 1..=3 {
        env.refused_auth(
            &format!("admin mistypes #{i}"),
            MGMT,
            &basic("admin", "wrong"),
        )
        .await;
    }
    let retry = env
        .backed_off("admin after 3 failures", MGMT, &basic("admin", PASSWORD))
        .await;
    assert!(
        (29..=30).contains(&retry),
        "Retry-After {retry} for backoff_initial = 30s"
    );

    env.accepted(
        "metrics from the same address",
        MGMT,
        &basic("metrics", metrics_password),
    )
    .await;
    // metrics has a count of its own: a mistake is a 401, not admin's 429.
    env.refused_auth("metrics mistypes once", MGMT, &basic("metrics", "wrong"))
        .await;
    env.accepted("metrics again", MGMT, &basic("metrics", metrics_password))
        .await;
    env.backed_off("admin still backs off", MGMT, &basic("admin", PASSWORD))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_user_names_from_one_address_meet_the_source_ceiling() {
    let hash = bcrypt_hash("admin", PASSWORD);
    let env = BasicEnv::ops(
        &format!("users = {{ admin = '{hash}' }}"),
        r#"max_failures = 2
backoff_initial = "30s""#,
    )
    .await;
    // A spray: one guess each for many names. No name reaches
    // max_failures = 2, but the address reaches 4 × 2 = 8 failures.
    let names = [
        "admin", "root", "ops", "monitor", "backup", "deploy", "guest", "test",
    ];
    for name in names {
        env.refused_auth(
            &format!("one guess for {name}"),
            MGMT,
            &basic(name, "Winter2026!"),
        )
        .await;
    }
    for (case, authorization) in [
        ("a ninth name", basic("support", "Winter2026!")),
        ("a name already tried", basic("root", "Summer2026!")),
        ("admin with the right password", basic("admin", PASSWORD)),
        ("malformed credentials", "Basic !!!".to_string()),
    ] {
        let retry = env.backed_off(case, MGMT, &authorization).await;
        assert!(
            (29..=30).contains(&retry),
            "{case}: Retry-After {retry} for backoff_initial = 30s"
        );
    }
    env.refused("no credentials while the address backs off", MGMT, &[])
        .await;
}
