//! Authorization as upstream's RBAC authorizer: the rules of the
//! ClusterRoles bound cluster-wide and of the Roles/ClusterRoles bound in
//! the request's namespace, matched on verb, API group, resource,
//! subresource, name or non-resource URL; `system:masters` bypasses it.
//! Also the escalation checks on role and binding writes, and the
//! bootstrap roles and bindings created at start.

use std::collections::BTreeMap;

use hako_kube_store::{ListOptions, Store};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::resources;
use crate::status::{quoted, ApiError};

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// What a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    /// false: a non-resource request (discovery, /version, ...) on `path`.
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Self {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            verb: verb.into(),
            resource_request: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Upstream's 403: `pods "x" is forbidden: User "u" cannot get resource
    /// "pods" in API group "" in the namespace "ns"`.
    pub fn forbidden(&self, user: &str) -> ApiError {
        if !self.resource_request {
            return ApiError::forbidden(
                "",
                "",
                "",
                format!(
                    "User {} cannot {} path {}",
                    quoted(user),
                    self.verb,
                    quoted(&self.path)
                ),
            );
        }
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {}", quoted(&self.namespace))
        };
        ApiError::forbidden(
            &self.group,
            &self.resource,
            &self.name,
            format!(
                "User {} cannot {} resource {} in API group {} {scope}",
                quoted(user),
                self.verb,
                quoted(&self.combined_resource()),
                quoted(&self.group)
            ),
        )
    }
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.as_deref()
        .unwrap_or_default()
        .iter()
        .any(|x| x == "*" || x == want)
}

/// Whether one rule allows the request.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !rule.verbs.iter().any(|v| v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|u| url_matches(u, &a.path));
    }
    if !has(&rule.api_groups, &a.group) {
        return false;
    }
    let combined = a.combined_resource();
    let resource_ok = rule
        .resources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(a.subresource.as_str()))
        });
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => !a.name.is_empty() && names.contains(&a.name),
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn subject_matches(s: &Subject, user: &UserInfo, binding_ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

/// `v` as `T`, whatever its kind says: a ClusterRoleBinding read as a
/// RoleBinding (same fields), a Role as a ClusterRole (k8s-openapi refuses
/// a kind other than its own).
fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    serde_json::from_value(v).ok()
}

fn list_values(store: &dyn Store, plural: &str, ns: Option<&str>) -> Vec<Value> {
    let kind = resources::find(GROUP, "v1", plural).expect("RBAC kinds are served");
    store
        .list(&kind.ns_prefix(ns), &ListOptions::default())
        .map(|r| r.items.into_iter().map(|i| i.value).collect())
        .unwrap_or_default()
}

fn get_value(store: &dyn Store, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let kind = resources::find(GROUP, "v1", plural).expect("RBAC kinds are served");
    store.get(&kind.key(ns, name)).ok().map(|s| s.value)
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// A ClusterRole's rules, with those of the ClusterRoles its
/// aggregationRule selects (computed when read, one level deep).
pub fn cluster_role_rules(store: &dyn Store, role: &ClusterRole) -> Vec<PolicyRule> {
    let mut rules = role.rules.clone().unwrap_or_default();
    let selectors = role
        .aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.clone())
        .unwrap_or_default();
    if selectors.is_empty() {
        return rules;
    }
    for v in list_values(store, "clusterroles", None) {
        let Some(other) = typed::<ClusterRole>(&v) else {
            continue;
        };
        if other.metadata.name == role.metadata.name {
            continue;
        }
        let labels = other.metadata.labels.clone().unwrap_or_default();
        if selectors.iter().any(|s| selector_matches(s, &labels)) {
            rules.extend(other.rules.unwrap_or_default());
        }
    }
    rules
}

/// The rules of a roleRef (a Role in `ns` or a ClusterRole); None if the
/// role does not exist.
fn role_ref_rules(store: &dyn Store, kind: &str, name: &str, ns: &str) -> Option<Vec<PolicyRule>> {
    match kind {
        "ClusterRole" => {
            let v = get_value(store, "clusterroles", None, name)?;
            let role: ClusterRole = typed(&v)?;
            Some(cluster_role_rules(store, &role))
        }
        "Role" if !ns.is_empty() => {
            let v = get_value(store, "roles", Some(ns), name)?;
            let role: Role = typed(&v)?;
            Some(role.rules.unwrap_or_default())
        }
        _ => None,
    }
}

