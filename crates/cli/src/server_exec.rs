//! What the servers `hako` execs (`hako-service`, `hako-cri`) share with it:
//! their two arguments, the log set-up and the exit. Included by path by
//! each binary (a bin crate cannot `use` another's modules).

use std::process::ExitCode;

/// Logs to stderr at `level` (a tracing filter; bad ones fall back to warn).
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// A server's `[--log-level LEVEL] --options JSON`, logging set up; `binary`
/// and `parent` (the hako command that execs it) name it in the usage error.
#[allow(dead_code)] // hako itself uses only init_logging
pub fn server_args(binary: &str, parent: &str) -> Result<String, ExitCode> {
    let mut level = String::from("warn");
    let mut options = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--log-level", Some(v)) => level = v,
            ("--options", Some(v)) => options = Some(v),
            _ => {
                eprintln!(
                    "Error: {binary}: usage: {binary} [--log-level LEVEL] --options JSON (started by {parent})"
                );
                return Err(ExitCode::from(2));
            }
        }
    }
    let Some(options) = options else {
        eprintln!("Error: {binary}: --options is missing (it is started by {parent})");
        return Err(ExitCode::from(2));
    };
    init_logging(&level);
    Ok(options)
}

/// The server's exit: its error on one line.
#[allow(dead_code)]
pub fn exit<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
