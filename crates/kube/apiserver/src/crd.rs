//! CustomResourceDefinitions (apiextensions.k8s.io/v1): each served version
//! of an Established CRD becomes a kind the generic handler serves like a
//! built-in one, and its structural `openAPIV3Schema` prunes unknown fields
//! (unless `x-kubernetes-preserve-unknown-fields`), applies defaults and
//! validates custom objects with upstream-like field paths.
//!
//! Kinds are `&'static` everywhere in the server: a CRD's kinds are leaked
//! once per distinct definition (a handful of bytes per CRD change).

use std::collections::HashMap;
use std::sync::RwLock;

use hako_kube_store::{ListOptions, Store};
use serde_json::{json, Value};

use crate::resources::{Kind, NameRule};
use crate::status::quoted;

pub const GROUP: &str = "apiextensions.k8s.io";

/// What a served custom kind needs beyond its [`Kind`].
#[derive(Clone, PartialEq)]
pub struct Custom {
    pub schema: Value,
    pub columns: Vec<Value>,
}

struct Registry {
    kinds: Vec<&'static Kind>,
    custom: HashMap<(String, String, String), Custom>,
    /// Leaked kinds by their definition, reused while it does not change.
    leaked: HashMap<String, &'static Kind>,
}

static REGISTRY: RwLock<Option<Registry>> = RwLock::new(None);

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(v: &Value) -> &'static [&'static str] {
    let items: Vec<&'static str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(leak)
        .collect();
    Box::leak(items.into_boxed_slice())
}

/// Custom kinds' schemas come from their CRD (`openapi::custom_schema`).
fn no_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    schemars::schema::Schema::Bool(true)
}

/// Custom objects keep what their schema keeps (checked in [`admit`]).
fn identity(v: &Value) -> Result<Value, String> {
    Ok(v.clone())
}

/// The served custom kinds.
pub fn kinds() -> Vec<&'static Kind> {
    REGISTRY
        .read()
        .map(|r| r.as_ref().map(|r| r.kinds.clone()).unwrap_or_default())
        .unwrap_or_default()
}

/// The schema and columns of a custom kind; None for built-in kinds.
pub fn custom(kind: &Kind) -> Option<Custom> {
    let r = REGISTRY.read().ok()?;
    r.as_ref()?
        .custom
        .get(&(
            kind.group.to_string(),
            kind.version.to_string(),
            kind.plural.to_string(),
        ))
        .cloned()
}

/// Rebuild the served kinds from the CRDs in the store.
pub fn refresh(store: &dyn Store) {
    let Some(crd_kind) = crate::resources::find_static(GROUP, "v1", "customresourcedefinitions")
    else {
        return;
    };
    let crds = store
        .list(&crd_kind.prefix(), &ListOptions::default())
        .map(|r| r.items)
        .unwrap_or_default();
    let mut guard = match REGISTRY.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let reg = guard.get_or_insert_with(|| Registry {
        kinds: Vec::new(),
        custom: HashMap::new(),
        leaked: HashMap::new(),
    });
    reg.kinds.clear();
    reg.custom.clear();
    for crd in crds {
        let crd = crd.value;
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or("");
        if group.is_empty() || plural.is_empty() {
            continue;
        }
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"] != json!(true) {
                continue;
            }
            let version = v["name"].as_str().unwrap_or("");
            let mut subs: Vec<&str> = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subs.push("status");
            }
            if v.pointer("/subresources/scale").is_some() {
                subs.push("scale");
            }
            let signature = json!([group, version, names, spec["scope"], subs]).to_string();
            let kind = *reg.leaked.entry(signature).or_insert_with(|| {
                let kind_name = names["kind"].as_str().unwrap_or("");
                let singular = names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| kind_name.to_lowercase());
                Box::leak(Box::new(Kind {
                    group: leak(group),
                    version: leak(version),
                    plural: leak(plural),
                    singular: leak(&singular),
                    kind: leak(kind_name),
                    namespaced: spec["scope"] == json!("Namespaced"),
                    short_names: leak_list(&names["shortNames"]),
                    categories: leak_list(&names["categories"]),
                    subresources: Box::leak(
                        subs.iter()
                            .map(|s| leak(s))
                            .collect::<Vec<_>>()
                            .into_boxed_slice(),
                    ),
                    names: NameRule::Subdomain,
                    generation: true,
                    decode: identity,
                    schema: no_schema,
                }))
            });
            reg.kinds.push(kind);
            reg.custom.insert(
                (group.into(), version.into(), plural.into()),
                Custom {
                    schema: v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(
                        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                    ),
                    columns: v["additionalPrinterColumns"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                },
            );
        }
    }
}

/// A new CRD's status: its names accepted and the CRD established (hako
/// serves it as soon as it is stored).
pub fn initial_status(crd: &mut Value) {
    let now = crate::meta::now();
    let names = crd["spec"]["names"].clone();
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == json!(true))
        .map(|v| v["name"].clone())
        .collect();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    });
}

