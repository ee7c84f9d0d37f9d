//! The CronJob controller (upstream's pkg/controller/cronjob, v2): creates a
//! Job named `NAME-<minutes since the epoch>` at each time of the schedule
//! (standard five-field cron or @hourly-style macros, in spec.timeZone,
//! UTC by default), honouring suspend, startingDeadlineSeconds and
//! concurrencyPolicy (Allow, Forbid, Replace), keeps
//! successful/failedJobsHistoryLimit finished Jobs, and reports active,
//! lastScheduleTime and lastSuccessfulTime.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::informer::{key, key_of, split_key, Ev};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder};
use crate::Shared;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Beyond this many missed start times, upstream gives up counting them.
const TOO_MANY_MISSED: usize = 100;

struct Cjc {
    sh: Arc<Shared>,
    queue: Arc<Queue>,
    rec: Recorder,
}

pub fn start(sh: Arc<Shared>) {
    // Start the clock with the controller.
    clock();
    let c = Arc::new(Cjc {
        queue: Queue::new(),
        rec: Recorder::new(sh.client.clone(), "cronjob-controller"),
        sh,
    });
    let sh = c.sh.clone();
    let q = c.queue.clone();
    sh.cronjobs.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    let q = c.queue.clone();
    sh.jobs.on_event(move |ev| {
        let j = match ev {
            Ev::Apply { new, .. } => new,
            Ev::Delete(j) => j,
            Ev::Resync => return,
        };
        if let Some(r) = util::controller_of(&j.metadata).filter(|r| r.kind == "CronJob") {
            q.add(key(j.namespace().as_deref(), &r.name));
        }
    });
    let c2 = c.clone();
    tokio::spawn(async move {
        c2.sh.jobs.wait_synced().await;
        c2.sh.cronjobs.wait_synced().await;
        for cj in c2.sh.cronjobs.list(None) {
            c2.queue.add(key_of(&*cj));
        }
        let c3 = c2.clone();
        c2.queue.run("cronjob", 1, move |k| {
            let c = c3.clone();
            async move { c.sync(&k).await }
        });
    });
}

/// The CronJob controller's clock. Tests may make a minute last fewer real
/// seconds (`HAKO_KUBE_TEST_MINUTE_SECONDS`, read once at start); the time
/// then runs faster from the moment the controller started.
pub struct Clock {
    start: DateTime<Utc>,
    factor: f64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        if self.factor == 1.0 {
            return Utc::now();
        }
        let real = (Utc::now() - self.start).num_milliseconds() as f64;
        self.start + chrono::Duration::milliseconds((real * self.factor) as i64)
    }

    /// How long a span of this clock lasts in real time.
    pub fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.factor)
    }
}

fn clock() -> &'static Clock {
    static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(|| {
        let secs = std::env::var("HAKO_KUBE_TEST_MINUTE_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0 && *s <= 60.0);
        Clock {
            start: Utc::now(),
            factor: secs.map_or(1.0, |s| 60.0 / s),
        }
    })
}

/// Parse a schedule as upstream's cron.ParseStandard does (five fields or a
/// macro such as @hourly).
pub fn parse_schedule(s: &str) -> Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(s.trim())
        .map_err(|e| anyhow::anyhow!("unparseable schedule {s:?}: {e}"))
}

fn finished(j: &Job) -> Option<&str> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The newest schedule time in (earliest, now], how many there were, and the next one.
pub fn schedule_times(
    cron: &Cron,
    tz: Tz,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, usize, Option<DateTime<Utc>>) {
    let mut t = earliest.with_timezone(&tz);
    let mut last = None;
    let mut missed = 0;
    loop {
        let Ok(next) = cron.find_next_occurrence(&t, false) else {
            return (last, missed, None);
        };
        let nu = next.with_timezone(&Utc);
        if nu > now {
            return (last, missed, Some(nu));
        }
        last = Some(nu);
        missed += 1;
        if missed > TOO_MANY_MISSED {
            // Jump close to now: only the newest time matters from here.
            t = (now - chrono::Duration::minutes(1)).with_timezone(&tz);
            continue;
        }
        t = next;
    }
}

