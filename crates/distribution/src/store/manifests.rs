//! Manifests, tags and referrers. Manifest bytes live in the content store like blobs and
//! are never rewritten: a client gets back exactly the bytes it pushed, so digests hold.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    blob_data_path, internal, parse_digest, referrer_entry_path, referrers_dir, revision_link_path,
    tag_link_path, tags_path, Reference, RepoName, Store, StoreResult, MAX_MANIFEST_SIZE,
};
use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError};
use crate::media_types::{self, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST};

/// A manifest as served: its digest, media type and exact bytes.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The outcome of a manifest PUT.
#[derive(Debug, Clone)]
pub struct ManifestPut {
    pub digest: Digest,
    /// The `subject` the manifest refers to, for the `OCI-Subject` response header.
    pub subject: Option<Digest>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionLink {
    media_type: String,
}

fn manifest_unknown(repo: &RepoName, reference: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not known to repository {repo}"),
    )
    .with_detail(json!({ "reference": reference }))
}

fn manifest_invalid(msg: String) -> RegistryError {
    RegistryError::new(ErrorCode::ManifestInvalid, msg)
}

/// The facts about a manifest the registry needs: what it references and what it points to.
struct Parsed {
    media_type: String,
    /// Blobs (config, layers) that must already be in the repository.
    blobs: Vec<Digest>,
    /// Manifests (children of an index) that must already be in the repository.
    manifests: Vec<Digest>,
    subject: Option<Digest>,
    artifact_type: Option<String>,
    annotations: Option<Value>,
}

fn descriptor_digest(d: &Descriptor, what: &str) -> StoreResult<Digest> {
    d.digest().to_string().parse::<Digest>().map_err(|e| {
        RegistryError::new(ErrorCode::DigestInvalid, format!("{what} descriptor: {e}"))
            .with_detail(json!({ "digest": d.digest().to_string() }))
    })
}

/// Decide the manifest's media type from the request's Content-Type and the body's own
/// `mediaType`, which must agree when both are present.
fn media_type_of(content_type: Option<&str>, value: &Value) -> StoreResult<String> {
    let body_type = value.get("mediaType").and_then(Value::as_str);
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| MANIFEST_TYPES.contains(c));
    let media_type = match (header_type, body_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(manifest_invalid(format!(
                "Content-Type {h} disagrees with the manifest's mediaType {b}"
            )))
        }
        (Some(h), _) => h.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) if value.get("manifests").is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(manifest_invalid(format!(
            "manifest media type {media_type} is not one this registry stores"
        )));
    }
    Ok(media_type)
}

fn parse_manifest(content_type: Option<&str>, bytes: &[u8]) -> StoreResult<Parsed> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| manifest_invalid(format!("manifest is not valid JSON: {e}")))?;
    if value.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(manifest_invalid(
            "manifest schemaVersion must be 2 (schema 1 is not supported)".into(),
        ));
    }
    let media_type = media_type_of(content_type, &value)?;
    let annotations = value.get("annotations").cloned();
    if media_types::is_index(&media_type) {
        let index: ImageIndex = serde_json::from_value(value)
            .map_err(|e| manifest_invalid(format!("image index does not parse: {e}")))?;
        let manifests = index
            .manifests()
            .iter()
            .map(|d| descriptor_digest(d, "index entry"))
            .collect::<StoreResult<_>>()?;
        let subject = index
            .subject()
            .as_ref()
            .map(|s| descriptor_digest(s, "subject"))
            .transpose()?;
        Ok(Parsed {
            media_type,
            blobs: Vec::new(),
            manifests,
            subject,
            artifact_type: index.artifact_type().as_ref().map(|a| a.to_string()),
            annotations,
        })
    } else {
        let m: ImageManifest = serde_json::from_value(value)
            .map_err(|e| manifest_invalid(format!("image manifest does not parse: {e}")))?;
        let mut blobs = vec![descriptor_digest(m.config(), "config")?];
        for layer in m.layers() {
            let d = descriptor_digest(layer, "layer")?;
            // Foreign (non-distributable) layers live at their `urls`; the registry need not
            // hold them.
            let foreign = media_types::is_foreign_layer(layer.media_type().as_ref())
                || layer.urls().as_ref().is_some_and(|u| !u.is_empty());
            if !foreign {
                blobs.push(d);
            }
        }
        let subject = m
            .subject()
            .as_ref()
            .map(|s| descriptor_digest(s, "subject"))
            .transpose()?;
        let artifact_type = m
            .artifact_type()
            .as_ref()
            .map(|a| a.to_string())
            .or_else(|| Some(m.config().media_type().to_string()));
        Ok(Parsed {
            media_type,
            blobs,
            manifests: Vec::new(),
            subject,
            artifact_type,
            annotations,
        })
    }
}

