//! The synchronisation channel between the runtime and the processes it forks.
//!
//! A SOCK_SEQPACKET socketpair keeps message boundaries, so each message is one
//! small JSON document; EOF means every peer holding the other end is gone.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Runtime → child: proceed (the runtime moves the init into its cgroup
    /// meanwhile).
    Go,
    /// Child → runtime: a new user namespace exists, write its id maps.
    MapsRequest,
    /// Runtime → child: maps are written.
    MapsDone,
    /// Stage one → runtime: the container init's host pid.
    Pid(i32),
    /// Init → runtime: the init needs to be in its cgroup now (it is about to
    /// unshare a cgroup namespace, which is rooted where it stands).
    CgroupWait,
    /// Runtime → init: the init is in its cgroup.
    CgroupJoined,
    /// Init → runtime: mounts are done, run the prestart/createRuntime hooks.
    HooksRequest,
    HooksDone(String),
    /// Init → runtime: the container is created and waits for `start`.
    Ready,
    /// Child → runtime, with the seccomp notify fd attached: pass it on to the
    /// listener (linux.seccomp.listenerPath is a path in the runtime's namespace).
    SeccompFd,
    SeccompDone,
    /// Any child → runtime: setup failed; the message names what failed.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
    /// An fd that arrived with the last message (SCM_RIGHTS).
    received: RefCell<Option<OwnedFd>>,
}

/// Returns (runtime end, child end). Both are close-on-exec so the container
/// process never inherits them.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "creating the sync socketpair")?;
    Ok((
        Channel {
            fd: a,
            received: RefCell::new(None),
        },
        Channel {
            fd: b,
            received: RefCell::new(None),
        },
    ))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .ctx(|| "writing to the sync socket")?;
        Ok(())
    }

    /// Sends a message with an fd attached.
    pub fn send_with_fd(&self, msg: &Msg, fd: BorrowedFd) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        let fds = [fd.as_raw_fd()];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[std::io::IoSlice::new(&data)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .ctx(|| "passing an fd over the sync socket")?;
        Ok(())
    }

    /// Receives one message; `None` on EOF (the peer exited). An attached fd is
    /// kept for `take_fd`.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut cmsg = nix::cmsg_space!([RawFd; 1]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("reading the sync socket", e)),
            };
            let n = msg.bytes;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        if let Some(&fd) = fds.first() {
                            // SAFETY: SCM_RIGHTS just installed this fd for us alone.
                            *self.received.borrow_mut() = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
            }
            if n == 0 {
                return Ok(None);
            }
            return serde_json::from_slice(&buf[..n])
                .map(Some)
                .map_err(|e| Error::Other(format!("bad message on the sync socket: {e}")));
        }
    }

    /// The fd that came with the last message, if any.
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.received.borrow_mut().take()
    }

    /// Waits for a specific reply; an `Error` message or EOF becomes an error.
    pub fn expect(&self, want: fn(&Msg) -> bool, what: &str) -> Result<Msg> {
        match self.recv()? {
            Some(Msg::Error(e)) => Err(Error::Container(e)),
            Some(m) if want(&m) => Ok(m),
            Some(m) => Err(Error::Other(format!(
                "sync socket: expected {what}, got {m:?}"
            ))),
            None => Err(Error::Container(format!(
                "container process exited before {what}"
            ))),
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
