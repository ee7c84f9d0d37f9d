//! docker's `--filter` of the prune commands: `until=TIME` (created before
//! it: RFC 3339, unix seconds or a duration ago such as 24h) and
//! `label=KEY[=VALUE]` / `label!=KEY[=VALUE]`; filters of different kinds
//! must all pass.

use std::collections::BTreeMap;

use crate::clock;
use crate::error::{Error, Result};

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
