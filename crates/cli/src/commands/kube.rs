//! `hako kube`: the Kubernetes control plane (this far: the API server) and
//! its kubeconfig. The server itself lives in `hako-kube-apiserver`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hako_kube_apiserver::{Paths, StoreConfig};

use crate::Global;

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Start the control plane in the foreground (API server on SQLite); writes $ROOT/kubeconfig.
    Up(UpArgs),
    /// Print the kubeconfig of the control plane under --root (the admin's token), or one
    /// with a new client certificate for --user (CN) in each --group (O).
    Kubeconfig(KubeconfigArgs),
    /// Stop the control plane started by `hako kube up` under --root.
    Down,
    /// Run a kubelet: registers a Node and runs the pods bound to it through CRI.
    Kubelet(super::kube_node::KubeletArgs),
    /// Run the scheduler: binds pending pods to nodes.
    Scheduler(super::kube_node::SchedulerArgs),
    /// Run the workload controllers (also started by `up`) against a cluster.
    Controllers {
        /// The cluster to control (default: $ROOT/kubeconfig).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Where the local-path provisioner makes volume directories (default: ROOT/kube/storage).
        #[arg(long, value_name = "DIR")]
        local_storage_dir: Option<std::path::PathBuf>,
    },
    /// Run kube-proxy (also started by `up`): Services as iptables NAT rules on this host.
    Proxy {
        /// The cluster to serve (default: $ROOT/kubeconfig).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<std::path::PathBuf>,
    },
    /// Serve cluster DNS (SVC.NS.svc.cluster.local A/SRV records; other names forwarded).
    Dns {
        /// The cluster to serve (default: $ROOT/kubeconfig).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Where to answer (UDP).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:53")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Issue a client certificate for this user (signed by the cluster CA).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A group of the user (repeatable); needs --user.
    #[arg(long, value_name = "GROUP", requires = "user")]
    group: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Etcd,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address for the API server (port 0: any free port, printed on start).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6443")]
    addr: SocketAddr,
    /// Where objects are stored.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
    /// The etcd server for `--store etcd` (its client URL; plain HTTP).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: String,
    /// Seconds between compactions of the store's history (watches older than that get 410 Gone).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    compaction_interval: u64,
    /// The IPv4 range Services' cluster IPs are allocated from.
    #[arg(long, value_name = "CIDR", default_value = "10.43.0.0/16")]
    service_cluster_ip_range: hako_kube_apiserver::ServiceCidr,
    /// Key prefix in etcd, so several control planes can share one etcd.
    #[arg(long, value_name = "PREFIX", default_value = "/hako")]
    etcd_prefix: String,
    #[command(flatten)]
    node: super::kube_node::NodeArgs,
    /// Run the API server without the controllers (as k3s' --disable-controller-manager).
    #[arg(long)]
    disable_controllers: bool,
    /// Do not program Services on this host (no kube-proxy, hence no cluster DNS).
    #[arg(long)]
    disable_proxy: bool,
    /// Run no cluster DNS (as k3s' --disable coredns): pods use the node's resolver.
    #[arg(long)]
    disable_dns: bool,
    /// The `kube-dns` Service's cluster IP, the kubelet's --cluster-dns (default: the
    /// 10th address of --service-cluster-ip-range, 10.43.0.10, as k3s).
    #[arg(long, value_name = "IP")]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// Host port of the ingress controller's HTTP listener (all addresses).
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    ingress_http_port: u16,
    /// Host port of the ingress controller's HTTPS listener (all addresses).
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    ingress_https_port: u16,
    /// Run no ingress controller (as k3s' --disable traefik).
    #[arg(long)]
    disable_ingress: bool,
    /// Where the local-path provisioner makes volume directories (default: ROOT/kube/storage).
    #[arg(long, value_name = "DIR")]
    local_storage_dir: Option<std::path::PathBuf>,
    /// Neither install the default `local-path` StorageClass nor provision for it (as k3s'
    /// --disable local-storage).
    #[arg(long)]
    disable_local_storage: bool,
}

