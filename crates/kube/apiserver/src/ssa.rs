//! Server-side apply and field ownership (metadata.managedFields).
//!
//! Every write records which manager set which fields: an apply owns exactly
//! the fields of its configuration, other writes own the fields they
//! changed. An apply that would change a field another manager owns is a
//! conflict unless forced; fields an apply stops mentioning are removed when
//! no one else owns them. Field paths key list items by their merge key
//! (`k:{"name":"nginx"}`) or value (`v:"x"`), as managedFields' FieldsV1 does.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::patch::{item_identity, merge_with, merges_primitives, Keys};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Field(String),
    /// A list item by its merge key: the key object as JSON.
    Key(String),
    /// A set item by value, as JSON.
    Value(String),
}

pub type Path = Vec<Seg>;
pub type FieldSet = BTreeSet<Path>;

/// Fields that identify the object rather than belong to anyone.
fn identity(path: &[Seg]) -> bool {
    let f = |s: &Seg, n: &str| matches!(s, Seg::Field(x) if x == n);
    match path {
        [a] => f(a, "apiVersion") || f(a, "kind") || f(a, "status"),
        [a, b, ..] if f(a, "metadata") => [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "deletionTimestamp",
        ]
        .iter()
        .any(|n| f(b, n)),
        [a, ..] => f(a, "status"),
        [] => true,
    }
}

fn item_key(field: &str, item: &Value) -> Option<Seg> {
    let id = item_identity(Keys::ListMap, field, item)?;
    Some(Seg::Key(Value::Object(id).to_string()))
}

/// The leaf fields (and keyed list items) set in `v`.
pub fn leaves(v: &Value) -> FieldSet {
    fn walk(v: &Value, field: &str, path: &mut Path, out: &mut FieldSet) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    path.push(Seg::Field(k.clone()));
                    walk(x, k, path, out);
                    path.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let keyed: Option<Vec<Seg>> = items.iter().map(|i| item_key(field, i)).collect();
                if let Some(keys) = keyed {
                    for (seg, item) in keys.into_iter().zip(items) {
                        path.push(seg);
                        out.insert(path.clone());
                        walk(item, field, path, out);
                        path.pop();
                    }
                } else if merges_primitives(field) {
                    for item in items {
                        path.push(Seg::Value(item.to_string()));
                        out.insert(path.clone());
                        path.pop();
                    }
                } else {
                    out.insert(path.clone());
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, "", &mut Vec::new(), &mut out);
    out.retain(|p| !identity(p));
    out
}

/// The item or field `seg` names in `v`, a value of field `field`.
fn child<'a>(v: &'a Value, field: &str, seg: &Seg) -> Option<&'a Value> {
    match seg {
        Seg::Field(f) => v.get(f),
        Seg::Key(k) => {
            let k: Map<String, Value> = serde_json::from_str(k).ok()?;
            v.as_array()?
                .iter()
                .find(|i| item_identity(Keys::ListMap, field, i).as_ref() == Some(&k))
        }
        Seg::Value(x) => {
            let x: Value = serde_json::from_str(x).ok()?;
            v.as_array()?.iter().find(|i| **i == x)
        }
    }
}

/// The field a path's segment is in: the last field named before it.
fn field_before(path: &[Seg], i: usize) -> &str {
    path[..i]
        .iter()
        .rev()
        .find_map(|s| match s {
            Seg::Field(f) => Some(f.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

pub fn value_at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut cur = v;
    for (i, seg) in path.iter().enumerate() {
        cur = child(cur, field_before(path, i), seg)?;
    }
    Some(cur)
}

fn remove_at(v: &mut Value, path: &[Seg]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for (i, seg) in parent.iter().enumerate() {
        let next = match seg {
            Seg::Field(f) => cur.get_mut(f.as_str()),
            Seg::Key(_) | Seg::Value(_) => {
                let target = child(cur, field_before(path, i), seg).cloned();
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|i| Some(&**i) == target.as_ref()))
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Seg::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        seg => {
            let target = child(cur, field_before(path, path.len() - 1), seg).cloned();
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| Some(i) != target.as_ref());
            }
        }
    }
}

/// A path as `.spec.containers[name="nginx"].image`, for messages.
pub fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Seg::Key(k) => {
                let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let inner: Vec<String> = m.iter().map(|(a, b)| format!("{a}={b}")).collect();
                s.push_str(&format!("[{}]", inner.join(",")));
            }
            Seg::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

fn seg_key(seg: &Seg) -> String {
    match seg {
        Seg::Field(f) => format!("f:{f}"),
        Seg::Key(k) => format!("k:{k}"),
        Seg::Value(v) => format!("v:{v}"),
    }
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = json!({});
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .entry(seg_key(seg))
                .or_insert_with(|| json!({}));
        }
        if matches!(path.last(), Some(Seg::Key(_))) {
            cur.as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .insert(".".into(), json!({}));
        }
    }
    root
}

fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, x) in m {
            let seg = if let Some(f) = k.strip_prefix("f:") {
                Seg::Field(f.to_string())
            } else if let Some(f) = k.strip_prefix("k:") {
                Seg::Key(f.to_string())
            } else if let Some(f) = k.strip_prefix("v:") {
                Seg::Value(f.to_string())
            } else {
                continue;
            };
            path.push(seg);
            walk(x, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, list: Vec<Entry>) {
    let now = crate::meta::now();
    let v: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                   "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)})
        })
        .collect();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if v.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(v));
        }
    }
}

