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
    /// Whether whoever asked for the work has gone away (an API client that
    /// hung up): reads through [`ProgressReader`] then fail, so a pull or
    /// an import stops instead of finishing for nobody.
    fn cancelled(&self) -> bool {
        false
    }
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
        if self.progress.cancelled() {
            // Not `Interrupted`: read loops retry those.
            return Err(io::Error::other(format!(
                "{}: cancelled: the client went away",
                self.id
            )));
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.advance(self.id, n as u64);
        }
        Ok(n)
    }
}
