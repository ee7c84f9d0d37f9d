//! The filesystem storage driver: driver paths map beneath one root directory. Whole-object
//! writes go to a temporary sibling, are fsynced, then renamed into place, so a crash never
//! leaves a torn object.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::fs;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::windows::Object;
use super::{
    check_path, BoxReader, ByteChunks, DriverError, DriverResult, FileInfo, FileWriter,
    StorageDriver,
};

/// Bytes collected from the HTTP body before they go to the file in one writev: large
/// writes keep the number of blocking file operations (each a thread hop) low.
const WRITE_BUFFER: usize = 1 << 20;
const READ_BUFFER: usize = 256 << 10;
/// How often a write re-creates a parent directory that a concurrent delete removed.
const MAX_PARENT_RETRIES: u32 = 5;

pub struct FsDriver {
    root: PathBuf,
}

impl FsDriver {
    /// A driver rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<FsDriver> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsDriver { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> DriverResult<PathBuf> {
        check_path(path)?;
        Ok(self.root.join(path.trim_start_matches('/')))
    }
}

fn io_err(action: &'static str, path: &str, e: std::io::Error) -> DriverError {
    if e.kind() == ErrorKind::NotFound {
        DriverError::NotFound(path.to_string())
    } else {
        DriverError::Io {
            action,
            path: path.to_string(),
            source: e,
        }
    }
}

async fn ensure_parent(full: &Path, path: &str) -> DriverResult<()> {
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent)
            .await
            .map_err(|e| io_err("creating the parent directory of", path, e))?;
    }
    Ok(())
}

/// A name for a temporary sibling that no concurrent writer will pick.
fn temp_sibling(full: &Path) -> PathBuf {
    let mut rnd = [0u8; 8];
    // A failing OS RNG only weakens uniqueness; the pid and counter still separate writers.
    let _ = getrandom::fill(&mut rnd);
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    full.with_file_name(format!(
        ".tmp-{}-{}-{}",
        name,
        std::process::id(),
        crate::digest::to_hex(&rnd)
    ))
}

#[async_trait]
impl StorageDriver for FsDriver {
    async fn get_content(&self, path: &str) -> DriverResult<Vec<u8>> {
        let full = self.full(path)?;
        fs::read(&full)
            .await
            .map_err(|e| io_err("reading", path, e))
    }

