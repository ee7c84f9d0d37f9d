//! The store lock: writers (import, load, pull) hold it shared for as long
//! as they add blobs and snapshots that no image record references yet;
//! garbage collection holds it exclusive. flock(2) is released by the kernel
//! when a process dies, so a crash can never leave the store locked.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{show, Error, IoContext, Result};

/// A held store lock; released on drop.
pub struct StoreLock {
    _lock: Flock<File>,
}

impl StoreLock {
    fn take(root: &Path, arg: FlockArg, what: &str) -> Result<Self> {
        let path = root.join("store.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening store lock {}", show(&path)))?;
        let lock = Flock::lock(file, arg).map_err(|(_, e)| {
            Error::io(
                format!("taking the {what} store lock {}", show(&path)),
                e.into(),
            )
        })?;
        Ok(StoreLock { _lock: lock })
    }

    /// Shared: many writers at once, no garbage collection meanwhile.
    pub fn shared(root: &Path) -> Result<Self> {
        Self::take(root, FlockArg::LockShared, "shared")
    }

    /// Exclusive: garbage collection.
    pub fn exclusive(root: &Path) -> Result<Self> {
        Self::take(root, FlockArg::LockExclusive, "exclusive")
    }
}
