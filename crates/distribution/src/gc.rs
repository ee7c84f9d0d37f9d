//! `hako registry gc`: mark-and-sweep garbage collection.
//!
//! Mark: in every repository, tagged manifests and manifests younger than the grace period
//! are roots (a multi-platform push uploads its child manifests before the index that
//! tags them); an index keeps the manifests it lists, and a manifest whose `subject` is
//! kept is kept (its referrers stay discoverable). Every kept manifest keeps its own bytes,
//! its config and its layers. Sweep: the other manifests are unlinked; blobs nothing keeps
//! and older than the grace period are deleted with the repository links to them. Uploads
//! in progress live apart and are touched only once expired.
//!
//! Safe beside a running registry: writers *claim* a blob (set its mtime) before relying
//! on it (finishing an upload of a blob that exists, a manifest PUT referencing it). The
//! sweep first moves a blob into `/trash` atomically, then looks at its mtime: claimed
//! since the collection began, it goes back; otherwise it is deleted. A writer that claims
//! after the move finds the blob missing and re-creates it (upload) or refuses the
//! manifest (MANIFEST_BLOB_UNKNOWN), so no manifest is ever accepted over a deleted blob.

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

/// Move `dir` into the trash atomically; None when it is already gone.
async fn to_trash(store: &Store, dir: &str) -> StoreResult<Option<String>> {
    let mut rnd = [0u8; 12];
    getrandom::fill(&mut rnd)
        .map_err(|e| RegistryError::internal(format!("naming a trash entry: {e}")))?;
    // The name carries the origin (`/` spelled `~`, which no name or digest contains) so a
    // collection that died between moving and deciding can be undone by the next one.
    let trash = format!(
        "/trash/{}{}",
        crate::digest::to_hex(&rnd),
        dir.replace('/', "~")
    );
    match store.driver().rename(dir, &trash).await {
        Ok(()) => Ok(Some(trash)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(store::internal(&format!("moving {dir} to the trash"), e)),
    }
}

/// Put back whatever a collection that died mid-sweep left in the trash; this run then
/// judges it afresh.
async fn recover_trash(store: &Store) -> StoreResult<()> {
    for entry in list_or_empty(store, "/trash").await? {
        let Some(at) = entry.find('~') else {
            continue;
        };
        let origin = entry[at..].replace('~', "/");
        if crate::storage::check_path(&origin).is_err() {
            continue;
        }
        restore(store, &format!("/trash/{entry}"), &origin).await?;
    }
    Ok(())
}

/// Whether `path` was claimed (its mtime set) since the collection began.
async fn claimed_since(store: &Store, path: &str, started: SystemTime) -> StoreResult<bool> {
    match store.driver().stat(path).await {
        Ok(info) => Ok(info.modified >= started),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(store::internal(&format!("inspecting {path}"), e)),
    }
}

/// Put a trashed `dir` back, or drop the trashed copy when a writer re-created `dir`
/// meanwhile (its content is the same: names are digests).
async fn restore(store: &Store, trash: &str, dir: &str) -> StoreResult<()> {
    let back = if store.exists(dir, "checking a restore target").await? {
        store.driver().delete(trash).await
    } else {
        match store.driver().rename(trash, dir).await {
            // Re-created by a writer between the check and the rename.
            Err(_) if store.exists(dir, "checking a restore target").await? => {
                store.driver().delete(trash).await
            }
            other => other,
        }
    };
    match back {
        Ok(()) => Ok(()),
        // Another collection already restored or removed it.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(store::internal(
            &format!("restoring {dir} from the trash"),
            e,
        )),
    }
}

async fn purge(store: &Store, trash: &str) -> StoreResult<()> {
    match store.driver().delete(trash).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(store::internal(&format!("emptying {trash}"), e)),
    }
}

/// Delete blob `d` unless a writer claimed it since `started`: move it to the trash
/// (atomic), check its mark there, then delete it or put it back. True when deleted.
async fn sweep_blob(store: &Store, d: &Digest, started: SystemTime) -> StoreResult<bool> {
    let dir = store::blob_data_path(d)
        .trim_end_matches("/data")
        .to_string();
    let Some(trash) = to_trash(store, &dir).await? else {
        return Ok(false);
    };
    if claimed_since(store, &format!("{trash}/data"), started).await? {
        restore(store, &trash, &dir).await?;
        return Ok(false);
    }
    purge(store, &trash).await?;
    Ok(true)
}

/// Delete `repo`'s link to swept blob `d`, unless it was claimed or the blob re-uploaded.
async fn sweep_link(
    store: &Store,
    repo: &RepoName,
    d: &Digest,
    started: SystemTime,
) -> StoreResult<()> {
    let dir = store::layer_link_path(repo, d)
        .trim_end_matches("/link")
        .to_string();
    let Some(trash) = to_trash(store, &dir).await? else {
        return Ok(());
    };
    if claimed_since(store, &format!("{trash}/link"), started).await?
        || store.global_blob_size(d).await?.is_some()
    {
        return restore(store, &trash, &dir).await;
    }
    purge(store, &trash).await
}

/// Delete untagged manifest `d` of `repo` unless it was claimed (pushed, or referenced by a
/// push) or tagged since the collection began. True when deleted.
async fn sweep_manifest(
    store: &Store,
    repo: &RepoName,
    d: &Digest,
    subject: Option<&Digest>,
    started: SystemTime,
) -> StoreResult<bool> {
    let dir = store::revision_link_path(repo, d)
        .trim_end_matches("/link")
        .to_string();
    let Some(trash) = to_trash(store, &dir).await? else {
        return Ok(false);
    };
    let mut keep = claimed_since(store, &format!("{trash}/link"), started).await?;
    if !keep {
        // A tag written before the move makes it a root after all. (One written after
        // it finds the revision gone, and that push undoes itself.)
        let want = d.to_string();
        for tag in store.tags(repo).await.unwrap_or_default() {
            if let Ok(b) = store
                .driver()
                .get_content(&store::tag_link_path(repo, &tag))
                .await
            {
                if String::from_utf8_lossy(&b).trim() == want {
                    keep = true;
                    break;
                }
            }
        }
    }
    if keep {
        restore(store, &trash, &dir).await?;
        return Ok(false);
    }
    purge(store, &trash).await?;
    if let Some(subject) = subject {
        match store
            .driver()
            .delete(&store::referrer_entry_path(repo, subject, d))
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(store::internal(
                    &format!("removing referrer {d} of {subject}"),
                    e,
                ))
            }
        }
    }
    Ok(true)
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
    if !dry_run {
        recover_trash(store).await?;
    }
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
        for d in &revisions {
            let link = store::revision_link_path(&repo, d);
            let young = match store.driver().stat(&link).await {
                Ok(info) => started.duration_since(info.modified).unwrap_or_default() < grace,
                Err(e) if e.is_not_found() => false,
                Err(e) => {
                    return Err(store::internal(
                        &format!("inspecting manifest {d} of {repo}"),
                        e,
                    ))
                }
            };
            if young {
                queue.push(d.clone());
            }
        }
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
                let subject = facts_of.get(d).and_then(|f| f.subject.as_ref());
                if !dry_run && !sweep_manifest(store, &repo, d, subject, started).await? {
                    continue;
                }
                report.manifests.push((name.clone(), d.clone()));
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
                if !dry_run && !sweep_blob(store, &d, started).await? {
                    // Claimed by a writer while we looked: in use after all.
                    report.kept_blobs += 1;
                    continue;
                }
                report.blobs.push((d.clone(), info.size));
                swept.insert(d.clone());
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
                    sweep_link(store, &repo, &d, started).await?;
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
