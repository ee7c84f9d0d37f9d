//! CustomResourceDefinitions on `hako kube up`, driven by the real kubectl:
//! a CRD serves its kind (discovery names, short names, categories), the
//! structural schema prunes, defaults and validates with field paths,
//! additionalPrinterColumns make the `kubectl get` columns, the status and
//! scale subresources, and deleting the CRD deletes its objects.

use serde_json::Value;

mod kube_common;
use kube_common::{Kube, API_ONLY};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              replicas: {type: integer}
              color: {type: string, default: blue, enum: [blue, red]}
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              replicas: {type: integer}
              phase: {type: string}
"#;

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

#[test]
fn a_crd_serves_validates_and_deletes_its_custom_objects() {
    let k = Kube::up(API_ONLY);
    k.apply(CRD);
    let crd = k.json(&["get", "crd", "widgets.example.com"]);
    let conds: Vec<(String, String)> = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        conds.contains(&("Established".into(), "True".into())),
        "{conds:?}"
    );
    assert!(
        conds.contains(&("NamesAccepted".into(), "True".into())),
        "{conds:?}"
    );
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ]);
    let res = k.ok(&["api-resources", "--api-group=example.com", "--no-headers"]);
    let line = res
        .lines()
        .find(|l| l.starts_with("widgets"))
        .unwrap_or_else(|| panic!("{res}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        ["widgets", "wd", "example.com/v1", "true", "Widget"],
        "{res}"
    );

    // Unknown fields: refused under kubectl's strict validation, pruned otherwise.
    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some(&widget("w1", "{size: 2, bogus: 1}")),
    );
    assert!(err.contains(r#"unknown field "spec.bogus""#), "{err}");
    k.ok_in(
        &["apply", "--validate=false", "-f", "-", "-n", "default"],
        Some(&widget("w1", "{size: 2, bogus: 1, free: {any: [1, 2]}}")),
    );
    let w1 = k.json(&["get", "widget", "w1"]);
    assert_eq!(w1["spec"]["color"], "blue", "defaulted: {w1}");
    assert!(w1["spec"].get("bogus").is_none(), "pruned: {w1}");
    assert_eq!(w1["spec"]["free"]["any"], serde_json::json!([1, 2]));
    assert_eq!(w1["metadata"]["generation"], 1);

    // Schema errors name the field, as upstream; nothing is stored.
    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some(&widget("w2", "{size: big, color: green}")),
    );
    assert!(
        err.contains(r#"The Widget "w2" is invalid"#)
            && err.contains(r#"spec.size: Invalid value: "big": spec.size in body must be of type integer: "string""#)
            && err.contains(r#"spec.color: Unsupported value: "green": supported values: "blue", "red""#),
        "{err}"
    );
    let err = k.fails_in(&["apply", "-f", "-"], Some(&widget("w3", "{color: red}")));
    assert!(err.contains("spec.size: Required value"), "{err}");
    let err = k.fails_in(&["apply", "-f", "-"], Some(&widget("w3", "{size: 0}")));
    assert!(
        err.contains("spec.size in body should be greater than or equal to 1"),
        "{err}"
    );
    assert!(k.try_json(&["get", "widget", "w2"]).is_none());

    // Columns, short name, category.
    let table = k.ok(&["get", "wd"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row, ["w1", "2", "blue"], "{table}");
    assert!(k
        .ok(&["get", "all", "-o", "name"])
        .contains("widget.example.com/w1"));

    // Edits bump the generation; status only through its subresource.
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5},"status":{"phase":"X"}}"#,
    ]);
    let w1 = k.json(&["get", "widget", "w1"]);
    assert_eq!(w1["spec"]["size"], 5);
    assert_eq!(w1["metadata"]["generation"], 2);
    assert!(w1.get("status").is_none(), "{w1}");
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready","replicas":1}}"#,
    ]);
    let w1 = k.json(&["get", "widget", "w1"]);
    assert_eq!(w1["status"]["phase"], "Ready");
    assert_eq!(w1["metadata"]["generation"], 2);
    k.ok(&["scale", "widget", "w1", "--replicas=3"]);
    assert_eq!(k.json(&["get", "widget", "w1"])["spec"]["replicas"], 3);

    // kubectl explain reads the schema from the group-version's OpenAPI v3 document.
    let out = k.ok(&["explain", "widgets"]);
    assert!(
        out.contains("KIND:       Widget")
            && out.contains("VERSION:    v1")
            && out.contains("GROUP:      example.com"),
        "{out}"
    );
    let spec = k.ok(&["explain", "widgets.spec"]);
    let size = spec
        .lines()
        .find(|l| l.trim_start().starts_with("size"))
        .unwrap_or_else(|| panic!("{spec}"));
    assert!(
        size.contains("<integer>") && size.contains("-required-"),
        "{spec}"
    );
    let free = spec
        .lines()
        .find(|l| l.trim_start().starts_with("free"))
        .unwrap_or_else(|| panic!("{spec}"));
    assert!(free.contains("<Object>"), "{spec}");
    let color = k.ok(&["explain", "widget.spec.color"]);
    assert!(
        color.contains("FIELD: color <string>") && color.contains("ENUM:") && color.contains("red"),
        "{color}"
    );

    // Deleting the CRD deletes its objects; a new CRD of the name starts empty.
    k.ok(&["delete", "crd", "widgets.example.com"]);
    let err = k.fails_in(&["get", "widgets.example.com"], None);
    assert!(
        err.contains("the server doesn't have a resource type"),
        "{err}"
    );
    k.apply(CRD);
    let items: Value = k.json(&["get", "widgets", "-A"]);
    assert_eq!(items["items"], serde_json::json!([]), "{items}");
}

#[test]
fn cluster_scoped_crd_and_bad_definitions() {
    let k = Kube::up(API_ONLY);
    k.apply(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.example.org}
spec:
  group: example.org
  scope: Cluster
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    );
    k.apply("apiVersion: example.org/v1alpha1\nkind: Gizmo\nmetadata: {name: g1}\nspec: {anything: [1]}\n");
    let g = k.json(&["get", "gizmo", "g1"]);
    assert_eq!(g["spec"]["anything"], serde_json::json!([1]));
    assert!(g["metadata"].get("namespace").is_none());
    assert!(k.ok(&["get", "gizmos"]).contains("g1"));
    let err = k.fails_in(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: wrong.example.org}
spec:
  group: example.org
  scope: Cluster
  names: {plural: things, kind: Thing}
  versions:
  - {name: v1, served: true, storage: false, schema: {openAPIV3Schema: {type: object}}}
"#,
        ),
    );
    assert!(
        err.contains("metadata.name: Invalid value: \"wrong.example.org\": must be spec.names.plural+\".\"+spec.group")
            && err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
}
