//! `hako events`: container, image, network and volume events, as `docker
//! events` prints them; follows new ones until interrupted (or `--until`).

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use hako_engine::clock;
use hako_engine::events::{Event, EventLog, Filter};

use crate::Global;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako events\n  hako events --since 10m --until 0s \
    --filter container=web\n  hako events --filter event=die --filter event=health_status \
    --format json\n  hako events --format '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}'"
)]
pub struct EventsArgs {
    /// Show events from this time: RFC 3339, unix seconds or a duration ago (10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (same forms; "0s" is now): without it, new events
    /// are followed until interrupted.
    #[arg(long)]
    pub until: Option<String>,
    /// container=, event=, type=, image=, label=KEY[=VALUE], network=, volume=.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// "json" for one object per line, or a Go template.
    #[arg(long)]
    pub format: Option<String>,
}

pub fn run(g: &Global, a: EventsArgs) -> Result<()> {
    let now = clock::unix_nanos_now();
    let time = |flag: &str, s: &Option<String>| -> Result<Option<i128>> {
        match s {
            None => Ok(None),
            Some(s) => match clock::parse_time_arg(s, now) {
                Some(t) => Ok(Some(t)),
                None => bail!(
                    "invalid --{flag} {s:?}: expected an RFC 3339 time, unix seconds or a duration such as 10m"
                ),
            },
        }
    };
    let since = time("since", &a.since)?;
    let until = time("until", &a.until)?;
    let filter = Filter::parse(&a.filter)?;
    let log = EventLog::for_root(&g.root);
    let mut out = std::io::stdout().lock();
    // Parsed once; "table" prints its header before the first event.
    let template = match a.format.as_deref() {
        None | Some("json") => None,
        Some(t) => Some(crate::template::Template::parse(
            t.strip_prefix("table").map_or(t, str::trim_start),
        )?),
    };
    if let Some(row) = a.format.as_deref().and_then(|f| f.strip_prefix("table")) {
        crate::template::print_list(
            &mut out,
            Some(&format!("table {}", row.trim_start())),
            "",
            &[],
            &[],
        )?;
    }
    let mut print = |e: &Event| -> Result<()> {
        let line = match (&template, a.format.as_deref()) {
            (Some(t), _) => t.render(&e.to_json())?,
            (None, Some("json")) => e.to_json().to_string(),
            (None, _) => e.to_line(),
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    };
    if let (Some(since), Some(until)) = (since, until.filter(|&u| u <= now)) {
        for e in log.past(since, Some(until), &filter)? {
            print(&e)?;
        }
        return Ok(());
    }
    let mut failed = None;
    log.follow(&filter, since, until, |e| match print(e) {
        Ok(()) => true,
        Err(err) => {
            failed = Some(err);
            false
        }
    })?;
    match failed {
        // A closed pipe (`hako events | head`) ends quietly.
        Some(e) if !is_broken_pipe(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Record an image event (`pull`, `tag`, …): `id` is what docker puts in
/// the Actor (a reference for pull/push, the image id otherwise).
pub fn image_event(g: &Global, action: &str, id: &str, name: &str) {
    EventLog::for_root(&g.root).emit(&Event::new("image", action, id).attr("name", name));
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
