//! PersistentVolumes, PersistentVolumeClaims and StorageClasses: what upstream's
//! registry and admission plugins do to them on the way in. Defaults (reclaim
//! policy, volume mode, binding mode), validation with upstream's messages, the
//! DefaultStorageClass admission (a claim without `storageClassName` gets the
//! default class) and StorageObjectInUseProtection (the `kubernetes.io/pvc-protection`
//! and `kubernetes.io/pv-protection` finalizers).

use hako_kube_store::{ListOptions, Store};
use serde_json::{json, Value};

use crate::handler::{ApiResult, Target};
use crate::quantity::parse_milli;
use crate::status::{quoted, ApiError};

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

type Causes = Vec<(String, String, String)>;

fn set_default(obj: &mut Value, ptr: &str, field: &str, value: Value) {
    if let Some(m) = obj.pointer_mut(ptr).and_then(Value::as_object_mut) {
        m.entry(field.to_string()).or_insert(value);
    }
}

/// Upstream's defaults for the three kinds (`spec` is created when missing).
pub fn defaults(kind: &str, obj: &mut Value) {
    match kind {
        "PersistentVolume" | "PersistentVolumeClaim" => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("spec").or_insert_with(|| json!({}));
                m.entry("status").or_insert_with(|| json!({}));
            }
            set_default(obj, "/spec", "volumeMode", json!("Filesystem"));
            if kind == "PersistentVolume" {
                set_default(
                    obj,
                    "/spec",
                    "persistentVolumeReclaimPolicy",
                    json!("Retain"),
                );
            }
            set_default(obj, "/status", "phase", json!("Pending"));
        }
        "StorageClass" => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("reclaimPolicy").or_insert(json!("Delete"));
                m.entry("volumeBindingMode").or_insert(json!("Immediate"));
            }
        }
        _ => {}
    }
}

fn unsupported(causes: &mut Causes, field: &str, value: &str, supported: &[&str]) {
    let list: Vec<String> = supported.iter().map(|s| quoted(s)).collect();
    causes.push((
        field.to_string(),
        "FieldValueNotSupported".into(),
        format!(
            "Unsupported value: {}: supported values: {}",
            quoted(value),
            list.join(", ")
        ),
    ));
}

fn access_modes(obj: &Value, causes: &mut Causes, pv: bool) {
    let modes = obj
        .pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if modes.is_empty() {
        let msg = if pv {
            "Required value"
        } else {
            "Required value: at least 1 access mode is required"
        };
        causes.push((
            "spec.accessModes".into(),
            "FieldValueRequired".into(),
            msg.into(),
        ));
    }
    for m in &modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            unsupported(causes, "spec.accessModes", m, &ACCESS_MODES);
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        causes.push((
            "spec.accessModes".into(),
            "FieldValueForbidden".into(),
            "Forbidden: may not use ReadWriteOncePod with other access modes".into(),
        ));
    }
}

