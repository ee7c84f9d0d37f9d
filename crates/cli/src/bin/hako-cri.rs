//! hako-cri: the server of `hako cri serve` (crates/cri). `hako cri serve`
//! parses the flags and execs this binary with them (see
//! hako_cri::process): it links only the CRI, the engine and the image
//! stores, so the long-running server keeps far fewer code pages resident
//! than the whole `hako` command would.
//!
//!   hako-cri [--log-level LEVEL] --options JSON

use std::process::ExitCode;

use hako_cri::process::BINARY;

fn main() -> ExitCode {
    let mut level = String::from("warn");
    let mut options = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--log-level", Some(v)) => level = v,
            ("--options", Some(v)) => options = Some(v),
            _ => {
                eprintln!(
                    "Error: {BINARY}: usage: {BINARY} [--log-level LEVEL] --options JSON (started by hako cri serve)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(options) = options else {
        eprintln!("Error: {BINARY}: --options is missing (it is started by hako cri serve)");
        return ExitCode::from(2);
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match hako_cri::ServeOptions::from_arg(&options).and_then(hako_cri::serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
