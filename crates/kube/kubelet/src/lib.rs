//! hako's kubelet and scheduler (issue 17): a client of the Kubernetes API that runs
//! the Pods bound to its Node through CRI, and the scheduler that binds them.
//!
//! Both talk to the cluster only through the Kubernetes API (kube-rs, a kubeconfig) and
//! to the container runtime only through CRI, so they work with hako's API server and
//! CRI service as well as with any conformant ones.

mod atomic_writer;
mod claims;
pub mod client;
mod env;
mod events;
pub mod kubelet;
mod logs;
mod node;
mod objects;
mod pod;
mod probe;
pub mod quantity;
pub mod scheduler;
mod server;
mod spec;
mod static_pods;
mod volumes;

pub use kubelet::{run_kubelet, KubeletOptions};
pub use node::host_ip;
pub use scheduler::{run_scheduler, SchedulerOptions};
pub use spec::ClusterDns;

/// At most two malloc arenas in this process. glibc gives threads that allocate at
/// the same time arenas of their own (up to eight per core) and keeps what they free
/// there, so a control-plane process's resident memory grew with its bursts of
/// concurrent requests. Call it before the process starts threads.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets an allocator tunable; it touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