/// A storage quantity at `ptr`: missing → a cause, unparsable → upstream's 400,
/// not positive → a cause.
fn storage_size(
    t: &Target,
    obj: &Value,
    ptr: &str,
    field: &str,
    causes: &mut Causes,
) -> ApiResult<()> {
    let Some(v) = obj.pointer(ptr) else {
        causes.push((
            field.into(),
            "FieldValueRequired".into(),
            "Required value".into(),
        ));
        return Ok(());
    };
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    match parse_milli(&s) {
        None => Err(ApiError::bad_request(format!(
            "{k} in version \"v1\" cannot be handled as a {k}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            k = t.kind.kind
        ))),
        Some(n) if n <= 0 => {
            causes.push((
                field.into(),
                "FieldValueInvalid".into(),
                format!("Invalid value: {}: must be greater than zero", quoted(&s)),
            ));
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// The checks of `validation::prepare_and_check` for the storage kinds.
pub fn check(t: &Target, old: Option<&Value>, obj: &Value, causes: &mut Causes) -> ApiResult<()> {
    match t.kind.kind {
        "PersistentVolumeClaim" => {
            access_modes(obj, causes, false);
            storage_size(
                t,
                obj,
                "/spec/resources/requests/storage",
                "spec.resources[storage]",
                causes,
            )?;
            if let Some(old) = old {
                claim_update(old, obj, causes);
            }
        }
        "PersistentVolume" => {
            access_modes(obj, causes, true);
            storage_size(
                t,
                obj,
                "/spec/capacity/storage",
                "spec.capacity[storage]",
                causes,
            )?;
            let spec = obj.get("spec").and_then(Value::as_object);
            let sources = spec
                .map(|s| {
                    s.keys()
                        .filter(|k| VOLUME_SOURCES.contains(&k.as_str()))
                        .count()
                })
                .unwrap_or(0);
            if sources == 0 {
                causes.push((
                    "spec".into(),
                    "FieldValueRequired".into(),
                    "Required value: must specify a volume type".into(),
                ));
            } else if sources > 1 {
                causes.push((
                    "spec".into(),
                    "FieldValueForbidden".into(),
                    "Forbidden: may not specify more than 1 volume type".into(),
                ));
            }
            for src in ["hostPath", "local"] {
                if let Some(p) = obj.pointer(&format!("/spec/{src}/path")) {
                    if p.as_str().is_none_or(|p| !p.starts_with('/')) {
                        causes.push((
                            format!("spec.{src}.path"),
                            "FieldValueInvalid".into(),
                            format!("Invalid value: {p}: must be an absolute path"),
                        ));
                    }
                }
            }
            let policy = obj["spec"]["persistentVolumeReclaimPolicy"]
                .as_str()
                .unwrap_or("Retain");
            if !["Delete", "Recycle", "Retain"].contains(&policy) {
                unsupported(
                    causes,
                    "spec.persistentVolumeReclaimPolicy",
                    policy,
                    &["Delete", "Recycle", "Retain"],
                );
            }
        }
        "StorageClass" => {
            if obj["provisioner"].as_str().unwrap_or("").is_empty() {
                causes.push((
                    "provisioner".into(),
                    "FieldValueRequired".into(),
                    "Required value".into(),
                ));
            }
            let policy = obj["reclaimPolicy"].as_str().unwrap_or("Delete");
            if !["Delete", "Retain"].contains(&policy) {
                unsupported(causes, "reclaimPolicy", policy, &["Delete", "Retain"]);
            }
            let mode = obj["volumeBindingMode"].as_str().unwrap_or("Immediate");
            if !["Immediate", "WaitForFirstConsumer"].contains(&mode) {
                unsupported(
                    causes,
                    "volumeBindingMode",
                    mode,
                    &["Immediate", "WaitForFirstConsumer"],
                );
            }
            if let Some(old) = old {
                for f in [
                    "provisioner",
                    "parameters",
                    "reclaimPolicy",
                    "volumeBindingMode",
                ] {
                    if old.get(f) != obj.get(f) {
                        causes.push((
                            f.into(),
                            "FieldValueForbidden".into(),
                            format!("Forbidden: updates to {f} are forbidden."),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The volume sources a PV may name (one of them).
const VOLUME_SOURCES: [&str; 8] = [
    "hostPath", "local", "nfs", "csi", "iscsi", "fc", "cephfs", "rbd",
];

/// A claim's spec is immutable once created, except its size, and the volume and
/// class the binder and the admission fill in when they were empty.
fn claim_update(old: &Value, new: &Value, causes: &mut Causes) {
    let mut a = old.get("spec").cloned().unwrap_or(json!({}));
    let mut b = new.get("spec").cloned().unwrap_or(json!({}));
    for s in [&mut a, &mut b] {
        if let Some(r) = s.pointer_mut("/resources").and_then(Value::as_object_mut) {
            r.remove("requests");
        }
        if let Some(m) = s.as_object_mut() {
            m.remove("volumeAttributesClassName");
        }
    }
    for f in ["volumeName", "storageClassName"] {
        if a.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
            if let (Some(m), Some(v)) = (a.as_object_mut(), b.get(f)) {
                m.insert(f.into(), v.clone());
            }
        }
    }
    if a != b {
        causes.push((
            "spec".into(),
            "FieldValueForbidden".into(),
            "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
        ));
    }
}

/// Admission on create: the default StorageClass for a claim that names none
/// (newest default wins, as upstream since 1.28) and the protection finalizers.
pub fn admit_create(store: &dyn Store, t: &Target, obj: &mut Value) -> ApiResult<()> {
    let finalizer = match (t.kind.group, t.kind.kind) {
        ("", "PersistentVolumeClaim") => PVC_PROTECTION,
        ("", "PersistentVolume") => PV_PROTECTION,
        _ => return Ok(()),
    };
    if t.kind.kind == "PersistentVolumeClaim"
        && obj
            .pointer("/spec/storageClassName")
            .is_none_or(Value::is_null)
    {
        if let Some(class) = default_class(store)? {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("storageClassName".into(), json!(class));
            }
        }
    }
    let meta = obj
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("admitted objects have metadata");
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(l) = list.as_array_mut() {
        if !l.iter().any(|f| f == finalizer) {
            l.push(json!(finalizer));
        }
    }
    Ok(())
}

fn default_class(store: &dyn Store) -> ApiResult<Option<String>> {
    let kind = crate::resources::find("storage.k8s.io", "v1", "storageclasses")
        .expect("storageclasses are served");
    let list = store
        .list(&kind.prefix(), &ListOptions::default())
        .map_err(|e| ApiError::internal(format!("listing storage classes: {e}")))?;
    let mut defaults: Vec<&Value> = list
        .items
        .iter()
        .map(|s| &s.value)
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .and_then(Value::as_str)
                == Some("true")
        })
        .collect();
    defaults.sort_by_key(|c| {
        (
            c.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            c.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    });
    Ok(defaults
        .last()
        .and_then(|c| c.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .map(str::to_string))
}
