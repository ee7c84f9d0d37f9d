//! What kubectl reads about and sends for the built-in kinds, against
//! `hako kube up`: `kubectl explain` from the /openapi/v3 documents (the
//! k8s-openapi schemas with the API's descriptions), strict validation still
//! naming the unknown field, and the protobuf bodies of `kubectl create
//! job|cronjob|ingress`.

use serde_json::{json, Value};

mod kube_common;
use kube_common::{Kube, API_ONLY};

/// The line of `out` that starts (after indentation) with `field`.
fn line<'a>(out: &'a str, field: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next().is_some_and(|w| w == field))
        .unwrap_or_else(|| panic!("no {field} line in:\n{out}"))
}

#[test]
fn kubectl_explain_describes_the_built_in_kinds() {
    let k = Kube::up(API_ONLY);

    let out = k.ok(&["explain", "deployment.spec.replicas"]);
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "VERSION:    v1",
        "FIELD: replicas <integer>",
        "Number of desired pods",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }

    // Required fields are marked, nested types named, descriptions kept.
    let spec = k.ok(&["explain", "deployments.spec"]);
    assert!(line(&spec, "template").contains("-required-"), "{spec}");
    assert!(
        line(&spec, "selector").contains("<LabelSelector>"),
        "{spec}"
    );
    assert!(!line(&spec, "replicas").contains("-required-"), "{spec}");

    // --recursive walks the references down to the leaves.
    let rec = k.ok(&["explain", "pod.spec.containers", "--recursive"]);
    assert!(line(&rec, "name").contains("<string> -required-"), "{rec}");
    assert!(line(&rec, "livenessProbe").contains("<Probe>"), "{rec}");
    assert!(
        line(&rec, "initialDelaySeconds").contains("<integer>"),
        "{rec}"
    );
    assert!(line(&rec, "mountPath").contains("<string>"), "{rec}");

    let svc = k.ok(&["explain", "svc", "--api-version=v1"]);
    assert!(
        svc.contains("KIND:       Service") && svc.contains("VERSION:    v1"),
        "{svc}"
    );
    assert!(line(&svc, "spec").contains("<ServiceSpec>"), "{svc}");
    // Upstream does not mark metadata required (k8s-openapi's types do).
    assert!(!line(&svc, "metadata").contains("-required-"), "{svc}");
    assert!(
        k.ok(&["explain", "service.spec.type"])
            .contains("FIELD: type <string>"),
        "service.spec.type"
    );

    // Other groups: batch, rbac, cluster-scoped kinds.
    let cj = k.ok(&["explain", "cronjob.spec.schedule"]);
    assert!(
        cj.contains("GROUP:      batch") && cj.contains("FIELD: schedule <string>"),
        "{cj}"
    );
    let rules = k.ok(&["explain", "clusterrole.rules"]);
    assert!(line(&rules, "verbs").contains("-required-"), "{rules}");

    // A field that does not exist is kubectl's usual error.
    let err = k.fails_in(&["explain", "deployment.spec.replicass"], None);
    assert!(err.contains("field \"replicass\" does not exist"), "{err}");
}

#[test]
fn strict_validation_still_names_an_unknown_field() {
    let k = Kube::up(API_ONLY);
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  replicass: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    let err = k.fails_in(&["apply", "--validate=strict", "-f", "-"], Some(bad));
    assert!(err.contains("unknown field \"spec.replicass\""), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let out = k.run(&["get", "deployment", "web"], None);
    assert!(!out.status.success(), "the bad Deployment was stored");
}

#[test]
fn kubectl_create_job_cronjob_ingress_send_protobuf() {
    let k = Kube::up(API_ONLY);

    k.ok(&[
        "create",
        "job",
        "once",
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ]);
    let job = k.json(&["get", "job", "once"]);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never", "{job}");
    assert_eq!(pod["containers"][0]["image"], "busybox", "{job}");
    assert_eq!(
        pod["containers"][0]["command"],
        json!(["echo", "hi"]),
        "{job}"
    );

    k.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--restart=OnFailure",
    ]);
    let cj = k.json(&["get", "cronjob", "tick"]);
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *", "{cj}");
    let tpl = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(tpl["restartPolicy"], "OnFailure", "{cj}");
    assert_eq!(tpl["containers"][0]["image"], "busybox", "{cj}");
    assert_eq!(
        cj["spec"]["jobTemplate"]["metadata"]["name"], "tick",
        "{cj}"
    );

    // A Job from the CronJob: annotations and an owner reference.
    k.ok(&["create", "job", "manual", "--from=cronjob/tick"]);
    let m = k.json(&["get", "job", "manual"]);
    assert_eq!(
        m["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual",
        "{m}"
    );
    let owner = &m["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("CronJob"), Some("tick")),
        "{m}"
    );
    assert_eq!(owner["uid"], cj["metadata"]["uid"], "{m}");

    k.ok(&[
        "create",
        "ingress",
        "web",
        "--class=hako",
        "--rule=foo.example.com/api*=api:8080,tls=foo-cert",
        "--rule=bar.example.com/=site:http",
        "--default-backend=fallback:80",
    ]);
    let ing = k.json(&["get", "ingress", "web"]);
    let spec = &ing["spec"];
    assert_eq!(spec["ingressClassName"], "hako", "{ing}");
    assert_eq!(
        spec["defaultBackend"],
        json!({"service": {"name": "fallback", "port": {"number": 80}}}),
        "{ing}"
    );
    let rules: Vec<Value> = spec["rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 2, "{ing}");
    assert_eq!(rules[0]["host"], "foo.example.com", "{ing}");
    assert_eq!(
        rules[0]["http"]["paths"][0],
        json!({"path": "/api", "pathType": "Prefix",
               "backend": {"service": {"name": "api", "port": {"number": 8080}}}}),
        "{ing}"
    );
    assert_eq!(
        rules[1]["http"]["paths"][0]["backend"]["service"]["port"],
        json!({"name": "http"}),
        "{ing}"
    );
    assert_eq!(
        spec["tls"],
        json!([{"hosts": ["foo.example.com"], "secretName": "foo-cert"}]),
        "{ing}"
    );

    // An invalid name through protobuf is refused like a JSON one.
    let err = k.fails_in(&["create", "job", "Bad_Name", "--image=busybox"], None);
    assert!(err.contains("Bad_Name") && err.contains("Invalid"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // Kinds the server does not serve: one clean line, nothing stored.
    for args in [
        &["create", "quota", "q", "--hard=pods=2"][..],
        &[
            "create",
            "poddisruptionbudget",
            "p",
            "--selector=app=web",
            "--min-available=1",
        ][..],
    ] {
        let err = k.fails_in(args, None);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error:") || err.starts_with("Error from server"),
            "{err}"
        );
    }
}
