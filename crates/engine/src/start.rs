//! `start`: hand the container to a new monitor process, which creates and
//! starts it with the OCI runtime and supervises it from then on.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use hako_image::ImageStore;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

use crate::attachment::Attachment;
use crate::clock;
use crate::engine::{Engine, Programs};
use crate::error::{Context, Error, Result};
use crate::proc;
use crate::record::{Container, Status};

/// Written by the monitor at every (re)start: the current run (see reconcile).
pub(crate) const STATE_FILE: &str = "state.json";
/// Made by `stop`, `kill` and `rm -f`: the monitor must not restart the container.
pub(crate) const STOP_MARKER: &str = "stop-requested";

/// A started container: its monitor's progress pipe, read by a foreground
/// `run` to learn the exit code (see [`Started::follow`]).
pub struct Started {
    pub container: Container,
    pub(crate) sync: Option<BufReader<File>>,
    /// With [`Engine::start_attached`]: connected before the container
    /// started, so none of its output is missed.
    pub attachment: Option<Attachment>,
}

impl Engine {
    /// Start a created or exited container. Starting a running one does nothing.
    pub fn start(
        &self,
        images: &mut ImageStore,
        what: &str,
        programs: &Programs,
    ) -> Result<Started> {
        self.start_with(images, what, programs, None)
    }

    /// `restart`: stop (with `timeout`), then start again.
    pub fn restart(
        &self,
        images: &mut ImageStore,
        what: &str,
        programs: &Programs,
        timeout: Option<u32>,
    ) -> Result<()> {
        self.restart_with_signal(images, what, programs, timeout, None)
    }

    /// `restart -s SIGNAL`: the stop sends `signal` (see `stop_with_signal`).
    pub fn restart_with_signal(
        &self,
        images: &mut ImageStore,
        what: &str,
        programs: &Programs,
        timeout: Option<u32>,
        signal: Option<&str>,
    ) -> Result<()> {
        self.stop_with_signal(what, timeout, signal)?;
        let started = self.start(images, what, programs)?;
        self.container_event(&started.container, "restart", &[]);
        Ok(())
    }

    /// Start a container with the caller attached from the first byte of
    /// output (`run -i/-t`, `start -a`); `size` is the caller's terminal
    /// size, set on the container's pty before it starts. An already
    /// running container is attached to as it is.
    pub fn start_attached(
        &self,
        images: &mut ImageStore,
        what: &str,
        programs: &Programs,
        size: Option<(u16, u16)>,
    ) -> Result<Started> {
        self.start_with(images, what, programs, Some(size))
    }

    fn start_with(
        &self,
        images: &mut ImageStore,
        what: &str,
        programs: &Programs,
        attach: Option<Option<(u16, u16)>>,
    ) -> Result<Started> {
        // get, not find: a start whose command died unrecorded is adopted
        // first (that needs the lock, taken next).
        let found = self.get(what)?;
        let _lock = self.lock(&found.id)?;
        let mut c = self.find(&found.id)?;
        self.reconcile(&mut c)?;
        match c.state.status {
            Status::Running => {
                let attachment = match attach {
                    Some(size) => Some(Attachment::connect(
                        &self.container_dir(&c.id),
                        &c.name,
                        size,
                    )?),
                    None => None,
                };
                return Ok(Started {
                    container: c,
                    sync: None,
                    attachment,
                });
            }
            Status::Removing => {
                return Err(Error::Conflict(format!(
                    "cannot start container {}: it is being removed",
                    c.name
                )))
            }
            Status::Created | Status::Exited => {}
        }
        let dir = self.container_dir(&c.id);
        self.ensure_mounted(images, &c)?;
        self.mount_volumes(&c)?;
        // A start by the user begins afresh: no stop mark, no restart count,
        // no health of an earlier run, no pause.
        for stale in [
            "exit.json",
            "pid",
            "runtime.log",
            STATE_FILE,
            STOP_MARKER,
            "health.json",
            "paused",
        ] {
            let _ = fs::remove_file(dir.join(stale));
        }
        let rt = self.runtime_of(&c);
        fs::create_dir_all(&rt.root)
            .ctx(|| format!("creating runtime state directory {}", rt.root.display()))?;
        // A runtime record left by a crash would make `create` fail.
        if rt.knows(&c.id) {
            let _ = rt.delete_force(&c.id);
        }

        // The /etc files are run state written without fsync: rebuild them
        // (a crash may have left them empty).
        crate::create::write_etc_files(&dir, &c)?;
        self.join_network(&c)?;
        self.join_namespaces(&c)?;
        self.prepare_shm(&c)?;
        self.network_up(&c)?;
        if let Some(ns) = self.ensure_dns(&c, programs) {
            crate::create::write_resolv_conf(&dir, &c, Some(&ns))?;
        }
        let res = self.spawn_monitor(c, programs, attach);
        if let Err(e) = &res {
            if let Ok(c) = self.find(&found.id) {
                if let Err(down) = self.network_down(&c) {
                    tracing::warn!("after failing to start {}: {down}", c.name);
                }
            }
            let _ = e;
        }
        res
    }

