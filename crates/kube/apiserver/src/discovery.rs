//! Aggregated discovery (apidiscovery.k8s.io/v2): `/api` and `/apis`
//! answer with every group, version and resource in one document when the
//! client asks for it (kubectl does), instead of one request per group
//! version.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::resources::{self, Kind};

const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The verbs and kind of a subresource (and its group/version when it is
/// not the parent's), as upstream lists them.
pub fn subresource(
    k: &Kind,
    sub: &str,
) -> (
    &'static [&'static str],
    &'static str,
    Option<(&'static str, &'static str)>,
) {
    match sub {
        "scale" => (
            &["get", "patch", "update"],
            "Scale",
            Some(("autoscaling", "v1")),
        ),
        "binding" => (&["create"], "Binding", None),
        "eviction" => (&["create"], "Eviction", Some(("policy", "v1"))),
        "log" => (&["get"], "Pod", None),
        "exec" => (&["create", "get"], "PodExecOptions", None),
        "attach" => (&["create", "get"], "PodAttachOptions", None),
        "portforward" => (&["create", "get"], "PodPortForwardOptions", None),
        "finalize" => (&["update"], k.kind, None),
        "token" => (
            &["create"],
            "TokenRequest",
            Some(("authentication.k8s.io", "v1")),
        ),
        _ => (&["get", "patch", "update"], k.kind, None),
    }
}

/// Whether the Accept header asks for the v2 aggregated document.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.first() == Some(&"application/json")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn resource(k: &Kind) -> Value {
    let subs: Vec<Value> = k
        .subresources
        .iter()
        .map(|sub| {
            let (verbs, kind, gv) = subresource(k, sub);
            let (g, v) = gv.unwrap_or((k.group, k.version));
            json!({"subresource": sub, "verbs": verbs,
                   "responseKind": {"group": g, "version": v, "kind": kind}})
        })
        .collect();
    let mut r = json!({
        "resource": k.plural,
        "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
        "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": k.singular,
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    });
    if !k.short_names.is_empty() {
        r["shortNames"] = json!(k.short_names);
    }
    if !k.categories.is_empty() {
        r["categories"] = json!(k.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

fn group_item(group: &str) -> Value {
    let mut versions = resources::versions(group);
    if versions.is_empty() {
        versions.push("v1");
    }
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let mut resources: Vec<Value> = resources::all()
                .into_iter()
                .filter(|k| k.group == group && k.version == v)
                .map(resource)
                .collect();
            if v == "v1" {
                resources.extend(crate::reviews::aggregated_resources(group));
            }
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// The APIGroupDiscoveryList of `/api` (core) or `/apis` (every other group).
pub fn aggregated(core: bool) -> Response {
    let items: Vec<Value> = if core {
        vec![group_item("")]
    } else {
        resources::groups()
            .into_iter()
            .chain(crate::reviews::groups())
            .map(group_item)
            .collect()
    };
    let doc = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                     "metadata": {}, "items": items});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, V2), (header::VARY, "Accept")],
        doc.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(kubectl));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }
}
