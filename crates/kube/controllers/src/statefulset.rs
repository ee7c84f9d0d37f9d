//! The StatefulSet controller (upstream's pkg/controller/statefulset): pods
//! with stable names `NAME-ORDINAL`, created in order and each only once the
//! one before is Running and Ready (OrderedReady) or all at once (Parallel),
//! removed from the highest ordinal down; PersistentVolumeClaims
//! `TEMPLATE-NAME-ORDINAL` from volumeClaimTemplates, never deleted here;
//! RollingUpdate (highest ordinal first, down to the partition) or OnDelete,
//! each template a ControllerRevision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::history::{self, REVISION_LABEL};
use crate::informer::{key, key_of, split_key, Ev};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder};
use crate::Shared;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ssc {
    sh: Arc<Shared>,
    queue: Arc<Queue>,
    rec: Recorder,
}

pub fn start(sh: Arc<Shared>) {
    let c = Arc::new(Ssc {
        queue: Queue::new(),
        rec: Recorder::new(sh.client.clone(), "statefulset-controller"),
        sh,
    });
    let q = c.queue.clone();
    let sh = c.sh.clone();
    sh.statefulsets.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => q.add(key_of(&*new)),
        Ev::Delete(o) => q.add(key_of(&*o)),
        Ev::Resync => {}
    });
    let c2 = c.clone();
    sh.pods.on_event(move |ev| {
        let (new, old) = match ev {
            Ev::Apply { new, old } => (new, old),
            Ev::Delete(p) => (p, None),
            Ev::Resync => {
                for s in c2.sh.statefulsets.list(None) {
                    c2.queue.add(key_of(&*s));
                }
                return;
            }
        };
        for p in std::iter::once(&new).chain(old.iter()) {
            if let Some(r) = util::controller_of(&p.metadata) {
                if r.kind == "StatefulSet" {
                    c2.queue.add(key(p.namespace().as_deref(), &r.name));
                }
            }
        }
    });
    let c3 = c.clone();
    tokio::spawn(async move {
        c3.sh.pods.wait_synced().await;
        c3.sh.statefulsets.wait_synced().await;
        c3.sh.revisions.wait_synced().await;
        for s in c3.sh.statefulsets.list(None) {
            c3.queue.add(key_of(&*s));
        }
        let c4 = c3.clone();
        c3.queue.run("statefulset", 2, move |k| {
            let c = c4.clone();
            async move { c.sync(&k).await }
        });
    });
}

/// `NAME-N` → N, for pods of the set named `set`.
fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn healthy(p: &Pod) -> bool {
    util::pod_phase(p) == "Running" && util::pod_ready(p) && !util::is_deleting(&p.metadata)
}

fn revision_of(p: &Pod) -> Option<&String> {
    p.metadata.labels.as_ref()?.get(REVISION_LABEL)
}

