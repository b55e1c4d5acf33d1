//! `postern`: a TLS-terminating gateway for multi-port backends, on Pingora.
//!
//! The commands are the user-facing contract documented in README.md and
//! docs/configuration.md: `run`, `check`, `demo` and `hash-password`. `run`
//! and `check` load configuration through the same path, so whatever `check`
//! accepts, `run` serves.

#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!(
    "features `mimalloc` (the default) and `jemalloc` each choose the allocator: \
     for jemalloc, build with `--no-default-features --features jemalloc`"
);
// mimalloc: fewer instructions per request than glibc's malloc and more
// requests a second in every throughput scenario of docs/performance.md
// ("Allocators"), for more memory per idle connection.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod access_log;
mod auth;
mod client_cert;
mod client_hello;
mod client_timeouts;
mod connections;
mod decision;
mod demo;
mod failover;
mod forwarding;
mod health;
mod logging;
mod metrics;
mod pingora_answers;
mod pool;
mod proxy;
mod rate_limit;
mod reload;
mod renewal;
mod reply;
mod request_buffer;
mod resolve;
mod response;
mod response_headers;
mod server;
mod services;
mod snapshot;
mod table;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postern_config::Diagnostics;

use crate::snapshot::Snapshot;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "A TLS-terminating gateway for multi-port backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run(RunArg),
    /// Validate everything `run` would load, print the route table, bind nothing.
    Check(ConfigArg),
    /// Run the shipped gateway.toml with stand-in backends on the Domino REST API ports.
    Demo(ConfigArg),
    /// Read a password from stdin (no echo on a terminal) and print its
    /// argon2id hash for `[auth.NAME] users`.
    HashPassword,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Config file [default: $POSTERN_CONFIG, then ./gateway.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArg {
    #[command(flatten)]
    config: ConfigArg,
    /// Take over the listening sockets of the running gateway instead of
    /// binding them: start this, then send the old process SIGQUIT
    /// (see docs/operations.md, "Upgrade: changing listeners or the binary").
    #[arg(long)]
    upgrade: bool,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("POSTERN_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("gateway.toml"))
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    logging::init();
    // rustls panics at the first handshake if no process-wide provider is
    // set; Pingora builds its TLS configurations from this one.
    let _ = tls::crypto_provider().install_default();

    match cli.command {
        Command::Check(arg) => check(&arg.path()),
        Command::Run(arg) => match load(&arg.config.path()) {
            Some(snapshot) => serve(snapshot, arg.upgrade),
            None => ExitCode::from(1),
        },
        Command::Demo(arg) => demo::run(&arg.path()),
        Command::HashPassword => hash_password(),
    }
}

fn hash_password() -> ExitCode {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ");
        let second = rpassword::prompt_password("Again: ");
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("error: the passwords differ; nothing was printed");
                return ExitCode::from(1);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: cannot read the password: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
            eprintln!("error: cannot read the password from stdin: {e}");
            return ExitCode::from(1);
        }
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        eprintln!("error: the password is empty; nothing was printed");
        return ExitCode::from(1);
    }
    match postern_auth::hash_password(password.as_bytes()) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Loads and compiles a config, printing every finding; None when it has errors.
fn load(path: &std::path::Path) -> Option<Snapshot> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut diags = Diagnostics::default();
    let snapshot = match postern_config::load(path, &env) {
        Ok(loaded) => {
            diags.extend(loaded.warnings);
            snapshot::compile(loaded.config, &mut diags)
        }
        Err(errors) => {
            diags.extend(errors);
            None
        }
    };
    if !diags.is_empty() {
        eprintln!("{diags}");
    }
    let errors = diags.errors().count();
    if errors > 0 {
        eprintln!("{}: {errors} error(s); nothing was started", path.display());
        return None;
    }
    snapshot
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Some(snapshot) => {
            print!("{}", table::render(&snapshot));
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        None => ExitCode::from(1),
    }
}

fn serve(snapshot: Snapshot, upgrade: bool) -> ExitCode {
    match server::run(snapshot, upgrade) {
        Ok(never) => match never {},
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}
