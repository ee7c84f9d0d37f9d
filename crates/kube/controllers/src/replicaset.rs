//! The ReplicaSet controller (upstream's pkg/controller/replicaset): keeps
//! `spec.replicas` active pods from the template, deletes the least valuable
//! pods first, and reports replicas / fullyLabeled / ready / available.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::expectations::Expectations;
use crate::informer::{key, key_of, split_key, Ev};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder};
use crate::Shared;

/// Pods created per burst at most (upstream's BurstReplicas).
const BURST: i32 = 500;

struct Rsc {
    sh: Arc<Shared>,
    queue: Arc<Queue>,
    exp: Expectations,
    rec: Recorder,
}

pub fn start(sh: Arc<Shared>) {
    let c = Arc::new(Rsc {
        queue: Queue::new(),
        exp: Expectations::default(),
        rec: Recorder::new(sh.client.clone(), "replicaset-controller"),
        sh,
    });
    let q = c.queue.clone();
    let sh = c.sh.clone();
    sh.replicasets.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    let c2 = c.clone();
    sh.pods.on_event(move |ev| c2.pod_event(ev));
    let c3 = c.clone();
    tokio::spawn(async move {
        c3.sh.pods.wait_synced().await;
        c3.sh.replicasets.wait_synced().await;
        for rs in c3.sh.replicasets.list(None) {
            c3.queue.add(key_of(&*rs));
        }
        let c4 = c3.clone();
        c3.queue.run("replicaset", 2, move |k| {
            let c = c4.clone();
            async move { c.sync(&k).await }
        });
    });
}

impl Rsc {
    /// The ReplicaSet controlling a pod, from the cache.
    fn owner(&self, pod: &Pod) -> Option<Arc<ReplicaSet>> {
        let ns = pod.namespace();
        util::resolve_controller(&pod.metadata, |n| {
            self.sh.replicasets.get_in(ns.as_deref(), n)
        })
    }

    /// Orphans wake every ReplicaSet that could adopt them.
    fn enqueue_matching(&self, pod: &Pod) {
        let labels = util::labels_of(&pod.metadata);
        for rs in self.sh.replicasets.list(pod.namespace().as_deref()) {
            if let Some(sel) = rs.spec.as_ref().map(|s| &s.selector) {
                if util::selects(sel, &labels) {
                    self.queue.add(key_of(&*rs));
                }
            }
        }
    }

    fn pod_event(&self, ev: Ev<Pod>) {
        match ev {
            Ev::Apply { new, old } => {
                let pk = key_of(&*new);
                if let Some(old) = &old {
                    if old.resource_version() == new.resource_version() {
                        return;
                    }
                    // The controller changed: the old one has lost a pod.
                    let (o, n) = (
                        util::controller_of(&old.metadata),
                        util::controller_of(&new.metadata),
                    );
                    if o.map(|r| &r.uid) != n.map(|r| &r.uid) {
                        if let Some(rs) = self.owner(old) {
                            self.queue.add(key_of(&*rs));
                        }
                    }
                }
                let Some(rs) = self.owner(&new) else {
                    if util::controller_of(&new.metadata).is_none() {
                        self.enqueue_matching(&new);
                    }
                    return;
                };
                let rk = key_of(&*rs);
                match &old {
                    None if util::is_deleting(&new.metadata) => {
                        self.exp.deletion_observed(&rk, &pk)
                    }
                    None => self.exp.creation_observed(&rk),
                    Some(old)
                        if util::is_deleting(&new.metadata)
                            && !util::is_deleting(&old.metadata) =>
                    {
                        self.exp.deletion_observed(&rk, &pk)
                    }
                    _ => {}
                }
                self.queue.add(rk);
            }
            Ev::Delete(pod) => {
                if let Some(rs) = self.owner(&pod) {
                    let rk = key_of(&*rs);
                    self.exp.deletion_observed(&rk, &key_of(&*pod));
                    self.queue.add(rk);
                }
            }
            Ev::Resync => {
                for rs in self.sh.replicasets.list(None) {
                    self.queue.add(key_of(&*rs));
                }
            }
        }
    }

