//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (monolithic with `?digest=`, cross-repo
//! mount with `?mount=&from=`, or a new session), then `PATCH`, `PUT`, `GET` and `DELETE`
//! on `/v2/<name>/blobs/uploads/<id>`.

use std::collections::HashMap;

use axum::extract::{Query, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::response::{header_str, set};
use super::AppState;
use crate::error::{ErrorCode, RegistryError};
use crate::store::{parse_digest, ByteStream, RepoName};

fn query(req: &Request) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

fn body_stream(app: &AppState, req: Request) -> ByteStream {
    let metrics = app.clone();
    Box::pin(
        req.into_body()
            .into_data_stream()
            .map_ok(move |chunk| {
                metrics.metrics.add_bytes_received(chunk.len() as u64);
                chunk
            })
            .map_err(std::io::Error::other),
    )
}

/// `Range: 0-<last byte>` as clients expect it (distribution reports `0-0` when empty).
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn session_response(status: StatusCode, repo: &RepoName, id: &str, size: u64) -> Response {
    let mut resp = status.into_response();
    set(
        &mut resp,
        "Location",
        &format!("/v2/{repo}/blobs/uploads/{id}"),
    );
    set(&mut resp, "Range", &range_value(size));
    set(&mut resp, "Docker-Upload-UUID", id);
    set(&mut resp, "Content-Length", "0");
    resp
}

fn created(repo: &RepoName, digest: &str) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    set(&mut resp, "Location", &format!("/v2/{repo}/blobs/{digest}"));
    set(&mut resp, "Docker-Content-Digest", digest);
    set(&mut resp, "Content-Length", "0");
    resp
}

pub async fn start(app: AppState, repo: RepoName, req: Request) -> Response {
    let q = query(&req);
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let digest = match parse_digest(mount) {
            Ok(d) => d,
            Err(e) => return e.into_response(),
        };
        let from = match RepoName::parse(from) {
            Ok(f) => f,
            Err(e) => return e.into_response(),
        };
        // Mounting reads `from`: the client needs pull access there too.
        let need = crate::auth::Need::Repo {
            name: from.to_string(),
            action: crate::auth::Action::Pull,
        };
        let may_read = super::response::authorize(&app, req.headers(), &need).is_none();
        if may_read {
            match app.store.mount_blob(&from, &repo, &digest).await {
                Ok(true) => return created(&repo, &digest.to_string()),
                Ok(false) => {}
                Err(e) => return e.into_response(),
            }
        }
        // Not mountable: fall through to an ordinary upload session, as the spec says.
    } else if let Some(d) = q.get("digest") {
        let digest = match parse_digest(d) {
            Ok(d) => d,
            Err(e) => return e.into_response(),
        };
        let body = body_stream(&app, req);
        return match app.store.put_blob(&repo, &digest, body).await {
            Ok(_) => created(&repo, &digest.to_string()),
            Err(e) => e.into_response(),
        };
    }
    match app.store.start_upload(&repo).await {
        Ok(id) => session_response(StatusCode::ACCEPTED, &repo, &id, 0),
        Err(e) => e.into_response(),
    }
}

pub async fn status(app: AppState, repo: RepoName, id: &str) -> Response {
    match app.store.upload_status(&repo, id).await {
        Ok(s) => session_response(StatusCode::NO_CONTENT, &repo, id, s.size),
        Err(e) => e.into_response(),
    }
}

/// Parse `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefix tolerated).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Where the chunk in this request starts, from its `Content-Range` (None: no header,
/// append wherever the upload ends). A malformed range, or one disagreeing with
/// Content-Length, is a 416.
fn chunk_start(headers: &axum::http::HeaderMap, id: &str) -> Result<Option<u64>, RegistryError> {
    let Some(cr) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let Some((a, b)) = parse_content_range(cr) else {
        return Err(RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {cr:?} of a chunk for upload {id} is malformed"),
        )
        .with_status(416));
    };
    let declared = b - a + 1;
    let length = header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    if let Some(l) = length.filter(|l| *l != declared) {
        return Err(RegistryError::new(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {cr:?} covers {declared} bytes but Content-Length is {l}"),
        )
        .with_status(416));
    }
    Ok(Some(a))
}

/// A refused chunk still tells the client where the upload stands.
async fn chunk_refused(app: &AppState, repo: &RepoName, id: &str, e: RegistryError) -> Response {
    let size = app.store.upload_status(repo, id).await.ok().map(|s| s.size);
    let mut resp = e.into_response();
    if let Some(size) = size {
        set(&mut resp, "Range", &range_value(size));
        set(
            &mut resp,
            "Location",
            &format!("/v2/{repo}/blobs/uploads/{id}"),
        );
    }
    resp
}

pub async fn patch(app: AppState, repo: RepoName, id: &str, req: Request) -> Response {
    let start = match chunk_start(req.headers(), id) {
        Ok(s) => s,
        Err(e) => return chunk_refused(&app, &repo, id, e).await,
    };
    let body = body_stream(&app, req);
    match app.store.append_upload(&repo, id, start, body).await {
        Ok(s) => session_response(StatusCode::ACCEPTED, &repo, id, s.size),
        Err(e) => chunk_refused(&app, &repo, id, e).await,
    }
}

pub async fn put(app: AppState, repo: RepoName, id: &str, req: Request) -> Response {
    let q = query(&req);
    let Some(d) = q.get("digest") else {
        return RegistryError::new(
            ErrorCode::DigestInvalid,
            format!("completing upload {id} needs a digest query parameter"),
        )
        .into_response();
    };
    let digest = match parse_digest(d) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    // The closing PUT may carry the last chunk, with a Content-Range like a PATCH.
    let start = match chunk_start(req.headers(), id) {
        Ok(s) => s,
        Err(e) => return chunk_refused(&app, &repo, id, e).await,
    };
    let has_body = header_str(req.headers(), header::CONTENT_LENGTH).is_none_or(|l| l != "0");
    let body = has_body.then(|| body_stream(&app, req));
    match app
        .store
        .finish_upload(&repo, id, &digest, start, body)
        .await
    {
        Ok(_) => created(&repo, &digest.to_string()),
        Err(e) if e.status == 416 => chunk_refused(&app, &repo, id, e).await,
        Err(e) => e.into_response(),
    }
}

pub async fn cancel(app: AppState, repo: RepoName, id: &str) -> Response {
    match app.store.cancel_upload(&repo, id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("x"), None);
        assert_eq!(range_value(0), "0-0");
        assert_eq!(range_value(10), "0-9");
    }
}
