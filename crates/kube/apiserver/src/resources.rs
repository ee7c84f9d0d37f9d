//! The kinds the server knows, each with its place in the API (group,
//! version, plural, scope, short names) and its schema (the k8s-openapi type
//! objects are decoded into, which also tells unknown fields apart).

use k8s_openapi::api::{
    apps, batch, coordination, core, discovery, events, networking, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use schemars::gen::SchemaGenerator;
use schemars::schema::Schema;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The rule a kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label: starts with a letter (services).
    Label1035,
    /// Any name usable as a URL path segment (RBAC kinds: `system:node`).
    PathSegment,
}

pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served (`status`, `scale`).
    pub subresources: &'static [&'static str],
    pub names: NameRule,
    /// Whether `metadata.generation` tracks spec changes.
    pub generation: bool,
    /// Decode into the typed schema and back: the object as the schema keeps it.
    pub(crate) decode: fn(&Value) -> Result<Value, String>,
    /// Registers the kind's OpenAPI schema (and every schema it refers to)
    /// with the generator; answers a reference to it. Custom kinds carry
    /// their CRD's schema instead (`crd::custom`).
    pub(crate) schema: fn(&mut SchemaGenerator) -> Schema,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Store key prefix of this kind (all namespaces).
    pub fn prefix(&self) -> String {
        let g = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{g}/{}/", self.plural)
    }

    /// Store key prefix for one namespace (or the kind's prefix if cluster-scoped).
    pub fn ns_prefix(&self, ns: Option<&str>) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.ns_prefix(ns))
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! kind {
    ($group:expr, $plural:expr, $singular:expr, $kind:expr, $ty:ty, ns=$ns:expr, short=$short:expr, cat=$cat:expr, sub=$sub:expr, names=$names:expr, gen=$gen:expr) => {
        Kind {
            group: $group,
            version: "v1",
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            names: $names,
            generation: $gen,
            decode: roundtrip::<$ty>,
            schema: schema_of::<$ty>,
        }
    };
}

use NameRule::*;

