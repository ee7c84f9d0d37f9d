//! Making records truthful again. The monitor writes the exit status to a
//! file and never touches the database, so every command first folds such
//! files into the records; and a record that says "running" while neither
//! its monitor nor its container exists any more (SIGKILLed, host rebooted)
//! is marked exited with docker's 255 for an unknown status.

use serde::Deserialize;

use crate::engine::Engine;
use crate::error::Result;
use crate::proc;
use crate::record::{Container, Status};

#[derive(Deserialize)]
struct ExitFile {
    exit_code: i32,
    finished_at: String,
    #[serde(default)]
    oom_killed: bool,
    #[serde(default)]
    restart_count: i64,
    /// Why a restart could not start the container.
    #[serde(default)]
    error: String,
}

/// The monitor's record of the current run ([`crate::start::STATE_FILE`]).
#[derive(Deserialize)]
struct RunFile {
    pid: i32,
    started_at: String,
    restart_count: i64,
    restarting: bool,
    exit_code: i32,
    finished_at: String,
    oom_killed: bool,
}

/// Docker reports 255 when the exit status could not be collected.
pub const UNKNOWN_EXIT: i32 = 255;

impl Engine {
    /// Bring one record up to date (and store it if it changed).
    pub fn reconcile(&self, c: &mut Container) -> Result<()> {
        if c.state.status == Status::Created {
            self.adopt_unrecorded_start(c)?;
        }
        if c.state.status != Status::Running {
            return Ok(());
        }
        let before = c.state.clone();
        let exit_path = self.container_dir(&c.id).join("exit.json");
        let read_exit = || {
            std::fs::read(&exit_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ExitFile>(&b).ok())
        };
        let mut exit = read_exit();
        if exit.is_none() {
            // The monitor writes the exit file and then ends: one that ended
            // between the read above and the liveness check below has
            // recorded the exit, so a dead monitor's file is read again
            // before the exit is called unknown.
            self.fold_run_file(c);
            if !proc::alive(c.state.monitor_pid, c.state.monitor_start)
                && !proc::alive(c.state.pid, c.state.pid_start)
            {
                exit = read_exit();
            }
        }
        if let Some(exit) = exit {
            c.state.status = Status::Exited;
            c.state.exit_code = exit.exit_code;
            c.state.finished_at = exit.finished_at;
            c.state.oom_killed = exit.oom_killed;
            c.state.restart_count = exit.restart_count;
            c.state.restarting = false;
            if !exit.error.is_empty() {
                c.state.error = exit.error;
            }
            c.state.pid = 0;
            c.state.monitor_pid = 0;
        } else {
            // The current run was folded in above from the monitor's state
            // file (it may have restarted the container since the record was
            // written), so a dead monitor's live container is found by its
            // current pid.
            if proc::alive(c.state.monitor_pid, c.state.monitor_start) {
                // Supervised: the monitor will record the exit.
            } else if proc::alive(c.state.pid, c.state.pid_start) {
                // Running without its monitor: still truthful to say running,
                // but nobody will collect the exit status.
                c.state.error = "the monitor is gone; the exit status will be unknown".into();
            } else {
                self.mark_lost(c);
            }
        }
        if c.state != before {
            self.db.set_state(&c.id, &c.state)?;
        }
        Ok(())
    }

