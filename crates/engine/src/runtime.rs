//! The OCI runtime, driven by its runc-compatible command line (never
//! linked): hako-runtime by default, runc and crun as well, by name or path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The runtime used when none is named.
pub const DEFAULT: &str = "hako-runtime";

/// One runtime binary with its state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub path: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
}

/// Find a runtime: a path is taken as is; a bare name is looked up next to
/// the running program first (so a build tree's hako-runtime is found),
/// then on PATH and in the sbin directories where Debian installs runc.
pub fn resolve(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::not_found(format!("OCI runtime {name}")))
        };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::not_found(format!("OCI runtime {name} (not next to hako nor on PATH)"))
        })
}

impl Runtime {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    fn run(&self, mut cmd: Command, context: impl FnOnce() -> String) -> Result<()> {
        let context = context();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("{context}: running {}", self.path.display()), e))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(Error::Runtime {
            context,
            message: format!(
                "{} exited with {}: {}",
                self.path.display(),
                out.status,
                stderr.trim().replace('\n', " ")
            ),
        })
    }

    /// Send a signal ("SIGTERM", "9", "KILL") to the container's init.
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("kill").arg(id).arg(signal);
        self.run(cmd, || format!("sending {signal} to container {id}"))
    }

    /// Remove the container from the runtime, killing it if needed.
    pub fn delete_force(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("delete").arg("--force").arg(id);
        self.run(cmd, || format!("deleting container {id} from the runtime"))
    }

    /// Freeze every process of the container (cgroup freezer).
    pub fn pause(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("pause").arg(id);
        self.run(cmd, || format!("pausing container {id}"))
    }

    /// Change a running container's limits (`update -r FILE`, runc's form).
    pub fn update(&self, id: &str, resources_file: &std::path::Path) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("update").arg("-r").arg(resources_file).arg(id);
        self.run(cmd, || format!("updating the limits of container {id}"))
    }

    /// Thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("resume").arg(id);
        self.run(cmd, || format!("unpausing container {id}"))
    }

    /// Run a runtime command and return its stdout.
    fn output(&self, mut cmd: Command, context: impl FnOnce() -> String) -> Result<Vec<u8>> {
        let context = context();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("{context}: running {}", self.path.display()), e))?;
        if !out.status.success() {
            return Err(Error::Runtime {
                context,
                message: format!(
                    "{} exited with {}: {}",
                    self.path.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .trim()
                        .replace('\n', " ")
                ),
            });
        }
        Ok(out.stdout)
    }

    /// The host pids of every process in the container (`ps --format json`).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let mut cmd = self.command();
        cmd.arg("ps").arg("--format").arg("json").arg(id);
        let out = self.output(cmd, || format!("listing the processes of container {id}"))?;
        serde_json::from_slice(&out).map_err(|e| Error::Runtime {
            context: format!("listing the processes of container {id}"),
            message: format!("malformed ps output: {e}"),
        })
    }

    /// The runtime's status word ("running", "paused", ...).
    pub fn status(&self, id: &str) -> Result<String> {
        let mut cmd = self.command();
        cmd.arg("state").arg(id);
        let out = self.output(cmd, || format!("reading the state of container {id}"))?;
        let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| Error::Runtime {
            context: format!("reading the state of container {id}"),
            message: format!("malformed state: {e}"),
        })?;
        Ok(v["status"].as_str().unwrap_or_default().to_string())
    }

    /// One resource usage sample (`events --stats`, runc's JSON shape).
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let mut cmd = self.command();
        cmd.arg("events").arg("--stats").arg(id);
        let out = self.output(cmd, || {
            format!("reading the resource usage of container {id}")
        })?;
        serde_json::from_slice(&out).map_err(|e| Error::Runtime {
            context: format!("reading the resource usage of container {id}"),
            message: format!("malformed stats: {e}"),
        })
    }

    /// Whether the runtime still knows the container.
    pub fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// `exec --process FILE ID`, with the caller's stdout/stderr (and stdin
    /// when `stdin`); returns the process's exit code as the runtime reports it.
    pub fn exec(&self, id: &str, process_json: &Path, stdin: bool) -> Result<i32> {
        let mut cmd = self.command();
        cmd.arg("exec").arg("--process").arg(process_json).arg(id);
        if !stdin {
            cmd.stdin(Stdio::null());
        }
        let status = cmd.status().map_err(|e| {
            Error::io(
                format!("running {} exec in container {id}", self.path.display()),
                e,
            )
        })?;
        Ok(status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }))
    }

    /// `exec --process FILE ID` spawned with piped stdout and stderr (and
    /// stdin when `stdin`, else /dev/null): a server relays them.
    pub fn exec_spawn(
        &self,
        id: &str,
        process_json: &Path,
        stdin: bool,
    ) -> Result<std::process::Child> {
        let mut cmd = self.command();
        cmd.arg("exec").arg("--process").arg(process_json).arg(id);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().map_err(|e| {
            Error::io(
                format!("running {} exec in container {id}", self.path.display()),
                e,
            )
        })
    }

    /// `exec --detach`: start the process and return; its output is dropped
    /// (nobody is attached to it). The process inherits the runtime's stdio,
    /// so the runtime's errors go to a file, not a pipe the process would
    /// hold open.
    pub fn exec_detached(&self, id: &str, process_json: &Path) -> Result<()> {
        let errors = process_json.with_extension("err");
        let file = std::fs::File::create(&errors)
            .map_err(|e| Error::io(format!("creating {}", errors.display()), e))?;
        let mut cmd = self.command();
        cmd.arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(process_json)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let status = cmd.status().map_err(|e| {
            Error::io(
                format!("running {} exec in container {id}", self.path.display()),
                e,
            )
        });
        let text = std::fs::read_to_string(&errors).unwrap_or_default();
        let _ = std::fs::remove_file(&errors);
        let status = status?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Runtime {
            context: format!("starting a process in container {id}"),
            message: format!(
                "{} exited with {status}: {}",
                self.path.display(),
                text.trim().replace('\n', " ")
            ),
        })
    }

    /// `exec --console-socket SOCK --process FILE ID` in the foreground,
    /// spawned: the caller takes the pty master from the socket. The
    /// runtime's errors go to `errors` (a pipe would be held open by it for
    /// as long as the process runs, after the caller detached too).
    pub fn exec_console(
        &self,
        id: &str,
        process_json: &Path,
        socket: &Path,
        errors: &Path,
    ) -> Result<std::process::Child> {
        let file = std::fs::File::create(errors)
            .map_err(|e| Error::io(format!("creating {}", errors.display()), e))?;
        let mut cmd = self.command();
        cmd.arg("exec")
            .arg("--console-socket")
            .arg(socket)
            .arg("--process")
            .arg(process_json)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        // A process group of its own: the hangup of the caller's terminal
        // (the caller detached and exited) must not reach the runtime, which
        // would pass it on to the process.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().map_err(|e| {
            Error::io(
                format!("running {} exec in container {id}", self.path.display()),
                e,
            )
        })
    }
}
