//! Health checks: the monitor runs them (`runtime exec` at the interval) and
//! writes docker's `State.Health` object to `<container dir>/health.json`
//! after every check; the engine prepares the process the check runs and
//! reads the state back for inspect and ps.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::fsutil::write_replace;
use crate::record::{Container, HealthConfig};

/// docker's `Health`: "starting", "healthy" or "unhealthy".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthResult>,
}

/// One check (docker's `HealthcheckResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// What the monitor is told about the check, defaults applied.
pub(crate) struct HealthPlan {
    pub process: PathBuf,
    pub file: PathBuf,
    pub interval_ns: i64,
    pub start_interval_ns: i64,
    pub timeout_ns: i64,
    pub start_period_ns: i64,
    pub retries: i64,
}

impl Engine {
    pub(crate) fn health_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("health.json")
    }

    /// The health state of a container with a health check, as last written.
    pub fn health(&self, c: &Container) -> Option<Health> {
        c.config.healthcheck.as_ref()?.argv()?;
        let b = std::fs::read(self.health_path(&c.id)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Write the check's process (the container's own process settings with
    /// the check's arguments) next to the bundle; None without a check.
    pub(crate) fn plan_health(&self, c: &Container) -> Result<Option<HealthPlan>> {
        let Some(h) = c.config.healthcheck.as_ref() else {
            return Ok(None);
        };
        let Some(argv) = h.argv() else {
            return Ok(None);
        };
        let dir = self.container_dir(&c.id);
        let config_path = dir.join("config.json");
        let spec: Spec = serde_json::from_slice(
            &std::fs::read(&config_path).ctx(|| format!("reading {}", config_path.display()))?,
        )
        .ctx(|| format!("parsing {}", config_path.display()))?;
        let mut process = spec.process().clone().ok_or_else(|| {
            Error::Invalid(format!(
                "container {}: {} has no process",
                c.name,
                config_path.display()
            ))
        })?;
        process.set_args(Some(argv));
        process.set_terminal(Some(false));
        let path = dir.join("health-process.json");
        write_replace(
            &path,
            &serde_json::to_vec(&process).expect("process serialises"),
        )?;
        let or = |v: i64, d: i64| if v > 0 { v } else { d };
        Ok(Some(HealthPlan {
            process: path,
            file: self.health_path(&c.id),
            interval_ns: or(h.interval, HealthConfig::DEFAULT_INTERVAL_NS),
            start_interval_ns: or(h.start_interval, HealthConfig::DEFAULT_START_INTERVAL_NS),
            timeout_ns: or(h.timeout, HealthConfig::DEFAULT_TIMEOUT_NS),
            start_period_ns: h.start_period.max(0),
            retries: or(h.retries, HealthConfig::DEFAULT_RETRIES),
        }))
    }
}