    /// Launch the monitor and wait for its first report.
    fn spawn_monitor(
        &self,
        mut c: Container,
        programs: &Programs,
        attach: Option<Option<(u16, u16)>>,
    ) -> Result<Started> {
        let dir = self.container_dir(&c.id);
        let rt = self.runtime_of(&c);
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .ctx(|| format!("creating the monitor pipe of container {}", c.name))?;
        // The monitor inherits the write end under its own number.
        fcntl(&write, FcntlArg::F_SETFD(FdFlag::empty()))
            .ctx(|| format!("passing the monitor pipe of container {}", c.name))?;
        let mut cmd = Command::new(&programs.monitor);
        cmd.arg("--id")
            .arg(&c.id)
            .arg("--bundle")
            .arg(&dir)
            .arg("--runtime")
            .arg(&rt.path)
            .arg("--runtime-root")
            .arg(&rt.root)
            .arg("--log")
            .arg(self.log_file(&c))
            .arg("--exit-file")
            .arg(dir.join("exit.json"))
            .arg("--pid-file")
            .arg(dir.join("pid"))
            .arg("--runtime-log")
            .arg(dir.join("runtime.log"))
            .arg("--sync-fd")
            .arg(write.as_raw_fd().to_string());
        // The cleanup after an exit releases the container's own network
        // (or removes it, --rm): without either there is nothing to do, and
        // no process of hako to start per exit, which a stop waits for (the
        // containers of a CRI pod join their sandbox's network), nor when
        // the caller releases the network itself (a CRI sandbox).
        let own_network =
            !(c.host.network_mode == "host" || c.host.network_mode.starts_with("container:"));
        if c.host.auto_remove || (own_network && !c.host.network_released_by_caller) {
            for a in programs.exit_command.iter().chain(std::iter::once(&c.id)) {
                cmd.arg("--exit-command").arg(a);
            }
        }
        cmd.arg("--state-file")
            .arg(dir.join(STATE_FILE))
            .arg("--stop-marker")
            .arg(dir.join(STOP_MARKER))
            .arg("--cgroup")
            .arg(crate::spec::container_cgroup(&c.host, &c.id))
            .arg("--restart")
            .arg(&c.host.restart_policy.name)
            .arg("--restart-max")
            .arg(c.host.restart_policy.maximum_retry_count.to_string());
        if c.host.log_config.typ == crate::record::CRI_LOG_DRIVER {
            cmd.arg("--log-format").arg("cri");
        } else if !c.host.log_config.readable() {
            cmd.arg("--log-format").arg("none");
        }
        if let Some(max) = c.host.log_config.max_size() {
            cmd.arg("--log-max-size")
                .arg(max.to_string())
                .arg("--log-max-files")
                .arg(c.host.log_config.max_files().to_string());
        }
        if let Some(h) = self.plan_health(&c)? {
            cmd.arg("--health-process")
                .arg(&h.process)
                .arg("--health-file")
                .arg(&h.file)
                .arg("--health-interval-ns")
                .arg(h.interval_ns.to_string())
                .arg("--health-timeout-ns")
                .arg(h.timeout_ns.to_string())
                .arg("--health-start-period-ns")
                .arg(h.start_period_ns.to_string())
                .arg("--health-start-interval-ns")
                .arg(h.start_interval_ns.to_string())
                .arg("--health-retries")
                .arg(h.retries.to_string());
        }
        // The monitor reports start, die, health_status and oom itself.
        let mut attributes: serde_json::Map<String, serde_json::Value> = c
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        attributes.insert("name".into(), c.name.clone().into());
        attributes.insert("image".into(), c.image.clone().into());
        let events = self.events();
        events.prepare()?;
        cmd.arg("--events")
            .arg(events.path())
            .arg("--event-attributes")
            .arg(serde_json::Value::Object(attributes).to_string());
        let flag = |b: bool| if b { "1" } else { "0" };
        cmd.arg("--stdin")
            .arg(flag(c.config.open_stdin))
            .arg("--tty")
            .arg(flag(c.config.tty))
            .arg("--attach-wait")
            .arg(flag(attach.is_some()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd.status().map_err(|e| {
            Error::io(
                format!(
                    "starting monitor {} for container {}",
                    programs.monitor.display(),
                    c.name
                ),
                e,
            )
        })?;
        drop(write);
        if !status.success() {
            return Err(Error::Start {
                id: c.name.clone(),
                code: 125,
                message: format!(
                    "monitor {} exited with {status}",
                    programs.monitor.display()
                ),
            });
        }
        let mut sync = BufReader::new(File::from(read));
        let mut line = String::new();
        sync.read_line(&mut line)
            .ctx(|| format!("reading from the monitor of container {}", c.name))?;
        // The monitor created the container and waits for us before the start.
        let mut attachment = None;
        if let (Some(size), "attach-ready") = (attach, line.trim_end()) {
            // A failed connection is reported once the start is recorded:
            // the monitor starts the container anyway, after a while.
            attachment = Some(Attachment::connect(&dir, &c.name, size));
            line.clear();
            sync.read_line(&mut line)
                .ctx(|| format!("reading from the monitor of container {}", c.name))?;
        }
        let line = line.trim_end();
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("started"), Some(pid), Some(mon)) => {
                let pid: i32 = pid.parse().unwrap_or(0);
                let mon: i32 = mon.parse().unwrap_or(0);
                c.state.status = Status::Running;
                c.state.pid = pid;
                c.state.pid_start = proc::start_time(pid).unwrap_or(0);
                c.state.monitor_pid = mon;
                c.state.monitor_start = proc::start_time(mon).unwrap_or(0);
                c.state.exit_code = 0;
                c.state.started_at = clock::now();
                c.state.finished_at = String::new();
                c.state.error = String::new();
                c.state.restart_count = 0;
                c.state.restarting = false;
                c.state.oom_killed = false;
                self.db.set_state(&c.id, &c.state)?;
                Ok(Started {
                    container: c,
                    sync: Some(sync),
                    attachment: attachment.transpose()?,
                })
            }
            (Some("error"), Some(code), rest) => {
                let code: i32 = code.parse().unwrap_or(125);
                let message = rest.unwrap_or("").to_string();
                c.state.exit_code = code;
                c.state.error = message.clone();
                self.db.set_state(&c.id, &c.state)?;
                Err(Error::Start {
                    id: c.name.clone(),
                    code,
                    message,
                })
            }
            _ => {
                let log = fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
                Err(Error::Start {
                    id: c.name.clone(),
                    code: 125,
                    message: format!(
                        "the monitor ended without reporting{}{}",
                        if log.is_empty() { "" } else { ": " },
                        log.trim().replace('\n', " ")
                    ),
                })
            }
        }
    }

