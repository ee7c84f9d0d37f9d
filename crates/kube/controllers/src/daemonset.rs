//! The DaemonSet controller (upstream's pkg/controller/daemon): one pod per
//! node that the template's nodeSelector, required node affinity and
//! tolerations admit, pinned to its node with a `metadata.name` node
//! affinity (the scheduler binds it); rolling updates replace at most
//! maxUnavailable pods at a time; each template is a ControllerRevision.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::expectations::Expectations;
use crate::history::{self, REVISION_LABEL};
use crate::informer::{key, key_of, split_key, Ev};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder};
use crate::Shared;

pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

struct Dsc {
    sh: Arc<Shared>,
    queue: Arc<Queue>,
    exp: Expectations,
    rec: Recorder,
}

pub fn start(sh: Arc<Shared>) {
    let c = Arc::new(Dsc {
        queue: Queue::new(),
        exp: Expectations::default(),
        rec: Recorder::new(sh.client.clone(), "daemonset-controller"),
        sh,
    });
    let sh = c.sh.clone();
    let q = c.queue.clone();
    sh.daemonsets.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    let c2 = c.clone();
    sh.nodes.on_event(move |ev| {
        if let Ev::Apply {
            new,
            old: Some(old),
        } = &ev
        {
            if new.metadata.labels == old.metadata.labels && new.spec == old.spec {
                return;
            }
        }
        c2.enqueue_all();
    });
    let c3 = c.clone();
    sh.pods.on_event(move |ev| c3.pod_event(ev));
    let c4 = c.clone();
    tokio::spawn(async move {
        c4.sh.pods.wait_synced().await;
        c4.sh.nodes.wait_synced().await;
        c4.sh.daemonsets.wait_synced().await;
        c4.sh.revisions.wait_synced().await;
        c4.enqueue_all();
        let c5 = c4.clone();
        c4.queue.run("daemonset", 2, move |k| {
            let c = c5.clone();
            async move { c.sync(&k).await }
        });
    });
}

/// The node a daemon pod is for: its binding, else its node affinity.
pub fn node_of(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = &spec.node_name {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => !value.is_some_and(|v| values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(w)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|w| w.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > w
            } else {
                v < w
            }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = util::labels_of(&node.metadata);
    let name = node.name_any();
    let exprs = t.match_expressions.iter().flatten();
    let fields = t.match_fields.iter().flatten();
    let has_any = t.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        || t.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    has_any
        && exprs
            .clone()
            .all(|r| requirement_holds(r, labels.get(&r.key)))
        && fields.clone().all(|r| {
            let v = (r.key == "metadata.name").then(|| name.clone());
            requirement_holds(r, v.as_ref())
        })
}

fn tolerates(tols: &[Toleration], taint: &Taint) -> bool {
    tols.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        };
        let empty_key_needs_exists =
            t.key.as_deref().is_none_or(str::is_empty) && t.operator.as_deref() != Some("Exists");
        effect_ok && key_ok && value_ok && !empty_key_needs_exists
    })
}

/// The tolerations upstream adds to every daemon pod, so node conditions
/// do not evict or block it.
fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut extra = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        extra.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let mut tols = spec.tolerations.clone().unwrap_or_default();
    for (k, e) in extra {
        if !tols
            .iter()
            .any(|t| t.key.as_deref() == Some(k) && t.effect.as_deref() == Some(e))
        {
            tols.push(Toleration {
                key: Some(k.into()),
                operator: Some("Exists".into()),
                effect: Some(e.into()),
                ..Default::default()
            });
        }
    }
    tols
}

/// Should a daemon pod with `spec` run on `node`?
pub fn should_run(spec: &PodSpec, node: &Node) -> bool {
    let labels = util::labels_of(&node.metadata);
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    if let Some(req) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    {
        if !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
        {
            return false;
        }
    }
    let tols = daemon_tolerations(spec);
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerates(&tols, t))
}

impl Dsc {
    fn enqueue_all(&self) {
        for d in self.sh.daemonsets.list(None) {
            self.queue.add(key_of(&*d));
        }
    }

    fn owner(&self, p: &Pod) -> Option<Arc<DaemonSet>> {
        let ns = p.namespace();
        util::resolve_controller(&p.metadata, |n| self.sh.daemonsets.get_in(ns.as_deref(), n))
    }

