//! The Job controller (upstream's pkg/controller/job): runs pods until
//! `completions` succeed (or, without completions, until one succeeds and
//! the rest finish), at most `parallelism` at once; Indexed mode gives each
//! pod a completion index; failures count against backoffLimit with an
//! exponential back-off between retries; activeDeadlineSeconds and
//! podFailurePolicy end a Job early; ttlSecondsAfterFinished deletes a
//! finished one. Pods carry the `batch.kubernetes.io/job-tracking`
//! finalizer until the Job has counted them (through
//! status.uncountedTerminatedPods first, so nothing is counted twice).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::expectations::Expectations;
use crate::informer::{key_of, split_key, Ev};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder};
use crate::Shared;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Upstream's back-off: 10 s doubling per failure, at most 6 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

struct Jc {
    sh: Arc<Shared>,
    queue: Arc<Queue>,
    exp: Expectations,
    rec: Recorder,
    /// When each Job last counted a failure (for the back-off).
    last_failure: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Pods whose finalizer this controller removed (already counted) while
    /// the cache may still show it.
    released: Mutex<HashSet<String>>,
}

pub fn start(sh: Arc<Shared>) {
    let c = Arc::new(Jc {
        queue: Queue::new(),
        exp: Expectations::default(),
        rec: Recorder::new(sh.client.clone(), "job-controller"),
        last_failure: Mutex::new(HashMap::new()),
        released: Mutex::new(HashSet::new()),
        sh,
    });
    let sh = c.sh.clone();
    let q = c.queue.clone();
    sh.jobs.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    let c2 = c.clone();
    sh.pods.on_event(move |ev| c2.pod_event(ev));
    let c3 = c.clone();
    tokio::spawn(async move {
        c3.sh.pods.wait_synced().await;
        c3.sh.jobs.wait_synced().await;
        for j in c3.sh.jobs.list(None) {
            c3.queue.add(key_of(&*j));
        }
        // Pods whose Job is gone still carry the finalizer.
        for p in c3.sh.pods.list(None) {
            if has_finalizer(&p) {
                c3.queue.add(format!("pod:{}", key_of(&*p)));
            }
        }
        let c4 = c3.clone();
        c3.queue.run("job", 2, move |k| {
            let c = c4.clone();
            async move {
                match k.strip_prefix("pod:") {
                    Some(pk) => c.release_orphan(pk).await,
                    None => c.sync(&k).await,
                }
            }
        });
    });
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn finished_phase(p: &Pod) -> bool {
    matches!(util::pod_phase(p), "Succeeded" | "Failed")
}

fn index_of(p: &Pod) -> Option<i32> {
    p.annotations()
        .get(COMPLETION_INDEX)
        .and_then(|v| v.parse().ok())
}

/// "1,3-5" → {1,3,4,5} (status.completedIndexes).
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.insert(a);
                }
            }
        }
    }
    out
}

pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b = it.next().unwrap_or(b);
        }
        parts.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    parts.join(",")
}

fn condition_true(job: &Job, t: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

/// The first podFailurePolicy rule a failed pod matches.
fn matching_rule<'a>(
    rules: &'a [PodFailurePolicyRule],
    p: &Pod,
) -> Option<(usize, &'a PodFailurePolicyRule)> {
    let st = p.status.as_ref()?;
    rules.iter().enumerate().find(|(_, r)| {
        if let Some(req) = &r.on_exit_codes {
            let codes = st
                .container_statuses
                .iter()
                .flatten()
                .chain(st.init_container_statuses.iter().flatten())
                .filter(|c| req.container_name.as_ref().is_none_or(|n| n == &c.name))
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
                .filter(|c| *c != 0);
            let mut codes = codes.peekable();
            if codes.peek().is_none() {
                return false;
            }
            return match req.operator.as_str() {
                "In" => codes.any(|c| req.values.contains(&c)),
                "NotIn" => codes.any(|c| !req.values.contains(&c)),
                _ => false,
            };
        }
        r.on_pod_conditions.iter().flatten().any(|pc| {
            st.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == pc.type_ && c.status == pc.status)
        })
    })
}

impl Jc {
    fn owner(&self, p: &Pod) -> Option<Arc<Job>> {
        let ns = p.namespace();
        util::resolve_controller(&p.metadata, |n| self.sh.jobs.get_in(ns.as_deref(), n))
    }