impl Store {
    /// Digest and media type a reference resolves to, if the manifest exists in `repo`.
    pub async fn resolve_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> StoreResult<Option<(Digest, String)>> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match self.driver.get_content(&tag_link_path(repo, t)).await {
                Ok(b) => parse_digest(String::from_utf8_lossy(&b).trim())?,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(internal(&format!("reading tag {t} of {repo}"), e)),
            },
        };
        match self
            .driver
            .get_content(&revision_link_path(repo, &digest))
            .await
        {
            Ok(b) => {
                let link: RevisionLink = serde_json::from_slice(&b).map_err(|e| {
                    RegistryError::internal(format!(
                        "revision link of {digest} in {repo} is corrupt: {e}"
                    ))
                })?;
                Ok(Some((digest, link.media_type)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(internal(&format!("reading manifest {digest} of {repo}"), e)),
        }
    }

    /// Claim everything `parsed` references in `repo` (see [`Store::claim_blob`]); the
    /// error to report when something is missing.
    async fn claim_references(
        &self,
        repo: &RepoName,
        parsed: &Parsed,
    ) -> StoreResult<Option<RegistryError>> {
        for b in &parsed.blobs {
            if !self.claim_layer(repo, b).await? {
                return Ok(Some(
                    RegistryError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!(
                            "manifest references blob {b}, which repository {repo} does not have"
                        ),
                    )
                    .with_detail(json!({ "digest": b.to_string() })),
                ));
            }
        }
        for m in &parsed.manifests {
            if !(self.claim_blob(m).await? && self.claim_revision(repo, m).await?) {
                return Ok(Some(
                    RegistryError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!(
                            "index references manifest {m}, which repository {repo} does not have"
                        ),
                    )
                    .with_detail(json!({ "digest": m.to_string() })),
                ));
            }
        }
        Ok(None)
    }

    /// Mark manifest `d`'s revision in `repo` as in use now; false when it does not exist.
    async fn claim_revision(&self, repo: &RepoName, d: &Digest) -> StoreResult<bool> {
        match self.driver.touch(&revision_link_path(repo, d)).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(internal(&format!("claiming manifest {d} of {repo}"), e)),
        }
    }

    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> StoreResult<StoredManifest> {
        let name = reference_string(reference);
        let (digest, media_type) = self
            .resolve_manifest(repo, reference)
            .await?
            .ok_or_else(|| manifest_unknown(repo, &name))?;
        let bytes = match self.driver.get_content(&blob_data_path(&digest)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(manifest_unknown(repo, &name)),
            Err(e) => return Err(internal(&format!("reading manifest {digest} of {repo}"), e)),
        };
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Store a manifest under `reference` after checking its digest and that everything it
    /// references is already in `repo`.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> StoreResult<ManifestPut> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!(
                    "manifest of {} bytes exceeds the {MAX_MANIFEST_SIZE} byte limit",
                    bytes.len()
                ),
            )
            .with_status(413));
        }
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), bytes);
                if &actual != d {
                    return Err(RegistryError::new(
                        ErrorCode::DigestInvalid,
                        format!("manifest has digest {actual}, not {d} as its reference says"),
                    )
                    .with_detail(json!({ "digest": d.to_string() })));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(bytes),
        };
        let parsed = parse_manifest(content_type, bytes)?;
        if let Some(e) = self.claim_references(repo, &parsed).await? {
            return Err(e);
        }
        let action = format!("storing manifest {digest} in {repo}");
        if !self.claim_blob(&digest).await? {
            self.driver
                .put_content(&blob_data_path(&digest), bytes)
                .await
                .map_err(|e| internal(&action, e))?;
        }
        let link = serde_json::to_vec(&RevisionLink {
            media_type: parsed.media_type.clone(),
        })
        .expect("revision link serialises");
        self.driver
            .put_content(&revision_link_path(repo, &digest), &link)
            .await
            .map_err(|e| internal(&action, e))?;
        if let Some(subject) = &parsed.subject {
            let mut desc = json!({
                "mediaType": parsed.media_type,
                "digest": digest.to_string(),
                "size": bytes.len(),
            });
            if let Some(a) = &parsed.artifact_type {
                desc["artifactType"] = json!(a);
            }
            if let Some(a) = &parsed.annotations {
                desc["annotations"] = a.clone();
            }
            self.driver
                .put_content(
                    &referrer_entry_path(repo, subject, &digest),
                    &serde_json::to_vec(&desc).expect("descriptor serialises"),
                )
                .await
                .map_err(|e| internal(&action, e))?;
        }
        let mut previous_tag = None;
        if let Reference::Tag(t) = reference {
            let tag_path = tag_link_path(repo, t);
            previous_tag = match self.driver.get_content(&tag_path).await {
                Ok(b) => Some(b),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(internal(&format!("reading tag {t} of {repo}"), e)),
            };
            self.driver
                .put_content(&tag_path, digest.to_string().as_bytes())
                .await
                .map_err(|e| internal(&format!("tagging {digest} as {t} in {repo}"), e))?;
        }
        // Claim everything again now that the tag protects it. A garbage collection that
        // began before the tag existed may have swept something between the first claims
        // and the tag; then the push is undone rather than leaving a manifest whose blobs
        // are gone. (A collection beginning later sees the tag, or these fresh claims.)
        let mut missing = self.claim_references(repo, &parsed).await?;
        if missing.is_none()
            && !(self.claim_blob(&digest).await? && self.claim_revision(repo, &digest).await?)
        {
            missing = Some(RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!(
                    "manifest {digest} was collected as garbage while it was pushed; push it again"
                ),
            ));
        }
        if let Some(e) = missing {
            if let Reference::Tag(t) = reference {
                let tag_path = tag_link_path(repo, t);
                let undo = match &previous_tag {
                    Some(old) => self.driver.put_content(&tag_path, old).await,
                    None => {
                        self.driver
                            .delete(&format!("{}/{}", tags_path(repo), t))
                            .await
                    }
                };
                if let Err(u) = undo {
                    tracing::error!(error = %u, tag = t, "could not undo a tag after a failed push");
                }
            }
            return Err(e);
        }
        Ok(ManifestPut {
            digest,
            subject: parsed.subject,
        })
    }

    /// Delete a tag, or a manifest by digest together with the tags pointing at it and its
    /// referrer entry.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> StoreResult<()> {
        let name = reference_string(reference);
        match reference {
            Reference::Tag(t) => {
                let dir = format!("{}/{}", tags_path(repo), t);
                match self.driver.delete(&dir).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => Err(manifest_unknown(repo, &name)),
                    Err(e) => Err(internal(&format!("deleting tag {t} of {repo}"), e)),
                }
            }
            Reference::Digest(d) => {
                let m = self.get_manifest(repo, reference).await?;
                let action = format!("deleting manifest {d} of {repo}");
                if let Ok(parsed) = parse_manifest(Some(&m.media_type), &m.bytes) {
                    if let Some(subject) = parsed.subject {
                        match self
                            .driver
                            .delete(&referrer_entry_path(repo, &subject, d))
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(internal(&action, e)),
                        }
                    }
                }
                for tag in self.tags(repo).await.unwrap_or_default() {
                    if let Ok(Some((td, _))) = self
                        .resolve_manifest(repo, &Reference::Tag(tag.clone()))
                        .await
                    {
                        if &td == d {
                            let dir = format!("{}/{}", tags_path(repo), tag);
                            self.driver
                                .delete(&dir)
                                .await
                                .map_err(|e| internal(&action, e))?;
                        }
                    }
                }
                self.driver
                    .delete(revision_link_path(repo, d).trim_end_matches("/link"))
                    .await
                    .map_err(|e| internal(&action, e))
            }
        }
    }

    /// Tags of `repo`, sorted. NAME_UNKNOWN when the repository does not exist.
    pub async fn tags(&self, repo: &RepoName) -> StoreResult<Vec<String>> {
        if !self
            .exists(&super::repo_path(repo), "looking up a repository")
            .await?
        {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is not known to the registry"),
            )
            .with_detail(json!({ "name": repo.as_str() })));
        }
        match self.driver.list(&tags_path(repo)).await {
            Ok(t) => Ok(t),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(internal(&format!("listing tags of {repo}"), e)),
        }
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, optionally only
    /// those of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> StoreResult<Vec<Value>> {
        let dir = referrers_dir(repo, subject);
        let entries = match self.driver.list(&dir).await {
            Ok(e) => e,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => {
                return Err(internal(
                    &format!("listing referrers of {subject} in {repo}"),
                    e,
                ))
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let bytes = match self.driver.get_content(&format!("{dir}/{entry}")).await {
                Ok(b) => b,
                // Deleted between listing and reading.
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    return Err(internal(
                        &format!("reading referrers of {subject} in {repo}"),
                        e,
                    ))
                }
            };
            let desc: Value = serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::internal(format!(
                    "referrer entry {entry} of {subject} is corrupt: {e}"
                ))
            })?;
            let matches = artifact_type
                .is_none_or(|want| desc.get("artifactType").and_then(Value::as_str) == Some(want));
            if matches {
                out.push(desc);
            }
        }
        Ok(out)
    }
}

