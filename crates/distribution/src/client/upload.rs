//! Blob uploads (distribution-spec "pushing blobs"): a cross-repository mount
//! when the blob is known in another repository of the registry; otherwise
//! `POST` a session, then one `PUT` with the whole blob when it is small, or
//! `PATCH` chunks with `Content-Range` and a closing `PUT ?digest=`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use super::{expect, header, Access, Client, ClientError, Result};
use crate::digest::Digest;

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The registry linked it from another repository.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

impl Client {
    /// Put the blob `digest` (`size` bytes, read from `file`) into `repo`,
    /// mounting it from `mount_from` when given and the registry agrees.
    /// `progress` is told about every byte sent.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        file: &File,
        mount_from: Option<&str>,
        progress: &dyn Fn(u64),
    ) -> Result<Pushed> {
        let what = format!("uploading blob {digest} to {}/{repo}", self.registry);
        let access = match mount_from {
            Some(from) => Access::PushMount { repo, from },
            None => Access::Push(repo),
        };
        let start = match mount_from {
            Some(from) => self.url(&format!(
                "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
            )),
            None => self.url(&format!("/v2/{repo}/blobs/uploads/")),
        };
        let resp = self.send(&what, &access, true, &|c| {
            c.post(&start).header(CONTENT_LENGTH, "0")
        })?;
        let resp = expect(resp, &what, &[StatusCode::CREATED, StatusCode::ACCEPTED])?;
        if resp.status() == StatusCode::CREATED {
            progress(size);
            return Ok(Pushed::Mounted);
        }
        let mut location = self.location(&resp, &what)?;
        let chunk = self.opts.chunk_size.max(1);
        let read = |offset: u64, len: u64| -> Result<bytes::Bytes> {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| ClientError::io(format!("reading blob {digest}"), e))?;
            Ok(bytes::Bytes::from(buf))
        };
        if size <= chunk {
            // Monolithic: the whole blob in the closing PUT.
            let body = read(0, size)?;
            let url = with_digest(&location, digest);
            let resp = self.send(&what, &access, true, &|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })?;
            expect(resp, &what, &[StatusCode::CREATED])?;
            progress(size);
            return Ok(Pushed::Uploaded);
        }
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let body = read(offset, len)?;
            let range = format!("{offset}-{}", offset + len - 1);
            // A chunk is not replayed after the server saw it: it may have
            // been stored, and a second copy would break the session.
            let resp = self.send(&what, &access, false, &|c| {
                c.patch(&location)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", &range)
                    .body(body.clone())
            })?;
            let resp = expect(resp, &what, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT])?;
            location = self.location(&resp, &what)?;
            offset += len;
            progress(len);
        }
        let url = with_digest(&location, digest);
        let resp = self.send(&what, &access, true, &|c| {
            c.put(&url).header(CONTENT_LENGTH, "0")
        })?;
        expect(resp, &what, &[StatusCode::CREATED])?;
        Ok(Pushed::Uploaded)
    }

    fn location(&self, resp: &reqwest::blocking::Response, what: &str) -> Result<String> {
        header(resp.headers(), LOCATION.as_str())
            .map(|l| self.resolve(&l))
            .ok_or_else(|| ClientError::protocol(what, "the registry sent no upload Location"))
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_query_is_appended() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u?_state=x", &d),
            format!("http://h/v2/a/blobs/uploads/u?_state=x&digest={d}")
        );
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u", &d),
            format!("http://h/v2/a/blobs/uploads/u?digest={d}")
        );
    }
}
