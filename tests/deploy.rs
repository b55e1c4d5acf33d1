//! The files in deploy/ against the binary they deploy: the Kubernetes
//! ConfigMap's gateway.toml passes `postern check` and, run with the systemd
//! unit's own command line, answers the Deployment's probes; ports and probe
//! paths agree between the manifests and the configuration.
//!
//! The manifests are read as text (the YAML itself is parsed by
//! `scripts/verify-deploy`). To run the in-cluster configuration here, three
//! things are replaced and nothing else: the certificate and key (a
//! certificate for the same name, made now), the upstream host `domino`
//! (127.0.0.1), and the listeners' addresses (free loopback ports, through
//! `POSTERN_LISTENERS__*__ADDRESS` overrides).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::postern_command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The block scalar `KEY: |` of a YAML file, de-indented.
fn block_scalar(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines();
    let header = lines
        .by_ref()
        .find(|l| l.trim_end().ends_with(&format!("{key}: |")))
        .unwrap_or_else(|| panic!("no `{key}: |` block"));
    let indent = header.len() - header.trim_start().len() + 2;
    let mut body = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        body.push_str(line.get(indent..).unwrap_or(""));
        body.push('\n');
    }
    body
}

/// The value of the first `key:` line after the line that is `after`.
fn value_after<'a>(yaml: &'a str, after: &str, key: &str) -> &'a str {
    yaml.lines()
        .skip_while(|l| l.trim() != after)
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no `{key}:` after `{after}`"))
        .split('#')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
}

/// The port of the `[[listeners]]` entry called `name` in a gateway.toml.
fn listener_port(toml: &str, name: &str) -> u16 {
    let address = toml
        .split("[[listeners]]")
        .skip(1)
        .find(|entry| entry.contains(&format!("name = \"{name}\"")))
        .and_then(|entry| {
            entry
                .lines()
                .find_map(|l| l.trim().strip_prefix("address = "))
        })
        .unwrap_or_else(|| panic!("no listener {name:?}"));
    let address = address
        .split('#')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("listener {name:?}: address {address:?}"))
}

/// The ConfigMap's gateway.toml, made runnable in `dir` (see the module docs).
fn configmap_config(dir: &Path) -> PathBuf {
    let toml = block_scalar(&read("deploy/kubernetes/configmap.yaml"), "gateway.toml");
    for expected in [
        "cert = \"/etc/postern/tls/tls.crt\"",
        "key = \"/etc/postern/tls/tls.key\"",
        "url = \"http://domino:8880\"",
    ] {
        assert!(toml.contains(expected), "configmap.yaml lacks {expected}");
    }
    let names: Vec<String> = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("server_names = "))
        .expect("server_names")
        .trim_matches(['[', ']'])
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .collect();
    let certified = rcgen::generate_simple_self_signed(names).expect("certificate");
    std::fs::write(dir.join("tls.crt"), certified.cert.pem()).expect("write tls.crt");
    std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem())
        .expect("write tls.key");
    let toml = toml
        .replace("/etc/postern/tls/", &format!("{}/", dir.display()))
        .replace("http://domino:", "http://127.0.0.1:");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).expect("write gateway.toml");
    path
}

/// The arguments of the unit's `KEY=/usr/local/bin/postern ARGS` lines.
fn unit_commands(key: &str) -> Vec<Vec<String>> {
    read("deploy/postern.service")
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=/usr/local/bin/postern ")))
        .map(|args| args.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The unit's `/etc/postern/gateway.toml`, pointed at `config`.
fn with_config(args: &[String], config: &Path) -> Vec<String> {
    args.iter()
        .map(|a| match a.as_str() {
            "/etc/postern/gateway.toml" => config.display().to_string(),
            _ => a.clone(),
        })
        .collect()
}

#[test]
fn configmap_config_passes_the_units_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = configmap_config(dir.path());
    let checks: Vec<_> = ["ExecStartPre", "ExecReload"]
        .iter()
        .flat_map(|key| unit_commands(key))
        .collect();
    assert_eq!(
        checks.len(),
        2,
        "ExecStartPre and ExecReload run postern check"
    );
    for args in checks {
        assert_eq!(args[..2], ["check", "-c"], "{args:?}");
        let output = postern_command()
            .args(with_config(&args, &config))
            .output()
            .expect("run postern check");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("warning"),
            "{stderr}"
        );
        for route in ["postern-health", "postern-metrics", "postern-admin", "api"] {
            assert!(stdout.contains(route), "route {route} missing:\n{stdout}");
        }
    }
}