pub fn run(g: &Global, cmd: KubeCommand) -> Result<()> {
    let paths = Paths::new(&g.root);
    match cmd {
        KubeCommand::Up(args) => {
            let store = match args.store {
                StoreKind::Sqlite => StoreConfig::Sqlite,
                StoreKind::Etcd => {
                    if args.etcd_endpoints.starts_with("https://") {
                        bail!(
                            "starting the control plane: etcd over TLS is not supported yet ({})",
                            args.etcd_endpoints
                        );
                    }
                    StoreConfig::Etcd {
                        endpoint: args
                            .etcd_endpoints
                            .split(',')
                            .next()
                            .unwrap_or("")
                            .to_string(),
                        prefix: args.etcd_prefix.clone(),
                    }
                }
            };
            let kubeconfig = paths.kubeconfig();
            let cluster_dns = if args.disable_proxy || args.disable_dns {
                None
            } else {
                let range = args.service_cluster_ip_range;
                Some(match args.cluster_dns {
                    Some(ip) => ip,
                    None => range.nth(10).with_context(|| {
                        format!("starting the control plane: the service range {range} has no 10th address for cluster DNS (give --cluster-dns or --disable-dns)")
                    })?,
                })
            };
            let settings = hako_kube_apiserver::Settings {
                compaction: Duration::from_secs(args.compaction_interval),
                service_cidr: args.service_cluster_ip_range,
            };
            let mut node = Err(anyhow::anyhow!("the API server did not start"));
            let mut proxy = None;
            hako_kube_kubelet::limit_malloc_arenas();
            let served = hako_kube_apiserver::serve_foreground(
                &paths,
                &store,
                &settings,
                args.addr,
                |addr| {
                    // Tests and scripts read these two lines to find the server.
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "API server listening on https://{addr}");
                    let _ = writeln!(out, "kubeconfig: {}", kubeconfig.display());
                    let _ = out.flush();
                    // The controllers, scheduler and node (CRI, kubelet) start once the kubeconfig is written.
                    if !args.disable_controllers {
                        let opts = hako_kube_controllers::Options {
                            local_path_dir: (!args.disable_local_storage)
                                .then(|| storage_dir(g, args.local_storage_dir.clone())),
                            install_default_class: !args.disable_local_storage,
                        };
                        hako_kube_controllers::spawn_thread(
                            paths.component_kubeconfig("controller-manager"),
                            opts,
                        );
                    }
                    if !args.disable_proxy {
                        proxy = Some(hako_kube_proxy::spawn_thread(
                            paths.component_kubeconfig("kube-proxy"),
                            &proxy_tag(g),
                        ));
                    }
                    if let Some(ip) = cluster_dns {
                        // Where pods reach it through kube-proxy's DNAT: the
                        // node's address (the pod bridge may not exist yet).
                        hako_kube_proxy::dns::spawn_thread(
                            kubeconfig.clone(),
                            hako_kube_kubelet::host_ip()
                                .parse()
                                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                            ip,
                        );
                    }
                    if !args.disable_ingress && !args.disable_controllers {
                        let any = |port| Some(SocketAddr::from(([0, 0, 0, 0], port)));
                        hako_kube_proxy::ingress::spawn_thread(
                            kubeconfig.clone(),
                            any(args.ingress_http_port),
                            any(args.ingress_https_port),
                            hako_kube_kubelet::host_ip(),
                        );
                    }
                    if !args.node.disable_scheduler {
                        super::kube_node::start_scheduler(g);
                    }
                    node = super::kube_node::Node::start(g, &args.node, cluster_dns);
                    if let Err(e) = &node {
                        eprintln!("Error: starting the node: {e:#}");
                    }
                },
            )
            .context("running the Kubernetes API server");
            if let Ok(n) = &node {
                n.stop();
            }
            let cleaned = proxy.map_or(Ok(()), |p| p.stop());
            served.and(cleaned.context("removing kube-proxy's rules"))
        }
        KubeCommand::Kubelet(a) => super::kube_node::kubelet(g, a),
        KubeCommand::Scheduler(a) => super::kube_node::scheduler(g, a),
        KubeCommand::Controllers {
            kubeconfig,
            local_storage_dir,
        } => hako_kube_controllers::run_foreground(
            kubeconfig.unwrap_or_else(|| paths.kubeconfig()),
            hako_kube_controllers::Options {
                local_path_dir: Some(storage_dir(g, local_storage_dir)),
                install_default_class: false,
            },
        )
        .context("running the controllers"),
        KubeCommand::Proxy { kubeconfig } => hako_kube_proxy::run_foreground(
            kubeconfig.unwrap_or_else(|| paths.kubeconfig()),
            &proxy_tag(g),
        )
        .context("running kube-proxy"),
        KubeCommand::Dns { kubeconfig, listen } => hako_kube_proxy::dns::run_foreground(
            kubeconfig.unwrap_or_else(|| paths.kubeconfig()),
            listen,
        )
        .context("running cluster DNS"),
        KubeCommand::Kubeconfig(args) => {
            let path = paths.kubeconfig();
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading the kubeconfig {} (has `hako kube up` run with this --root?)",
                    path.display()
                )
            })?;
            let Some(user) = args.user else {
                print!("{text}");
                return Ok(());
            };
            // The server's address is the one `kube up` last wrote.
            let server = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("server: "))
                .with_context(|| format!("no server address in {}", path.display()))?;
            let ca_path = paths.pki().join("ca.crt");
            let ca = std::fs::read_to_string(&ca_path)
                .with_context(|| format!("reading {}", ca_path.display()))?;
            let (cert, key) =
                hako_kube_apiserver::certs::issue_client_cert(&paths.pki(), &user, &args.group)?;
            print!(
                "{}",
                hako_kube_apiserver::certs::client_cert_kubeconfig(&ca, server, &user, &cert, &key)
            );
            Ok(())
        }
        KubeCommand::Down => {
            let pidfile = paths.pid();
            let text = match std::fs::read_to_string(&pidfile) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!(
                        "stopping the control plane: none is running under {}",
                        g.root.display()
                    )
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", pidfile.display())),
            };
            let pid: i32 = text
                .trim()
                .parse()
                .with_context(|| format!("reading the pid in {}", pidfile.display()))?;
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
                let _ = std::fs::remove_file(&pidfile);
                // A killed `up` left its rules: remove them.
                return hako_kube_proxy::cleanup(&proxy_tag(g));
            }
            let start = Instant::now();
            while nix::sys::signal::kill(pid, None).is_ok() && pidfile.exists() {
                if start.elapsed() > Duration::from_secs(15) {
                    bail!("stopping the control plane: process {pid} did not exit after SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // `up` removes kube-proxy's rules as it exits: wait for that.
            while alive(pid) && start.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(50));
            }
            hako_kube_proxy::cleanup(&proxy_tag(g))
        }
    }
}

/// Running and not a zombie (a parent that has not reaped it yet).
fn alive(pid: nix::unistd::Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The local-path provisioner's base directory (absolute: it goes into PVs).
fn storage_dir(g: &Global, dir: Option<std::path::PathBuf>) -> std::path::PathBuf {
    let dir = dir.unwrap_or_else(|| g.root.join("kube/storage"));
    std::path::absolute(&dir).unwrap_or(dir)
}

/// kube-proxy's chain tag for this root (so roots never share rules).
fn proxy_tag(g: &Global) -> String {
    hako_kube_proxy::tag_for(&std::fs::canonicalize(&g.root).unwrap_or_else(|_| g.root.clone()))
}
