//! The proof of issue 14: docker tutorial one-liners run against hako, each
//! output's shape (table columns, JSON keys, line forms) compared with a
//! fixture written from the docker CLI reference's examples
//! (tests/fixtures/docker_shapes/, format in its README).

mod common;
mod engine_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use engine_common::Root;

/// What a fixture asks of an output.
#[derive(Debug, Default)]
struct Shape {
    table: Option<Vec<String>>,
    rows: usize,
    row: Vec<regex::Regex>,
    json_array: Option<Vec<String>>,
    json_lines: Option<Vec<String>>,
    line: Vec<regex::Regex>,
    has: Vec<regex::Regex>,
    empty: bool,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docker_shapes")
}

fn load_shape(name: &str) -> Shape {
    let path = fixture_dir().join(format!("{name}.shape"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let re = |s: &str| regex::Regex::new(s).unwrap_or_else(|e| panic!("{name}: {s}: {e}"));
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let mut shape = Shape::default();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (key, value) = l.split_once(": ").unwrap_or((l.trim(), ""));
        match key {
            "table" => shape.table = Some(value.split(" | ").map(str::to_string).collect()),
            "rows" => shape.rows = value.parse().unwrap(),
            "row" => shape.row.push(re(value)),
            "json-array" => shape.json_array = Some(words(value)),
            "json-lines" => shape.json_lines = Some(words(value)),
            "line" => shape.line.push(re(value)),
            "has" => shape.has.push(re(value)),
            "empty" => shape.empty = true,
            other => panic!("{name}: unknown fixture entry {other:?}"),
        }
    }
    shape
}

/// A table line's columns: docker's tabwriter puts 2+ spaces between them.
fn columns(line: &str) -> Vec<String> {
    regex::Regex::new(r"\s{2,}")
        .unwrap()
        .split(line.trim_end())
        .map(str::to_string)
        .collect()
}

fn has_keys(name: &str, v: &serde_json::Value, keys: &[String]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not a JSON object: {v}"));
    for k in keys {
        assert!(obj.contains_key(k), "{name}: key {k} missing from {v}");
    }
}

/// Check `out` against the fixture `name`; every mismatch names the fixture.
fn check(name: &str, out: &str) {
    let shape = load_shape(name);
    let lines: Vec<&str> = out.lines().collect();
    if shape.empty {
        assert!(out.is_empty(), "{name}: expected no output, got {out:?}");
    }
    if let Some(header) = &shape.table {
        assert_eq!(
            &columns(lines.first().copied().unwrap_or("")),
            header,
            "{name}:\n{out}"
        );
        let rows = &lines[1..];
        assert!(
            rows.len() >= shape.rows,
            "{name}: {} rows, {} wanted:\n{out}",
            rows.len(),
            shape.rows
        );
        for r in &shape.row {
            assert!(
                rows.iter().any(|l| r.is_match(l)),
                "{name}: no row matches {r}:\n{out}"
            );
        }
    }
    if let Some(keys) = &shape.json_array {
        let v: serde_json::Value =
            serde_json::from_str(out).unwrap_or_else(|e| panic!("{name}: not JSON ({e}):\n{out}"));
        let items = v
            .as_array()
            .unwrap_or_else(|| panic!("{name}: not an array:\n{out}"));
        assert!(!items.is_empty(), "{name}: empty array");
        for item in items {
            has_keys(name, item, keys);
        }
    }
    if let Some(keys) = &shape.json_lines {
        assert!(!lines.is_empty(), "{name}: no output");
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{name}: line is not JSON ({e}): {l}"));
            has_keys(name, &v, keys);
        }
    }
    for (i, r) in shape.line.iter().enumerate() {
        let l = lines.get(i).copied().unwrap_or("");
        assert!(
            r.is_match(l),
            "{name}: line {} {l:?} does not match {r}:\n{out}",
            i + 1
        );
    }
    if !shape.line.is_empty() && shape.has.is_empty() {
        assert_eq!(lines.len(), shape.line.len(), "{name}: line count:\n{out}");
    }
    for r in &shape.has {
        assert!(
            lines.iter().any(|l| r.is_match(l)),
            "{name}: no line matches {r}:\n{out}"
        );
    }
}

