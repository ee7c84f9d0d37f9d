//! The storage-driver interface beneath the registry. Like distribution's drivers it is a
//! small path-keyed byte store: the registry's layout (blobs, links, tags, uploads) is
//! decided above it in [`crate::store`], and nothing above it touches a filesystem.
//!
//! Paths are `/`-separated, absolute within the driver (`/blobs/sha256/ab/...`), built by
//! the store from validated names and digests only; drivers still reject `..` and empty
//! components so a bug above can never escape the storage root.

pub mod fs;
pub(crate) mod windows;

use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use fs::FsDriver;

/// A failure inside a storage driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("storage path {0:?} not found")]
    NotFound(String),
    #[error("storage path {0:?} is not a valid driver path")]
    InvalidPath(String),
    #[error("storage offset {offset} is past the end of {path:?}")]
    InvalidOffset { path: String, offset: u64 },
    #[error("storage I/O while {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::NotFound(_))
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// What `stat` reports about a path.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub size: u64,
    pub is_dir: bool,
    pub modified: SystemTime,
}

pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;

/// Chunks of an object, as an HTTP body consumes them.
pub type ByteChunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A writer whose bytes become durable only when [`FileWriter::commit`] returns.
#[async_trait]
pub trait FileWriter: Send {
    /// Bytes in the file: those present before (when appending) plus those written.
    fn size(&self) -> u64;
    /// Append `chunk`. The writer may keep the chunk (rather than a copy of it) until a
    /// later write or the commit, so a failure may be reported by a later call.
    async fn write(&mut self, chunk: Bytes) -> DriverResult<()>;
    /// Write what is pending, then fsync; after this the written bytes survive a crash.
    async fn commit(self: Box<Self>) -> DriverResult<()>;
}

#[async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// Whole content of a small object (links, manifests, upload metadata).
    async fn get_content(&self, path: &str) -> DriverResult<Vec<u8>>;
    /// Replace the content of `path` atomically: readers see the old or the new bytes,
    /// never a mix, and after return the new bytes are durable.
    async fn put_content(&self, path: &str, data: &[u8]) -> DriverResult<()>;
    /// A stream of `path`'s bytes starting at `offset`.
    async fn reader(&self, path: &str, offset: u64) -> DriverResult<BoxReader>;
    /// `len` bytes of `path` from `offset`, in chunks. The default goes through
    /// [`StorageDriver::reader`]; a driver can hand out its bytes with fewer copies.
    async fn chunks(&self, path: &str, offset: u64, len: u64) -> DriverResult<ByteChunks> {
        let r = self.reader(path, offset).await?;
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            r.take(len),
            256 << 10,
        )))
    }
    /// A writer creating `path` (truncating) or appending to it.
    async fn writer(&self, path: &str, append: bool) -> DriverResult<Box<dyn FileWriter>>;
    async fn stat(&self, path: &str) -> DriverResult<FileInfo>;
    /// Names of the direct children of a directory path.
    async fn list(&self, path: &str) -> DriverResult<Vec<String>>;
    /// Atomically move `from` to `to`, replacing `to` if it exists.
    async fn rename(&self, from: &str, to: &str) -> DriverResult<()>;
    /// Remove `path` and everything beneath it. Removing a missing path is `NotFound`.
    async fn delete(&self, path: &str) -> DriverResult<()>;
    /// Set `path`'s modification time to now (`NotFound` if missing). Garbage collection
    /// reads it to tell objects in use from garbage.
    async fn touch(&self, path: &str) -> DriverResult<()>;
}

/// Check a driver path: absolute, no empty, `.` or `..` components, no NUL.
pub fn check_path(path: &str) -> DriverResult<()> {
    let ok = path.starts_with('/')
        && !path.contains('\0')
        && (path == "/"
            || path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if ok {
        Ok(())
    } else {
        Err(DriverError::InvalidPath(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_paths() {
        assert!(check_path("/blobs/sha256/ab/abc").is_ok());
        assert!(check_path("/").is_ok());
        for bad in ["", "rel", "/a/../b", "/a//b", "/a/", "/./a", "/a\0"] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
