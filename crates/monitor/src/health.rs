//! Health checks as docker runs them: every interval the check command is
//! run in the container (`runtime exec`), asynchronously so the log keeps
//! flowing; exit 0 is healthy, anything else (or running past the timeout)
//! a failure. `retries` failures in a row make the container unhealthy;
//! failures during the start period do not count while it is still
//! starting. The last five results are kept. The state is written after
//! every check as docker's `State.Health` JSON for the engine to read.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::args::{Args, HealthArgs};
use crate::clock;
use crate::files;
use crate::jsonlog::escape_into;

/// Results kept, and output bytes kept per result (docker's limits).
const KEEP: usize = 5;
const MAX_OUTPUT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

struct CheckResult {
    start: String,
    end: String,
    code: i32,
    output: String,
}

/// A check in progress.
struct Probe {
    /// The `runtime exec` process (our child).
    runtime: Pid,
    out: Option<File>,
    output: Vec<u8>,
    start: String,
    deadline: Instant,
}

pub struct Checker {
    cfg: HealthArgs,
    status: Status,
    streak: u32,
    log: VecDeque<CheckResult>,
    started: Instant,
    next: Instant,
    probe: Option<Probe>,
    /// Where a change of status is reported (`health_status: healthy`).
    events: Option<crate::events::Events>,
}

impl Checker {
    pub fn new(cfg: HealthArgs, events: Option<crate::events::Events>) -> Checker {
        let now = Instant::now();
        Checker {
            cfg,
            status: Status::Starting,
            streak: 0,
            log: VecDeque::new(),
            started: now,
            next: now,
            probe: None,
            events,
        }
    }

    /// The container (re)started: starting again, first check after an interval.
    pub fn reset(&mut self, args: &Args) {
        self.abandon(args);
        let now = Instant::now();
        self.started = now;
        self.next = now + self.gap(now);
        self.status = Status::Starting;
        self.streak = 0;
        self.write();
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn deadline(&self) -> Instant {
        match &self.probe {
            Some(p) => p.deadline,
            None => self.next,
        }
    }

    /// The running check's output pipe, to poll.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.probe.as_ref()?.out.as_ref().map(|f| f.as_fd())
    }

    /// Read what the check wrote so far.
    pub fn read_output(&mut self) {
        let Some(p) = self.probe.as_mut() else { return };
        let Some(f) = p.out.as_mut() else { return };
        let mut buf = [0u8; 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    p.out = None;
                    return;
                }
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(p.output.len());
                    p.output.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Start a check when one is due; fail one that ran past its timeout.
    pub fn tick(&mut self, args: &Args) {
        let now = Instant::now();
        if let Some(p) = &self.probe {
            if now >= p.deadline {
                let start = p.start.clone();
                self.abandon(args);
                let t = go_duration(self.cfg.timeout);
                self.record(start, -1, format!("Health check exceeded timeout ({t})"));
            }
            return;
        }
        if now >= self.next {
            if let Err(e) = self.spawn(args) {
                let t = clock::now_rfc3339_nano();
                self.record(t, -1, format!("running the health check: {e}"));
            }
        }
    }

    /// A child exited: if it is the running check, record its result.
    pub fn on_exit(&mut self, pid: Pid, code: i32) -> bool {
        if self.probe.as_ref().is_none_or(|p| p.runtime != pid) {
            return false;
        }
        self.read_output();
        let p = self.probe.take().expect("probe checked above");
        let output = String::from_utf8_lossy(&p.output).into_owned();
        self.record(p.start, code, output);
        true
    }

    /// Stop a running check without a result (the container exited, or it timed out).
    pub fn abandon(&mut self, args: &Args) {
        if let Some(p) = self.probe.take() {
            // The process in the container first: killing only the runtime
            // would leave it running there.
            if let Some(pid) = fs::read_to_string(pid_file(args))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|&p| p > 0)
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = kill(p.runtime, Signal::SIGKILL);
        }
    }

    fn spawn(&mut self, args: &Args) -> std::io::Result<()> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let _ = fcntl(r.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let w2: OwnedFd = w.try_clone()?;
        let _ = fs::remove_file(pid_file(args));
        // No --log: the runtime's own errors go to the output the user sees.
        let child = Command::new(&args.runtime)
            .arg("--root")
            .arg(&args.runtime_root)
            .arg("exec")
            .arg("--process")
            .arg(&self.cfg.process)
            .arg("--pid-file")
            .arg(pid_file(args))
            .arg(&args.id)
            .stdin(Stdio::null())
            .stdout(Stdio::from(w))
            .stderr(Stdio::from(w2))
            .spawn()?;
        // Reaped through SIGCHLD with every other child, not through `child`.
        let runtime = Pid::from_raw(child.id() as i32);
        drop(child);
        self.probe = Some(Probe {
            runtime,
            out: Some(File::from(r)),
            output: Vec::new(),
            start: clock::now_rfc3339_nano(),
            deadline: Instant::now() + self.cfg.timeout,
        });
        Ok(())
    }