/// Every rule `user` holds in `ns` ("" = cluster-wide bindings only).
pub fn rules_for(store: &dyn Store, user: &UserInfo, ns: &str) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut bindings: Vec<(Value, String)> = list_values(store, "clusterrolebindings", None)
        .into_iter()
        .map(|v| (v, String::new()))
        .collect();
    if !ns.is_empty() {
        bindings.extend(
            list_values(store, "rolebindings", Some(ns))
                .into_iter()
                .map(|v| (v, ns.to_string())),
        );
    }
    for (v, bns) in bindings {
        // ClusterRoleBinding and RoleBinding have the same fields.
        let Some(b) = typed::<RoleBinding>(&v) else {
            continue;
        };
        let subjects = b.subjects.unwrap_or_default();
        if !subjects.iter().any(|s| subject_matches(s, user, &bns)) {
            continue;
        }
        if let Some(rules) = role_ref_rules(store, &b.role_ref.kind, &b.role_ref.name, &bns) {
            out.extend(rules);
        }
    }
    out
}

/// Whether `user` may do `a`.
pub fn allowed(store: &dyn Store, user: &UserInfo, a: &Attributes) -> bool {
    if user.is_master() {
        return true;
    }
    if let Some(decision) = crate::node_authz::decide(store, user, a) {
        return decision;
    }
    let ns = if a.resource_request {
        a.namespace.as_str()
    } else {
        ""
    };
    rules_for(store, user, ns).iter().any(|r| rule_allows(r, a))
}

/// Authorize or answer upstream's 403.
pub fn authorize(store: &dyn Store, user: &UserInfo, a: &Attributes) -> Result<(), ApiError> {
    if allowed(store, user, a) {
        Ok(())
    } else {
        tracing::debug!(user = %user.name, verb = %a.verb, resource = %a.resource, ns = %a.namespace, "forbidden");
        Err(a.forbidden(&user.name))
    }
}

/// The single-verb/group/resource/name pieces of a rule.
fn atoms(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            out.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: one(url),
                ..Default::default()
            });
        }
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                let names = rule.resource_names.clone().unwrap_or_default();
                if names.is_empty() {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(g),
                        resources: one(r),
                        ..Default::default()
                    });
                }
                for n in names {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(g),
                        resources: one(r),
                        resource_names: one(&n),
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

fn first(list: &Option<Vec<String>>) -> &str {
    list.as_deref()
        .and_then(|l| l.first())
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether `owner` grants everything the single-valued rule `atom` does.
fn covers_atom(owner: &PolicyRule, atom: &PolicyRule) -> bool {
    let verb = atom.verbs[0].as_str();
    if !owner.verbs.iter().any(|v| v == "*" || v == verb) {
        return false;
    }
    if atom.non_resource_urls.is_some() {
        let url = first(&atom.non_resource_urls);
        return owner.non_resource_urls.iter().flatten().any(|u| {
            u == "*" || u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
        });
    }
    let (g, r) = (first(&atom.api_groups), first(&atom.resources));
    if !owner
        .api_groups
        .iter()
        .flatten()
        .any(|x| x == "*" || x == g)
    {
        return false;
    }
    let sub = r.split_once('/').map(|(_, s)| s);
    let res_ok = owner
        .resources
        .iter()
        .flatten()
        .any(|x| x == "*" || x == r || (sub.is_some() && x.strip_prefix("*/") == sub));
    if !res_ok {
        return false;
    }
    match owner.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => {
            let n = first(&atom.resource_names);
            !n.is_empty() && names.iter().any(|x| x == n)
        }
    }
}

/// The parts of `wanted` no rule of `owner` grants.
fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(atoms)
        .filter(|a| !owner.iter().any(|o| covers_atom(o, a)))
        .collect()
}

