//! Path dispatch for `/v2/<name>/...`. Names contain `/`, so the route is recognised from
//! the end of the path and everything before the route keyword is the name.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::response::authorize;
use super::{blobs, manifests, referrers, tags, uploads, AppState};
use crate::auth::{Action, Need};
use crate::error::{ErrorCode, RegistryError};
use crate::store::RepoName;

/// `GET /v2/`: the API version check, which also tells clients whether auth is required.
pub async fn base(State(app): State<AppState>, req: Request) -> Response {
    if let Some(r) = authorize(&app, req.headers(), &Need::Base) {
        return r;
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}

/// A recognised API route under `/v2/`.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Blob { name: &'a str, digest: &'a str },
    UploadStart { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Tags { name: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

/// Recognise `path` (starting with `/v2/`).
pub fn parse(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2/")?;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags { name });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart { name });
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest {
            name,
            reference: last,
        }),
        "referrers" => Some(Route::Referrers { name, digest: last }),
        "blobs" => Some(Route::Blob { name, digest: last }),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            Some(Route::Upload { name, id: last })
        }
        _ => None,
    }
}

fn not_found(path: &str) -> Response {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("no registry API route at {path}"),
    )
    .with_status(404)
    .into_response()
}

fn method_not_allowed(method: &Method, path: &str) -> Response {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("{method} is not supported on {path}"),
    )
    .with_status(405)
    .into_response()
}

pub async fn dispatch(State(app): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(route) = parse(&path) else {
        return not_found(&path);
    };
    let method = req.method().clone();
    let name = match &route {
        Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. }
        | Route::Manifest { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. } => *name,
    };
    let repo = match RepoName::parse(name) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let action = match method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE if !matches!(route, Route::Upload { .. }) => Action::Delete,
        _ => Action::Push,
    };
    let need = Need::Repo {
        name: repo.to_string(),
        action,
    };
    if let Some(r) = authorize(&app, req.headers(), &need) {
        return r;
    }
    match (route, &method) {
        (Route::Blob { digest, .. }, &Method::GET | &Method::HEAD) => {
            blobs::get(app, repo, digest, req).await
        }
        (Route::Blob { digest, .. }, &Method::DELETE) => blobs::delete(app, repo, digest).await,
        (Route::UploadStart { .. }, &Method::POST) => uploads::start(app, repo, req).await,
        (Route::Upload { id, .. }, &Method::GET) => uploads::status(app, repo, id).await,
        (Route::Upload { id, .. }, &Method::PATCH) => uploads::patch(app, repo, id, req).await,
        (Route::Upload { id, .. }, &Method::PUT) => uploads::put(app, repo, id, req).await,
        (Route::Upload { id, .. }, &Method::DELETE) => uploads::cancel(app, repo, id).await,
        (Route::Manifest { reference, .. }, &Method::GET | &Method::HEAD) => {
            manifests::get(app, repo, reference, req).await
        }
        (Route::Manifest { reference, .. }, &Method::PUT) => {
            manifests::put(app, repo, reference, req).await
        }
        (Route::Manifest { reference, .. }, &Method::DELETE) => {
            manifests::delete(app, repo, reference).await
        }
        (Route::Tags { .. }, &Method::GET) => tags::list(app, repo, req).await,
        (Route::Referrers { digest, .. }, &Method::GET) => {
            referrers::list(app, repo, digest, req).await
        }
        _ => method_not_allowed(&method, &path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_routes_with_slashed_names() {
        assert_eq!(
            parse("/v2/a/b/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a/b",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/"),
            Some(Route::UploadStart { name: "a/b" })
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "a",
                id: "abc"
            })
        );
        assert_eq!(
            parse("/v2/x/manifests/latest"),
            Some(Route::Manifest {
                name: "x",
                reference: "latest"
            })
        );
        assert_eq!(
            parse("/v2/x/y/tags/list"),
            Some(Route::Tags { name: "x/y" })
        );
        assert_eq!(
            parse("/v2/x/referrers/sha256:1"),
            Some(Route::Referrers {
                name: "x",
                digest: "sha256:1"
            })
        );
        // A repository whose last component is "blobs" still works.
        assert_eq!(
            parse("/v2/x/blobs/blobs/sha256:0"),
            Some(Route::Blob {
                name: "x/blobs",
                digest: "sha256:0"
            })
        );
        assert_eq!(parse("/v2/nothing"), None);
        assert_eq!(parse("/v3/x/tags/list"), None);
    }
}
