//! The docker json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC3339Nano"}`. Output is cut
//! into lines; a line longer than [`MAX_LINE`] is written in pieces without
//! the trailing newline, as docker does, so readers join them back.

use std::fs::File;
use std::io::Write;

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
    pub fn feed(&mut self, log: &mut File, data: &[u8]) {
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
    pub fn flush(&mut self, log: &mut File) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            write_entry(log, self.name, &rest);
        }
    }
}

fn write_entry(log: &mut File, stream: &str, text: &[u8]) {
    let mut line = String::with_capacity(text.len() + 64);
    line.push_str("{\"log\":\"");
    escape_into(&mut line, &String::from_utf8_lossy(text));
    line.push_str("\",\"stream\":\"");
    line.push_str(stream);
    line.push_str("\",\"time\":\"");
    line.push_str(&clock::now_rfc3339_nano());
    line.push_str("\"}\n");
    // One write per entry on an O_APPEND file: readers never see half an
    // entry interleaved with another. A full disk loses log lines, never
    // the container.
    let _ = log.write_all(line.as_bytes());
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
    fn escapes_controls_and_quotes() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "a\\\"b\\\\c\\n\\u0001");
    }
}
