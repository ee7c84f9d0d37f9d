//! The PersistentVolume controller (upstream's persistentvolume binder, pvc-protection
//! and pv-protection controllers in one): binds claims to volumes (class, access
//! modes, size, selector, volume mode, `volumeName` and `claimRef` pre-binding, the
//! smallest volume that fits), provisions through [`LocalPath`] for its classes
//! (Immediate, or WaitForFirstConsumer once the scheduler annotated the claim with
//! the selected node), keeps the phases (Available, Bound, Released, Failed; Pending
//! and Lost claims), reclaims released volumes (Retain keeps them, Delete removes the
//! PV and a provisioned directory) and removes the protection finalizers once a claim
//! is used by no pod and a volume is bound to no claim.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::informer::{key, key_of, split_key, Ev, Informer};
use crate::local_path::{LocalPath, PROVISIONED_BY};
use crate::queue::{Outcome, Queue};
use crate::util::{self, Recorder};
use crate::Shared;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// Set by the scheduler on a WaitForFirstConsumer claim (upstream's volume binder).
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

struct Pvc {
    sh: Arc<Shared>,
    pvs: Arc<Informer<PersistentVolume>>,
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
    classes: Arc<Informer<StorageClass>>,
    claims_q: Arc<Queue>,
    volumes_q: Arc<Queue>,
    rec: Recorder,
    local: Option<LocalPath>,
    /// The last event recorded per claim or volume key (not repeated every pass).
    reported: Mutex<HashMap<String, String>>,
}

/// Start the controller; `local` is the local-path provisioner's base (None: no
/// provisioning here).
pub fn start(sh: Arc<Shared>, local: Option<LocalPath>) {
    let c = Arc::new(Pvc {
        pvs: Informer::start(Api::all(sh.client.clone())),
        pvcs: Informer::start(Api::all(sh.client.clone())),
        classes: Informer::start(Api::all(sh.client.clone())),
        claims_q: Queue::new(),
        volumes_q: Queue::new(),
        rec: Recorder::new(sh.client.clone(), "persistentvolume-controller"),
        local,
        reported: Mutex::new(HashMap::new()),
        sh,
    });
    let c1 = c.clone();
    c.pvcs.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => {
            c1.claims_q.add(key_of(&*new));
            if let Some(v) = volume_of(&new) {
                c1.volumes_q.add(v);
            }
        }
        Ev::Delete(o) => {
            if let Some(v) = volume_of(&o) {
                c1.volumes_q.add(v);
            }
            let k = key_of(&*o);
            for pv in c1.pvs.list(None) {
                if claim_key(&pv).as_deref() == Some(k.as_str()) {
                    c1.volumes_q.add(pv.name_any());
                }
            }
        }
        Ev::Resync => c1.resync(),
    });
    let c2 = c.clone();
    c.pvs.on_event(move |ev| match ev {
        Ev::Apply { new, .. } => {
            c2.volumes_q.add(new.name_any());
            if let Some(k) = claim_key(&new) {
                c2.claims_q.add(k);
            }
        }
        Ev::Delete(o) => {
            if let Some(k) = claim_key(&o) {
                c2.claims_q.add(k);
            }
            // A volume gone may let a pending claim bind another.
            c2.requeue_pending();
        }
        Ev::Resync => c2.resync(),
    });
    let c3 = c.clone();
    c.classes.on_event(move |_| c3.requeue_pending());
    let c4 = c.clone();
    // Pods going away release their claims (pvc-protection).
    c.sh.pods.on_event(move |ev| {
        let pods = match ev {
            Ev::Apply { new, old } => std::iter::once(new).chain(old).collect::<Vec<_>>(),
            Ev::Delete(p) => vec![p],
            Ev::Resync => return c4.resync(),
        };
        for p in pods {
            for claim in claims_of(&p) {
                c4.claims_q
                    .add(key(p.metadata.namespace.as_deref(), &claim));
            }
        }
    });
    tokio::spawn(async move {
        c.pvs.wait_synced().await;
        c.pvcs.wait_synced().await;
        c.classes.wait_synced().await;
        c.sh.pods.wait_synced().await;
        c.resync();
        let cc = c.clone();
        c.claims_q.run("persistentvolume claims", 1, move |k| {
            let c = cc.clone();
            async move { c.sync_claim(&k).await }
        });
        let cv = c.clone();
        c.volumes_q.run("persistentvolume volumes", 1, move |k| {
            let c = cv.clone();
            async move { c.sync_volume(&k).await }
        });
    });
}

