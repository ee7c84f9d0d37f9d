//! Per-kind rules upstream enforces beyond the schema's types, with its
//! 422 messages: pods need named containers with images, workloads need a
//! selector that matches their template, immutable fields stay as they
//! are; and the writes upstream rewrites (a Secret's stringData into data,
//! a Job's generated selector).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::handler::{ApiResult, Target};
use crate::status::{quoted, ApiError};

type Causes = Vec<(String, String, String)>;

fn required(causes: &mut Causes, field: String) {
    causes.push((field, "FieldValueRequired".into(), "Required value".into()));
}

fn invalid(causes: &mut Causes, field: String, msg: String) {
    causes.push((field, "FieldValueInvalid".into(), msg));
}

fn forbidden(causes: &mut Causes, field: String, msg: String) {
    causes.push((
        field,
        "FieldValueForbidden".into(),
        format!("Forbidden: {msg}"),
    ));
}

/// Go's `%#v` of a map[string]string (sorted keys), as upstream prints it.
fn go_map(m: Option<&Map<String, Value>>) -> String {
    match m {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", quoted(k), quoted(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// Go's `%#v` of a v1.LabelSelector.
fn go_selector(sel: &Value) -> String {
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(v) => format!(
                            "[]string{{{}}}",
                            v.iter()
                                .map(|x| quoted(x.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        quoted(e["key"].as_str().unwrap_or("")),
                        quoted(e["operator"].as_str().unwrap_or(""))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_map(sel.get("matchLabels").and_then(Value::as_object))
    )
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether a label selector selects `labels`.
fn selects(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let empty = Map::new();
    let labels = labels.unwrap_or(&empty);
    let ml_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|ml| ml.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let exprs_ok = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|es| {
            es.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or("");
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let have = labels.get(key).and_then(Value::as_str);
                match e["operator"].as_str().unwrap_or("") {
                    "In" => have.is_some_and(|h| values.contains(&h)),
                    "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
        });
    ml_ok && exprs_ok
}

fn selector_is_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// Containers (and init containers) of a pod spec at `path`.
fn pod_spec(spec: Option<&Value>, path: &str, causes: &mut Causes) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        required(causes, format!("{path}.containers"));
    }
    let mut seen: Vec<String> = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.and_then(|s| s.get(list)).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str).unwrap_or("") {
                "" => required(causes, format!("{at}.name")),
                n if !is_label(n) => invalid(
                    causes,
                    format!("{at}.name"),
                    format!("Invalid value: {}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')", quoted(n)),
                ),
                n if seen.iter().any(|s| s == n) => causes.push((
                    format!("{at}.name"),
                    "FieldValueDuplicate".into(),
                    format!("Duplicate value: {}", quoted(n)),
                )),
                n => seen.push(n.to_string()),
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|i| i.trim().is_empty())
            {
                required(causes, format!("{at}.image"));
            }
        }
    }
}

/// A workload's selector and template (Deployment, ReplicaSet,
/// StatefulSet, DaemonSet).
fn workload(obj: &Value, kind: &str, causes: &mut Causes) {
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        if r < 0 {
            invalid(
                causes,
                "spec.replicas".into(),
                format!("Invalid value: {r}: must be greater than or equal to 0"),
            );
        }
    }
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) => required(causes, "spec.selector".into()),
        Some(sel) if selector_is_empty(sel) => invalid(
            causes,
            "spec.selector".into(),
            format!(
                "Invalid value: {}: empty selector is invalid for {}",
                go_selector(sel),
                kind.to_lowercase()
            ),
        ),
        Some(sel) => {
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            if !selects(sel, labels) {
                invalid(
                    causes,
                    "spec.template.metadata.labels".into(),
                    format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        go_map(labels)
                    ),
                );
            }
        }
    }
    pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
}

