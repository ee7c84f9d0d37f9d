//! `hako registry gc`: mark-and-sweep garbage collection.
//!
//! Mark: in every repository, tagged manifests are roots; an index keeps the manifests it
//! lists, and a manifest whose `subject` is kept is kept (its referrers stay discoverable).
//! Every kept manifest keeps its own bytes, its config and its layers. Sweep: untagged,
//! unreachable manifests are unlinked; blobs nothing keeps are deleted together with the
//! repository links to them — but only blobs older than the grace period, because a blob
//! just uploaded may belong to a push whose manifest has not arrived yet. Uploads in
//! progress live apart and are touched only once expired.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::digest::Digest;
use crate::error::RegistryError;
use crate::store::{self, Reference, RepoName, Store, StoreResult};

/// What a collection removed, or would remove in a dry run.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub dry_run: bool,
    /// (repository, manifest digest)
    pub manifests: Vec<(String, Digest)>,
    /// (blob digest, size)
    pub blobs: Vec<(Digest, u64)>,
    pub uploads: Vec<String>,
    pub kept_blobs: usize,
}

impl GcReport {
    pub fn bytes_freed(&self) -> u64 {
        self.blobs.iter().map(|(_, s)| s).sum()
    }
}

async fn list_or_empty(store: &Store, path: &str) -> StoreResult<Vec<String>> {
    match store.driver().list(path).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(store::internal(
            &format!("listing {path} for garbage collection"),
            e,
        )),
    }
}

/// Digests stored under a `<alg>/<hex>` directory pair.
async fn digests_under(store: &Store, dir: &str) -> StoreResult<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in list_or_empty(store, dir).await? {
        for hex in list_or_empty(store, &format!("{dir}/{alg}")).await? {
            if let Ok(d) = format!("{alg}:{hex}").parse() {
                out.push(d);
            }
        }
    }
    Ok(out)
}

struct ManifestFacts {
    children: Vec<Digest>,
    blobs: Vec<Digest>,
    subject: Option<Digest>,
}

fn facts(bytes: &[u8]) -> ManifestFacts {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let digest_of = |d: &Value| {
        d.get("digest")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    };
    let list = |key: &str| -> Vec<Digest> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(digest_of).collect())
            .unwrap_or_default()
    };
    let mut blobs = list("layers");
    if let Some(c) = v.get("config").and_then(digest_of) {
        blobs.push(c);
    }
    // Blobs referenced by an artifact manifest's `blobs` (pre-1.1 artifacts) are kept too.
    blobs.extend(list("blobs"));
    ManifestFacts {
        children: list("manifests"),
        blobs,
        subject: v.get("subject").and_then(digest_of),
    }
}

