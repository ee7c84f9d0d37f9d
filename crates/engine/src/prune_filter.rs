//! docker's `--filter` of the prune commands: `until=TIME` (created before
//! it: RFC 3339, unix seconds or a duration ago such as 24h) and
//! `label=KEY[=VALUE]` / `label!=KEY[=VALUE]`; filters of different kinds
//! must all pass.

use std::collections::BTreeMap;

use crate::clock;
use crate::error::{Context, Error, Result};

/// What a prune keeps out of its sweep. The default passes everything.
#[derive(Debug, Clone, Default)]
pub struct PruneFilter {
    /// Unix nanoseconds: only objects created before.
    until: Option<i128>,
    /// (key, value, wanted): `label=` wants it, `label!=` does not.
    labels: Vec<(String, Option<String>, bool)>,
}

impl PruneFilter {
    /// Parse `KEY=VALUE` filters (`until`, `label`, `label!`).
    pub fn parse(filters: &[String]) -> Result<PruneFilter> {
        let mut f = PruneFilter::default();
        let now = clock::unix_nanos_now();
        for raw in filters {
            let bad = |why: &str| Error::Invalid(format!("invalid filter {raw:?}: {why}"));
            let (k, v) = raw
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            match k {
                "until" => {
                    f.until = Some(clock::parse_time_arg(v, now).ok_or_else(|| {
                        bad("expected an RFC 3339 time, unix seconds or a duration such as 24h")
                    })?)
                }
                "label" | "label!" => {
                    let (key, value) = match v.split_once('=') {
                        Some((a, b)) => (a.to_string(), Some(b.to_string())),
                        None => (v.to_string(), None),
                    };
                    if key.is_empty() {
                        return Err(bad("the label has no key"));
                    }
                    f.labels.push((key, value, k == "label"));
                }
                _ => return Err(bad("prune filters are until, label and label!")),
            }
        }
        Ok(f)
    }

    /// Whether an object created at `created` (RFC 3339) with `labels` is swept.
    pub fn matches(&self, created: &str, labels: &BTreeMap<String, String>) -> bool {
        let old_enough = match (self.until, clock::unix_nanos(created)) {
            (Some(until), Some(t)) => t < until,
            // No time recorded: only an until-less prune takes it.
            (Some(_), None) => false,
            (None, _) => true,
        };
        old_enough
            && self.labels.iter().all(|(k, v, want)| {
                let has = match (labels.get(k), v) {
                    (Some(have), Some(v)) => have == v,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                has == *want
            })
    }
}

/// The ids of the images `filter` lets a prune take: created (the config's
/// `created`) before `until`, with or without the labels (the config's
/// `Labels`), as docker's image prune.
pub fn image_picks(
    store: &hako_image::ImageStore,
    filter: &PruneFilter,
) -> Result<std::collections::HashSet<hako_image::Digest>> {
    let mut out = std::collections::HashSet::new();
    for rec in store.list().ctx(|| "listing images".into())? {
        let (created, labels) = match store.load_image(&rec) {
            Ok(img) => {
                let cfg = &img.config_json;
                let created = cfg["created"].as_str().unwrap_or_default().to_string();
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(cfg["config"]["Labels"].clone()).unwrap_or_default();
                (created, labels)
            }
            Err(_) => (String::new(), BTreeMap::new()),
        };
        if filter.matches(&created, &labels) {
            out.insert(rec.id);
        }
    }
    Ok(out)
}

/// Prune images (dangling ones, or with `all` every image no container
/// uses) that `filter` lets go: the removed ids and the bytes reclaimed.
pub fn prune_images(
    store: &mut hako_image::ImageStore,
    all: bool,
    filter: &PruneFilter,
) -> Result<(Vec<hako_image::Digest>, u64)> {
    let sizes: BTreeMap<String, u64> = store
        .list()
        .ctx(|| "listing images".into())?
        .into_iter()
        .map(|r| (r.id.to_string(), r.size))
        .collect();
    let picks = image_picks(store, filter)?;
    let removed = store
        .prune_where(all, |r| picks.contains(&r.id))
        .ctx(|| "pruning images".into())?;
    let total = removed
        .iter()
        .filter_map(|id| sizes.get(&id.to_string()))
        .sum();
    Ok((removed, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_and_labels() {
        let labels = BTreeMap::from([("env".to_string(), "test".to_string())]);
        let old = "2020-01-01T00:00:00Z";
        let f = |v: &[&str]| {
            PruneFilter::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert!(f(&[]).matches(old, &labels));
        assert!(f(&["until=24h"]).matches(old, &labels));
        assert!(!f(&["until=2019-01-01T00:00:00Z"]).matches(old, &labels));
        assert!(f(&["label=env"]).matches(old, &labels));
        assert!(f(&["label=env=test", "until=1h"]).matches(old, &labels));
        assert!(!f(&["label=env=prod"]).matches(old, &labels));
        assert!(!f(&["label!=env"]).matches(old, &labels));
        assert!(f(&["label!=env=prod"]).matches(old, &labels));
        for bad in ["until=soon", "dangling=true", "label=", "nokey"] {
            let e = PruneFilter::parse(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad) && !e.contains('\n'), "{e}");
        }
    }
}