    async fn put_content(&self, path: &str, data: &[u8]) -> DriverResult<()> {
        let full = self.full(path)?;
        let mut attempt = 0;
        loop {
            // A concurrent delete (garbage collection) may remove a parent directory while
            // we create it or write into it: then create it again.
            match ensure_parent(&full, path).await {
                Err(e) if e.is_not_found() && attempt < MAX_PARENT_RETRIES => {
                    attempt += 1;
                    continue;
                }
                other => other?,
            }
            let tmp = temp_sibling(&full);
            let result = async {
                let mut f = fs::File::create(&tmp).await?;
                f.write_all(data).await?;
                f.sync_all().await?;
                drop(f);
                fs::rename(&tmp, &full).await
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < MAX_PARENT_RETRIES => {
                    let _ = fs::remove_file(&tmp).await;
                    attempt += 1;
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp).await;
                    return Err(io_err("writing", path, e));
                }
            }
        }
    }

    async fn reader(&self, path: &str, offset: u64) -> DriverResult<BoxReader> {
        let full = self.full(path)?;
        let mut f = fs::File::open(&full)
            .await
            .map_err(|e| io_err("opening", path, e))?;
        let len = f
            .metadata()
            .await
            .map_err(|e| io_err("inspecting", path, e))?
            .len();
        if offset > len {
            return Err(DriverError::InvalidOffset {
                path: path.to_string(),
                offset,
            });
        }
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| io_err("seeking in", path, e))?;
        }
        Ok(Box::pin(tokio::io::BufReader::with_capacity(
            READ_BUFFER,
            f,
        )))
    }

    /// The object is streamed as a series of read-only memory mappings of it (see
    /// `windows`): no read copy and no thread hop per chunk; plain-HTTP connections send
    /// them with sendfile. Each mapping is dropped once sent, so a reader holds at most a
    /// couple of chunks mapped (mapped pages count in the RSS).
    async fn chunks(&self, path: &str, offset: u64, len: u64) -> DriverResult<ByteChunks> {
        let full = self.full(path)?;
        let owned = path.to_string();
        let object = tokio::task::spawn_blocking(move || -> std::io::Result<Object> {
            let object = Object::new(std::fs::File::open(&full)?)?;
            let size = object.size();
            if offset.saturating_add(len) > size {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("object is {size} bytes, shorter than the {len} bytes at offset {offset} asked for"),
                ));
            }
            Ok(object)
        })
        .await
        .map_err(|e| io_err("opening", &owned, std::io::Error::other(e)))?
        .map_err(|e| io_err("opening", &owned, e))?;
        let end = offset + len;
        Ok(Box::pin(futures_util::stream::unfold(
            (object, offset),
            move |(object, at)| {
                let next = if at >= end {
                    None
                } else {
                    match object.window(at, end) {
                        Ok(b) if b.is_empty() => None,
                        Ok(b) => {
                            let n = b.len() as u64;
                            Some((Ok(b), (object, at + n)))
                        }
                        Err(e) => Some((Err(e), (object, end))),
                    }
                };
                std::future::ready(next)
            },
        )))
    }

    async fn writer(&self, path: &str, append: bool) -> DriverResult<Box<dyn FileWriter>> {
        let full = self.full(path)?;
        ensure_parent(&full, path).await?;
        let f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&full)
            .await
            .map_err(|e| io_err("opening for writing", path, e))?;
        let size = if append {
            f.metadata()
                .await
                .map_err(|e| io_err("inspecting", path, e))?
                .len()
        } else {
            0
        };
        Ok(Box::new(FsWriter {
            file: Some(f.into_std().await),
            in_flight: None,
            pending: Vec::new(),
            pending_len: 0,
            size,
            path: path.to_string(),
        }))
    }

    async fn stat(&self, path: &str) -> DriverResult<FileInfo> {
        let full = self.full(path)?;
        let m = fs::metadata(&full)
            .await
            .map_err(|e| io_err("inspecting", path, e))?;
        Ok(FileInfo {
            size: m.len(),
            is_dir: m.is_dir(),
            modified: m.modified().map_err(|e| io_err("inspecting", path, e))?,
        })
    }

    async fn list(&self, path: &str) -> DriverResult<Vec<String>> {
        let full = self.full(path)?;
        let mut rd = fs::read_dir(&full)
            .await
            .map_err(|e| io_err("listing", path, e))?;
        let mut out = Vec::new();
        while let Some(entry) = rd
            .next_entry()
            .await
            .map_err(|e| io_err("listing", path, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporaries of in-flight atomic writes are not objects.
            if !name.starts_with(".tmp-") {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn rename(&self, from: &str, to: &str) -> DriverResult<()> {
        let src = self.full(from)?;
        let dst = self.full(to)?;
        let mut attempt = 0;
        loop {
            match ensure_parent(&dst, to).await {
                Err(e) if e.is_not_found() && attempt < MAX_PARENT_RETRIES => {
                    attempt += 1;
                    continue;
                }
                other => other?,
            }
            match fs::rename(&src, &dst).await {
                Ok(()) => break,
                // The destination's parent was removed concurrently (the source is still
                // there): create it again.
                Err(e)
                    if e.kind() == ErrorKind::NotFound
                        && attempt < MAX_PARENT_RETRIES
                        && fs::symlink_metadata(&src).await.is_ok() =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(io_err("renaming", from, e)),
            }
        }
        // The rename is durable only once the directory holding the new entry is synced.
        if let Some(parent) = dst.parent() {
            if let Ok(d) = fs::File::open(parent).await {
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }

    async fn touch(&self, path: &str) -> DriverResult<()> {
        let full = self.full(path)?;
        let owned = path.to_string();
        tokio::task::spawn_blocking(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&full)?;
            f.set_modified(std::time::SystemTime::now())
        })
        .await
        .map_err(|e| io_err("touching", &owned, std::io::Error::other(e)))?
        .map_err(|e| io_err("touching", &owned, e))
    }

    async fn delete(&self, path: &str) -> DriverResult<()> {
        let full = self.full(path)?;
        let m = fs::symlink_metadata(&full)
            .await
            .map_err(|e| io_err("deleting", path, e))?;
        if !m.is_dir() {
            return fs::remove_file(&full)
                .await
                .map_err(|e| io_err("deleting", path, e));
        }
        let mut attempt = 0;
        loop {
            match fs::remove_dir_all(&full).await {
                Ok(()) => return Ok(()),
                // A concurrent writer created an entry inside while we emptied it: the
                // caller asked for the whole tree gone, so go again.
                Err(e)
                    if e.kind() == ErrorKind::DirectoryNotEmpty && attempt < MAX_PARENT_RETRIES =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(io_err("deleting", path, e)),
            }
        }
    }
}

/// Appends chunks to a file without copying them: chunks collect until `WRITE_BUFFER`
/// bytes are pending, then go to the file in one writev on the blocking pool while the
/// next ones collect (at most one write in flight, so at most two buffers' worth held).
struct FsWriter {
    /// The file, while no write is in flight (the write owns it meanwhile).
    file: Option<std::fs::File>,
    in_flight: Option<tokio::task::JoinHandle<(std::fs::File, std::io::Result<()>)>>,
    pending: Vec<bytes::Bytes>,
    pending_len: usize,
    size: u64,
    path: String,
}

impl FsWriter {
    /// Wait for the write in flight, if any, and take the file back.
    async fn settle(&mut self) -> DriverResult<()> {
        if let Some(write) = self.in_flight.take() {
            let (file, result) = write
                .await
                .map_err(|e| io_err("writing", &self.path, std::io::Error::other(e)))?;
            self.file = Some(file);
            result.map_err(|e| io_err("writing", &self.path, e))?;
        }
        Ok(())
    }

    /// Start writing the pending chunks (after the previous write finished).
    async fn start_write(&mut self) -> DriverResult<()> {
        self.settle().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = self.file.take().ok_or_else(|| {
            io_err(
                "writing",
                &self.path,
                std::io::Error::other("an earlier write to it failed"),
            )
        })?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = write_all_vectored(&mut file, &batch);
            (file, result)
        }));
        Ok(())
    }
}

