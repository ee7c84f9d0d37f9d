//! Running the OCI runtime's `create`, `start` and `delete` by command line.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::args::Args;

/// Why the container could not be started, with docker's exit code for it:
/// 127 when the command was not found, 126 when it cannot be invoked, 125
/// for everything else.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

fn base(args: &Args) -> Command {
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.runtime_root)
        .arg("--log")
        .arg(&args.runtime_log)
        .arg("--log-format")
        .arg("json");
    cmd
}

/// The container's stdio for `runtime create`.
pub enum Stdio3 {
    /// Pipes (stdin: a pipe with `-i`, else /dev/null).
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A terminal: the runtime sends the pty master to this socket.
    Console(std::path::PathBuf),
}

/// `runtime create`, spawned: with a console the caller must take the pty
/// master while it runs (see [`crate::attach::receive_master`]), then [`wait`].
pub fn spawn_create(args: &Args, stdio: Stdio3) -> Result<std::process::Child, Failure> {
    let mut cmd = base(args);
    cmd.arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&args.pid_file);
    match stdio {
        Stdio3::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            cmd.stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(stderr));
        }
        Stdio3::Console(path) => {
            cmd.arg("--console-socket")
                .arg(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
    }
    cmd.arg(&args.id);
    cmd.spawn().map_err(|e| spawn_failure(args, "create", e))
}

/// Wait for a spawned runtime command.
pub fn wait(args: &Args, mut child: std::process::Child, verb: &str) -> Result<(), Failure> {
    let status = child.wait().map_err(|e| spawn_failure(args, verb, e))?;
    check(args, status, verb)
}

/// `runtime start`.
pub fn start(args: &Args) -> Result<(), Failure> {
    let mut cmd = base(args);
    cmd.arg("start")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(args, cmd, "start")
}

/// `runtime kill ID SIGNAL`.
pub fn kill(args: &Args, signal: &str) -> Result<(), Failure> {
    let mut cmd = base(args);
    cmd.arg("kill")
        .arg(&args.id)
        .arg(signal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(args, cmd, "kill")
}

/// `runtime delete` (forced: the container may be half-created).
pub fn delete(args: &Args) {
    let mut cmd = base(args);
    cmd.arg("delete")
        .arg("--force")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _ = cmd.status();
}

fn spawn_failure(args: &Args, verb: &str, e: std::io::Error) -> Failure {
    Failure {
        code: if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
        message: format!("running OCI runtime {} {verb}: {e}", args.runtime.display()),
    }
}

fn run(args: &Args, mut cmd: Command, verb: &str) -> Result<(), Failure> {
    let status = cmd.status().map_err(|e| spawn_failure(args, verb, e))?;
    check(args, status, verb)
}

fn check(args: &Args, status: std::process::ExitStatus, verb: &str) -> Result<(), Failure> {
    if status.success() {
        return Ok(());
    }
    let detail = last_error(&args.runtime_log)
        .unwrap_or_else(|| format!("exited with {status} and logged no error"));
    Err(Failure {
        code: classify(&detail),
        message: format!("OCI runtime {verb} failed: {detail}"),
    })
}

/// Docker's mapping of a failed start to an exit code.
fn classify(message: &str) -> i32 {
    let m = message.to_ascii_lowercase();
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("not found in $path")
    {
        127
    } else if m.contains("permission denied") {
        126
    } else {
        125
    }
}

/// The last error message in the runtime's JSON log (runc, crun and
/// hako-runtime all write `{"level":"error","msg":"..."}` lines).
fn last_error(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let mut found = None;
    for line in text.lines() {
        if let Some(msg) = json_string_field(line, "msg") {
            let is_error = json_string_field(line, "level")
                .map(|l| l == "error" || l == "fatal")
                .unwrap_or(true);
            if is_error {
                found = Some(msg);
            }
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('{') {
            found = Some(line.trim().to_string());
        }
    }
    found
}

/// Extract one string field from a flat JSON object line, unescaping the
/// common escapes. Enough for runtime log lines; avoids a JSON dependency.
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let at = line.find(&pat)? + pat.len();
    let rest = line[at..].trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let v = u32::from_str_radix(&hex, 16).ok()?;
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runtime_log_fields() {
        let line = r#"{"level":"error","msg":"exec: \"nope\": executable file not found in $PATH","time":"x"}"#;
        let msg = json_string_field(line, "msg").unwrap();
        assert_eq!(msg, "exec: \"nope\": executable file not found in $PATH");
        assert_eq!(classify(&msg), 127);
        assert_eq!(classify("open /x: permission denied"), 126);
        assert_eq!(classify("cgroup: invalid argument"), 125);
    }
}
