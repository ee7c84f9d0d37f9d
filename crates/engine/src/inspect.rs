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
        let mounts = self.mount_points(c);
        let dir = self.container_dir(&c.id);
        json!({
            "Id": c.id,
            "Created": c.created,
            "Path": argv.first().cloned().unwrap_or_default(),
            "Args": argv.iter().skip(1).collect::<Vec<_>>(),
            "State": {
                "Status": c.state.status.as_str(),
                "Running": running,
                "Paused": false,
                "Restarting": false,
                "OOMKilled": false,
                "Dead": false,
                "Pid": c.state.pid,
                "ExitCode": c.state.exit_code,
                "Error": c.state.error,
                "StartedAt": if c.state.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { &c.state.started_at },
                "FinishedAt": if c.state.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { &c.state.finished_at },
                "MonitorPid": c.state.monitor_pid,
            },
            "Image": c.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": self.log_path(&c.id),
            "Name": format!("/{}", c.name),
            "Driver": "overlay",
            "Platform": "linux",
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
            "NetworkSettings": { "Networks": { c.host.network_mode.clone(): {} } },
        })
    }
}
