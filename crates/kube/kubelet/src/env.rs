//! A container's environment: `envFrom` (ConfigMaps and Secrets, with a prefix), `env`
//! with `$(VAR)` references, `valueFrom.fieldRef`, `resourceFieldRef`,
//! `configMapKeyRef` and `secretKeyRef`, as kubelet computes them.

use std::collections::HashMap;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::objects::PodObjects;
use crate::quantity::parse_milli;

/// Expand `$(NAME)` from `vars`; `$$` is a literal `$`; an unknown reference stays as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        if let Some(v) = vars.get(name) {
                            out.push_str(v);
                        } else {
                            out.push_str(&input[i..i + 3 + end]);
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// What a fieldRef or resourceFieldRef may read besides the pod itself.
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    pub pod_ips: &'a [String],
    pub host_ip: &'a str,
    pub node_name: &'a str,
    /// Node allocatable cpu (millicores) and memory (bytes): the value of an unset limit.
    pub node_cpu_milli: i128,
    pub node_memory: i128,
    /// The ConfigMaps and Secrets the pod refers to.
    pub objects: &'a PodObjects,
    /// Warnings for events (envFrom keys that are no variable names).
    pub warnings: std::cell::RefCell<Vec<String>>,
}

/// Upstream's IsEnvVarName: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '-' || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

type Pairs = Vec<(String, String)>;

/// The variables of the container's `envFrom`, in order (later sources win).
fn env_from(c: &Container, cx: &EnvContext) -> Result<Vec<(String, String)>> {
    let ns = cx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out: Vec<(String, String)> = Vec::new();
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.as_deref().unwrap_or("");
        let (kind, name, optional, pairs): (&str, &str, bool, Option<Pairs>) =
            if let Some(r) = &f.config_map_ref {
                let pairs =
                    cx.objects
                        .config_maps
                        .get(&r.name)
                        .cloned()
                        .flatten()
                        .map(|cm| {
                            let mut v: Vec<(String, String)> = cm
                                .data
                                .iter()
                                .flatten()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            v.extend(cm.binary_data.iter().flatten().map(|(k, b)| {
                                (k.clone(), String::from_utf8_lossy(&b.0).into_owned())
                            }));
                            v
                        });
                ("configmap", &r.name, r.optional == Some(true), pairs)
            } else if let Some(r) = &f.secret_ref {
                let pairs = cx.objects.secrets.get(&r.name).cloned().flatten().map(|s| {
                    s.data
                        .iter()
                        .flatten()
                        .map(|(k, b)| (k.clone(), String::from_utf8_lossy(&b.0).into_owned()))
                        .collect()
                });
                ("secret", &r.name, r.optional == Some(true), pairs)
            } else {
                continue;
            };
        let Some(mut pairs) = pairs else {
            if optional {
                continue;
            }
            bail!("{kind} {name:?} not found");
        };
        pairs.sort();
        let mut invalid = Vec::new();
        for (k, v) in pairs {
            let k = format!("{prefix}{k}");
            if !is_env_var_name(&k) {
                invalid.push(k);
                continue;
            }
            out.retain(|(x, _)| *x != k);
            out.push((k, v));
        }
        if !invalid.is_empty() {
            invalid.sort();
            cx.warnings.borrow_mut().push(format!(
                "Keys [{}] from the EnvFrom {} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", "),
                if kind == "configmap" { "configMap" } else { kind }
            ));
        }
    }
    Ok(out)
}

fn bracketed<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    Some(rest.trim_matches(|c| c == '\'' || c == '"'))
}

pub(crate) fn field_ref(path: &str, cx: &EnvContext) -> Result<String> {
    let meta = &cx.pod.metadata;
    let spec = cx.pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| cx.node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => cx.host_ip.to_string(),
        "status.podIP" => cx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => cx.pod_ips.join(","),
        p => {
            if let Some(k) = bracketed(p, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = bracketed(p, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(k).cloned())
                    .unwrap_or_default()
            } else if p == "metadata.labels" || p == "metadata.annotations" {
                let m = if p == "metadata.labels" {
                    &meta.labels
                } else {
                    &meta.annotations
                };
                let mut lines: Vec<String> = m
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                    .collect();
                lines.sort();
                lines.join("\n")
            } else {
                bail!("unsupported fieldRef fieldPath {p:?}")
            }
        }
    })
}

