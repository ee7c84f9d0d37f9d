//! What the controllers share: label selectors, owner references and
//! adoption, pod state, Events, pod templates.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

pub fn now() -> Time {
    Time(Utc::now())
}

/// Does `sel` select `labels`? (matchLabels and matchExpressions; an empty
/// selector selects everything, as LabelSelectorAsSelector.)
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let have = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => !have.is_some_and(|v| values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A selector in the `key=value,key in (a,b)` form of list calls.
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The owner reference that makes `owner` the controller of a dependent.
pub fn controller_ref_to<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The reference to a dependent's controller, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// The owner of kind `K` named by a dependent's controller reference, from
/// the cache, if its uid matches.
pub fn resolve_controller<K: Resource<DynamicType = ()>>(
    meta: &ObjectMeta,
    lookup: impl Fn(&str) -> Option<Arc<K>>,
) -> Option<Arc<K>> {
    let r = controller_of(meta)?;
    if r.kind != K::kind(&()) {
        return None;
    }
    let owner = lookup(&r.name)?;
    (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(owner)
}

/// Adoption and release of dependents, as upstream's ControllerRefManager:
/// dependents controlled by the owner whose labels no longer match are
/// released (their reference is removed), orphans that match are adopted
/// (after checking, with a live read, that the owner is not being deleted).
/// Returns the dependents the owner controls afterwards.
pub async fn claim<C, O>(
    client: &Client,
    owner: &O,
    selector: &LabelSelector,
    candidates: Vec<Arc<C>>,
    extra_match: impl Fn(&C) -> bool,
) -> Result<Vec<Arc<C>>>
where
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let owner_uid = owner.meta().uid.clone().unwrap_or_default();
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<C> = Api::namespaced(client.clone(), &ns);
    let mut mine = Vec::new();
    let mut rechecked: Option<bool> = None;
    for c in candidates {
        let matches = selects(selector, &labels_of(c.meta())) && extra_match(&c);
        match controller_of(c.meta()) {
            Some(r) if r.uid == owner_uid => {
                if matches {
                    mine.push(c);
                } else if !is_deleting(owner.meta()) {
                    let refs: Vec<_> = c
                        .meta()
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|r| r.uid != owner_uid)
                        .cloned()
                        .collect();
                    set_owner_refs(&api, &c, refs, "releasing").await?;
                }
            }
            Some(_) => {}
            None => {
                if !matches || is_deleting(c.meta()) || is_deleting(owner.meta()) {
                    continue;
                }
                if rechecked.is_none() {
                    let oapi: Api<O> = Api::namespaced(client.clone(), &ns);
                    let fresh = oapi.get_opt(&owner.name_any()).await?;
                    rechecked = Some(fresh.is_some_and(|f| {
                        f.meta().uid.as_deref() == Some(owner_uid.as_str())
                            && !is_deleting(f.meta())
                    }));
                }
                if rechecked != Some(true) {
                    continue;
                }
                let mut refs = c.meta().owner_references.clone().unwrap_or_default();
                refs.push(controller_ref_to(owner));
                if let Some(adopted) = set_owner_refs(&api, &c, refs, "adopting").await? {
                    mine.push(Arc::new(adopted));
                }
            }
        }
    }
    Ok(mine)
}

/// Replace a dependent's ownerReferences (guarded by its resourceVersion).
async fn set_owner_refs<C>(
    api: &Api<C>,
    c: &C,
    refs: Vec<OwnerReference>,
    what: &str,
) -> Result<Option<C>>
where
    C: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": c.meta().resource_version,
    }});
    match api
        .patch(
            &c.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{what} {} {}", C::kind(&()), c.name_any())),
    }
}

// --- pods ---

pub fn pod_phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Not finished and not being deleted (FilterActivePods).
pub fn pod_active(p: &Pod) -> bool {
    !matches!(pod_phase(p), "Succeeded" | "Failed") && !is_deleting(&p.metadata)
}

/// When the pod's Ready condition became True, if it is True.
pub fn pod_ready_since(p: &Pod) -> Option<DateTime<Utc>> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

pub fn pod_ready(p: &Pod) -> bool {
    pod_ready_since(p).is_some()
}

/// Ready for at least `min_ready` seconds.
pub fn pod_available(p: &Pod, min_ready: i32, now: DateTime<Utc>) -> bool {
    match pod_ready_since(p) {
        None => false,
        Some(_) if min_ready <= 0 => true,
        Some(t) => t + chrono::Duration::seconds(min_ready.into()) <= now,
    }
}

