//! `events`: what happened to containers, images, networks and volumes, in
//! the Docker Engine API's event shape. hako has no daemon to hold events in
//! memory, so, like podman's file event logger, every command appends a JSON
//! line to a log under the run root (cleared by a reboot, as docker's are by
//! a daemon restart); the monitor appends the events only it sees (start,
//! die, health_status, oom). Readers filter the log and follow it.
//!
//! Appends are single `write(2)`s with O_APPEND, so lines from concurrent
//! writers never interleave. The log is rotated past [`MAX_LOG`] bytes: the
//! old one is kept as `events.log.1`, read before the current one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::clock;
use crate::error::{Context, Error, Result};

/// Rotate the log past this size.
pub const MAX_LOG: u64 = 4 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// "container", "image", "network" or "volume".
    pub typ: String,
    /// "start", "die", "health_status: healthy", "pull", …
    pub action: String,
    /// The object's id (an image's reference for pull/push/tag, as docker).
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub time_nano: i128,
}

impl Event {
    pub fn new(typ: &str, action: &str, id: &str) -> Event {
        Event {
            typ: typ.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            attributes: BTreeMap::new(),
            time_nano: clock::unix_nanos_now(),
        }
    }

    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Event {
        self.attributes.insert(k.to_string(), v.into());
        self
    }

    /// As the Engine API sends it (GET /events), `status`/`id`/`from` included
    /// for old clients as docker does for containers.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.typ,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": (self.time_nano / 1_000_000_000) as i64,
            "timeNano": self.time_nano as i64,
        });
        if self.typ == "container" || self.typ == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(img) = self.attributes.get("image") {
                v["from"] = json!(img);
            }
        }
        v
    }

    /// A line of the log (monitor lines may lack the compatibility fields).
    pub fn from_json(v: &Value) -> Option<Event> {
        let actor = &v["Actor"];
        Some(Event {
            typ: v["Type"].as_str()?.to_string(),
            action: v["Action"].as_str()?.to_string(),
            id: actor["ID"].as_str().unwrap_or_default().to_string(),
            attributes: actor["Attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            time_nano: v["timeNano"].as_i64()? as i128,
        })
    }

    /// docker's text form: `TIME TYPE ACTION ID (k=v, …)`.
    pub fn to_line(&self) -> String {
        let secs = (self.time_nano / 1_000_000_000) as i64;
        let nanos = (self.time_nano % 1_000_000_000) as i64;
        let t = hako_image::images::format_rfc3339(secs);
        let attrs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{}.{nanos:09}Z {} {} {} ({})",
            t.trim_end_matches('Z'),
            self.typ,
            self.action,
            self.id,
            attrs.join(", ")
        )
    }
}

/// `--filter KEY=VALUE` of `events`; values of one key are alternatives,
/// different keys must all match (docker's rule).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filter {
    pub fn parse(filters: &[String]) -> Result<Filter> {
        let mut f = Filter::default();
        for s in filters {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                Error::Invalid(format!("invalid filter {s:?}: expected KEY=VALUE"))
            })?;
            let k = match k {
                "status" => "event",
                k => k,
            };
            if ![
                "container",
                "event",
                "type",
                "image",
                "label",
                "network",
                "volume",
                "scope",
            ]
            .contains(&k)
            {
                return Err(Error::Invalid(format!(
                    "invalid filter {s:?}: {k} is not one of container, event, type, image, \
                     label, network, volume, scope"
                )));
            }
            f.by_key
                .entry(k.to_string())
                .or_default()
                .push(v.to_string());
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Event) -> bool {
        let name = e.attributes.get("name").map(String::as_str);
        let object = |typ: &str, v: &str| {
            e.typ == typ && (e.id == v || (v.len() >= 3 && e.id.starts_with(v)) || name == Some(v))
        };
        self.by_key.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                // "health_status" matches "health_status: healthy".
                "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "type" => e.typ == *v,
                "scope" => v == "local",
                "container" => {
                    object("container", v)
                        || e.attributes
                            .get("container")
                            .is_some_and(|c| c == v || (v.len() >= 3 && c.starts_with(v.as_str())))
                }
                "image" => {
                    object("image", v)
                        || e.attributes.get("image").is_some_and(|i| {
                            i == v || i.split_once(':').map(|(r, _)| r) == Some(v.as_str())
                        })
                }
                "network" => object("network", v),
                "volume" => object("volume", v),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.attributes.get(lk).is_some_and(|x| x == lv),
                    None => e.attributes.contains_key(v.as_str()),
                },
                _ => false,
            })
        })
    }
}

/// The event log of one run root.
#[derive(Debug, Clone)]
pub struct EventLog {
    dir: PathBuf,
}