pub(crate) fn resource_field_ref(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    cx: &EnvContext,
) -> Result<String> {
    let res = c.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let m = if limits {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(name)).and_then(|q| parse_milli(&q.0))
    };
    // An unset limit reads as the node's allocatable; an unset request as the limit or 0.
    let milli = match resource {
        "limits.cpu" => get(true, "cpu").unwrap_or(cx.node_cpu_milli),
        "limits.memory" => get(true, "memory").unwrap_or(cx.node_memory * 1000),
        "requests.cpu" => get(false, "cpu").or(get(true, "cpu")).unwrap_or(0),
        "requests.memory" => get(false, "memory").or(get(true, "memory")).unwrap_or(0),
        "limits.ephemeral-storage" => get(true, "ephemeral-storage").unwrap_or(0),
        "requests.ephemeral-storage" => get(false, "ephemeral-storage").unwrap_or(0),
        r => bail!("unsupported resourceFieldRef resource {r:?}"),
    };
    let div = match divisor {
        Some(d) => parse_milli(d).filter(|d| *d > 0).ok_or_else(|| {
            anyhow::anyhow!("resourceFieldRef divisor {d:?} is not a positive quantity")
        })?,
        None => 1000,
    };
    // Rounded up, as upstream's ConvertResourceCPUToString/MemoryToString.
    Ok(((milli + div - 1) / div)
        .max(if milli > 0 { 1 } else { 0 })
        .to_string())
}

/// The environment of container `c`, in order, with references expanded.
pub fn container_env(c: &Container, cx: &EnvContext) -> Result<Vec<(String, String)>> {
    let ns = cx.pod.metadata.namespace.as_deref().unwrap_or("default");
    // envFrom first; env entries override them (and may refer to them).
    let mut out = env_from(c, cx)?;
    let mut vars: HashMap<String, String> = out.iter().cloned().collect();
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_ref(&f.field_path, cx)
                    .map_err(|err| anyhow::anyhow!("env {:?}: {err}", e.name))?
            } else if let Some(r) = &vf.resource_field_ref {
                if let Some(name) = r.container_name.as_deref().filter(|n| *n != c.name) {
                    let spec = cx.pod.spec.as_ref();
                    let other = spec
                        .into_iter()
                        .flat_map(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                        })
                        .find(|x| x.name == name)
                        .ok_or_else(|| {
                            anyhow::anyhow!("env {:?}: no container {name:?}", e.name)
                        })?;
                    resource_field_ref(
                        other,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        cx,
                    )?
                } else {
                    resource_field_ref(
                        c,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        cx,
                    )?
                }
            } else if let Some(r) = &vf.config_map_key_ref {
                match cx.objects.config_map_key(&r.name, &r.key) {
                    Some(Some(v)) => v,
                    _ if r.optional == Some(true) => continue,
                    None => bail!("configmap {:?} not found", r.name),
                    Some(None) => {
                        bail!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)
                    }
                }
            } else if let Some(r) = &vf.secret_key_ref {
                match cx.objects.secret_key(&r.name, &r.key) {
                    Some(Some(v)) => v,
                    _ if r.optional == Some(true) => continue,
                    None => bail!("secret {:?} not found", r.name),
                    Some(None) => bail!("couldn't find key {} in Secret {ns}/{}", r.key, r.name),
                }
            } else {
                continue;
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), &vars)
        };
        vars.insert(e.name.clone(), value.clone());
        out.retain(|(k, _)| *k != e.name);
        out.push((e.name.clone(), value));
    }
    Ok(out)
}

/// The command and args of `c` with `$(VAR)` expanded from its environment.
pub fn command_args(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let ex = |v: &Option<Vec<String>>| {
        v.iter()
            .flatten()
            .map(|s| expand(s, &vars))
            .collect::<Vec<_>>()
    };
    (ex(&c.command), ex(&c.args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_like_upstream() {
        let vars: HashMap<String, String> =
            [("A".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)", &vars), "x-$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$A $(A", &vars), "$A $(A");
        assert_eq!(expand("é$(A)", &vars), "éx");
    }
}
