//! Object metadata: name rules, generated names, uid, timestamps, and the
//! per-kind defaults upstream applies on create.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::resources::{Kind, NameRule};

/// Now, as Kubernetes writes times (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `secs` seconds from now, as Kubernetes writes times (a graceful
/// deletion's deletionTimestamp is when the grace period ends).
pub fn now_plus(secs: i64) -> String {
    let t = OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Seconds since an RFC 3339 time (None if it does not parse).
pub fn age_seconds(ts: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(ts, &Rfc3339).ok()?;
    Some((OffsetDateTime::now_utc() - t).whole_seconds())
}

/// kubectl's short durations ("45s", "3m20s", "5h", "12d").
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else {
        format!("{}y", h / 24 / 365)
    }
}

pub fn age(obj: &Value) -> String {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(age_seconds)
        .map(human_duration)
        .unwrap_or_else(|| "<unknown>".into())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom only fails without an entropy source; zeros then still give
    // a well-formed (if predictable) value.
    let _ = getrandom::fill(&mut b);
    b
}

/// A random (version 4) UUID.
pub fn uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five characters from upstream's alphabet (no vowels, no confusables).
pub fn name_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHA[*b as usize % ALPHA.len()] as char)
        .collect()
}

fn is_label(s: &str, first_letter: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && (!first_letter || b[0].is_ascii_lowercase())
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|l| is_label(l, false))
}

/// Why `name` is not valid under `rule`, or None.
pub fn name_problem(rule: NameRule, name: &str) -> Option<String> {
    let (ok, what) = match rule {
        NameRule::Subdomain => (
            is_subdomain(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        NameRule::Label => (
            is_label(name, false),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        NameRule::Label1035 => (
            is_label(name, true),
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        NameRule::PathSegment => {
            let why = match name {
                "." => Some("may not be '.'"),
                ".." => Some("may not be '..'"),
                _ if name.contains('/') => Some("may not contain '/'"),
                _ if name.contains('%') => Some("may not contain '%'"),
                _ if name.chars().any(char::is_control) => Some("may not contain control characters"),
                _ => None,
            };
            (why.is_none(), why.unwrap_or(""))
        }
    };
    (!ok).then(|| format!("Invalid value: {}: {what}", crate::status::quoted(name)))
}

/// Problems with label keys and values, as (field, message).
pub fn label_problems(obj: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let key_ok = {
                let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
                (prefix.is_empty() || is_subdomain(prefix))
                    && !name.is_empty()
                    && name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name.ends_with(|c: char| c.is_ascii_alphanumeric())
            };
            if !key_ok {
                out.push((
                    "metadata.labels".into(),
                    format!("Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", crate::status::quoted(k)),
                ));
            }
            let v = v.as_str().unwrap_or("");
            let val_ok = v.is_empty()
                || (v.len() <= 63
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
            if !val_ok {
                out.push((
                    "metadata.labels".into(),
                    format!("Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", crate::status::quoted(v)),
                ));
            }
        }
    }
    out
}

fn set_default(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, seg) in path.iter().enumerate() {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i == path.len() - 1 {
            map.entry(seg.to_string()).or_insert(value);
            return;
        }
        cur = map.entry(seg.to_string()).or_insert_with(|| json!({}));
    }
}

fn pod_spec_defaults(spec: &mut Value) {
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["securityContext"], json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                set_default(
                    c,
                    &["terminationMessagePath"],
                    json!("/dev/termination-log"),
                );
                set_default(c, &["terminationMessagePolicy"], json!("File"));
                let latest = c
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
                let policy = if latest { "Always" } else { "IfNotPresent" };
                set_default(c, &["imagePullPolicy"], json!(policy));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, &["protocol"], json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Strategy and policy defaults of the workload kinds (what `kubectl
/// rollout status` and the controllers read).
fn workload_defaults(kind: &str, obj: &mut Value) {
    let rolling =
        |obj: &Value| obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate"));
    match kind {
        "DaemonSet" => {
            set_default(
                obj,
                &["spec", "updateStrategy", "type"],
                json!("RollingUpdate"),
            );
            if rolling(obj) {
                set_default(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
                    json!(1),
                );
                set_default(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "maxSurge"],
                    json!(0),
                );
            }
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
        }
        "StatefulSet" => {
            set_default(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            set_default(
                obj,
                &["spec", "updateStrategy", "type"],
                json!("RollingUpdate"),
            );
            if rolling(obj) {
                set_default(
                    obj,
                    &["spec", "updateStrategy", "rollingUpdate", "partition"],
                    json!(0),
                );
            }
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(
                obj,
                &["spec", "persistentVolumeClaimRetentionPolicy"],
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        _ => {}
    }
}

/// The defaults upstream fills in on create, per kind.
pub fn defaults(kind: &Kind, obj: &mut Value) {
    match kind.kind {
        "Namespace" => {
            set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            set_default(obj, &["status", "phase"], json!("Active"));
        }
        "Secret" => set_default(obj, &["type"], json!("Opaque")),
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec_defaults(spec);
            }
            set_default(obj, &["status", "phase"], json!("Pending"));
            set_default(obj, &["status", "qosClass"], json!("BestEffort"));
        }
        "Service" => {
            set_default(obj, &["spec", "type"], json!("ClusterIP"));
            set_default(obj, &["spec", "sessionAffinity"], json!("None"));
            // The cluster IP and node ports come from `services::allocate`.
            set_default(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
            set_default(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
            set_default(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, &["protocol"], json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set_default(p, &["targetPort"], port);
                    }
                }
            }
            set_default(obj, &["status", "loadBalancer"], json!({}));
        }
        "Deployment" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            // Upstream defaults by strategy type, so an empty strategy gets it too.
            set_default(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
                set_default(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                    json!("25%"),
                );
                set_default(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxSurge"],
                    json!("25%"),
                );
            }
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec_defaults(spec);
            }
        }
        "CronJob" => {
            for (k, v) in [
                ("concurrencyPolicy", json!("Allow")),
                ("suspend", json!(false)),
                ("successfulJobsHistoryLimit", json!(3)),
                ("failedJobsHistoryLimit", json!(1)),
            ] {
                set_default(obj, &["spec", k], v);
            }
            if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
                pod_spec_defaults(spec);
            }
        }
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            workload_defaults(kind.kind, obj);
            if kind.kind == "Job" {
                crate::validation::job_defaults(obj);
            }
            if kind.kind != "DaemonSet" && kind.kind != "Job" {
                set_default(obj, &["spec", "replicas"], json!(1));
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec_defaults(spec);
            }
        }
        "PersistentVolume" | "PersistentVolumeClaim" | "StorageClass" => {
            crate::storage::defaults(kind.kind, obj)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(3600 * 24 * 3 + 3600), "3d1h");
    }

    #[test]
    fn names() {
        assert!(name_problem(NameRule::Subdomain, "a.b-c").is_none());
        assert!(name_problem(NameRule::Subdomain, "Bad_Name").is_some());
        assert!(name_problem(NameRule::Label, "a.b").is_some());
        assert!(name_problem(NameRule::Label1035, "1abc").is_some());
        let p = name_problem(NameRule::Subdomain, "a\u{1b}[31m").unwrap();
        assert!(!p.contains('\u{1b}'));
    }
}
