//! Linux namespaces: which to create, which to join, in the order the kernel needs.

use crate::error::{Context, Error, Result};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME is not in nix's CloneFlags on every version.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of a namespace under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

pub const ALL: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Time,
];

/// A namespace to join, opened early: once we join a mount namespace, host
/// paths may no longer resolve.
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub file: File,
}

pub struct Plan {
    /// Namespaces to join, user namespace first.
    pub joins: Vec<Join>,
    /// Namespaces to create, excluding user (handled separately because its id
    /// maps must be written by the parent before the others are created).
    pub new_flags: CloneFlags,
    pub new_user: bool,
    pub new_pid: bool,
    pub new_time: bool,
}

impl Plan {
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Plan> {
        let mut joins = Vec::new();
        let mut new_flags = CloneFlags::empty();
        let mut new_user = false;
        for ns in list {
            match ns.path() {
                Some(p) => {
                    let file = File::open(p).ctx(|| {
                        format!("opening {} namespace {}", proc_name(ns.typ()), p.display())
                    })?;
                    joins.push(Join {
                        typ: ns.typ(),
                        path: p.clone(),
                        file,
                    });
                }
                None if ns.typ() == LinuxNamespaceType::User => new_user = true,
                None => new_flags |= clone_flag(ns.typ()),
            }
        }
        // Joining the user namespace first gives the privileges to join the rest.
        joins.sort_by_key(|j| j.typ != LinuxNamespaceType::User);
        let new_pid = new_flags.contains(CloneFlags::CLONE_NEWPID);
        let new_time = new_flags.contains(clone_flag(LinuxNamespaceType::Time));
        Ok(Plan {
            joins,
            new_flags,
            new_user,
            new_pid,
            new_time,
        })
    }

    /// The namespaces of a running container, for `exec`: every namespace of the
    /// init that differs from ours.
    pub fn of_process(pid: i32, types: &[LinuxNamespaceType]) -> Result<Plan> {
        let mut joins = Vec::new();
        for &t in types {
            let path = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(t)));
            let theirs = std::fs::metadata(&path);
            let ours = std::fs::metadata(format!("/proc/self/ns/{}", proc_name(t)));
            if let (Ok(a), Ok(b)) = (&theirs, &ours) {
                use std::os::unix::fs::MetadataExt;
                if a.ino() == b.ino() && a.dev() == b.dev() {
                    continue;
                }
            }
            let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
            joins.push(Join { typ: t, path, file });
        }
        joins.sort_by_key(|j| j.typ != LinuxNamespaceType::User);
        Ok(Plan {
            joins,
            new_flags: CloneFlags::empty(),
            new_user: false,
            new_pid: false,
            new_time: false,
        })
    }

    pub fn join_all(&self) -> Result<()> {
        for j in &self.joins {
            setns(j.file.as_fd(), clone_flag(j.typ)).ctx(|| {
                format!(
                    "joining {} namespace {}",
                    proc_name(j.typ),
                    j.path.display()
                )
            })?;
        }
        Ok(())
    }

    pub fn joins_pid(&self) -> bool {
        self.joins.iter().any(|j| j.typ == LinuxNamespaceType::Pid)
    }
}

pub fn unshare_flags(flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(|e| Error::io(format!("creating namespaces {flags:?}"), e))
}
