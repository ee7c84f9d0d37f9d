//! The Node authorizer's part that matters most: a kubelet (user
//! `system:node:NAME` in group `system:nodes`) reads only the secrets,
//! configmaps and persistentvolumeclaims that pods bound to its node refer
//! to, one by name, never by listing or watching them all. RBAC's
//! `system:node` role still decides everything else.

use hako_kube_store::{ListOptions, Store};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::Value;

use crate::auth::UserInfo;
use crate::rbac::Attributes;

/// The node a kubelet's user acts for.
fn node_of(user: &UserInfo) -> Option<&str> {
    let node = user.name.strip_prefix("system:node:")?;
    user.groups
        .iter()
        .any(|g| g == "system:nodes")
        .then_some(node)
}

/// `Some(decision)` for a kubelet reading a kind the Node authorizer
/// narrows; `None` leaves the request to RBAC.
pub fn decide(store: &dyn Store, user: &UserInfo, a: &Attributes) -> Option<bool> {
    let node = node_of(user)?;
    if !a.resource_request || !a.group.is_empty() || !a.subresource.is_empty() {
        return None;
    }
    let refs: fn(&PodSpec, &str, &mut Vec<String>) = match a.resource.as_str() {
        "secrets" => secrets,
        "configmaps" => config_maps,
        "persistentvolumeclaims" => claims,
        _ => return None,
    };
    if a.verb != "get" || a.name.is_empty() {
        return Some(false);
    }
    let prefix = format!("/core/pods/{}/", a.namespace);
    let Ok(list) = store.list(&prefix, &ListOptions::default()) else {
        return Some(false);
    };
    Some(list.items.iter().any(|item| {
        let Some(pod) = pod(&item.value) else {
            return false;
        };
        let Some(spec) = pod
            .spec
            .as_ref()
            .filter(|s| s.node_name.as_deref() == Some(node))
        else {
            return false;
        };
        let mut names = Vec::new();
        refs(spec, pod.metadata.name.as_deref().unwrap_or(""), &mut names);
        names.contains(&a.name)
    }))
}

fn pod(v: &Value) -> Option<Pod> {
    serde_json::from_value(v.clone()).ok()
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

fn secrets(spec: &PodSpec, _: &str, out: &mut Vec<String>) {
    out.extend(
        spec.image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone()),
    );
    for v in spec.volumes.iter().flatten() {
        out.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            out.extend(s.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    for c in containers(spec) {
        for e in c.env.iter().flatten() {
            let r = e
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref());
            out.extend(r.map(|r| r.name.clone()));
        }
        for e in c.env_from.iter().flatten() {
            out.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    for e in spec.ephemeral_containers.iter().flatten() {
        for e in e.env_from.iter().flatten() {
            out.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
}

fn config_maps(spec: &PodSpec, _: &str, out: &mut Vec<String>) {
    for v in spec.volumes.iter().flatten() {
        out.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            out.extend(s.config_map.as_ref().map(|c| c.name.clone()));
        }
    }
    for c in containers(spec) {
        for e in c.env.iter().flatten() {
            let r = e
                .value_from
                .as_ref()
                .and_then(|f| f.config_map_key_ref.as_ref());
            out.extend(r.map(|r| r.name.clone()));
        }
        for e in c.env_from.iter().flatten() {
            out.extend(e.config_map_ref.as_ref().map(|r| r.name.clone()));
        }
    }
}

/// Claims by name, and the claims of generic ephemeral volumes
/// (`<pod>-<volume>`).
fn claims(spec: &PodSpec, pod: &str, out: &mut Vec<String>) {
    for v in spec.volumes.iter().flatten() {
        out.extend(
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone()),
        );
        if v.ephemeral.is_some() {
            out.push(format!("{pod}-{}", v.name));
        }
    }
}
