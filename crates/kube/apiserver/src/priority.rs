//! PriorityClasses (scheduling.k8s.io/v1): the two built-in classes every cluster has
//! and upstream's Priority admission, which turns a pod's `priorityClassName` (or the
//! global default class) into `spec.priority` and `spec.preemptionPolicy`.

use serde_json::{json, Value};

use crate::resources;
use crate::status::ApiError;
use hako_kube_store::{ListOptions, Store};

/// The built-in classes: (name, value, description).
const SYSTEM: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The built-in classes as objects (created at start when missing).
pub fn system_classes() -> Vec<Value> {
    SYSTEM
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value,
                   "description": description, "preemptionPolicy": "PreemptLowerPriority"})
        })
        .collect()
}

/// Priority admission of a pod being created: `spec.priority` (and
/// `preemptionPolicy`) from its class, or from the global default class, else 0.
pub fn admit_pod(store: &dyn Store, pod: &mut Value) -> Result<(), ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let kind = resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are served");
    let wanted = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let class = match &wanted {
        Some(c) => match store.get(&kind.key(None, c)) {
            Ok(s) => Some(s.value),
            Err(_) => {
                return Err(ApiError::forbidden(
                    "",
                    "pods",
                    &name,
                    format!("no PriorityClass with name {c} was found"),
                ))
            }
        },
        None => store
            .list(&kind.prefix(), &ListOptions::default())
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.value)
            .find(|c| c.get("globalDefault") == Some(&json!(true))),
    };
    let value = class
        .as_ref()
        .and_then(|c| c.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != value {
            return Err(ApiError::forbidden(
                "",
                "pods",
                &name,
                format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"),
            ));
        }
    }
    spec.insert("priority".into(), json!(value));
    if let Some(c) = &class {
        if wanted.is_none() {
            spec.insert("priorityClassName".into(), c["metadata"]["name"].clone());
        }
        let policy = c
            .get("preemptionPolicy")
            .cloned()
            .unwrap_or(json!("PreemptLowerPriority"));
        spec.entry("preemptionPolicy").or_insert(policy);
    }
    Ok(())
}
