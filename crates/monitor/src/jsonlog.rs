//! The docker json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`. Output is cut
//! into lines; a line longer than [`MAX_LINE`] is written in pieces without
//! the trailing newline, as docker does, so readers join them back.
//! With [`Log::cri_format`] the same lines are written in kubelet's CRI
//! format instead: `RFC3339Nano STREAM F TEXT` for a whole line and `P`
//! for a piece of a longer one (the newline itself is not written).
//! [`Log::discard`] is docker's `none` driver: nothing is written.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use crate::clock;

/// Longest piece of a line held before it is written out.
pub const MAX_LINE: usize = 16 * 1024;

/// One output stream of the container and the bytes of its unfinished line.
pub struct Stream {
    pub name: &'static str,
    pending: Vec<u8>,
}

impl Stream {
    pub fn new(name: &'static str) -> Self {
        Stream {
            name,
            pending: Vec::new(),
        }
    }

    /// Take in freshly read bytes; write every complete line.
    pub fn feed(&mut self, log: &mut Log, data: &[u8]) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl + 1;
            write_entry(log, self.name, &self.pending[start..end]);
            start = end;
        }
        while self.pending.len() - start >= MAX_LINE {
            write_entry(log, self.name, &self.pending[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.pending.drain(..start);
    }

    /// Write what is left of an unfinished line (the stream ended).
    pub fn flush(&mut self, log: &mut Log) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            write_entry(log, self.name, &rest);
        }
    }
}

/// What the log is written as (the monitor's `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonFile,
    Cri,
    /// docker's `none` driver: no file at all.
    None,
}

/// The json-file log, rotated as docker's `--log-opt max-size=N max-file=M`:
/// past N bytes the file becomes `NAME.1` (older ones shift up to `NAME.M-1`,
/// the oldest is dropped) and a new one is started. With one file it is
/// truncated instead. Readers follow by name and read the numbered files first.
pub struct Log {
    /// None: the `none` driver, entries are dropped.
    file: Option<File>,
    path: PathBuf,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    cri: bool,
}

impl Log {
    pub fn open(path: PathBuf, max_size: Option<u64>, max_files: u32) -> std::io::Result<Log> {
        let file = Self::open_file(&path)?;
        let size = file.metadata()?.len();
        Ok(Log {
            file: Some(file),
            path,
            size,
            max_size,
            max_files: max_files.max(1),
            cri: false,
        })
    }

    /// A log that writes nothing (docker's `none` driver).
    pub fn discard() -> Log {
        Log {
            file: None,
            path: PathBuf::new(),
            size: 0,
            max_size: None,
            max_files: 1,
            cri: false,
        }
    }

    /// Go on in a new file at the log's path (the old one was renamed by
    /// whoever rotates it, as kubelet does); on failure keep the old one.
    pub fn reopen(&mut self) {
        if self.file.is_none() {
            return;
        }
        if let Ok(f) = Self::open_file(&self.path) {
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
    }

    /// Write kubelet's CRI log format (`cri`) rather than json-file.
    pub fn cri_format(mut self, cri: bool) -> Log {
        self.cri = cri;
        self
    }

    fn open_file(path: &std::path::Path) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// One whole entry (never split across files).
    fn write(&mut self, entry: &[u8]) {
        if self.file.is_none() {
            return;
        }
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + entry.len() as u64 > max {
                self.rotate();
            }
        }
        // One write per entry on an O_APPEND file: readers never see half an
        // entry interleaved with another. A full disk loses log lines, never
        // the container.
        if let Some(Ok(())) = self.file.as_mut().map(|f| f.write_all(entry)) {
            self.size += entry.len() as u64;
        }
    }

