//! `postern demo` keeps its promise: the README's first command starts the
//! shipped gateway.toml with stand-in Domino backends and a development token
//! issuer, and every curl line it prints gets the status it says it gets,
//! when run as printed with the real curl. The shipped gateway.toml stays the
//! path-based Domino preset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::postern_command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

#[test]
fn every_curl_line_the_demo_prints_gets_the_status_it_promises() {
    let mut child = postern_command()
        .arg("demo")
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn postern demo");
    let stdout = child.stdout.take().expect("demo stdout");
    let demo = Demo(child);
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tour = Vec::new();
    // The tour ends with the admin API's reload line.
    while !tour
        .last()
        .is_some_and(|(command, _): &(String, _)| command.contains("/reload"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the demo stopped printing its tour; got {tour:?}"));
        tour.extend(parse_tour_line(&line));
    }
    wait_for_port(8443, deadline);
    wait_for_port(9180, deadline);
    assert!(
        tour.len() >= 15,
        "a tour of every policy, got {} lines",
        tour.len()
    );

    // One shell, so the TOKEN the login line sets is used by the next lines.
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
    script.push_str("[ ${#TOKEN} -gt 100 ] || echo \"no token from the issuer: $TOKEN\"\n");
    let output = Command::new("timeout")
        .args(["60", "bash", "-c", &script])
        .current_dir(repo())
        .output()
        .expect("bash and curl (scripts/install-deps installs curl)");
    let printed = String::from_utf8_lossy(&output.stdout);
    let mut failures = Vec::new();
    for (i, want) in &expected {
        let got = printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{i} ")))
            .unwrap_or("(no answer)");
        if got != want.to_string() {
            failures.push(format!("  {}   # wanted {want}, got {got}", tour[*i].0));
        }
    }
    assert!(
        !printed.contains("no token"),
        "the issuer's login did not give a token:\n{printed}"
    );
    assert!(
        failures.is_empty(),
        "demo lines that do not do what they say:\n{}\nstderr: {}",
        failures.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    drop(demo);
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
