//! hako-cri: the server of `hako cri serve` (crates/cri). `hako cri serve`
//! parses the flags and execs this binary with them (see
//! hako_cri::process): it links only the CRI, the engine and the image
//! stores, so the long-running server keeps far fewer code pages resident
//! than the whole `hako` command would.
//!
//!   hako-cri [--log-level LEVEL] --options JSON

use std::process::ExitCode;

#[path = "../server_exec.rs"]
mod server_exec;

fn main() -> ExitCode {
    let options = match server_exec::server_args(hako_cri::process::BINARY, "hako cri serve") {
        Ok(o) => o,
        Err(code) => return code,
    };
    server_exec::exit(hako_cri::ServeOptions::from_arg(&options).and_then(hako_cri::serve))
}