    fn rotate(&mut self) {
        if self.max_files == 1 {
            if let Some(Ok(())) = self.file.as_ref().map(|f| f.set_len(0)) {
                self.size = 0;
            }
            return;
        }
        // A failed rename keeps writing where it was: a full log beats a lost one.
        let _ = std::fs::remove_file(self.numbered(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
        }
        if std::fs::rename(&self.path, self.numbered(1)).is_err() {
            return;
        }
        if let Ok(f) = Self::open_file(&self.path) {
            self.file = Some(f);
            self.size = 0;
        }
    }
}

fn write_entry(log: &mut Log, stream: &str, text: &[u8]) {
    if log.cri {
        return write_cri_entry(log, stream, text);
    }
    let mut line = String::with_capacity(text.len() + 64);
    line.push_str("{\"log\":\"");
    escape_into(&mut line, &String::from_utf8_lossy(text));
    line.push_str("\",\"stream\":\"");
    line.push_str(stream);
    line.push_str("\",\"time\":\"");
    line.push_str(&clock::now_rfc3339_nano());
    line.push_str("\"}\n");
    log.write(line.as_bytes());
}

/// One CRI log line: a whole line (F) without its newline, or a piece (P).
fn write_cri_entry(log: &mut Log, stream: &str, text: &[u8]) {
    let (tag, body) = match text.strip_suffix(b"\n") {
        Some(b) => ("F", b),
        None => ("P", text),
    };
    let mut line = Vec::with_capacity(body.len() + 48);
    line.extend_from_slice(clock::now_rfc3339_nano().as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.as_bytes());
    line.push(b' ');
    line.extend_from_slice(tag.as_bytes());
    line.push(b' ');
    line.extend_from_slice(body);
    line.push(b'\n');
    log.write(&line);
}

/// JSON string escaping (RFC 8259 section 7).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_are_whole_or_partial() {
        let dir = std::env::temp_dir().join(format!("hako-crilog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let mut log = Log::open(path.clone(), None, 1).unwrap().cri_format(true);
        let mut out = Stream::new("stdout");
        out.feed(&mut log, b"one\ntw");
        out.feed(&mut log, b"o\n");
        out.feed(&mut log, &vec![b'x'; MAX_LINE + 1]);
        out.flush(&mut log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let rest = |l: &str| l.split_once(' ').unwrap().1.to_string();
        assert!(lines[0].split(' ').next().unwrap().ends_with('Z'));
        assert_eq!(rest(lines[0]), "stdout F one");
        assert_eq!(rest(lines[1]), "stdout F two");
        assert_eq!(rest(lines[2]), format!("stdout P {}", "x".repeat(MAX_LINE)));
        assert_eq!(rest(lines[3]), "stdout P x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn escapes_controls_and_quotes() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "a\\\"b\\\\c\\n\\u0001");
    }

    #[test]
    fn the_log_rotates_whole_entries_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("hako-jsonlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("container.log");
        let mut log = Log::open(path.clone(), Some(300), 3).unwrap();
        let mut out = Stream::new("stdout");
        for i in 0..40 {
            out.feed(&mut log, format!("line {i}\n").as_bytes());
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let (cur, one, two) = (
            read(&path),
            read(&dir.join("container.log.1")),
            read(&dir.join("container.log.2")),
        );
        assert!(!dir.join("container.log.3").exists());
        for f in [&cur, &one, &two] {
            assert!(f.len() <= 300 && f.ends_with("}\n") && !f.is_empty(), "{f}");
        }
        // Oldest first, contiguous, ending with the last line; the first lines dropped.
        let all = format!("{two}{one}{cur}");
        let nums: Vec<u32> = all
            .lines()
            .map(|l| {
                l.split("line ")
                    .nth(1)
                    .unwrap()
                    .split('\\')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(*nums.last().unwrap(), 39);
        assert!(nums[0] > 0);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        // One file: truncated in place.
        let single = dir.join("single.log");
        let mut log = Log::open(single.clone(), Some(200), 1).unwrap();
        for i in 0..40 {
            out.feed(&mut log, format!("line {i}\n").as_bytes());
        }
        assert!(std::fs::metadata(&single).unwrap().len() <= 200);
        assert!(!dir.join("single.log.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
