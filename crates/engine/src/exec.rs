//! `exec`: run another process in a running container through the
//! runtime's `exec --process`, inheriting the container's process settings
//! (environment, user, capabilities) as docker does.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Child;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Spec, UserBuilder};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::fsutil::write_replace;
use crate::record::Status;
use crate::user;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    /// Extra KEY=value entries.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// `-i`: the process reads the caller's stdin (else /dev/null).
    pub interactive: bool,
    /// `-t`: the process gets a terminal; use [`Engine::exec_tty`].
    pub tty: bool,
    /// `-d`: start it and return at once.
    pub detach: bool,
    /// The caller's terminal size (rows, cols), for `tty`.
    pub console_size: Option<(u16, u16)>,
    /// `--privileged`: every capability (docker's exec --privileged).
    pub privileged: bool,
}

/// A process running with a terminal: the caller relays its pty master.
pub struct ExecTty {
    /// The pty master (the process's terminal).
    pub master: OwnedFd,
    child: Child,
    /// The runtime's stderr (see [`crate::runtime::Runtime::exec_console`]).
    errors: PathBuf,
    name: String,
    /// For the exec_die event.
    events: crate::events::EventLog,
    container: crate::Container,
    exec_id: String,
}

impl ExecTty {
    /// The caller leaves the process running (detached): nothing will
    /// read the runtime's errors, so their file goes (still written, unlinked).
    pub fn detach(self) {
        let _ = std::fs::remove_file(&self.errors);
    }

    /// Wait for the process; its exit code, or the runtime's error when
    /// it could not start it (docker's 126/127 for "cannot run"/"not found").
    pub fn wait(mut self) -> Result<i32> {
        let status = self.child.wait();
        let text = std::fs::read_to_string(&self.errors).unwrap_or_default();
        let _ = std::fs::remove_file(&self.errors);
        let status = status
            .map_err(|e| Error::io(format!("waiting for an exec in container {}", self.name), e))?;
        let code = exit_code(status);
        self.events.emit(&crate::engine::container_event(
            &self.container,
            "exec_die",
            &[
                ("execID", self.exec_id.clone()),
                ("exitCode", code.to_string()),
            ],
        ));
        let text = text.trim();
        if code != 0 && !text.is_empty() {
            let lower = text.to_ascii_lowercase();
            return Err(Error::Exec {
                id: self.name.clone(),
                code: if lower.contains("not found") || lower.contains("no such file") {
                    127
                } else if lower.contains("permission denied") {
                    126
                } else {
                    125
                },
                message: text.replace('\n', " "),
            });
        }
        Ok(code)
    }
}

/// A process running with pipes for its stdio (see [`Engine::exec_piped`]).
pub struct ExecPiped {
    /// The runtime's `exec` (the process's stdio are its pipes).
    pub child: Child,
    file: PathBuf,
    events: crate::events::EventLog,
    container: crate::Container,
    exec_id: String,
}