/// A pod for `template`, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    ns: &str,
    name: Option<String>,
    generate_name: Option<String>,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(ns.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

pub async fn create_pod(client: &Client, ns: &str, pod: &Pod) -> Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), pod)
        .await
        .with_context(|| {
            format!(
                "creating pod {}{} in namespace {ns}",
                pod.metadata
                    .name
                    .as_deref()
                    .or(pod.metadata.generate_name.as_deref())
                    .unwrap_or(""),
                if pod.metadata.name.is_none() { "*" } else { "" }
            )
        })
}

/// Delete a pod; `Ok(false)` when it was already gone.
pub async fn delete_pod(client: &Client, ns: &str, name: &str) -> Result<bool> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("deleting pod {name} in namespace {ns}")),
    }
}

// --- templates ---

/// A template as JSON with what the API server defaults filled in and the
/// pod-template-hash label removed, so a template is compared with the one
/// stamped on a ReplicaSet (or revision) whatever path defaulted it.
pub fn normalized_template(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    for k in ["labels", "annotations"] {
        if v.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_object)
            .is_some_and(|m| m.is_empty())
        {
            v["metadata"].as_object_mut().map(|m| m.remove(k));
        }
    }
    if v.get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.is_empty())
    {
        v.as_object_mut().map(|m| m.remove("metadata"));
    }
    if let Some(spec) = v.get_mut("spec") {
        default(spec, "restartPolicy", json!("Always"));
        default(spec, "dnsPolicy", json!("ClusterFirst"));
        default(spec, "schedulerName", json!("default-scheduler"));
        default(spec, "terminationGracePeriodSeconds", json!(30));
        default(spec, "securityContext", json!({}));
        for list in ["containers", "initContainers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                let latest = c
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
                default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                for p in c
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    default(p, "protocol", json!("TCP"));
                }
            }
        }
    }
    prune(&mut v);
    v
}

/// Drop nulls, empty objects and empty lists, recursively: clients send
/// `resources: {}` or `creationTimestamp: null` where others send nothing,
/// and upstream's semantic equality treats empty and absent alike.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => {
            m.retain(|_, x| !prune(x));
            m.is_empty()
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            a.is_empty()
        }
        _ => false,
    }
}

fn default(v: &mut Value, k: &str, d: Value) {
    if let Some(m) = v.as_object_mut() {
        m.entry(k).or_insert(d);
    }
}

/// Upstream's ComputeHash: FNV-1a (32 bits) of the template and the collision
/// count, written with the "safe" alphabet (no vowels, no look-alikes).
pub fn template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(normalized_template(t).to_string().as_bytes());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    safe_encode(&h.to_string())
}

pub fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// An int-or-percent against `total` (GetScaledValueFromIntOrPercent).
pub fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let v = v
        .cloned()
        .unwrap_or_else(|| IntOrString::String(default.to_string()));
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let x = p * i64::from(total);
            let r = if round_up { (x + 99) / 100 } else { x / 100 };
            r as i32
        }
    }
}

// --- Events ---

/// Writes core/v1 Events (what `kubectl describe` lists).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component }
    }

    pub fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, msg: String) {
        self.emit(obj, "Normal", reason, msg)
    }

    pub fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, msg: String) {
        self.emit(obj, "Warning", reason, msg)
    }

    fn emit<K: Resource<DynamicType = ()>>(&self, obj: &K, typ: &str, reason: &str, msg: String) {
        let m = obj.meta();
        let ns = m.namespace.clone().unwrap_or_else(|| "default".to_string());
        let t = now();
        let nanos = t.0.timestamp_nanos_opt().unwrap_or_default();
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", obj.name_any(), nanos)),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&()).to_string()),
                kind: Some(K::kind(&()).to_string()),
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                uid: m.uid.clone(),
                resource_version: m.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(msg),
            type_: Some(typ.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            count: Some(1),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!("recording an event: {e}");
            }
        });
    }
}

/// Write `status` with a JSON merge patch of the status subresource.
pub async fn patch_status<K>(api: &Api<K>, name: &str, status: Value) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("updating the status of {} {name}", K::kind(&())))
}

/// Patch a set of objects (`spec`/`metadata` merge patch).
pub async fn merge_patch<K>(api: &Api<K>, name: &str, patch: Value) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("updating {} {name}", K::kind(&())))
}
