//! Integration tests of `hako_runtime::cgroups` against the host's real cgroups
//! (run as root). Each test works in its own uniquely named top-level cgroup and
//! a guard removes it, and kills the processes it started, even when the test
//! fails. The v2 code paths that this hybrid host cannot exercise for real are
//! run against a fake cgroup2 tree in a temporary directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use hako_runtime::cgroups::{layout, Cgroup, FsKind, Layout};
use oci_spec::runtime::LinuxResources;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique top-level cgroup name for one test.
fn unique(test: &str) -> String {
    format!(
        "hako-test-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Owns what a test creates: on drop, kills its processes, thaws and destroys
/// the cgroup, and removes the unique top directory in every hierarchy.
struct Guard {
    cg: Cgroup,
    top: String,
    children: Vec<Child>,
}

impl Guard {
    fn new(top: &str, path: &str) -> Guard {
        let cg = Cgroup::new(Some(path), top, false).expect("resolving cgroup");
        Guard {
            cg,
            top: top.to_string(),
            children: Vec::new(),
        }
    }

    /// Starts `sleep` and moves it into the cgroup.
    fn spawn_sleep(&mut self) -> i32 {
        let child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawning sleep");
        let pid = child.id() as i32;
        self.children.push(child);
        self.cg.add_pid(pid).expect("add_pid");
        pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        let _ = self.cg.thaw();
        for c in &mut self.children {
            let _ = c.wait();
        }
        let _ = self.cg.destroy();
        for h in self.cg.hierarchies() {
            let top = h.mount_point.join(&self.top);
            // Deepest first; a failure here only leaves an empty directory.
            let mut dirs = vec![];
            collect_dirs(&top, &mut dirs);
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

fn dir_of(cg: &Cgroup, controller: &str) -> Option<PathBuf> {
    let hs = cg.hierarchies();
    hs.iter()
        .find(|h| h.fs == FsKind::V1 && h.controllers.iter().any(|c| c == controller))
        .or_else(|| {
            hs.iter()
                .find(|h| h.fs == FsKind::V2 && h.controllers.iter().any(|c| c == controller))
        })
        .map(|h| h.path.clone())
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// The first block device of the host, as "major:minor".
fn block_device() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/partitions").ok()?;
    text.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
    })
}

#[test]
fn layout_is_detected_from_the_mount_table() {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let has_v1 = mounts.lines().any(|l| l.contains(" - cgroup "));
    let has_v2 = mounts.lines().any(|l| l.contains(" - cgroup2 "));
    let expected = match (has_v1, has_v2) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::V1,
        (false, true) => Layout::V2,
        (false, false) => Layout::None,
    };
    assert_eq!(layout(), expected);
}

#[test]
fn create_makes_a_directory_in_every_hierarchy_and_destroy_removes_them() {
    let top = unique("create");
    let g = Guard::new(&top, &format!("/{top}/a/b"));
    g.cg.create().unwrap();
    let hs = g.cg.hierarchies();
    assert!(!hs.is_empty());
    for h in &hs {
        assert!(h.path.is_dir(), "{} missing", h.path.display());
        assert_eq!(h.cgroup_path, PathBuf::from(format!("/{top}/a/b")));
    }
    // A new v1 cpuset must have been given cpus and mems, or it would take no task.
    if let Some(d) = dir_of(&g.cg, "cpuset") {
        assert!(!read(&d, "cpuset.cpus").is_empty());
        assert!(!read(&d, "cpuset.mems").is_empty());
    }
    g.cg.destroy().unwrap();
    for h in &hs {
        assert!(!h.path.exists(), "{} still there", h.path.display());
    }
    let err = g.cg.stats().unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    // Destroying again is fine: missing directories are not an error.
    g.cg.destroy().unwrap();
}

#[test]
fn apply_writes_the_limits_into_the_cgroup_files() {
    let top = unique("apply");
    let g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    let mut json = serde_json::json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}]
    });
    let swap_supported = dir_of(&g.cg, "memory")
        .map(|d| {
            d.join("memory.memsw.limit_in_bytes").exists() || d.join("memory.swap.max").exists()
        })
        .unwrap_or(false);
    if swap_supported {
        json["memory"]["swap"] = 134217728.into();
    }
    if let Some((major, minor)) = block_device() {
        json["blockIO"] = serde_json::json!({
            "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]
        });
    }
    let hugetlb = dir_of(&g.cg, "hugetlb").is_some()
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if hugetlb {
        json["hugepageLimits"] = serde_json::json!([{"pageSize": "2MB", "limit": 4194304}]);
    }
    g.cg.apply(&resources(&json.to_string())).unwrap();

    let mem = dir_of(&g.cg, "memory").expect("memory controller");
    let cpu = dir_of(&g.cg, "cpu").expect("cpu controller");
    let cpuset = dir_of(&g.cg, "cpuset").expect("cpuset controller");
    let pids = dir_of(&g.cg, "pids").expect("pids controller");
    if mem.join("memory.limit_in_bytes").exists() {
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(read(&mem, "memory.swappiness"), "10");
        if swap_supported {
            assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
        }
    } else {
        assert_eq!(read(&mem, "memory.max"), "67108864");
    }
    if cpu.join("cpu.shares").exists() {
        assert_eq!(read(&cpu, "cpu.shares"), "512");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        if cpu.join("cpu.cfs_burst_us").exists() {
            assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "1000");
        }
    } else {
        assert_eq!(read(&cpu, "cpu.max"), "50000 100000");
    }
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    assert_eq!(read(&pids, "pids.max"), "42");
    if let Some((major, minor)) = block_device() {
        let blkio = dir_of(&g.cg, "blkio").expect("blkio controller");
        assert_eq!(
            read(&blkio, "blkio.throttle.read_bps_device"),
            format!("{major}:{minor} 1048576")
        );
    }
    if hugetlb {
        let h = dir_of(&g.cg, "hugetlb").unwrap();
        let file = if h.join("hugetlb.2MB.max").exists() {
            "hugetlb.2MB.max"
        } else {
            "hugetlb.2MB.limit_in_bytes"
        };
        assert_eq!(read(&h, file), "4194304");
    }
    if let Some(dev) = dir_of(&g.cg, "devices") {
        let list = read(&dev, "devices.list");
        let rules: Vec<&str> = list.lines().collect();
        assert!(
            !rules.contains(&"a *:* rwm"),
            "deny-all not applied: {list}"
        );
        for expected in ["c 10:229 rw", "c 1:3 rwm", "c 136:* rwm", "c *:* m"] {
            assert!(rules.contains(&expected), "{expected} missing from {list}");
        }
    }

    // Lifting the memory limit lifts memory+swap with it (v1), so memory is
    // really unlimited.
    g.cg.apply(&resources(r#"{"memory": {"limit": -1}}"#))
        .unwrap();
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        let unlimited = read(&mem, "memory.limit_in_bytes");
        assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), unlimited);
        assert!(unlimited.parse::<u64>().unwrap() > 1 << 60);
    }

    // Applying again (an update) with new values replaces them.
    g.cg.apply(&resources(
        r#"{"pids": {"limit": -1}, "cpu": {"shares": 1024}}"#,
    ))
    .unwrap();
    assert_eq!(read(&pids, "pids.max"), "max");
    if cpu.join("cpu.shares").exists() {
        assert_eq!(read(&cpu, "cpu.shares"), "1024");
    }
}

