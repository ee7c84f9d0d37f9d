//! `start`: release a created container's init into its process.

use crate::error::{Context, Error, Result};
use crate::state::{self, Container, Status};
use crate::{hooks, util};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::path::Path;

pub fn start(root: &Path, id: &str) -> Result<()> {
    let _lock = state::lock(root, id)?;
    let c = super::load_in(root, id, &[Status::Created], "start")?;
    if c.spec.process().is_none() {
        return Err(Error::Spec(format!(
            "cannot start container {id:?}: its config.json has no process"
        )));
    }
    let fifo_path = Container::dir(root, id).join(state::EXEC_FIFO);
    // Non-blocking open: succeeds at once; init's blocking open for writing then
    // completes, and it writes one byte before exec.
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {}", fifo_path.display()))?;
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let n = match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("waiting for the container init", e)),
        };
        if n > 0 {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fifo, &mut b) {
                Ok(1) => break,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(Error::io("reading exec.fifo", e)),
            }
        }
        if !util::process_alive(c.pid, c.pid_start) {
            return Err(Error::Container(format!(
                "container {id:?}: init process {} exited before start",
                c.pid
            )));
        }
    }
    std::fs::remove_file(&fifo_path).ctx(|| format!("removing {}", fifo_path.display()))?;
    if let Some(h) = c.spec.hooks() {
        let st = state::hook_state(&c, Status::Running);
        // Poststart failures are reported but do not stop the container (spec).
        hooks::run_warn(
            "poststart",
            h.poststart().as_deref().unwrap_or_default(),
            &st,
        );
    }
    Ok(())
}
