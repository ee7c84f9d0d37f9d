//! docker's views of images, shared by the CLI (`images`, `image inspect`,
//! `history`) and the Docker Engine API service: the list filters, the
//! inspect object and the history entries. Kept here so both show the same.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::images::ImageStore;
use crate::metadata::ImageRecord;
use crate::reference::Reference;

/// One `images --filter` (docker's `/images/json?filters=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// A name pattern (`busybox`, `busybox:1`, `busy*`).
    Reference(String),
    /// Images without a name (true) or with one (false).
    Dangling(bool),
    /// A config label, with or without a value.
    Label(String, Option<String>),
    /// Created before the named image.
    Before(String),
    /// Created after the named image.
    Since(String),
}

impl ListFilter {
    /// Parse `KEY=VALUE` (reference, dangling, label, before, since).
    pub fn parse(f: &str) -> Result<ListFilter> {
        let bad = |why: String| Error::Invalid(format!("invalid filter {f:?}: {why}"));
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE".into()))?;
        ListFilter::from_pair(k, v).map_err(|e| bad(e.to_string()))
    }

    /// From a key and a value (the API sends them as a JSON map of lists).
    pub fn from_pair(k: &str, v: &str) -> Result<ListFilter> {
        Ok(match k {
            "reference" => ListFilter::Reference(v.to_string()),
            "dangling" => ListFilter::Dangling(match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(Error::Invalid("dangling takes true or false".into())),
            }),
            "label" => match v.split_once('=') {
                Some((k, v)) => ListFilter::Label(k.to_string(), Some(v.to_string())),
                None => ListFilter::Label(v.to_string(), None),
            },
            "before" => ListFilter::Before(v.to_string()),
            "since" => ListFilter::Since(v.to_string()),
            other => {
                return Err(Error::Invalid(format!(
                    "unknown key {:?} (reference, dangling, label, before, since)",
                    other.chars().take(40).collect::<String>()
                )))
            }
        })
    }
}

/// Shell-style match with `*` and `?` (reference filters use them, e.g. `busy*`).
fn glob(pattern: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], s) || (!s.is_empty() && rec(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), s.as_bytes())
}

/// Does `name` match a reference filter? Like docker: the pattern matches the
/// familiar or full name, with or without tag; a plain name matches every tag.
pub fn reference_matches(pattern: &str, name: &Reference) -> bool {
    let familiar = name.familiar();
    let full = name.to_string();
    if pattern.contains('*') || pattern.contains('?') {
        let candidates = [
            familiar.clone(),
            name.familiar_repository(),
            full,
            name.repository(),
        ];
        return candidates.iter().any(|c| glob(pattern, c));
    }
    match Reference::parse_partial(pattern) {
        Ok(p) => {
            p.repository() == name.repository() && p.tag().is_none_or(|t| Some(t) == name.tag())
        }
        Err(_) => false,
    }
}

