//! Reading the docker json-file log the monitor writes: one JSON object per
//! line with the text, the stream and the time.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Context, Result};

/// Which output of the container a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// The text, with its newline if the line was complete.
    pub log: String,
    pub stream: Stream,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

/// Reads a log file incrementally: each call returns the entries appended
/// since the last one (a half-written last line waits for the next call).
pub struct Reader {
    file: File,
    pending: Vec<u8>,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let file = File::open(path).ctx(|| format!("opening log {}", path.display()))?;
        Ok(Reader {
            file,
            pending: Vec::new(),
        })
    }

    /// Skip what is there now (for following only new output).
    pub fn seek_end(&mut self) -> Result<()> {
        self.file
            .seek(SeekFrom::End(0))
            .ctx(|| "seeking to the end of a log".to_string())?;
        Ok(())
    }

    /// The entries appended since the last call. Lines that are not valid
    /// entries are skipped: a log must stay readable after a torn write.
    pub fn read_new(&mut self) -> Result<Vec<Entry>> {
        self.file
            .read_to_end(&mut self.pending)
            .ctx(|| "reading a container log".to_string())?;
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + nl];
            if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                out.push(e);
            }
            start += nl + 1;
        }
        self.pending.drain(..start);
        Ok(out)
    }
}

/// The last `n` entries of a list (docker's `--tail`).
pub fn tail(mut entries: Vec<Entry>, n: Option<usize>) -> Vec<Entry> {
    if let Some(n) = n {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    entries
}
