//! Reading and writing cgroup control files, with errors that name the file.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

use super::CgroupError;

/// Writes `value` to `dir/file` in one write(2): cgroup files parse each write
/// call separately, so a value must never be split.
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        value: value.to_string(),
        source,
    };
    // No O_CREAT: a missing control file means a missing controller or feature,
    // which must be reported rather than papered over with a regular file.
    let mut f = OpenOptions::new()
        .write(true)
        .open(dir.join(file))
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

pub fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    std::fs::read_to_string(dir.join(file)).map_err(|source| CgroupError::Read {
        path: dir.join(file),
        source,
    })
}

/// Like [`read`], but a missing file is `None` (optional kernel features).
pub fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: dir.join(file),
            source,
        }),
    }
}

pub fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single unsigned number; "max" (v2) reads as u64::MAX, as runc reports it.
pub fn parse_u64(dir: &Path, file: &str, text: &str) -> Result<u64, CgroupError> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| CgroupError::Parse {
        what: dir.join(file).display().to_string(),
        detail: format!("expected a number, got {t:?}"),
    })
}

/// Reads a file holding one number; a missing file reads as 0 (stats of
/// controllers or kernel features this host lacks).
pub fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    match read_opt(dir, file)? {
        Some(t) => parse_u64(dir, file, &t),
        None => Ok(0),
    }
}

/// Parses flat-keyed files ("key value" lines: memory.stat, cpu.stat, cgroup.events).
pub fn parse_flat_keyed(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            let v = v.trim();
            let v = if v == "max" {
                u64::MAX
            } else {
                v.parse().ok()?
            };
            Some((k, v))
        })
        .collect()
}
