//! Registry errors as the distribution-spec reports them: an error code, an HTTP status
//! and a JSON body `{"errors":[{"code":..,"message":..,"detail":..}]}`.

pub use oci_spec::distribution::ErrorCode;
use serde_json::json;

/// One failed registry operation, carrying everything needed to answer the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RegistryError {
    pub code: ErrorCode,
    pub status: u16,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = default_status(&code);
        RegistryError {
            code,
            status,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// A server-side failure (storage I/O). Reported with the spec's closest code and 500,
    /// never mistaken for a client error.
    pub fn internal(message: impl Into<String>) -> Self {
        RegistryError::new(ErrorCode::Unsupported, message).with_status(500)
    }

    /// The `{"errors":[..]}` body.
    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        json!({ "errors": [e] })
    }
}

/// The status the spec's error-code table pairs with each code.
fn default_status(code: &ErrorCode) -> u16 {
    match code {
        ErrorCode::BlobUnknown => 404,
        ErrorCode::BlobUploadInvalid => 400,
        ErrorCode::BlobUploadUnknown => 404,
        ErrorCode::DigestInvalid => 400,
        ErrorCode::ManifestBlobUnknown => 400,
        ErrorCode::ManifestInvalid => 400,
        ErrorCode::ManifestUnknown => 404,
        ErrorCode::NameInvalid => 400,
        ErrorCode::NameUnknown => 404,
        ErrorCode::SizeInvalid => 400,
        ErrorCode::Unauthorized => 401,
        ErrorCode::Denied => 403,
        ErrorCode::Unsupported => 405,
        ErrorCode::TooManyRequests => 429,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_spec_shape() {
        let e = RegistryError::new(ErrorCode::DigestInvalid, "digest mismatch")
            .with_detail(json!({"digest": "sha256:00"}));
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body(),
            json!({"errors":[{"code":"DIGEST_INVALID","message":"digest mismatch","detail":{"digest":"sha256:00"}}]})
        );
        let u = RegistryError::new(ErrorCode::TooManyRequests, "slow down");
        assert_eq!(u.body()["errors"][0]["code"], "TOOMANYREQUESTS");
    }
}
