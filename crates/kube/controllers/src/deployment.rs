//! The Deployment controller (upstream's pkg/controller/deployment): one
//! ReplicaSet per pod template (named and labelled with the template's
//! hash), rolled by scaling ReplicaSets up and down (RollingUpdate with
//! maxSurge/maxUnavailable, or Recreate), revisions in annotations for
//! `kubectl rollout`, progress conditions with progressDeadlineSeconds, old
//! ReplicaSets kept up to revisionHistoryLimit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::informer::{key_of, split_key, Ev};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder, POD_TEMPLATE_HASH};
use crate::Shared;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

struct Dc {
    sh: Arc<Shared>,
    queue: Arc<Queue>,
    rec: Recorder,
}

pub fn start(sh: Arc<Shared>) {
    let c = Arc::new(Dc {
        queue: Queue::new(),
        rec: Recorder::new(sh.client.clone(), "deployment-controller"),
        sh,
    });
    let q = c.queue.clone();
    let sh = c.sh.clone();
    sh.deployments.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    let c2 = c.clone();
    sh.replicasets.on_event(move |ev| match ev {
        Ev::Apply { new, old } => {
            if let Some(old) = old {
                if util::controller_of(&old.metadata).map(|r| &r.uid)
                    != util::controller_of(&new.metadata).map(|r| &r.uid)
                {
                    c2.enqueue_for(&old);
                }
            }
            c2.enqueue_for(&new);
        }
        Ev::Delete(rs) => c2.enqueue_for(&rs),
        Ev::Resync => c2.enqueue_all(),
    });
    // Recreate waits for the old pods to be gone.
    let c3 = c.clone();
    sh.pods.on_event(move |ev| {
        if let Ev::Delete(p) = ev {
            let ns = p.namespace();
            if let Some(rs) = util::resolve_controller::<ReplicaSet>(&p.metadata, |n| {
                c3.sh.replicasets.get_in(ns.as_deref(), n)
            }) {
                c3.enqueue_for(&rs);
            }
        }
    });
    let c4 = c.clone();
    tokio::spawn(async move {
        c4.sh.pods.wait_synced().await;
        c4.sh.replicasets.wait_synced().await;
        c4.sh.deployments.wait_synced().await;
        c4.enqueue_all();
        let c5 = c4.clone();
        c4.queue.run("deployment", 2, move |k| {
            let c = c5.clone();
            async move { c.sync(&k).await }
        });
    });
}