/// Upstream's Job selector: generated from the Job's uid unless
/// `manualSelector` is true, with the matching labels on the template.
fn job_selector(obj: &mut Value, causes: &mut Causes) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        if obj.pointer("/spec/selector").is_none_or(Value::is_null) {
            required(causes, "spec.selector".into());
        }
        return;
    }
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let generated = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) => obj["spec"]["selector"] = generated,
        Some(sel) if *sel == generated => {}
        Some(sel) => {
            let shown = go_selector(sel);
            invalid(
                causes,
                "spec.selector".into(),
                format!("Invalid value: {shown}: `selector` not auto-generated"),
            );
            return;
        }
    }
    if !obj["spec"]["template"].is_object() {
        obj["spec"]["template"] = json!({});
    }
    if !obj["spec"]["template"]["metadata"].is_object() {
        obj["spec"]["template"]["metadata"] = json!({});
    }
    let meta = &mut obj["spec"]["template"]["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        meta["labels"][k] = json!(v);
    }
}

fn job(obj: &Value, causes: &mut Causes) {
    for f in ["parallelism", "completions", "backoffLimit"] {
        if let Some(n) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64) {
            if n < 0 {
                invalid(
                    causes,
                    format!("spec.{f}"),
                    format!("Invalid value: {n}: must be greater than or equal to 0"),
                );
            }
        }
    }
    let rp = obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str);
    if !matches!(rp, Some("OnFailure" | "Never")) {
        causes.push((
            "spec.template.spec.restartPolicy".into(),
            "FieldValueRequired".into(),
            "Required value: valid values: \"OnFailure\", \"Never\"".into(),
        ));
    }
    pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
}

/// Upstream's Job defaults (besides the pod template's).
pub fn job_defaults(obj: &mut Value) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = obj["spec"].as_object_mut().expect("spec is an object");
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    spec.entry("parallelism").or_insert(json!(1));
    spec.entry("backoffLimit").or_insert(json!(6));
    spec.entry("completionMode").or_insert(json!("NonIndexed"));
    spec.entry("suspend").or_insert(json!(false));
    if !spec.contains_key("podFailurePolicy") {
        spec.entry("podReplacementPolicy")
            .or_insert(json!("TerminatingOrFailed"));
    }
}

