use super::Result;
use crate::Cli;
use hako_runtime::error::{Context, Error};
use oci_spec::runtime::{LinuxPids, LinuxResources};
use std::io::Read;
use std::path::PathBuf;

/// Change a container's resource limits
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hako-runtime update --memory 256M --pids-limit 100 demo\n  hako-runtime update -r resources.json demo   # linux.resources JSON, '-' for stdin"
)]
pub struct Args {
    /// linux.resources JSON file ('-' reads stdin)
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub kernel_memory: Option<String>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

/// "512M", "1g", "1024" or "-1" (unlimited) to bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    num.parse::<i64>()
        .map(|n| n * mult)
        .map_err(|_| Error::Spec(format!("invalid size {s:?}")))
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let mut res: LinuxResources = match &a.resources {
        Some(p) => {
            let mut data = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut data)
                    .ctx(|| "reading resources from stdin")?;
            } else {
                data = std::fs::read(p).ctx(|| format!("reading {}", p.display()))?;
            }
            let de = &mut serde_json::Deserializer::from_slice(&data);
            serde_path_to_error::deserialize(de)
                .map_err(|e| Error::Spec(format!("resources: {}: {}", e.path(), e.inner())))?
        }
        None => LinuxResources::default(),
    };
    let opt = |s: &Option<String>| s.as_deref().map(parse_bytes).transpose();
    let (limit, swap, reservation, kernel) = (
        opt(&a.memory)?,
        opt(&a.memory_swap)?,
        opt(&a.memory_reservation)?,
        opt(&a.kernel_memory)?,
    );
    if limit.is_some() || swap.is_some() || reservation.is_some() || kernel.is_some() {
        let mut m = (*res.memory()).unwrap_or_default();
        if limit.is_some() {
            m.set_limit(limit);
        }
        if swap.is_some() {
            m.set_swap(swap);
        }
        if reservation.is_some() {
            m.set_reservation(reservation);
        }
        if kernel.is_some() {
            m.set_kernel(kernel);
        }
        res.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = res.cpu().clone().unwrap_or_default();
        if a.cpu_shares.is_some() {
            c.set_shares(a.cpu_shares);
        }
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_rt_period.is_some() {
            c.set_realtime_period(a.cpu_rt_period);
        }
        if a.cpu_rt_runtime.is_some() {
            c.set_realtime_runtime(a.cpu_rt_runtime);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            c.set_mems(a.cpuset_mems.clone());
        }
        res.set_cpu(Some(c));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    hako_runtime::container::update(&cli.root, &a.id, &res)?;
    Ok(0)
}
