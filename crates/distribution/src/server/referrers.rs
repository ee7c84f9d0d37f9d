//! `GET /v2/<name>/referrers/<digest>[?artifactType=...]`: an image index listing the
//! manifests whose `subject` is the digest.

use std::collections::HashMap;

use axum::extract::{Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::response::set;
use super::AppState;
use crate::media_types::OCI_INDEX;
use crate::store::{parse_digest, RepoName};

pub async fn list(app: AppState, repo: RepoName, digest: &str, req: Request) -> Response {
    let subject = match parse_digest(digest) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let q = Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let filter = q.get("artifactType").filter(|a| !a.is_empty());
    let manifests = match app
        .store
        .referrers(&repo, &subject, filter.map(String::as_str))
        .await
    {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let body = serde_json::to_vec(&index).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    set(&mut resp, "Content-Type", OCI_INDEX);
    if filter.is_some() {
        set(&mut resp, "OCI-Filters-Applied", "artifactType");
    }
    resp
}
