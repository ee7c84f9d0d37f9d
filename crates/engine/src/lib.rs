//! hako-engine: Docker-style containers over any OCI runtime, daemonless
//! like podman. A container is a record in SQLite ([`db`]) plus a directory
//! holding its OCI bundle; a per-container monitor process (`hako-monitor`,
//! like conmon) holds its stdio, writes its log and records its exit, so
//! containers outlive the command that started them. The runtime is driven
//! by its runc command line ([`runtime`]), never linked.
//!
//! One file per lifecycle verb: [`create`](Engine::create),
//! [`start`](Engine::start), [`stop`](Engine::stop), [`kill`](Engine::kill),
//! [`remove`](Engine::remove), [`wait`](Engine::wait), [`exec`](Engine::exec);
//! [`reconcile`](Engine::reconcile) keeps records truthful after crashes.
//! Interactive containers talk to their monitor through [`attachment`].
//! The library knows nothing of the command line.

mod attach;
pub mod attachment;
mod boot;
pub mod clock;
pub mod config;
pub mod cp;
mod create;
pub mod db;
mod engine;
pub mod error;
pub mod events;
mod exec;
mod fsutil;
pub mod health;
mod image_mounts;
pub mod inroot;
mod inspect;
mod kill;
pub mod logs;
mod mounts;
pub mod names;
pub mod network;
pub mod options;
mod pause;
pub mod proc;
pub mod prune_filter;
mod reconcile;
pub mod record;
mod remove;
mod rename;
mod reset;
pub mod runtime;
pub mod seccomp;
pub mod security;
mod shm;
pub mod spec;
mod start;
pub mod stats;
mod stop;
pub mod top;
mod update;
pub mod user;
pub mod volume;
mod wait;

pub use attachment::{Attachment, DetachMatcher, Event};
pub use boot::Booted;
pub use engine::{Engine, Programs, DEFAULT_ROOT, DEFAULT_RUN_ROOT};
pub use error::{Error, Result};
pub use exec::{ExecOptions, ExecTty};
pub use network::{Network, NetworkCreate};
pub use options::CreateOptions;
pub use reconcile::UNKNOWN_EXIT;
pub use record::{
    Bind, BindOptions, Config, Container, DriverConfig, HealthConfig, HostConfig, Mount, MountType,
    NetworkAttach, RestartPolicy, State, Status, Tmpfs, TmpfsOptions, Ulimit, VolumeOptions,
};
pub use start::Started;
pub use update::UpdateOptions;
pub use volume::{Volume, VolumeCreate};
