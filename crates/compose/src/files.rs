//! Reading the files a project names (compose files, `include:`d files,
//! `.env`, `--env-file`, `env_file:`) as untrusted input: regular files only
//! (a FIFO or a device is refused without blocking on it or reading it),
//! at most a cap of bytes, UTF-8 text. Errors name the file (and the line,
//! where there is one) and never print the file's content.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{shown_path, Error, Result};

/// The largest compose file read (docker compose files are kilobytes).
pub const MAX_COMPOSE_FILE: u64 = 4 << 20;
/// The largest `.env` / `env_file` read.
pub const MAX_ENV_FILE: u64 = 1 << 20;

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: shown_path(path),
        message: message.into(),
    }
}

/// The text of the regular file `path`, at most `cap` bytes.
pub fn read_text(path: &Path, cap: u64) -> Result<String> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (the type check
    // below refuses it); O_NOCTTY: a terminal device never becomes ours.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| err(path, format!("cannot open: {}", io_reason(&e))))?;
    let meta = f
        .metadata()
        .map_err(|e| err(path, format!("cannot stat: {}", io_reason(&e))))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(err(path, format!("is {what}, not a regular file")));
    }
    let too_big = || err(path, format!("is larger than {cap} bytes"));
    if meta.len() > cap {
        return Err(too_big());
    }
    // The size may change under us: never read more than the cap.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut f)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(path, format!("cannot read: {}", io_reason(&e))))?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        err(path, format!("line {line}: not UTF-8 text"))
    })
}

/// An I/O error's reason without the OS error number noise.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'a'; 101]).unwrap();
        assert!(read_text(&big, 100)
            .unwrap_err()
            .to_string()
            .ends_with("is larger than 100 bytes"));
        let e = read_text(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "/dev/zero: is a device, not a regular file");
        let fifo = d.path().join("fifo");
        nix_mkfifo(&fifo);
        let e = read_text(&fifo, 100).unwrap_err().to_string();
        assert!(e.ends_with("is a FIFO, not a regular file"), "{e}");
        assert!(read_text(d.path(), 100)
            .unwrap_err()
            .to_string()
            .ends_with("is a directory, not a regular file"));
        let bin = d.path().join("bin");
        std::fs::write(&bin, b"A=1\nB=\xff\x1b[31m\n").unwrap();
        let e = read_text(&bin, 100).unwrap_err().to_string();
        assert!(e.ends_with("bin: line 2: not UTF-8 text"), "{e}");
    }

    fn nix_mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
}
