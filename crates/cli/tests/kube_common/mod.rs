//! The harness the `hako kube` suites share: `hako --root DIR kube up --addr
//! 127.0.0.1:0` as a child process (stopped on drop, also when a test fails) and
//! the real kubectl pointed at the kubeconfig it writes, with a discovery cache
//! of its own so nothing lands in the user's ~/.kube.

#![allow(dead_code)]

use std::any::Any;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn hako() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hako"))
}

/// Poll `cond` for up to two minutes (a bound against hangs, not a timing check).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM a process and wait for it (SIGKILL after 30 s): `up` removes its
/// kube-proxy rules and stops its children on SIGTERM.
pub fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Flags that leave the API server alone: no node, scheduler, controllers or
/// kube-proxy rules (suites that play those parts themselves).
pub const API_ONLY: &[&str] = &[
    "--disable-agent",
    "--disable-scheduler",
    "--disable-controllers",
    "--disable-proxy",
];

/// Start `hako --root ROOT kube up` and read its first line: the address.
fn start(root: &Path, args: &[String], env: &[(String, String)]) -> (Child, String) {
    let mut child = Command::new(hako())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--root")
        .arg(root)
        .args(["kube", "up", "--addr", "127.0.0.1:0"])
        .args(args)
        // The ingress controller listens on the host's ports 80 and 443: only for
        // the tests that ask for it (on ports of their own).
        .args((!args.iter().any(|a| a.contains("ingress"))).then_some("--disable-ingress"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting hako kube up");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    let addr = match line.trim().strip_prefix("API server listening on https://") {
        Some(a) => a.to_string(),
        None => {
            terminate(&mut child);
            panic!("hako kube up did not start: {line:?}");
        }
    };
    // Keep draining stdout so `up` never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (child, addr)
}

/// A running `hako kube up` and kubectl against it.
pub struct Kube {
    child: Option<Child>,
    /// host:port of the API server.
    pub addr: String,
    root: PathBuf,
    /// Where kubectl's cache and test files go.
    dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Dropped after `up` has stopped (an etcd the server stores in).
    pub after: Vec<Box<dyn Any + Send + Sync>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Kube {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Kube {
    /// `kube up` with `args` in a fresh temp root.
    pub fn up(args: &[&str]) -> Kube {
        Kube::up_env(args, &[])
    }

    /// `kube up` with `args` and environment variables in a fresh temp root.
    pub fn up_env(args: &[&str], env: &[(&str, &str)]) -> Kube {
        let tmp = tempfile::tempdir().unwrap();
        let mut k = Kube::up_in(&tmp.path().join("root"), tmp.path(), args, env);
        k._tmp = Some(tmp);
        k
    }

    /// `kube up` on an existing hako root; kubectl's files go to `dir`.
    pub fn up_in(root: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Kube {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, addr) = start(root, &args, &env);
        Kube {
            child: Some(child),
            addr,
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            args,
            env,
            after: Vec::new(),
            _tmp: None,
        }
    }

    /// The hako root `up` runs on.
    pub fn root(&self) -> PathBuf {
        self.root.clone()
    }

    /// A scratch directory of the test's (beside the root).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("kube up is running").id()
    }

    /// Stop `up` (SIGTERM, then SIGKILL after 30 s); a no-op once stopped.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    /// Wait for `up` to exit by itself (e.g. after `hako kube down`).
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.child
            .take()
            .expect("kube up is running")
            .wait()
            .unwrap()
    }

    /// Kill the server (SIGKILL: no chance to flush anything) and start it again.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let (child, addr) = start(&self.root, &self.args, &self.env);
        self.child = Some(child);
        self.addr = addr;
    }

    /// kubectl with this cluster's kubeconfig and a cache of its own.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/kubectl");
        c.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.kubectl_cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("running kubectl");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// kubectl must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    pub fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// kubectl must fail; its stderr.
    pub fn fails_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn apply(&self, yaml: &str) {
        self.ok_in(&["apply", "-f", "-"], Some(yaml));
    }

    /// `kubectl ARGS -o json`, which must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// `kubectl ARGS -o json`, or None when kubectl fails (e.g. not found).
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.run(&a, None);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Items of a list (`kubectl get KIND ... -o json`).
    pub fn items(&self, args: &[&str]) -> Vec<Value> {
        self.json(args)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait (up to two minutes, a bound against hangs) until `f` returns something.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(t) = f() {
                return t;
            }
            if Instant::now() > deadline {
                let events = self.run(&["get", "events", "-A"], None);
                panic!(
                    "gave up waiting for {what}\nevents:\n{}",
                    String::from_utf8_lossy(&events.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pod's object, or Null while it does not exist.
    pub fn pod(&self, name: &str) -> Value {
        self.try_json(&["get", "pod", name]).unwrap_or(Value::Null)
    }

    /// Wait until pod `name` satisfies `cond`; the last object seen.
    pub fn wait_pod(&self, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let last = self.pod(name);
            if cond(&last) {
                return last;
            }
            if Instant::now() > deadline {
                let events = self.run(&["get", "events", "-A"], None);
                panic!(
                    "gave up waiting for pod {name}: {what}; last seen: {last}\nevents:\n{}",
                    String::from_utf8_lossy(&events.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The condition `t` of an object's status (Null when absent).
pub fn condition(obj: &Value, t: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == t)
        .cloned()
        .unwrap_or(Value::Null)
}

pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

/// The node name a kubelet registers by default: the host name, lower-cased.
pub fn node_name() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_lowercase()
}

/// A `hako registry serve` on 127.0.0.1 with its own root.
pub struct Registry {
    child: Child,
    pub addr: String,
}

impl Registry {
    pub fn start(root: &Path, args: &[&str]) -> Registry {
        let mut child = Command::new(hako())
            .arg("--root")
            .arg(root)
            .args(["registry", "serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        Registry { child, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
