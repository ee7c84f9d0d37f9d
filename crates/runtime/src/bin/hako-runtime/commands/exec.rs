use super::Result;
use crate::Cli;
use hako_runtime::container::{self, ExecOptions, ExecOutcome};
use hako_runtime::error::{Context, Error};
use hako_runtime::state::Container;
use oci_spec::runtime::{Capability, Process};
use std::path::PathBuf;
use std::str::FromStr;

/// Run a new process inside a running container
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  hako-runtime exec demo ps\n  hako-runtime exec -e FOO=1 --cwd /tmp -u 1000:1000 demo sh -c 'id; pwd'\n  hako-runtime exec --process ./process.json --detach demo"
)]
pub struct Args {
    /// A process.json (runtime-spec process) to run instead of the arguments
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE, may repeat
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a terminal (needs --console-socket)
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids, may repeat
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_NET_ADMIN), may repeat
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility (SELinux is not available here)
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility (AppArmor is not available here)
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn build_process(a: &Args, base: &Process) -> Result<Process> {
    if let Some(path) = &a.process {
        let data = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&data);
        return serde_path_to_error::deserialize(de)
            .map_err(|e| Error::Spec(format!("{}: {}: {}", path.display(), e.path(), e.inner())));
    }
    if a.command.is_empty() {
        return Err(Error::Spec("exec: give a command or --process".into()));
    }
    let mut p = base.clone();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let mut user = p.user().clone();
        user.set_uid(
            uid.parse()
                .map_err(|_| Error::Spec(format!("--user {u:?}: uid must be a number")))?,
        );
        if let Some(g) = gid {
            user.set_gid(
                g.parse()
                    .map_err(|_| Error::Spec(format!("--user {u:?}: gid must be a number")))?,
            );
        }
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for c in &a.cap {
            // As runc: CAP_SYS_PTRACE (the spec's spelling), sys_ptrace or SYS_PTRACE.
            let upper = c.to_ascii_uppercase();
            let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
            let cap = serde_json::from_value::<Capability>(serde_json::Value::String(format!(
                "CAP_{name}"
            )))
            .or_else(|_| Capability::from_str(c))
            .map_err(|e| Error::Spec(format!("--cap {c:?}: not a capability ({e})")))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
            caps.set_inheritable(add(caps.inheritable()));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    hako_runtime::selfexe::ensure_sealed()?;
    let c = Container::load(&cli.root, &a.id)?;
    let base = c.spec.process().clone().unwrap_or_default();
    let process = build_process(a, &base)?;
    let outcome = container::exec(&ExecOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        process,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        detach: a.detach,
        preserve_fds: a.preserve_fds,
    })?;
    Ok(match outcome {
        ExecOutcome::Detached(_) => 0,
        ExecOutcome::Exited(code) => code,
    })
}
