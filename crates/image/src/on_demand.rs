//! Pull on demand: whether an image must be fetched before a container is
//! created from it (docker's `run --pull`, compose's `pull_policy`), and the
//! fetch itself. One path for every caller (the CLI's run/create, compose,
//! and the API services): the caller only supplies the registry options and
//! a [`Progress`] to show the download.

use std::time::Duration;

use hako_distribution::client::{Client, ClientOptions};

use crate::error::{Error, Result};
use crate::images::ImageStore;
use crate::progress::Progress;
use crate::pull::{PullOptions, Pulled};
use crate::reference::Reference;

/// When to pull (compose's `pull_policy`, docker's `--pull`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time.
    Always,
    /// Never pull: a missing image is the create's error.
    Never,
    /// Pull when the image is not in the store (`missing`, `if_not_present`).
    Missing,
    /// Build the image instead of pulling it (compose: the service's
    /// `build:` section); nothing to pull here.
    Build,
    /// Pull when missing or when it was stored longer ago than this
    /// (`daily`, `weekly`, `every_<duration>`).
    Every(Duration),
}

impl PullPolicy {
    /// Parse a policy: `always`, `never`, `missing`, `if_not_present`,
    /// `build`, `daily`, `weekly`, or `every_<N><unit>` with units s, m, h,
    /// d, w (e.g. `every_12h`, `every_2d`).
    pub fn parse(s: &str) -> Result<PullPolicy> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "invalid pull policy {:?}: {why}",
                s.chars().take(64).collect::<String>()
            ))
        };
        Ok(match s {
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "build" => PullPolicy::Build,
            "daily" => PullPolicy::Every(Duration::from_secs(24 * 3600)),
            "weekly" => PullPolicy::Every(Duration::from_secs(7 * 24 * 3600)),
            other => {
                let Some(spec) = other.strip_prefix("every_") else {
                    return Err(bad(
                        "use always, never, missing, if_not_present, build, daily, weekly or every_<N>[smhdw]",
                    ));
                };
                let digits = spec.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &spec[digits.len()..];
                let n: u64 =
                    digits.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        bad("every_ needs a whole number above 0, e.g. every_12h")
                    })?;
                let secs: u64 = match unit {
                    "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" | "" => 24 * 3600,
                    "w" => 7 * 24 * 3600,
                    _ => return Err(bad("the unit must be s, m, h, d or w")),
                };
                let total = n
                    .checked_mul(secs)
                    .filter(|t| *t <= 100 * 365 * 24 * 3600)
                    .ok_or_else(|| bad("the interval is longer than 100 years"))?;
                PullPolicy::Every(Duration::from_secs(total))
            }
        })
    }
}

/// Why an image is to be pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullReason {
    /// It is not in the store (docker says "Unable to find image locally").
    Missing,
    /// The policy says always.
    Always,
    /// It was stored longer ago than the policy's interval.
    Stale,
}

/// Whether `reference` must be pulled under `policy`, and why.
pub fn pull_needed(
    store: &ImageStore,
    reference: &str,
    policy: &PullPolicy,
) -> Result<Option<PullReason>> {
    let found = match store.find(reference) {
        Ok(r) => Some(r),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(match (policy, found) {
        (PullPolicy::Never | PullPolicy::Build, _) => None,
        (PullPolicy::Always, _) => Some(PullReason::Always),
        (_, None) => Some(PullReason::Missing),
        (PullPolicy::Missing, Some(_)) => None,
        (PullPolicy::Every(every), Some(rec)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let age = now.saturating_sub(rec.stored).max(0) as u64;
            (age >= every.as_secs()).then_some(PullReason::Stale)
        }
    })
}

/// Pull `reference` from its registry into `store`.
pub fn pull_reference(
    store: &mut ImageStore,
    reference: &str,
    registry: &ClientOptions,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(Reference, Pulled)> {
    let r = Reference::parse(reference)?;
    let what = |e: &dyn std::fmt::Display| Error::Invalid(format!("pulling {}: {e}", r.familiar()));
    let client = Client::new(r.domain(), registry.clone()).map_err(|e| what(&e))?;
    let pulled = crate::pull::pull(store, &client, &r, opts, progress).map_err(|e| what(&e))?;
    Ok((r, pulled))
}

/// Pull `reference` if `policy` says so: `None` when nothing was pulled.
pub fn ensure(
    store: &mut ImageStore,
    reference: &str,
    policy: &PullPolicy,
    registry: &ClientOptions,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Option<(PullReason, Reference, Pulled)>> {
    match pull_needed(store, reference, policy)? {
        None => Ok(None),
        Some(why) => {
            let (r, p) = pull_reference(store, reference, registry, opts, progress)?;
            Ok(Some((why, r, p)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(
            PullPolicy::parse("if_not_present").unwrap(),
            PullPolicy::Missing
        );
        assert_eq!(
            PullPolicy::parse("every_12h").unwrap(),
            PullPolicy::Every(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            PullPolicy::parse("every_2").unwrap(),
            PullPolicy::Every(Duration::from_secs(2 * 24 * 3600))
        );
        assert_eq!(
            PullPolicy::parse("weekly").unwrap(),
            PullPolicy::Every(Duration::from_secs(7 * 24 * 3600))
        );
        for bad in [
            "sometimes",
            "every_",
            "every_0h",
            "every_5y",
            "every_99999999999999999w",
        ] {
            assert!(PullPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
