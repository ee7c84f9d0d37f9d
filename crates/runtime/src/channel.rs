//! The synchronisation channel between the runtime and the processes it forks.
//!
//! A SOCK_SEQPACKET socketpair keeps message boundaries, so each message is one
//! small JSON document; EOF means every peer holding the other end is gone.

use crate::error::{Context, Error, Result};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Runtime → child: the child's cgroup is set, proceed.
    Go,
    /// Child → runtime: a new user namespace exists, write its id maps.
    MapsRequest,
    /// Runtime → child: maps are written.
    MapsDone,
    /// Stage one → runtime: the container init's host pid.
    Pid(i32),
    /// Init → runtime: mounts are done, run the prestart/createRuntime hooks.
    HooksRequest,
    HooksDone(String),
    /// Init → runtime: the container is created and waits for `start`.
    Ready,
    /// Any child → runtime: setup failed; the message names what failed.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
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
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .ctx(|| "writing to the sync socket")?;
        Ok(())
    }

    /// Receives one message; `None` on EOF (the peer exited).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(|e| Error::Other(format!("bad message on the sync socket: {e}")))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("reading the sync socket", e)),
            }
        }
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
