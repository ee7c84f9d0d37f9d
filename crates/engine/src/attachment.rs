//! A client of a container's attach socket (`<dir>/attach.sock`, served by
//! its monitor): the container's output live, its stdin and terminal size.
//! Frames both ways are a type byte, a 4-byte big-endian length and the
//! payload (see the monitor's `attach.rs` for the server side):
//! `H`/`R` rows,cols (u16 each), `I` stdin bytes, `C` close stdin from the
//! client; `O` stdout, `E` stderr, `X` exit code (i32) from the monitor.
//! Also docker's detach keys (`ctrl-p,ctrl-q`), shared by every front end.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{Error, Result};

/// Something the container did, as an attached client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The run ended with this code; the monitor closes the connection next.
    Exit(i32),
}

/// A connection to a container's monitor.
pub struct Attachment {
    name: String,
    stream: UnixStream,
    input: Vec<u8>,
}

impl Attachment {
    /// Connect to the socket in container directory `dir` (through
    /// /proc/self/fd: the directory's path may be too long for a socket
    /// address) and say hello with the terminal size, if any.
    pub(crate) fn connect(dir: &Path, name: &str, size: Option<(u16, u16)>) -> Result<Attachment> {
        let err = |e: std::io::Error| {
            Error::io(
                format!("attaching to container {name}: connecting to its monitor"),
                e,
            )
        };
        let d = std::fs::File::open(dir).map_err(err)?;
        let stream = UnixStream::connect(format!("/proc/self/fd/{}/attach.sock", d.as_raw_fd()))
            .map_err(err)?;
        let mut a = Attachment {
            name: name.to_string(),
            stream,
            input: Vec::new(),
        };
        let (rows, cols) = size.unwrap_or((0, 0));
        a.send(b'H', &[rows.to_be_bytes(), cols.to_be_bytes()].concat())?;
        Ok(a)
    }

    /// A second handle on the same connection, for sending from another
    /// thread while this one blocks in [`Attachment::read`].
    pub fn try_clone(&self) -> Result<Attachment> {
        let stream = self.stream.try_clone().map_err(|e| {
            Error::io(
                format!(
                    "attaching to container {}: sharing the connection",
                    self.name
                ),
                e,
            )
        })?;
        Ok(Attachment {
            name: self.name.clone(),
            stream,
            input: Vec::new(),
        })
    }

    /// The socket, to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Read once (blocking until something comes) and return the complete
    /// events; None once the monitor closed the connection.
    pub fn read(&mut self) -> Result<Option<Vec<Event>>> {
        let mut buf = [0u8; 32 * 1024];
        let n = loop {
            match self.stream.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A reset is the monitor going away: the same as EOF.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break 0,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading the output of container {}", self.name),
                        e,
                    ))
                }
            }
        };
        if n == 0 {
            return Ok(None);
        }
        self.input.extend_from_slice(&buf[..n]);
        let mut out = Vec::new();
        let mut at = 0;
        while self.input.len() - at >= 5 {
            let len = u32::from_be_bytes(self.input[at + 1..at + 5].try_into().expect("4 bytes"))
                as usize;
            if self.input.len() - at - 5 < len {
                break;
            }
            let body = self.input[at + 5..at + 5 + len].to_vec();
            match self.input[at] {
                b'O' => out.push(Event::Stdout(body)),
                b'E' => out.push(Event::Stderr(body)),
                b'X' if len == 4 => out.push(Event::Exit(i32::from_be_bytes(
                    body[..4].try_into().expect("4 bytes"),
                ))),
                _ => {}
            }
            at += 5 + len;
        }
        self.input.drain(..at);
        Ok(Some(out))
    }

    /// Send input for the container's stdin.
    pub fn send_stdin(&mut self, data: &[u8]) -> Result<()> {
        self.send(b'I', data)
    }

    /// The caller's input ended: close the container's stdin.
    pub fn close_stdin(&mut self) -> Result<()> {
        self.send(b'C', &[])
    }

    /// The caller's terminal changed size.
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.send(b'R', &[rows.to_be_bytes(), cols.to_be_bytes()].concat())
    }

    fn send(&mut self, kind: u8, data: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(5 + data.len());
        frame.push(kind);
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        frame.extend_from_slice(data);
        self.stream
            .write_all(&frame)
            .map_err(|e| Error::io(format!("sending input to container {}", self.name), e))
    }
}

/// Docker's default detach sequence: ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Parse docker's `--detach-keys` form: comma-separated keys, each a single
/// character or `ctrl-X` (X a letter or one of `@[\]^_`). Empty: no keys.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let bad = || {
        Error::Invalid(format!(
            "invalid detach keys {s:?}: expected e.g. ctrl-p,ctrl-q"
        ))
    };
    s.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c.as_bytes();
                if c.len() != 1 {
                    return Err(bad());
                }
                match c[0].to_ascii_lowercase() {
                    l @ b'a'..=b'z' => Ok(l - b'a' + 1),
                    b'@' => Ok(0),
                    b @ (b'[' | b'\\' | b']' | b'^' | b'_') => Ok(b - b'@'),
                    _ => Err(bad()),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(bad())
            }
        })
        .collect()
}

/// Watches input for the detach sequence: bytes that might begin it are
/// held back, and given back when the sequence breaks.
#[derive(Debug, Clone)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    pub fn new(keys: Vec<u8>) -> DetachMatcher {
        DetachMatcher { keys, matched: 0 }
    }

    /// Feed input; returns the bytes to pass on and whether the whole
    /// sequence was typed (what follows it is dropped).
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return (out, false);
        }
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            // The held prefix was ordinary input after all.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_writes_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(
            parse_detach_keys("ctrl-@,a,ctrl-[").unwrap(),
            vec![0, b'a', 27]
        );
        assert!(parse_detach_keys("ctrl-pp").is_err());
        assert!(parse_detach_keys("meta-x").is_err());
        assert!(parse_detach_keys("").unwrap().is_empty());
    }

    #[test]
    fn matcher_holds_a_prefix_and_gives_it_back() {
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(m.feed(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(m.feed(b"\x11rest"), (Vec::new(), true));
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"\x10\x10\x11"), (b"\x10".to_vec(), true));
    }
}
