//! `postern-echo`: runs the echo backend from the command line, e.g. to put
//! stand-in upstreams behind a gateway by hand.

use std::net::SocketAddr;
use std::process::ExitCode;

use futures_util::FutureExt;
use postern_echo::EchoServer;

const USAGE: &str = "\
usage: postern-echo --listen ADDR [--listen ADDR ...] [--name NAME]

Answers every HTTP request with a JSON description of what it received.

options:
  --listen ADDR   address to listen on, as IP:PORT (e.g. 127.0.0.1:8880);
                  repeat for several listeners
  --name NAME     label reported as \"backend\" in responses (default: echo)
  -h, --help      print this help

special paths (also behind a prefix): .../status/<code>, .../delay/<ms>";

#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Run {
        listen: Vec<SocketAddr>,
        name: String,
    },
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut listen = Vec::new();
    let mut name = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept both `--opt value` and `--opt=value`, as most CLIs do.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--listen" => {
                let raw = value("--listen")?;
                let addr = raw.parse::<SocketAddr>().map_err(|_| {
                    format!(
                        "invalid --listen address {raw:?}: expected IP:PORT, \
                         e.g. 127.0.0.1:8880 or [::1]:8880"
                    )
                })?;
                listen.push(addr);
            }
            "--name" => {
                if name.is_some() {
                    return Err("--name given more than once".to_owned());
                }
                name = Some(value("--name")?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if listen.is_empty() {
        return Err("at least one --listen ADDR is required".to_owned());
    }
    Ok(Command::Run {
        listen,
        name: name.unwrap_or_else(|| "echo".to_owned()),
    })
}

fn main() -> ExitCode {
    let (listen, name) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run { listen, name }) => (listen, name),
        Err(message) => {
            eprintln!("postern-echo: {message}");
            eprintln!("run `postern-echo --help` for usage");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("postern-echo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(listen, name))
}

async fn run(listen: Vec<SocketAddr>, name: String) -> ExitCode {
    // `ctrl_c` installs its handler on first poll. Poll it once before
    // announcing the listeners, so a supervisor that sends SIGINT as soon as
    // it reads "listening" stops us cleanly instead of killing us.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    match ctrl_c.as_mut().now_or_never() {
        None => {}
        Some(Ok(())) => return ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("postern-echo: cannot wait for Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    }

    let mut servers = Vec::with_capacity(listen.len());
    for addr in listen {
        match EchoServer::start(addr, &name).await {
            Ok(server) => {
                println!("postern-echo: {name} listening on {}", server.local_addr());
                servers.push(server);
            }
            Err(e) => {
                eprintln!("postern-echo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match ctrl_c.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern-echo: cannot wait for Ctrl-C: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_listeners_and_name() {
        assert_eq!(
            parse(&[
                "--listen",
                "127.0.0.1:8880",
                "--listen=[::1]:8886",
                "--name",
                "data"
            ]),
            Ok(Command::Run {
                listen: vec![
                    "127.0.0.1:8880".parse().unwrap(),
                    "[::1]:8886".parse().unwrap()
                ],
                name: "data".to_owned(),
            })
        );
        assert_eq!(
            parse(&["--listen", "127.0.0.1:0"]),
            Ok(Command::Run {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                name: "echo".to_owned(),
            })
        );
        assert!(parse(&["--listen", "x", "--help"]).is_err());
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert_eq!(
            parse(&["--listen", "localhost:80"]),
            Err(
                "invalid --listen address \"localhost:80\": expected IP:PORT, \
                 e.g. 127.0.0.1:8880 or [::1]:8880"
                    .to_owned()
            )
        );
        assert_eq!(
            parse(&["--listen"]),
            Err("--listen needs a value".to_owned())
        );
        assert_eq!(
            parse(&[]),
            Err("at least one --listen ADDR is required".to_owned())
        );
        assert_eq!(
            parse(&["--bogus"]),
            Err("unknown argument \"--bogus\"".to_owned())
        );
        assert_eq!(
            parse(&["--listen", "127.0.0.1:1", "--name", "a", "--name", "b"]),
            Err("--name given more than once".to_owned())
        );
    }
}
