//! Reading the docker json-file log the monitor writes: one JSON object per
//! line with the text, the stream and the time.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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
/// Follows the log by name across rotation (`--log-opt max-size`): when the
/// name points at a new file, the old one is read to its end and the new one
/// from its start.
pub struct Reader {
    file: File,
    path: PathBuf,
    pending: Vec<u8>,
}

impl Reader {
    /// The current log only.
    pub fn open(path: &Path) -> Result<Reader> {
        let file = File::open(path).ctx(|| format!("opening log {}", path.display()))?;
        Ok(Reader {
            file,
            path: path.to_path_buf(),
            pending: Vec::new(),
        })
    }

    /// The rotated files (`NAME.N` … `NAME.1`, oldest first), then the current
    /// log: the whole history `hako logs` shows.
    pub fn open_with_history(path: &Path) -> Result<Reader> {
        let mut rotated = Vec::new();
        for n in 1.. {
            let p = numbered(path, n);
            if !p.exists() {
                break;
            }
            rotated.push(p);
        }
        let mut r = Reader::open(path)?;
        let mut history = Vec::new();
        for p in rotated.iter().rev() {
            // A file rotated away meanwhile is simply missing from the history.
            if let Ok(mut f) = File::open(p) {
                let _ = f.read_to_end(&mut history);
            }
        }
        r.pending = history;
        Ok(r)
    }

    /// Skip what is there now (for following only new output).
    pub fn seek_end(&mut self) -> Result<()> {
        self.pending.clear();
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
        if self.rotated() {
            if let Ok(f) = File::open(&self.path) {
                // The old file is complete: entries are whole lines.
                let mut out = self.entries();
                self.pending.clear();
                self.file = f;
                self.file
                    .read_to_end(&mut self.pending)
                    .ctx(|| "reading a container log".to_string())?;
                out.extend(self.entries());
                return Ok(out);
            }
        }
        Ok(self.entries())
    }

    /// Whether the log's name now points at another file than the one read.
    fn rotated(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(now), Ok(open)) => (now.dev(), now.ino()) != (open.dev(), open.ino()),
            _ => false,
        }
    }

    /// The complete lines in `pending`, parsed; the rest is kept.
    fn entries(&mut self) -> Vec<Entry> {
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
        out
    }
}

/// `NAME.n`, a rotated log file.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The last `n` entries of a list (docker's `--tail`).
pub fn tail(mut entries: Vec<Entry>, n: Option<usize>) -> Vec<Entry> {
    if let Some(n) = n {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    entries
}

impl crate::engine::Engine {
    /// The whole log of a container for `logs` (rotated files first);
    /// refused, with docker's message, when its driver keeps none.
    pub fn log_reader(&self, c: &crate::record::Container) -> crate::error::Result<Reader> {
        if !c.host.log_config.readable() {
            return Err(crate::error::Error::Invalid(format!(
                "configured logging driver does not support reading (container {} logs with the {} driver)",
                c.name, c.host.log_config.typ
            )));
        }
        Reader::open_with_history(&self.log_path(&c.id))
    }

    /// Make the monitor of a running container with the `cri` log driver
    /// reopen its log by path (kubelet's ReopenContainerLog, after it
    /// renamed the file away).
    pub fn reopen_log(&self, what: &str) -> crate::error::Result<()> {
        let c = self.get(what)?;
        if c.host.log_config.typ != crate::record::CRI_LOG_DRIVER {
            return Err(crate::error::Error::Invalid(format!(
                "container {}: only a container with the cri log driver reopens its log",
                c.name
            )));
        }
        if c.state.status != crate::record::Status::Running
            || !crate::proc::signal(c.state.monitor_pid, c.state.monitor_start, libc::SIGHUP)
        {
            return Err(crate::error::Error::Conflict(format!(
                "container {} is not running: no log to reopen",
                c.name
            )));
        }
        // Answer once the monitor has the new file, as kubelet expects
        // (bounded: a monitor that cannot open it keeps the old file).
        let path = self.log_file(&c);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(())
    }
}
