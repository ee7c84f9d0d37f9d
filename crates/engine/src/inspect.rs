//! `inspect`: a container as the Docker Engine API shows it
//! (GET /containers/{id}/json), so scripts written for docker read it.

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::record::{Container, Status};

impl Engine {
    /// The docker-shaped inspect object of a container.
    pub fn inspect(&self, c: &Container) -> Value {
        let argv = c.argv();
        let running = c.state.status == Status::Running;
        let paused = self.is_paused(c);
        let mounts = self.mount_points(c);
        let dir = self.container_dir(&c.id);
        let mut state = json!({
            "Status": if paused { "paused" } else { c.state.status_text() },
            "Running": running,
            "Paused": paused,
            "Restarting": c.state.restarting,
            "OOMKilled": c.state.oom_killed,
            "Dead": false,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "Error": c.state.error,
            "StartedAt": if c.state.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { &c.state.started_at },
            "FinishedAt": if c.state.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { &c.state.finished_at },
            "MonitorPid": c.state.monitor_pid,
        });
        if let Some(h) = self.health(c) {
            state["Health"] = serde_json::to_value(h).expect("health serialises");
        }
        json!({
            "Id": c.id,
            "Created": c.created,
            "Path": argv.first().cloned().unwrap_or_default(),
            "Args": argv.iter().skip(1).collect::<Vec<_>>(),
            "State": state,
            "Image": c.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            // docker: no path with the none driver.
            "LogPath": if c.host.log_config.readable() { self.log_path(&c.id) } else { Default::default() },
            "Name": format!("/{}", c.name),
            "RestartCount": c.state.restart_count,
            "Driver": "overlay",
            "Platform": "linux",
            // docker's keys for SELinux and AppArmor labels (none are set)
            // and running execs (null when none, as docker).
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": c.host,
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "MergedDir": dir.join("rootfs"),
                    "UpperDir": dir.join("upper"),
                    "WorkDir": dir.join("work"),
                }
            },
            "Mounts": mounts,
            "Config": c.config,
            "NetworkSettings": self.network_settings(c),
        })
    }

    /// docker's NetworkSettings: addresses while running, published ports.
    fn network_settings(&self, c: &Container) -> Value {
        let st = if c.state.status == Status::Running {
            self.network_state(&c.id)
        } else {
            None
        };
        let mut networks = serde_json::Map::new();
        // docker lists host and none as networks, and none for container:ID.
        if crate::network::is_special_mode(&c.host.network_mode)
            && !c.host.network_mode.starts_with("container:")
        {
            networks.insert(c.host.network_mode.clone(), json!({}));
        }
        for a in &c.host.networks {
            let live = st
                .as_ref()
                .and_then(|s| s.attached.iter().find(|x| x.network == a.network));
            let e = live.map(|l| l.endpoint.clone()).unwrap_or_default();
            networks.insert(
                a.network.clone(),
                json!({
                    "IPAMConfig": a.ipv4_address.map(|ip| json!({"IPv4Address": ip.to_string()})),
                    "Aliases": a.aliases,
                    "NetworkID": live.map(|l| l.network_id.clone()).unwrap_or_default(),
                    "Gateway": e.gateway,
                    "IPAddress": e.ip,
                    "IPPrefixLen": e.prefix_len,
                    "MacAddress": e.mac,
                }),
            );
        }
        let mut ports = serde_json::Map::new();
        for k in c.config.exposed_ports.iter() {
            let k = if k.contains('/') {
                k.clone()
            } else {
                format!("{k}/tcp")
            };
            ports.insert(k, Value::Null);
        }
        let published = st
            .as_ref()
            .map(|s| s.ports.clone())
            .unwrap_or_else(|| c.host.port_bindings.clone());
        for p in &published {
            let entry = ports
                .entry(p.key())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            entry.as_array_mut().expect("array").push(json!({
                "HostIp": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip },
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
            }));
        }
        let first = st.as_ref().and_then(|s| s.attached.first());
        json!({
            "SandboxKey": st.as_ref().map(|s| s.netns.clone()).unwrap_or_default(),
            "Ports": ports,
            "IPAddress": first.map(|a| a.endpoint.ip.clone()).unwrap_or_default(),
            "IPPrefixLen": first.map(|a| a.endpoint.prefix_len).unwrap_or_default(),
            "Gateway": first.map(|a| a.endpoint.gateway.clone()).unwrap_or_default(),
            "MacAddress": first.map(|a| a.endpoint.mac.clone()).unwrap_or_default(),
            "Networks": networks,
        })
    }

    /// Published ports of a running container (`port`): "80/tcp" → host address.
    pub fn ports(&self, c: &Container) -> Vec<crate::network::ports::PortBinding> {
        if c.state.status != Status::Running {
            return Vec::new();
        }
        self.network_state(&c.id)
            .map(|s| s.ports)
            .unwrap_or_default()
    }
}