impl EventLog {
    /// The log under `run_root` (see [`crate::Engine::events`]).
    pub fn at(run_root: &Path) -> EventLog {
        EventLog {
            dir: run_root.join("events"),
        }
    }

    /// The log of the engine root `root` (for commands that open no engine).
    pub fn for_root(root: &Path) -> EventLog {
        EventLog::at(&crate::engine::run_root_for(root))
    }

    /// The file every writer appends to (handed to the monitor).
    pub fn path(&self) -> PathBuf {
        self.dir.join("events.log")
    }

    /// Make the log's directory (before handing the path to a monitor).
    pub fn prepare(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))
    }

    fn old_path(&self) -> PathBuf {
        self.dir.join("events.log.1")
    }

    /// Append an event. Failing to record one must not fail the operation
    /// it reports, so errors are logged, not returned.
    pub fn emit(&self, e: &Event) {
        if let Err(err) = self.try_emit(e) {
            tracing::warn!("recording event {} {} {}: {err}", e.typ, e.action, e.id);
        }
    }

    fn try_emit(&self, e: &Event) -> Result<()> {
        fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
        let path = self.path();
        if fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
            self.rotate()?;
        }
        let mut line = serde_json::to_vec(&e.to_json()).expect("an event serialises");
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        f.write_all(&line)
            .ctx(|| format!("appending to {}", path.display()))
    }

    /// Move the full log aside, once: whoever holds the lock and still sees
    /// it too big renames it.
    fn rotate(&self) -> Result<()> {
        let lock_path = self.dir.join(".lock");
        let f = File::create(&lock_path).ctx(|| format!("creating {}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking {}", lock_path.display()))?;
        let path = self.path();
        if fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
            fs::rename(&path, self.old_path()).ctx(|| format!("rotating {}", path.display()))?;
        }
        Ok(())
    }

    /// Events recorded from `since` (unix ns) up to `until`, oldest first.
    pub fn past(&self, since: i128, until: Option<i128>, filter: &Filter) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for p in [self.old_path(), self.path()] {
            let f = match File::open(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("opening {}", p.display())),
            };
            for line in BufReader::new(f).lines() {
                let line = line.ctx(|| format!("reading {}", p.display()))?;
                if let Some(e) = parse_line(&line) {
                    if e.time_nano >= since
                        && until.is_none_or(|u| e.time_nano <= u)
                        && filter.matches(&e)
                    {
                        out.push(e);
                    }
                }
            }
        }
        // Lines from different writers can be a little out of order.
        out.sort_by_key(|e| e.time_nano);
        Ok(out)
    }

    /// Hand `each` every event that passes `filter`, those recorded from
    /// `since` (unix ns) if given, then every one appended from now on, until
    /// `until` (unix ns) if given, or until `each` returns false. One pass
    /// over the file, so nothing falls between the recorded and the new.
    pub fn follow(
        &self,
        filter: &Filter,
        since: Option<i128>,
        until: Option<i128>,
        each: impl FnMut(&Event) -> bool,
    ) -> Result<()> {
        self.follow_while(filter, since, until, each, || true)
    }

    /// [`EventLog::follow`], also ending (within 200 ms, event or not) once
    /// `go_on` says so: a server's follower whose client left.
    pub fn follow_while(
        &self,
        filter: &Filter,
        since: Option<i128>,
        until: Option<i128>,
        mut each: impl FnMut(&Event) -> bool,
        mut go_on: impl FnMut() -> bool,
    ) -> Result<()> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
        let path = self.path();
        // Start at the current end: only new events. Taken before the watch
        // exists, so a watcher seen in /proc has its starting point.
        let mut cur = File::open(&path).ok();
        let mut offset = match since {
            Some(_) => 0,
            None => cur
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len()),
        };
        let since = since.unwrap_or(i128::MIN);
        if since > i128::MIN {
            // The rotated log first (its readers finished with it).
            let old = File::open(self.old_path()).ok();
            for line in old.into_iter().flat_map(|f| BufReader::new(f).lines()) {
                let Ok(line) = line else { break };
                if let Some(e) = parse_line(&line) {
                    if e.time_nano >= since
                        && until.is_none_or(|u| e.time_nano <= u)
                        && filter.matches(&e)
                        && !each(&e)
                    {
                        return Ok(());
                    }
                }
            }
        }
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| "watching the event log".to_string())?;
        inotify
            .add_watch(
                &self.dir,
                AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_FROM,
            )
            .ctx(|| format!("watching {}", self.dir.display()))?;
        let mut partial = String::new();
        loop {
            if let Some(f) = &mut cur {
                f.seek(SeekFrom::Start(offset))
                    .ctx(|| format!("reading {}", path.display()))?;
                let mut r = BufReader::new(&mut *f);
                loop {
                    let mut line = String::new();
                    let n = r
                        .read_line(&mut line)
                        .ctx(|| format!("reading {}", path.display()))?;
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    if !line.ends_with('\n') {
                        partial.push_str(&line);
                        continue;
                    }
                    let whole = std::mem::take(&mut partial) + &line;
                    if let Some(e) = parse_line(&whole) {
                        if until.is_some_and(|u| e.time_nano > u) {
                            return Ok(());
                        }
                        if e.time_nano >= since && filter.matches(&e) && !each(&e) {
                            return Ok(());
                        }
                    }
                }
            }
            // Rotated (or made for the first event): the file we drained is
            // not the log any more; go on with the new one from its start.
            let now = fs::metadata(&path).ok().map(|m| m.ino());
            let held = cur
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            if now.is_some() && now != held {
                cur = File::open(&path).ok();
                offset = 0;
                partial.clear();
                continue;
            }
            if until.is_some_and(|u| clock::unix_nanos_now() > u) || !go_on() {
                return Ok(());
            }
            // Wake on a change, or every 200 ms to check `until` and `go_on`.
            let fd = std::os::fd::AsFd::as_fd(&inotify);
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
            while let Ok(evs) = inotify.read_events() {
                if evs.is_empty() {
                    break;
                }
            }
        }
    }
}

