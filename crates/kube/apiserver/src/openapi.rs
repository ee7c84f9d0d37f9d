//! /openapi/v3: one document per group-version. It declares, for each
//! kind's PATCH operation, the `fieldValidation` and `dryRun` parameters, so
//! kubectl validates on the server (`fieldValidation=Strict`) instead of
//! downloading schemas for client-side validation.

use serde_json::{json, Map, Value};

use crate::resources::all;

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
    for k in all() {
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
    for k in all()
        .into_iter()
        .filter(|k| gv_path(k.group, k.version) == gv)
    {
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

/// /openapi/v2 without definitions. kubectl only reads it for kinds the v3
/// documents do not declare (to validate them client-side): with no schema
/// for them it validates nothing and reports what the server says, e.g. that
/// no such kind is served. kubectl asks for gnostic's protobuf encoding of
/// the OpenAPI v2 Document: swagger = 1, info = 2 {title = 1, version = 2}.
pub fn v2_response(accept: &str) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    const PB: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    if accept.contains("proto-openapi.spec.v2") {
        fn field(num: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![(num << 3) | 2, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        }
        let info = [field(1, b"Kubernetes"), field(2, b"v1.33.0")].concat();
        let doc = [field(1, b"2.0"), field(2, &info)].concat();
        return ([(header::CONTENT_TYPE, PB)], doc).into_response();
    }
    let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
                     "paths": {}, "definitions": {}});
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}
