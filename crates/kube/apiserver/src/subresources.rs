//! The pod subresources that are writes of their own: `binding` (the
//! scheduler assigns a pod to a node) and `eviction` (a delete that
//! disruption budgets could refuse; hako has none, so it always deletes).

use axum::http::StatusCode;
use axum::response::Response;
use hako_kube_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::delete::{self, DeleteOptions};
use crate::handler::{get_current, json_response, store_err, ApiResult, Target};
use crate::meta;
use crate::status::{quoted, ApiError};

/// What a successful binding or eviction answers (upstream: 201 and a
/// Status "Success").
fn success() -> Response {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "code": 201}),
        &[],
    )
}

fn parse(body: &[u8], what: &str) -> ApiResult<Value> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request is not a valid {what}: {}",
            crate::handler::sanitize(&e.to_string())
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {what} object"
        )));
    }
    Ok(v)
}

fn check_name(body: &Value, url_name: &str, what: &str) -> ApiResult<()> {
    match body.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if n == url_name => Ok(()),
        // client-go always names it; a body without a name means the URL's.
        None | Some("") => Ok(()),
        Some(_) => Err(ApiError::bad_request(format!(
            "name in URL does not match name in {what} object"
        ))),
    }
}

/// Set the PodScheduled condition to True (kept if already so).
fn set_scheduled(pod: &mut Value) {
    let cond = json!({"type": "PodScheduled", "status": "True",
                      "lastProbeTime": null, "lastTransitionTime": meta::now()});
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conds = pod["status"]
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("conditions is an array");
    match list.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

/// POST pods/NAME/binding: a v1 Binding sets spec.nodeName once.
pub fn bind(store: &dyn Store, t: &Target, dry_run: bool, body: &[u8]) -> ApiResult<Response> {
    let name = t.name.clone().unwrap_or_default();
    let binding = parse(body, "Binding")?;
    if let Some(k) = binding.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != "Binding" {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({}) does not match the expected kind (Binding) of pods/binding",
                quoted(k)
            )));
        }
    }
    check_name(&binding, &name, "Binding")?;
    let target_kind = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut causes = Vec::new();
    if !target_kind.is_empty() && target_kind != "Node" {
        causes.push((
            "target.kind".to_string(),
            "FieldValueNotSupported".to_string(),
            format!(
                "Unsupported value: {}: supported values: \"Node\", \"<empty>\"",
                quoted(target_kind)
            ),
        ));
    }
    if node.is_empty() {
        causes.push((
            "target.name".to_string(),
            "FieldValueRequired".to_string(),
            "Required value".to_string(),
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Binding", &name, causes));
    }
    let want_uid = binding.pointer("/metadata/uid").and_then(Value::as_str);
    let want_rv = binding
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let conflict = |why: String| ApiError::conflict_msg("", "pods/binding", &name, why);
    for _ in 0..5 {
        let cur = get_current(store, t)?;
        let pod = &cur.value;
        if want_uid.is_some_and(|u| pod["metadata"]["uid"].as_str() != Some(u)) {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                want_uid.unwrap_or(""),
                pod["metadata"]["uid"].as_str().unwrap_or("")
            )));
        }
        if want_rv.is_some_and(|rv| rv != cur.revision.to_string()) {
            return Err(ApiError::conflict("", "pods", &name));
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        if let Some(n) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(conflict(format!(
                "pod {name} is already assigned to node {}",
                quoted(n)
            )));
        }
        let mut new = pod.clone();
        new["spec"]["nodeName"] = json!(node);
        if let Some(ann) = binding
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            if !new["metadata"]["annotations"].is_object() {
                new["metadata"]["annotations"] = json!({});
            }
            for (k, v) in ann {
                new["metadata"]["annotations"][k] = v.clone();
            }
        }
        set_scheduled(&mut new);
        if dry_run {
            return Ok(success());
        }
        match store.update(&cur.key, &new, Some(cur.revision)) {
            Ok(_) => return Ok(success()),
            // Someone else wrote the pod meanwhile: look again (it may be bound now).
            Err(StoreError::Conflict { .. }) if want_rv.is_none() => continue,
            Err(e) => return Err(store_err(t, &name)(e)),
        }
    }
    Err(ApiError::conflict("", "pods", &name))
}

/// POST pods/NAME/eviction: a policy/v1 Eviction deletes the pod with its
/// deleteOptions. PodDisruptionBudgets are not served, so nothing refuses
/// an eviction (upstream answers 429 when a budget would be broken).
pub fn evict(
    store: &dyn Store,
    t: &Target,
    query: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> ApiResult<Response> {
    let name = t.name.clone().unwrap_or_default();
    let eviction = parse(body, "Eviction")?;
    if let Some(k) = eviction.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != "Eviction" {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({}) does not match the expected kind (Eviction) of pods/eviction",
                quoted(k)
            )));
        }
    }
    check_name(&eviction, &name, "Eviction")?;
    let opts_body = eviction
        .get("deleteOptions")
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let opts = DeleteOptions::parse(&opts_body, query)?;
    let cur = get_current(store, t)?;
    delete::delete_object(store, t, &cur, &opts)?;
    Ok(success())
}
