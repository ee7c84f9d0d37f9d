//! hako-service: the server of `hako system service` (the Docker Engine API,
//! crates/dockerapi). `hako system service` parses the flags and execs this
//! binary with them (see hako_dockerapi::service): it links only the API,
//! the engine and the image stores, so the long-running service keeps far
//! fewer code pages resident than the whole `hako` command would.
//!
//!   hako-service [--log-level LEVEL] --options JSON

use std::process::ExitCode;

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
                    "Error: {}: usage: {} [--log-level LEVEL] --options JSON (started by hako system service)",
                    hako_dockerapi::service::BINARY,
                    hako_dockerapi::service::BINARY
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(options) = options else {
        eprintln!(
            "Error: {}: --options is missing (it is started by hako system service)",
            hako_dockerapi::service::BINARY
        );
        return ExitCode::from(2);
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = hako_dockerapi::Options::from_arg(&options).and_then(hako_dockerapi::run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
