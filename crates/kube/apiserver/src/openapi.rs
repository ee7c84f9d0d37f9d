//! /openapi/v3: one document per group-version. It declares, for each
//! kind's PATCH operation, the `fieldValidation` and `dryRun` parameters, so
//! kubectl validates on the server (`fieldValidation=Strict`) instead of
//! downloading schemas for client-side validation. Custom kinds carry their
//! CRD's schema in `components.schemas`, which `kubectl explain` reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

use crate::resources::{all, KINDS};

fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The schemas of a group-version's built-in kinds and of everything they
/// refer to, as JSON text (an object keyed by upstream's schema names).
struct Builtin {
    schemas: String,
    hash: u64,
}

/// Built once per group-version, when a client first asks for it: the
/// schemas are large (core/v1's are a few hundred KiB of text) and most
/// servers never serve them, so they are neither built at start nor kept as
/// `Value` trees.
fn builtin(gv: &str) -> Arc<Builtin> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Builtin>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(gv) {
        return b.clone();
    }
    let schemas = builtin_schemas(gv).to_string();
    let b = Arc::new(Builtin {
        hash: hash_of(&schemas),
        schemas,
    });
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(gv.to_string(), b.clone());
    b
}

/// The k8s-openapi schemas (with the API's descriptions and required
/// fields) of the built-in kinds served under `gv`, as upstream publishes
/// them: references under `#/components/schemas/`, a reference with a
/// description beside it wrapped in `allOf`, and each kind's
/// `x-kubernetes-group-version-kind`, by which `kubectl explain` finds it.
fn builtin_schemas(gv: &str) -> Value {
    use schemars::visit::Visitor as _;
    let mut generator = schemars::gen::SchemaSettings::openapi3().into_generator();
    let kinds: Vec<_> = KINDS
        .iter()
        .filter(|k| gv_path(k.group, k.version) == gv)
        .collect();
    let mut names = Vec::new();
    for k in &kinds {
        match (k.schema)(&mut generator) {
            schemars::schema::Schema::Object(o) => names.push(
                o.reference
                    .as_deref()
                    .and_then(|r| r.rsplit('/').next())
                    .map(str::to_string),
            ),
            schemars::schema::Schema::Bool(_) => names.push(None),
        }
    }
    let mut defs = generator.take_definitions();
    for schema in defs.values_mut() {
        schemars::visit::RemoveRefSiblings.visit_schema(schema);
    }
    let mut out = serde_json::to_value(defs).unwrap_or_else(|_| json!({}));
    for (k, name) in kinds.iter().zip(names) {
        if let Some(s) = name.and_then(|n| out.get_mut(&n)) {
            s["x-kubernetes-group-version-kind"] =
                json!([{"group": k.group, "version": k.version, "kind": k.kind}]);
            // k8s-openapi lists `metadata` as required (it is no Option
            // there); upstream's schemas do not, and neither does the server.
            if let Some(Value::Array(req)) = s.get_mut("required") {
                req.retain(|f| f != "metadata");
                if req.is_empty() {
                    s.as_object_mut().map(|o| o.remove("required"));
                }
            }
        }
    }
    out
}

/// What a group-version's document holds besides the built-in schemas: its
/// paths and its custom kinds' schemas. None if nothing is served there.
fn served(gv: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
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
        // No requestBody: kubectl apply then computes strategic merge
        // patches from its compiled-in types, not from these schemas
        // (which lack the patch merge keys).
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
    Some((paths, schemas))
}

pub fn root() -> Value {
    let mut out = Map::new();
    for k in all() {
        let p = gv_path(k.group, k.version);
        if out.contains_key(&p) {
            continue;
        }
        // A hash of what the document is made of (the built-in part by
        // its own hash): it changes whenever the document does, so
        // kubectl's cache refreshes, without rendering every document.
        let h = served(&p)
            .map(|(paths, custom)| {
                let text = format!(
                    "{}{}{}",
                    Value::Object(paths),
                    Value::Object(custom),
                    builtin(&p).hash
                );
                format!("{:016X}", hash_of(&text))
            })
            .unwrap_or_default();
        out.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
        );
    }
    json!({"paths": out})
}

/// The document for `api/v1` or `apis/{group}/{version}`, as JSON text.
pub fn group_version(gv: &str) -> Option<String> {
    let (paths, custom) = served(gv)?;
    let head = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
    })
    .to_string();
    let b = builtin(gv);
    // The built-in schemas are spliced in as text: parsing them back into
    // a tree for every request would cost more than the document itself.
    let mut schemas = b.schemas.clone();
    for (name, s) in custom {
        schemas.pop(); // the closing brace
        if schemas.len() > 1 {
            schemas.push(',');
        }
        schemas.push_str(&Value::String(name).to_string());
        schemas.push(':');
        schemas.push_str(&s.to_string());
        schemas.push('}');
    }
    let mut doc = head;
    doc.pop(); // the closing brace
    doc.push_str(",\"components\":{\"schemas\":");
    doc.push_str(&schemas);
    doc.push_str("}}");
    Some(doc)
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
