//! Echo servers for callers that are not async (the demo).

use std::io;
use std::net::SocketAddr;

use crate::{EchoServer, Responder};

/// Runs echo servers on the given (addr, name) pairs on a dedicated
/// background thread with its own tokio runtime, for callers that are not
/// async (the demo). Returns once all are bound, with their addresses, or
/// the first bind error.
///
/// The servers run for the rest of the process.
pub fn spawn_background(backends: Vec<(SocketAddr, String)>) -> io::Result<Vec<SocketAddr>> {
    spawn_background_with(
        backends
            .into_iter()
            .map(|(addr, name)| (addr, name, None))
            .collect(),
    )
}

/// As [`spawn_background`], each backend with an optional [`Responder`].
pub fn spawn_background_with(
    backends: Vec<(SocketAddr, String, Option<Responder>)>,
) -> io::Result<Vec<SocketAddr>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postern-echo".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut servers = Vec::with_capacity(backends.len());
                for (addr, name, responder) in backends {
                    match EchoServer::start_with(addr, &name, responder).await {
                        Ok(server) => servers.push(server),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                }
                let addrs = servers.iter().map(EchoServer::local_addr).collect();
                if ready_tx.send(Ok(addrs)).is_err() {
                    return;
                }
                // The servers live in this future; parking here keeps them
                // (and the runtime driving them) alive for good.
                std::future::pending::<()>().await;
            });
        })?;
    ready_rx.recv().unwrap_or_else(|_| {
        Err(io::Error::other(
            "echo backend thread exited before binding its listeners",
        ))
    })
}
