//! `postern demo` and the README's quick start keep their promises: the
//! README's first command, run as written in a scratch copy of the
//! repository, brings the demo up; every curl line the demo prints gets the
//! status it says it gets when run with the real curl, and is the line
//! docs/getting-started.md shows; a taken port is named before anything
//! starts; the README's test command is the one CI runs. The shipped
//! gateway.toml stays the path-based Domino preset.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::support::postern_command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo listens on fixed ports, so its tests take turns.
static DEMO_PORTS: Mutex<()> = Mutex::new(());

fn demo_ports() -> MutexGuard<'static, ()> {
    DEMO_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running demo, with its printed lines; killed with its whole process
/// group (`cargo run` and the gateway it starts) when dropped.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    fn spawn(mut command: Command) -> Demo {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn the demo");
        let stdout = child.stdout.take().expect("demo stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        Demo { child, lines }
    }

    /// Every tour line printed, up to the admin API's reload line, which ends it.
    fn tour(&mut self, deadline: Instant) -> Vec<String> {
        let mut printed = Vec::new();
        while !printed
            .last()
            .is_some_and(|l: &String| l.contains("/reload"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if parse_tour_line(&line).is_some() {
                        printed.push(line.trim().to_string());
                    }
                }
                Err(_) => panic!(
                    "the demo stopped printing its tour (exit: {:?}); got {printed:?}",
                    self.child.try_wait()
                ),
            }
        }
        wait_for_port(8443, deadline);
        wait_for_port(9180, deadline);
        printed
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A printed line: the shell command, and the status its comment promises.
fn parse_tour_line(line: &str) -> Option<(String, Option<u16>)> {
    let line = line.trim();
    if !(line.starts_with("curl ") || line.starts_with("TOKEN=")) {
        return None;
    }
    let (command, comment) = line.split_once("   # ")?;
    let status = comment
        .split_whitespace()
        .next()
        .and_then(|word| word.parse::<u16>().ok());
    Some((command.to_string(), status))
}

