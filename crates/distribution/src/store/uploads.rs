//! Blob uploads: each upload is a data file plus metadata in `/uploads/<id>/`, apart from
//! the content store. A blob enters the content store only by an atomic rename after its
//! bytes were fsynced and matched against the client's digest, so a failed, killed or
//! lying upload never leaves a corrupt blob behind.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{blob_data_path, internal, RepoName, Store, StoreResult};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{ErrorCode, RegistryError};

/// A request body as the store consumes it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Hash of the first `len` bytes of an upload.
pub(crate) struct RunningHash {
    hasher: Hasher,
    len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadStatus {
    /// Bytes received so far; the next chunk must start here.
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct UploadInfo {
    repository: String,
    /// Seconds since the epoch; uploads older than the expiry are purged.
    started_at: u64,
}

fn upload_dir(id: &str) -> String {
    format!("/uploads/{id}")
}

fn upload_unknown(repo: &RepoName, id: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadUnknown,
        format!("upload {id:?} is not in progress for repository {repo}"),
    )
}

/// Upload ids are 32 lowercase hex characters; anything else cannot name an upload and
/// must not reach a storage path.
fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn forget_upload(&self, id: &str) {
        self.upload_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.upload_hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Begin an upload into `repo`; returns its id.
    pub async fn start_upload(&self, repo: &RepoName) -> StoreResult<String> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw)
            .map_err(|e| RegistryError::internal(format!("generating an upload id: {e}")))?;
        let id = crate::digest::to_hex(&raw);
        let info = serde_json::to_vec(&UploadInfo {
            repository: repo.to_string(),
            started_at: now_secs(),
        })
        .expect("upload info serialises");
        let dir = upload_dir(&id);
        let action = format!("starting an upload into {repo}");
        self.driver
            .put_content(&format!("{dir}/info"), &info)
            .await
            .map_err(|e| internal(&action, e))?;
        let w = self
            .driver
            .writer(&format!("{dir}/data"), false)
            .await
            .map_err(|e| internal(&action, e))?;
        w.commit().await.map_err(|e| internal(&action, e))?;
        self.upload_hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.clone(),
                RunningHash {
                    hasher: Algorithm::Sha256.hasher(),
                    len: 0,
                },
            );
        Ok(id)
    }

    /// Check that `id` is an upload of `repo` and report its progress.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> StoreResult<UploadStatus> {
        if !valid_id(id) {
            return Err(upload_unknown(repo, id));
        }
        let dir = upload_dir(id);
        let info = match self.driver.get_content(&format!("{dir}/info")).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(upload_unknown(repo, id)),
            Err(e) => return Err(internal(&format!("reading upload {id}"), e)),
        };
        let info: UploadInfo = serde_json::from_slice(&info).map_err(|e| {
            RegistryError::internal(format!("upload {id} metadata is corrupt: {e}"))
        })?;
        if info.repository != repo.as_str() {
            return Err(upload_unknown(repo, id));
        }
        match self.driver.stat(&format!("{dir}/data")).await {
            Ok(st) => Ok(UploadStatus { size: st.size }),
            Err(e) if e.is_not_found() => Err(upload_unknown(repo, id)),
            Err(e) => Err(internal(&format!("inspecting upload {id}"), e)),
        }
    }

    /// Append `body` to upload `id`. With `start`, the chunk must begin exactly where the
    /// upload ends (else 416 and nothing is written).
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> StoreResult<UploadStatus> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        self.append_locked(repo, id, start, body).await
    }

    async fn append_locked(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        mut body: ByteStream,
    ) -> StoreResult<UploadStatus> {
        let status = self.upload_status(repo, id).await?;
        if let Some(start) = start {
            if start != status.size {
                return Err(RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!(
                        "chunk for upload {id} starts at byte {start} but the upload has {} bytes",
                        status.size
                    ),
                )
                .with_status(416)
                .with_detail(serde_json::json!({ "size": status.size })));
            }
        }
        let path = format!("{}/data", upload_dir(id));
        let action = format!("appending to upload {id} of {repo}");
        let mut w = self
            .driver
            .writer(&path, true)
            .await
            .map_err(|e| internal(&action, e))?;
        // Keep the running hash only if it covers exactly the bytes already on disk.
        let mut running = {
            let mut hashes = self.upload_hashes.lock().unwrap_or_else(|p| p.into_inner());
            hashes.remove(id).filter(|h| h.len == status.size)
        };
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    if let Some(r) = running.as_mut() {
                        r.hasher.update(&chunk);
                        r.len += chunk.len() as u64;
                    }
                    if let Err(e) = w.write(chunk).await {
                        // The file may hold part of the chunks: the hash no longer matches.
                        running = None;
                        failure = Some(RegistryError::internal(format!("{action}: {e}")));
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(
                        RegistryError::new(
                            ErrorCode::BlobUploadInvalid,
                            format!("request body for upload {id} broke off: {e}"),
                        )
                        .with_status(400),
                    );
                    break;
                }
            }
        }
        let size = w.size();
        // Whatever arrived is kept durable, so a client can resume from the reported size.
        let committed = w.commit().await;
        if committed.is_err() {
            running = None;
        }
        if let Some(r) = running {
            self.upload_hashes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string(), r);
        }
        committed.map_err(|e| internal(&action, e))?;
        match failure {
            Some(f) => Err(f),
            None => Ok(UploadStatus { size }),
        }
    }

    /// Complete upload `id`: append the optional final chunk (which must begin at `start`
    /// when given), verify the bytes against `digest`, and move them into the content store.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        start: Option<u64>,
        body: Option<ByteStream>,
    ) -> StoreResult<u64> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let status = match body {
            Some(b) => self.append_locked(repo, id, start, b).await?,
            None => self.upload_status(repo, id).await?,
        };
        let data = format!("{}/data", upload_dir(id));
        let running = self
            .upload_hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let actual = match running {
            Some(r) if r.len == status.size && r.hasher.algorithm() == digest.algorithm() => {
                r.hasher.finish()
            }
            _ => self.hash_file(&data, digest.algorithm()).await?,
        };
        if &actual != digest {
            // The upload stays so the client may inspect or cancel it; its bytes never
            // become a blob.
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("upload {id} has digest {actual}, not the {digest} the client gave"),
            )
            .with_detail(
                serde_json::json!({ "digest": digest.to_string(), "actual": actual.to_string() }),
            ));
        }
        let action = format!("committing blob {digest} into {repo}");
        let target = blob_data_path(digest);
        if !self.claim_blob(digest).await? {
            self.driver
                .rename(&data, &target)
                .await
                .map_err(|e| internal(&action, e))?;
        }
        self.link_blob(repo, digest).await?;
        if let Err(e) = self.driver.delete(&upload_dir(id)).await {
            tracing::warn!(upload = id, error = %e, "could not remove a finished upload");
        }
        self.forget_upload(id);
        Ok(status.size)
    }

    async fn hash_file(&self, path: &str, alg: Algorithm) -> StoreResult<Digest> {
        let action = format!("hashing {path}");
        let mut r = self
            .driver
            .reader(path, 0)
            .await
            .map_err(|e| internal(&action, e))?;
        let mut h = alg.hasher();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = r
                .read(&mut buf)
                .await
                .map_err(|e| RegistryError::internal(format!("{action}: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }

    /// Abandon upload `id`.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> StoreResult<()> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        self.upload_status(repo, id).await?;
        self.driver
            .delete(&upload_dir(id))
            .await
            .map_err(|e| internal(&format!("cancelling upload {id} of {repo}"), e))?;
        self.forget_upload(id);
        Ok(())
    }

    /// Monolithic upload: the whole blob in one request.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> StoreResult<u64> {
        let id = self.start_upload(repo).await?;
        let result = self
            .finish_upload(repo, &id, digest, None, Some(body))
            .await;
        if result.is_err() {
            // A failed one-shot upload has no id the client knows: remove it now.
            let _ = self.driver.delete(&upload_dir(&id)).await;
            self.forget_upload(&id);
        }
        result
    }

    /// Ids of uploads in progress, with their start times.
    pub async fn list_uploads(&self) -> StoreResult<Vec<(String, SystemTime)>> {
        let ids = match self.driver.list("/uploads").await {
            Ok(ids) => ids,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(internal("listing uploads", e)),
        };
        let mut out = Vec::new();
        for id in ids.into_iter().filter(|i| valid_id(i)) {
            let started = match self
                .driver
                .get_content(&format!("/uploads/{id}/info"))
                .await
            {
                Ok(b) => serde_json::from_slice::<UploadInfo>(&b)
                    .map(|i| UNIX_EPOCH + Duration::from_secs(i.started_at))
                    .ok(),
                Err(_) => None,
            };
            // An upload without readable metadata was torn at its start: date it by its
            // directory so it still expires.
            let started = match started {
                Some(s) => s,
                None => match self.driver.stat(&format!("/uploads/{id}")).await {
                    Ok(st) => st.modified,
                    Err(_) => continue,
                },
            };
            out.push((id, started));
        }
        Ok(out)
    }

    /// Remove uploads started longer ago than the configured expiry. Returns their ids.
    pub async fn expire_uploads(&self) -> StoreResult<Vec<String>> {
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for (id, started) in self.list_uploads().await? {
            let age = now.duration_since(started).unwrap_or_default();
            if age < self.upload_expiry {
                continue;
            }
            let lock = self.upload_lock(&id);
            let _guard = lock.lock().await;
            match self.driver.delete(&upload_dir(&id)).await {
                Ok(()) => removed.push(id.clone()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(internal(&format!("expiring upload {id}"), e)),
            }
            drop(_guard);
            self.forget_upload(&id);
        }
        Ok(removed)
    }
}
