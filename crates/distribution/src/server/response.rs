//! Turning registry errors and auth decisions into HTTP responses.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::App;
use crate::auth::{self, access_covers, Need};
use crate::error::{ErrorCode, RegistryError};

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        resp
    }
}

/// Header value, if present and ASCII.
pub fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Set a header whose value we built ourselves from validated parts.
pub fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Check that the request may do what `need` describes: `None` when it may. A refusal carries
/// the challenge the client needs: Basic, or Bearer pointing at our token endpoint.
pub fn authorize(app: &App, headers: &HeaderMap, need: &Need) -> Option<Response> {
    let Some(htpasswd) = &app.htpasswd else {
        return None;
    };
    // Without credentials: anonymous access per policy, with basic auth. With tokens,
    // anonymous clients go through an anonymous token, as docker clients expect. `/v2/`
    // always challenges a client without credentials: that challenge is how clients learn
    // to send the credentials they have.
    let authz = header_str(headers, header::AUTHORIZATION);
    // (allowed, credentials were good but the policy refused)
    let (allowed, refused) = match authz {
        Some(h) if h.starts_with("Bearer ") || h.starts_with("bearer ") => {
            let access = app.tokens.as_ref().and_then(|t| t.verify(h[7..].trim()));
            let ok = access.as_ref().is_some_and(|a| access_covers(a, need));
            (ok, access.is_some() && !ok)
        }
        Some(h) => match auth::parse_basic(h) {
            Some((u, p)) if htpasswd.verify(&u, &p) => {
                let ok = app.policy.allows(Some(&u), need);
                (ok, !ok)
            }
            _ => (false, false),
        },
        None => (
            app.tokens.is_none() && *need != Need::Base && app.policy.allows(None, need),
            false,
        ),
    };
    if allowed {
        return None;
    }
    // A good identity without the right: 403 DENIED with basic auth; with tokens 401, so
    // the client fetches a token for the scope in the challenge.
    let (code, status) = match (refused, app.tokens.is_some()) {
        (true, false) => (ErrorCode::Denied, 403),
        (true, true) => (ErrorCode::Denied, 401),
        (false, _) => (ErrorCode::Unauthorized, 401),
    };
    let what = match need {
        Need::Repo { name, action } => format!("{} access to repository {name}", action.as_str()),
        Need::Catalog => "access to the catalog".to_string(),
        Need::Base => "access to the registry".to_string(),
    };
    let message = if refused {
        format!("{what} is denied")
    } else {
        format!("authentication required for {what}")
    };
    let mut resp = RegistryError::new(code, message)
        .with_status(status)
        .into_response();
    let challenge = match &app.tokens {
        Some(t) => {
            let host = header_str(headers, header::HOST).unwrap_or("localhost");
            let scheme = if app.tls { "https" } else { "http" };
            let mut c = format!(
                "Bearer realm=\"{scheme}://{host}/token\",service=\"{}\"",
                t.service
            );
            if let Some(scope) = need.scope() {
                c.push_str(&format!(",scope=\"{scope}\""));
            }
            c
        }
        None => "Basic realm=\"hako-registry\"".to_string(),
    };
    set(&mut resp, "WWW-Authenticate", &challenge);
    Some(resp)
}