    fn pod_event(&self, ev: Ev<Pod>) {
        match ev {
            Ev::Apply { new, old } => {
                if let Some(o) = old.as_ref().and_then(|o| self.owner(o)) {
                    self.queue.add(key_of(&*o));
                }
                let Some(ds) = self.owner(&new) else { return };
                let dk = key_of(&*ds);
                let pk = key_of(&*new);
                match &old {
                    None if util::is_deleting(&new.metadata) => {
                        self.exp.deletion_observed(&dk, &pk)
                    }
                    None => self.exp.creation_observed(&dk),
                    Some(o)
                        if util::is_deleting(&new.metadata) && !util::is_deleting(&o.metadata) =>
                    {
                        self.exp.deletion_observed(&dk, &pk)
                    }
                    _ => {}
                }
                self.queue.add(dk);
            }
            Ev::Delete(p) => {
                if let Some(ds) = self.owner(&p) {
                    let dk = key_of(&*ds);
                    self.exp.deletion_observed(&dk, &key_of(&*p));
                    self.queue.add(dk);
                }
            }
            Ev::Resync => self.enqueue_all(),
        }
    }

    async fn sync(&self, k: &str) -> Outcome {
        let Some(ds) = self.sh.daemonsets.get(k) else {
            self.exp.forget(k);
            return Ok(None);
        };
        let (ns, _) = split_key(k);
        let ns = ns.unwrap_or_default().to_string();
        let spec = ds.spec.clone().unwrap_or_default();
        let pods = util::claim(
            &self.sh.client,
            &*ds,
            &spec.selector,
            self.sh.pods.list(Some(&ns)),
            |_| true,
        )
        .await?;
        if util::is_deleting(&ds.metadata) {
            return Ok(None);
        }
        let revisions = history::owned_by(&*ds, self.sh.revisions.list(Some(&ns)));
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let (update, revisions) =
            history::sync(&self.sh.client, &*ds, &spec.template, collisions, revisions).await?;
        let hash = update
            .labels()
            .get(REVISION_LABEL)
            .cloned()
            .unwrap_or_default();
        let nodes = self.sh.nodes.list(None);
        let mut on_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        let mut nowhere = Vec::new();
        for p in &pods {
            if util::is_deleting(&p.metadata) {
                continue;
            }
            match node_of(p) {
                Some(n) if nodes.iter().any(|x| x.name_any() == n) => {
                    on_node.entry(n).or_default().push(p.clone())
                }
                _ => nowhere.push(p.clone()),
            }
        }
        let pod_spec = spec.template.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Utc::now();
        let mut create_on = Vec::new();
        let mut delete = nowhere;
        let mut desired = 0;
        for n in &nodes {
            let name = n.name_any();
            let here = on_node.get(&name).cloned().unwrap_or_default();
            if should_run(&pod_spec, n) {
                desired += 1;
                let (failed, mut live): (Vec<_>, Vec<_>) = here
                    .into_iter()
                    .partition(|p| util::pod_phase(p) == "Failed");
                if !failed.is_empty() {
                    self.rec.warning(
                        &*ds,
                        "FailedDaemonPod",
                        format!(
                            "Found failed daemon pod {ns}/{} on node {name}, will try to kill it",
                            failed[0].name_any()
                        ),
                    );
                }
                delete.extend(failed);
                if live.is_empty() {
                    create_on.push(name);
                } else if live.len() > 1 {
                    // Keep the oldest.
                    live.sort_by_key(|p| p.metadata.creation_timestamp.clone());
                    delete.extend(live.into_iter().skip(1));
                }
            } else {
                delete.extend(here);
            }
        }
        if self.exp.satisfied(k) {
            // Rolling update: old pods go, unavailable ones first, keeping at
            // most maxUnavailable nodes without an available daemon pod.
            if spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.type_.as_deref())
                != Some("OnDelete")
            {
                let max_unavailable = util::scaled(
                    spec.update_strategy
                        .as_ref()
                        .and_then(|s| s.rolling_update.as_ref())
                        .and_then(|r| r.max_unavailable.as_ref()),
                    desired,
                    true,
                    "1",
                )
                .max(1);
                let mut unavailable = create_on.len() as i32;
                let mut old_available = Vec::new();
                for n in &nodes {
                    let Some(here) = on_node.get(&n.name_any()) else {
                        continue;
                    };
                    if !should_run(&pod_spec, n) {
                        continue;
                    }
                    let Some(p) = here.iter().find(|p| util::pod_phase(p) != "Failed") else {
                        continue;
                    };
                    let is_old = p.labels().get(REVISION_LABEL) != Some(&hash);
                    let avail = util::pod_available(p, min_ready, now);
                    if !avail {
                        unavailable += 1;
                        if is_old {
                            delete.push(p.clone());
                        }
                    } else if is_old {
                        old_available.push(p.clone());
                    }
                }
                for p in old_available {
                    if unavailable >= max_unavailable {
                        break;
                    }
                    delete.push(p);
                    unavailable += 1;
                }
            }
            self.manage(&ds, &ns, &create_on, &delete, &hash).await?;
        }
        self.write_status(&ds, &nodes, &on_node, &hash, desired)
            .await?;
        history::truncate(
            &self.sh.client,
            &ns,
            &revisions,
            &[update.name_any()],
            spec.revision_history_limit.unwrap_or(10).max(0) as usize,
        )
        .await?;
        let waiting = on_node
            .values()
            .flatten()
            .any(|p| util::pod_ready(p) && !util::pod_available(p, min_ready, now));
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(min_ready as u64)))
    }

    async fn manage(
        &self,
        ds: &Arc<DaemonSet>,
        ns: &str,
        create_on: &[String],
        delete: &[Arc<Pod>],
        hash: &str,
    ) -> Result<()> {
        let k = key_of(&**ds);
        let spec = ds.spec.clone().unwrap_or_default();
        if !create_on.is_empty() {
            self.exp.expect_creations(&k, create_on.len() as i64);
        } else if !delete.is_empty() {
            self.exp
                .expect_deletions(&k, delete.iter().map(|p| key_of(&**p)));
        }
        let mut err = None;
        for node in create_on {
            let mut pod = util::pod_from_template(
                &spec.template,
                util::controller_ref_to(&**ds),
                ns,
                None,
                Some(format!("{}-", ds.name_any())),
            );
            let labels = pod.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(REVISION_LABEL.into(), hash.to_string());
            labels.insert(
                TEMPLATE_GENERATION_LABEL.into(),
                ds.metadata.generation.unwrap_or(1).to_string(),
            );
            let ps = pod.spec.get_or_insert_with(Default::default);
            ps.tolerations = Some(daemon_tolerations(ps));
            let affinity = ps.affinity.get_or_insert_with(Affinity::default);
            let na = affinity
                .node_affinity
                .get_or_insert_with(NodeAffinity::default);
            na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.clone()]),
                    }]),
                    match_expressions: None,
                }],
            });
            match util::create_pod(&self.sh.client, ns, &pod).await {
                Ok(p) => self.rec.normal(
                    &**ds,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                ),
                Err(e) => {
                    self.exp.creation_observed(&k);
                    self.rec
                        .warning(&**ds, "FailedCreate", format!("Error creating: {e:#}"));
                    err = Some(e);
                }
            }
        }
        if create_on.is_empty() {
            for p in delete {
                let name = p.name_any();
                match util::delete_pod(&self.sh.client, ns, &name).await {
                    Ok(true) => {
                        self.rec
                            .normal(&**ds, "SuccessfulDelete", format!("Deleted pod: {name}"))
                    }
                    Ok(false) => self.exp.deletion_observed(&k, &key(Some(ns), &name)),
                    Err(e) => {
                        self.exp.deletion_observed(&k, &key(Some(ns), &name));
                        err = Some(e);
                    }
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn write_status(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        on_node: &HashMap<String, Vec<Arc<Pod>>>,
        hash: &str,
        desired: i32,
    ) -> Result<()> {
        let spec = ds.spec.clone().unwrap_or_default();
        let pod_spec = spec.template.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Utc::now();
        let (mut current, mut misscheduled, mut ready, mut available, mut updated) =
            (0, 0, 0, 0, 0);
        for n in nodes {
            let Some(here) = on_node.get(&n.name_any()).filter(|h| !h.is_empty()) else {
                continue;
            };
            if !should_run(&pod_spec, n) {
                misscheduled += 1;
                continue;
            }
            current += 1;
            let p = &here[0];
            if util::pod_ready(p) {
                ready += 1;
            }
            if util::pod_available(p, min_ready, now) {
                available += 1;
            }
            if p.labels().get(REVISION_LABEL).map(String::as_str) == Some(hash) {
                updated += 1;
            }
        }
        let status = json!({
            "observedGeneration": ds.metadata.generation.unwrap_or(0),
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": (desired - available).max(0),
            "updatedNumberScheduled": updated,
        });
        let cur = serde_json::to_value(&ds.status).unwrap_or(Value::Null);
        if !crate::replicaset::same_status(&cur, &status) {
            let api: Api<DaemonSet> =
                Api::namespaced(self.sh.client.clone(), &ds.namespace().unwrap_or_default());
            util::patch_status(&api, &ds.name_any(), status).await?;
        }
        Ok(())
    }
}