impl ExecPiped {
    /// Wait for the process; its exit code.
    pub fn wait(mut self) -> Result<i32> {
        let status = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
        let status = status.map_err(|e| {
            Error::io(
                format!("waiting for an exec in container {}", self.container.name),
                e,
            )
        })?;
        let code = exit_code(status);
        self.events.emit(&crate::engine::container_event(
            &self.container,
            "exec_die",
            &[
                ("execID", self.exec_id.clone()),
                ("exitCode", code.to_string()),
            ],
        ));
        Ok(code)
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

impl Engine {
    /// Run a process in a running container with the caller's stdout and
    /// stderr (and stdin with `interactive`); returns its exit code, or 0
    /// at once with `detach`.
    pub fn exec(&self, what: &str, o: &ExecOptions) -> Result<i32> {
        if o.tty {
            return Err(Error::Invalid(
                "exec with a terminal goes through exec_tty".into(),
            ));
        }
        let (c, file) = self.exec_process(what, o)?;
        let rt = self.runtime_of(&c);
        let exec_id = self.exec_events_start(&c, o);
        let res = if o.detach {
            rt.exec_detached(&c.id, &file).map(|()| 0)
        } else {
            rt.exec(&c.id, &file, o.interactive)
        };
        let _ = std::fs::remove_file(&file);
        if !o.detach {
            self.exec_event_die(&c, &exec_id, res.as_ref().ok().copied());
        }
        res
    }

    /// Run a process in a running container with its stdio as pipes
    /// (stdin only with `interactive`), for a server relaying them; the
    /// caller waits for it with [`ExecPiped::wait`].
    pub fn exec_piped(&self, what: &str, o: &ExecOptions) -> Result<ExecPiped> {
        if o.tty {
            return Err(Error::Invalid(
                "exec with a terminal goes through exec_tty".into(),
            ));
        }
        let (c, file) = self.exec_process(what, o)?;
        let child = match self.runtime_of(&c).exec_spawn(&c.id, &file, o.interactive) {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                return Err(e);
            }
        };
        let exec_id = self.exec_events_start(&c, o);
        Ok(ExecPiped {
            child,
            file,
            events: self.events(),
            container: c,
            exec_id,
        })
    }

    /// docker's exec_create and exec_start events ("exec_start: sh -c ls");
    /// returns the exec's id.
    fn exec_events_start(&self, c: &crate::Container, o: &ExecOptions) -> String {
        let exec_id = crate::names::new_id();
        let cmd = o.cmd.join(" ");
        let extra = [("execID", exec_id.clone())];
        self.container_event(c, &format!("exec_create: {cmd}"), &extra);
        self.container_event(c, &format!("exec_start: {cmd}"), &extra);
        exec_id
    }

    /// The exec ended with `code` (None: the runtime failed to run it).
    pub(crate) fn exec_event_die(&self, c: &crate::Container, exec_id: &str, code: Option<i32>) {
        self.container_event(
            c,
            "exec_die",
            &[
                ("execID", exec_id.to_string()),
                ("exitCode", code.unwrap_or(126).to_string()),
            ],
        );
    }

    /// Run a process with a terminal in a running container: the runtime
    /// sends its pty master to a console socket of ours, which is returned
    /// for the caller to relay while the runtime waits for the process.
    pub fn exec_tty(&self, what: &str, o: &ExecOptions) -> Result<ExecTty> {
        let (c, file) = self.exec_process(what, o)?;
        // Unique per exec: a server (hako's CRI) runs several at once.
        let sock = std::env::temp_dir().join(format!(
            "hako-exec-{}-{}.console",
            std::process::id(),
            crate::names::new_id().get(..12).unwrap_or_default()
        ));
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)
            .ctx(|| format!("binding console socket {}", sock.display()))?;
        // In a shared directory: nobody else may hand us a terminal.
        let _ =
            std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let errors = file.with_extension("err");
        let spawned = self
            .runtime_of(&c)
            .exec_console(&c.id, &file, &sock, &errors);
        let res = spawned.and_then(|mut child| match receive_master(&listener, &mut child) {
            // The runtime read the process file before it made the terminal.
            Some(master) => Ok(ExecTty {
                master,
                child,
                errors: errors.clone(),
                name: c.name.clone(),
                events: self.events(),
                container: c.clone(),
                exec_id: self.exec_events_start(&c, o),
            }),
            None => {
                let status = child.wait().ok();
                let text = std::fs::read_to_string(&errors).unwrap_or_default();
                Err(Error::Runtime {
                    context: format!("exec in container {}", c.name),
                    message: match text.trim() {
                        "" => format!(
                            "the runtime sent no terminal ({})",
                            status.map(|s| s.to_string()).unwrap_or_default()
                        ),
                        t => t.replace('\n', " "),
                    },
                })
            }
        });
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&file);
        if res.is_err() {
            let _ = std::fs::remove_file(&errors);
        }
        res
    }

    /// Check the container and write the process JSON for `runtime exec`.
    fn exec_process(&self, what: &str, o: &ExecOptions) -> Result<(crate::Container, PathBuf)> {
        let c = self.get(what)?;
        if c.state.status != Status::Running {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        if c.state.restarting {
            return Err(Error::Conflict(format!(
                "container {} is restarting, wait until the container is running",
                c.name
            )));
        }
        if o.cmd.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let dir = self.container_dir(&c.id);
        let config_path = dir.join("config.json");
        let spec: Spec = serde_json::from_slice(
            &std::fs::read(&config_path).ctx(|| format!("reading {}", config_path.display()))?,
        )
        .ctx(|| format!("parsing {}", config_path.display()))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::Invalid(format!("{} has no process", config_path.display())))?;
        process.set_args(Some(o.cmd.clone()));
        let mut env = process.env().clone().unwrap_or_default();
        for e in &o.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        process.set_env(Some(env));
        if let Some(w) = &o.workdir {
            process.set_cwd(w.into());
        }
        if let Some(u) = &o.user {
            let u = user::resolve(&dir.join("rootfs"), u)?;
            process.set_user(
                UserBuilder::default()
                    .uid(u.uid)
                    .gid(u.gid)
                    .additional_gids(u.additional_gids)
                    .build()
                    .map_err(|e| Error::Invalid(format!("exec user: {e}")))?,
            );
            // The container's set, granted or not by the exec's user (docker's
            // `exec -u 0` in a non-root container gets them).
            let bounding = process
                .capabilities()
                .as_ref()
                .and_then(|c| c.bounding().clone())
                .unwrap_or_default();
            process.set_capabilities(Some(
                crate::security::process_capabilities(&bounding, u.uid).map_err(|e| {
                    Error::Invalid(format!("exec capabilities in container {}: {e}", c.name))
                })?,
            ));
        }
        if o.privileged {
            let all = crate::security::capabilities(true, &[], &[])?;
            let uid = process.user().uid();
            process.set_capabilities(Some(
                crate::security::process_capabilities(&all, uid).map_err(|e| {
                    Error::Invalid(format!("exec capabilities in container {}: {e}", c.name))
                })?,
            ));
        }
        check_command(&c, &process)?;
        process.set_terminal(Some(o.tty));
        if o.tty {
            if let Some((rows, cols)) = o.console_size {
                process.set_console_size(Some(
                    oci_spec::runtime::BoxBuilder::default()
                        .height(u64::from(rows))
                        .width(u64::from(cols))
                        .build()
                        .map_err(|e| Error::Invalid(format!("exec console size: {e}")))?,
                ));
            }
        }
        // Unique per exec: a server (the Engine API) runs several at once.
        let file = dir.join(format!(
            "exec-{}-{}.json",
            std::process::id(),
            crate::names::new_id().get(..12).unwrap_or_default()
        ));
        write_replace(
            &file,
            &serde_json::to_vec(&process).expect("process serialises"),
        )?;
        Ok((c, file))
    }
}

