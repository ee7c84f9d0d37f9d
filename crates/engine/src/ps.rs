//! `ps`: docker's container filters (`--filter KEY=VALUE`) and the STATUS
//! and CREATED texts of a listing, shared by the CLI and the Engine API.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::{Container, Status};

/// `ps --filter KEY=VALUE`.
pub enum PsFilter {
    Id(String),
    /// docker's name filter is a regular expression (unanchored).
    Name(regex::Regex),
    Label(String, Option<String>),
    Status(String),
    Exited(i32),
    Ancestor(String),
    Network(String),
    Health(String),
    Volume(String),
    /// Created before (`before`) or after (`since`) this container: its creation time.
    Before(String),
    Since(String),
    /// A published (`publish`) or exposed (`expose`) container port range
    /// and protocol, as docker's `publish=8000-8080/tcp`.
    Publish(PortSpec),
    Expose(PortSpec),
}

/// `80`, `80/udp` or `8000-8080/tcp` (the protocol defaults to tcp).
#[derive(Debug)]
pub struct PortSpec {
    low: u16,
    high: u16,
    protocol: String,
}

impl PortSpec {
    fn parse(filter: &str, v: &str) -> Result<PortSpec> {
        let bad = || {
            Error::Invalid(format!(
                "invalid filter {filter:?}: expected PORT[-PORT][/PROTOCOL]"
            ))
        };
        let (ports, protocol) = v.split_once('/').unwrap_or((v, "tcp"));
        if !["tcp", "udp", "sctp"].contains(&protocol) {
            return Err(bad());
        }
        let (low, high) = ports.split_once('-').unwrap_or((ports, ports));
        let (low, high): (u16, u16) = (
            low.parse().map_err(|_| bad())?,
            high.parse().map_err(|_| bad())?,
        );
        if low > high {
            return Err(bad());
        }
        Ok(PortSpec {
            low,
            high,
            protocol: protocol.to_string(),
        })
    }

    /// Whether "80/tcp" (a port key) is in the range.
    fn matches(&self, key: &str) -> bool {
        let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
        protocol == self.protocol
            && port
                .parse::<u16>()
                .is_ok_and(|p| (self.low..=self.high).contains(&p))
    }
}

