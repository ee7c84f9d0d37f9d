//! Errors of hako-compose: each names the file or the field (as a path like
//! `services.web.ports[0]`) and the problem, on one line.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A field of the model is invalid.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// The project cannot be brought into the asked state (cycles, unknown
    /// services, a dependency that failed).
    #[error("{0}")]
    Project(String),
    /// The engine refused or failed.
    #[error("{context}: {source}")]
    Engine {
        context: String,
        source: Box<hako_engine::Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Field {
        field: field.into(),
        message: message.into(),
    }
}

pub(crate) trait EngineContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> EngineContext<T> for hako_engine::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Engine {
            context: what(),
            source: Box::new(source),
        })
    }
}
