//! PortForward's far end: a TCP connection to 127.0.0.1:PORT inside the
//! pod's network namespace (the sandbox's infra process's), made by a
//! thread that joins that namespace, connects and ends; the socket keeps
//! its namespace and is used from the async side afterwards.

use std::os::fd::AsFd;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::server::State;

/// The pod sandbox `id`'s network namespace, as a path to open; the
/// sandbox must be running (its infra process holds the namespace).
pub(crate) async fn netns_of(state: &Arc<State>, id: &str) -> Result<String, String> {
    let root = state.root.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let (engine, _) = crate::sandbox::open(&root).map_err(|e| e.to_string())?;
        let c = crate::sandbox::find(&engine, &id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("pod sandbox {id} not found"))?;
        let pid = c.state.pid;
        if pid > 0 && c.state.status == hako_engine::Status::Running {
            Ok(format!("/proc/{pid}/ns/net"))
        } else {
            Err(format!("pod sandbox {id} is not running"))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Connect to 127.0.0.1:`port` in the namespace at `netns`.
pub(crate) async fn connect(netns: &str, port: u16) -> Result<TcpStream, String> {
    let netns = netns.to_string();
    let std = tokio::task::spawn_blocking(move || {
        // A thread of its own: setns(2) moves only the calling thread, and
        // this one ends right after, so no other work runs in the pod's
        // namespace by accident.
        std::thread::spawn(move || -> Result<std::net::TcpStream, String> {
            let ns = std::fs::File::open(&netns)
                .map_err(|e| format!("opening the pod's network namespace {netns}: {e}"))?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("joining the pod's network namespace {netns}: {e}"))?;
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map_err(|e| format!("connecting to port {port} in the pod: {e}"))
        })
        .join()
        .map_err(|_| "the port-forward connector thread panicked".to_string())?
    })
    .await
    .map_err(|e| e.to_string())??;
    std.set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(std))
        .map_err(|e| format!("connecting to port {port} in the pod: {e}"))
}