    fn pod_event(&self, ev: Ev<Pod>) {
        match &ev {
            Ev::Apply { new: p, .. } if !has_finalizer(p) => self.forget_released(p),
            Ev::Delete(p) => self.forget_released(p),
            _ => {}
        }
        match ev {
            Ev::Apply { new, old } => {
                let Some(job) = self.owner(&new) else {
                    if has_finalizer(&new) {
                        self.queue.add(format!("pod:{}", key_of(&*new)));
                    }
                    return;
                };
                let jk = key_of(&*job);
                match &old {
                    None if !util::is_deleting(&new.metadata) => self.exp.creation_observed(&jk),
                    Some(o)
                        if util::is_deleting(&new.metadata) && !util::is_deleting(&o.metadata) =>
                    {
                        self.exp.deletion_observed(&jk, &key_of(&*new))
                    }
                    None => self.exp.deletion_observed(&jk, &key_of(&*new)),
                    _ => {}
                }
                self.queue.add(jk);
            }
            Ev::Delete(p) => {
                if let Some(job) = self.owner(&p) {
                    let jk = key_of(&*job);
                    self.exp.deletion_observed(&jk, &key_of(&*p));
                    self.queue.add(jk);
                }
            }
            Ev::Resync => {
                for j in self.sh.jobs.list(None) {
                    self.queue.add(key_of(&*j));
                }
            }
        }
    }

    fn forget_released(&self, p: &Pod) {
        if let Some(uid) = &p.metadata.uid {
            self.released.lock().unwrap().remove(uid);
        }
    }

    /// Drop the tracking finalizer of a pod whose Job no longer exists.
    async fn release_orphan(&self, pk: &str) -> Outcome {
        let Some(p) = self.sh.pods.get(pk) else {
            return Ok(None);
        };
        if !has_finalizer(&p) {
            return Ok(None);
        }
        if let Some(r) = util::controller_of(&p.metadata).filter(|r| r.kind == "Job") {
            let api: Api<Job> =
                Api::namespaced(self.sh.client.clone(), &p.namespace().unwrap_or_default());
            if let Some(j) = api.get_opt(&r.name).await? {
                if j.metadata.uid.as_deref() == Some(r.uid.as_str()) {
                    self.queue.add(key_of(&j));
                    return Ok(None);
                }
            }
        }
        self.remove_finalizer(&p).await?;
        Ok(None)
    }

