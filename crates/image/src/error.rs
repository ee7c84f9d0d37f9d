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

pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}