fn reference_string(r: &Reference) -> String {
    match r {
        Reference::Tag(t) => t.clone(),
        Reference::Digest(d) => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_negotiation_on_put() {
        let v = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST});
        assert_eq!(media_type_of(None, &v).unwrap(), OCI_MANIFEST);
        assert_eq!(media_type_of(Some(OCI_MANIFEST), &v).unwrap(), OCI_MANIFEST);
        assert!(media_type_of(Some(OCI_INDEX), &v).is_err());
        let idx = json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(
            media_type_of(Some("application/json"), &idx).unwrap(),
            OCI_INDEX
        );
        let bad = json!({"schemaVersion": 2, "mediaType": "text/plain"});
        assert!(media_type_of(None, &bad).is_err());
    }

    #[test]
    fn parses_references_and_foreign_layers() {
        let cfg = Digest::sha256_of(b"{}");
        let layer = Digest::sha256_of(b"layer");
        let foreign = Digest::sha256_of(b"foreign");
        let m = json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg.to_string(), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.to_string(), "size": 5},
                {"mediaType": media_types::DOCKER_FOREIGN_LAYER, "digest": foreign.to_string(), "size": 7,
                 "urls": ["https://example.invalid/layer"]}
            ]
        });
        let p = parse_manifest(None, &serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(p.media_type, media_types::DOCKER_MANIFEST);
        assert_eq!(p.blobs, vec![cfg, layer]);
        assert!(p.subject.is_none());
        assert!(parse_manifest(None, b"{\"schemaVersion\":1}").is_err());
        assert!(parse_manifest(None, b"not json").is_err());
    }
}