#[test]
fn manifests_agree_on_ports() {
    let toml = block_scalar(&read("deploy/kubernetes/configmap.yaml"), "gateway.toml");
    let deployment = read("deploy/kubernetes/deployment.yaml");
    let service = read("deploy/kubernetes/service.yaml");
    for name in ["https", "http", "ops"] {
        let container_port = value_after(&deployment, &format!("- name: {name}"), "containerPort");
        assert_eq!(
            container_port,
            listener_port(&toml, name).to_string(),
            "containerPort {name} vs the listener in configmap.yaml"
        );
    }
    // The Service exposes the TLS and redirect listeners, never ops.
    assert_eq!(
        value_after(&service, "- name: https", "targetPort"),
        "https"
    );
    assert_eq!(value_after(&service, "- name: http", "targetPort"), "http");
    assert!(
        !service.contains("targetPort: ops") && !service.contains("9180"),
        "the ops listener is not public"
    );
    assert_eq!(value_after(&deployment, "livenessProbe:", "port"), "ops");
    assert_eq!(value_after(&deployment, "readinessProbe:", "port"), "ops");
    assert_eq!(
        value_after(&deployment, "readinessProbe:", "path"),
        "/health/ready"
    );
    assert_eq!(
        value_after(&deployment, "livenessProbe:", "path"),
        "/health/live"
    );
    // Files the configuration names are where the Deployment mounts them.
    assert_eq!(
        value_after(&deployment, "- name: tls", "mountPath"),
        "/etc/postern/tls"
    );
    let args = value_after(&deployment, "- name: postern", "args");
    assert_eq!(
        args,
        "[\"run\", \"-c\", \"/etc/postern/config/gateway.toml\"]"
    );
    assert_eq!(
        value_after(&deployment, "- name: config", "mountPath"),
        "/etc/postern/config"
    );
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` over plain HTTP/1.1; the status and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 10.1.2.3:{}\r\nUser-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n",
        addr.port()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

#[test]
fn the_units_command_line_serves_the_deployments_probes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = configmap_config(dir.path());
    let run = unit_commands("ExecStart");
    assert_eq!(run.len(), 1);
    assert_eq!(run[0][..2], ["run", "-c"]);
    let ops = free_port();
    let child = postern_command()
        .args(with_config(&run[0], &config))
        .env(
            "POSTERN_LISTENERS__HTTPS__ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "POSTERN_LISTENERS__HTTP__ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "POSTERN_LISTENERS__OPS__ADDRESS",
            format!("127.0.0.1:{ops}"),
        )
        .env(
            "POSTERN_GATEWAY__UPGRADE_SOCKET",
            dir.path().join("upgrade.sock"),
        )
        .env("POSTERN_GATEWAY__ACCESS_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postern");
    let mut running = Running(child);
    let ops: SocketAddr = ([127, 0, 0, 1], ops).into();
    let deployment = read("deploy/kubernetes/deployment.yaml");
    let deadline = Instant::now() + Duration::from_secs(20);
    for (probe, expected) in [
        ("livenessProbe:", "{\"status\":\"live\"}"),
        ("readinessProbe:", "{\"status\":\"ready\"}"),
    ] {
        let path = value_after(&deployment, probe, "path");
        loop {
            match get(ops, path) {
                Ok((200, body)) => {
                    assert!(body.contains(expected), "{path}: {body}");
                    break;
                }
                outcome => {
                    if let Ok(Some(status)) = running.0.try_wait() {
                        panic!("postern exited ({status}) before answering {path}");
                    }
                    assert!(Instant::now() < deadline, "{path}: {outcome:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
