//! Blob downloads as a `Read` that resumes: when the connection breaks
//! mid-blob, the rest is asked for with `Range: bytes=N-`, so a long layer
//! does not start over (and the caller's one-pass hashing and unpacking just
//! keeps reading).

use std::io::{self, Read};

use reqwest::blocking::Response;
use reqwest::header::RANGE;
use reqwest::StatusCode;

use super::{expect, Access, Client, Result};
use crate::digest::Digest;

/// How many times one blob download is resumed before giving up.
const MAX_RESUMES: u32 = 5;

/// A blob being downloaded.
pub struct BlobReader<'c> {
    client: &'c Client,
    repo: String,
    digest: Digest,
    resp: Response,
    /// Bytes delivered so far.
    offset: u64,
    /// The length the registry announced, when it did.
    total: Option<u64>,
    resumes: u32,
}

impl Client {
    /// Start downloading a blob; with `size` (the descriptor's), a short body is resumed too.
    pub fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<BlobReader<'_>> {
        let what = format!("fetching blob {digest} from {}/{repo}", self.registry);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        // reqwest's blocking client applies a request's timeout to the
        // response and then to every single read of the body: a read timeout.
        let timeout = self.opts.read_timeout;
        let resp = self.send(&what, &Access::Pull(repo), true, &|c| {
            c.get(&url).timeout(timeout)
        })?;
        let resp = expect(resp, &what, &[StatusCode::OK])?;
        let total = size.or(resp.content_length());
        Ok(BlobReader {
            client: self,
            repo: repo.to_string(),
            digest: digest.clone(),
            resp,
            offset: 0,
            total,
            resumes: 0,
        })
    }
}

impl BlobReader<'_> {
    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn resume(&mut self, cause: io::Error) -> io::Result<()> {
        if self.resumes >= MAX_RESUMES {
            return Err(cause);
        }
        self.resumes += 1;
        tracing::debug!(
            "blob {}: {cause}; resuming at byte {} (attempt {})",
            self.digest,
            self.offset,
            self.resumes
        );
        std::thread::sleep(self.client.backoff(self.resumes - 1, None));
        let what = format!(
            "resuming blob {} from {}/{} at byte {}",
            self.digest, self.client.registry, self.repo, self.offset
        );
        let url = self
            .client
            .url(&format!("/v2/{}/blobs/{}", self.repo, self.digest));
        let range = format!("bytes={}-", self.offset);
        let timeout = self.client.opts.read_timeout;
        let resp = self
            .client
            .send(&what, &Access::Pull(&self.repo), true, &|c| {
                c.get(&url).header(RANGE, &range).timeout(timeout)
            })
            .map_err(io::Error::other)?;
        let mut resp = expect(resp, &what, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT])
            .map_err(io::Error::other)?;
        if resp.status() == StatusCode::OK {
            // No range support: skip what was already delivered.
            io::copy(&mut (&mut resp).take(self.offset), &mut io::sink())?;
        }
        self.resp = resp;
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.resp.read(buf) {
                Ok(0) if buf.is_empty() => return Ok(0),
                Ok(0) => match self.total {
                    Some(t) if self.offset < t => {
                        let cause = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("connection closed after {} of {t} bytes", self.offset),
                        );
                        self.resume(cause)?;
                    }
                    _ => return Ok(0),
                },
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.resume(e)?,
            }
        }
    }
}
