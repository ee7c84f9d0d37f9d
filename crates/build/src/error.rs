//! The error type of hako-build: one line naming the object and the problem.

use crate::parser::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Dockerfile problem at a position: `Dockerfile:3:1: message: "text"`.
    #[error("{file}:{err}")]
    Parse { file: String, err: ParseError },
    /// Bad input found before or during the build (unknown stage, missing source, ...).
    #[error("{0}")]
    Invalid(String),
    /// A feature of the issue that is not implemented yet.
    #[error("{0}: not supported yet")]
    Unsupported(String),
    /// A RUN step whose process failed.
    #[error("{step}: process {command:?} did not complete successfully: exit code {code}")]
    RunFailed {
        step: String,
        command: String,
        code: i32,
    },
    /// An operating-system error while doing `context`.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] hako_image::Error),
    #[error(transparent)]
    Engine(#[from] hako_engine::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to io results.
pub trait IoContext<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e.into()))
    }
}