/// Fail as docker does (126 / 127) when the exec's command is missing or
/// not executable in the running container: the runtime's own error goes
/// to the stderr the process shares, so it cannot be told from the
/// process's exit code afterwards.
fn check_command(c: &crate::Container, process: &oci_spec::runtime::Process) -> Result<()> {
    let Some(cmd) = process.args().as_ref().and_then(|a| a.first()) else {
        return Ok(());
    };
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::config::DEFAULT_PATH);
    let root = PathBuf::from(format!("/proc/{}/root", c.state.pid));
    let cwd = process.cwd().to_string_lossy();
    let (code, why) = match crate::inroot::find_command(&root, cmd, path, &cwd) {
        Ok(crate::inroot::Command::NotFound) if cmd.contains('/') => {
            (127, "no such file or directory")
        }
        Ok(crate::inroot::Command::NotFound) => (127, "executable file not found in $PATH"),
        Ok(crate::inroot::Command::NotExecutable) => (126, "permission denied"),
        Ok(crate::inroot::Command::Found) => return Ok(()),
        // Not checkable: the runtime will say.
        Err(e) => {
            tracing::debug!("looking up {cmd:?} in container {}: {e}", c.name);
            return Ok(());
        }
    };
    Err(Error::Exec {
        id: c.name.clone(),
        code,
        message: format!("{cmd:?}: {why}"),
    })
}

/// Take the pty master the runtime sends while `child` runs; None when it
/// ended without sending one.
fn receive_master(listener: &UnixListener, child: &mut Child) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    listener.set_nonblocking(true).ok()?;
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !matches!(child.try_wait(), Ok(None)) {
                    break listener.accept().ok()?.0;
                }
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                // Short naps: the runtime's end is checked between them.
                let _ = poll(&mut fds, PollTimeout::from(50u16));
            }
            Err(_) => return None,
        }
    };
    conn.set_nonblocking(false).ok()?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the descriptor was just received and is ours alone.
                return Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    None
}
