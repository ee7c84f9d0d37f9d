//! A container's networks: up before the runtime creates the container
//! (a network namespace of its own, `lo`, then each network's CNI chain with
//! `eth0`, `eth1`, ...), down after it exited. What was set up is kept in
//! `<container dir>/network.json` with each chain's configuration and ADD
//! result, so DEL gets exactly what ADD had even if the network record
//! changed or went. /etc/hosts of the containers on a user network name
//! each other (docker resolves names on user networks, not on the default).

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cni::{self, Attachment, Endpoint};
use super::ports::{self, PortBinding};
use super::{is_special_mode, netns, Network};
use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::fsutil::write_replace;
use crate::record::{Container, NetworkAttach, Status};

/// What is set up for a running container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkState {
    pub netns: PathBuf,
    pub attached: Vec<Attached>,
    /// Published ports with the host ports actually used.
    pub ports: Vec<PortBinding>,
}

/// One interface on one network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub network: String,
    pub network_id: String,
    pub ifname: String,
    pub aliases: Vec<String>,
    pub conflist: Value,
    pub runtime_config: Value,
    pub result: Value,
    pub endpoint: Endpoint,
}

impl Engine {
    /// Where a container's network namespace is bound while it runs.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.run_root.join("netns").join(id)
    }

    fn network_state_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("network.json")
    }

    /// What is set up for a container now, if anything.
    pub fn network_state(&self, id: &str) -> Option<NetworkState> {
        let b = fs::read(self.network_state_path(id)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn save_network_state(&self, id: &str, st: &NetworkState) -> Result<()> {
        let json = serde_json::to_vec_pretty(st).expect("network state serialises");
        write_replace(&self.network_state_path(id), &json)
    }

    /// Set up the container's networks (after tearing down any left by a crash).
    pub(crate) fn network_up(&self, c: &Container) -> Result<()> {
        let none = c.host.network_mode == "none";
        if is_special_mode(&c.host.network_mode) && !none {
            return Ok(());
        }
        self.network_down(c)?;
        if none {
            // A namespace of its own with only loopback, up (as docker's), kept in a
            // file so that `--network container:` can join it across restarts.
            let ns = self.netns_path(&c.id);
            netns::create(&ns)?;
            let st = NetworkState {
                netns: ns,
                attached: Vec::new(),
                ports: Vec::new(),
            };
            if let Err(e) = netns::loopback_up(&st.netns) {
                let _ = teardown(&c.id, &st);
                return Err(e);
            }
            return self.save_network_state(&c.id, &st);
        }
        super::isolation::ensure()?;
        let ns = self.netns_path(&c.id);
        netns::create(&ns)?;
        let mut st = NetworkState {
            netns: ns,
            attached: Vec::new(),
            ports: Vec::new(),
        };
        let res = (|| -> Result<()> {
            // Recorded before anything is added: a command killed midway
            // leaves a record that `rm`/`start` tear down (see `attach`).
            self.save_network_state(&c.id, &st)?;
            netns::loopback_up(&st.netns)?;
            let mut ports = c.host.port_bindings.clone();
            if c.host.publish_all_ports {
                for b in ports::publish_all(&c.config.exposed_ports)? {
                    if !ports.iter().any(|p| p.key() == b.key()) {
                        ports.push(b);
                    }
                }
            }
            ports::assign_free(&mut ports)?;
            st.ports = ports;
            for (i, a) in c.host.networks.iter().enumerate() {
                self.attach(c, &mut st, a, i == 0)?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            let _ = teardown(&c.id, &st);
            let _ = fs::remove_file(self.network_state_path(&c.id));
            return Err(e);
        }
        self.refresh_hosts()?;
        Ok(())
    }

    fn attach(
        &self,
        c: &Container,
        st: &mut NetworkState,
        a: &NetworkAttach,
        with_ports: bool,
    ) -> Result<()> {
        let n: Network = self.network(&a.network)?;
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|f| !st.attached.iter().any(|x| &x.ifname == f))
            .expect("an interface name is free");
        let mut conflist = n.conflist(&self.ipam_dir());
        if !with_ports || st.ports.is_empty() {
            // Without ports to publish portmap has nothing to do but cost an exec.
            if let Some(p) = conflist["plugins"].as_array_mut() {
                p.retain(|x| x["type"] != "portmap");
            }
        }
        let mut runtime_config = serde_json::Map::new();
        if with_ports && !st.ports.is_empty() {
            runtime_config.insert(
                "portMappings".into(),
                st.ports
                    .iter()
                    .map(|p| {
                        json!({
                            "hostPort": p.host_port,
                            "containerPort": p.container_port,
                            "protocol": p.protocol,
                            "hostIP": p.host_ip,
                        })
                    })
                    .collect(),
            );
        }
        if let Some(ip) = a.ipv4_address {
            let prefix = check_requested_ip(&n, ip)?;
            runtime_config.insert("ips".into(), json!([format!("{ip}/{}", prefix.len)]));
        }
        if let Some(mac) = &a.mac_address {
            runtime_config.insert("mac".into(), json!(mac));
        }
        let runtime_config = if runtime_config.is_empty() {
            Value::Null
        } else {
            Value::Object(runtime_config)
        };
        let att = Attachment {
            container_id: &c.id,
            netns: &st.netns,
            ifname: &ifname,
        };
        // The intent first: if this process dies during ADD (portmap's DNAT
        // rules and the IPAM lease already made), the recorded entry, with
        // no result yet, still gets its DEL from the next `rm` or `start`.
        st.attached.push(Attached {
            network: n.name.clone(),
            network_id: n.id.clone(),
            ifname: ifname.clone(),
            aliases: a.aliases.clone(),
            conflist: conflist.clone(),
            runtime_config: runtime_config.clone(),
            result: Value::Null,
            endpoint: Endpoint::default(),
        });
        self.save_network_state(&c.id, st)?;
        let added = cni::add(&conflist, &att, &runtime_config);
        st.attached.pop();
        if added.is_err() {
            // A failed ADD undid itself.
            self.save_network_state(&c.id, st)?;
        }
        let result = added.map_err(|e| {
            let message = e.to_string();
            match a.ipv4_address {
                // host-local's words for a taken address; docker's are shorter.
                Some(ip) if message.contains("is not available") => Error::Conflict(format!(
                    "connecting container {} to network {}: address {ip} already in use",
                    c.name, n.name
                )),
                _ => Error::Runtime {
                    context: format!("connecting container {} to network {}", c.name, n.name),
                    message,
                },
            }
        })?;
        let endpoint = cni::endpoint(&result, &ifname);
        st.attached.push(Attached {
            network: n.name.clone(),
            network_id: n.id.clone(),
            ifname,
            aliases: a.aliases.clone(),
            conflist,
            runtime_config,
            result,
            endpoint,
        });
        self.save_network_state(&c.id, st)
    }

    /// The name server of the container's first network, started if it is not
    /// running (user networks only; the default bridge has none, as docker's).
    /// Its address, for /etc/resolv.conf; None where names come from
    /// /etc/hosts alone (or the server could not start: a warning says why).
    pub(crate) fn ensure_dns(&self, c: &Container, programs: &crate::Programs) -> Option<String> {
        if programs.dns_server.is_empty() || !c.host.dns.is_empty() {
            return None;
        }
        let a = c.host.networks.first()?;
        let n = self.network(&a.network).ok()?;
        if n.is_default() {
            return None;
        }
        match self.start_dns(&n, programs) {
            Ok(()) => Some(n.gateway.clone()),
            Err(e) => {
                tracing::warn!(
                    "network {}: no name server, names resolve through /etc/hosts only: {e}",
                    n.name
                );
                None
            }
        }
    }

    fn start_dns(&self, n: &Network, programs: &crate::Programs) -> Result<()> {
        let dir = super::dns::dir(&self.run_root);
        fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let lock_path = super::dns::lock_path(&self.run_root, &n.name);
        let f = fs::File::create(&lock_path).ctx(|| format!("creating {}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking {}", lock_path.display()))?;
        if super::dns::running(&self.run_root, &n.name) {
            return Ok(());
        }
        let pid = super::dns::pid_path(&self.run_root, &n.name);
        let _ = fs::remove_file(&pid);
        let (prog, args) = programs
            .dns_server
            .split_first()
            .expect("checked non-empty");
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args)
            .arg(&n.name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // Its own session: a terminal's hangup or ^C does not end it.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting the name server of network {}", n.name), e))?;
        // It writes its pid file once bound; an early exit says why on stderr.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            if pid.exists() {
                // Reaped by init once we are gone; never waited for here.
                drop(child.stderr.take());
                std::mem::forget(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(Error::Runtime {
                    context: format!("starting the name server of network {}", n.name),
                    message: format!("{status}: {}", err.trim().replace('\n', " ")),
                });
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Runtime {
                    context: format!("starting the name server of network {}", n.name),
                    message: "it did not report within 3 s".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Run the name server of network `what` (the `dns-serve` command the
    /// engine starts); returns when no container is left on the network.
    pub fn serve_dns(&self, what: &str) -> Result<()> {
        let n = self.network(what)?;
        let gw: std::net::Ipv4Addr = n.gateway.parse().map_err(|_| {
            Error::Invalid(format!(
                "network {}: gateway {:?} is not an IPv4 address",
                n.name, n.gateway
            ))
        })?;
        super::dns::serve(&self.run_root, &n.name, gw)
    }

    /// Tear down what [`network_up`](Self::network_up) set up; nothing set up is fine.
    pub(crate) fn network_down(&self, c: &Container) -> Result<()> {
        let path = self.network_state_path(&c.id);
        let res = match self.network_state(&c.id) {
            Some(st) => teardown(&c.id, &st),
            None => netns::remove(&self.netns_path(&c.id)),
        };
        match fs::remove_file(&path) {
            Ok(()) => self.refresh_hosts()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("removing {}", path.display())),
        }
        res
    }

    /// Attach the network namespace of running container `id` (one made
    /// by the engine: network mode `none` or a network) to a CNI network the
    /// caller configured itself, as interface `ifname`: the CRI's pod
    /// network from kubelet's configuration directory. ADD now; recorded in
    /// the container's network state, so every teardown (stop, rm, reset,
    /// the cleanup after an exit) DELs it as it does the engine's own.
    pub fn attach_cni(
        &self,
        id: &str,
        conflist: &Value,
        runtime_config: &Value,
        ifname: &str,
    ) -> Result<Attached> {
        let _lock = self.lock(id)?;
        let mut st = self.network_state(id).ok_or_else(|| {
            Error::Conflict(format!(
                "container {id} has no network namespace of its own"
            ))
        })?;
        if st.attached.iter().any(|a| a.ifname == ifname) {
            return Err(Error::Conflict(format!(
                "container {id} already has an interface {ifname}"
            )));
        }
        let att = Attachment {
            container_id: id,
            netns: &st.netns,
            ifname,
        };
        let result = cni::add(conflist, &att, runtime_config)?;
        let a = Attached {
            network: conflist["name"].as_str().unwrap_or_default().to_string(),
            network_id: String::new(),
            ifname: ifname.to_string(),
            aliases: Vec::new(),
            conflist: conflist.clone(),
            runtime_config: runtime_config.clone(),
            endpoint: cni::endpoint(&result, ifname),
            result,
        };
        st.attached.push(a.clone());
        if let Err(e) = self.save_network_state(id, &st) {
            let _ = del_one(id, &st, &a);
            return Err(e);
        }
        Ok(a)
    }

    /// Undo [`Engine::attach_cni`] now (DEL), keeping the namespace: what
    /// the CRI's StopPodSandbox needs before it stops the infra process.
    /// Nothing to do when no such interface is attached.
    pub fn detach_cni(&self, id: &str, ifname: &str) -> Result<()> {
        let _lock = self.lock(id)?;
        let Some(mut st) = self.network_state(id) else {
            return Ok(());
        };
        let Some(i) = st.attached.iter().position(|a| a.ifname == ifname) else {
            return Ok(());
        };
        del_one(id, &st, &st.attached[i])?;
        st.attached.remove(i);
        self.save_network_state(id, &st)
    }

    /// Attach a container to one more network (now if it runs, else at
    /// start), with more names there and, if given, the address asked for.
    pub fn connect(
        &self,
        what: &str,
        network: &str,
        aliases: &[String],
        ip: Option<std::net::Ipv4Addr>,
    ) -> Result<()> {
        let found = self.get(what)?;
        let _lock = self.lock(&found.id)?;
        let mut c = self.get(&found.id)?;
        let n = self.network(network)?;
        if is_special_mode(&c.host.network_mode) {
            return Err(Error::Conflict(format!(
                "container {} uses network mode {}: it cannot join other networks",
                c.name, c.host.network_mode
            )));
        }
        if c.host.networks.iter().any(|a| a.network == n.name) {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            )));
        }
        if let Some(ip) = ip {
            if n.is_default() {
                return Err(Error::Invalid(
                    "user specified IP address is supported on user defined networks only".into(),
                ));
            }
            check_requested_ip(&n, ip)?;
        }
        let a = NetworkAttach {
            network: n.name.clone(),
            aliases: aliases.to_vec(),
            ipv4_address: ip,
            mac_address: None,
        };
        if c.state.status == Status::Running {
            let mut st = self.network_state(&c.id).ok_or_else(|| {
                Error::Conflict(format!("container {} has no network namespace", c.name))
            })?;
            self.attach(&c, &mut st, &a, false)?;
            self.save_network_state(&c.id, &st)?;
        }
        c.host.networks.push(a);
        self.db.set_host_config(&c.id, &c.host)?;
        self.network_event(&n, "connect", Some(&c.id));
        self.refresh_hosts()
    }

    /// Detach a container from a network.
    pub fn disconnect(&self, what: &str, network: &str) -> Result<()> {
        let found = self.get(what)?;
        let _lock = self.lock(&found.id)?;
        let mut c = self.get(&found.id)?;
        let n = self.network(network)?;
        let Some(pos) = c.host.networks.iter().position(|a| a.network == n.name) else {
            return Err(Error::Conflict(format!(
                "container {} is not connected to network {}",
                c.name, n.name
            )));
        };
        if let Some(mut st) = self.network_state(&c.id) {
            if let Some(i) = st.attached.iter().position(|a| a.network == n.name) {
                let a = st.attached.remove(i);
                del_one(&c.id, &st, &a)?;
                self.save_network_state(&c.id, &st)?;
            }
        }
        c.host.networks.remove(pos);
        self.db.set_host_config(&c.id, &c.host)?;
        self.network_event(&n, "disconnect", Some(&c.id));
        self.refresh_hosts()
    }

    /// Rewrite /etc/hosts of every running container with a network: its own
    /// address and, on user networks, every other container's name and
    /// aliases. Files are rewritten in place: they are bind-mounted.
    pub(crate) fn refresh_hosts(&self) -> Result<()> {
        let lock_path = self.root.join("containers").join(".hosts.lock");
        let f = fs::File::create(&lock_path).ctx(|| format!("creating {}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking {}", lock_path.display()))?;
        // Whoever has its networks up counts, the one being started included
        // (its record says running only once the monitor reported).
        let running: Vec<(Container, NetworkState)> = self
            .db
            .list()?
            .into_iter()
            .filter(|c| !is_special_mode(&c.host.network_mode))
            .filter_map(|c| self.network_state(&c.id).map(|s| (c, s)))
            .collect();
        // What the networks' name servers answer.
        let mut records = Vec::new();
        for (c, st) in &running {
            for a in st
                .attached
                .iter()
                .filter(|a| a.network != super::DEFAULT_NETWORK)
            {
                if let Ok(ip) = a.endpoint.ip.parse() {
                    let mut names = vec![c.name.clone()];
                    names.extend(a.aliases.iter().cloned());
                    names.push(c.short_id().to_string());
                    records.push(super::dns::Record {
                        network: a.network.clone(),
                        ip,
                        container: c.id.clone(),
                        names,
                    });
                }
            }
        }
        let dns_dir = super::dns::dir(&self.run_root);
        fs::create_dir_all(&dns_dir).ctx(|| format!("creating {}", dns_dir.display()))?;
        crate::fsutil::write_replace(
            &super::dns::records_path(&self.run_root),
            super::dns::format_records(&records).as_bytes(),
        )?;
        for (c, st) in &running {
            let text = hosts_file(c, st, &running);
            let path = self.container_dir(&c.id).join("hosts");
            let res = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            if let Err(e) = res {
                tracing::warn!("updating {}: {e}", path.display());
            }
        }
        Ok(())
    }
}

/// The /etc/hosts of `c`.
pub(crate) fn hosts_file(
    c: &Container,
    st: &NetworkState,
    running: &[(Container, NetworkState)],
) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(a) = st.attached.first() {
        out.push_str(&format!("{}\t{}\n", a.endpoint.ip, c.config.hostname));
    }
    for e in &c.host.extra_hosts {
        if let Some((name, ip)) = e.split_once(':') {
            let ip = if ip == "host-gateway" {
                st.attached
                    .first()
                    .map(|a| a.endpoint.gateway.as_str())
                    .unwrap_or("127.0.0.1")
            } else {
                ip
            };
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    for mine in st
        .attached
        .iter()
        .filter(|a| a.network != super::DEFAULT_NETWORK)
    {
        for (o, ost) in running {
            if o.id == c.id {
                continue;
            }
            for theirs in ost.attached.iter().filter(|t| t.network == mine.network) {
                let mut names = vec![o.name.clone()];
                names.extend(theirs.aliases.iter().cloned());
                names.push(o.short_id().to_string());
                out.push_str(&format!("{}\t{}\n", theirs.endpoint.ip, names.join(" ")));
            }
        }
    }
    out
}

/// An address asked for with `--ip` must be a host address of the network's
/// subnet other than its gateway; returns the subnet.
pub(crate) fn check_requested_ip(
    n: &Network,
    ip: std::net::Ipv4Addr,
) -> Result<super::subnet::Prefix> {
    let prefix = super::subnet::Prefix::parse(&n.subnet)?;
    let broadcast =
        std::net::Ipv4Addr::from(u32::from(prefix.network()) | (u32::MAX >> prefix.len));
    if !prefix.contains(ip) {
        return Err(Error::Invalid(format!(
            "address {ip} is not in the subnet {} of network {}",
            n.subnet, n.name
        )));
    }
    if ip == prefix.network() || ip == broadcast {
        return Err(Error::Invalid(format!(
            "address {ip} is the {} address of network {} ({}), not a host address",
            if ip == broadcast {
                "broadcast"
            } else {
                "network"
            },
            n.name,
            n.subnet
        )));
    }
    if n.gateway.parse::<std::net::Ipv4Addr>().ok() == Some(ip) {
        return Err(Error::Conflict(format!(
            "address {ip} already in use: it is the gateway of network {}",
            n.name
        )));
    }
    Ok(prefix)
}

fn del_one(id: &str, st: &NetworkState, a: &Attached) -> Result<()> {
    let att = Attachment {
        container_id: id,
        netns: &st.netns,
        ifname: &a.ifname,
    };
    cni::del(&a.conflist, &att, &a.runtime_config, &a.result)
}

/// DEL every chain (last attached first), then drop the namespace.
fn teardown(id: &str, st: &NetworkState) -> Result<()> {
    let mut first = None;
    for a in st.attached.iter().rev() {
        if let Err(e) = del_one(id, st, a) {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = netns::remove(&st.netns) {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}