/// `save IMAGE | load`, as the tutorials pipe them.
fn save_then_load(r: &Root) -> String {
    let hako = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
        c.arg("--root").arg(r.root()).args(args);
        c
    };
    let mut save = hako(&["save", "busybox"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = hako(&["load"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    String::from_utf8(load.stdout).unwrap()
}

#[test]
fn docker_one_liners_print_the_shapes_of_the_docker_reference() {
    let r = Root::new();
    r.ok(&["volume", "create", "data"]);
    r.ok(&["network", "create", "front"]);
    let dest = r.dir().join("copied-hostname");
    let dest_arg = dest.to_str().unwrap().to_string();
    let table: &[(&str, &[&str])] = &[
        ("run", &["run", "--rm", "busybox", "echo", "hello-world"]),
        (
            "run_detached",
            &[
                "run",
                "-d",
                "--name",
                "web",
                "-v",
                "data:/data",
                "--network",
                "front",
                "busybox",
                "sh",
                "-c",
                "echo web-started; exec sleep 1000",
            ],
        ),
        ("ps", &["ps"]),
        ("ps_quiet", &["ps", "-q"]),
        (
            "ps_format_table",
            &["ps", "--format", "table {{.ID}}\t{{.Names}}\t{{.Status}}"],
        ),
        ("ps_format_names", &["ps", "--format", "{{.Names}}"]),
        ("ps_format_json", &["ps", "--format", "json"]),
        ("images", &["images"]),
        ("images_format_json", &["images", "--format", "json"]),
        (
            "images_format",
            &["images", "--format", "{{.ID}}: {{.Repository}}"],
        ),
        ("inspect", &["inspect", "web"]),
        (
            "inspect_status",
            &["inspect", "-f", "{{.State.Status}}", "web"],
        ),
        (
            "inspect_ip",
            &[
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                "web",
            ],
        ),
        (
            "inspect_json",
            &["inspect", "--format", "{{json .Config}}", "web"],
        ),
        ("logs", &["logs", "web"]),
        ("exec", &["exec", "web", "sh", "-c", "echo in-web"]),
        ("cp", &["cp", "web:/etc/hostname", &dest_arg]),
        ("volume_ls", &["volume", "ls"]),
        ("volume_inspect", &["volume", "inspect", "data"]),
        ("network_ls", &["network", "ls"]),
        ("network_inspect", &["network", "inspect", "bridge"]),
        ("tag", &["tag", "busybox", "busybox:mine"]),
        ("rmi", &["rmi", "busybox:mine"]),
        ("system_df", &["system", "df"]),
        ("history", &["history", "busybox"]),
        ("version", &["version"]),
        (
            "version_format",
            &["version", "--format", "{{.Server.Version}}"],
        ),
        ("stop", &["stop", "-t", "1", "web"]),
        ("rm", &["rm", "web"]),
    ];
    for (name, args) in table {
        if *name == "logs" {
            // The echo runs once the container started: wait for it (bounded).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while r.ok(&["logs", "web"]).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        check(name, &r.ok(args));
    }
    assert!(fs::read_to_string(&dest).unwrap().trim().len() == 12);
    check("save_load", &save_then_load(&r));
    // Every fixture is used: none lies around unchecked.
    let mut names: Vec<String> = table.iter().map(|(n, _)| n.to_string()).collect();
    names.push("save_load".into());
    for e in fs::read_dir(fixture_dir()).unwrap().flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = f.strip_suffix(".shape") {
            assert!(
                names.iter().any(|x| x == n),
                "fixture {f} is not in the table"
            );
        }
    }
}