/// The labels of an image's config (empty when it has none or cannot be read).
pub fn labels(store: &ImageStore, rec: &ImageRecord) -> BTreeMap<String, String> {
    store
        .load_image(rec)
        .ok()
        .and_then(|i| i.config.config().as_ref().and_then(|c| c.labels().clone()))
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

/// The images passing every filter (newest first), each with its names that
/// pass the reference filters (all its names when there are none). A named
/// image none of whose names passes is left out; so is an unnamed one when
/// there is a reference filter.
pub fn select(
    store: &ImageStore,
    filters: &[ListFilter],
) -> Result<Vec<(ImageRecord, Vec<Reference>)>> {
    // before/since compare creation times with the named image's.
    let mut bounds = Vec::new();
    for f in filters {
        match f {
            ListFilter::Before(w) => bounds.push((true, store.find(w)?)),
            ListFilter::Since(w) => bounds.push((false, store.find(w)?)),
            _ => {}
        }
    }
    let ref_filters: Vec<&String> = filters
        .iter()
        .filter_map(|f| match f {
            ListFilter::Reference(p) => Some(p),
            _ => None,
        })
        .collect();
    let wants_labels = filters.iter().any(|f| matches!(f, ListFilter::Label(..)));
    let mut out = Vec::new();
    for rec in store.list()? {
        let lbls = if wants_labels {
            labels(store, &rec)
        } else {
            BTreeMap::new()
        };
        let keep = filters.iter().all(|f| match f {
            ListFilter::Dangling(d) => rec.names.is_empty() == *d,
            ListFilter::Label(k, v) => lbls
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
            _ => true,
        }) && bounds.iter().all(|(before, b)| {
            rec.id != b.id
                && if *before {
                    rec.created < b.created
                } else {
                    rec.created > b.created
                }
        });
        if !keep {
            continue;
        }
        if rec.names.is_empty() {
            if ref_filters.is_empty() {
                out.push((rec, Vec::new()));
            }
            continue;
        }
        let names: Vec<Reference> = rec
            .names
            .iter()
            .filter(|n| ref_filters.iter().all(|p| reference_matches(p, n)))
            .cloned()
            .collect();
        if !names.is_empty() {
            out.push((rec, names));
        }
    }
    Ok(out)
}

/// `repo@digest` of each name's repository (docker's `RepoDigests`).
pub fn repo_digests(r: &ImageRecord) -> Vec<String> {
    let mut out: Vec<String> = r
        .names
        .iter()
        .map(|n| format!("{}@{}", n.familiar_repository(), r.manifest_digest))
        .collect();
    out.dedup();
    out
}

/// docker's `image inspect` object of an image by name or id.
pub fn inspect(store: &ImageStore, what: &str) -> Result<Value> {
    let rec = store.find(what)?;
    let image = store.load_image(&rec)?;
    let c = &image.config_json;
    Ok(json!({
        "Id": rec.id.to_string(),
        "RepoTags": rec.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
        "RepoDigests": repo_digests(&rec),
        "Names": rec.names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "Digest": rec.manifest_digest.to_string(),
        "ManifestMediaType": rec.manifest_media_type,
        "Created": c.get("created").cloned().unwrap_or(Value::Null),
        "Author": c.get("author").cloned().unwrap_or(Value::String(String::new())),
        "Comment": c.get("comment").cloned().unwrap_or(Value::String(String::new())),
        "Architecture": c.get("architecture").cloned().unwrap_or(Value::Null),
        "Variant": c.get("variant").cloned().unwrap_or(Value::Null),
        "Os": c.get("os").cloned().unwrap_or(Value::Null),
        "Config": c.get("config").cloned().unwrap_or(json!({})),
        "Size": rec.size,
        "RootFS": {
            "Type": "layers",
            "Layers": image.diff_ids()?.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "History": c.get("history").cloned().unwrap_or(json!([])),
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                // Top layer first, as overlayfs' lowerdir lists them.
                "LowerDir": image.chain_ids()?.iter().rev()
                    .map(|c| store.snapshots().fs_path(c).display().to_string())
                    .collect::<Vec<_>>().join(":"),
            },
        },
        "Labels": labels(store, &rec),
    }))
}

/// One entry of an image's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// RFC 3339, as the config has it ("" when absent).
    pub created: String,
    pub created_by: String,
    /// Bytes the step's layer holds (0 for steps without a layer).
    pub size: u64,
    pub comment: String,
}

/// An image's history, newest first (docker's order; the first entry is the
/// image itself).
pub fn history(store: &ImageStore, rec: &ImageRecord) -> Result<Vec<HistoryEntry>> {
    let image = store.load_image(rec)?;
    let chain = image.chain_ids()?;
    let mut sizes = chain
        .iter()
        .map(|c| store.snapshots().info(c).map(|i| i.size).unwrap_or(0));
    let mut rows: Vec<HistoryEntry> = image
        .config
        .history()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|h| HistoryEntry {
            size: if h.empty_layer().unwrap_or(false) {
                0
            } else {
                sizes.next().unwrap_or(0)
            },
            created: h.created().clone().unwrap_or_default(),
            created_by: h.created_by().clone().unwrap_or_default(),
            comment: h.comment().clone().unwrap_or_default(),
        })
        .collect();
    rows.reverse();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters_match_like_docker() {
        let n = Reference::parse("busybox:1.36").unwrap();
        assert!(reference_matches("busybox", &n));
        assert!(reference_matches("busybox:1.36", &n));
        assert!(!reference_matches("busybox:latest", &n));
        assert!(reference_matches("busy*", &n));
        assert!(reference_matches("docker.io/library/busybox:*", &n));
        assert!(!reference_matches("alpine", &n));
    }

    #[test]
    fn filters_parse() {
        assert_eq!(
            ListFilter::parse("label=a=b").unwrap(),
            ListFilter::Label("a".into(), Some("b".into()))
        );
        assert_eq!(
            ListFilter::parse("dangling=true").unwrap(),
            ListFilter::Dangling(true)
        );
        assert!(ListFilter::parse("dangling=maybe").is_err());
        assert!(ListFilter::parse("color=red").is_err());
        assert!(ListFilter::parse("nokey").is_err());
    }
}
