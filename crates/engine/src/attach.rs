//! Following a started container in the foreground (`hako run` without
//! `-d`): its log is streamed to the caller while the monitor's progress
//! pipe says when it exited and when cleanup finished.

use std::io::BufRead;
use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::attachment::Attachment;
use crate::engine::Engine;
use crate::error::{Context, Result};
use crate::logs::{self, Entry};
use crate::start::Started;

/// Watches the directory holding the log rather than the file: a rotated
/// log (`--log-opt max-size`) is a new file under the same name, which a watch
/// on the old file would never report.
fn watch_log_dir(inotify: &Inotify, log: &std::path::Path) -> nix::Result<()> {
    let dir = log.parent().unwrap_or(std::path::Path::new("."));
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .map(drop)
}

impl Started {
    /// Stream the container's log entries to `on_entry` until the monitor is
    /// done; returns the container's exit code. The log is opened before
    /// waiting, so removal by `--rm` cannot take the last lines away.
    pub fn follow(mut self, engine: &Engine, mut on_entry: impl FnMut(&Entry)) -> Result<i32> {
        let id = self.container.id.clone();
        let mut reader = logs::Reader::open(&engine.log_path(&id))?;
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| format!("watching the log of container {}", self.container.name))?;
        watch_log_dir(&inotify, &engine.log_path(&id))
            .ctx(|| format!("watching the log of container {}", self.container.name))?;
        let Some(mut sync) = self.sync.take() else {
            // Already running before: there is no pipe; wait for it to stop.
            let code = engine.wait(&id)?;
            for e in reader.read_new()? {
                on_entry(&e);
            }
            return Ok(code);
        };
        let mut code = None;
        let mut line = String::new();
        // What was written before the watch existed raises no event.
        for e in reader.read_new()? {
            on_entry(&e);
        }
        loop {
            let (sync_ready, log_ready) = {
                let mut fds = [
                    PollFd::new(sync.get_ref().as_fd(), PollFlags::POLLIN),
                    PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => r.ctx(|| format!("waiting for container {}", self.container.name))?,
                };
                let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if log_ready {
                while let Ok(ev) = inotify.read_events() {
                    if ev.is_empty() {
                        break;
                    }
                }
            }
            for e in reader.read_new()? {
                on_entry(&e);
            }
            if sync_ready {
                line.clear();
                let n = sync.read_line(&mut line).ctx(|| {
                    format!(
                        "reading from the monitor of container {}",
                        self.container.name
                    )
                })?;
                if n == 0 {
                    break;
                }
                if let Some(c) = line.trim().strip_prefix("exited ") {
                    code = c.parse().ok();
                }
            }
        }
        for e in reader.read_new()? {
            on_entry(&e);
        }
        match code {
            Some(c) => Ok(c),
            // The monitor died before reporting: the record knows what can be known.
            None => engine.wait(&id),
        }
    }
}

impl Engine {
    /// Follow a container's log (`logs -f`): entries from `reader` as they
    /// are appended, until the container is no longer running.
    pub fn follow_log(
        &self,
        id: &str,
        reader: &mut logs::Reader,
        mut on_entry: impl FnMut(&Entry),
    ) -> Result<()> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| format!("watching the log of container {id}"))?;
        watch_log_dir(&inotify, &self.log_path(id))
            .ctx(|| format!("watching the log of container {id}"))?;
        loop {
            for e in reader.read_new()? {
                on_entry(&e);
            }
            let c = match self.get(id) {
                Ok(c) => c,
                Err(crate::Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            };
            if c.state.status != crate::Status::Running {
                break;
            }
            // Woken by new output; the timeout notices a stop that wrote nothing.
            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(500u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).ctx(|| format!("following the log of container {id}")),
            }
            while let Ok(ev) = inotify.read_events() {
                if ev.is_empty() {
                    break;
                }
            }
        }
        for e in reader.read_new()? {
            on_entry(&e);
        }
        Ok(())
    }
}

impl Started {
    /// After an attached session: wait until the monitor is done (cleanup,
    /// `--rm`, included) and return the container's exit code. Without a
    /// progress pipe (the container ran before) the record is waited on.
    pub fn wait(mut self, engine: &Engine) -> Result<i32> {
        let id = self.container.id.clone();
        let Some(mut sync) = self.sync.take() else {
            return engine.wait(&id);
        };
        let mut code = None;
        let mut line = String::new();
        loop {
            line.clear();
            let n = sync.read_line(&mut line).ctx(|| {
                format!(
                    "reading from the monitor of container {}",
                    self.container.name
                )
            })?;
            if n == 0 {
                break;
            }
            if let Some(c) = line.trim().strip_prefix("exited ") {
                code = c.parse().ok();
            }
        }
        match code {
            Some(c) => Ok(c),
            None => engine.wait(&id),
        }
    }
}

impl Engine {
    /// Attach to a running container's monitor (`hako attach`); `size` is
    /// the caller's terminal size for a tty container.
    pub fn attach_stream(
        &self,
        what: &str,
        size: Option<(u16, u16)>,
    ) -> Result<(crate::Container, Attachment)> {
        let c = self.get(what)?;
        if c.state.status != crate::Status::Running || c.state.restarting {
            return Err(crate::Error::Conflict(format!(
                "cannot attach to container {}: it is not running",
                c.name
            )));
        }
        let a = Attachment::connect(&self.container_dir(&c.id), &c.name, size)?;
        Ok((c, a))
    }
}