/// Record a non-apply write by `manager`: it owns the fields it changed,
/// which no one else owns any more. `new` carries `old`'s managedFields in.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str) {
    let mut list = old.map(entries).unwrap_or_default();
    let changed: FieldSet = leaves(new)
        .into_iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .collect();
    // Fields that disappeared are no one's any more.
    let present = leaves(new);
    for e in &mut list {
        e.fields
            .retain(|p| present.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update")
        {
            Some(e) => e.fields.extend(changed),
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                fields: changed,
            }),
        }
    }
    store_entries(new, list);
}

/// Apply `config` as `manager` to `live` (None: the object does not exist).
/// Err: the conflicting (field, other manager) pairs.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
) -> Result<Value, Vec<(String, String)>> {
    let mut list = live.map(entries).unwrap_or_default();
    let applied = leaves(config);
    let mut conflicts = Vec::new();
    for e in list.iter_mut().filter(|e| e.manager != manager) {
        let clashing: Vec<Path> = e
            .fields
            .iter()
            .filter(|p| applied.contains(*p))
            .filter(|p| live.and_then(|l| value_at(l, p)) != value_at(config, p))
            .cloned()
            .collect();
        for p in clashing {
            if force {
                e.fields.remove(&p);
            } else {
                conflicts.push((display(&p), e.manager.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut out = live.cloned().unwrap_or_else(|| json!({}));
    // Fields this manager applied before and no longer does, owned by no one else.
    let before: FieldSet = list
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply")
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = list
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = before
        .iter()
        .filter(|p| !applied.contains(*p) && !others.contains(*p))
        .collect();
    // A dropped list item goes whole: removing its key fields first would
    // leave it unidentifiable.
    let whole: Vec<Path> = dropped
        .iter()
        .filter(|p| matches!(p.last(), Some(Seg::Key(_))))
        .map(|p| (*p).clone())
        .collect();
    dropped.retain(|p| !whole.iter().any(|w| p.len() > w.len() && p.starts_with(w)));
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove_at(&mut out, p);
    }
    merge_with(&mut out, config, Keys::ListMap);
    list.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    list.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        fields: applied,
    });
    store_entries(&mut out, list);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn fields_v1_round_trip() {
        let set = leaves(&deploy(1, "x"));
        assert!(set.contains(&vec![
            Seg::Field("spec".into()),
            Seg::Field("template".into()),
            Seg::Field("spec".into()),
            Seg::Field("containers".into()),
            Seg::Key(r#"{"name":"c"}"#.into()),
            Seg::Field("image".into()),
        ]));
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn ports_are_keyed_by_number_and_protocol() {
        let svc = |ports: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
                   "spec": {"ports": ports}})
        };
        let both = svc(json!([{"name": "dns", "port": 53, "protocol": "UDP"},
                              {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]));
        let live = apply(None, &both, "alice", false, "v1").unwrap();
        assert_eq!(live["spec"]["ports"].as_array().unwrap().len(), 2);
        let set = leaves(&both);
        assert!(set.contains(&vec![
            Seg::Field("spec".into()),
            Seg::Field("ports".into()),
            Seg::Key(r#"{"port":53,"protocol":"UDP"}"#.into()),
        ]));
        // Applied again with the TCP port's protocol left to the default:
        // the same two items, nothing dropped.
        let again = svc(json!([{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53}]));
        let out = apply(Some(&live), &again, "alice", false, "v1").unwrap();
        let ports = out["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 2, "{ports:?}");
        assert!(ports.iter().any(|p| p["protocol"] == "UDP"));
        // Dropping the UDP port removes only it.
        let tcp = svc(json!([{"name": "dns-tcp", "port": 53, "protocol": "TCP"}]));
        let out = apply(Some(&out), &tcp, "alice", false, "v1").unwrap();
        let ports = out["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{ports:?}");
        assert_eq!(ports[0]["protocol"], "TCP");
    }

    #[test]
    fn conflicts_force_and_removal() {
        let live = apply(None, &deploy(1, "x"), "alice", false, "apps/v1").unwrap();
        // bob changes replicas with an update: he owns it now.
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(5);
        record_update(Some(&live), &mut edited, "bob", "apps/v1");
        let err = apply(Some(&edited), &deploy(1, "y"), "alice", false, "apps/v1").unwrap_err();
        assert_eq!(err, vec![(".spec.replicas".to_string(), "bob".to_string())]);
        // Same value: no conflict; forced: alice takes it back.
        apply(Some(&edited), &deploy(5, "y"), "alice", false, "apps/v1").unwrap();
        let forced = apply(Some(&edited), &deploy(1, "y"), "alice", true, "apps/v1").unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        // A field alice stops applying goes away.
        let mut less = deploy(1, "y");
        less["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply(Some(&forced), &less, "alice", false, "apps/v1").unwrap();
        assert!(out["spec"].get("replicas").is_none(), "{out}");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "y"
        );
    }
}
