//! /openapi/v3: one document per group-version. It declares, for each
//! kind's PATCH operation, the `fieldValidation` and `dryRun` parameters, so
//! kubectl validates on the server (`fieldValidation=Strict`) instead of
//! downloading schemas for client-side validation.

use serde_json::{json, Map, Value};

use crate::resources::KINDS;

/// Changes whenever the documents change, so clients' caches refresh.
const HASH: &str = "hako-1";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn root() -> Value {
    let mut paths = Map::new();
    for k in KINDS {
        let p = gv_path(k.group, k.version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={HASH}")}),
        );
    }
    json!({"paths": paths})
}

/// The document for `api/v1` or `apis/{group}/{version}`.
pub fn group_version(gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
    ]);
    for k in KINDS.iter().filter(|k| gv_path(k.group, k.version) == gv) {
        let base = format!("/{gv}");
        let item = if k.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("{base}/{}/{{name}}", k.plural)
        };
        let op = json!({
            "operationId": format!("patch{}", k.kind),
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
        });
        paths.insert(item, json!({"patch": op}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
