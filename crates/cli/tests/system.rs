//! `hako system df/info/prune` over a real store and containers (needs root).

mod engine_common;

use engine_common::Root;

fn df(r: &Root) -> Vec<serde_json::Value> {
    r.ok(&["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn df_info_and_prune() {
    let r = Root::new();
    r.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "1000"]);
    r.ok(&[
        "run",
        "--name",
        "done",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /big",
    ]);
    r.ok(&[
        "run",
        "--name",
        "anon",
        "--network",
        "none",
        "-v",
        "/scratch",
        "busybox",
        "true",
    ]);
    r.ok(&["network", "create", "spare"]);
    let rows = df(&r);
    let types: Vec<&str> = rows.iter().map(|v| v["Type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec!["Images", "Containers", "Local Volumes", "Build Cache"]
    );
    assert_eq!(rows[0]["TotalCount"], 1);
    assert_eq!(rows[0]["Active"], 1);
    assert_eq!(rows[1]["TotalCount"], 3);
    assert_eq!(rows[1]["Active"], 1);
    // The stopped container's 100 kB file is reclaimable.
    assert!(
        rows[1]["ReclaimableBytes"].as_u64().unwrap() >= 100_000,
        "{}",
        rows[1]
    );
    assert_eq!(rows[2]["TotalCount"], 1);

    let info: serde_json::Value =
        serde_json::from_str(&r.ok(&["system", "info", "--format", "json"])).unwrap();
    assert_eq!(info["Containers"], 3);
    assert_eq!(info["ContainersRunning"], 1);
    assert_eq!(info["ContainersStopped"], 2);
    assert_eq!(info["Images"], 1);
    assert_eq!(info["DefaultRuntime"], "hako-runtime");
    assert!(
        info["Runtimes"]["hako-runtime"]["path"].is_string(),
        "{info}"
    );
    assert_eq!(
        r.ok(&["system", "info", "--format", "{{.Driver}}"]),
        "overlay\n"
    );
    // The top-level spellings docker users type.
    assert_eq!(r.ok(&["info", "-f", "{{.ContainersRunning}}"]), "1\n");
    assert_eq!(
        r.ok(&["version", "-f", "{{.Client.Version}}"]),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    let v: serde_json::Value = serde_json::from_str(&r.ok(&["version", "-f", "json"])).unwrap();
    assert_eq!(v["Client"]["Os"], "linux");
    assert!(
        v["Client"]["Runtime"]["Version"]
            .as_str()
            .unwrap()
            .starts_with("hako-runtime"),
        "{v}"
    );
    assert!(r.ok(&["version"]).starts_with("Client:\n Version:"));

    let out = r.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("Deleted Networks:\nspare\n"), "{out}");
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let names: Vec<String> = r.ps_all().into_iter().map(|p| p.0).collect();
    assert_eq!(names, vec!["up"]);
    assert_eq!(df(&r)[2]["TotalCount"], 0);
    // The image is in use: even -a keeps it.
    r.ok(&["system", "prune", "-a", "-f"]);
    assert_eq!(df(&r)[0]["TotalCount"], 1);
    r.ok(&["rm", "-f", "up"]);
    let out = r.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Images:"), "{out}");
    assert_eq!(df(&r)[0]["TotalCount"], 0);
}

/// The bridge of network `name` in root `r`.
fn bridge_of(r: &Root, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.ok(&["network", "inspect", name])).unwrap();
    v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn a_relative_root_works() {
    let r = Root::new();
    // The same root, named relative to the current directory.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hako"))
        .current_dir(r.dir())
        .args(["--root", "root", "run", "--rm", "busybox", "echo", "hi"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

#[test]
fn prune_and_reset_leave_no_bridge_behind() {
    let r = Root::new();
    r.ok(&["run", "--name", "once", "busybox", "true"]);
    let default_bridge = bridge_of(&r, "bridge");
    assert!(default_bridge.starts_with("hk-"));
    assert!(link_exists(&default_bridge));
    // Prune: no container refers to the default network any more, so its
    // bridge goes (the network stays and works again).
    r.ok(&["system", "prune", "-f"]);
    assert!(!link_exists(&default_bridge), "prune left {default_bridge}");
    r.ok(&["run", "--rm", "busybox", "true"]);

    // Reset: everything, running containers and user networks included.
    r.ok(&["network", "create", "mine"]);
    let mine = bridge_of(&r, "mine");
    r.ok(&["run", "-d", "--network", "mine", "busybox", "sleep", "600"]);
    r.ok(&["run", "-d", "-v", "data:/data", "busybox", "sleep", "600"]);
    assert!(link_exists(&mine) && link_exists(&default_bridge));
    let refused = r.run(&["system", "reset"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add -f"));
    r.ok(&["system", "reset", "-f"]);
    assert!(!link_exists(&mine), "reset left {mine}");
    assert!(!link_exists(&default_bridge), "reset left {default_bridge}");
    assert!(!r.root().exists(), "reset left the root");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(r.root().to_str().unwrap()));
    // The root can be used again from scratch.
    assert_eq!(r.ok(&["ps", "-a", "-q"]), "");
}
