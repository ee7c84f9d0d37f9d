//! Deletion as upstream's registry does it: DeleteOptions (preconditions,
//! grace periods, propagation policies), graceful deletion of pods,
//! finalizers (`orphan` / `foregroundDeletion` for the garbage collector),
//! and namespaces that go `Terminating` until the namespace controller has
//! emptied and finalized them.

use hako_kube_store::{Store, Stored};
use serde_json::{json, Value};

use crate::handler::{store_err, ApiResult, Target};
use crate::meta;
use crate::status::{quoted, ApiError};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// The DeleteOptions of a request (body, or query parameters as
/// client-go also sends them).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace: Option<i64>,
    pub propagation: Option<Propagation>,
    pub orphan_dependents: Option<bool>,
    pub precondition_rv: Option<u64>,
    pub precondition_uid: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Parse the request body (a DeleteOptions, possibly empty) and the
    /// query parameters `gracePeriodSeconds`, `propagationPolicy`,
    /// `orphanDependents`, `dryRun`.
    pub fn parse(body: &Value, query: impl Fn(&str) -> Option<String>) -> ApiResult<Self> {
        let field = |name: &str| -> Option<Value> {
            match body.get(name) {
                Some(Value::Null) | None => query(name).map(|s| match s.parse::<i64>() {
                    Ok(n) => json!(n),
                    Err(_) => match s.as_str() {
                        "true" => json!(true),
                        "false" => json!(false),
                        _ => json!(s),
                    },
                }),
                Some(v) => Some(v.clone()),
            }
        };
        let mut o = DeleteOptions::default();
        if let Some(g) = field("gracePeriodSeconds") {
            o.grace = Some(g.as_i64().ok_or_else(|| {
                ApiError::bad_request("gracePeriodSeconds must be an integer number of seconds")
            })?);
        }
        if let Some(p) = field("propagationPolicy") {
            o.propagation = Some(match p.as_str() {
                Some("Orphan") => Propagation::Orphan,
                Some("Background") => Propagation::Background,
                Some("Foreground") => Propagation::Foreground,
                _ => {
                    let shown = p.as_str().map(quoted).unwrap_or_else(|| p.to_string());
                    return Err(ApiError::invalid_options(format!(
                        "propagationPolicy: Unsupported value: {shown}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    )));
                }
            });
        }
        if let Some(v) = field("orphanDependents") {
            o.orphan_dependents = Some(
                v.as_bool()
                    .ok_or_else(|| ApiError::bad_request("orphanDependents must be a boolean"))?,
            );
        }
        if o.orphan_dependents.is_some() && o.propagation.is_some() {
            return Err(ApiError::invalid_options(
                "orphanDependents: Invalid value: \"true\": OrphanDependents and DeletionPropagation cannot be both set".to_string(),
            ));
        }
        if let Some(rv) = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            o.precondition_rv = Some(rv.parse().map_err(|_| {
                ApiError::bad_request("preconditions.resourceVersion must be a resource version")
            })?);
        }
        o.precondition_uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.dry_run = query("dryRun").as_deref() == Some("All")
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(o)
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn set_finalizers(obj: &mut Value, f: &[String]) {
    if f.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        obj["metadata"]["finalizers"] = json!(f);
    }
}

/// The garbage-collection policy a kind has when a delete names none:
/// batch/v1 Jobs orphan their pods (upstream keeps that for backward
/// compatibility), everything else deletes dependents in the background.
fn default_orphans(t: &Target) -> bool {
    t.kind.group == "batch" && t.kind.kind == "Job"
}

/// Upstream's `deletionFinalizersForGarbageCollection`: the metadata
/// finalizers after this delete (`orphan` / `foregroundDeletion` added or
/// removed as the options, the existing finalizers, then the kind's default
/// say).
fn gc_finalizers(t: &Target, obj: &Value, o: &DeleteOptions) -> Vec<String> {
    let current = finalizers(obj);
    let from_finalizers = || {
        current.iter().find_map(|f| match f.as_str() {
            ORPHAN => Some(Propagation::Orphan),
            FOREGROUND => Some(Propagation::Foreground),
            _ => None,
        })
    };
    let orphan = match (o.orphan_dependents, o.propagation) {
        (Some(b), _) => b,
        (None, Some(p)) => p == Propagation::Orphan,
        (None, None) => match from_finalizers() {
            Some(p) => p == Propagation::Orphan,
            None => default_orphans(t),
        },
    };
    let foreground = match (o.orphan_dependents, o.propagation) {
        (Some(_), _) => false,
        (None, Some(p)) => p == Propagation::Foreground,
        (None, None) => from_finalizers() == Some(Propagation::Foreground),
    };
    let mut out: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN && *f != FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        out.push(ORPHAN.into());
    }
    if foreground {
        out.push(FOREGROUND.into());
    }
    // Same set: keep the object's order (no write for nothing).
    let same = out.len() == current.len() && out.iter().all(|f| current.contains(f));
    if same {
        current
    } else {
        out
    }
}

fn is_namespace(t: &Target) -> bool {
    t.kind.group.is_empty() && t.kind.plural == "namespaces"
}

fn is_pod(t: &Target) -> bool {
    t.kind.group.is_empty() && t.kind.plural == "pods"
}

/// A pod's grace period for this delete (upstream's CheckGracefulDelete):
/// the request's, else spec.terminationGracePeriodSeconds (default 30);
/// 0 for a pod no node has (nothing runs it) or one that has finished.
fn pod_grace(pod: &Value, o: &DeleteOptions) -> i64 {
    let mut period = o.grace.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unbound || finished {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    period
}

/// Whether an update leaves an object that is being deleted with nothing
/// to wait for (no finalizers, grace period over), so it goes instead of
/// being stored (upstream's ShouldDeleteDuringUpdate).
pub fn should_delete_on_update(old: &Value, new: &Value) -> bool {
    new.pointer("/metadata/deletionTimestamp").is_some()
        && finalizers(new).is_empty()
        && old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(0)
}

/// Upstream refuses new finalizers on an object that is being deleted.
pub fn check_new_finalizers(t: &Target, old: &Value, new: &Value) -> ApiResult<()> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let before = finalizers(old);
    if let Some(added) = finalizers(new).iter().find(|f| !before.contains(f)) {
        let name = old["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::invalid(
            t.kind.group,
            t.kind.kind,
            name,
            vec![(
                "metadata.finalizers".into(),
                "FieldValueForbidden".into(),
                format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted(added)
                ),
            )],
        ));
    }
    Ok(())
}