pub static KINDS: &[Kind] = &[
    kind!(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        core::v1::Namespace,
        ns = false,
        short = &["ns"],
        cat = NONE,
        sub = &["status", "finalize"],
        names = Label,
        gen = false
    ),
    kind!(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        core::v1::ConfigMap,
        ns = true,
        short = &["cm"],
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "secrets",
        "secret",
        "Secret",
        core::v1::Secret,
        ns = true,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "pods",
        "pod",
        "Pod",
        core::v1::Pod,
        ns = true,
        short = &["po"],
        cat = ALL,
        sub = &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward"
        ],
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "services",
        "service",
        "Service",
        core::v1::Service,
        ns = true,
        short = &["svc"],
        cat = ALL,
        sub = &["status"],
        names = Label1035,
        gen = false
    ),
    kind!(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        core::v1::ServiceAccount,
        ns = true,
        short = &["sa"],
        cat = NONE,
        sub = &["token"],
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "nodes",
        "node",
        "Node",
        core::v1::Node,
        ns = false,
        short = &["no"],
        cat = NONE,
        sub = &["status"],
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "events",
        "event",
        "Event",
        core::v1::Event,
        ns = true,
        short = &["ev"],
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        core::v1::Endpoints,
        ns = true,
        short = &["ep"],
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        core::v1::PersistentVolume,
        ns = false,
        short = &["pv"],
        cat = NONE,
        sub = &["status"],
        names = Subdomain,
        gen = false
    ),
    kind!(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        core::v1::PersistentVolumeClaim,
        ns = true,
        short = &["pvc"],
        cat = NONE,
        sub = &["status"],
        names = Subdomain,
        gen = false
    ),
    kind!(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        apps::v1::Deployment,
        ns = true,
        short = &["deploy"],
        cat = ALL,
        sub = &["status", "scale"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        apps::v1::ReplicaSet,
        ns = true,
        short = &["rs"],
        cat = ALL,
        sub = &["status", "scale"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        apps::v1::StatefulSet,
        ns = true,
        short = &["sts"],
        cat = ALL,
        sub = &["status", "scale"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        apps::v1::DaemonSet,
        ns = true,
        short = &["ds"],
        cat = ALL,
        sub = &["status"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "apps",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        apps::v1::ControllerRevision,
        ns = true,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "batch",
        "jobs",
        "job",
        "Job",
        batch::v1::Job,
        ns = true,
        short = NONE,
        cat = ALL,
        sub = &["status"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "batch",
        "cronjobs",
        "cronjob",
        "CronJob",
        batch::v1::CronJob,
        ns = true,
        short = &["cj"],
        cat = ALL,
        sub = &["status"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        discovery::v1::EndpointSlice,
        ns = true,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "networking.k8s.io",
        "ingresses",
        "ingress",
        "Ingress",
        networking::v1::Ingress,
        ns = true,
        short = &["ing"],
        cat = NONE,
        sub = &["status"],
        names = Subdomain,
        gen = true
    ),
    kind!(
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        networking::v1::IngressClass,
        ns = false,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = true
    ),
    kind!(
        "scheduling.k8s.io",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        scheduling::v1::PriorityClass,
        ns = false,
        short = &["pc"],
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        "StorageClass",
        storage::v1::StorageClass,
        ns = false,
        short = &["sc"],
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        coordination::v1::Lease,
        ns = true,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "events.k8s.io",
        "events",
        "event",
        "Event",
        events::v1::Event,
        ns = true,
        short = &["ev"],
        cat = NONE,
        sub = NONE,
        names = Subdomain,
        gen = false
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        rbac::v1::Role,
        ns = true,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = PathSegment,
        gen = false
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        rbac::v1::RoleBinding,
        ns = true,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = PathSegment,
        gen = false
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        rbac::v1::ClusterRole,
        ns = false,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = PathSegment,
        gen = false
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        rbac::v1::ClusterRoleBinding,
        ns = false,
        short = NONE,
        cat = NONE,
        sub = NONE,
        names = PathSegment,
        gen = false
    ),
    kind!(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        apiextensions::v1::CustomResourceDefinition,
        ns = false,
        short = &["crd", "crds"],
        cat = &["api-extensions"],
        sub = &["status"],
        names = Subdomain,
        gen = true
    ),
];

/// The built-in kind served at `group/version/plural`.
pub fn find_static(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// The kind served at `group/version/plural`: built-in or custom (a CRD's).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    find_static(group, version, plural).or_else(|| {
        crate::crd::kinds()
            .into_iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    })
}

/// Every kind served: the built-in ones, then the custom ones.
pub fn all() -> Vec<&'static Kind> {
    KINDS.iter().chain(crate::crd::kinds()).collect()
}

/// The versions of `group` in discovery order (the first is preferred).
pub fn versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in all() {
        if k.group == group && !out.contains(&k.version) {
            out.push(k.version);
        }
    }
    out
}

/// The API groups other than core, in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in all() {
        if !k.group.is_empty() && !out.contains(&k.group) {
            out.push(k.group);
        }
    }
    out
}

/// Field paths present (non-null) in `input` but dropped by the schema.
pub fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    fn walk(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
        match (input, typed) {
            (Value::Object(i), Value::Object(t)) => {
                for (k, v) in i {
                    if v.is_null() {
                        continue;
                    }
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match t.get(k) {
                        Some(tv) => walk(v, tv, &p, out),
                        None => out.push(p),
                    }
                }
            }
            (Value::Array(i), Value::Array(t)) => {
                for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                    walk(iv, tv, &format!("{path}[{n}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(input, typed, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_drops_and_reports_unknown_fields() {
        let k = find("apps", "v1", "deployments").unwrap();
        let input = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "bogus": 1},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}});
        let typed = (k.decode)(&input).unwrap();
        assert_eq!(
            unknown_fields(&input, &typed),
            ["metadata.bogus", "spec.template.spec.containers[0].imagee"]
        );
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}});
        assert!((find("", "v1", "configmaps").unwrap().decode)(&bad).is_err());
    }
}
