use super::Result;
use crate::Cli;
use hako_runtime::container::{self, CreateOptions};
use std::path::PathBuf;

/// Create a container from a bundle; its process waits for `start`
#[derive(clap::Args)]
#[command(after_help = "Example:\n  hako-runtime create --bundle ./bundle --pid-file ./pid demo")]
pub struct Args {
    /// Path to the bundle (the directory holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container init's pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on a ramdisk)
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3 .. 3+N-1) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container id
    pub id: String,
}

impl Args {
    pub fn options(&self, cli: &Cli) -> CreateOptions {
        CreateOptions {
            root: cli.root.clone(),
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            systemd_cgroup: cli.systemd_cgroup,
            spec: None,
        }
    }
}

pub fn run(cli: &Cli, a: &Args) -> Result<i32> {
    let mut opts = a.options(cli);
    opts.spec = guard(&a.bundle)?;
    container::create(&opts)?;
    Ok(0)
}

/// Chooses the CVE-2019-5736 guard (hako-dmz or a re-exec from a read-only
/// copy) before anything is created, as the re-exec starts over. A config that
/// does not load is left for `create` to report. Returns the config read, for
/// `create` to use rather than read again.
pub fn guard(bundle: &std::path::Path) -> Result<Option<oci_spec::runtime::Spec>> {
    let Ok(spec) = hako_runtime::spec::load(bundle) else {
        return Ok(None);
    };
    hako_runtime::selfexe::guard_for(&spec)?;
    Ok(Some(spec))
}
