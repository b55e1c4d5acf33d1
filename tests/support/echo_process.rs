//! Echo backends as separate OS processes (the `postern-echo` binary), for the
//! tests that kill a server the way a crash does: SIGKILL, so its listener and
//! every open connection vanish at once, with no goodbye to the gateway.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `postern-echo`, built beside this test binary (`cargo test` builds it,
/// for crates/echo's own integration tests).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/tests-HASH -> target/<profile>/postern-echo
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("postern-echo");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it; after `cargo test --test tests ...` alone, \
         run `cargo build -p postern-echo` first",
        path.display()
    );
    path
}

/// One `postern-echo` process, killed when dropped.
pub struct EchoProcess {
    child: Child,
    addr: SocketAddr,
    // Held so the process never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl EchoProcess {
    /// A new process on a free loopback port, answering as `name`.
    pub fn start(name: &str) -> EchoProcess {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), name)
    }

    /// A new process listening on `addr` (e.g. the port of one just killed).
    pub fn start_on(addr: SocketAddr, name: &str) -> EchoProcess {
        let mut child = Command::new(binary())
            .args(["--listen", &addr.to_string(), "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn postern-echo");
        let stdout = child.stdout.take().expect("piped stdout");
        // The first line names the bound address; wait for it off this
        // thread so a process that never says it is a clear failure.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), reader));
        });
        let (line, stdout) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((Ok(line), reader)) => (line, reader),
            Ok((Err(e), _)) => panic!("postern-echo {name} on {addr}: reading its output: {e}"),
            Err(_) => {
                let _ = child.kill();
                panic!("postern-echo {name} on {addr} did not start within 20 s")
            }
        };
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| {
                let status = child.try_wait().ok().flatten();
                panic!("postern-echo {name} on {addr} did not start ({status:?}): {line:?}")
            });
        EchoProcess {
            child,
            addr,
            _stdout: stdout,
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        // SIGKILL, then reap: the port is free once this returns.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
