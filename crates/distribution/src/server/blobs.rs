//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single-range `Range` support.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::response::{header_str, set};
use super::AppState;
use crate::error::{ErrorCode, RegistryError};
use crate::store::blob_unknown;
use crate::store::{parse_digest, RepoName};

/// A byte range `start..=end` of a blob of known size.
#[derive(Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Parse `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
/// `Ok(None)` means "no usable Range header: send everything"; `Err` means unsatisfiable.
pub fn parse_range(value: &str, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        // Unknown units are ignored, as RFC 9110 asks.
        return Ok(None);
    };
    if spec.contains(',') {
        // Multiple ranges would need multipart/byteranges; serving the whole blob is allowed.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        }
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        ByteRange { start, end }
    };
    Ok(Some(range))
}

pub async fn get(app: AppState, repo: RepoName, digest: &str, req: Request) -> Response {
    let digest = match parse_digest(digest) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let size = match app.store.blob_size(&repo, &digest).await {
        Ok(Some(s)) => s,
        Ok(None) => return blob_unknown(&repo, &digest).into_response(),
        Err(e) => return e.into_response(),
    };
    let range = match header_str(req.headers(), header::RANGE) {
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                let mut resp = RegistryError::new(
                    ErrorCode::BlobUnknown,
                    format!("range {v:?} cannot be satisfied by blob {digest} of {size} bytes"),
                )
                .with_status(416)
                .into_response();
                set(&mut resp, "Content-Range", &format!("bytes */{size}"));
                return resp;
            }
        },
        None => None,
    };
    let (status, start, len) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        let chunks = match app.store.blob_chunks(&repo, &digest, start, len).await {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        app.metrics.add_bytes_sent(len);
        Body::from_stream(chunks)
    };
    let mut resp = (status, body).into_response();
    set(&mut resp, "Content-Length", &len.to_string());
    set(&mut resp, "Content-Type", "application/octet-stream");
    set(&mut resp, "Docker-Content-Digest", &digest.to_string());
    set(&mut resp, "Accept-Ranges", "bytes");
    set(&mut resp, "ETag", &format!("\"{digest}\""));
    if let Some(r) = range {
        set(
            &mut resp,
            "Content-Range",
            &format!("bytes {}-{}/{size}", r.start, r.end),
        );
    }
    resp
}

pub async fn delete(app: AppState, repo: RepoName, digest: &str) -> Response {
    let digest = match parse_digest(digest) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    match app.store.delete_blob(&repo, &digest).await {
        Ok(()) => {
            let mut resp = StatusCode::ACCEPTED.into_response();
            set(&mut resp, "Docker-Content-Digest", &digest.to_string());
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Ok(Some(ByteRange { start: 0, end: 9 }))
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=50-500", 100),
            Ok(Some(ByteRange { start: 50, end: 99 }))
        );
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-2", 100), Err(()));
        assert_eq!(parse_range("bytes=x-2", 100), Err(()));
        assert_eq!(parse_range("bytes=0-0", 0), Err(()));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }
}
