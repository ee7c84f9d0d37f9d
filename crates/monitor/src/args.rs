//! The monitor's command line. It is only ever started by the engine, so it
//! is parsed by hand (`--key value` pairs) rather than with a parser crate.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::restart::Policy;

/// What the engine tells the monitor.
#[derive(Debug)]
pub struct Args {
    /// The container id, as the runtime knows it.
    pub id: String,
    /// The OCI bundle (holds config.json); also the monitor's working directory.
    pub bundle: PathBuf,
    /// The OCI runtime binary (runc command line).
    pub runtime: PathBuf,
    /// The runtime's `--root` (its state directory).
    pub runtime_root: PathBuf,
    /// The docker json-file log to append the container's output to.
    pub log: PathBuf,
    /// Where the exit status is recorded (JSON, written atomically).
    pub exit_file: PathBuf,
    /// Where the runtime writes the container's pid.
    pub pid_file: PathBuf,
    /// The runtime's own log (`--log`, JSON), read back for error messages.
    pub runtime_log: PathBuf,
    /// Inherited pipe on which progress is reported to the engine.
    pub sync_fd: i32,
    /// Run after the exit is recorded (the engine's cleanup), argv.
    pub exit_command: Vec<OsString>,
    /// Where the state of the current run is recorded for the engine (pid,
    /// restart count, restarting), written at every start and restart.
    pub state_file: Option<PathBuf>,
    /// The restart policy ("no" when not given).
    pub restart: Policy,
    /// Present when the user stopped or killed the container: never restart.
    pub stop_marker: Option<PathBuf>,
    /// The container's cgroup (`linux.cgroupsPath`), to read its OOM kills.
    pub cgroup: Option<String>,
    /// The health check, when the container has one.
    pub health: Option<HealthArgs>,
    /// `--stdin 1`: the container's stdin is a pipe (or its pty) fed by
    /// attached clients (`-i`); else /dev/null.
    pub stdin: bool,
    /// `--tty 1`: the container has a terminal (`process.terminal`); the
    /// monitor receives and holds its pty master.
    pub tty: bool,
    /// `--attach-wait 1`: a foreground client attaches before the start
    /// (reported as `attach-ready` on the sync pipe).
    pub attach_wait: bool,
    /// Rotate the log past this many bytes (docker's `--log-opt max-size`).
    pub log_max_size: Option<u64>,
    /// Log files kept in all, the current one included (`max-file`).
    pub log_max_files: u32,
    /// `--log-format cri|json-file|none`: kubelet's CRI log lines
    /// (`TIMESTAMP STREAM P|F TEXT`), docker's json-file (the default) or
    /// no log at all (docker's `none` driver: output reaches attached
    /// clients only).
    pub log_format: crate::jsonlog::Format,
    /// `--events FILE --event-attributes JSON`: where start, die,
    /// health_status and oom events are appended.
    pub events: Option<crate::events::Events>,
}