fn show_rule(r: &PolicyRule) -> String {
    let list = |l: &Option<Vec<String>>| {
        l.iter()
            .flatten()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts = Vec::new();
    if r.non_resource_urls.is_some() {
        parts.push(format!("NonResourceURLs:[{}]", list(&r.non_resource_urls)));
    } else {
        parts.push(format!("APIGroups:[{}]", list(&r.api_groups)));
        parts.push(format!("Resources:[{}]", list(&r.resources)));
        if r.resource_names.is_some() {
            parts.push(format!("ResourceNames:[{}]", list(&r.resource_names)));
        }
    }
    parts.push(format!("Verbs:[{}]", list(&Some(r.verbs.clone()))));
    format!("{{{}}}", parts.join(", "))
}

fn escalation_error(plural: &str, name: &str, user: &UserInfo, missing: &[PolicyRule]) -> ApiError {
    let groups = user
        .groups
        .iter()
        .map(|g| quoted(g))
        .collect::<Vec<_>>()
        .join(" ");
    let rules = missing.iter().map(show_rule).collect::<Vec<_>>().join("; ");
    ApiError::forbidden(
        GROUP,
        plural,
        name,
        format!(
            "user {} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held: {rules}",
            quoted(&user.name)
        ),
    )
}

/// Upstream's escalation prevention for a Role/ClusterRole (`escalate`
/// verb or holding every rule it grants) or a binding (`bind` verb on the
/// role it refers to, or holding every rule of that role), checked before
/// the object `obj` of `plural` is written in `ns` ("" for cluster scope).
pub fn check_write(
    store: &dyn Store,
    user: &UserInfo,
    plural: &str,
    ns: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    match plural {
        "roles" | "clusterroles" => {
            let escalate = Attributes::resource("escalate", GROUP, plural, ns, name);
            if allowed(store, user, &escalate) {
                return Ok(());
            }
            let role: ClusterRole = typed(obj).ok_or_else(|| {
                ApiError::bad_request(format!("the {plural} object is not a role"))
            })?;
            if role.aggregation_rule.is_some() {
                return Err(ApiError::forbidden(
                    GROUP,
                    plural,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule".into(),
                ));
            }
            let missing = uncovered(
                &rules_for(store, user, ns),
                role.rules.as_deref().unwrap_or_default(),
            );
            if missing.is_empty() {
                Ok(())
            } else {
                Err(escalation_error(plural, name, user, &missing))
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let b: RoleBinding = typed(obj).ok_or_else(|| {
                ApiError::bad_request(format!("the {plural} object is not a binding"))
            })?;
            let rr = &b.role_ref;
            let role_plural = if rr.kind == "ClusterRole" {
                "clusterroles"
            } else {
                "roles"
            };
            let bind = Attributes::resource("bind", GROUP, role_plural, ns, &rr.name);
            if allowed(store, user, &bind) {
                return Ok(());
            }
            let Some(wanted) = role_ref_rules(store, &rr.kind, &rr.name, ns) else {
                return Err(ApiError::forbidden(
                    GROUP,
                    plural,
                    name,
                    format!(
                        "user {} cannot bind {} {}: it does not exist and the user may not bind it",
                        quoted(&user.name),
                        rr.kind,
                        quoted(&rr.name)
                    ),
                ));
            };
            let missing = uncovered(&rules_for(store, user, ns), &wanted);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(escalation_error(plural, name, user, &missing))
            }
        }
        _ => Ok(()),
    }
}

/// The resource and non-resource rules of `user` in `ns`, as a
/// SelfSubjectRulesReview's status lists them.
pub fn rules_review(store: &dyn Store, user: &UserInfo, ns: &str) -> Value {
    let rules = if user.is_master() {
        vec![
            PolicyRule {
                verbs: vec!["*".into()],
                api_groups: Some(vec!["*".into()]),
                resources: Some(vec!["*".into()]),
                ..Default::default()
            },
            PolicyRule {
                verbs: vec!["*".into()],
                non_resource_urls: Some(vec!["*".into()]),
                ..Default::default()
            },
        ]
    } else {
        rules_for(store, user, ns)
    };
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if let Some(urls) = &r.non_resource_urls {
            if !urls.is_empty() {
                non_resource_rules.push(json!({"verbs": r.verbs, "nonResourceURLs": urls}));
            }
        }
        if r.resources.as_ref().is_some_and(|x| !x.is_empty()) {
            let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups.clone().unwrap_or_default(),
                               "resources": r.resources});
            if let Some(n) = r.resource_names.as_ref().filter(|n| !n.is_empty()) {
                v["resourceNames"] = json!(n);
            }
            resource_rules.push(v);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The namespaced resources the view/edit roles cover.
fn workloads(verbs: &[&str]) -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            verbs,
        ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            verbs,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            verbs,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], verbs),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status"],
            verbs,
        ),
    ]
}

