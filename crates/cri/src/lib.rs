//! hako-cri: the Kubernetes Container Runtime Interface (CRI runtime.v1
//! RuntimeService and ImageService, gRPC over a unix socket) over
//! hako-engine and hako-image, as containerd's CRI plugin is over
//! containerd. kubelet (or crictl, or hako's own kubelet) drives pods
//! through it; pod sandboxes and containers are engine records, images are
//! the root's image store, so `hako ps` and `hako images` see them too.
//!
//! The generated types and services come from the `k8s-cri` crate; this
//! crate maps each RPC onto library calls, one module per service.
//! The library knows nothing of the command line.

pub mod cni;
pub mod config;
mod container;
pub mod error;
mod events;
mod image_service;
pub mod pause;
mod pod_stats;
mod pool;
pub mod process;
mod runtime_service;
mod sandbox;
mod server;
pub mod stream;

pub use config::Config;
pub use error::{Error, Result};
pub use pause::pause;
pub use server::{serve, ServeOptions, DEFAULT_SOCKET};

/// The CRI API version spoken.
pub const CRI_API_VERSION: &str = "v1";
/// The runtime name reported by Version.
pub const RUNTIME_NAME: &str = "hako";
/// The runtime version reported by Version (semver).
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