/// Run a collection. With `dry_run` nothing is deleted.
pub async fn collect(
    store: &Store,
    grace: Duration,
    dry_run: bool,
) -> Result<GcReport, RegistryError> {
    let started = SystemTime::now();
    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = store.catalog().await?;
    for name in &repos {
        let repo = RepoName::parse(name)?;
        let revisions = digests_under(
            store,
            &format!("{}/_manifests/revisions", store::repo_path(&repo)),
        )
        .await?;
        let mut facts_of = std::collections::HashMap::new();
        for d in &revisions {
            if let Ok(m) = store
                .get_manifest(&repo, &Reference::Digest(d.clone()))
                .await
            {
                facts_of.insert(d.clone(), facts(&m.bytes));
            }
        }
        let mut kept: BTreeSet<Digest> = BTreeSet::new();
        let mut queue: Vec<Digest> = Vec::new();
        for tag in store.tags(&repo).await.unwrap_or_default() {
            if let Ok(Some((d, _))) = store.resolve_manifest(&repo, &Reference::Tag(tag)).await {
                queue.push(d);
            }
        }
        loop {
            while let Some(d) = queue.pop() {
                if !kept.insert(d.clone()) {
                    continue;
                }
                if let Some(f) = facts_of.get(&d) {
                    queue.extend(f.children.iter().cloned());
                }
            }
            // Referrers of kept manifests are kept; repeat until nothing new joins.
            queue = facts_of
                .iter()
                .filter(|(d, f)| {
                    !kept.contains(*d) && f.subject.as_ref().is_some_and(|s| kept.contains(s))
                })
                .map(|(d, _)| d.clone())
                .collect();
            if queue.is_empty() {
                break;
            }
        }
        for d in &revisions {
            if kept.contains(d) {
                marked.insert(d.clone());
                if let Some(f) = facts_of.get(d) {
                    marked.extend(f.blobs.iter().cloned());
                }
            } else {
                report.manifests.push((name.clone(), d.clone()));
                if !dry_run {
                    store
                        .delete_manifest(&repo, &Reference::Digest(d.clone()))
                        .await?;
                }
            }
        }
    }
    // Sweep the content store.
    let mut swept: HashSet<Digest> = HashSet::new();
    for alg in list_or_empty(store, "/blobs").await? {
        for prefix in list_or_empty(store, &format!("/blobs/{alg}")).await? {
            for hex in list_or_empty(store, &format!("/blobs/{alg}/{prefix}")).await? {
                let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() else {
                    continue;
                };
                if marked.contains(&d) {
                    report.kept_blobs += 1;
                    continue;
                }
                let data = store::blob_data_path(&d);
                let info = match store.driver().stat(&data).await {
                    Ok(i) => i,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(store::internal(&format!("inspecting blob {d}"), e)),
                };
                let age = started.duration_since(info.modified).unwrap_or_default();
                if age < grace {
                    report.kept_blobs += 1;
                    continue;
                }
                report.blobs.push((d.clone(), info.size));
                swept.insert(d.clone());
                if !dry_run {
                    let dir = data.trim_end_matches("/data").to_string();
                    match store.driver().delete(&dir).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(store::internal(&format!("deleting blob {d}"), e)),
                    }
                }
            }
        }
    }
    // Links to swept blobs would otherwise claim blobs that are gone.
    if !dry_run && !swept.is_empty() {
        for name in &repos {
            let repo = RepoName::parse(name)?;
            let layers = format!("{}/_layers", store::repo_path(&repo));
            for d in digests_under(store, &layers).await? {
                if swept.contains(&d) {
                    let link_dir = format!("{layers}/{}/{}", d.algorithm().as_str(), d.hex());
                    if let Err(e) = store.driver().delete(&link_dir).await {
                        if !e.is_not_found() {
                            return Err(store::internal(
                                &format!("unlinking blob {d} from {repo}"),
                                e,
                            ));
                        }
                    }
                }
            }
        }
    }
    report.uploads = if dry_run {
        let now = SystemTime::now();
        store
            .list_uploads()
            .await?
            .into_iter()
            .filter(|(_, s)| now.duration_since(*s).unwrap_or_default() >= store.upload_expiry)
            .map(|(id, _)| id)
            .collect()
    } else {
        store.expire_uploads().await?
    };
    Ok(report)
}

/// Run a collection over the storage a configuration names, on a runtime of its own (the
/// entry point for `hako registry gc`).
pub fn collect_blocking(
    config: &crate::config::Config,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    let driver = crate::storage::FsDriver::new(&config.root).map_err(|source| GcError::Root {
        path: config.root.display().to_string(),
        source,
    })?;
    let store = Store::new(std::sync::Arc::new(driver), config.upload_expiry());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| GcError::Root {
            path: config.root.display().to_string(),
            source,
        })?;
    rt.block_on(collect(
        &store,
        Duration::from_secs(config.gc_grace_secs),
        dry_run,
    ))
    .map_err(GcError::Collect)
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("opening registry storage {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("garbage collection: {0}")]
    Collect(RegistryError),
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for (repo, d) in &self.manifests {
            writeln!(f, "{verb} manifest {repo}@{d}")?;
        }
        for (d, size) in &self.blobs {
            writeln!(f, "{verb} blob {d} ({size} bytes)")?;
        }
        for id in &self.uploads {
            writeln!(f, "{verb} expired upload {id}")?;
        }
        write!(
            f,
            "{} {} manifests, {} blobs ({} bytes), {} expired uploads; {} blobs kept",
            verb,
            self.manifests.len(),
            self.blobs.len(),
            self.bytes_freed(),
            self.uploads.len(),
            self.kept_blobs
        )
    }
}
