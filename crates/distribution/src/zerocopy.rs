//! Blob bodies sent with sendfile(2) on plain-HTTP connections.
//!
//! The storage driver hands blob bytes to the HTTP layer as read-only mappings of the blob
//! file (`storage::windows`); hyper then writes them to the socket, which copies every byte
//! out of the page cache and first faults the mapping in. sendfile lets the kernel queue the
//! page-cache pages themselves: no copy, no page faults, no TLB flush when the mapping goes,
//! and the mapping never becomes resident. The HTTP layer cannot say where its bytes come
//! from, so mapped windows are registered here by address and `SendfileStream` (the
//! connection type of plain-HTTP serving) looks up each buffer hyper asks it to write: bytes
//! inside a registered window go out with sendfile from the same file and offset, anything
//! else with writev as usual. TLS connections must encrypt from memory and keep using the
//! mapping.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Mapped windows by start address: the file behind each and its offset there.
static REGIONS: Mutex<BTreeMap<usize, Region>> = Mutex::new(BTreeMap::new());

struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

fn regions() -> MutexGuard<'static, BTreeMap<usize, Region>> {
    // A panic while holding the lock leaves the map consistent (single inserts/removes).
    REGIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `len` bytes at `start` registered as `file`'s bytes from `offset` until dropped.
/// Must be dropped before the memory is unmapped.
pub(crate) struct Registration {
    start: usize,
}

pub(crate) fn register(start: *const u8, len: usize, file: Arc<File>, offset: u64) -> Registration {
    let start = start as usize;
    regions().insert(start, Region { len, file, offset });
    Registration { start }
}

impl Drop for Registration {
    fn drop(&mut self) {
        regions().remove(&self.start);
    }
}

/// The file, file offset and byte count (at most `len`) behind memory at `ptr`, when it
/// lies in a registered window.
fn lookup(ptr: *const u8, len: usize) -> Option<(Arc<File>, u64, usize)> {
    let p = ptr as usize;
    let map = regions();
    let (&start, region) = map.range(..=p).next_back()?;
    let into = p - start;
    if into >= region.len {
        return None;
    }
    Some((
        region.file.clone(),
        region.offset + into as u64,
        len.min(region.len - into),
    ))
}

/// A plain-HTTP connection that sends registered window bytes with sendfile.
pub struct SendfileStream {
    tcp: TcpStream,
    /// Off when configured so, or once the filesystem refused sendfile: every byte is
    /// then written from memory.
    sendfile: bool,
    /// Bytes sent with sendfile, for /metrics.
    sent: Arc<AtomicU64>,
}

impl SendfileStream {
    /// A plain-HTTP connection; `sendfile` off writes every byte from memory. Bytes
    /// sent with sendfile are added to `sent`.
    pub fn new(tcp: TcpStream, sendfile: bool, sent: Arc<AtomicU64>) -> Self {
        SendfileStream {
            tcp,
            sendfile,
            sent,
        }
    }

    /// Writes `buf`, which holds `len` bytes of `file` from `offset` at its start.
    fn poll_send_region(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut off = offset as nix::libc::off_t;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(&self.tcp, file, Some(&mut off), len)
                    .map_err(std::io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // A filesystem without splice support: the mapping has the same bytes.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EINVAL | nix::libc::ENOSYS | nix::libc::EOPNOTSUPP)
                    ) =>
                {
                    self.sendfile = false;
                    return Pin::new(&mut self.tcp).poll_write(cx, &buf[..len]);
                }
                r => {
                    if let Ok(n) = r {
                        self.sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    return Poll::Ready(r);
                }
            }
        }
    }

    fn region(&self, buf: &[u8]) -> Option<(Arc<File>, u64, usize)> {
        if self.sendfile && !buf.is_empty() {
            lookup(buf.as_ptr(), buf.len())
        } else {
            None
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some((file, offset, n)) = self.region(buf) {
            return self.poll_send_region(cx, buf, &file, offset, n);
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Write up to the first registered buffer with writev; a registered buffer in
        // front goes alone with sendfile. The caller loops over partial writes.
        let mut plain = bufs.len();
        for (i, b) in bufs.iter().enumerate() {
            if let Some((file, offset, n)) = self.region(b) {
                if i == 0 {
                    return self.poll_send_region(cx, b, &file, offset, n);
                }
                plain = i;
                break;
            }
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_registered_bytes_and_forgets_them_when_dropped() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mem = [0u8; 100];
        let base = mem.as_ptr();
        let reg = register(base, 100, file.clone(), 4096);
        let (_, off, n) = lookup(base, 100).unwrap();
        assert_eq!((off, n), (4096, 100));
        // A buffer starting inside the region, reaching past its end, is cut at the end.
        let (_, off, n) = lookup(base.wrapping_add(60), 1000).unwrap();
        assert_eq!((off, n), (4156, 40));
        assert!(lookup(base.wrapping_add(100), 10).is_none());
        drop(reg);
        assert!(lookup(base, 100).is_none());
    }
}
