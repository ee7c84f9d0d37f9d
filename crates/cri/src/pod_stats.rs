//! PodSandboxStats / ListPodSandboxStats: the pod's containers' stats,
//! their sums (with the infra process's own), the pod's process count, and
//! its interfaces' counters read from the sandbox's network namespace.

use k8s_cri::v1 as cri;

use crate::error::{Error, Result};
use crate::sandbox;
use crate::server::State;

fn u(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

fn value(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map_or(0, |x| x.value)
}

/// Counters of every interface but loopback, from /proc/PID/net/dev (the
/// namespace the process lives in).
fn interfaces(pid: i32) -> Vec<cri::NetworkInterfaceUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            (name != "lo" && f.len() >= 11).then(|| cri::NetworkInterfaceUsage {
                name: name.to_string(),
                rx_bytes: u(f[0]),
                rx_errors: u(f[2]),
                tx_bytes: u(f[8]),
                tx_errors: u(f[10]),
            })
        })
        .collect()
}

fn stats_of(
    engine: &hako_engine::Engine,
    sb: &hako_engine::Container,
) -> Result<cri::PodSandboxStats> {
    let config = sandbox::stored_config(sb);
    let now = crate::container::now_nanos();
    let members = sandbox::members(engine, &sb.id)?;
    let containers: Vec<cri::ContainerStats> = members
        .iter()
        .map(|c| crate::container::stats_of(engine, c))
        .collect();
    let infra = crate::container::stats_of(engine, sb);
    let sum = |f: &dyn Fn(&cri::ContainerStats) -> u64| -> u64 {
        containers
            .iter()
            .chain(std::iter::once(&infra))
            .map(f)
            .sum()
    };
    let cpu = sum(&|s| {
        s.cpu
            .as_ref()
            .map_or(0, |c| value(&c.usage_core_nano_seconds))
    });
    let usage = sum(&|s| s.memory.as_ref().map_or(0, |m| value(&m.usage_bytes)));
    let working = sum(&|s| s.memory.as_ref().map_or(0, |m| value(&m.working_set_bytes)));
    let processes: u64 = members
        .iter()
        .chain(std::iter::once(sb))
        .filter(|c| c.state.status == hako_engine::Status::Running)
        .map(|c| {
            engine
                .runtime_of(c)
                .pids(&c.id)
                .map_or(0, |p| p.len() as u64)
        })
        .sum();
    let running = sb.state.status == hako_engine::Status::Running;
    let ifaces = if running && sb.host.network_mode != "host" {
        interfaces(sb.state.pid)
    } else {
        Vec::new()
    };
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: sb.id.clone(),
            metadata: config.metadata,
            labels: config.labels,
            annotations: config.annotations,
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: u(cpu),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: u(working),
                usage_bytes: u(usage),
                ..Default::default()
            }),
            network: Some(cri::NetworkUsage {
                timestamp: now,
                default_interface: ifaces.iter().find(|i| i.name == "eth0").cloned(),
                interfaces: ifaces,
            }),
            process: Some(cri::ProcessUsage {
                timestamp: now,
                process_count: u(processes),
            }),
            containers,
        }),
        windows: None,
    })
}

/// PodSandboxStats.
pub(crate) fn pod_stats(state: &State, id: &str) -> Result<cri::PodSandboxStats> {
    let handles = state.open()?;
    let engine = handles.engine();
    let sb =
        sandbox::find(engine, id)?.ok_or_else(|| Error::NotFound(format!("pod sandbox {id}")))?;
    stats_of(engine, &sb)
}

/// ListPodSandboxStats with its filter (id prefix, labels).
pub(crate) fn list(
    state: &State,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Result<Vec<cri::PodSandboxStats>> {
    let f = filter.unwrap_or_default();
    let pods = sandbox::list(
        state,
        Some(cri::PodSandboxFilter {
            id: f.id,
            label_selector: f.label_selector,
            state: None,
        }),
    )?;
    let handles = state.open()?;
    let engine = handles.engine();
    let mut out = Vec::new();
    for p in pods {
        if let Some(sb) = sandbox::find(engine, &p.id)? {
            out.push(stats_of(engine, &sb)?);
        }
    }
    Ok(out)
}
