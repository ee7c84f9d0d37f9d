use super::Result;
use crate::Cli;
use std::time::Duration;

/// Print resource usage of a container as JSON events
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hako-runtime events --stats demo          # once\n  hako-runtime events --interval 1s demo    # every second until the container stops"
)]
pub struct Args {
    /// Print one stats event and exit
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats events (e.g. 5s, 500ms)
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || hako_runtime::error::Error::Spec(format!("invalid interval {s:?}"));
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    if let Some(sec) = s.strip_suffix('s') {
        return sec
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|_| bad());
    }
    if let Some(m) = s.strip_suffix('m') {
        return m
            .parse::<u64>()
            .map(|m| Duration::from_secs(m * 60))
            .map_err(|_| bad());
    }
    s.parse::<u64>().map(Duration::from_secs).map_err(|_| bad())
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let interval = parse_duration(&a.interval)?;
    let mut ooms = hako_runtime::container::oom_kills(&cli.root, &a.id).unwrap_or(0);
    loop {
        let stats = hako_runtime::container::stats(&cli.root, &a.id)?;
        let ev = serde_json::json!({"type": "stats", "id": a.id, "data": stats});
        println!("{ev}");
        if a.stats {
            return Ok(0);
        }
        // Like runc, an "oom" event each time the OOM killer struck since the last look.
        let now = hako_runtime::container::oom_kills(&cli.root, &a.id).unwrap_or(ooms);
        for _ in ooms..now {
            println!("{}", serde_json::json!({"type": "oom", "id": a.id}));
        }
        ooms = now;
        std::thread::sleep(interval);
    }
}