impl Cjc {
    async fn sync(&self, k: &str) -> Outcome {
        let Some(cj) = self.sh.cronjobs.get(k) else {
            return Ok(None);
        };
        let (ns, name) = split_key(k);
        let ns = ns.unwrap_or_default().to_string();
        let spec = cj.spec.clone().unwrap_or_default();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .sh
            .jobs
            .list(Some(&ns))
            .into_iter()
            .filter(|j| util::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let jobs_api: Api<Job> = Api::namespaced(self.sh.client.clone(), &ns);
        let status = cj.status.clone().unwrap_or_default();
        let mut last_success = status.last_successful_time.clone();
        for j in &jobs {
            if finished(j) == Some("Complete") {
                let t = j.status.as_ref().and_then(|s| s.completion_time.clone());
                if t.as_ref().map(|t| t.0) > last_success.as_ref().map(|t| t.0) {
                    self.rec.normal(
                        &*cj,
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: Complete", j.name_any()),
                    );
                    last_success = t;
                }
            }
        }
        let mut active: Vec<Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j).is_none() && !util::is_deleting(&j.metadata))
            .cloned()
            .collect();
        self.cleanup(&cj, &jobs, &jobs_api).await?;
        let mut last_schedule = status.last_schedule_time.clone();
        let mut requeue = None;
        if !util::is_deleting(&cj.metadata) && spec.suspend != Some(true) {
            let tz: Tz = match spec.time_zone.as_deref() {
                None | Some("") => Tz::UTC,
                Some(z) => match z.parse() {
                    Ok(tz) => tz,
                    Err(_) => {
                        self.rec.warning(
                            &*cj,
                            "UnknownTimeZone",
                            format!("invalid timeZone: {z:?}"),
                        );
                        return Ok(None);
                    }
                },
            };
            let cron = match parse_schedule(&spec.schedule) {
                Ok(c) => c,
                Err(e) => {
                    self.rec
                        .warning(&*cj, "UnparseableSchedule", format!("{e:#}"));
                    return Ok(None);
                }
            };
            let now = clock().now();
            let mut earliest = last_schedule
                .as_ref()
                .map(|t| t.0)
                .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .unwrap_or(now);
            if let Some(sds) = spec.starting_deadline_seconds {
                earliest = earliest.max(now - chrono::Duration::seconds(sds));
            }
            let (scheduled, missed, next) = schedule_times(&cron, tz, earliest, now);
            requeue = next.map(|n| {
                clock().real((n - now).to_std().unwrap_or_default()) + Duration::from_millis(100)
            });
            if missed > TOO_MANY_MISSED {
                self.rec.warning(
                    &*cj,
                    "TooManyMissedTimes",
                    format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
                );
            }
            if let Some(t) = scheduled {
                let late = spec
                    .starting_deadline_seconds
                    .is_some_and(|s| t + chrono::Duration::seconds(s) < now);
                let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                let job_name = format!("{name}-{}", t.timestamp() / 60);
                let exists = jobs.iter().any(|j| j.name_any() == job_name);
                if late {
                    self.rec.warning(
                        &*cj,
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {}", t.to_rfc3339()),
                    );
                } else if exists {
                    last_schedule = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t));
                } else if policy == "Forbid" && !active.is_empty() {
                    self.rec.normal(
                        &*cj,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                    );
                } else {
                    if policy == "Replace" {
                        for j in active.drain(..) {
                            self.delete_job(&cj, &jobs_api, &j).await?;
                        }
                    }
                    let job = self.job_for(&cj, &ns, &job_name, t, tz);
                    match jobs_api.create(&PostParams::default(), &job).await {
                        Ok(j) => {
                            self.rec.normal(
                                &*cj,
                                "SuccessfulCreate",
                                format!("Created job {job_name}"),
                            );
                            active.push(Arc::new(j));
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => {
                            self.rec.warning(
                                &*cj,
                                "FailedCreate",
                                format!("Error creating job: {e}"),
                            );
                            return Err(e).with_context(|| format!("creating Job {job_name}"));
                        }
                    }
                    last_schedule = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t));
                }
            }
        }
        let refs: Vec<ObjectReference> = active
            .iter()
            .map(|j| ObjectReference {
                api_version: Some("batch/v1".into()),
                kind: Some("Job".into()),
                name: Some(j.name_any()),
                namespace: Some(ns.clone()),
                uid: j.metadata.uid.clone(),
                resource_version: j.metadata.resource_version.clone(),
                ..Default::default()
            })
            .collect();
        let st = json!({
            "active": if refs.is_empty() { Value::Null } else { serde_json::to_value(&refs)? },
            "lastScheduleTime": last_schedule,
            "lastSuccessfulTime": last_success,
        });
        let cur = serde_json::to_value(&cj.status).unwrap_or(Value::Null);
        let same = cur.get("lastScheduleTime")
            == st.get("lastScheduleTime").filter(|v| !v.is_null())
            && cur.get("lastSuccessfulTime")
                == st.get("lastSuccessfulTime").filter(|v| !v.is_null())
            && names(cur.get("active")) == names(st.get("active"));
        if !same {
            let api: Api<CronJob> = Api::namespaced(self.sh.client.clone(), &ns);
            util::patch_status(&api, name, st).await?;
        }
        Ok(requeue)
    }

    fn job_for(&self, cj: &CronJob, ns: &str, name: &str, t: DateTime<Utc>, tz: Tz) -> Job {
        let tmpl = cj
            .spec
            .as_ref()
            .map(|s| s.job_template.clone())
            .unwrap_or_default();
        let tm = tmpl.metadata.unwrap_or_default();
        let mut annotations = tm.annotations.unwrap_or_default();
        annotations.insert(
            SCHEDULED_TIMESTAMP.into(),
            t.with_timezone(&tz).to_rfc3339(),
        );
        Job {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                labels: tm.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![util::controller_ref_to(cj)]),
                ..Default::default()
            },
            spec: tmpl.spec,
            status: None,
        }
    }

    async fn delete_job(&self, cj: &CronJob, api: &Api<Job>, j: &Job) -> Result<()> {
        match api.delete(&j.name_any(), &DeleteParams::background()).await {
            Ok(_) => {
                self.rec.normal(
                    cj,
                    "SuccessfulDelete",
                    format!("Deleted job {}", j.name_any()),
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting Job {}", j.name_any())),
        }
    }

    /// Keep the newest successful/failed Jobs up to the history limits.
    async fn cleanup(&self, cj: &CronJob, jobs: &[Arc<Job>], api: &Api<Job>) -> Result<()> {
        let spec = cj.spec.clone().unwrap_or_default();
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
            ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let mut done: Vec<&Arc<Job>> = jobs
                .iter()
                .filter(|j| finished(j) == Some(kind) && !util::is_deleting(&j.metadata))
                .collect();
            let limit = limit.max(0) as usize;
            if done.len() <= limit {
                continue;
            }
            done.sort_by_key(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.clone())
                    .or_else(|| j.metadata.creation_timestamp.clone())
            });
            let n = done.len() - limit;
            for j in done.into_iter().take(n) {
                self.delete_job(cj, api, j).await?;
            }
        }
        Ok(())
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_times_in_a_time_zone() {
        let cron = parse_schedule("30 9 * * *").unwrap();
        let tz: Tz = "Europe/Paris".parse().unwrap();
        let earliest = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let now = "2026-01-03T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let (last, missed, next) = schedule_times(&cron, tz, earliest, now);
        // 09:30 in Paris is 08:30 UTC in winter.
        assert_eq!(last.unwrap().to_rfc3339(), "2026-01-03T08:30:00+00:00");
        assert_eq!(missed, 3);
        assert_eq!(next.unwrap().to_rfc3339(), "2026-01-04T08:30:00+00:00");
        assert!(parse_schedule("@hourly").is_ok());
        assert!(parse_schedule("* * *").is_err());
        assert!(parse_schedule("0 * * * * *").is_err());
    }
}
