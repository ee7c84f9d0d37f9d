//! The three patch types kubectl sends: JSON merge patch (RFC 7386), JSON
//! patch (RFC 6902) and strategic merge patch (lists merged by key, with the
//! `$patch`, `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList`
//! directives `kubectl apply` uses).

use serde_json::{Map, Value};

use crate::status::ApiError;

pub const MERGE: &str = "application/merge-patch+json";
pub const JSON: &str = "application/json-patch+json";
pub const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// Apply a patch of media type `ct` to `current`.
pub fn apply(ct: &str, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the patch is not valid JSON: {}",
            crate::handler::sanitize(&e.to_string())
        ))
    })?;
    let mut out = current.clone();
    match ct {
        MERGE => json_patch::merge(&mut out, &patch),
        JSON => {
            let p: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
                ApiError::bad_request(format!(
                    "the JSON patch is not a list of operations: {}",
                    crate::handler::sanitize(&e.to_string())
                ))
            })?;
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::internal(format!(
                    "applying the JSON patch: {}",
                    crate::handler::sanitize(&e.to_string())
                ))
            })?;
        }
        STRATEGIC => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(&mut out, &patch);
        }
        other => return Err(ApiError::unsupported_media(other)),
    }
    Ok(out)
}

/// The merge key of list `field` (None: the list is replaced whole), given
/// one of its elements (container and service ports differ).
pub fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// How list items are matched with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// A strategic merge patch: by the patch merge key alone (upstream's
    /// `patchMergeKey`; a Service's ports merge by `port`, so 53/UDP and
    /// 53/TCP are one item there, as upstream's).
    Patch,
    /// Server-side apply: by the list-map keys (`x-kubernetes-list-map-keys`),
    /// where ports are keyed by number and protocol (defaulted to TCP, as the
    /// server defaults the applied configuration).
    ListMap,
}

/// The identity of `item` in list `field`: its key fields and their values
/// (None: the list has no keys, or the item lacks its key).
pub fn item_identity(keys: Keys, field: &str, item: &Value) -> Option<Map<String, Value>> {
    let key = merge_key(field, Some(item))?;
    let mut id = Map::new();
    id.insert(key.to_string(), item.get(key)?.clone());
    if keys == Keys::ListMap && field == "ports" {
        let protocol = item.get("protocol").cloned();
        id.insert(
            "protocol".into(),
            protocol.unwrap_or_else(|| Value::String("TCP".into())),
        );
    }
    Some(id)
}

/// Lists of scalars merged as sets rather than replaced.
pub fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Apply a strategic merge patch to `target` in place.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    merge_with(target, patch, Keys::Patch)
}

/// Merge `patch` into `target`, matching list items by `keys`.
pub fn merge_with(target: &mut Value, patch: &Value, keys: Keys) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.remove("$patch");
        *target = Value::Object(clean);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("target is an object");
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let _ = field;
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(vo) => match vo.get("$patch").and_then(Value::as_str) {
                Some("delete") => {
                    t.remove(k);
                }
                _ => merge_with(t.entry(k.clone()).or_insert(Value::Null), v, keys),
            },
            Value::Array(items) => {
                let merged = merge_list(k, t.get(k), items, keys);
                t.insert(k.clone(), merged);
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    // Directives that refer to other fields, applied after the merge.
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let (Some(Value::Array(list)), Some(order)) = (t.get_mut(field), v.as_array()) {
                reorder(field, list, order);
            }
        }
    }
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn merge_list(field: &str, current: Option<&Value>, items: &[Value], keys: Keys) -> Value {
    let mut cur: Vec<Value> = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // `{"$patch": "replace"}` among the items: the list is the other items.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        );
    }
    let sample = items.first().or(cur.first());
    if merge_key(field, sample).is_some() && items.iter().all(Value::is_object) {
        for item in items {
            let id = item_identity(keys, field, item);
            let pos = cur
                .iter()
                .position(|c| id.is_some() && item_identity(keys, field, c) == id);
            let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
            match (pos, delete) {
                (Some(i), true) => {
                    cur.remove(i);
                }
                (None, true) => {}
                (Some(i), false) => merge_with(&mut cur[i], item, keys),
                (None, false) => {
                    let mut fresh = Value::Null;
                    merge_with(&mut fresh, item, keys);
                    cur.push(fresh);
                }
            }
        }
        return Value::Array(cur);
    }
    if merges_primitives(field) {
        for item in items {
            if !cur.contains(item) {
                cur.push(item.clone());
            }
        }
        return Value::Array(cur);
    }
    Value::Array(items.to_vec())
}

/// Order `list` as `order` says (by merge key for objects); items not named
/// keep their relative order after the named ones.
fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let key = merge_key(field, order.first().or(list.first()));
    let id = |v: &Value| match key {
        Some(k) if v.is_object() => v.get(k).cloned(),
        _ => Some(v.clone()),
    };
    let rank = |v: &Value| {
        let i = id(v);
        order.iter().position(|o| id(o) == i).unwrap_or(order.len())
    };
    list.sort_by_key(|v| rank(v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Cases from the upstream strategic merge patch description
    // (community/contributors/devel/sig-api-machinery/strategic-merge-patch.md).
    #[test]
    fn containers_merge_by_name() {
        let mut o = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic_merge(
            &mut o,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
        );
        assert_eq!(
            o,
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}})
        );
    }

    #[test]
    fn directives() {
        let mut o = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                           "metadata": {"finalizers": ["x", "y"], "labels": {"k": "v", "gone": "1"}}});
        strategic_merge(
            &mut o,
            &json!({
                "spec": {"containers": [{"name": "a", "$patch": "delete"}],
                         "$setElementOrder/containers": [{"name": "b"}]},
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "labels": {"gone": null}},
            }),
        );
        assert_eq!(
            o,
            json!({"spec": {"containers": [{"name": "b"}]},
                   "metadata": {"finalizers": ["y"], "labels": {"k": "v"}}})
        );
        let mut o = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        strategic_merge(
            &mut o,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(o, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let mut o = json!({"a": {"b": 1, "c": 2}});
        strategic_merge(&mut o, &json!({"a": {"$patch": "replace", "d": 3}}));
        assert_eq!(o, json!({"a": {"d": 3}}));
    }

    #[test]
    fn other_lists_are_replaced_and_ports_merge_by_their_key() {
        let mut o = json!({"args": ["1", "2"], "ports": [{"port": 80, "name": "http"}]});
        strategic_merge(&mut o, &json!({"args": ["3"], "ports": [{"port": 443}]}));
        assert_eq!(
            o,
            json!({"args": ["3"], "ports": [{"port": 80, "name": "http"}, {"port": 443}]})
        );
    }
}
