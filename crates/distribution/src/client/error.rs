//! Errors of the registry client. Each says what was being done and to which
//! object (`GET manifest 127.0.0.1:5000/demo:1`), so the CLI prints one line.

/// Result alias of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its answer not read (after retries).
    /// Shown with its whole cause chain: reqwest's own text alone ("error
    /// sending request") hides whether DNS, TCP or a certificate failed.
    #[error("{what}: {}", chain(.err))]
    Http { what: String, err: reqwest::Error },
    /// The registry answered with an unexpected status; `code` and `message`
    /// come from the distribution-spec error body when there is one.
    #[error("{what}: registry answered {status}{}", detail(.code, .message))]
    Status {
        what: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// The registry wants credentials hako does not have, or refused them.
    #[error("{what}: {reason}")]
    Unauthorized { what: String, reason: String },
    /// Content that does not hash to the digest it was asked for or announced with.
    #[error("{what}: digest mismatch (expected {expected}, got {actual})")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// An answer that breaks the protocol (missing Location, oversized manifest, ...).
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
    /// A local file (auth file, blob) could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out = format!("{out}: {text}");
        }
        cur = c.source();
    }
    out
}

fn detail(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!(" ({c}: {m})"),
        (Some(c), _) => format!(" ({c})"),
        (None, Some(m)) if !m.is_empty() => format!(" ({m})"),
        _ => String::new(),
    }
}

impl ClientError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn protocol(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ClientError::Protocol {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether the object asked for does not exist (404 / *_UNKNOWN).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status: 404, .. })
    }
}

/// The first entry of a distribution-spec error body `{"errors":[{code,message}]}`.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => match b.errors.into_iter().next() {
            Some(e) => (e.code, e.message),
            None => (None, None),
        },
        Err(_) => {
            // Not the spec's shape: a short plain-text body is still worth showing.
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() || text.len() > 200 {
                (None, None)
            } else {
                (None, Some(text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let (c, m) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(c.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(m.as_deref(), Some("manifest unknown"));
        let e = ClientError::Status {
            what: "GET manifest r/x:1".into(),
            status: 404,
            code: c,
            message: m,
        };
        assert_eq!(
            e.to_string(),
            "GET manifest r/x:1: registry answered 404 (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert!(e.is_not_found());
        assert_eq!(parse_error_body(b"").0, None);
    }
}