fn write_all_vectored(file: &mut std::fs::File, chunks: &[bytes::Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    // writev takes at most IOV_MAX (1024) buffers at a time.
    for group in chunks.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = group
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| IoSlice::new(c))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[async_trait]
impl FileWriter for FsWriter {
    fn size(&self) -> u64 {
        self.size
    }

    async fn write(&mut self, chunk: bytes::Bytes) -> DriverResult<()> {
        // HTTP/2 ends a body with an empty DATA frame (and an empty upload is
        // nothing but that): an empty chunk has nothing to write, and handed
        // to writev alone it would read as a failed write ("write zero").
        if chunk.is_empty() {
            return Ok(());
        }
        self.size += chunk.len() as u64;
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= WRITE_BUFFER {
            self.start_write().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> DriverResult<()> {
        self.start_write().await?;
        self.settle().await?;
        let path = self.path.clone();
        let file = self.file.take().ok_or_else(|| {
            io_err(
                "syncing",
                &path,
                std::io::Error::other("an earlier write to it failed"),
            )
        })?;
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| io_err("syncing", &path, std::io::Error::other(e)))?
            .map_err(|e| io_err("syncing", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn content_roundtrip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let d = FsDriver::new(dir.path()).unwrap();
        d.put_content("/a/b/c", b"hello").await.unwrap();
        assert_eq!(d.get_content("/a/b/c").await.unwrap(), b"hello");
        assert_eq!(d.list("/a/b").await.unwrap(), vec!["c".to_string()]);
        let mut r = d.reader("/a/b/c", 2).await.unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "llo");
        assert!(matches!(
            d.reader("/a/b/c", 6).await,
            Err(DriverError::InvalidOffset { .. })
        ));
        let chunks: Vec<_> =
            futures_util::StreamExt::collect::<Vec<_>>(d.chunks("/a/b/c", 1, 3).await.unwrap())
                .await;
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].as_ref().unwrap().as_ref(), b"ell");
        // A recorded size larger than the object is an error before any byte is sent
        // (so the server answers 500 rather than cutting a body short).
        let short = d.chunks("/a/b/c", 0, 10).await.err().unwrap();
        assert!(short.to_string().contains("shorter than"), "{short}");
        // Large objects stream as several slices of one mapping.
        let big = vec![7u8; (crate::storage::windows::WINDOW as usize) * 2 + 5];
        d.put_content("/big", &big).await.unwrap();
        let parts: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(
            d.chunks("/big", 3, big.len() as u64 - 3).await.unwrap(),
        )
        .await;
        assert_eq!(parts.len(), 3);
        let total: usize = parts.iter().map(|p| p.as_ref().unwrap().len()).sum();
        assert_eq!(total, big.len() - 3);
        assert!(
            futures_util::StreamExt::collect::<Vec<_>>(d.chunks("/big", 0, 0).await.unwrap())
                .await
                .is_empty()
        );
        assert!(d.chunks("/nope", 0, 1).await.err().unwrap().is_not_found());
        let mut w = d.writer("/a/b/c", true).await.unwrap();
        w.write(bytes::Bytes::from_static(b" world")).await.unwrap();
        assert_eq!(w.size(), 11);
        w.commit().await.unwrap();
        assert_eq!(d.get_content("/a/b/c").await.unwrap(), b"hello world");
        let before = d.stat("/a/b/c").await.unwrap().modified;
        std::thread::sleep(std::time::Duration::from_millis(20));
        d.touch("/a/b/c").await.unwrap();
        assert!(d.stat("/a/b/c").await.unwrap().modified > before);
        assert!(d.touch("/nope").await.unwrap_err().is_not_found());
        d.rename("/a/b/c", "/x/y").await.unwrap();
        assert!(d.stat("/a/b/c").await.unwrap_err().is_not_found());
        d.delete("/x").await.unwrap();
        assert!(d.get_content("/x/y").await.unwrap_err().is_not_found());
        assert!(matches!(
            d.get_content("/../etc/passwd").await,
            Err(DriverError::InvalidPath(_))
        ));
    }
}
