//! `hako kube kubelet`, `hako kube scheduler`, and the node half of `hako kube up`: the
//! CRI service and a kubelet as child processes it supervises (a child that dies is
//! started again) and stops when the control plane stops. `up` runs the scheduler on a
//! thread of its own process, as the controllers (see `start_scheduler`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::Global;

#[derive(Debug, Args)]
pub struct KubeletArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long, value_name = "FILE")]
    kubeconfig: PathBuf,
    /// The CRI runtime's socket (unix:///path).
    #[arg(long, value_name = "URL")]
    container_runtime_endpoint: String,
    /// The Node's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The kubelet's directory: volumes, logs, its certificate (default $ROOT/kube/kubelet).
    #[arg(long, value_name = "DIR")]
    root_dir: Option<PathBuf>,
    /// HTTPS port of the kubelet server (0: any free port).
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// A directory of static Pod manifests (YAML or JSON).
    #[arg(long, value_name = "DIR")]
    pod_manifest_path: Option<PathBuf>,
    /// The cluster's PKI (default $ROOT/kube/pki): its CA signs the kubelet's serving
    /// certificate; its kubelet-client.token is the only token the kubelet accepts.
    #[arg(long, value_name = "DIR")]
    pki_dir: Option<PathBuf>,
    /// Stop every pod when the kubelet stops (default: leave them running, as upstream).
    #[arg(long)]
    stop_pods_on_exit: bool,
    /// Seconds between syncs of each pod without an event: ConfigMap, Secret and
    /// downward API volumes follow their sources at this pace (upstream: 60).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    sync_frequency: u64,
    /// The cluster DNS server(s) ClusterFirst pods use (comma-separated IPs; none: the
    /// node's resolver).
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain (pods search NS.svc.DOMAIN, svc.DOMAIN, DOMAIN).
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long, value_name = "FILE")]
    kubeconfig: PathBuf,
    /// Schedule the pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
}

/// The node options of `hako kube up`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Use this CRI runtime (unix:///path) instead of starting `hako cri serve`.
    #[arg(long, value_name = "URL")]
    container_runtime_endpoint: Option<String>,
    /// The node's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// HTTPS port of the kubelet server (0, the default: any free port; the API server
    /// finds it in the Node's status).
    #[arg(long, default_value_t = 0)]
    kubelet_port: u16,
    /// A directory of static Pod manifests for the kubelet.
    #[arg(long, value_name = "DIR")]
    pod_manifest_path: Option<PathBuf>,
    /// Run no kubelet and no CRI service (as k3s' --disable-agent).
    #[arg(long)]
    disable_agent: bool,
    /// Run no scheduler (as k3s' --disable-scheduler).
    #[arg(long)]
    pub disable_scheduler: bool,
}

fn kube_dir(g: &Global) -> PathBuf {
    g.root.join("kube")
}

pub fn kubelet(g: &Global, a: KubeletArgs) -> Result<()> {
    let opts = hako_kube_kubelet::KubeletOptions {
        kubeconfig: a.kubeconfig,
        runtime_endpoint: a.container_runtime_endpoint,
        node_name: a
            .node_name
            .unwrap_or_else(hako_kube_kubelet::kubelet::default_node_name),
        root: a.root_dir.unwrap_or_else(|| kube_dir(g).join("kubelet")),
        port: a.port,
        pod_manifest_path: a.pod_manifest_path,
        pki_dir: Some(a.pki_dir.unwrap_or_else(|| kube_dir(g).join("pki"))),
        stop_pods_on_exit: a.stop_pods_on_exit,
        sync_frequency: Duration::from_secs(a.sync_frequency.max(1)),
        cluster_dns: hako_kube_kubelet::ClusterDns {
            servers: a.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            domain: a.cluster_domain,
        },
    };
    hako_kube_kubelet::run_kubelet(opts, |node, port| {
        println!("kubelet: node {node} registered, serving on port {port}");
    })
    .context("running the kubelet")
}

pub fn scheduler(_g: &Global, a: SchedulerArgs) -> Result<()> {
    let opts = hako_kube_kubelet::SchedulerOptions {
        kubeconfig: a.kubeconfig,
        scheduler_name: a.scheduler_name,
    };
    hako_kube_kubelet::run_scheduler(opts, || println!("scheduler: started"))
        .context("running the scheduler")
}

/// The scheduler of `hako kube up`, in its process: one binary's code and one allocator
/// shared with the API server and controllers instead of a process of its own (k3s runs
/// its control plane in one process too). It still talks to the API server through a
/// client with the scheduler's identity (system:kube-scheduler).
pub fn start_scheduler(g: &Global) {
    let paths = hako_kube_apiserver::Paths::new(&g.root);
    hako_kube_kubelet::scheduler::spawn_thread(hako_kube_kubelet::SchedulerOptions {
        kubeconfig: paths.component_kubeconfig("scheduler"),
        scheduler_name: "default-scheduler".into(),
    });
}

struct Proc {
    name: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    pidfile: PathBuf,
}

/// The supervised children of `hako kube up`.
pub struct Node {
    procs: Arc<Mutex<Vec<Proc>>>,
    stopping: Arc<AtomicBool>,
}