fn volume_of(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()?
        .volume_name
        .clone()
        .filter(|v| !v.is_empty())
}

fn claim_key(pv: &PersistentVolume) -> Option<String> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(key(r.namespace.as_deref(), r.name.as_deref()?))
}

fn claims_of(p: &Pod) -> Vec<String> {
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn claim_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The claim's class: `""` for none.
fn class_of(pvc: &PersistentVolumeClaim) -> String {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

fn requested(pvc: &PersistentVolumeClaim) -> i128 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| hako_kube_apiserver::quantity::parse_units(&q.0))
        .unwrap_or(0)
}

fn capacity(pv: &PersistentVolume) -> i128 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| hako_kube_apiserver::quantity::parse_units(&q.0))
        .unwrap_or(0)
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let vals = r.values.clone().unwrap_or_default();
    let v = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| vals.contains(v)),
        "NotIn" => v.is_none_or(|v| !vals.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        _ => false,
    }
}

/// Does the volume's node affinity admit `node`? (No affinity: any node.)
pub fn volume_fits_node(pv: &PersistentVolume, node: Option<&Node>) -> bool {
    let Some(req) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let Some(node) = node else { return false };
    let mut labels = node.metadata.labels.clone().unwrap_or_default();
    labels
        .entry("kubernetes.io/hostname".into())
        .or_insert_with(|| node.name_any());
    req.node_selector_terms.iter().any(|t| {
        t.match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_matches(r, &labels))
    })
}

impl Pvc {
    fn resync(&self) {
        for c in self.pvcs.list(None) {
            self.claims_q.add(key_of(&*c));
        }
        for v in self.pvs.list(None) {
            self.volumes_q.add(v.name_any());
        }
    }

    fn requeue_pending(&self) {
        for c in self.pvcs.list(None) {
            if volume_of(&c).is_none() {
                self.claims_q.add(key_of(&*c));
            }
        }
    }

