//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use super::response::{header_str, set};
use super::AppState;
use crate::error::{ErrorCode, RegistryError};
use crate::media_types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST,
};
use crate::store::{Reference, RepoName, MAX_MANIFEST_SIZE};

/// Whether a client sending `accept` can take a manifest of `media_type`. A client that
/// names no manifest type at all (no header, `*/*`, `application/json`) takes anything.
fn acceptable(accept: &[&str], media_type: &str) -> bool {
    let named: Vec<&str> = accept
        .iter()
        .flat_map(|h| h.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    if named.iter().any(|t| *t == "*/*" || *t == media_type) {
        return true;
    }
    !named.iter().any(|t| MANIFEST_TYPES.contains(t))
}

pub async fn get(app: AppState, repo: RepoName, reference: &str, req: Request) -> Response {
    let reference = match Reference::parse(reference) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let m = match app.store.get_manifest(&repo, &reference).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let accept: Vec<&str> = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !acceptable(&accept, &m.media_type) {
        // Fetching by digest always returns the exact bytes (the client pinned them);
        // by tag, a client that cannot read this type learns it does not exist for it.
        if matches!(reference, Reference::Tag(_)) {
            let alt = match m.media_type.as_str() {
                OCI_INDEX | DOCKER_MANIFEST_LIST => "an image index",
                OCI_MANIFEST | DOCKER_MANIFEST => "an image manifest",
                _ => "a manifest",
            };
            return RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest {} of {repo} is {alt} of type {}, which the request's Accept header excludes",
                    m.digest, m.media_type
                ),
            )
            .into_response();
        }
    }
    let len = m.bytes.len();
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from(m.bytes)
    };
    let mut resp = (StatusCode::OK, body).into_response();
    set(&mut resp, "Content-Type", &m.media_type);
    set(&mut resp, "Content-Length", &len.to_string());
    set(&mut resp, "Docker-Content-Digest", &m.digest.to_string());
    set(&mut resp, "ETag", &format!("\"{}\"", m.digest));
    resp
}

pub async fn put(app: AppState, repo: RepoName, reference: &str, req: Request) -> Response {
    let reference = match Reference::parse(reference) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_string);
    let too_big = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("manifest for {repo} exceeds the {MAX_MANIFEST_SIZE} byte limit"),
        )
        .with_status(413)
        .into_response()
    };
    if header_str(req.headers(), header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > MAX_MANIFEST_SIZE)
    {
        return too_big();
    }
    let bytes = match Limited::new(req.into_body(), MAX_MANIFEST_SIZE)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_big(),
        Err(e) => {
            return RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("reading the manifest body for {repo}: {e}"),
            )
            .into_response()
        }
    };
    match app
        .store
        .put_manifest(&repo, &reference, content_type.as_deref(), &bytes)
        .await
    {
        Ok(put) => {
            let mut resp = StatusCode::CREATED.into_response();
            set(
                &mut resp,
                "Location",
                &format!("/v2/{repo}/manifests/{}", put.digest),
            );
            set(&mut resp, "Docker-Content-Digest", &put.digest.to_string());
            set(&mut resp, "Content-Length", "0");
            if let Some(s) = put.subject {
                set(&mut resp, "OCI-Subject", &s.to_string());
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

pub async fn delete(app: AppState, repo: RepoName, reference: &str) -> Response {
    let reference = match Reference::parse(reference) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match app.store.delete_manifest(&repo, &reference).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(acceptable(&[], OCI_INDEX));
        assert!(acceptable(&["*/*"], OCI_INDEX));
        assert!(acceptable(&["application/json"], OCI_MANIFEST));
        assert!(acceptable(
            &[&format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5")],
            OCI_MANIFEST
        ));
        assert!(!acceptable(&[DOCKER_MANIFEST], OCI_INDEX));
        assert!(acceptable(&[DOCKER_MANIFEST, OCI_INDEX], OCI_INDEX));
    }
}
