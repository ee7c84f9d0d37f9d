//! The error type of hako-cri and its gRPC status: the code kubelet acts on
//! (NotFound, InvalidArgument, FailedPrecondition, Unavailable, ...) and a
//! one-line message saying what was being done and to which object.

/// Errors of the CRI service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file that cannot be used.
    #[error("{0}")]
    Config(String),
    /// An operating-system error while doing `context`.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A request field that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// Something asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A deadline passed.
    #[error("{0}")]
    Timeout(String),
    /// A registry (or every mirror of it) could not be used.
    #[error("{0}")]
    Unavailable(String),
    /// An image store error while doing `context`.
    #[error("{context}: {source}")]
    Image {
        context: String,
        source: Box<hako_image::Error>,
    },
    /// An engine error while doing `context`.
    #[error("{context}: {source}")]
    Engine {
        context: String,
        source: Box<hako_engine::Error>,
    },
}

/// Result alias of hako-cri.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn image(context: impl Into<String>, source: hako_image::Error) -> Self {
        Error::Image {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn engine(context: impl Into<String>, source: hako_engine::Error) -> Self {
        Error::Engine {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::Config(_) | Error::Invalid(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::Conflict(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Io { .. } => Code::Internal,
            Error::Image { source, .. } => match &**source {
                hako_image::Error::NotFound { .. } => Code::NotFound,
                hako_image::Error::InvalidReference { .. }
                | hako_image::Error::InvalidDigest { .. } => Code::InvalidArgument,
                hako_image::Error::InUse { .. } => Code::FailedPrecondition,
                _ => Code::Unknown,
            },
            Error::Engine { source, .. } => match &**source {
                hako_engine::Error::NotFound { .. } => Code::NotFound,
                hako_engine::Error::Invalid(_) => Code::InvalidArgument,
                hako_engine::Error::Conflict(_) => Code::FailedPrecondition,
                _ => Code::Unknown,
            },
        }
    }
}

/// One line, printable: control characters (raw input bytes included) are
/// shown escaped, never passed through.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\n' || c == '\r' {
            out.push(' ');
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        tonic::Status::new(e.code(), one_line(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_one_line_and_coded() {
        let s: tonic::Status = Error::NotFound("pod sandbox \"x\ny\"".into()).into();
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "pod sandbox \"x y\" not found");
        assert_eq!(one_line("a\u{1b}[31mb"), "a\\u{1b}[31mb");
    }
}