    async fn sync(&self, k: &str) -> Outcome {
        let Some(rs) = self.sh.replicasets.get(k) else {
            self.exp.forget(k);
            return Ok(None);
        };
        let (ns, name) = split_key(k);
        let ns = ns.unwrap_or_default();
        let spec = rs.spec.clone().unwrap_or_default();
        let need_sync = self.exp.satisfied(k) && !util::is_deleting(&rs.metadata);
        let candidates: Vec<Arc<Pod>> = self
            .sh
            .pods
            .list(Some(ns))
            .into_iter()
            .filter(|p| util::pod_active(p))
            .collect();
        let pods = util::claim(&self.sh.client, &*rs, &spec.selector, candidates, |_| true).await?;
        let mut failure = None;
        if need_sync {
            if let Err(e) = self.manage(&rs, ns, &pods).await {
                failure = Some(e);
            }
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.sh.client.clone(), ns);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let status = calculate_status(&rs, &pods, failure.as_ref());
        let cur = serde_json::to_value(&rs.status).unwrap_or(Value::Null);
        if !same_status(&cur, &status) {
            util::patch_status(&api, name, status.clone()).await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Pods that are ready but not yet available become so after minReadySeconds.
        let ready = status["readyReplicas"].as_i64().unwrap_or(0);
        let avail = status["availableReplicas"].as_i64().unwrap_or(0);
        if min_ready > 0 && ready != avail {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    /// Create or delete pods so that `pods` (the active ones it controls)
    /// becomes `spec.replicas`.
    async fn manage(&self, rs: &Arc<ReplicaSet>, ns: &str, pods: &[Arc<Pod>]) -> Result<()> {
        let k = key_of(&**rs);
        let spec = rs.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1);
        let diff = pods.len() as i32 - want;
        let template = spec.template.clone().unwrap_or_default();
        if diff < 0 {
            let n = (-diff).min(BURST);
            self.exp.expect_creations(&k, i64::from(n));
            let owner = util::controller_ref_to(&**rs);
            let gen = format!("{}-", rs.name_any());
            // Slow start: 1, 2, 4... so a template that cannot be created fails fast.
            let mut remaining = n;
            let mut batch = 1;
            while remaining > 0 {
                let take = batch.min(remaining);
                let pod =
                    util::pod_from_template(&template, owner.clone(), ns, None, Some(gen.clone()));
                let results = futures::future::join_all(
                    (0..take).map(|_| util::create_pod(&self.sh.client, ns, &pod)),
                )
                .await;
                let mut err = None;
                for r in results {
                    match r {
                        Ok(p) => self.rec.normal(
                            &**rs,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        ),
                        Err(e) => {
                            self.exp.creation_observed(&k);
                            self.rec.warning(
                                &**rs,
                                "FailedCreate",
                                format!("Error creating: {e:#}"),
                            );
                            err = Some(e);
                        }
                    }
                }
                remaining -= take;
                if let Some(e) = err {
                    // The pods never attempted will never be seen.
                    for _ in 0..remaining {
                        self.exp.creation_observed(&k);
                    }
                    return Err(e);
                }
                batch *= 2;
            }
        } else if diff > 0 {
            let victims = pods_to_delete(pods, diff.min(BURST) as usize);
            self.exp
                .expect_deletions(&k, victims.iter().map(|p| key_of(&**p)));
            for p in victims {
                let pname = p.name_any();
                match util::delete_pod(&self.sh.client, ns, &pname).await {
                    Ok(true) => {
                        self.rec
                            .normal(&**rs, "SuccessfulDelete", format!("Deleted pod: {pname}"))
                    }
                    Ok(false) => self.exp.deletion_observed(&k, &key(Some(ns), &pname)),
                    Err(e) => {
                        self.exp.deletion_observed(&k, &key(Some(ns), &pname));
                        self.rec
                            .warning(&**rs, "FailedDelete", format!("Error deleting: {e:#}"));
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `n` pods to delete first, as upstream ranks them: unscheduled before
/// scheduled, Pending before Unknown before Running, not ready before ready,
/// more pods of the set on the same node first, lower
/// `controller.kubernetes.io/pod-deletion-cost` first, ready for less time
/// first, more restarts first, younger first.
pub fn pods_to_delete(pods: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let node_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    let phase_rank = |p: &Pod| match util::pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let cost = |p: &Pod| -> i64 {
        p.annotations()
            .get("controller.kubernetes.io/pod-deletion-cost")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let mut sorted: Vec<Arc<Pod>> = pods.to_vec();
    sorted.sort_by(|a, b| {
        let (na, nb) = (node_of(a), node_of(b));
        na.is_some()
            .cmp(&nb.is_some())
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(util::pod_ready(a).cmp(&util::pod_ready(b)))
            .then_with(|| {
                let ra = na.map(|n| per_node[&n]).unwrap_or(0);
                let rb = nb.map(|n| per_node[&n]).unwrap_or(0);
                rb.cmp(&ra)
            })
            .then(cost(a).cmp(&cost(b)))
            .then_with(
                || match (util::pod_ready_since(a), util::pod_ready_since(b)) {
                    (Some(x), Some(y)) => y.cmp(&x),
                    _ => Ordering::Equal,
                },
            )
            .then(restarts(b).cmp(&restarts(a)))
            .then_with(|| {
                let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                tb.cmp(&ta)
            })
    });
    sorted.truncate(n);
    sorted
}

fn calculate_status(rs: &ReplicaSet, pods: &[Arc<Pod>], failure: Option<&anyhow::Error>) -> Value {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .map(util::labels_of)
        .unwrap_or_default();
    let now = Utc::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let fully = pods
        .iter()
        .filter(|p| {
            let l = util::labels_of(&p.metadata);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let ready = pods.iter().filter(|p| util::pod_ready(p)).count();
    let avail = pods
        .iter()
        .filter(|p| util::pod_available(p, min_ready, now))
        .count();
    let mut conditions: Vec<Value> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect();
    if let Some(e) = failure {
        let old = rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure"));
        conditions.push(json!({
            "type": "ReplicaFailure", "status": "True",
            "reason": if pods.len() as i32 > spec.replicas.unwrap_or(1) { "FailedDelete" } else { "FailedCreate" },
            "message": format!("{e:#}"),
            "lastTransitionTime": old.and_then(|c| c.last_transition_time.clone()).unwrap_or_else(util::now),
        }));
    }
    let mut s = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": fully,
        "readyReplicas": ready,
        "availableReplicas": avail,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
    });
    s["conditions"] = if conditions.is_empty() {
        Value::Null
    } else {
        Value::Array(conditions)
    };
    s
}

/// Compare a computed status with the stored one (zero counts are omitted
/// in the stored form).
pub fn same_status(cur: &Value, new: &Value) -> bool {
    let Some(n) = new.as_object() else {
        return false;
    };
    n.iter().all(|(k, v)| {
        let c = cur.get(k).unwrap_or(&Value::Null);
        c == v || (v == &json!(0) && c.is_null()) || (v.is_null() && c == &json!([]))
    })
}