/// Problems with a CRD itself, as (field, reason, message).
pub fn check_definition(crd: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    let want = format!("{plural}.{group}");
    if name != want {
        out.push((
            "metadata.name".into(),
            "FieldValueInvalid".into(),
            format!(
                "Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                quoted(name)
            ),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count();
    if storage != 1 {
        out.push((
            "spec.versions".into(),
            "FieldValueInvalid".into(),
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                quoted(&format!(
                    "{:?}",
                    versions
                        .iter()
                        .map(|v| v["name"].as_str().unwrap_or(""))
                        .collect::<Vec<_>>()
                ))
            ),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            out.push((
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "FieldValueRequired".into(),
                "Required value: schemas are required".into(),
            ));
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => quoted(s),
        other => other.to_string(),
    }
}

/// Walk `v` under `schema`: drop fields the schema does not know (their
/// paths go to `pruned`), fill defaults, and collect problems.
fn walk(
    schema: &Value,
    v: &mut Value,
    path: &str,
    pruned: &mut Vec<String>,
    errs: &mut Vec<(String, String, String)>,
) {
    let field = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if v.is_null() {
        return;
    }
    if let Some(t) = schema["type"].as_str() {
        let got = type_name(v);
        let int_or_string = schema["x-kubernetes-int-or-string"] == json!(true)
            && matches!(got, "integer" | "string");
        let ok = got == t || (t == "number" && got == "integer") || int_or_string;
        if !ok {
            errs.push((
                path.to_string(),
                "FieldValueTypeInvalid".into(),
                format!(
                    "Invalid value: {}: {path} in body must be of type {t}: {}",
                    show(v),
                    quoted(got)
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            let list = allowed.iter().map(show).collect::<Vec<_>>().join(", ");
            errs.push((
                path.to_string(),
                "FieldValueNotSupported".into(),
                format!("Unsupported value: {}: supported values: {list}", show(v)),
            ));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema["minimum"].as_f64() {
            if n < min {
                errs.push((
                    path.to_string(),
                    "FieldValueInvalid".into(),
                    format!(
                        "Invalid value: {}: {path} in body should be greater than or equal to {}",
                        show(v),
                        schema["minimum"]
                    ),
                ));
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            if n > max {
                errs.push((
                    path.to_string(),
                    "FieldValueInvalid".into(),
                    format!(
                        "Invalid value: {}: {path} in body should be less than or equal to {}",
                        show(v),
                        schema["maximum"]
                    ),
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
            errs.push((
                path.to_string(),
                "FieldValueTooLong".into(),
                format!(
                    "Too long: may not be more than {} bytes",
                    schema["maxLength"]
                ),
            ));
        }
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            errs.push((
                path.to_string(),
                "FieldValueInvalid".into(),
                format!(
                    "Invalid value: {}: {path} in body should be at least {} chars long",
                    show(v),
                    schema["minLength"]
                ),
            ));
        }
    }
    match v {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
            // Defaults first, so required checks see them.
            if let Some(props) = props {
                for (k, p) in props {
                    if let (false, Some(d)) = (map.contains_key(k), p.get("default")) {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = r.as_str() {
                    if !map.contains_key(r) {
                        errs.push((
                            field(r),
                            "FieldValueRequired".into(),
                            "Required value".into(),
                        ));
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                // The object's own metadata is the server's business.
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(match additional {
                    Some(Value::Object(_)) => additional,
                    _ => None,
                });
                match sub {
                    Some(s) => walk(
                        s,
                        map.get_mut(&k).expect("key listed"),
                        &field(&k),
                        pruned,
                        errs,
                    ),
                    None if preserve || additional == Some(&json!(true)) => {}
                    None => {
                        map.remove(&k);
                        pruned.push(field(&k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), pruned, errs);
                }
            }
        }
        _ => {}
    }
}

/// Prune, default and validate a custom object against its schema:
/// (the object as kept, the pruned field paths, the problems).
pub fn structural(
    custom: &Custom,
    obj: &Value,
) -> (Value, Vec<String>, Vec<(String, String, String)>) {
    let mut v = obj.clone();
    let mut pruned = Vec::new();
    let mut errs = Vec::new();
    walk(&custom.schema, &mut v, "", &mut pruned, &mut errs);
    (v, pruned, errs)
}

/// The Table cells of `additionalPrinterColumns` (JSONPath `.a.b` only).
pub fn column_value(obj: &Value, json_path: &str) -> Value {
    let mut cur = obj;
    for part in json_path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        match cur.get(part) {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    cur.clone()
}

/// Delete every object of the CRD `crd` (it was deleted).
pub fn delete_objects(store: &dyn Store, crd: &Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
    if group.is_empty() || plural.is_empty() {
        return;
    }
    let prefix = format!("/{group}/{plural}/");
    let items = store
        .list(&prefix, &ListOptions::default())
        .map(|r| r.items)
        .unwrap_or_default();
    for item in items {
        let m = &item.value["metadata"];
        let key = match m["namespace"].as_str() {
            Some(ns) => format!("{prefix}{ns}/{}", m["name"].as_str().unwrap_or("")),
            None => format!("{prefix}{}", m["name"].as_str().unwrap_or("")),
        };
        if let Err(e) = store.delete(&key, None) {
            tracing::warn!("deleting {key} with its CustomResourceDefinition: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_prunes_defaults_and_reports_paths() {
        let c = Custom {
            schema: json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1},
                "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }}}}),
            columns: vec![],
        };
        let (v, pruned, errs) = structural(
            &c,
            &json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
                    "spec": {"size": 2, "bogus": 1, "free": {"any": [1]}}, "extra": true}),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let mut pruned = pruned;
        pruned.sort();
        assert_eq!(pruned, ["extra", "spec.bogus"]);
        assert_eq!(v["spec"]["color"], "blue");
        assert_eq!(v["spec"]["free"]["any"], json!([1]));
        let (_, _, errs) = structural(&c, &json!({"spec": {"size": "big", "color": "green"}}));
        let msg = |f: &str| errs.iter().find(|e| e.0 == f).map(|e| e.2.clone());
        assert_eq!(
            msg("spec.color").unwrap(),
            "Unsupported value: \"green\": supported values: \"blue\", \"red\""
        );
        assert_eq!(
            msg("spec.size").unwrap(),
            "Invalid value: \"big\": spec.size in body must be of type integer: \"string\""
        );
        let (_, _, errs) = structural(&c, &json!({"spec": {}}));
        assert_eq!(errs[0].0, "spec.size");
    }
}