    fn record(&mut self, start: String, code: i32, output: String) {
        let now = Instant::now();
        let before = self.status;
        if code == 0 {
            self.streak = 0;
            self.status = Status::Healthy;
        } else {
            let grace = self.status == Status::Starting
                && now.duration_since(self.started) < self.cfg.start_period;
            if !grace {
                self.streak += 1;
                if self.streak >= self.cfg.retries.max(1) {
                    self.status = Status::Unhealthy;
                }
            }
        }
        self.log.push_back(CheckResult {
            start,
            end: clock::now_rfc3339_nano(),
            code,
            output,
        });
        while self.log.len() > KEEP {
            self.log.pop_front();
        }
        self.next = now + self.gap(now).max(Duration::from_millis(1));
        self.write();
        // docker reports a change of status, not every check.
        if self.status != before {
            if let Some(e) = &self.events {
                e.emit(&format!("health_status: {}", self.status.as_str()), &[]);
            }
        }
    }

    /// The wait before the next check: the start interval while in the start
    /// period (docker's `--health-start-interval`), else the interval.
    fn gap(&self, now: Instant) -> Duration {
        if now.duration_since(self.started) < self.cfg.start_period {
            self.cfg.start_interval.min(self.cfg.interval)
        } else {
            self.cfg.interval
        }
    }

    fn write(&self) {
        let mut s = format!(
            "{{\"Status\":\"{}\",\"FailingStreak\":{},\"Log\":[",
            self.status.as_str(),
            self.streak
        );
        for (i, r) in self.log.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{{\"Start\":\"{}\",\"End\":\"{}\",\"ExitCode\":{},\"Output\":\"",
                r.start, r.end, r.code
            ));
            escape_into(&mut s, &r.output);
            s.push_str("\"}");
        }
        s.push_str("]}\n");
        files::write_atomic(&self.cfg.file, &s);
    }
}

/// A duration as Go prints it, as docker's messages show it ("30s", "300ms", "1.5s").
fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn pid_file(args: &Args) -> std::path::PathBuf {
    args.bundle.join("health.pid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes a test's directory when the test ends, passed or not.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A checker writing into a directory of its own (tests run in parallel).
    fn checker(retries: u32, start_period: Duration) -> (Scratch, Checker) {
        let dir = std::env::temp_dir().join(format!(
            "hako-health-{}-{retries}-{}",
            std::process::id(),
            start_period.as_secs()
        ));
        fs::create_dir_all(&dir).unwrap();
        let scratch = Scratch(dir.clone());
        let events = crate::events::Events {
            path: dir.join("events.log"),
            id: "c1".into(),
            attributes: "{}".into(),
        };
        let checker = Checker::new(
            HealthArgs {
                process: dir.join("p.json"),
                file: dir.join(format!("h-{retries}-{}.json", start_period.as_secs())),
                interval: Duration::from_secs(1),
                start_interval: Duration::from_millis(100),
                timeout: Duration::from_secs(1),
                start_period,
                retries,
            },
            Some(events),
        );
        (scratch, checker)
    }

    #[test]
    fn the_start_interval_applies_in_the_start_period_only() {
        let (_dir, mut c) = checker(3, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(c.gap(now), Duration::from_millis(100));
        c.cfg.start_period = Duration::ZERO;
        assert_eq!(c.gap(now), Duration::from_secs(1));
    }

    #[test]
    fn retries_failures_make_it_unhealthy_and_a_success_heals() {
        let (_dir, mut c) = checker(2, Duration::ZERO);
        c.record("t".into(), 1, "no".into());
        assert_eq!((c.status, c.streak), (Status::Starting, 1));
        c.record("t".into(), 1, "no".into());
        assert_eq!((c.status, c.streak), (Status::Unhealthy, 2));
        c.record("t".into(), 0, "ok".into());
        assert_eq!((c.status, c.streak), (Status::Healthy, 0));
        for _ in 0..7 {
            c.record("t".into(), 0, "ok".into());
        }
        assert_eq!(c.log.len(), KEEP);
        let text = fs::read_to_string(&c.cfg.file).unwrap();
        assert!(text.starts_with("{\"Status\":\"healthy\",\"FailingStreak\":0,\"Log\":[{"));
        // Two changes of status, two events; the repeated successes none.
        let events = fs::read_to_string(c.events.as_ref().unwrap().path.clone()).unwrap();
        let actions: Vec<&str> = events
            .lines()
            .map(|l| {
                l.split("\"Action\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            actions,
            ["health_status: unhealthy", "health_status: healthy"]
        );
    }

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let (_dir, mut c) = checker(1, Duration::from_secs(3600));
        c.record("t".into(), 1, "no".into());
        assert_eq!((c.status, c.streak), (Status::Starting, 0));
        c.record("t".into(), 0, "ok".into());
        c.record("t".into(), 1, "no".into());
        assert_eq!((c.status, c.streak), (Status::Unhealthy, 1));
    }
}
