//! Docker's error bodies: `{"message": "..."}` with the status codes its
//! clients act on (404 no such object, 409 conflict, 304 nothing to do,
//! 400 bad request, 500 anything else).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error: the status and the one-line message docker clients print.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

/// Result alias of the handlers.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 304: the request asked for the state things are already in
    /// (start a running container, stop a stopped one).
    pub fn not_modified() -> ApiError {
        ApiError::new(StatusCode::NOT_MODIFIED, "")
    }

    /// docker's "No such container: NAME" for a container that is not there.
    pub fn no_such_container(what: &str) -> ApiError {
        ApiError::not_found(format!("No such container: {}", printable(what)))
    }
}

/// What a client sent, fit for a one-line message: control characters
/// escaped, at most 128 characters.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(128).flat_map(char::escape_default).collect();
    if s.chars().count() > 128 {
        out.push('…');
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::NOT_MODIFIED {
            // A 304 has no body.
            return self.status.into_response();
        }
        let body = serde_json::json!({ "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<hako_engine::Error> for ApiError {
    fn from(e: hako_engine::Error) -> ApiError {
        use hako_engine::Error as E;
        let status = match &e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::Image { source, .. } => return image_status(source, e.to_string()),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            // docker's words, which its clients (and scripts) look for.
            E::NotFound { what } => match what.strip_prefix("container: ") {
                Some(c) => format!("No such container: {c}"),
                None => format!("No such {what}"),
            },
            _ => e.to_string(),
        };
        ApiError::new(status, message)
    }
}

fn image_status(e: &hako_image::Error, message: String) -> ApiError {
    use hako_image::Error as E;
    let status = match e {
        E::NotFound { .. } => StatusCode::NOT_FOUND,
        E::InUse { .. } => StatusCode::CONFLICT,
        E::InvalidReference { .. } | E::InvalidDigest { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, message)
}

impl From<hako_image::Error> for ApiError {
    fn from(e: hako_image::Error) -> ApiError {
        let message = e.to_string();
        image_status(&e, message)
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("internal error: {e}"))
    }
}

/// The service could not be set up (socket, signals): one line for the CLI.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);