    async fn remove_finalizer(&self, p: &Pod) -> Result<()> {
        let rest: Vec<&String> = p
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let api: Api<Pod> =
            Api::namespaced(self.sh.client.clone(), &p.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": p.metadata.resource_version}});
        match api
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                if let Some(uid) = &p.metadata.uid {
                    self.released.lock().unwrap().insert(uid.clone());
                }
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "removing the job-tracking finalizer of pod {}",
                    p.name_any()
                )
            }),
        }
    }

    async fn sync(&self, k: &str) -> Outcome {
        if self.sh.jobs.get(k).is_none() {
            self.exp.forget(k);
            self.last_failure.lock().unwrap().remove(k);
            return Ok(None);
        }
        let (ns, name) = split_key(k);
        let ns = ns.unwrap_or_default().to_string();
        let api: Api<Job> = Api::namespaced(self.sh.client.clone(), &ns);
        // The counters and completed indexes must be the stored ones, not a
        // cached copy older than this controller's last status write.
        let Some(job) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let job = Arc::new(job);
        let spec = job.spec.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_else(|| LabelSelector {
            match_labels: Some([(CONTROLLER_UID.to_string(), uid.clone())].into()),
            match_expressions: None,
        });
        let pods = util::claim(
            &self.sh.client,
            &*job,
            &selector,
            self.sh.pods.list(Some(&ns)),
            |_| true,
        )
        .await?;
        let finished = condition_true(&job, "Complete") || condition_true(&job, "Failed");
        if finished {
            for p in pods.iter().filter(|p| has_finalizer(p)) {
                self.remove_finalizer(p).await?;
            }
            return self.ttl(&job, &api).await;
        }
        let now = Utc::now();
        let status = job.status.clone().unwrap_or_default();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut unc_succ: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
        let mut unc_fail: Vec<String> = uncounted.failed.take().unwrap_or_default();
        let mut succeeded = status.succeeded.unwrap_or(0);
        let mut failed = status.failed.unwrap_or(0);
        let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        let rules = spec
            .pod_failure_policy
            .as_ref()
            .map(|p| p.rules.clone())
            .unwrap_or_default();
        let mut fail_job: Option<String> = None;
        // 1. Finished pods still carrying the finalizer: record them as uncounted.
        let mut to_release = Vec::new();
        let mut new_failures = 0;
        for p in &pods {
            if !has_finalizer(p)
                || self
                    .released
                    .lock()
                    .unwrap()
                    .contains(p.metadata.uid.as_deref().unwrap_or(""))
            {
                continue;
            }
            let puid = p.metadata.uid.clone().unwrap_or_default();
            let phase = util::pod_phase(p);
            let terminal = finished_phase(p) || util::is_deleting(&p.metadata);
            if !terminal {
                continue;
            }
            to_release.push(p.clone());
            if unc_succ.contains(&puid) || unc_fail.contains(&puid) {
                continue;
            }
            if phase == "Succeeded" {
                unc_succ.push(puid);
                if let Some(i) = index_of(p) {
                    completed.insert(i);
                }
                continue;
            }
            match matching_rule(&rules, p) {
                Some((_, r)) if r.action == "Ignore" => {
                    // Not counted: the pod is replaced, the back-off limit untouched.
                    continue;
                }
                Some((i, r)) if r.action == "FailJob" => {
                    fail_job = Some(format!(
                        "Pod {ns}/{} has condition or exit code matching FailJob rule at index {i}",
                        p.name_any()
                    ));
                }
                _ => {}
            }
            unc_fail.push(puid);
            new_failures += 1;
        }
        if new_failures > 0 {
            self.last_failure.lock().unwrap().insert(k.to_string(), now);
        }
        let counts_known = unc_succ.len() + unc_fail.len()
            > status.uncounted_terminated_pods.as_ref().map_or(0, |u| {
                u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
            });
        if counts_known {
            util::patch_status(
                &api,
                name,
                json!({"uncountedTerminatedPods": {"succeeded": unc_succ, "failed": unc_fail}}),
            )
            .await?;
        }
        // 2. Drop their finalizers, 3. move them to the counters.
        for p in &to_release {
            self.remove_finalizer(p).await?;
        }
        succeeded += unc_succ.len() as i32;
        failed += unc_fail.len() as i32;
        let active: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| !finished_phase(p) && !util::is_deleting(&p.metadata))
            .collect();
        let ready = active.iter().filter(|p| util::pod_ready(p)).count();
        let start_time = status.start_time.clone().map(|t| t.0).unwrap_or(now);
        let mut conditions: Vec<Value> =
            serde_json::to_value(status.conditions.clone().unwrap_or_default())?
                .as_array()
                .cloned()
                .unwrap_or_default();
        let completions = spec.completions;
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let mut failure: Option<(&str, String)> = fail_job.map(|m| ("PodFailurePolicy", m));
        if failure.is_none() && failed > backoff_limit {
            failure = Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        }
        if failure.is_none() {
            if let Some(ads) = spec.active_deadline_seconds {
                if spec.suspend != Some(true) && now >= start_time + chrono::Duration::seconds(ads)
                {
                    failure = Some((
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline".into(),
                    ));
                }
            }
        }
        let complete = failure.is_none()
            && match (indexed, completions) {
                (true, Some(c)) => completed.iter().filter(|i| **i < c).count() as i32 >= c,
                (_, Some(c)) => succeeded >= c,
                (_, None) => succeeded > 0 && active.is_empty(),
            };
        let mut requeue = None;
        let mut completion_time = status.completion_time.clone();
        if let Some((reason, msg)) = &failure {
            for p in &active {
                util::delete_pod(&self.sh.client, &ns, &p.name_any()).await?;
            }
            set_cond(&mut conditions, "FailureTarget", reason, msg);
            set_cond(&mut conditions, "Failed", reason, msg);
            self.rec.warning(&*job, reason, msg.clone());
        } else if complete {
            for p in &active {
                util::delete_pod(&self.sh.client, &ns, &p.name_any()).await?;
            }
            set_cond(
                &mut conditions,
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            set_cond(
                &mut conditions,
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            completion_time = Some(util::now());
            self.rec.normal(&*job, "Completed", "Job completed".into());
        } else if spec.suspend == Some(true) {
            for p in &active {
                util::delete_pod(&self.sh.client, &ns, &p.name_any()).await?;
            }
            set_cond(
                &mut conditions,
                "Suspended",
                "JobSuspended",
                "Job suspended",
            );
        } else if self.exp.satisfied(k) {
            if conditions
                .iter()
                .any(|c| c["type"] == "Suspended" && c["status"] == "True")
            {
                for c in conditions.iter_mut().filter(|c| c["type"] == "Suspended") {
                    c["status"] = json!("False");
                    c["reason"] = json!("JobResumed");
                    c["message"] = json!("Job resumed");
                    c["lastTransitionTime"] = serde_json::to_value(util::now())?;
                }
            }
            // Back-off after failures.
            let wait = if failed > 0 {
                let d = BACKOFF_BASE
                    .saturating_mul(1u32 << (failed - 1).clamp(0, 10) as u32)
                    .min(BACKOFF_MAX);
                let last = self.last_failure.lock().unwrap().get(k).copied();
                last.and_then(|t| {
                    let ready_at = t + chrono::Duration::from_std(d).ok()?;
                    (ready_at > now)
                        .then(|| (ready_at - now).to_std().ok())
                        .flatten()
                })
            } else {
                None
            };
            if let Some(w) = wait {
                requeue = Some(w);
            } else {
                self.manage(
                    &job,
                    &ns,
                    &active,
                    &completed,
                    succeeded,
                    parallelism,
                    completions,
                    indexed,
                )
                .await?;
            }
            if let Some(ads) = spec.active_deadline_seconds {
                let left = (start_time + chrono::Duration::seconds(ads) - now)
                    .to_std()
                    .unwrap_or_default();
                requeue = Some(
                    requeue.map_or(left, |r: Duration| r.min(left)) + Duration::from_millis(200),
                );
            }
        }
        let mut st = json!({
            "active": active.len(),
            "ready": ready,
            "succeeded": succeeded,
            "failed": failed,
            "terminating": pods.iter().filter(|p| util::is_deleting(&p.metadata) && !finished_phase(p)).count(),
            "startTime": status.start_time.clone().unwrap_or_else(util::now),
            "uncountedTerminatedPods": {"succeeded": [], "failed": []},
            "conditions": if conditions.is_empty() { Value::Null } else { Value::Array(conditions) },
            "completionTime": completion_time,
        });
        if indexed {
            st["completedIndexes"] = json!(format_indexes(&completed));
        }
        if spec.suspend == Some(true) && status.start_time.is_none() {
            st["startTime"] = Value::Null;
        }
        let cur = serde_json::to_value(&job.status).unwrap_or(Value::Null);
        if counts_known || !crate::replicaset::same_status(&cur, &st) {
            util::patch_status(&api, name, st).await?;
        }
        Ok(requeue)
    }

    #[allow(clippy::too_many_arguments)]
    async fn manage(
        &self,
        job: &Arc<Job>,
        ns: &str,
        active: &[&Arc<Pod>],
        completed: &BTreeSet<i32>,
        succeeded: i32,
        parallelism: i32,
        completions: Option<i32>,
        indexed: bool,
    ) -> Result<()> {
        let k = key_of(&**job);
        let n_active = active.len() as i32;
        // Which indexes (Indexed) or how many pods (NonIndexed) to add.
        let mut new_indexes: Vec<Option<i32>> = Vec::new();
        let mut excess = 0;
        if indexed {
            let c = completions.unwrap_or(0);
            let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
            let pending: Vec<i32> = (0..c)
                .filter(|i| !completed.contains(i) && !running.contains(i))
                .collect();
            let room = (parallelism - n_active).max(0) as usize;
            new_indexes = pending.into_iter().take(room).map(Some).collect();
            excess = (n_active - parallelism).max(0);
        } else {
            let want = match completions {
                Some(c) => (c - succeeded).min(parallelism).max(0),
                None if succeeded > 0 => n_active.min(parallelism),
                None => parallelism,
            };
            if want > n_active {
                new_indexes = vec![None; (want - n_active) as usize];
            } else {
                excess = n_active - want;
            }
        }
        if excess > 0 {
            let victims = crate::replicaset::pods_to_delete(
                &active.iter().map(|p| (*p).clone()).collect::<Vec<_>>(),
                excess as usize,
            );
            self.exp
                .expect_deletions(&k, victims.iter().map(|p| key_of(&**p)));
            for p in victims {
                if !util::delete_pod(&self.sh.client, ns, &p.name_any()).await? {
                    self.exp.deletion_observed(&k, &key_of(&*p));
                }
            }
            return Ok(());
        }
        if new_indexes.is_empty() {
            return Ok(());
        }
        self.exp.expect_creations(&k, new_indexes.len() as i64);
        let spec = job.spec.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let jname = job.name_any();
        let mut err = None;
        for idx in new_indexes {
            let gen = match idx {
                Some(i) => format!("{jname}-{i}-"),
                None => format!("{jname}-"),
            };
            let mut pod = util::pod_from_template(
                &spec.template,
                util::controller_ref_to(&**job),
                ns,
                None,
                Some(gen),
            );
            let labels = pod.metadata.labels.get_or_insert_with(Default::default);
            for (k, v) in [
                (CONTROLLER_UID, uid.as_str()),
                (JOB_NAME, jname.as_str()),
                ("controller-uid", uid.as_str()),
                ("job-name", jname.as_str()),
            ] {
                labels.insert(k.into(), v.into());
            }
            pod.metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(TRACKING_FINALIZER.into());
            if let Some(i) = idx {
                labels.insert(COMPLETION_INDEX.into(), i.to_string());
                pod.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(COMPLETION_INDEX.into(), i.to_string());
                let ps = pod.spec.get_or_insert_with(Default::default);
                if ps.hostname.is_none() {
                    ps.hostname = Some(format!("{jname}-{i}"));
                }
                for c in ps
                    .containers
                    .iter_mut()
                    .chain(ps.init_containers.iter_mut().flatten())
                {
                    let env = c.env.get_or_insert_with(Vec::new);
                    if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                        env.push(EnvVar {
                            name: "JOB_COMPLETION_INDEX".into(),
                            value: None,
                            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                                    api_version: None,
                                    field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                                }),
                                ..Default::default()
                            }),
                        });
                    }
                }
            }
            match util::create_pod(&self.sh.client, ns, &pod).await {
                Ok(p) => self.rec.normal(
                    &**job,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                ),
                Err(e) => {
                    self.exp.creation_observed(&k);
                    self.rec
                        .warning(&**job, "FailedCreate", format!("Error creating: {e:#}"));
                    err = Some(e);
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// ttlSecondsAfterFinished: delete the Job (and, in the foreground, its pods).
    async fn ttl(&self, job: &Job, api: &Api<Job>) -> Outcome {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(None);
        };
        if util::is_deleting(&job.metadata) {
            return Ok(None);
        }
        let st = job.status.clone().unwrap_or_default();
        let finished_at = st.completion_time.map(|t| t.0).or_else(|| {
            st.conditions
                .iter()
                .flatten()
                .find(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")
                .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        });
        let Some(at) = finished_at else {
            return Ok(None);
        };
        let expire = at + chrono::Duration::seconds(ttl.into());
        let now = Utc::now();
        if now < expire {
            return Ok(Some(
                (expire - now).to_std().unwrap_or_default() + Duration::from_millis(100),
            ));
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("deleting finished Job {} after its TTL", job.name_any())),
        }
    }
}

fn set_cond(conds: &mut Vec<Value>, t: &str, reason: &str, msg: &str) {
    let now = serde_json::to_value(util::now()).unwrap_or(Value::Null);
    if let Some(c) = conds.iter_mut().find(|c| c["type"] == t) {
        if c["status"] != "True" {
            c["lastTransitionTime"] = now.clone();
        }
        c["status"] = json!("True");
        c["reason"] = json!(reason);
        c["message"] = json!(msg);
        c["lastProbeTime"] = now;
        return;
    }
    conds.push(json!({
        "type": t, "status": "True", "reason": reason, "message": msg,
        "lastProbeTime": now, "lastTransitionTime": now,
    }));
}

/// For tests of the index helpers.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip() {
        let s = parse_indexes("0,2-4,7");
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&s), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }
}