/// The health check as the engine resolved it (defaults applied).
#[derive(Debug, Clone)]
pub struct HealthArgs {
    /// The runtime-spec process JSON to `exec`.
    pub process: PathBuf,
    /// Where the health state is written (docker's `State.Health` JSON).
    pub file: PathBuf,
    pub interval: Duration,
    /// Between checks during the start period.
    pub start_interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

impl Args {
    pub fn parse(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
        let mut id = None;
        let mut bundle = None;
        let mut runtime = None;
        let mut runtime_root = None;
        let mut log = None;
        let mut exit_file = None;
        let mut pid_file = None;
        let mut runtime_log = None;
        let mut sync_fd = None;
        let mut exit_command = Vec::new();
        let mut state_file = None;
        let mut restart = Policy::default();
        let mut stop_marker = None;
        let mut cgroup = None;
        let mut health_process = None;
        let mut health_file = None;
        let mut events_file = None;
        let mut event_attributes = None;
        let mut interval = None;
        let mut start_interval = None;
        let mut timeout = None;
        let mut start_period = Duration::ZERO;
        let mut retries = None;
        let (mut stdin, mut tty, mut attach_wait) = (false, false, false);
        let (mut log_max_size, mut log_max_files) = (None, 1);
        let mut log_format = crate::jsonlog::Format::JsonFile;
        while let Some(key) = it.next() {
            let key = key.to_string_lossy().into_owned();
            let value = it
                .next()
                .ok_or_else(|| format!("option {key} needs a value"))?;
            match key.as_str() {
                "--id" => id = Some(value.to_string_lossy().into_owned()),
                "--bundle" => bundle = Some(PathBuf::from(value)),
                "--runtime" => runtime = Some(PathBuf::from(value)),
                "--runtime-root" => runtime_root = Some(PathBuf::from(value)),
                "--log" => log = Some(PathBuf::from(value)),
                "--exit-file" => exit_file = Some(PathBuf::from(value)),
                "--pid-file" => pid_file = Some(PathBuf::from(value)),
                "--runtime-log" => runtime_log = Some(PathBuf::from(value)),
                "--sync-fd" => {
                    let s = value.to_string_lossy();
                    sync_fd = Some(
                        s.parse::<i32>()
                            .map_err(|_| format!("--sync-fd {s:?} is not a file descriptor"))?,
                    );
                }
                "--exit-command" => exit_command.push(value),
                "--state-file" => state_file = Some(PathBuf::from(value)),
                "--restart" => restart.name = value.to_string_lossy().into_owned(),
                "--restart-max" => restart.max = number(&key, &value)? as u32,
                "--stop-marker" => stop_marker = Some(PathBuf::from(value)),
                "--cgroup" => cgroup = Some(value.to_string_lossy().into_owned()),
                "--health-process" => health_process = Some(PathBuf::from(value)),
                "--events" => events_file = Some(PathBuf::from(value)),
                "--event-attributes" => {
                    event_attributes = Some(value.to_string_lossy().into_owned())
                }
                "--health-file" => health_file = Some(PathBuf::from(value)),
                "--health-interval-ns" => {
                    interval = Some(Duration::from_nanos(number(&key, &value)?))
                }
                "--health-start-interval-ns" => {
                    start_interval = Some(Duration::from_nanos(number(&key, &value)?))
                }
                "--health-timeout-ns" => {
                    timeout = Some(Duration::from_nanos(number(&key, &value)?))
                }
                "--health-start-period-ns" => {
                    start_period = Duration::from_nanos(number(&key, &value)?)
                }
                "--health-retries" => retries = Some(number(&key, &value)? as u32),
                "--stdin" => stdin = number(&key, &value)? != 0,
                "--tty" => tty = number(&key, &value)? != 0,
                "--attach-wait" => attach_wait = number(&key, &value)? != 0,
                "--log-max-size" => log_max_size = Some(number(&key, &value)?.max(1)),
                "--log-max-files" => log_max_files = number(&key, &value)?.clamp(1, 1000) as u32,
                "--log-format" => {
                    log_format = match value.to_str() {
                        Some("cri") => crate::jsonlog::Format::Cri,
                        Some("json-file") => crate::jsonlog::Format::JsonFile,
                        Some("none") => crate::jsonlog::Format::None,
                        _ => return Err(format!("unknown log format {value:?}")),
                    }
                }
                other => return Err(format!("unknown option {other}")),
            }
        }
        let health = match (health_process, health_file) {
            (Some(process), Some(file)) => Some(HealthArgs {
                process,
                file,
                interval: interval.ok_or("--health-interval-ns is required with a health check")?,
                start_interval: start_interval.unwrap_or(Duration::from_secs(5)),
                timeout: timeout.ok_or("--health-timeout-ns is required with a health check")?,
                start_period,
                retries: retries.ok_or("--health-retries is required with a health check")?,
            }),
            (None, None) => None,
            _ => return Err("--health-process and --health-file go together".into()),
        };
        let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("{name} is required"));
        let id: String = id.ok_or("--id is required")?;
        let events = events_file.map(|path| crate::events::Events {
            path,
            id: id.clone(),
            attributes: event_attributes.unwrap_or_else(|| "{}".into()),
        });
        Ok(Args {
            id,
            bundle: need(bundle, "--bundle")?,
            runtime: need(runtime, "--runtime")?,
            runtime_root: need(runtime_root, "--runtime-root")?,
            log: need(log, "--log")?,
            exit_file: need(exit_file, "--exit-file")?,
            pid_file: need(pid_file, "--pid-file")?,
            runtime_log: need(runtime_log, "--runtime-log")?,
            sync_fd: sync_fd.ok_or("--sync-fd is required")?,
            exit_command,
            state_file,
            restart,
            stop_marker,
            cgroup,
            health,
            stdin,
            tty,
            attach_wait,
            log_max_size,
            log_max_files,
            log_format,
            events,
        })
    }
}

fn number(key: &str, value: &OsString) -> Result<u64, String> {
    let s = value.to_string_lossy();
    s.parse()
        .map_err(|_| format!("option {key}: {s:?} is not a number"))
}
