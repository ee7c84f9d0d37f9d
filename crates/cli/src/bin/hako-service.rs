//! hako-service: the server of `hako system service` (the Docker Engine API,
//! crates/dockerapi). `hako system service` parses the flags and execs this
//! binary with them (see hako_dockerapi::service): it links only the API,
//! the engine and the image stores, so the long-running service keeps far
//! fewer code pages resident than the whole `hako` command would.
//!
//!   hako-service [--log-level LEVEL] --options JSON

use std::process::ExitCode;

#[path = "../server_exec.rs"]
mod server_exec;

fn main() -> ExitCode {
    let options =
        match server_exec::server_args(hako_dockerapi::service::BINARY, "hako system service") {
            Ok(o) => o,
            Err(code) => return code,
        };
    server_exec::exit(hako_dockerapi::Options::from_arg(&options).and_then(hako_dockerapi::run))
}
