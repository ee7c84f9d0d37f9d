//! A `hako import` killed with SIGKILL in the middle of its layer leaves no
//! image and no published blob or snapshot; the next collection removes its
//! leftovers and the same import then succeeds. Run as root.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tar_dir, Hako};

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn killed_import_leaves_a_consistent_store() {
    let h = Hako::new();
    h.ok(&["images"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(h.root())
        .args(["import", "-", "killed:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A tar announcing a 64 MiB file, of which only 8 MiB ever arrive.
    let mut header = tar::Header::new_gnu();
    header.set_path("big").unwrap();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    stdin.write_all(header.as_bytes()).unwrap();
    stdin.write_all(&vec![0x5a; 8 << 20]).unwrap();
    stdin.flush().unwrap();
    // Wait (bounded) until the import is visibly mid-layer: a temporary
    // blob and a staged snapshot exist.
    let snapshots = h.root().join("snapshots");
    let ingest = h.root().join("ingest");
    let mut started = false;
    for _ in 0..1200 {
        let staged = entries(&snapshots).iter().any(|e| e.starts_with("tmp-"));
        let partial = entries(&ingest).iter().any(|e| e.starts_with("blob-"));
        if staged && partial {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started, "the import never reached its layer");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    assert_eq!(h.ok(&["images", "-q"]).trim(), "");
    assert!(entries(&h.root().join("blobs/sha256")).is_empty());
    assert!(entries(&snapshots).iter().all(|e| e.starts_with("tmp-")));
    // Collection finishes the interrupted work.
    h.ok(&["image", "prune"]);
    assert!(entries(&ingest).is_empty(), "{:?}", entries(&ingest));
    assert!(entries(&snapshots).is_empty(), "{:?}", entries(&snapshots));

    let rootfs = h.dir().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("big"), vec![0x5a; 1 << 20]).unwrap();
    let tarball = h.dir().join("ok.tar");
    tar_dir(&rootfs, &tarball, false);
    h.ok(&["import", tarball.to_str().unwrap(), "killed:1"]);
    let m = common::Mounted::new(&h, "killed:1");
    assert_eq!(
        std::fs::metadata(m.path.join("big")).unwrap().len(),
        1 << 20
    );
}

mod engine_common;

/// A free TCP port on the host (bound once, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the NAT table holds a rule for host port `port`.
fn dnat_rule_for(port: u16) -> bool {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains("DNAT") && l.contains(&format!("--dport {port} ")))
}

/// IPAM leases (host-local's files) naming container `id`.
fn leases_of(r: &engine_common::Root, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ipam = r.root().join("run/cni/ipam");
    for net in entries(&ipam) {
        for f in entries(&ipam.join(&net)) {
            let text = std::fs::read_to_string(ipam.join(&net).join(&f)).unwrap_or_default();
            if text.contains(id) {
                found.push(format!("{net}/{f}"));
            }
        }
    }
    found
}

/// Deletes, on drop, the portmap rules and chains left for the containers
/// named in `ids` (so a failing run of the test leaves no NAT rules).
struct NatGuard {
    ids: std::cell::RefCell<Vec<String>>,
}

impl Drop for NatGuard {
    fn drop(&mut self) {
        let out = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S"])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if !self.ids.borrow().iter().any(|id| l.contains(id.as_str())) {
                continue;
            }
            let Some(rule) = l.strip_prefix("-A ") else {
                continue;
            };
            // `-S` quotes the comment; the shell splits it back.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -w -t nat -D {rule}"))
                .status();
            if let Some(chain) = l.split(" -j ").nth(1).filter(|c| c.starts_with("CNI-DN-")) {
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat", "-F", chain])
                    .status();
                let _ = Command::new("iptables")
                    .args(["-w", "-t", "nat", "-X", chain])
                    .status();
            }
        }
    }
}

fn make_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `hako run -d -p` SIGKILLed at two points: in the middle of its CNI ADD
/// (portmap's DNAT rule and the IPAM lease made, nothing recorded yet), and
/// after the runtime started the container but before the start was
/// recorded. The kills come from wrappers at those very points (a CNI
/// plugin path with a portmap that kills its caller after its ADD; a
/// runtime that kills the command after `start`), so nothing depends on timing.
#[test]
fn killed_run_is_reconciled_and_its_network_undone() {
    let r = engine_common::Root::new();
    let nat = NatGuard {
        ids: Default::default(),
    };
    let hako = env!("CARGO_BIN_EXE_hako");

    // 1. Killed during CNI ADD.
    let cni = r.dir().join("cni");
    std::fs::create_dir(&cni).unwrap();
    for e in std::fs::read_dir("/usr/lib/cni").unwrap() {
        let e = e.unwrap();
        if e.file_name() != "portmap" {
            std::os::unix::fs::symlink(e.path(), cni.join(e.file_name())).unwrap();
        }
    }
    let mark = r.dir().join("kill-once");
    std::fs::write(&mark, "").unwrap();
    make_executable(
        &cni.join("portmap"),
        &format!(
            "#!/bin/sh\n/usr/lib/cni/portmap \"$@\"\nrc=$?\n\
             if [ \"$CNI_COMMAND\" = ADD ] && rm {} 2>/dev/null; then kill -9 $PPID; fi\nexit $rc\n",
            mark.display()
        ),
    );
    let port = free_port();
    let out = Command::new(hako)
        .arg("--root")
        .arg(r.root())
        .env("HAKO_CNI_PATH", &cni)
        .args(["run", "-d", "--name", "cut", "-p"])
        .arg(format!("{port}:80"))
        .args(["busybox", "sleep", "600"])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "the wrapper did not kill it");
    assert!(!mark.exists());
    assert!(dnat_rule_for(port), "the ADD made no DNAT rule");
    let id = r
        .ok(&["inspect", "-f", "{{.Id}}", "cut"])
        .trim()
        .to_string();
    nat.ids.borrow_mut().push(id.clone());
    assert!(!leases_of(&r, &id).is_empty());
    r.ok(&["rm", "-f", "cut"]);
    assert!(
        !dnat_rule_for(port),
        "rm -f left the DNAT rule of port {port}"
    );
    assert_eq!(leases_of(&r, &id), Vec::<String>::new());

    // 2. Killed after the runtime started the container, before the start
    // was recorded: the next commands see it running, stop stops it, and
    // rm -f undoes its network.
    let pidfile = r.dir().join("run.pid");
    std::fs::write(&mark, "").unwrap();
    let runtime = r.dir().join("runtime.sh");
    let real = Path::new(hako).with_file_name("hako-runtime");
    make_executable(
        &runtime,
        &format!(
            "#!/bin/sh\n{real} \"$@\"\nrc=$?\n\
             case \" $* \" in *\" start \"*)\n\
               if rm {mark} 2>/dev/null; then\n\
                 while [ ! -s {pidfile} ]; do sleep 0.05; done\n\
                 kill -9 $(cat {pidfile})\n\
               fi;;\nesac\nexit $rc\n",
            real = real.display(),
            mark = mark.display(),
            pidfile = pidfile.display()
        ),
    );
    let port = free_port();
    let mut child = Command::new(hako)
        .arg("--root")
        .arg(r.root())
        .args(["run", "-d", "--name", "half", "--runtime"])
        .arg(&runtime)
        .arg("-p")
        .arg(format!("{port}:80"))
        .args(["busybox", "sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(&pidfile, child.id().to_string()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the wrapper did not kill it");
    let id = r
        .ok(&["inspect", "-f", "{{.Id}}", "half"])
        .trim()
        .to_string();
    nat.ids.borrow_mut().push(id.clone());
    assert_eq!(r.state_of("half").unwrap().0, "running");
    let pid: i32 = r
        .ok(&["inspect", "-f", "{{.State.Pid}}", "half"])
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0 && engine_common::pid_alive(pid.into()));
    r.ok(&["stop", "-t", "1", "half"]);
    assert!(
        !engine_common::pid_alive(pid.into()),
        "stop left it running"
    );
    assert_eq!(r.state_of("half").unwrap().0, "exited");
    r.ok(&["rm", "-f", "half"]);
    assert!(
        !dnat_rule_for(port),
        "rm -f left the DNAT rule of port {port}"
    );
    assert_eq!(leases_of(&r, &id), Vec::<String>::new());
}