    /// After a reboot the overlay is gone: mount it again over the same
    /// upper layer. A volatile one's upper layer was never synced, so it
    /// cannot be trusted after the host went down (the kernel refuses it
    /// while its marker is there): it starts again empty, from the image.
    fn ensure_mounted(&self, images: &mut ImageStore, c: &Container) -> Result<()> {
        let dir = self.container_dir(&c.id);
        crate::image_mounts::ensure(images, &dir, c)?;
        let dev = |p: &std::path::Path| fs::metadata(p).map(|m| m.dev()).ok();
        if dev(&dir.join("rootfs")).is_some() && dev(&dir.join("rootfs")) != dev(&dir) {
            return Ok(());
        }
        let _ = images.unmount(&dir.to_string_lossy());
        if c.host.volatile_rootfs
            && hako_image::snapshot::Snapshotter::volatile_marker(&dir).exists()
        {
            for d in ["upper", "work"] {
                let p = dir.join(d);
                match fs::remove_dir_all(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).ctx(|| {
                            format!(
                                "discarding the volatile writable layer {} of container {}",
                                p.display(),
                                c.name
                            )
                        })
                    }
                }
            }
        }
        images
            .mount_with(&c.image_id, &dir, c.host.volatile_rootfs)
            .ctx(|| format!("mounting the root filesystem of container {}", c.name))?;
        Ok(())
    }
}
