//! A real DNS server for the tests: dnsmasq (Debian's dnsmasq-base, which
//! `scripts/install-deps --tests` installs), answering from a hosts file the
//! test rewrites; SIGHUP makes it read the file again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct Dnsmasq {
    child: Child,
    hosts: PathBuf,
    log: PathBuf,
    /// Where it answers (UDP and TCP).
    pub address: SocketAddr,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on a free loopback port, answering only from `hosts`
    /// (lines of `IP NAME`).
    pub fn start(hosts: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        // dnsmasq started as root reads the file as `nobody` after SIGHUP.
        let readable = |path: &std::path::Path, mode| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        readable(dir.path(), 0o755);
        let hosts_path = dir.path().join("hosts");
        std::fs::write(&hosts_path, hosts).expect("write hosts");
        readable(&hosts_path, 0o644);
        let log = dir.path().join("dnsmasq.log");
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("dnsmasq");
        let child = Command::new(binary)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts_path.display()),
                &format!("--pid-file={}", dir.path().join("pid").display()),
                "--log-facility=-",
                "--log-queries",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dnsmasq ({e}): install it with scripts/install-deps --tests")
            });
        let mut dns = Dnsmasq {
            child,
            hosts: hosts_path,
            log,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        dns.wait_for_log("read ", "dnsmasq read its hosts file");
        dns
    }

    /// Replaces the answers and has dnsmasq read them (SIGHUP).
    pub fn set_hosts(&mut self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("write hosts");
        let reads = self.log_text().matches("read ").count();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "could not signal dnsmasq");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log_text().matches("read ").count() <= reads {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not read its hosts file again:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `needle` in dnsmasq's log; a loaded machine (the whole
    /// suite in parallel) can take seconds to start it.
    fn wait_for_log(&mut self, needle: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log_text().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dnsmasq exited ({status}) before {what}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
