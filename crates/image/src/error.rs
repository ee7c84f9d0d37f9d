//! The error type of hako-image. Every variant says what was being done and
//! to which object, so a caller can print it on one line.

use std::path::Path;

/// Errors of the image library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while doing `context`.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A reference that does not follow the docker reference grammar.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A digest string that is not `algorithm:hex` with a supported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    /// Content whose hash is not the one it was announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content whose length is not the one it was announced with.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A layer entry refused because applying it could escape the target or is absurd.
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    HostileEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    /// Something asked for does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// An operation refused because the object is in use.
    #[error("{what} is in use: {reason}")]
    InUse { what: String, reason: String },
    /// A metadata database error while doing `context`.
    #[error("{context}: {source}")]
    Db {
        context: String,
        source: rusqlite::Error,
    },
    /// Malformed JSON while doing `context`.
    #[error("{context}: {source}")]
    Json {
        context: String,
        source: serde_json::Error,
    },
    /// Content that is well-formed but not usable (unknown media type, bad archive, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of hako-image.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }
}

/// Attach "what was being done" to io results.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), std::io::Error::from(e)))
    }
}

/// Attach context to database results.
pub(crate) trait DbContext<T> {
    fn db_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> DbContext<T> for rusqlite::Result<T> {
    fn db_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::db(f(), e))
    }
}

/// `s` with control characters (and the replacement character that stands
/// for undecodable bytes) escaped: error texts never carry raw input bytes.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || c == char::REPLACEMENT_CHARACTER {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error of the tar reader, reworded so that it carries none of the
/// input's bytes (the tar crate quotes the header fields it cannot parse).
/// Errors of the operating system or of a decompressor keep their text.
pub(crate) fn tar_io(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    let msg = e.to_string();
    let clean = if let Some(i) = msg.find(" when getting ") {
        let field = msg[i + " when getting ".len()..]
            .split(' ')
            .next()
            .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or("a numeric");
        format!("corrupt tar header: its {field} field is not a number")
    } else if msg.starts_with("numeric field") {
        "corrupt tar header: a numeric field is not a number".to_string()
    } else if msg.starts_with("invalid path in entry header") {
        "corrupt tar header: invalid path".to_string()
    } else {
        let mut m = printable(&msg);
        if m.len() > 200 {
            let cut = (0..=200)
                .rev()
                .find(|&i| m.is_char_boundary(i))
                .unwrap_or(0);
            m.truncate(cut);
            m.push_str("...");
        }
        m
    };
    std::io::Error::new(e.kind(), clean)
}

pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}
