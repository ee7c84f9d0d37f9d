//! The review APIs, answered from the request and never stored:
//! authorization.k8s.io/v1 SelfSubjectAccessReview, SubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth
//! can-i`, `--list`), and authentication.k8s.io/v1 SelfSubjectReview
//! (`kubectl auth whoami`).

use axum::http::StatusCode;
use axum::response::Response;
use hako_kube_store::Store;
use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::rbac::{self, Attributes};
use crate::status::ApiError;

pub const AUTHZ: &str = "authorization.k8s.io";
pub const AUTHN: &str = "authentication.k8s.io";

/// A review resource: (group, plural, kind, namespaced).
pub type Review = (&'static str, &'static str, &'static str, bool);

/// The review resources, for routing and discovery.
pub const REVIEWS: &[Review] = &[
    (
        AUTHZ,
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        true,
    ),
    (
        AUTHZ,
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
    ),
    (
        AUTHZ,
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        false,
    ),
    (AUTHZ, "subjectaccessreviews", "SubjectAccessReview", false),
    (AUTHN, "selfsubjectreviews", "SelfSubjectReview", false),
];

/// The review a path names, and its namespace (LocalSubjectAccessReview).
pub fn route(segs: &[&str]) -> Option<(Review, Option<String>)> {
    let (group, rest) = match segs {
        ["apis", g, "v1", rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (plural, ns) = match rest {
        [plural] => (*plural, None),
        ["namespaces", ns, plural] => (*plural, Some(ns.to_string())),
        _ => return None,
    };
    let r = REVIEWS
        .iter()
        .find(|(g, p, _, _)| *g == group && *p == plural)?;
    (r.3 == ns.is_some()).then_some((*r, ns))
}

/// The review groups (for `/apis`).
pub fn groups() -> [&'static str; 2] {
    [AUTHN, AUTHZ]
}

/// The resources of a review group, as discovery lists them.
pub fn resources(group: &str) -> Vec<Value> {
    REVIEWS
        .iter()
        .filter(|r| r.0 == group)
        .map(|(_, plural, kind, ns)| {
            json!({"name": plural, "singularName": plural.trim_end_matches('s'), "namespaced": ns,
                   "kind": kind, "verbs": ["create"]})
        })
        .collect()
}

/// The resources of a review group in aggregated discovery.
pub fn aggregated_resources(group: &str) -> Vec<Value> {
    REVIEWS
        .iter()
        .filter(|r| r.0 == group)
        .map(|(g, plural, kind, ns)| {
            json!({"resource": plural, "singularResource": plural.trim_end_matches('s'),
                   "responseKind": {"group": g, "version": "v1", "kind": kind},
                   "scope": if *ns { "Namespaced" } else { "Cluster" }, "verbs": ["create"]})
        })
        .collect()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The attributes a review's spec asks about.
fn spec_attributes(spec: &Value, kind: &str) -> Result<Attributes, ApiError> {
    let invalid = |why: &str| {
        ApiError::invalid(
            AUTHZ,
            kind,
            "",
            vec![("spec".into(), "FieldValueRequired".into(), why.into())],
        )
    };
    match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
        (Some(r), None) => Ok(Attributes {
            verb: str_at(r, "/verb").into(),
            resource_request: true,
            group: str_at(r, "/group").into(),
            resource: str_at(r, "/resource").into(),
            subresource: str_at(r, "/subresource").into(),
            namespace: str_at(r, "/namespace").into(),
            name: str_at(r, "/name").into(),
            path: String::new(),
        }),
        (None, Some(n)) => Ok(Attributes::non_resource(str_at(n, "/verb"), str_at(n, "/path"))),
        (Some(_), Some(_)) => Err(invalid(
            "Invalid value: resourceAttributes and nonResourceAttributes cannot be set at the same time",
        )),
        (None, None) => Err(invalid(
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

/// Answer a review created by `user` (in namespace `ns` for a local one).
pub fn create(
    store: &dyn Store,
    user: &UserInfo,
    review: Review,
    ns: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (group, _, kind, _) = review;
    let mut obj: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request is not a valid {kind}: {}",
                crate::handler::sanitize(&e.to_string())
            ))
        })?
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {kind} object"
        )));
    }
    obj["apiVersion"] = json!(format!("{group}/v1"));
    obj["kind"] = json!(kind);
    if obj.get("metadata").is_none_or(|m| !m.is_object()) {
        obj["metadata"] = json!({"creationTimestamp": null});
    }
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let status = match kind {
        "SelfSubjectReview" => json!({"userInfo": user.to_json()}),
        "SelfSubjectRulesReview" => {
            let ns = str_at(&spec, "/namespace");
            rbac::rules_review(store, user, ns)
        }
        _ => {
            let mut attrs = spec_attributes(&spec, kind)?;
            let subject = match kind {
                "SelfSubjectAccessReview" => user.clone(),
                _ => {
                    let name = str_at(&spec, "/user");
                    let groups: Vec<String> = spec["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.as_str().map(String::from))
                        .collect();
                    if name.is_empty() && groups.is_empty() {
                        return Err(ApiError::invalid(
                            AUTHZ,
                            kind,
                            "",
                            vec![(
                                "spec.user".into(),
                                "FieldValueInvalid".into(),
                                "Invalid value: \"\": at least one of user or group must be specified".into(),
                            )],
                        ));
                    }
                    UserInfo {
                        name: name.to_string(),
                        uid: str_at(&spec, "/uid").to_string(),
                        groups,
                        extra: Vec::new(),
                    }
                }
            };
            if let Some(ns) = ns {
                if attrs.resource_request && !attrs.namespace.is_empty() && attrs.namespace != ns {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match the namespace of the request ({})",
                        crate::status::quoted(ns)
                    )));
                }
                attrs.namespace = ns.to_string();
            }
            let allowed = rbac::allowed(store, &subject, &attrs);
            let mut s = json!({"allowed": allowed});
            if allowed && !subject.is_master() {
                s["reason"] = json!("RBAC: allowed by a binding of the subject");
            } else if allowed {
                s["reason"] = json!("the subject is in system:masters");
            }
            s
        }
    };
    obj["status"] = status;
    Ok(crate::handler::json_response(
        StatusCode::CREATED,
        &obj,
        &[],
    ))
}
