//! ServiceAccount admission for pods, as upstream's plugin does it: a pod whose service
//! account exists (and neither opts out with `automountServiceAccountToken: false`) gets
//! the `kube-api-access-XXXXX` projected volume (a bound token, the cluster CA from the
//! `kube-root-ca.crt` ConfigMap, the namespace) mounted read-only at
//! /var/run/secrets/kubernetes.io/serviceaccount in every container.
//!
//! hako has no ServiceAccount controller yet: a pod whose service account does not
//! exist is admitted unchanged (upstream refuses it), and `kube-root-ca.crt` is written
//! here when missing (upstream's root-ca-cert-publisher controller does it).

use std::sync::OnceLock;

use hako_kube_store::Store;
use serde_json::{json, Value};

use crate::status::ApiError;

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const ROOT_CA: &str = "kube-root-ca.crt";

static CA: OnceLock<String> = OnceLock::new();

/// The cluster CA (PEM) that goes into `kube-root-ca.crt`; set once at start.
pub fn set_root_ca(pem: &str) {
    let _ = CA.set(pem.to_string());
}

fn enabled(v: &Value) -> bool {
    v.get("automountServiceAccountToken") != Some(&json!(false))
}

/// Add the API access volume to `pod` (being created in `ns`) when it should get one.
pub fn admit_pod(
    store: &dyn Store,
    ns: &str,
    pod: &mut Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return Ok(());
    }
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    let Ok(stored) = store.get(&format!("/core/serviceaccounts/{ns}/{sa}")) else {
        return Ok(());
    };
    if !enabled(&stored.value) {
        return Ok(());
    }
    spec.insert("serviceAccountName".into(), json!(sa));
    let containers = ["containers", "initContainers"];
    let mounted = containers.iter().any(|k| {
        spec.get(*k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c["volumeMounts"].as_array().cloned().unwrap_or_default())
            .any(|m| m["mountPath"] == MOUNT_PATH)
    });
    if mounted {
        return Ok(());
    }
    let name = format!("kube-api-access-{}", crate::meta::name_suffix());
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    if !spec.get("volumes").is_some_and(Value::is_array) {
        spec.insert("volumes".into(), json!([]));
    }
    if let Some(v) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        v.push(volume);
    }
    for k in containers {
        for c in spec
            .get_mut(k)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if !c.get("volumeMounts").is_some_and(Value::is_array) {
                c["volumeMounts"] = json!([]);
            }
            if let Some(m) = c["volumeMounts"].as_array_mut() {
                m.push(json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
            }
        }
    }
    if !dry_run {
        publish_root_ca(store, ns);
    }
    Ok(())
}

/// Write the `kube-root-ca.crt` ConfigMap of `ns` when it is missing.
fn publish_root_ca(store: &dyn Store, ns: &str) {
    let Some(ca) = CA.get() else { return };
    let key = format!("/core/configmaps/{ns}/{ROOT_CA}");
    if store.get(&key).is_ok() {
        return;
    }
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CA,
            "namespace": ns,
            "uid": crate::meta::uid(),
            "creationTimestamp": crate::meta::now(),
            "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
        },
        "data": {"ca.crt": ca},
    });
    // Another pod may have written it meanwhile: either copy is the same.
    if let Err(e) = store.create(&key, &cm) {
        tracing::debug!("publishing {ROOT_CA} in {ns}: {e}");
    }
}