    /// A "created" record whose container was started: the `start` that
    /// launched the monitor died (SIGKILL) before it recorded the start. The
    /// monitor's state file says so (start removes it before it launches one);
    /// the record becomes "running" with the container's pid and its
    /// monitor (the container's reaper, so its parent), and is then
    /// reconciled as any running one. Skipped while a start holds the
    /// container's lock: that start records it itself.
    fn adopt_unrecorded_start(&self, c: &mut Container) -> Result<()> {
        let dir = self.container_dir(&c.id);
        // state.json, written once the container started (and kept after
        // it exits); exit.json alone is a start that failed, which leaves
        // the container created, as docker's.
        if !dir.join(crate::start::STATE_FILE).exists() {
            return Ok(());
        }
        let Some(_lock) = self.try_lock(&c.id)? else {
            return Ok(());
        };
        match self.db.get(&c.id)? {
            Some(now) if now.state.status == Status::Created => {}
            Some(now) => {
                *c = now;
                return Ok(());
            }
            None => {
                // Removed meanwhile: the lock file made above is stale.
                let lock = self.root.join("containers").join(format!(".{}.lock", c.id));
                let _ = std::fs::remove_file(lock);
                return Ok(());
            }
        }
        c.state.status = Status::Running;
        c.state.pid = 0;
        c.state.pid_start = 0;
        c.state.monitor_pid = 0;
        c.state.monitor_start = 0;
        c.state.started_at = crate::clock::now();
        self.fold_run_file(c);
        if let Some(mon) = proc::parent(c.state.pid).filter(|m| {
            std::fs::read(format!("/proc/{m}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|a| a == c.id.as_bytes()))
        }) {
            c.state.monitor_pid = mon;
            c.state.monitor_start = proc::start_time(mon).unwrap_or(0);
        }
        tracing::warn!(
            "container {}: its start was not recorded (the command died); recorded now",
            c.name
        );
        self.db.set_state(&c.id, &c.state)
    }

    /// Neither the monitor nor the container runs and no exit was recorded.
    fn mark_lost(&self, c: &mut Container) {
        c.state.status = Status::Exited;
        c.state.exit_code = UNKNOWN_EXIT;
        c.state.finished_at = crate::clock::now();
        c.state.restarting = false;
        if c.state.error.is_empty() {
            c.state.error =
                "the monitor ended without recording the exit status (killed, or the host rebooted)"
                    .into();
        }
        c.state.pid = 0;
        c.state.monitor_pid = 0;
        // The runtime still has the container; nothing else will delete it.
        let _ = self.runtime_of(c).delete_force(&c.id);
        if let Err(e) = self.network_down(c) {
            tracing::warn!("container {}: {e}", c.name);
        }
    }

    /// Take the current run from the monitor's state file.
    fn fold_run_file(&self, c: &mut Container) {
        let path = self.container_dir(&c.id).join(crate::start::STATE_FILE);
        let Some(run) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RunFile>(&b).ok())
        else {
            return;
        };
        c.state.restart_count = run.restart_count;
        c.state.restarting = run.restarting;
        if run.restarting {
            // The exit that caused the restart, as docker shows it meanwhile.
            c.state.exit_code = run.exit_code;
            c.state.finished_at = run.finished_at;
            c.state.oom_killed = run.oom_killed;
            c.state.pid = 0;
            c.state.pid_start = 0;
        } else {
            c.state.exit_code = 0;
            c.state.oom_killed = false;
            if run.pid != c.state.pid {
                c.state.pid = run.pid;
                c.state.pid_start = proc::start_time(run.pid).unwrap_or(0);
                c.state.started_at = run.started_at;
            }
        }
    }

    /// Every container, reconciled, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut all = self.db.list()?;
        for c in all.iter_mut() {
            self.reconcile(c)?;
        }
        Ok(all)
    }

    /// Find and reconcile one container.
    pub fn get(&self, what: &str) -> Result<Container> {
        let mut c = self.find(what)?;
        self.reconcile(&mut c)?;
        Ok(c)
    }

    /// Take the network of container `what` down now that it has stopped
    /// (its namespace, its CNI attachments): what the exit command does
    /// for the others, for a container created with
    /// `network_released_by_caller`. Nothing when it runs (again).
    pub fn release_network(&self, what: &str) -> Result<()> {
        let found = self.get(what)?;
        let _lock = self.lock(&found.id)?;
        let c = self.get(&found.id)?;
        if matches!(c.state.status, Status::Exited | Status::Created) {
            self.network_down(&c)?;
        }
        Ok(())
    }

    /// The monitor's exit command: fold the exit file into the record and,
    /// for `--rm` containers, remove the container and its anonymous volumes.
    pub fn cleanup(&self, images: &mut hako_image::ImageStore, id: &str) -> Result<()> {
        let c = {
            let _lock = self.lock(id)?;
            let c = self.get(id)?;
            // A start that came first owns the network now; else it goes
            // with the exit, as docker releases the address and ports.
            if c.state.status == Status::Exited {
                self.clear_paused(&c.id)?;
                self.network_down(&c)?;
            }
            c
        };
        if c.host.auto_remove && c.state.status == Status::Exited {
            if let Err(e) = self.remove_with_volumes(images, &c.id, false, true) {
                // Kept in the record: the foreground `run --rm` reports it.
                if let Ok(Some(mut now)) = self.db.get(&c.id) {
                    now.state.error = format!("removing it after its exit (--rm): {e}");
                    if now.state.status == Status::Removing {
                        now.state.status = Status::Exited;
                    }
                    let _ = self.db.set_state(&c.id, &now.state);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