/// Set deletionTimestamp (now, unless an earlier one is set) and a zero
/// grace period: the object waits for its finalizers (markAsDeleting).
fn mark_as_deleting(obj: &mut Value) {
    if obj.pointer("/metadata/deletionTimestamp").is_none() {
        if let Some(g) = obj.pointer("/metadata/generation").and_then(Value::as_i64) {
            obj["metadata"]["generation"] = json!(g + 1);
        }
        obj["metadata"]["deletionTimestamp"] = json!(meta::now());
    }
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
}

/// Delete one object (`cur`, just read) as `o` asks. Returns the object as
/// it stays (deletionTimestamp set, waiting for a kubelet, finalizers or
/// the namespace controller) or as it was when it went.
pub fn delete_object(
    store: &dyn Store,
    t: &Target,
    cur: &Stored,
    o: &DeleteOptions,
) -> ApiResult<Value> {
    let name = cur.value["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if let Some(uid) = &o.precondition_uid {
        let actual = cur.value["metadata"]["uid"].as_str().unwrap_or("");
        if actual != uid {
            return Err(ApiError::precondition_failed(
                t.kind.group,
                t.kind.plural,
                &name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    let expected = o.precondition_rv.unwrap_or(cur.revision);
    if expected != cur.revision {
        return Err(ApiError::precondition_failed(
            t.kind.group,
            t.kind.plural,
            &name,
            format!(
                "Precondition failed: ResourceVersion in precondition: {expected}, ResourceVersion in object meta: {}",
                cur.revision
            ),
        ));
    }
    let deleting = cur.value.pointer("/metadata/deletionTimestamp").is_some();
    let mut obj = cur.value.clone();

    // A namespace first goes Terminating; the namespace controller deletes
    // its contents, empties spec.finalizers through `finalize` and deletes
    // it again, which removes it (once metadata finalizers are gone too).
    if is_namespace(t) {
        if !deleting {
            obj["metadata"]["deletionTimestamp"] = json!(meta::now());
            obj["status"]["phase"] = json!("Terminating");
            let f = gc_finalizers(t, &obj, o);
            set_finalizers(&mut obj, &f);
            return stay(store, t, cur, obj, expected, o);
        }
        let spec_finalizers = obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if spec_finalizers {
            return Ok(cur.value.clone());
        }
    }

    // Pods are deleted gracefully once a node runs them: the kubelet stops
    // the containers within the grace period, then deletes with grace 0.
    let mut graceful = false;
    if is_pod(t) {
        let existing = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        match (deleting, existing) {
            (true, Some(existing)) if existing > 0 => {
                // Already terminating: a delete may only shorten the period,
                // and changes no finalizers.
                let Some(period) = o.grace.map(|g| g.max(0)) else {
                    return Ok(cur.value.clone());
                };
                if period >= existing {
                    return Ok(cur.value.clone());
                }
                if period > 0 {
                    obj["metadata"]["deletionTimestamp"] = json!(meta::now_plus(period));
                    obj["metadata"]["deletionGracePeriodSeconds"] = json!(period);
                    return stay(store, t, cur, obj, expected, o);
                }
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            (true, _) => {}
            (false, _) => {
                let period = pod_grace(&obj, o);
                if period > 0 {
                    obj["metadata"]["deletionTimestamp"] = json!(meta::now_plus(period));
                    obj["metadata"]["deletionGracePeriodSeconds"] = json!(period);
                    graceful = true;
                }
            }
        }
    }

    let f = gc_finalizers(t, &obj, o);
    set_finalizers(&mut obj, &f);
    if !f.is_empty() && !graceful {
        mark_as_deleting(&mut obj);
    }
    if graceful || !f.is_empty() {
        return stay(store, t, cur, obj, expected, o);
    }
    if o.dry_run {
        return Ok(cur.value.clone());
    }
    match store.delete(&cur.key, Some(expected)) {
        Ok(s) => {
            if crate::handler::is_service(t) {
                crate::services::release(store, &s.value, None);
            }
            Ok(s.value)
        }
        Err(e) => Err(store_err(t, &name)(e)),
    }
}

/// Store `obj` (the object marked for deletion) unless nothing changed.
fn stay(
    store: &dyn Store,
    t: &Target,
    cur: &Stored,
    obj: Value,
    expected: u64,
    o: &DeleteOptions,
) -> ApiResult<Value> {
    if obj == cur.value || o.dry_run {
        return Ok(obj);
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    store
        .update(&cur.key, &obj, Some(expected))
        .map(|s| s.value)
        .map_err(store_err(t, &name))
}

/// Refuse new objects in a namespace that is being deleted (upstream's
/// NamespaceLifecycle admission).
pub fn check_namespace_active(ns_obj: &Value, t: &Target, name: &str) -> ApiResult<()> {
    let terminating = ns_obj.pointer("/metadata/deletionTimestamp").is_some()
        || ns_obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
    if terminating {
        let ns = ns_obj["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::namespace_terminating(
            t.kind.group,
            t.kind.plural,
            name,
            ns,
        ));
    }
    Ok(())
}

/// The `finalize` subresource of a namespace: only spec.finalizers change.
pub fn finalize(old: &Value, new: &Value) -> Value {
    let mut kept = old.clone();
    match new.pointer("/spec/finalizers") {
        // An empty list is left out, as upstream's omitempty does.
        Some(f) if f.as_array().is_some_and(|a| !a.is_empty()) => {
            kept["spec"]["finalizers"] = f.clone()
        }
        _ => {
            if let Some(spec) = kept.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
    }
    kept
}