/// A ReplicaSet's revision (0 without one).
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// The deployment's maxSurge and maxUnavailable resolved against its replicas
/// (ResolveFenceposts: both zero means one may be unavailable).
fn fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("Recreate") {
        return (0, 0);
    }
    let ru = strategy.rolling_update.unwrap_or_default();
    let surge = util::scaled(ru.max_surge.as_ref(), replicas, true, "25%");
    let mut unavailable = util::scaled(ru.max_unavailable.as_ref(), replicas, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn condition<'a>(d: &'a Deployment, t: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

impl Dc {
    fn enqueue_all(&self) {
        for d in self.sh.deployments.list(None) {
            self.queue.add(key_of(&*d));
        }
    }

    /// The Deployment controlling a ReplicaSet, or for an orphan every
    /// Deployment that could adopt it.
    fn enqueue_for(&self, rs: &ReplicaSet) {
        let ns = rs.namespace();
        if let Some(r) = util::controller_of(&rs.metadata) {
            if r.kind == "Deployment" {
                self.queue.add(crate::informer::key(ns.as_deref(), &r.name));
            }
            return;
        }
        let labels = util::labels_of(&rs.metadata);
        for d in self.sh.deployments.list(ns.as_deref()) {
            if let Some(sel) = d.spec.as_ref().map(|s| &s.selector) {
                if util::selects(sel, &labels) {
                    self.queue.add(key_of(&*d));
                }
            }
        }
    }

    async fn sync(&self, k: &str) -> Outcome {
        let Some(d) = self.sh.deployments.get(k) else {
            return Ok(None);
        };
        let (ns, _) = split_key(k);
        let ns = ns.unwrap_or_default().to_string();
        let mut d = (*d).clone();
        let spec = d.spec.clone().unwrap_or_default();
        if spec.selector.match_labels.is_none() && spec.selector.match_expressions.is_none() {
            self.rec.warning(
                &d,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        let candidates = self.sh.replicasets.list(Some(&ns));
        let rss = util::claim(&self.sh.client, &d, &spec.selector, candidates, |_| true).await?;
        let mut rss: Vec<ReplicaSet> = rss.into_iter().map(|r| (*r).clone()).collect();
        if util::is_deleting(&d.metadata) {
            self.sync_status(&d, &rss, false).await?;
            return Ok(None);
        }
        if spec.paused == Some(true) || self.is_scaling_event(&d, &rss) {
            return self.sync_scale(&mut d, &mut rss).await;
        }
        if is_recreate(&d) {
            self.rollout_recreate(&mut d, &mut rss).await
        } else {
            self.rollout_rolling(&mut d, &mut rss).await
        }
    }

    fn is_scaling_event(&self, d: &Deployment, rss: &[ReplicaSet]) -> bool {
        let want = replicas_of(d).to_string();
        rss.iter().filter(|r| spec_replicas(r) > 0).any(|r| {
            r.annotations()
                .get(DESIRED_REPLICAS)
                .is_some_and(|v| v != &want)
        })
    }

    /// Split `rss` into the ReplicaSet of the current template (if any) and
    /// the others; with `create`, make the new one. Brings revisions up to
    /// date (the new ReplicaSet gets the highest).
    async fn new_and_old(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Option<usize>> {
        let spec = d.spec.clone().unwrap_or_default();
        let want = util::normalized_template(&spec.template);
        let mut new_idx: Option<usize> = None;
        for (i, r) in rss.iter().enumerate() {
            let t = r
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            if util::normalized_template(&t) == want {
                let older = new_idx.is_some_and(|j| {
                    rss[j].metadata.creation_timestamp > r.metadata.creation_timestamp
                });
                if new_idx.is_none() || older {
                    new_idx = Some(i);
                }
            }
        }
        let max_old = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, r)| revision(&r.metadata))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let ns = d.namespace().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.sh.client.clone(), &ns);
        let (surge, _) = fenceposts(d);
        let replicas = replicas_of(d);
        if let Some(i) = new_idx {
            // Bring the existing new ReplicaSet's annotations up to date.
            let r = &rss[i];
            let mut ann = r.annotations().clone();
            let old_rev = revision(&r.metadata);
            let mut changed = copy_annotations(d, &mut ann);
            if old_rev < new_revision {
                if old_rev > 0 {
                    let mut hist: Vec<String> = ann
                        .get(REVISION_HISTORY)
                        .map(|h| h.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    hist.push(old_rev.to_string());
                    ann.insert(REVISION_HISTORY.into(), hist.join(","));
                }
                ann.insert(REVISION.into(), new_revision.to_string());
                changed = true;
            }
            if ann.get(DESIRED_REPLICAS) != Some(&replicas.to_string()) {
                ann.insert(DESIRED_REPLICAS.into(), replicas.to_string());
                ann.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
                changed = true;
            }
            // minReadySeconds follows the Deployment's.
            let min_ready = r.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let min_ready_changed = min_ready.unwrap_or(0) != spec.min_ready_seconds.unwrap_or(0);
            if changed || min_ready_changed {
                let mut patch = json!({"metadata": {"annotations": ann}});
                if min_ready_changed {
                    patch["spec"] = json!({"minReadySeconds": spec.min_ready_seconds.unwrap_or(0)});
                }
                let updated = util::merge_patch(&api, &r.name_any(), patch).await?;
                rss[i] = updated;
            }
        } else if create {
            let collisions = d.status.as_ref().and_then(|s| s.collision_count);
            let hash = util::template_hash(&spec.template, collisions);
            let mut template = spec.template.clone();
            let tm = template.metadata.get_or_insert_with(Default::default);
            tm.labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let mut selector: LabelSelector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let mut ann = BTreeMap::new();
            copy_annotations(d, &mut ann);
            ann.insert(REVISION.into(), new_revision.to_string());
            ann.insert(DESIRED_REPLICAS.into(), replicas.to_string());
            ann.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
            let initial = if is_recreate(d) {
                0
            } else {
                self.new_rs_replicas(d, rss, 0)
            };
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", d.name_any())),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: Some(ann),
                    owner_references: Some(vec![util::controller_ref_to(d)]),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    replicas: Some(initial),
                    min_ready_seconds: spec.min_ready_seconds,
                    selector,
                    template: Some(template),
                }),
                status: None,
            };
            match api.create(&PostParams::default(), &rs).await {
                Ok(created) => {
                    self.rec.normal(
                        d,
                        "ScalingReplicaSet",
                        format!(
                            "Scaled up replica set {} from 0 to {initial}",
                            created.name_any()
                        ),
                    );
                    self.set_progressing(
                        d,
                        "True",
                        "NewReplicaSetCreated",
                        format!("Created new replica set \"{}\"", created.name_any()),
                    )
                    .await?;
                    rss.push(created);
                    new_idx = Some(rss.len() - 1);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // A ReplicaSet of that name exists: ours with this template
                    // (the cache lags) or a hash collision.
                    let existing = api.get(&rs.name_any()).await?;
                    let ours = util::controller_of(&existing.metadata)
                        .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                    let t = existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.clone())
                        .unwrap_or_default();
                    if ours && util::normalized_template(&t) == want {
                        rss.push(existing);
                        new_idx = Some(rss.len() - 1);
                    } else {
                        let dapi: Api<Deployment> = Api::namespaced(self.sh.client.clone(), &ns);
                        let c = collisions.unwrap_or(0) + 1;
                        util::patch_status(&dapi, &d.name_any(), json!({"collisionCount": c}))
                            .await?;
                        anyhow::bail!("hash collision for ReplicaSet {}", rs.name_any());
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating ReplicaSet {}", rs.name_any()))
                }
            }
        }
        // The Deployment carries the revision of its new ReplicaSet.
        if let Some(i) = new_idx {
            let rev = revision(&rss[i].metadata).to_string();
            if d.annotations().get(REVISION) != Some(&rev) {
                let dapi: Api<Deployment> = Api::namespaced(self.sh.client.clone(), &ns);
                *d = util::merge_patch(
                    &dapi,
                    &d.name_any(),
                    json!({"metadata": {"annotations": {REVISION: rev}}}),
                )
                .await?;
            }
        }
        Ok(new_idx)
    }

    /// How many replicas the new ReplicaSet may have now (NewRSNewReplicas).
    fn new_rs_replicas(&self, d: &Deployment, rss: &[ReplicaSet], new_current: i32) -> i32 {
        let replicas = replicas_of(d);
        let (surge, _) = fenceposts(d);
        let current: i32 = rss.iter().map(spec_replicas).sum();
        let max_total = replicas + surge;
        if current >= max_total {
            return new_current;
        }
        let up = (max_total - current).min(replicas - new_current).max(0);
        new_current + up
    }

    /// Set a ReplicaSet's replicas (and the desired/max annotations).
    async fn scale(&self, d: &Deployment, rs: &mut ReplicaSet, to: i32) -> Result<bool> {
        let from = spec_replicas(rs);
        let replicas = replicas_of(d);
        let (surge, _) = fenceposts(d);
        let want_ann = replicas.to_string();
        if from == to && rs.annotations().get(DESIRED_REPLICAS) == Some(&want_ann) {
            return Ok(false);
        }
        let api: Api<ReplicaSet> =
            Api::namespaced(self.sh.client.clone(), &rs.namespace().unwrap_or_default());
        *rs = util::merge_patch(
            &api,
            &rs.name_any(),
            // Guarded by the resourceVersion the decision was made on: a
            // stale cache makes this a conflict (and a retry), never a
            // second scaling from an outdated count.
            json!({
                "metadata": {"annotations": {
                    DESIRED_REPLICAS: want_ann,
                    MAX_REPLICAS: (replicas + surge).to_string(),
                }, "resourceVersion": rs.metadata.resource_version},
                "spec": {"replicas": to},
            }),
        )
        .await?;
        if from != to {
            let dir = if to > from { "up" } else { "down" };
            self.rec.normal(
                d,
                "ScalingReplicaSet",
                format!(
                    "Scaled {dir} replica set {} from {from} to {to}",
                    rs.name_any()
                ),
            );
        }
        Ok(from != to)
    }

    async fn rollout_rolling(&self, d: &mut Deployment, rss: &mut Vec<ReplicaSet>) -> Outcome {
        let new_idx = self
            .new_and_old(d, rss, true)
            .await?
            .context("no new ReplicaSet")?;
        let replicas = replicas_of(d);
        // Scale up the new ReplicaSet as far as maxSurge allows.
        let new_cur = spec_replicas(&rss[new_idx]);
        let target = if new_cur > replicas {
            replicas
        } else {
            self.new_rs_replicas(d, rss, new_cur)
        };
        if self.scale(d, &mut rss[new_idx], target).await? {
            return self.sync_status(d, rss, true).await;
        }
        // Scale down old ReplicaSets as far as maxUnavailable allows.
        if self.reconcile_old(d, rss, new_idx).await? {
            return self.sync_status(d, rss, true).await;
        }
        if complete(d, rss, Some(new_idx)) {
            self.cleanup(d, rss, Some(new_idx)).await?;
        }
        self.sync_status(d, rss, true).await
    }

    /// reconcileOldReplicaSets: first old pods that are not available, then
    /// available ones while at least replicas - maxUnavailable stay available.
    async fn reconcile_old(
        &self,
        d: &Deployment,
        rss: &mut [ReplicaSet],
        new_idx: usize,
    ) -> Result<bool> {
        let old_count: i32 = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != new_idx)
            .map(|(_, r)| spec_replicas(r))
            .sum();
        if old_count == 0 {
            return Ok(false);
        }
        let replicas = replicas_of(d);
        let (_, max_unavailable) = fenceposts(d);
        let min_available = replicas - max_unavailable;
        let all: i32 = rss.iter().map(spec_replicas).sum();
        let new_unavailable = spec_replicas(&rss[new_idx]) - status_of(&rss[new_idx]).2;
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let mut olds: Vec<usize> = (0..rss.len()).filter(|i| *i != new_idx).collect();
        olds.sort_by_key(|i| rss[*i].metadata.creation_timestamp.clone());
        // Unhealthy replicas first.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let cur = spec_replicas(&rss[i]);
            let unhealthy = cur - status_of(&rss[i]).2;
            if cur == 0 || unhealthy <= 0 {
                continue;
            }
            let n = (max_scaled_down - cleaned).min(unhealthy);
            self.scale(d, &mut rss[i], cur - n).await?;
            cleaned += n;
        }
        // Then available ones, keeping minAvailable.
        let available: i32 = rss.iter().map(|r| status_of(r).2).sum();
        let total = available - min_available;
        let mut scaled = 0;
        if total > 0 {
            for &i in &olds {
                if scaled >= total {
                    break;
                }
                let cur = spec_replicas(&rss[i]);
                if cur == 0 {
                    continue;
                }
                let n = cur.min(total - scaled);
                self.scale(d, &mut rss[i], cur - n).await?;
                scaled += n;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&self, d: &mut Deployment, rss: &mut Vec<ReplicaSet>) -> Outcome {
        let new_idx = self.new_and_old(d, rss, false).await?;
        let mut scaled = false;
        for (i, r) in rss.iter_mut().enumerate() {
            if Some(i) != new_idx && spec_replicas(r) > 0 {
                scaled |= self.scale(d, r, 0).await?;
            }
        }
        if scaled {
            return self.sync_status(d, rss, true).await;
        }
        // Wait until no pod of an old ReplicaSet runs.
        let old_uids: Vec<String> = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .filter_map(|(_, r)| r.metadata.uid.clone())
            .collect();
        let ns = d.namespace();
        let old_running = self.sh.pods.list(ns.as_deref()).iter().any(|p| {
            util::controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
                && !matches!(util::pod_phase(p), "Succeeded" | "Failed")
        });
        if old_running {
            return self.sync_status(d, rss, true).await;
        }
        let new_idx = match new_idx {
            Some(i) => i,
            None => self
                .new_and_old(d, rss, true)
                .await?
                .context("no new ReplicaSet")?,
        };
        let replicas = replicas_of(d);
        if self.scale(d, &mut rss[new_idx], replicas).await? {
            return self.sync_status(d, rss, true).await;
        }
        if complete(d, rss, Some(new_idx)) {
            self.cleanup(d, rss, Some(new_idx)).await?;
        }
        self.sync_status(d, rss, true).await
    }

    /// A scaling event (or a paused Deployment): scale without rolling,
    /// proportionally to the ReplicaSets' sizes when several are active.
    async fn sync_scale(&self, d: &mut Deployment, rss: &mut Vec<ReplicaSet>) -> Outcome {
        let new_idx = self.new_and_old(d, rss, false).await?;
        let replicas = replicas_of(d);
        let active: Vec<usize> = (0..rss.len())
            .filter(|i| spec_replicas(&rss[*i]) > 0)
            .collect();
        if active.len() <= 1 {
            // The one active ReplicaSet (or the newest) gets all replicas.
            let target = active.first().copied().or(new_idx).or_else(|| {
                (0..rss.len()).max_by_key(|i| rss[*i].metadata.creation_timestamp.clone())
            });
            if let Some(i) = target {
                self.scale(d, &mut rss[i], replicas).await?;
            }
        } else if let Some(n) = new_idx
            .filter(|n| spec_replicas(&rss[*n]) == replicas && status_of(&rss[*n]).2 == replicas)
        {
            for (i, r) in rss.iter_mut().enumerate() {
                if i != n {
                    self.scale(d, r, 0).await?;
                }
            }
        } else {
            let (surge, _) = fenceposts(d);
            let allowed = replicas + if is_recreate(d) { 0 } else { surge };
            let current: i32 = rss.iter().map(spec_replicas).sum();
            let to_add = allowed - current;
            if to_add != 0 {
                // Proportional share by current size; leftovers to the largest.
                let mut order = active.clone();
                order.sort_by_key(|i| std::cmp::Reverse(spec_replicas(&rss[*i])));
                let mut added = 0;
                let mut targets = Vec::new();
                for &i in &order {
                    let cur = spec_replicas(&rss[i]);
                    let share = if current > 0 {
                        (i64::from(cur) * i64::from(to_add) / i64::from(current)) as i32
                    } else {
                        0
                    };
                    let share = if to_add > 0 {
                        share.min(to_add - added)
                    } else {
                        share.max(to_add - added)
                    };
                    added += share;
                    targets.push((i, cur + share));
                }
                if let Some(first) = targets.first_mut() {
                    first.1 = (first.1 + to_add - added).max(0);
                }
                for (i, t) in targets {
                    self.scale(d, &mut rss[i], t.max(0)).await?;
                }
            }
        }
        if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(d, rss, new_idx).await?;
        }
        self.sync_status(d, rss, false).await
    }

    /// Delete old ReplicaSets beyond revisionHistoryLimit (oldest revisions
    /// first, only those scaled to zero).
    async fn cleanup(
        &self,
        d: &Deployment,
        rss: &[ReplicaSet],
        new_idx: Option<usize>,
    ) -> Result<()> {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut olds: Vec<&ReplicaSet> = rss
            .iter()
            .enumerate()
            .filter(|(i, r)| Some(*i) != new_idx && !util::is_deleting(&r.metadata))
            .map(|(_, r)| r)
            .collect();
        if olds.len() <= limit {
            return Ok(());
        }
        olds.sort_by_key(|r| revision(&r.metadata));
        let n = olds.len() - limit;
        let api: Api<ReplicaSet> =
            Api::namespaced(self.sh.client.clone(), &d.namespace().unwrap_or_default());
        for r in olds.into_iter().take(n) {
            let s = r.status.clone().unwrap_or_default();
            let settled = r.metadata.generation.unwrap_or(0) <= s.observed_generation.unwrap_or(0);
            if spec_replicas(r) != 0 || s.replicas != 0 || !settled {
                continue;
            }
            match api.delete(&r.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("deleting old ReplicaSet {}", r.name_any()))
                }
            }
        }
        Ok(())
    }

    async fn set_progressing(
        &self,
        d: &mut Deployment,
        status: &str,
        reason: &str,
        message: String,
    ) -> Result<()> {
        let mut st = serde_json::to_value(d.status.clone().unwrap_or_default())?;
        let conds = set_condition(
            st.get("conditions").cloned(),
            "Progressing",
            status,
            reason,
            &message,
        );
        st["conditions"] = conds;
        let api: Api<Deployment> =
            Api::namespaced(self.sh.client.clone(), &d.namespace().unwrap_or_default());
        *d = util::patch_status(&api, &d.name_any(), json!({"conditions": st["conditions"]}))
            .await?;
        Ok(())
    }

    /// Write the status (counts from the ReplicaSets, Available condition);
    /// with `progress`, the Progressing condition too. Requeues to notice a
    /// progress deadline passing.
    async fn sync_status(&self, d: &Deployment, rss: &[ReplicaSet], progress: bool) -> Outcome {
        let replicas = replicas_of(d);
        let spec = d.spec.clone().unwrap_or_default();
        let template = util::normalized_template(&spec.template);
        let new_rs = rss.iter().find(|r| {
            util::normalized_template(
                &r.spec
                    .as_ref()
                    .and_then(|s| s.template.clone())
                    .unwrap_or_default(),
            ) == template
        });
        let total: i32 = rss.iter().map(|r| status_of(r).0).sum();
        let ready: i32 = rss.iter().map(|r| status_of(r).1).sum();
        let available: i32 = rss.iter().map(|r| status_of(r).2).sum();
        let updated = new_rs.map(|r| status_of(r).0).unwrap_or(0);
        let old = d.status.clone().unwrap_or_default();
        let (_, max_unavailable) = fenceposts(d);
        let mut conds = serde_json::to_value(old.conditions.clone().unwrap_or_default())?;
        conds = if available >= replicas - max_unavailable {
            set_condition(
                Some(conds),
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            set_condition(
                Some(conds),
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        let mut requeue = None;
        let deadline = spec.progress_deadline_seconds;
        let rs_name = new_rs.map(|r| r.name_any()).unwrap_or_default();
        if spec.paused == Some(true) {
            conds = set_condition(
                Some(conds),
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
            );
        } else if progress && deadline.is_some() {
            let is_complete = updated == replicas
                && total == replicas
                && available == replicas
                && new_rs.is_some();
            let progressing = updated > old.updated_replicas.unwrap_or(0)
                || (total - updated)
                    < (old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0))
                || ready > old.ready_replicas.unwrap_or(0)
                || available > old.available_replicas.unwrap_or(0);
            let cur = condition(d, "Progressing");
            if is_complete {
                conds = set_condition(
                    Some(conds),
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                );
            } else if progressing
                || cur.is_none()
                || cur.and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused")
            {
                conds = set_condition(
                    Some(conds),
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs_name}\" is progressing."),
                );
                conds = touch_condition(conds, "Progressing");
                requeue = deadline.map(|s| Duration::from_secs(s.max(0) as u64 + 1));
            } else if let Some(c) = cur {
                let since = c
                    .last_update_time
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_else(Utc::now);
                let limit = since + chrono::Duration::seconds(deadline.unwrap_or(600).into());
                if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
                } else if Utc::now() >= limit {
                    conds = set_condition(
                        Some(conds),
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    );
                    self.rec.warning(
                        d,
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    );
                } else {
                    let left = (limit - Utc::now()).num_milliseconds().max(0) as u64;
                    requeue = Some(Duration::from_millis(left + 500));
                }
            }
        }
        let status = json!({
            "observedGeneration": d.metadata.generation.unwrap_or(0),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "conditions": conds,
        });
        let cur = serde_json::to_value(&d.status).unwrap_or(Value::Null);
        if !crate::replicaset::same_status(&cur, &status) {
            let api: Api<Deployment> =
                Api::namespaced(self.sh.client.clone(), &d.namespace().unwrap_or_default());
            util::patch_status(&api, &d.name_any(), status).await?;
        }
        Ok(requeue)
    }
}