    /// Record an event unless the same one was the last for this object.
    fn report<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        msg: String,
    ) {
        let k = format!("{}/{}", K::kind(&()), key_of(obj));
        let line = format!("{reason}: {msg}");
        {
            let mut r = self.reported.lock().unwrap();
            if r.get(&k) == Some(&line) {
                return;
            }
            r.insert(k, line);
        }
        if warning {
            self.rec.warning(obj, reason, msg);
        } else {
            self.rec.normal(obj, reason, msg);
        }
    }

    fn in_use(&self, pvc: &PersistentVolumeClaim) -> bool {
        let name = pvc.name_any();
        self.sh
            .pods
            .list(pvc.namespace().as_deref())
            .iter()
            .filter(|p| !matches!(util::pod_phase(p), "Succeeded" | "Failed"))
            .any(|p| claims_of(p).contains(&name))
    }

    async fn sync_claim(&self, k: &str) -> Outcome {
        let Some(pvc) = self.pvcs.get(k) else {
            self.reported
                .lock()
                .unwrap()
                .remove(&format!("PersistentVolumeClaim/{k}"));
            return Ok(None);
        };
        let (ns, _) = split_key(k);
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.sh.client.clone(), ns.unwrap_or("default"));
        if util::is_deleting(&pvc.metadata) {
            if has_finalizer(&pvc.metadata, PVC_PROTECTION) && !self.in_use(&pvc) {
                let mut c = (*pvc).clone();
                if let Some(f) = c.metadata.finalizers.as_mut() {
                    f.retain(|x| x != PVC_PROTECTION);
                }
                api.replace(&c.name_any(), &PostParams::default(), &c)
                    .await
                    .with_context(|| format!("removing the finalizer of claim {k}"))?;
            }
            return Ok(None);
        }
        match volume_of(&pvc) {
            None => self.bind_or_provision(&api, &pvc).await,
            Some(vname) => {
                let Some(pv) = self.pvs.get(&vname) else {
                    if claim_phase(&pvc) == "Bound" {
                        util::patch_status(&api, &pvc.name_any(), json!({"phase": "Lost"})).await?;
                        self.report(
                            &*pvc,
                            true,
                            "ClaimLost",
                            "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
                                .into(),
                        );
                    } else if claim_phase(&pvc) != "Lost" {
                        self.pending(&api, &pvc).await?;
                    }
                    return Ok(None);
                };
                let bound_uid = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|r| r.uid.clone());
                match bound_uid {
                    Some(u) if Some(&u) == pvc.metadata.uid.as_ref() => {
                        self.claim_bound(&api, &pvc, &pv).await?
                    }
                    None if claim_key(&pv).is_none_or(|ck| ck == k) => {
                        // The claim names the volume (pre-bound by its author).
                        if self.matches(&pvc, &pv, false) {
                            self.bind(&pvc, &pv).await?;
                        } else {
                            self.report(
                                &*pvc,
                                true,
                                "VolumeMismatch",
                                format!("Cannot bind to requested volume {vname:?}: the volume does not match the claim (size, access modes, class or volume mode)"),
                            );
                            self.pending(&api, &pvc).await?;
                        }
                    }
                    _ => {
                        self.report(
                            &*pvc,
                            true,
                            "FailedBinding",
                            format!("volume {vname:?} already bound to a different claim."),
                        );
                        self.pending(&api, &pvc).await?;
                    }
                }
                Ok(None)
            }
        }
    }

    async fn pending(
        &self,
        api: &Api<PersistentVolumeClaim>,
        pvc: &PersistentVolumeClaim,
    ) -> Result<()> {
        if claim_phase(pvc) != "Pending" {
            util::patch_status(api, &pvc.name_any(), json!({"phase": "Pending"})).await?;
        }
        Ok(())
    }

    /// Can `pv` serve `pvc`? (`free`: the volume must also be unclaimed.)
    fn matches(&self, pvc: &PersistentVolumeClaim, pv: &PersistentVolume, free: bool) -> bool {
        let (Some(cs), Some(vs)) = (pvc.spec.as_ref(), pv.spec.as_ref()) else {
            return false;
        };
        if util::is_deleting(&pv.metadata) || matches!(volume_phase(pv), "Released" | "Failed") {
            return false;
        }
        if free && vs.claim_ref.is_some() {
            return false;
        }
        if vs.storage_class_name.clone().unwrap_or_default() != class_of(pvc) {
            return false;
        }
        let modes = vs.access_modes.clone().unwrap_or_default();
        if !cs.access_modes.iter().flatten().all(|m| modes.contains(m)) {
            return false;
        }
        let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "Filesystem".into());
        if mode(&cs.volume_mode) != mode(&vs.volume_mode) {
            return false;
        }
        if capacity(pv) < requested(pvc) {
            return false;
        }
        if let Some(sel) = &cs.selector {
            if !util::selects(sel, &util::labels_of(&pv.metadata)) {
                return false;
            }
        }
        true
    }

    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.sh.nodes.get(name)
    }

    async fn bind_or_provision(
        &self,
        api: &Api<PersistentVolumeClaim>,
        pvc: &Arc<PersistentVolumeClaim>,
    ) -> Outcome {
        let k = key_of(&**pvc);
        let selected = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SELECTED_NODE))
            .cloned();
        let class_name = class_of(pvc);
        let class = (!class_name.is_empty())
            .then(|| self.classes.get(&class_name))
            .flatten();
        let wait = class
            .as_ref()
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer");
        // A volume pre-bound to this claim, then the smallest free one that fits.
        let vols = self.pvs.list(None);
        let prebound = vols.iter().find(|v| {
            claim_key(v).as_deref() == Some(k.as_str())
                && v.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|r| r.uid.as_ref())
                    .is_none_or(|u| Some(u) == pvc.metadata.uid.as_ref())
                && !util::is_deleting(&v.metadata)
        });
        let chosen = match prebound {
            Some(v) => Some(v.clone()),
            // Delayed binding: only once the scheduler chose a node, and on that node.
            None if wait && selected.is_none() => None,
            None => vols
                .iter()
                .filter(|v| self.matches(pvc, v, true))
                .filter(|v| {
                    selected
                        .as_deref()
                        .is_none_or(|n| volume_fits_node(v, self.node(n).as_deref()))
                })
                .min_by_key(|v| (capacity(v), v.name_any()))
                .cloned(),
        };
        if let Some(pv) = chosen {
            self.bind(pvc, &pv).await?;
            return Ok(None);
        }
        self.pending(api, pvc).await?;
        if class_name.is_empty() {
            self.report(
                &**pvc,
                false,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            );
            return Ok(None);
        }
        let Some(class) = class else {
            self.report(
                &**pvc,
                true,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class_name:?} not found"),
            );
            return Ok(None);
        };
        let local = self
            .local
            .as_ref()
            .filter(|_| LocalPath::handles(&class.provisioner));
        let Some(local) = local else {
            self.report(
                &**pvc,
                false,
                "ExternalProvisioning",
                format!("Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.", class.provisioner),
            );
            return Ok(None);
        };
        let node = match selected {
            Some(n) => n,
            None if wait => {
                self.report(
                    &**pvc,
                    false,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".into(),
                );
                return Ok(None);
            }
            None => {
                // Immediate: the first node (hako's clusters have one).
                let mut names: Vec<String> = self
                    .sh
                    .nodes
                    .list(None)
                    .iter()
                    .map(|n| n.name_any())
                    .collect();
                names.sort();
                match names.into_iter().next() {
                    Some(n) => n,
                    None => {
                        self.report(
                            &**pvc,
                            true,
                            "ProvisioningFailed",
                            "no node to provision the volume on".into(),
                        );
                        return Ok(Some(Duration::from_secs(5)));
                    }
                }
            }
        };
        if pvc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some()
        {
            self.report(
                &**pvc,
                true,
                "ProvisioningFailed",
                "claim Selector is not supported".into(),
            );
            return Ok(None);
        }
        self.report(
            &**pvc,
            false,
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{k}\""),
        );
        match local.provision(&self.sh.client, pvc, &class, &node).await {
            Ok(name) => {
                self.report(
                    &**pvc,
                    false,
                    "ProvisioningSucceeded",
                    format!("Successfully provisioned volume {name}"),
                );
                Ok(None)
            }
            Err(e) => {
                self.report(&**pvc, true, "ProvisioningFailed", format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Bind: the volume's claimRef, its phase, then the claim's volumeName and status.
    async fn bind(&self, pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
        let vname = pv.name_any();
        let pvs: Api<PersistentVolume> = Api::all(self.sh.client.clone());
        let bound_to_it = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.as_ref())
            == pvc.metadata.uid.as_ref();
        if !bound_to_it {
            let mut v = pv.clone();
            let by_us = v.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
            let spec = v.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: pvc.namespace(),
                name: Some(pvc.name_any()),
                uid: pvc.metadata.uid.clone(),
                resource_version: pvc.metadata.resource_version.clone(),
                ..Default::default()
            });
            if by_us {
                v.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            // A PUT with the cached resourceVersion: two claims never get one volume.
            pvs.replace(&vname, &PostParams::default(), &v)
                .await
                .with_context(|| format!("binding volume {vname} to its claim"))?;
        }
        if volume_phase(pv) != "Bound" {
            util::patch_status(&pvs, &vname, json!({"phase": "Bound"})).await?;
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.sh.client.clone(), &pvc.namespace().unwrap_or_default());
        if volume_of(pvc).is_none() {
            let mut c = pvc.clone();
            c.spec.get_or_insert_with(Default::default).volume_name = Some(vname.clone());
            let ann = c.metadata.annotations.get_or_insert_with(Default::default);
            ann.insert(BIND_COMPLETED.into(), "yes".into());
            ann.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            api.replace(&c.name_any(), &PostParams::default(), &c)
                .await
                .with_context(|| format!("binding claim {} to volume {vname}", key_of(pvc)))?;
        }
        self.claim_bound(&api, pvc, pv).await
    }

    async fn claim_bound(
        &self,
        api: &Api<PersistentVolumeClaim>,
        pvc: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<()> {
        let spec = pv.spec.clone().unwrap_or_default();
        let status = json!({
            "phase": "Bound",
            "capacity": spec.capacity,
            "accessModes": spec.access_modes,
        });
        let cur = serde_json::to_value(&pvc.status).unwrap_or_default();
        let same = ["phase", "capacity", "accessModes"]
            .iter()
            .all(|f| cur.get(f) == status.get(f));
        if !same {
            util::patch_status(api, &pvc.name_any(), status).await?;
        }
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Outcome {
        let Some(pv) = self.pvs.get(name) else {
            self.reported
                .lock()
                .unwrap()
                .remove(&format!("PersistentVolume/{name}"));
            return Ok(None);
        };
        let api: Api<PersistentVolume> = Api::all(self.sh.client.clone());
        if util::is_deleting(&pv.metadata) {
            if has_finalizer(&pv.metadata, PV_PROTECTION) && volume_phase(&pv) != "Bound" {
                let mut v = (*pv).clone();
                if let Some(f) = v.metadata.finalizers.as_mut() {
                    f.retain(|x| x != PV_PROTECTION);
                }
                api.replace(name, &PostParams::default(), &v)
                    .await
                    .with_context(|| format!("removing the finalizer of volume {name}"))?;
            }
            return Ok(None);
        }
        let spec = pv.spec.clone().unwrap_or_default();
        let Some(r) = spec.claim_ref.clone() else {
            self.set_phase(&api, &pv, "Available", None).await?;
            return Ok(None);
        };
        let ck = key(r.namespace.as_deref(), r.name.as_deref().unwrap_or(""));
        let claim = self.pvcs.get(&ck);
        let Some(uid) = r.uid.clone() else {
            // Pre-bound by its author: the claim's sync binds it.
            self.set_phase(&api, &pv, "Available", None).await?;
            self.claims_q.add(ck);
            return Ok(None);
        };
        match claim {
            Some(c) if c.metadata.uid.as_deref() == Some(uid.as_str()) => {
                match volume_of(&c) {
                    Some(v) if v == name => self.set_phase(&api, &pv, "Bound", None).await?,
                    None => self.claims_q.add(ck),
                    Some(_) => {
                        // The claim went to another volume: free this one if we bound it.
                        let ours = pv
                            .metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key(BOUND_BY_CONTROLLER));
                        if ours {
                            let mut v = (*pv).clone();
                            if let Some(s) = v.spec.as_mut() {
                                s.claim_ref = None;
                            }
                            api.replace(name, &PostParams::default(), &v).await?;
                        }
                    }
                }
                Ok(None)
            }
            _ => self.reclaim(&api, &pv).await,
        }
    }

    async fn set_phase(
        &self,
        api: &Api<PersistentVolume>,
        pv: &PersistentVolume,
        phase: &str,
        message: Option<String>,
    ) -> Result<()> {
        if volume_phase(pv) != phase {
            let mut st = json!({"phase": phase});
            if let Some(m) = message {
                st["message"] = json!(m);
            }
            util::patch_status(api, &pv.name_any(), st).await?;
        }
        Ok(())
    }

    /// The claim of a bound volume is gone: Released, then its reclaim policy.
    async fn reclaim(&self, api: &Api<PersistentVolume>, pv: &PersistentVolume) -> Outcome {
        let name = pv.name_any();
        if volume_phase(pv) == "Failed" {
            return Ok(None);
        }
        self.set_phase(api, pv, "Released", None).await?;
        let spec = pv.spec.clone().unwrap_or_default();
        match spec.persistent_volume_reclaim_policy.as_deref() {
            Some("Delete") => {
                let by = pv
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(PROVISIONED_BY))
                    .cloned()
                    .unwrap_or_default();
                let local = self.local.as_ref().filter(|_| LocalPath::handles(&by));
                let Some(local) = local else {
                    let msg = format!("error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched");
                    self.set_phase(api, pv, "Failed", Some(msg.clone())).await?;
                    self.report(pv, true, "VolumeFailedDelete", msg);
                    return Ok(None);
                };
                if let Err(e) = local.delete(pv) {
                    let msg = format!("{e:#}");
                    self.set_phase(api, pv, "Failed", Some(msg.clone())).await?;
                    self.report(pv, true, "VolumeFailedDelete", msg);
                    return Ok(None);
                }
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => Ok(None),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("deleting volume {name}")),
                }
            }
            Some("Recycle") => {
                let msg =
                    "Recycle is deprecated and not supported: use Retain or Delete".to_string();
                self.set_phase(api, pv, "Failed", Some(msg.clone())).await?;
                self.report(pv, true, "VolumeFailedRecycle", msg);
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}
