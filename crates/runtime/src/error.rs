//! The runtime's error type. Every error carries what was being done and to which
//! object, so the one line a user sees is enough to act on.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or I/O operation failed while doing `what`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The bundle's config.json is invalid or asks for something unsupported.
    #[error("{0}")]
    Spec(String),
    /// The container is in the wrong state or does not exist.
    #[error("{0}")]
    State(String),
    /// A container process reported a failure (message is already contextualised).
    #[error("{0}")]
    Container(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl Error {
    /// Whether a system call was refused for lack of permission (EACCES, EPERM).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io {
            what: "system call".into(),
            source: e.into(),
        }
    }
}

/// Adds "what was being done" to a lower-level error.
pub trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, pathrs::error::Error> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| {
            let io = match e.kind() {
                pathrs::error::ErrorKind::OsError(Some(errno)) => {
                    std::io::Error::from_raw_os_error(errno)
                }
                _ => std::io::Error::other(e.to_string()),
            };
            Error::io(what(), io)
        })
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Other(format!("{}: {}", what().into(), e)))
    }
}

/// Shorthand for a spec error naming the offending field.
pub fn spec_err(field: &str, problem: impl Display) -> Error {
    Error::Spec(format!("config.json: {field}: {problem}"))
}
