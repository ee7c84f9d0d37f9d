//! hako-runtime: an OCI runtime (runtime-spec 1.x) with the runc command line.
//!
//! The library owns the container lifecycle; the `hako-runtime` binary is a thin
//! command-line layer over it. Everything here is synchronous: the runtime is
//! started once per container operation and its start-up time is its product.