fn wait_for_port(port: u16, deadline: Instant) {
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs tour lines in one shell (so the TOKEN the login line sets is used by
/// the next lines) and returns, for each line with a status, what it got
/// when it differs from what it promised.
fn run_tour(lines: &[String], dir: &Path) -> Vec<String> {
    let tour: Vec<(String, Option<u16>)> =
        lines.iter().filter_map(|l| parse_tour_line(l)).collect();
    let mut script = String::from("set -u\n");
    let mut expected = Vec::new();
    for (i, (command, status)) in tour.iter().enumerate() {
        match status {
            Some(status) => {
                script.push_str(&format!(
                    "echo \"{i} $({command} -o /dev/null -w '%{{http_code}}')\"\n"
                ));
                expected.push((i, *status));
            }
            None => script.push_str(&format!("{command}\n")),
        }
    }
    if tour
        .iter()
        .any(|(command, _)| command.starts_with("TOKEN="))
    {
        script.push_str("[ ${#TOKEN} -gt 100 ] || echo \"no token from the issuer: $TOKEN\"\n");
    }
    // Another directory than the clone's: the printed paths are absolute.
    let output = Command::new("timeout")
        .args(["60", "bash", "-c", &script])
        .current_dir(dir)
        .output()
        .expect("bash and curl (scripts/install-deps installs curl)");
    let printed = String::from_utf8_lossy(&output.stdout);
    let mut failures: Vec<String> = printed
        .lines()
        .filter(|l| l.starts_with("no token"))
        .map(str::to_string)
        .collect();
    for (i, want) in &expected {
        let got = printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{i} ")))
            .unwrap_or("(no answer)");
        if got != want.to_string() {
            failures.push(format!("  {}   # wanted {want}, got {got}", tour[*i].0));
        }
    }
    if !failures.is_empty() {
        failures.push(format!(
            "stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    failures
}

#[test]
fn every_curl_line_the_demo_prints_gets_the_status_it_promises() {
    let _ports = demo_ports();
    let mut command = postern_command();
    command.arg("demo").current_dir(repo());
    let mut demo = Demo::spawn(command);
    let printed = demo.tour(Instant::now() + Duration::from_secs(30));
    assert!(
        printed.len() >= 15,
        "a tour of every policy, got {} lines",
        printed.len()
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let failures = run_tour(&printed, scratch.path());
    assert!(
        failures.is_empty(),
        "demo lines that do not do what they say:\n{}",
        failures.join("\n")
    );

    // docs/getting-started.md shows the same lines, for a clone in /src/postern.
    let guide = std::fs::read_to_string(repo().join("docs/getting-started.md")).expect("guide");
    let block = guide
        .split_once("What it prints:")
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("docs/getting-started.md: a sh block after \"What it prints:\"");
    let clone = repo().canonicalize().expect("repo path");
    let shown: Vec<String> = block
        .lines()
        .map(|l| l.replace("/src/postern", &clone.display().to_string()))
        .collect();
    assert_eq!(
        shown, printed,
        "docs/getting-started.md does not show what the demo prints"
    );
}

#[test]
fn the_demo_names_a_taken_port_before_starting_anything() {
    let _ports = demo_ports();
    let _holder = std::net::TcpListener::bind("127.0.0.1:8889").expect("hold 8889");
    let output = postern_command()
        .arg("demo")
        .current_dir(repo())
        .env_remove("POSTERN_CONFIG")
        .output()
        .expect("run postern demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:8889 (the stand-in management backend) is taken"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("8880") && !stderr.contains("8443"),
        "only the taken port is named: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing is printed before the ports are known to be free: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    for port in [8880, 8443] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing was started on {port}"
        );
    }
}

/// The README's quick start, as written: its two commands are read out of
/// README.md, the test command must be the one `.ci/run` runs, and the run
/// command, run in a scratch copy of the repository with `bash -c`, must
/// bring the demo up so that one of its printed lines answers as it says.
#[test]
fn the_readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let commands = quick_start_commands(&readme);
    let [run, test] = commands.as_slice() else {
        panic!("README.md's quick start should hold two commands (run, test), has {commands:?}");
    };
    let ci = std::fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == test),
        ".ci/run does not run the README's test command {test:?}"
    );

    let scratch = tempfile::tempdir().expect("temp dir");
    copy_tree(&repo(), scratch.path());
    let _ports = demo_ports();
    let mut command = Command::new("bash");
    command
        .args(["-c", run])
        .current_dir(scratch.path())
        .env("CARGO_TARGET_DIR", quick_start_target_dir())
        // One core for this build, the other for the tests running beside it.
        .env("CARGO_BUILD_JOBS", "1")
        .stdin(Stdio::null());
    let mut demo = Demo::spawn(command);
    // A cold build of the workspace's own crates comes first.
    let printed = demo.tour(Instant::now() + Duration::from_secs(900));
    let line = printed
        .iter()
        .find(|l| l.contains("# 200") && !l.contains("$TOKEN"))
        .expect("a printed line that gets 200");
    let failures = run_tour(std::slice::from_ref(line), scratch.path());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The commands in the first `sh` block under "## Quick start", comments cut.
fn quick_start_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split_once("## Quick start")
        .map(|(_, rest)| rest)
        .expect("README.md has a \"## Quick start\" section");
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a ```sh block in the quick start");
    block
        .lines()
        .map(|l| l.split_once("  #").map_or(l, |(command, _)| command).trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a fresh clone of this working tree holds: the files git tracks and
/// the untracked ones it does not ignore, as they are now.
fn copy_tree(from: &Path, to: &Path) {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(from)
        .output()
        .expect("git (scripts/test installs it)");
    assert!(listed.status.success(), "git ls-files failed");
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).expect("UTF-8 file name");
        let source = from.join(name);
        if !source.is_file() {
            continue; // deleted in the working tree
        }
        let target = to.join(name);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&source, &target).unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
}

/// The scratch copy builds in a target directory of its own, kept between
/// runs, seeded once with a copy of this build's compiled dependencies (the
/// copy's own crates sit at another path and are rebuilt, so this build's
/// `target/debug/postern` is never overwritten under the tests; a copy, not
/// hard links, so nothing that build rewrites can change this one's files).
fn quick_start_target_dir() -> PathBuf {
    let outer = PathBuf::from(env!("CARGO_BIN_EXE_postern"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let dir = outer.join("quick-start");
    if !dir.join("debug").exists() {
        std::fs::create_dir_all(dir.join("debug")).expect("mkdir");
        for part in ["deps", "build", ".fingerprint"] {
            let status = Command::new("cp")
                .arg("-a")
                .arg(outer.join("debug").join(part))
                .arg(dir.join("debug"))
                .status()
                .expect("cp");
            assert!(status.success(), "seeding {} failed", dir.display());
        }
    }
    dir
}

/// `postern check`'s route table for `file`, one space between columns,
/// with the listed text replaced.
fn route_table(file: &Path, replace: &[(&str, &str)]) -> String {
    let output = postern_command()
        .args(["check", "-c"])
        .arg(file)
        .output()
        .expect("postern check");
    assert!(
        output.status.success(),
        "{} does not pass check: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text.find("routes").expect("a route table");
    let mut table = text[start..]
        .lines()
        .filter(|l| !l.ends_with(": OK"))
        // Column widths follow the longest entry; compare the entries.
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    for (from, to) in replace {
        table = table.replace(from, to);
    }
    table
}

#[test]
fn the_shipped_gateway_toml_is_the_domino_path_preset() {
    let shipped = route_table(
        &repo().join("gateway.toml"),
        // dev: the Domino HTTP task's stand-in is on an unprivileged port.
        &[("http://127.0.0.1:8881", "http://127.0.0.1:81")],
    );
    let preset = route_table(&repo().join("examples/domino-path.toml"), &[]);
    assert_eq!(shipped, preset);
}
