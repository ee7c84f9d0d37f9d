//! Progress reporting for long work (unpacking, saving, loading). The
//! library reports events; the caller decides how to show them.

use std::io::{self, Read};

/// Receives progress events. All methods have no-op defaults.
pub trait Progress: Sync {
    /// Work on an item (a layer, a blob) started; `total` bytes when known.
    fn start(&self, _id: &str, _what: &str, _total: Option<u64>) {}
    /// `n` more bytes of the item were processed.
    fn advance(&self, _id: &str, _n: u64) {}
    /// The item is finished; `note` says how ("done", "exists", ...).
    fn finish(&self, _id: &str, _note: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A reader that reports the bytes read through it.
pub(crate) struct ProgressReader<'a, R> {
    pub inner: R,
    pub id: &'a str,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.advance(self.id, n as u64);
        }
        Ok(n)
    }
}
