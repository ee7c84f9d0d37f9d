//! /openapi/v3: one document per group-version. It declares, for each
//! kind's PATCH operation, the `fieldValidation` and `dryRun` parameters, so
//! kubectl validates on the server (`fieldValidation=Strict`) instead of
//! downloading schemas for client-side validation. Custom kinds carry their
//! CRD's schema in `components.schemas`, which `kubectl explain` reads.

use serde_json::{json, Map, Value};

use crate::resources::all;

/// Changes whenever a document changes, so clients' caches refresh.
fn hash(doc: &Value) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

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
        if paths.contains_key(&p) {
            continue;
        }
        let h = group_version(&p).map(|d| hash(&d)).unwrap_or_default();
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
        );
    }
    json!({"paths": paths})
}

/// The document for `api/v1` or `apis/{group}/{version}`.
pub fn group_version(gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
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
        if let Some(custom) = crate::crd::custom(k) {
            schemas.insert(
                schema_name(k.group, k.version, k.kind),
                custom_schema(k, &custom.schema),
            );
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Upstream's name of a kind's schema: the group reversed (`example.com`
/// → `com.example`), the version, the kind.
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// A custom kind's schema as upstream publishes it: the CRD's
/// openAPIV3Schema with apiVersion, kind and metadata described and the
/// kind's group-version-kind.
fn custom_schema(k: &crate::resources::Kind, schema: &Value) -> Value {
    let mut s = schema.clone();
    if !s.is_object() {
        s = json!({"type": "object"});
    }
    let props = s["properties"].as_object().cloned().unwrap_or_default();
    let mut props_out = Map::new();
    props_out.insert("apiVersion".into(), json!({"type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
    props_out.insert("kind".into(), json!({"type": "string",
        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."}));
    props_out.insert(
        "metadata".into(),
        json!({"type": "object",
        "description": "Standard object's metadata."}),
    );
    for (name, p) in props {
        if !matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
            props_out.insert(name, p);
        }
    }
    s["properties"] = Value::Object(props_out);
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": k.group, "version": k.version, "kind": k.kind}]);
    s
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