#[test]
fn apply_errors_name_the_file_and_value() {
    let top = unique("err");
    let g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    let err =
        g.cg.apply(&resources(r#"{"cpu": {"cpus": "4096"}}"#))
            .unwrap_err()
            .to_string();
    let dir = dir_of(&g.cg, "cpuset").unwrap();
    // The kernel's own words for the errno (here ERANGE), without std's
    // "(os error N)" suffix.
    assert_eq!(
        err,
        format!(
            "cgroup {}: writing cpuset.cpus=4096: Math result not representable",
            dir.display()
        )
    );
    let err =
        g.cg.apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hugepageLimits") && err.contains("3MB"),
        "{err}"
    );
    let err =
        g.cg.apply(&resources(r#"{"memory": {"swappiness": 101}}"#))
            .unwrap_err()
            .to_string();
    assert!(err.contains("memory.swappiness"), "{err}");
    // This host has no net_cls / net_prio hierarchies.
    if dir_of(&g.cg, "net_prio").is_none() {
        let err =
            g.cg.apply(&resources(
                r#"{"network": {"priorities": [{"name": "eth0", "priority": 1}]}}"#,
            ))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "linux.resources.network.priorities: needs the net_prio cgroup controller, which this host does not have"
        );
    }
}

#[test]
fn add_pid_puts_the_process_in_every_hierarchy() {
    let top = unique("addpid");
    let mut g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    let pid = g.spawn_sleep();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for h in g.cg.hierarchies() {
        let line = own
            .lines()
            .find(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls) = (f.next(), f.next().unwrap_or(""));
                match h.fs {
                    FsKind::V2 => ctrls.is_empty(),
                    FsKind::V1 => ctrls
                        .split(',')
                        .any(|c| h.controllers.iter().any(|x| x == c)),
                }
            })
            .unwrap_or_else(|| panic!("no line for {:?} in {own}", h.controllers));
        assert!(
            line.ends_with(&format!(":/{top}")),
            "{line} (hierarchy {:?})",
            h.controllers
        );
    }
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
}

