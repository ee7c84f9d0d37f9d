//! Small file helpers: every write goes to a temp name and is renamed into
//! place, so a crash leaves the old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Context, Result};

/// Write `data` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path)?;
    let res = (|| -> std::io::Result<()> {
        tmp.1.write_all(data)?;
        tmp.1.sync_all()?;
        fs::rename(&tmp.0, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp.0);
    }
    res.ctx(|| format!("writing {}", path.display()))
}

/// Like [`write_atomic`] without the fsync, for run state that is rebuilt
/// on the next start (the rename still keeps readers from seeing half a
/// file): an fsync costs a journal commit, several milliseconds per file.
pub fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path)?;
    let res = (|| -> std::io::Result<()> {
        tmp.1.write_all(data)?;
        fs::rename(&tmp.0, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp.0);
    }
    res.ctx(|| format!("writing {}", path.display()))
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(std::path::PathBuf, fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    Ok((tmp, f))
}
