//! `kubectl get` output: meta.k8s.io/v1 Table responses with the columns
//! kubectl shows for each built-in kind (priority 1 columns are `-o wide`).

use serde_json::{json, Value};

use crate::meta::age;
use crate::resources::Kind;

/// (name, type, priority)
type Col = (&'static str, &'static str, u8);

fn columns(kind: &Kind) -> Vec<Col> {
    let name = ("Name", "string", 0);
    let age = ("Age", "string", 0);
    match (kind.group, kind.kind) {
        ("", "Namespace") => vec![name, ("Status", "string", 0), age],
        ("", "ConfigMap") => vec![name, ("Data", "integer", 0), age],
        ("", "Secret") => vec![name, ("Type", "string", 0), ("Data", "integer", 0), age],
        ("", "ServiceAccount") => vec![name, ("Secrets", "integer", 0), age],
        ("", "Pod") => vec![
            name,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            age,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        ("", "Service") => vec![
            name,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            age,
            ("Selector", "string", 1),
        ],
        ("", "Node") => vec![
            name,
            ("Status", "string", 0),
            ("Roles", "string", 0),
            age,
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
        ],
        ("", "Event") => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        ("apps", "Deployment") => vec![
            name,
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "ReplicaSet") => vec![
            name,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("", "PersistentVolume") => vec![
            name,
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            age,
            ("VolumeMode", "string", 1),
        ],
        ("", "PersistentVolumeClaim") => vec![
            name,
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            age,
            ("VolumeMode", "string", 1),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            name,
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            age,
        ],
        _ => vec![name, age],
    }
}

/// kubectl's short access modes (`RWO,ROX`).
fn access_modes(obj: &Value, ptr: &str) -> String {
    let modes = obj.pointer(ptr).and_then(Value::as_array);
    modes
        .into_iter()
        .flatten()
        .filter_map(|m| match m.as_str()? {
            "ReadWriteOnce" => Some("RWO"),
            "ReadOnlyMany" => Some("ROX"),
            "ReadWriteMany" => Some("RWX"),
            "ReadWriteOncePod" => Some("RWOP"),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A PV's or PVC's phase, Terminating once deleted.
fn storage_phase(obj: &Value) -> String {
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating".into()
    } else {
        s(obj, "/status/phase").into()
    }
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn n(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn count(obj: &Value, ptr: &str) -> usize {
    match obj.pointer(ptr) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn containers_images(obj: &Value, ptr: &str) -> (String, String) {
    let cs = obj.pointer(ptr).and_then(Value::as_array);
    let join = |field: &str| {
        cs.map(|cs| {
            cs.iter()
                .map(|c| c.get(field).and_then(Value::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
    };
    (join("name"), join("image"))
}

fn selector(obj: &Value, ptr: &str) -> String {
    let labels = obj.pointer(ptr).and_then(Value::as_object);
    or_none(
        labels
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    )
}

fn cells(kind: &Kind, obj: &Value) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    let a = json!(age(obj));
    match (kind.group, kind.kind) {
        ("", "Namespace") => vec![name, json!(s(obj, "/status/phase")), a],
        ("", "ConfigMap") => {
            vec![
                name,
                json!(count(obj, "/data") + count(obj, "/binaryData")),
                a,
            ]
        }
        ("", "Secret") => vec![name, json!(s(obj, "/type")), json!(count(obj, "/data")), a],
        ("", "ServiceAccount") => vec![name, json!(count(obj, "/secrets")), a],
        ("", "Pod") => {
            let total = count(obj, "/spec/containers");
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses
                .map(|s| s.iter().filter(|c| c["ready"] == true).count())
                .unwrap_or(0);
            let restarts: i64 = statuses
                .map(|s| {
                    s.iter()
                        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0);
            let phase = if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                s(obj, "/status/phase")
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(phase),
                json!(restarts.to_string()),
                a,
                json!(or_none(s(obj, "/status/podIP").into())),
                json!(or_none(s(obj, "/spec/nodeName").into())),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        ("", "Service") => {
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let node = p
                                .get("nodePort")
                                .and_then(Value::as_i64)
                                .map(|np| format!(":{np}"))
                                .unwrap_or_default();
                            format!(
                                "{}{node}/{}",
                                p["port"].as_i64().unwrap_or(0),
                                p["protocol"].as_str().unwrap_or("TCP")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let external = obj
                .pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .map(|ips| {
                    ips.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(obj, "/spec/type")),
                json!(or_none(s(obj, "/spec/clusterIP").into())),
                json!(or_none(external)),
                json!(or_none(ports)),
                a,
                json!(selector(obj, "/spec/selector")),
            ]
        }
        ("", "Node") => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let ip = obj
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or("<none>");
            vec![
                name,
                json!(ready),
                json!("<none>"),
                a,
                json!(s(obj, "/status/nodeInfo/kubeletVersion")),
                json!(ip),
            ]
        }
        ("", "Event") => {
            let last = [
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .map(|p| s(obj, p))
            .find(|t| !t.is_empty())
            .and_then(crate::meta::age_seconds)
            .map(crate::meta::human_duration)
            .unwrap_or_else(|| "<unknown>".into());
            let object = format!(
                "{}/{}",
                s(obj, "/involvedObject/kind").to_lowercase(),
                s(obj, "/involvedObject/name")
            );
            vec![
                json!(last),
                json!(s(obj, "/type")),
                json!(s(obj, "/reason")),
                json!(object),
                json!(s(obj, "/message")),
            ]
        }
        ("apps", "Deployment") => {
            let (c, i) = containers_images(obj, "/spec/template/spec/containers");
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    n(obj, "/status/readyReplicas"),
                    n(obj, "/spec/replicas")
                )),
                json!(n(obj, "/status/updatedReplicas").to_string()),
                json!(n(obj, "/status/availableReplicas").to_string()),
                a,
                json!(c),
                json!(i),
                json!(selector(obj, "/spec/selector/matchLabels")),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (c, i) = containers_images(obj, "/spec/template/spec/containers");
            vec![
                name,
                json!(n(obj, "/spec/replicas")),
                json!(n(obj, "/status/replicas")),
                json!(n(obj, "/status/readyReplicas")),
                a,
                json!(c),
                json!(i),
                json!(selector(obj, "/spec/selector/matchLabels")),
            ]
        }
        ("", "PersistentVolume") => {
            let claim = match s(obj, "/spec/claimRef/name") {
                "" => String::new(),
                c => format!("{}/{c}", s(obj, "/spec/claimRef/namespace")),
            };
            vec![
                name,
                json!(s(obj, "/spec/capacity/storage")),
                json!(access_modes(obj, "/spec/accessModes")),
                json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(storage_phase(obj)),
                json!(claim),
                json!(s(obj, "/spec/storageClassName")),
                json!("<unset>"),
                json!(s(obj, "/status/reason")),
                a,
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolumeClaim") => vec![
            name,
            json!(storage_phase(obj)),
            json!(s(obj, "/spec/volumeName")),
            json!(s(obj, "/status/capacity/storage")),
            json!(access_modes(obj, "/status/accessModes")),
            json!(s(obj, "/spec/storageClassName")),
            json!("<unset>"),
            a,
            json!(s(obj, "/spec/volumeMode")),
        ],
        ("storage.k8s.io", "StorageClass") => {
            let mut n = s(obj, "/metadata/name").to_string();
            if obj
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true")
            {
                n.push_str(" (default)");
            }
            vec![
                json!(n),
                json!(s(obj, "/provisioner")),
                json!(s(obj, "/reclaimPolicy")),
                json!(s(obj, "/volumeBindingMode")),
                json!(obj["allowVolumeExpansion"]
                    .as_bool()
                    .unwrap_or(false)
                    .to_string()),
                a,
            ]
        }
        _ => vec![name, a],
    }
}

/// The row's object: the whole object or only its metadata (`includeObject`).
fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

/// A Table of `objects`; `headers` false for watch events after the first.
pub fn table(
    kind: &Kind,
    objects: &[&Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include: &str,
    headers: bool,
) -> Value {
    // A custom kind: Name, its CRD's additionalPrinterColumns, else Age.
    let custom = crate::crd::custom(kind).filter(|c| !c.columns.is_empty());
    let custom_cells = |o: &Value| -> Vec<Value> {
        let cols = custom
            .as_ref()
            .map(|c| c.columns.as_slice())
            .unwrap_or_default();
        let mut out = vec![o["metadata"]["name"].clone()];
        for c in cols {
            let v = crate::crd::column_value(o, c["jsonPath"].as_str().unwrap_or(""));
            let v = match (c["type"].as_str(), &v) {
                (Some("date"), Value::String(t)) => crate::meta::age_seconds(t)
                    .map(|s| json!(crate::meta::human_duration(s)))
                    .unwrap_or(v),
                _ => v,
            };
            out.push(v);
        }
        out
    };
    let defs: Vec<Value> = if let (true, Some(c)) = (headers, &custom) {
        let mut d = vec![json!({"name": "Name", "type": "string", "format": "name",
                                "description": "", "priority": 0})];
        for col in &c.columns {
            d.push(json!({"name": col["name"], "type": col["type"],
                          "format": col.get("format").cloned().unwrap_or(json!("")),
                          "description": col.get("description").cloned().unwrap_or(json!("")),
                          "priority": col.get("priority").cloned().unwrap_or(json!(0))}));
        }
        d
    } else if headers {
        columns(kind)
            .into_iter()
            .map(|(name, ty, priority)| {
                json!({
                    "name": name, "type": ty,
                    "format": if name == "Name" { "name" } else { "" },
                    "description": "", "priority": priority,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells = if custom.is_some() {
                custom_cells(o)
            } else {
                cells(kind, o)
            };
            json!({"cells": cells, "object": row_object(o, include)})
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": meta, "columnDefinitions": defs, "rows": rows,
    })
}