#[test]
fn freeze_thaw_and_kill_all() {
    let top = unique("freeze");
    let mut g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    let a = g.spawn_sleep();
    let b = g.spawn_sleep();
    let mut pids = g.cg.pids().unwrap();
    pids.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(pids, expected);

    assert!(!g.cg.is_frozen().unwrap());
    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());

    // Freezing a paused container again and killing it works (runc's order:
    // freeze, signal, thaw).
    g.cg.freeze().unwrap();
    g.cg.kill_all(libc::SIGKILL).unwrap();
    for child in &mut g.children {
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
    g.children.clear();
    assert!(g.cg.pids().unwrap().is_empty());
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.destroy().unwrap();
}

#[test]
fn stats_report_usage_of_the_processes_in_the_cgroup() {
    let top = unique("stats");
    let mut g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    g.cg.apply(&resources(
        r#"{"pids": {"limit": 10}, "memory": {"limit": 268435456}}"#,
    ))
    .unwrap();
    // A shell that waits for a line, then burns CPU and touches memory inside the
    // cgroup, then reports done.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read x; i=0; s=''; while [ $i -lt 20000 ]; do i=$((i+1)); s=\"$s.\"; done; echo done; exec sleep 1000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    g.children.push(child);
    g.cg.add_pid(pid).unwrap();
    writeln!(stdin, "go").unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");

    let s = g.cg.stats().unwrap();
    // checkBeforeUpdate refuses a limit below what the cgroup already uses.
    let err =
        g.cg.apply(&resources(
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkBeforeUpdate"), "{err}");
    assert!(s.cpu.usage.total > 0, "{s:?}");
    assert!(s.cpu.usage.user + s.cpu.usage.kernel > 0, "{s:?}");
    assert!(!s.cpu.usage.percpu.is_empty() || layout() == Layout::V2);
    assert!(s.memory.usage.usage > 0, "{s:?}");
    assert_eq!(s.memory.usage.limit, 268435456);
    assert!(!s.memory.raw.is_empty());
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, 10);
    if dir_of(&g.cg, "hugetlb").is_some()
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
    {
        assert!(s.hugetlb.contains_key("2MB"), "{:?}", s.hugetlb);
    }
    let v = serde_json::to_value(&s).unwrap();
    assert!(v["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    assert_eq!(v["pids"]["current"], 1);
    assert_eq!(v["memory"]["usage"]["limit"], 268435456);
}

#[test]
fn the_state_round_trips_through_json_and_still_controls_the_cgroup() {
    let top = unique("serde");
    let mut g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    let pid = g.spawn_sleep();
    let json = serde_json::to_string(&g.cg).unwrap();
    let reloaded: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(reloaded.pids().unwrap(), vec![pid]);
    // kill --all may be given realtime signals too.
    let sig = libc::SIGRTMIN() + 2;
    reloaded.kill_all(sig).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(g.children[0].wait().unwrap().signal(), Some(sig));
    assert!(
        reloaded.kill_all(0).is_err(),
        "signal 0 is not a signal to send"
    );
}

#[test]
fn systemd_paths_are_managed_through_cgroupfs() {
    let top = unique("sd").replace('-', "_");
    let slice = format!("{top}.slice");
    let cg = Cgroup::new(Some(&format!("{slice}:hako:c1")), "c1", true).unwrap();
    let g = Guard {
        cg,
        top: slice.clone(),
        children: Vec::new(),
    };
    g.cg.create().unwrap();
    for h in g.cg.hierarchies() {
        assert_eq!(
            h.cgroup_path,
            PathBuf::from(format!("/{slice}/hako-c1.scope"))
        );
        assert!(h.path.is_dir());
    }
}

/// A fake cgroup2 tree: the directory layout and files the kernel would show,
/// so the v2 translation and file handling run end to end.
fn fake_v2_cgroup(root: &Path, dir: &Path) {
    let controllers = "cpuset cpu io memory hugetlb pids";
    std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
    for f in [
        "memory.max",
        "memory.swap.max",
        "memory.low",
        "cpu.weight",
        "cpu.max",
        "cpu.idle",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "cgroup.procs",
        "cgroup.freeze",
        "memory.high",
    ] {
        std::fs::write(dir.join(f), "").unwrap();
    }
}

#[test]
fn v2_translations_on_a_fake_cgroup2_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pod/c1");
    fake_v2_cgroup(tmp.path(), &dir);
    let cg = Cgroup::with_root(tmp.path(), Some("/pod/c1"), "c1").unwrap();
    assert_eq!(cg.layout(), Layout::V2);
    assert_eq!(cg.hierarchies()[0].path, dir);
    cg.create().unwrap();
    // create() enabled the controllers at the root for the children.
    assert!(read(tmp.path(), "cgroup.subtree_control").starts_with('+'));

    let mut unified = HashMap::new();
    unified.insert("memory.high".to_string(), "50000000".to_string());
    let mut res = resources(
        r#"{"memory": {"limit": 67108864, "swap": 134217728, "reservation": 1048576},
            "cpu": {"shares": 1024, "quota": 20000, "cpus": "0-1", "idle": 0},
            "pids": {"limit": 100},
            "blockIO": {"weight": 1000, "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 300}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": -1}]}"#,
    );
    res.set_unified(Some(unified));
    cg.apply(&res).unwrap();
    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(read(&dir, "memory.swap.max"), "67108864");
    assert_eq!(read(&dir, "memory.low"), "1048576");
    assert_eq!(read(&dir, "cpu.weight"), "39");
    assert_eq!(read(&dir, "cpu.max"), "20000 100000");
    assert_eq!(read(&dir, "cpu.idle"), "0");
    assert_eq!(read(&dir, "cpuset.cpus"), "0-1");
    assert_eq!(read(&dir, "pids.max"), "100");
    assert_eq!(read(&dir, "io.weight"), "default 10000");
    assert_eq!(read(&dir, "io.max"), "8:0 wiops=300");
    assert_eq!(read(&dir, "hugetlb.2MB.max"), "max");
    assert_eq!(read(&dir, "memory.high"), "50000000");

    // Fields v2 cannot honour are errors, not silent successes.
    for (json, field) in [
        (r#"{"memory": {"swappiness": 10}}"#, "memory.swappiness"),
        (r#"{"memory": {"kernelTCP": 1048576}}"#, "memory.kernelTCP"),
        (
            r#"{"memory": {"useHierarchy": false}}"#,
            "memory.useHierarchy",
        ),
        (
            r#"{"memory": {"disableOOMKiller": true}}"#,
            "memory.disableOOMKiller",
        ),
        (
            r#"{"cpu": {"realtimeRuntime": 1000}}"#,
            "cpu.realtimeRuntime",
        ),
        (r#"{"blockIO": {"leafWeight": 100}}"#, "blockIO.leafWeight"),
        (r#"{"network": {"classID": 1}}"#, "network.classID"),
        (r#"{"memory": {"limit": 100, "swap": 50}}"#, "memory.swap"),
    ] {
        let err = cg.apply(&resources(json)).unwrap_err().to_string();
        assert!(err.contains(field), "{json}: {err}");
    }
    let mut bad = HashMap::new();
    bad.insert("../escape".to_string(), "1".to_string());
    let mut res = LinuxResources::default();
    res.set_unified(Some(bad));
    assert!(cg.apply(&res).unwrap_err().to_string().contains("unified"));

    // A controller the parent did not enable is reported by name.
    std::fs::write(dir.join("cgroup.controllers"), "cpu").unwrap();
    let err = cg
        .apply(&resources(r#"{"pids": {"limit": 5}}"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pids controller is not enabled"), "{err}");

    cg.add_pid(4242).unwrap();
    assert_eq!(read(&dir, "cgroup.procs"), "4242");
    assert_eq!(cg.pids().unwrap(), vec![4242]);
}

/// Where the host's cgroup2 hierarchy is mounted (all of /sys/fs/cgroup on a
/// v2 host, /sys/fs/cgroup/unified on these hybrid ones).
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .expect("this host has no cgroup2 hierarchy")
}

/// Runs a shell in the cgroup that opens /dev/null and /dev/kmsg and reports
/// which opens the kernel allowed.
fn probe_devices(g: &mut Guard) -> Vec<String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read x; (: </dev/null) 2>/dev/null && echo null-ok || echo null-denied; (: </dev/kmsg) 2>/dev/null && echo kmsg-ok || echo kmsg-denied")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    g.children.push(child);
    g.cg.add_pid(pid).unwrap();
    writeln!(stdin, "go").unwrap();
    BufReader::new(stdout).lines().map(|l| l.unwrap()).collect()
}

#[test]
fn v2_device_rules_are_enforced_by_an_ebpf_program() {
    // The cgroup2 hierarchy alone, as on a pure v2 host: device rules there can
    // only be enforced by a BPF_PROG_TYPE_CGROUP_DEVICE program.
    let top = unique("bpf");
    let cg = Cgroup::with_root(&cgroup2_mount(), Some(&format!("/{top}")), &top).unwrap();
    let mut g = Guard {
        cg,
        top,
        children: Vec::new(),
    };
    g.cg.create().unwrap();
    g.cg.apply(&resources(
        r#"{"devices":[{"allow":false,"access":"rwm"}]}"#,
    ))
    .unwrap();
    assert_eq!(probe_devices(&mut g), ["null-ok", "kmsg-denied"]);

    // An update replaces the program: /dev/kmsg (1:11) becomes readable.
    g.cg.apply(&resources(
        r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":11,"access":"r"}]}"#,
    ))
    .unwrap();
    assert_eq!(probe_devices(&mut g), ["null-ok", "kmsg-ok"]);

    // Allow-only rules lift the deny-all again.
    g.cg.apply(&resources(
        r#"{"devices":[{"allow":false,"access":"rwm"}]}"#,
    ))
    .unwrap();
    assert_eq!(probe_devices(&mut g), ["null-ok", "kmsg-denied"]);
    g.cg.apply(&resources(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#))
        .unwrap();
    assert_eq!(probe_devices(&mut g), ["null-ok", "kmsg-ok"]);
}

#[test]
fn v2_freeze_pids_stats_and_kill_on_the_real_cgroup2_hierarchy() {
    let top = unique("v2freeze");
    let cg = Cgroup::with_root(&cgroup2_mount(), Some(&format!("/{top}/c")), &top).unwrap();
    assert_eq!(cg.layout(), Layout::V2);
    let mut g = Guard {
        cg,
        top,
        children: Vec::new(),
    };
    g.cg.create().unwrap();
    let pid = g.spawn_sleep();
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());
    // cpu.stat exists on every cgroup2 directory, controller or not.
    let s = g.cg.stats().unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert!(v["cpu"]["usage"].is_object());
    g.cg.kill_all(libc::SIGTERM).unwrap();
    let status = g.children[0].wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    g.children.clear();
    assert!(g.cg.pids().unwrap().is_empty());
    // SIGKILL goes through cgroup.kill.
    let pid = g.spawn_sleep();
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    g.cg.kill_all(libc::SIGKILL).unwrap();
    let status = g.children[0].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    g.children.clear();
    g.cg.destroy().unwrap();
    assert!(!g.cg.hierarchies()[0].path.exists());
}

#[test]
fn the_oom_killer_is_counted() {
    let top = unique("oom");
    let mut g = Guard::new(&top, &format!("/{top}"));
    g.cg.create().unwrap();
    // memory+swap equal to memory: no escape into swap.
    g.cg.apply(&resources(
        r#"{"memory": {"limit": 16777216, "swap": 16777216}}"#,
    ))
    .unwrap();
    assert_eq!(g.cg.oom_kill_count().unwrap(), 0);
    // A shell that doubles a string until the limit is hit.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read x; s=x; while :; do s=\"$s$s\"; done")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    g.children.push(child);
    g.cg.add_pid(pid).unwrap();
    writeln!(stdin, "go").unwrap();
    use std::os::unix::process::ExitStatusExt;
    let status = g.children[0].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(g.cg.oom_kill_count().unwrap(), 1);
}

#[test]
fn a_failed_create_leaves_nothing_behind() {
    // Two hierarchies; in the second the path is blocked by a regular file.
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = (tmp.path().join("x"), tmp.path().join("y"));
    std::fs::create_dir_all(&x).unwrap();
    std::fs::create_dir_all(&y).unwrap();
    std::fs::write(y.join("pod"), "not a directory").unwrap();
    let mountinfo = format!(
        "1 0 0:90 / {} rw - cgroup cgroup rw,cpu\n2 0 0:91 / {} rw - cgroup cgroup rw,memory\n",
        x.display(),
        y.display()
    );
    let cg = Cgroup::from_tables(&mountinfo, "", Some("/pod/c1"), "c1", false).unwrap();
    let err = cg.create().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "cgroup {}: creating directory",
            y.join("pod/c1").display()
        )),
        "{err}"
    );
    assert!(
        !x.join("pod/c1").exists(),
        "first hierarchy's directory left behind"
    );
}
