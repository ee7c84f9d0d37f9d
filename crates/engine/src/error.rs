//! The error type of hako-engine. Every variant says what was being done and
//! to which object, so a caller can print it on one line; [`Error::exit_code`]
//! gives docker's exit code for it.

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while doing `context`.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A container database error while doing `context`.
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
    /// An image store error while doing `context`.
    #[error("{context}: {source}")]
    Image {
        context: String,
        source: hako_image::Error,
    },
    /// Something asked for does not exist.
    #[error("no such {what}")]
    NotFound { what: String },
    /// A request that conflicts with the current state (name taken, container running, ...).
    #[error("{0}")]
    Conflict(String),
    /// An option or value that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The container's process could not be started; `code` is docker's
    /// exit code for it (126 cannot invoke, 127 not found, 125 otherwise).
    #[error("starting container {id}: {message}")]
    Start {
        id: String,
        code: i32,
        message: String,
    },
    /// An exec'd process could not be started; `code` as for [`Error::Start`].
    #[error("exec in container {id}: {message}")]
    Exec {
        id: String,
        code: i32,
        message: String,
    },
    /// The OCI runtime failed a command.
    #[error("{context}: {message}")]
    Runtime { context: String, message: String },
}

/// Result alias of hako-engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Docker's exit code for this error: 125 for an engine error, 126/127
    /// when the container's command could not be invoked or found.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Start { code, .. } | Error::Exec { code, .. } => *code,
            _ => 125,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }
}

/// Attach "what was being done" to io and nix results.
pub(crate) trait Context<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), std::io::Error::from(e)))
    }
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Db {
            context: f(),
            source,
        })
    }
}

impl<T> Context<T> for serde_json::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Json {
            context: f(),
            source,
        })
    }
}

impl<T> Context<T> for hako_image::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Image {
            context: f(),
            source,
        })
    }
}