/// A Secret's `stringData` goes into `data` (base64), as upstream writes it.
fn secret_string_data(obj: &mut Value) {
    let Some(sd) = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
    else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in sd {
        let text = v.as_str().unwrap_or("");
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// An Ingress backend: a Service with a port number or name (or a resource).
fn ingress_backend(b: &Value, field: &str, causes: &mut Causes) {
    let svc = &b["service"];
    if svc.is_null() {
        if b["resource"].is_null() {
            invalid(
                causes,
                field.to_string(),
                "Invalid value: \"\": one backend (`service` or `resource`) must be specified"
                    .into(),
            );
        }
        return;
    }
    if svc["name"].as_str().is_none_or(str::is_empty) {
        required(causes, format!("{field}.service.name"));
    }
    let port = &svc["port"];
    match (port["number"].as_i64(), port["name"].as_str()) {
        (Some(_), Some(_)) => invalid(
            causes,
            format!("{field}.service.port"),
            "Invalid value: \"\": cannot set both port name & port number".into(),
        ),
        (Some(n), None) if !(1..=65535).contains(&n) => invalid(
            causes,
            format!("{field}.service.port.number"),
            format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
        ),
        (None, None) => invalid(
            causes,
            format!("{field}.service.port"),
            "Invalid value: \"\": port name or number is required".into(),
        ),
        _ => {}
    }
}

/// An Ingress's rules as upstream checks them: a backend somewhere, every
/// path with a supported `pathType` and (Exact/Prefix) an absolute path.
fn ingress(obj: &Value, causes: &mut Causes) {
    let spec = &obj["spec"];
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() && spec["defaultBackend"].is_null() {
        invalid(
            causes,
            "spec".into(),
            "Invalid value: \"\": either `defaultBackend` or `rules` must be specified".into(),
        );
    }
    if !spec["defaultBackend"].is_null() {
        ingress_backend(&spec["defaultBackend"], "spec.defaultBackend", causes);
    }
    for (i, r) in rules.iter().enumerate() {
        let host = r["host"].as_str().unwrap_or("");
        if host.contains(':') || host.parse::<std::net::IpAddr>().is_ok() {
            invalid(
                causes,
                format!("spec.rules[{i}].host"),
                format!(
                    "Invalid value: {}: must be a DNS name, not an IP address",
                    quoted(host)
                ),
            );
        }
        for (j, p) in r["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let path = p["path"].as_str().unwrap_or("");
            match p["pathType"].as_str() {
                None => required(causes, format!("{field}.pathType")),
                Some("Exact" | "Prefix") if !path.starts_with('/') => invalid(
                    causes,
                    format!("{field}.path"),
                    format!("Invalid value: {}: must be an absolute path", quoted(path)),
                ),
                Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                Some(t) => invalid(
                    causes,
                    format!("{field}.pathType"),
                    format!("Unsupported value: {}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"", quoted(t)),
                ),
            }
            ingress_backend(&p["backend"], &format!("{field}.backend"), causes);
        }
    }
}

fn immutable(causes: &mut Causes, field: &str, shown: String) {
    invalid(
        causes,
        field.to_string(),
        format!("Invalid value: {shown}: field is immutable"),
    );
}

/// What may not change once set.
fn immutables(t: &Target, old: &Value, new: &Value, causes: &mut Causes) {
    let kind = (t.kind.group, t.kind.kind);
    match kind {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") | ("batch", "Job") => {
            let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
            if o != n {
                immutable(
                    causes,
                    "spec.selector",
                    go_selector(n.unwrap_or(&Value::Null)),
                );
            }
            if kind == ("batch", "Job")
                && old.pointer("/spec/template") != new.pointer("/spec/template")
            {
                immutable(causes, "spec.template", "core.PodTemplateSpec{...}".into());
            }
        }
        ("apps", "StatefulSet") => {
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                s
            };
            if strip(old) != strip(new) {
                forbidden(causes, "spec".into(), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into());
            }
        }
        ("", "ConfigMap" | "Secret") if old.get("immutable") == Some(&json!(true)) => {
            if new.get("immutable") != Some(&json!(true)) {
                forbidden(
                    causes,
                    "immutable".into(),
                    "field is immutable when `immutable` is set".into(),
                );
            }
            let fields: &[&str] = if kind.1 == "ConfigMap" {
                &["data", "binaryData"]
            } else {
                &["data"]
            };
            for f in fields {
                if old.get(*f) != new.get(*f) {
                    forbidden(
                        causes,
                        f.to_string(),
                        "field is immutable when `immutable` is set".into(),
                    );
                }
            }
        }
        _ => {}
    }
}

/// Rewrite and check `obj` (being created, or updated from `old`): 422
/// Invalid with every problem found.
pub fn prepare_and_check(t: &Target, old: Option<&Value>, obj: &mut Value) -> ApiResult<()> {
    let mut causes = Causes::new();
    match (t.kind.group, t.kind.kind) {
        ("", "Secret") => secret_string_data(obj),
        ("", "Pod") => pod_spec(obj.get("spec"), "spec", &mut causes),
        ("apps", k @ ("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")) => {
            workload(obj, k, &mut causes)
        }
        ("batch", "Job") => {
            if old.is_none() {
                job_selector(obj, &mut causes);
            }
            job(obj, &mut causes);
        }
        ("networking.k8s.io", "Ingress") => ingress(obj, &mut causes),
        _ => {}
    }
    if let Some(old) = old {
        immutables(t, old, obj, &mut causes);
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::invalid(t.kind.group, t.kind.kind, name, causes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_go_formatting() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        let labels = json!({"app": "web", "tier": "b"});
        assert!(selects(&sel, labels.as_object()));
        let labels = json!({"app": "web", "tier": "c"});
        assert!(!selects(&sel, labels.as_object()));
        assert_eq!(
            go_selector(&json!({"matchLabels": {"b": "2", "a": "1"}})),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"a":"1", "b":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert!(selector_is_empty(&json!({"matchLabels": {}})));
    }
}
