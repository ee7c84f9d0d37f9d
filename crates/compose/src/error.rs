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

/// The field path may hold keys from the file: shown with control
/// characters escaped, so an error never carries raw input bytes.
pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Field {
        field: shown(&field.into()),
        message: message.into(),
    }
}

/// Text from the input (a key, a path) made safe for a one-line message:
/// control characters escaped as `\u{..}`, the rest kept.
pub fn shown(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A value from the input quoted for a message: escaped (as `{:?}` does)
/// and cut to a readable length.
pub fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// A path for a message (see [`shown`]).
pub fn shown_path(p: &std::path::Path) -> String {
    shown(&p.display().to_string())
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
