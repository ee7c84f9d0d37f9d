//! Errors as Kubernetes `Status` objects (metav1.Status): kubectl prints
//! their message as its one-line error.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hako_kube_store::StoreError;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// A name for a message, JSON-quoted so control characters never reach a terminal.
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn with_details(mut self, group: &str, plural: &str, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": group, "kind": plural}));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into())
    }

    /// 403 as upstream words it: `pods "x" is forbidden: WHY` (`forbidden:
    /// WHY` for a request on no resource).
    pub fn forbidden(group: &str, plural: &str, name: &str, why: String) -> Self {
        let what = match (plural.is_empty(), name.is_empty()) {
            (true, _) => "forbidden".to_string(),
            (false, true) => format!("{} is forbidden", qualified(group, plural)),
            (false, false) => format!("{} {} is forbidden", qualified(group, plural), quoted(name)),
        };
        Self::new(403, "Forbidden", format!("{what}: {why}")).with_details(group, plural, name)
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {} not found", qualified(group, plural), quoted(name)),
        )
        .with_details(group, plural, name)
    }

    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        )
    }

    pub fn method_not_allowed(what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({what})"),
        )
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} {} already exists",
                qualified(group, plural),
                quoted(name)
            ),
        )
        .with_details(group, plural, name)
    }

    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, plural),
                quoted(name)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 409 for a failed delete precondition (uid or resourceVersion).
    pub fn precondition_failed(group: &str, plural: &str, name: &str, why: String) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: {why}",
                qualified(group, plural),
                quoted(name)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 409 for a conflict a subresource reports in its own words
    /// (`pods/binding`: "pod x is already assigned to node ...").
    pub fn conflict_msg(group: &str, resource: &str, name: &str, why: String) -> Self {
        Self::precondition_failed(group, resource, name, why)
    }

    /// 422 for invalid DeleteOptions.
    pub fn invalid_options(cause: String) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("DeleteOptions.meta.k8s.io \"\" is invalid: {cause}"),
        )
    }

    /// 403 for a create in a namespace that is being deleted.
    pub fn namespace_terminating(group: &str, plural: &str, name: &str, ns: &str) -> Self {
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{} {} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(group, plural),
                quoted(name)
            ),
        );
        e.details = Some(json!({
            "name": name, "group": group, "kind": plural,
            "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                        "message": format!("namespace {ns} is being terminated")}],
        }));
        e
    }

    /// 409 for a server-side apply that would take fields other managers own.
    pub fn apply_conflict(
        group: &str,
        plural: &str,
        name: &str,
        api_version: &str,
        conflicts: Vec<(String, String)>,
    ) -> Self {
        let n = conflicts.len();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(field, mgr)| {
                format!("conflict with {} using {api_version}: {field}", quoted(mgr))
            })
            .collect();
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                list.join("; ")
            ),
        );
        e.details = Some(json!({
            "name": name, "group": group, "kind": plural,
            "causes": conflicts.iter().map(|(field, mgr)| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {} using {api_version}", quoted(mgr)),
                "field": field,
            })).collect::<Vec<_>>(),
        }));
        e
    }

    pub fn gone(message: String) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 422 Invalid with field causes, e.g. `metadata.name`.
    pub fn invalid(
        group: &str,
        kind: &str,
        name: &str,
        causes: Vec<(String, String, String)>,
    ) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, _, msg)| format!("{field}: {msg}"))
            .collect();
        // Upstream's aggregate: one error as is, several in brackets.
        let all = if summary.len() == 1 {
            summary.join("")
        } else {
            format!("[{}]", summary.join(", "))
        };
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified_kind} {} is invalid: {all}", quoted(name)),
        );
        e.details = Some(json!({
            "name": name, "group": group, "kind": kind,
            "causes": causes.iter().map(|(field, reason, msg)| json!({
                "reason": reason, "message": msg, "field": field,
            })).collect::<Vec<_>>(),
        }));
        e
    }

    pub fn too_large(message: String) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json (got {})", quoted(ct)),
        )
    }

    pub fn unsupported_media_msg(message: String) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message.into())
    }

    /// Translate a store error for an object of `plural` named `name`.
    pub fn from_store(e: StoreError, group: &str, plural: &str, name: &str) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::not_found(group, plural, name),
            StoreError::AlreadyExists { .. } => Self::already_exists(group, plural, name),
            StoreError::Conflict { .. } => Self::conflict(group, plural, name),
            StoreError::Gone {
                requested,
                compacted,
            } => Self::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::InvalidContinue => {
                Self::bad_request("the provided continue parameter is not valid")
            }
            StoreError::Backend(m) => Self::internal(m),
        }
    }

    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            self.status().to_string(),
        )
            .into_response()
    }
}