fn parse_line(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line.trim_end()).ok()?;
    Event::from_json(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hako-events-test-{}-{}",
            std::process::id(),
            clock::unix_nanos_now()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn emitted_events_read_back_filtered_and_in_docker_shape() {
        let d = dir();
        let log = EventLog::at(&d);
        let mut a = Event::new("container", "start", "abc123")
            .attr("name", "web")
            .attr("image", "busybox")
            .attr("tier", "front");
        a.time_nano = 1_700_000_000_123_456_789;
        let mut b = Event::new("container", "health_status: healthy", "def456").attr("name", "db");
        b.time_nano = a.time_nano + 1;
        let mut c = Event::new("network", "create", "n1id").attr("name", "back");
        c.time_nano = a.time_nano + 2;
        for e in [&a, &b, &c] {
            log.emit(e);
        }
        let all = log.past(0, None, &Filter::default()).unwrap();
        assert_eq!(all, vec![a.clone(), b.clone(), c.clone()]);
        let f = |s: &[&str]| {
            Filter::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(
            log.past(0, None, &f(&["container=web"])).unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            log.past(0, None, &f(&["container=abc"])).unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            log.past(0, None, &f(&["event=health_status"])).unwrap(),
            vec![b.clone()]
        );
        assert_eq!(
            log.past(0, None, &f(&["type=network"])).unwrap(),
            vec![c.clone()]
        );
        assert_eq!(
            log.past(0, None, &f(&["label=tier=front"])).unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            log.past(0, None, &f(&["container=web", "container=db"]))
                .unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert!(log
            .past(0, None, &f(&["container=web", "type=network"]))
            .unwrap()
            .is_empty());
        assert_eq!(
            log.past(a.time_nano + 1, Some(a.time_nano + 1), &Filter::default())
                .unwrap(),
            vec![b.clone()]
        );
        // Following from a time starts with what was recorded since then.
        let mut seen = Vec::new();
        log.follow(&Filter::default(), Some(a.time_nano + 1), None, |e| {
            seen.push(e.clone());
            seen.len() < 2
        })
        .unwrap();
        assert_eq!(seen, vec![b.clone(), c.clone()]);
        let v = a.to_json();
        assert_eq!(v["status"], "start");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(v["time"], 1_700_000_000);
        assert_eq!(
            a.to_line(),
            "2023-11-14T22:13:20.123456789Z container start abc123 (image=busybox, name=web, tier=front)"
        );
        assert!(Filter::parse(&["bogus=1".into()])
            .unwrap_err()
            .to_string()
            .contains("bogus"));
        assert!(Filter::parse(&["noequals".into()])
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn following_sees_new_events_across_a_rotation() {
        let d = dir();
        let log = EventLog::at(&d);
        log.emit(&Event::new("volume", "create", "old"));
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                log.emit(&Event::new("volume", "create", "v1"));
                // Make the log look full so the next emit rotates it.
                let f = OpenOptions::new().append(true).open(log.path()).unwrap();
                f.set_len(MAX_LOG + 1).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                log.emit(&Event::new("volume", "create", "v2"));
            })
        };
        let mut seen = Vec::new();
        log.follow(&Filter::default(), None, None, |e| {
            seen.push(e.id.clone());
            seen.len() < 2
        })
        .unwrap();
        writer.join().unwrap();
        assert_eq!(seen, ["v1", "v2"]);
        assert!(log.old_path().exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