impl Ssc {
    async fn sync(&self, k: &str) -> Outcome {
        let Some(set) = self.sh.statefulsets.get(k) else {
            return Ok(None);
        };
        let (ns, name) = split_key(k);
        let ns = ns.unwrap_or_default().to_string();
        let spec = set.spec.clone().unwrap_or_default();
        let candidates: Vec<Arc<Pod>> = self.sh.pods.list(Some(&ns));
        let pods = util::claim(&self.sh.client, &*set, &spec.selector, candidates, |p| {
            ordinal(name, &p.name_any()).is_some()
        })
        .await?;
        if util::is_deleting(&set.metadata) {
            return Ok(None);
        }
        let revisions = history::owned_by(&*set, self.sh.revisions.list(Some(&ns)));
        let collisions = set.status.as_ref().and_then(|s| s.collision_count);
        let (update, revisions) = history::sync(
            &self.sh.client,
            &*set,
            &spec.template,
            collisions,
            revisions,
        )
        .await?;
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .filter(|n| revisions.iter().any(|r| &r.name_any() == n))
            .unwrap_or_else(|| update.name_any());
        let current = revisions
            .iter()
            .find(|r| r.name_any() == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());

        let mut by_ord: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
        for p in &pods {
            if let Some(o) = ordinal(name, &p.name_any()) {
                by_ord.insert(o, p.clone());
            }
        }
        let res = self
            .reconcile_pods(&set, &ns, &by_ord, &current, &update)
            .await;
        // Status from what the cache holds now (our writes show up on the next pass).
        self.write_status(&set, &by_ord, &current, &update).await?;
        let keep = [current.name_any(), update.name_any()];
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        history::truncate(&self.sh.client, &ns, &revisions, &keep, limit).await?;
        res?;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0
            && by_ord
                .values()
                .any(|p| healthy(p) && !util::pod_available(p, min_ready, Utc::now()))
        {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    async fn reconcile_pods(
        &self,
        set: &Arc<StatefulSet>,
        ns: &str,
        by_ord: &BTreeMap<i32, Arc<Pod>>,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<()> {
        let spec = set.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1);
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let on_delete = strategy.type_.as_deref() == Some("OnDelete");
        let partition = strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let set_name = set.name_any();
        // Replicas in [start, start+replicas), in order.
        for ord in start..start + replicas {
            match by_ord.get(&ord) {
                None => {
                    // Pods below the partition stay at the current revision.
                    let rev = if !on_delete && ord < start + partition {
                        current
                    } else {
                        update
                    };
                    self.create(set, ns, ord, rev).await?;
                    if monotonic {
                        return Ok(());
                    }
                }
                Some(p)
                    if matches!(util::pod_phase(p), "Failed" | "Succeeded")
                        && !util::is_deleting(&p.metadata) =>
                {
                    let pname = p.name_any();
                    self.rec.warning(
                        &**set,
                        "RecreatingFailedPod",
                        format!("StatefulSet {ns}/{set_name} is recreating failed Pod {pname}"),
                    );
                    util::delete_pod(&self.sh.client, ns, &pname).await?;
                    if monotonic {
                        return Ok(());
                    }
                }
                Some(p) if monotonic && !healthy(p) => return Ok(()),
                Some(_) => {}
            }
        }
        // Condemned pods, highest ordinal first.
        let condemned: Vec<&Arc<Pod>> = by_ord
            .iter()
            .rev()
            .filter(|(o, _)| **o >= start + replicas || **o < start)
            .map(|(_, p)| p)
            .collect();
        for p in condemned {
            if util::is_deleting(&p.metadata) {
                if monotonic {
                    return Ok(());
                }
                continue;
            }
            if monotonic
                && by_ord
                    .values()
                    .any(|q| !healthy(q) && q.name_any() != p.name_any())
            {
                return Ok(());
            }
            self.delete(set, ns, p).await?;
            if monotonic {
                return Ok(());
            }
        }
        if on_delete {
            return Ok(());
        }
        // RollingUpdate: one pod at a time, highest ordinal first, down to the partition.
        let update_name = update.name_any();
        for (ord, p) in by_ord.iter().rev() {
            if *ord < start + partition || *ord >= start + replicas {
                continue;
            }
            if revision_of(p) != Some(&update_name) {
                if util::is_deleting(&p.metadata) {
                    return Ok(());
                }
                if by_ord.values().all(|q| healthy(q)) {
                    self.delete(set, ns, p).await?;
                }
                return Ok(());
            }
            if !healthy(p) {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn delete(&self, set: &StatefulSet, ns: &str, p: &Pod) -> Result<()> {
        let pname = p.name_any();
        if util::delete_pod(&self.sh.client, ns, &pname).await? {
            self.rec.normal(
                set,
                "SuccessfulDelete",
                format!(
                    "delete Pod {pname} in StatefulSet {} successful",
                    set.name_any()
                ),
            );
        }
        Ok(())
    }

    /// Create the pod of ordinal `ord` at revision `rev`, its claims first.
    async fn create(
        &self,
        set: &Arc<StatefulSet>,
        ns: &str,
        ord: i32,
        rev: &ControllerRevision,
    ) -> Result<()> {
        let spec = set.spec.clone().unwrap_or_default();
        let set_name = set.name_any();
        let pname = format!("{set_name}-{ord}");
        let template: PodTemplateSpec =
            history::template_of(rev).unwrap_or_else(|| spec.template.clone());
        let mut pod = util::pod_from_template(
            &template,
            util::controller_ref_to(&**set),
            ns,
            Some(pname.clone()),
            None,
        );
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(REVISION_LABEL.into(), rev.name_any());
        labels.insert(POD_NAME_LABEL.into(), pname.clone());
        labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
        let ps = pod.spec.get_or_insert_with(Default::default);
        ps.hostname = Some(pname.clone());
        ps.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
        for t in spec.volume_claim_templates.iter().flatten() {
            let tname = t.name_any();
            let claim = format!("{tname}-{set_name}-{ord}");
            self.ensure_claim(set, ns, t, &claim).await?;
            let vols = ps.volumes.get_or_insert_with(Vec::new);
            vols.retain(|v| v.name != tname);
            vols.push(Volume {
                name: tname,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        match util::create_pod(&self.sh.client, ns, &pod).await {
            Ok(_) => {
                self.rec.normal(
                    &**set,
                    "SuccessfulCreate",
                    format!("create Pod {pname} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => {
                self.rec.warning(&**set, "FailedCreate", format!("{e:#}"));
                Err(e)
            }
        }
    }

    async fn ensure_claim(
        &self,
        set: &StatefulSet,
        ns: &str,
        t: &PersistentVolumeClaim,
        claim: &str,
    ) -> Result<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.sh.client.clone(), ns);
        if api.get_opt(claim).await?.is_some() {
            return Ok(());
        }
        let mut pvc = t.clone();
        pvc.metadata.name = Some(claim.to_string());
        pvc.metadata.namespace = Some(ns.to_string());
        pvc.metadata.resource_version = None;
        pvc.metadata.uid = None;
        let mut labels = pvc.metadata.labels.take().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
        pvc.metadata.labels = Some(labels);
        pvc.status = None;
        match api.create(&PostParams::default(), &pvc).await {
            Ok(_) => {
                self.rec.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {claim} for StatefulSet {} success",
                        set.name_any()
                    ),
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating PersistentVolumeClaim {claim}")),
        }
    }

    async fn write_status(
        &self,
        set: &StatefulSet,
        by_ord: &BTreeMap<i32, Arc<Pod>>,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<()> {
        let spec = set.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Utc::now();
        let pods: Vec<&Arc<Pod>> = by_ord
            .values()
            .filter(|p| !util::is_deleting(&p.metadata))
            .collect();
        let (cur, upd) = (current.name_any(), update.name_any());
        let replicas = pods.len();
        let ready = pods.iter().filter(|p| util::pod_ready(p)).count();
        let available = pods
            .iter()
            .filter(|p| util::pod_available(p, min_ready, now))
            .count();
        let mut current_replicas = pods.iter().filter(|p| revision_of(p) == Some(&cur)).count();
        let updated = pods.iter().filter(|p| revision_of(p) == Some(&upd)).count();
        let mut current_rev = cur.clone();
        let want = spec.replicas.unwrap_or(1) as usize;
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            != Some("OnDelete");
        // A finished rollout: the update revision becomes the current one.
        if (rolling || cur == upd) && updated == want && ready == want && replicas == want {
            current_rev = upd.clone();
            current_replicas = updated;
        }
        let status = json!({
            "observedGeneration": set.metadata.generation.unwrap_or(0),
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": current_replicas,
            "updatedReplicas": updated,
            "currentRevision": current_rev,
            "updateRevision": upd,
            "collisionCount": set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0),
        });
        let curv = serde_json::to_value(&set.status).unwrap_or(Value::Null);
        if !crate::replicaset::same_status(&curv, &status) {
            let api: Api<StatefulSet> =
                Api::namespaced(self.sh.client.clone(), &set.namespace().unwrap_or_default());
            util::patch_status(&api, &set.name_any(), status).await?;
        }
        Ok(())
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<kube::Error>()
            .is_some_and(|k| matches!(k, kube::Error::Api(s) if s.code == 409))
    })
}