impl Node {
    /// Start the CRI service (unless an endpoint is given) and the kubelet against the
    /// kubeconfig under the root.
    /// `cluster_dns`: the kubelet's `--cluster-dns` (the `kube-dns` Service's IP).
    pub fn start(
        g: &Global,
        a: &NodeArgs,
        cluster_dns: Option<std::net::Ipv4Addr>,
    ) -> Result<Node> {
        let dir = kube_dir(g);
        let root = g.root.display().to_string();
        let admin = g.root.join("kubeconfig");
        let paths = hako_kube_apiserver::Paths::new(&g.root);
        // The kubelet runs as its node (system:node:NAME in system:nodes).
        let node_name = a
            .node_name
            .clone()
            .unwrap_or_else(hako_kube_kubelet::kubelet::default_node_name);
        let server = std::fs::read_to_string(&admin)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.trim().strip_prefix("server: ").map(String::from))
            })
            .with_context(|| format!("no server address in {}", admin.display()))?;
        let kubelet_kubeconfig = paths.component_kubeconfig("kubelet");
        hako_kube_apiserver::certs::write_client_kubeconfig(
            &paths.pki(),
            &server,
            &kubelet_kubeconfig,
            &format!("system:node:{node_name}"),
            &["system:nodes".to_string()],
        )
        .context("writing the kubelet's kubeconfig")?;
        let mut procs = Vec::new();
        let endpoint = match &a.container_runtime_endpoint {
            _ if a.disable_agent => String::new(),
            Some(e) => e.clone(),
            None => {
                let sock = dir.join("cri.sock");
                let conf = dir.join("cri.toml");
                if !conf.exists() {
                    // The pod network's CNI configuration lives under the root, not /etc.
                    let text = format!(
                        "cni_conf_dir = {:?}\n",
                        dir.join("net.d").display().to_string()
                    );
                    let tmp = conf.with_extension("tmp");
                    std::fs::write(&tmp, text)
                        .and_then(|_| std::fs::rename(&tmp, &conf))
                        .with_context(|| format!("writing {}", conf.display()))?;
                }
                procs.push(Proc {
                    name: "cri",
                    args: vec![
                        "--root".into(),
                        root.clone(),
                        "--log-level".into(),
                        g.log_level.clone(),
                        "cri".into(),
                        "serve".into(),
                        "--socket".into(),
                        sock.display().to_string(),
                        "--config".into(),
                        conf.display().to_string(),
                    ],
                    child: None,
                    pidfile: dir.join("cri.pid"),
                });
                format!("unix://{}", sock.display())
            }
        };
        let mut kubelet = vec![
            "--root".into(),
            root.clone(),
            "--log-level".into(),
            g.log_level.clone(),
            "kube".into(),
            "kubelet".into(),
            "--kubeconfig".into(),
            kubelet_kubeconfig.display().to_string(),
            "--container-runtime-endpoint".into(),
            endpoint,
            "--port".into(),
            a.kubelet_port.to_string(),
        ];
        if let Some(ip) = cluster_dns {
            kubelet.extend([
                "--cluster-dns".into(),
                ip.to_string(),
                "--cluster-domain".into(),
                hako_kube_proxy::dns::DOMAIN.into(),
            ]);
        }
        if let Some(n) = &a.node_name {
            kubelet.extend(["--node-name".into(), n.clone()]);
        }
        if let Some(p) = &a.pod_manifest_path {
            kubelet.extend([
                "--pod-manifest-path".into(),
                std::path::absolute(p)?.display().to_string(),
            ]);
        }
        if !a.disable_agent {
            procs.push(Proc {
                name: "kubelet",
                args: kubelet,
                child: None,
                pidfile: dir.join("kubelet.pid"),
            });
        }
        let me = std::env::current_exe().context("finding the hako executable")?;
        for p in procs.iter_mut() {
            spawn(&me, p)?;
        }
        let node = Node {
            procs: Arc::new(Mutex::new(procs)),
            stopping: Arc::new(AtomicBool::new(false)),
        };
        let (procs, stopping) = (node.procs.clone(), node.stopping.clone());
        std::thread::spawn(move || supervise(&me, &procs, &stopping));
        Ok(node)
    }

    /// Stop the kubelet, then the CRI service (pods keep running).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        for p in procs.iter_mut().rev() {
            if let Some(mut c) = p.child.take() {
                terminate(&mut c);
            }
            let _ = std::fs::remove_file(&p.pidfile);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(me: &Path, p: &mut Proc) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(me);
    // SAFETY: prctl(2) is async-signal-safe; between fork and exec it only asks the
    // kernel to SIGTERM the child when its parent (`hako kube up`) dies, even by SIGKILL.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .args(&p.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting the {}", p.name))?;
    let _ = std::fs::write(&p.pidfile, child.id().to_string());
    p.child = Some(child);
    Ok(())
}

fn terminate(c: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(c.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Restart a child that exits while the control plane runs (after a second, so a
/// child failing at start does not spin).
fn supervise(me: &Path, procs: &Mutex<Vec<Proc>>, stopping: &AtomicBool) {
    while !stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(500));
        let mut procs = procs.lock().unwrap_or_else(|e| e.into_inner());
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        for p in procs.iter_mut() {
            let exited = match p.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(st))) => Some(st),
                _ => None,
            };
            if let Some(st) = exited {
                eprintln!(
                    "hako kube up: the {} exited ({st}); starting it again",
                    p.name
                );
                p.child = None;
                std::thread::sleep(Duration::from_secs(1));
                if let Err(e) = spawn(me, p) {
                    eprintln!("hako kube up: {e:#}");
                }
            }
        }
    }
}