impl PsFilter {
    pub fn parse(f: &str) -> Result<PsFilter> {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| Error::Invalid(format!("invalid filter {f:?}: expected KEY=VALUE")))?;
        Ok(match k {
            "id" => PsFilter::Id(v.into()),
            "name" => PsFilter::Name(regex::Regex::new(v).map_err(|_| {
                Error::Invalid(format!("invalid filter {f:?}: the name is not a regular expression"))
            })?),
            "label" => match v.split_once('=') {
                Some((a, b)) => PsFilter::Label(a.into(), Some(b.into())),
                None => PsFilter::Label(v.into(), None),
            },
            "status" => {
                if ![
                    "created",
                    "restarting",
                    "running",
                    "removing",
                    "paused",
                    "exited",
                    "dead",
                ]
                .contains(&v)
                {
                    return Err(Error::Invalid(format!("invalid filter {f:?}: unknown status {v:?}")));
                }
                PsFilter::Status(v.into())
            }
            "exited" => PsFilter::Exited(
                v.parse()
                    .map_err(|_| Error::Invalid(format!("invalid filter {f:?}: not an exit code")))?,
            ),
            "ancestor" => PsFilter::Ancestor(v.into()),
            "network" => PsFilter::Network(v.into()),
            "health" => {
                if !["starting", "healthy", "unhealthy", "none"].contains(&v) {
                    return Err(Error::Invalid(format!(
                        "invalid filter {f:?}: health is starting, healthy, unhealthy or none"
                    )));
                }
                PsFilter::Health(v.into())
            }
            "volume" => PsFilter::Volume(v.into()),
            "before" => PsFilter::Before(v.into()),
            "since" => PsFilter::Since(v.into()),
            "publish" => PsFilter::Publish(PortSpec::parse(f, v)?),
            "expose" => PsFilter::Expose(PortSpec::parse(f, v)?),
            other => return Err(Error::Invalid(format!(
                "invalid filter {other:?}: use id, name, label, status, exited, ancestor, network, health, volume, before, since, publish or expose"
            ))),
        })
    }

    /// Whether the filter looks at stopped containers too (as docker's
    /// status and exited filters do, without `--all`).
    pub fn shows_stopped(&self) -> bool {
        matches!(self, PsFilter::Status(_) | PsFilter::Exited(_))
    }

    /// Filters naming another container (before/since) take its creation time,
    /// so a missing container is one clear error rather than an empty list.
    pub fn resolve(self, engine: &Engine) -> Result<PsFilter> {
        Ok(match self {
            PsFilter::Before(r) => PsFilter::Before(engine.find(&r)?.created),
            PsFilter::Since(r) => PsFilter::Since(engine.find(&r)?.created),
            f => f,
        })
    }

    pub fn matches(&self, engine: &Engine, c: &Container) -> bool {
        match self {
            PsFilter::Id(p) => c.id.starts_with(p.as_str()),
            // docker matches the name with and without its leading "/".
            PsFilter::Name(re) => re.is_match(&c.name) || re.is_match(&format!("/{}", c.name)),
            PsFilter::Label(k, v) => match (c.config.labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
            PsFilter::Status(s) => {
                let now = if engine.is_paused(c) {
                    "paused"
                } else {
                    c.state.status_text()
                };
                now == s
            }
            PsFilter::Exited(code) => {
                c.state.status == Status::Exited && c.state.exit_code == *code
            }
            PsFilter::Ancestor(img) => {
                &c.image == img
                    || c.image_id == *img
                    || c.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(img.trim_start_matches("sha256:"))
            }
            PsFilter::Network(n) => {
                c.host.network_mode == *n || c.host.networks.iter().any(|a| &a.network == n)
            }
            PsFilter::Health(want) => {
                let has_check = c
                    .config
                    .healthcheck
                    .as_ref()
                    .is_some_and(|h| h.argv().is_some());
                let now = match engine.health(c) {
                    Some(h) => h.status,
                    None if has_check => "starting".into(),
                    None => "none".into(),
                };
                &now == want
            }
            // A volume by name (or a bind by its source) or a mount destination.
            PsFilter::Volume(v) => {
                c.host
                    .binds
                    .iter()
                    .any(|b| &b.source == v || &b.destination == v)
                    || c.host
                        .mounts
                        .iter()
                        .any(|m| &m.source == v || &m.target == v)
            }
            // RFC 3339 times of one clock compare as text.
            PsFilter::Before(t) => c.created < *t,
            PsFilter::Since(t) => c.created > *t,
            PsFilter::Publish(spec) => published_keys(engine, c).iter().any(|k| spec.matches(k)),
            // Published ports are exposed too (as docker's ExposedPorts).
            PsFilter::Expose(spec) => c
                .config
                .exposed_ports
                .iter()
                .cloned()
                .chain(published_keys(engine, c))
                .any(|k| spec.matches(&k)),
        }
    }
}

/// The "80/tcp" keys of a container's published ports: those asked for
/// (`-p`) and, running, those given (`-P` too).
pub fn published_keys(engine: &Engine, c: &Container) -> Vec<String> {
    c.host
        .port_bindings
        .iter()
        .chain(engine.ports(c).iter())
        .map(|p| p.key())
        .collect()
}

pub fn ago(t: &str) -> String {
    match crate::clock::unix(t) {
        Some(s) => format!("{} ago", human(crate::clock::unix_now() - s)),
        None => String::new(),
    }
}

/// Docker's human durations: "3 seconds", "About a minute", "2 hours".
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// docker's STATUS column: "Up 5 minutes (healthy)", "Restarting (3) 2
/// seconds ago", "Exited (0) 1 hour ago".
pub fn status_text(engine: &Engine, c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Running if c.state.restarting => {
            format!(
                "Restarting ({}) {}",
                c.state.exit_code,
                ago(&c.state.finished_at)
            )
        }
        Status::Running => {
            let up = match crate::clock::unix(&c.state.started_at) {
                Some(s) => format!("Up {}", human(crate::clock::unix_now() - s)),
                None => "Up".into(),
            };
            match engine.health(c).map(|h| h.status) {
                Some(h) if h == "starting" => format!("{up} (health: starting)"),
                Some(h) => format!("{up} ({h})"),
                None => up,
            }
        }
        Status::Exited => match crate::clock::unix(&c.state.finished_at) {
            Some(_) => format!(
                "Exited ({}) {}",
                c.state.exit_code,
                ago(&c.state.finished_at)
            ),
            None => format!("Exited ({})", c.state.exit_code),
        },
    }
}
