//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, both paginated with `n`/`last` and a
//! `Link` header to the next page.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::response::{authorize, set};
use super::AppState;
use crate::auth::Need;
use crate::error::{ErrorCode, RegistryError};
use crate::pagination::{next_link, paginate};
use crate::store::RepoName;

/// `n` and `last` from the query; a malformed `n` is a client error, not "no limit".
fn page_params(req: &Request) -> Result<(Option<usize>, Option<String>), RegistryError> {
    let q = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let n = match q.get("n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::new(
                ErrorCode::Unsupported,
                format!("pagination parameter n={v:?} is not a number"),
            )
            .with_status(400)
        })?),
        None => None,
    };
    Ok((n, q.get("last").cloned()))
}

pub async fn list(app: AppState, repo: RepoName, req: Request) -> Response {
    let (n, last) = match page_params(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let tags = match app.store.tags(&repo).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let page = paginate(&tags, n, last.as_deref());
    let link = next_link(&format!("/v2/{repo}/tags/list"), n, &page);
    let mut resp = (
        StatusCode::OK,
        Json(json!({ "name": repo.as_str(), "tags": page.items })),
    )
        .into_response();
    if let Some(l) = link {
        set(&mut resp, "Link", &l);
    }
    resp
}

pub async fn catalog(State(app): State<AppState>, req: Request) -> Response {
    if let Some(r) = authorize(&app, req.headers(), &Need::Catalog) {
        return r;
    }
    let (n, last) = match page_params(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let repos = match app.store.catalog().await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let page = paginate(&repos, n, last.as_deref());
    let link = next_link("/v2/_catalog", n, &page);
    let mut resp = (StatusCode::OK, Json(json!({ "repositories": page.items }))).into_response();
    if let Some(l) = link {
        set(&mut resp, "Link", &l);
    }
    resp
}