/// Every replica updated and available, nothing old left.
fn complete(d: &Deployment, rss: &[ReplicaSet], new_idx: Option<usize>) -> bool {
    let replicas = replicas_of(d);
    let Some(n) = new_idx else { return false };
    let total: i32 = rss.iter().map(|r| status_of(r).0).sum();
    let (nr, _, na) = status_of(&rss[n]);
    nr == replicas && na == replicas && total == replicas
}

/// Annotations a ReplicaSet takes from its Deployment (change-cause and
/// the user's own), without the controller's bookkeeping.
fn copy_annotations(d: &Deployment, into: &mut BTreeMap<String, String>) -> bool {
    let mut changed = false;
    for (k, v) in d.annotations() {
        if [
            REVISION,
            DESIRED_REPLICAS,
            MAX_REPLICAS,
            REVISION_HISTORY,
            LAST_APPLIED,
        ]
        .contains(&k.as_str())
        {
            continue;
        }
        if into.get(k) != Some(v) {
            into.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// Set a condition in a conditions list (JSON), keeping lastTransitionTime
/// when the status does not change.
fn set_condition(conds: Option<Value>, t: &str, status: &str, reason: &str, msg: &str) -> Value {
    let mut list = conds
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default();
    let now = serde_json::to_value(util::now()).unwrap_or(Value::Null);
    let pos = list.iter().position(|c| c["type"] == t);
    if let Some(p) = pos {
        let c = &mut list[p];
        if c["status"] == status && c["reason"] == reason && c["message"] == msg {
            return Value::Array(list);
        }
        if c["status"] != status {
            c["lastTransitionTime"] = now.clone();
        }
        c["status"] = json!(status);
        c["reason"] = json!(reason);
        c["message"] = json!(msg);
        c["lastUpdateTime"] = now;
    } else {
        list.push(json!({
            "type": t, "status": status, "reason": reason, "message": msg,
            "lastUpdateTime": now, "lastTransitionTime": now,
        }));
    }
    Value::Array(list)
}

/// Progress made: the deadline counts from now.
fn touch_condition(mut conds: Value, t: &str) -> Value {
    let now = serde_json::to_value(util::now()).unwrap_or(Value::Null);
    for c in conds.as_array_mut().into_iter().flatten() {
        if c["type"] == t {
            c["lastUpdateTime"] = now.clone();
        }
    }
    conds
}
