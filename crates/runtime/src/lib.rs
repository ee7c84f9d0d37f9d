//! hako-runtime: an OCI runtime (runtime-spec 1.x) with the runc command line.
//!
//! The library owns the container lifecycle; the `hako-runtime` binary is a thin
//! command-line layer over it. Everything here is synchronous: the runtime is
//! started once per container operation and its start-up time is its product.

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod console;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod spec;
pub mod state;
pub mod util;