/// The ClusterRoles upstream bootstraps (and those hako's components run
/// as), as (name, aggregate-to label, rules, aggregationRule source).
fn bootstrap_cluster_roles() -> Vec<Value> {
    let mut view = workloads(READ);
    view.push(rule(
        &[""],
        &[
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "resourcequotas",
            "resourcequotas/status",
        ],
        READ,
    ));
    view.push(rule(&[""], &["namespaces"], READ));
    let mut edit = workloads(WRITE);
    edit.push(rule(
        &[""],
        &[
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "secrets",
            "services/proxy",
        ],
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
    ));
    edit.push(rule(
        &[""],
        &["pods/eviction", "serviceaccounts/token"],
        &["create"],
    ));
    edit.push(rule(&[""], &["serviceaccounts"], &["impersonate"]));
    let admin = vec![
        rule(&[GROUP], &["rolebindings", "roles"], ALL_VERBS),
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
    ];
    let aggregated = |name: &str, to: &[&str], rules: Vec<Value>| {
        let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        for t in to {
            labels[format!("rbac.authorization.k8s.io/aggregate-to-{t}")] = json!("true");
        }
        json!({"metadata": {"name": format!("system:aggregate-to-{name}"), "labels": labels}, "rules": rules})
    };
    let aggregating = |name: &str| {
        json!({"metadata": {"name": name}, "rules": [],
               "aggregationRule": {"clusterRoleSelectors": [
                   {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}]}})
    };
    let plain = |name: &str, rules: Vec<Value>| json!({"metadata": {"name": name}, "rules": rules});
    vec![
        plain(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        aggregating("admin"),
        aggregating("edit"),
        aggregating("view"),
        aggregated("view", &["view", "edit", "admin"], view),
        aggregated("edit", &["edit", "admin"], edit),
        aggregated("admin", &["admin"], admin),
        plain(
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        plain(
            "system:discovery",
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        plain(
            "system:public-info-viewer",
            vec![urls(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
        // The kubelet: its node, its pods' objects, mirror pods, events,
        // its lease (upstream narrows this further with the Node authorizer).
        plain(
            "system:node",
            vec![
                rule(
                    &[""],
                    &["nodes"],
                    &[
                        "create", "get", "list", "watch", "patch", "update", "delete",
                    ],
                ),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "create", "delete"],
                ),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "secrets",
                        "services",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                    ],
                    READ,
                ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "delete", "get", "patch", "update"],
                ),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
            ],
        ),
        plain(
            "system:kube-scheduler",
            vec![
                rule(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "patch", "update", "delete"],
                ),
                rule(&[""], &["pods/binding", "bindings"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(
                    &[""],
                    &["nodes", "namespaces", "services", "replicationcontrollers"],
                    READ,
                ),
                // The volume binder: a delayed-binding claim gets the node chosen for it.
                rule(
                    &[""],
                    &["persistentvolumes", "persistentvolumeclaims"],
                    &["get", "list", "watch", "patch", "update"],
                ),
                rule(&["apps"], &["replicasets", "statefulsets"], READ),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "get", "update"],
                ),
            ],
        ),
        // hako runs every controller under one identity (upstream gives
        // each its service account); the garbage collector and the
        // namespace controller act on every kind.
        plain(
            "system:kube-controller-manager",
            vec![rule(&["*"], &["*"], ALL_VERBS)],
        ),
        plain(
            "system:node-proxier",
            vec![
                rule(&[""], &["services", "endpoints", "nodes"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
            ],
        ),
    ]
}

fn binding(role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"kind": kind, "name": name, "apiGroup": GROUP}))
        .collect();
    json!({"metadata": {"name": role},
           "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

fn bootstrap_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", &[("Group", crate::auth::MASTERS)]),
        binding(
            "system:basic-user",
            &[("Group", crate::auth::AUTHENTICATED)],
        ),
        binding("system:discovery", &[("Group", crate::auth::AUTHENTICATED)]),
        binding(
            "system:public-info-viewer",
            &[
                ("Group", crate::auth::AUTHENTICATED),
                ("Group", "system:unauthenticated"),
            ],
        ),
        binding("system:node", &[("Group", "system:nodes")]),
        binding(
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        binding("system:node-proxier", &[("User", "system:kube-proxy")]),
    ]
}

/// Create the bootstrap ClusterRoles and ClusterRoleBindings that are
/// missing (existing ones are left as the cluster's admin changed them).
pub fn bootstrap(store: &dyn Store) -> Result<(), ApiError> {
    let mark = |mut v: Value, kind: &str| {
        v["apiVersion"] = json!(format!("{GROUP}/v1"));
        v["kind"] = json!(kind);
        let meta = &mut v["metadata"];
        if meta.get("labels").is_none() {
            meta["labels"] = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        }
        meta["annotations"] = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
        v
    };
    for role in bootstrap_cluster_roles() {
        crate::handler::create_if_absent(store, GROUP, "clusterroles", mark(role, "ClusterRole"))?;
    }
    for b in bootstrap_bindings() {
        crate::handler::create_if_absent(
            store,
            GROUP,
            "clusterrolebindings",
            mark(b, "ClusterRoleBinding"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_match_like_upstream() {
        let pods = r(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}));
        assert!(rule_allows(
            &pods,
            &Attributes::resource("list", "", "pods", "ns", "")
        ));
        assert!(!rule_allows(
            &pods,
            &Attributes::resource("delete", "", "pods", "ns", "a")
        ));
        assert!(!rule_allows(
            &pods,
            &Attributes::resource("get", "", "pods/log", "ns", "a")
        ));
        assert!(!rule_allows(
            &pods,
            &Attributes::resource("get", "apps", "pods", "ns", "a")
        ));
        let logs = r(json!({"apiGroups": ["*"], "resources": ["*/log"], "verbs": ["*"]}));
        assert!(rule_allows(
            &logs,
            &Attributes::resource("get", "", "pods/log", "ns", "a")
        ));
        assert!(!rule_allows(
            &logs,
            &Attributes::resource("get", "", "pods", "ns", "a")
        ));
        let named = r(
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]}),
        );
        assert!(rule_allows(
            &named,
            &Attributes::resource("get", "", "configmaps", "n", "x")
        ));
        assert!(!rule_allows(
            &named,
            &Attributes::resource("get", "", "configmaps", "n", "y")
        ));
        assert!(!rule_allows(
            &named,
            &Attributes::resource("get", "", "configmaps", "n", "")
        ));
        let api = r(json!({"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]}));
        assert!(rule_allows(
            &api,
            &Attributes::non_resource("get", "/apis/apps/v1")
        ));
        assert!(rule_allows(
            &api,
            &Attributes::non_resource("get", "/version")
        ));
        assert!(!rule_allows(
            &api,
            &Attributes::non_resource("get", "/versionx")
        ));
        assert!(!rule_allows(
            &api,
            &Attributes::resource("get", "", "pods", "", "")
        ));
    }

    #[test]
    fn coverage_finds_escalations() {
        let owner = vec![r(
            json!({"apiGroups": [""], "resources": ["pods", "*/log"], "verbs": ["get", "list"]}),
        )];
        let ok = vec![r(
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"], "resourceNames": ["a"]}),
        )];
        assert!(uncovered(&owner, &ok).is_empty());
        let bad = vec![r(
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}),
        )];
        let missing = uncovered(&owner, &bad);
        assert_eq!(missing.len(), 1);
        assert_eq!(
            show_rule(&missing[0]),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#
        );
        let star = vec![r(
            json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}),
        )];
        assert_eq!(uncovered(&owner, &star).len(), 1);
    }
}
