//! `hako pull`, `hako push`, `hako login`, `hako logout`: argument parsing and
//! output only; the protocol lives in `hako-distribution`'s client and the
//! orchestration in `hako-image`'s pull/push.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hako_distribution::client::{credentials, Client, ClientOptions, Credentials};
use hako_image::manifest::PlatformSpec;
use hako_image::pull::PullOptions;
use hako_image::{ImageStore, Reference};

use crate::progress::Display;
use crate::Global;

#[derive(Debug, Subcommand)]
pub enum DistributionCommand {
    /// Download an image from a registry.
    #[command(
        after_help = "Examples:\n  hako pull busybox\n  hako pull 127.0.0.1:5000/demo:1\n  hako pull --platform linux/arm64 quay.io/org/app@sha256:...\n  hako pull --insecure-registry reg.lan:5000 reg.lan:5000/app"
    )]
    Pull(PullArgs),
    /// Upload an image to a registry.
    #[command(
        after_help = "Examples:\n  hako push 127.0.0.1:5000/demo:1\n  hako push --dest 127.0.0.1:5000/other/demo:2 demo:1\n  hako push --dest reg.lan:5000/app:v1 --insecure-registry reg.lan:5000 sha256:3f2a..."
    )]
    Push(PushArgs),
    /// Store credentials for a registry (checked against it first).
    #[command(
        after_help = "Examples:\n  hako login -u alice 127.0.0.1:5000            # asks for the password\n  echo \"$PW\" | hako login -u alice --password-stdin quay.io\n\nCredentials go to $HAKO_AUTH_FILE or ~/.config/hako/auth.json (docker's format);\n~/.docker/config.json is read too."
    )]
    Login(LoginArgs),
    /// Forget the credentials of a registry.
    #[command(after_help = "Example:\n  hako logout 127.0.0.1:5000")]
    Logout(LogoutArgs),
}

/// How to reach registries (shared by pull, push and login).
#[derive(Debug, Clone, Args)]
pub struct RegistryOpts {
    /// Speak plain HTTP to this registry (host[:port]); may be repeated.
    /// localhost and 127.0.0.0/8 always use plain HTTP.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// Upload blobs larger than this many bytes in chunks of this size.
    #[arg(long, value_name = "BYTES", default_value_t = 32 << 20, hide = true)]
    chunk_size: u64,
    /// Seconds a blob download may wait for data before it counts as broken (and resumes).
    #[arg(long, value_name = "SECS", default_value_t = 60, hide = true)]
    read_timeout: u64,
}

impl RegistryOpts {
    pub(crate) fn options(&self, creds: Option<Credentials>) -> ClientOptions {
        ClientOptions {
            insecure_registries: self.insecure.clone(),
            credentials: creds,
            chunk_size: self.chunk_size,
            read_timeout: std::time::Duration::from_secs(self.read_timeout.max(1)),
            ..ClientOptions::default()
        }
    }

    pub(crate) fn client(&self, registry: &str, creds: Option<Credentials>) -> Result<Client> {
        Ok(Client::new(registry, self.options(creds))?)
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference: [registry/]name[:tag|@digest].
    reference: String,
    /// Platform to pick from a multi-platform image: os/arch[/variant] (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Also fetch every other platform's content (only the selected one is unpacked).
    #[arg(long)]
    all_platforms: bool,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// Pull every tag of the repository (the registry's tags list).
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    #[command(flatten)]
    registry: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push: a name, an id or an id prefix.
    image: String,
    /// Where to push it (default: the image's own name).
    #[arg(long, value_name = "REF")]
    dest: Option<String>,
    /// Print only the pushed manifest digest.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host[:port] (default: docker.io, as docker's).
    registry: Option<String>,
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Auth file to write (default: $HAKO_AUTH_FILE or ~/.config/hako/auth.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    #[command(flatten)]
    registry_opts: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host[:port].
    registry: String,
    /// Auth file to edit (default: $HAKO_AUTH_FILE or ~/.config/hako/auth.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
}

pub fn run(g: &Global, cmd: DistributionCommand) -> Result<()> {
    match cmd {
        DistributionCommand::Pull(a) => pull(g, a),
        DistributionCommand::Push(a) => push(g, a),
        DistributionCommand::Login(a) => login(a),
        DistributionCommand::Logout(a) => logout(a),
    }
}

/// Progress: bars on a terminal; off a terminal, one plain line per finished item.
pub(crate) struct Lines {
    display: Display,
    tty: bool,
    quiet: bool,
}

impl Lines {
    pub(crate) fn new(quiet: bool) -> Self {
        Lines {
            display: Display::new(),
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }
}

impl hako_image::Progress for Lines {
    fn start(&self, id: &str, what: &str, total: Option<u64>) {
        // Quiet: no bars either (finish and advance then find no bar to draw).
        if !self.quiet {
            self.display.start(id, what, total)
        }
    }

    fn advance(&self, id: &str, n: u64) {
        self.display.advance(id, n)
    }

    fn finish(&self, id: &str, note: &str) {
        self.display.finish(id, note);
        if !self.tty && !self.quiet {
            eprintln!("{id}: {note}");
        }
    }
}

/// Pull as `a` says; progress on stderr, nothing on stdout. The pull itself
/// is the library's (`hako_image::on_demand`), shared with run and compose.
fn fetch(g: &Global, a: &PullArgs) -> Result<(Reference, hako_image::pull::Pulled)> {
    let opts = PullOptions {
        platform: a.platform.as_deref().map(PlatformSpec::parse).transpose()?,
        all_platforms: a.all_platforms,
    };
    let mut store = ImageStore::open(&g.root)?;
    let progress = Lines::new(a.quiet);
    let (reference, pulled) = hako_image::on_demand::pull_reference(
        &mut store,
        &a.reference,
        &a.registry.options(None),
        &opts,
        &progress,
    )?;
    super::events::image_event(g, "pull", &reference.familiar(), &reference.familiar());
    Ok((reference, pulled))
}

/// `run`/`create --pull POLICY`: fetch `image` first when the policy says
/// so, through the library's pull-on-demand path, saying so on stderr as
/// docker does (stdout is the container's).
/// Refuse a stored image whose config names another platform than `want`.
fn check_platform(store: &ImageStore, image: &str, want: &PlatformSpec) -> Result<()> {
    let rec = store.find(image)?;
    let img = store
        .load_image(&rec)
        .with_context(|| format!("reading image {image}"))?;
    let field = |k: &str| {
        img.config_json
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (os, arch, variant) = (field("os"), field("architecture"), field("variant"));
    let variant_ok = want
        .variant
        .as_deref()
        .is_none_or(|v| variant.is_empty() || v == variant);
    if os != want.os || arch != want.architecture || !variant_ok {
        let have = [os, arch, variant]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let wanted = [
            Some(want.os.as_str()),
            Some(want.architecture.as_str()),
            want.variant.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
        bail!(
            "image {image} was found but does not match the specified platform: wanted {wanted}, actual {have}"
        );
    }
    Ok(())
}

pub fn pull_for_run(
    g: &Global,
    store: &mut ImageStore,
    image: &str,
    policy: &str,
    platform: Option<&str>,
) -> Result<()> {
    use hako_image::on_demand::{self, PullPolicy, PullReason};
    let policy = match policy {
        "missing" | "always" | "never" => PullPolicy::parse(policy)?,
        other => bail!("invalid --pull {other:?}: use missing, always or never"),
    };
    let platform = platform.map(PlatformSpec::parse).transpose()?;
    let Some(why) = on_demand::pull_needed(store, image, &policy)? else {
        // docker's `run --platform`: a stored image of another platform is refused.
        if let Some(want) = &platform {
            check_platform(store, image, want)?;
        }
        return Ok(());
    };
    if why == PullReason::Missing {
        eprintln!("Unable to find image '{image}' locally");
    }
    let (reference, pulled) = on_demand::pull_reference(
        store,
        image,
        &hako_distribution::client::ClientOptions::default(),
        &PullOptions {
            platform,
            ..PullOptions::default()
        },
        &Lines::new(false),
    )?;
    super::events::image_event(g, "pull", &reference.familiar(), &reference.familiar());
    eprintln!("Digest: {}", pulled.digest);
    eprintln!(
        "Status: Downloaded newer image for {}",
        reference.familiar()
    );
    Ok(())
}

fn pull(g: &Global, a: PullArgs) -> Result<()> {
    if a.all_tags {
        return pull_all_tags(g, a);
    }
    let (reference, pulled) = fetch(g, &a)?;
    if a.quiet {
        println!("{}", pulled.image.id);
    } else {
        println!("Digest: {}", pulled.digest);
        if pulled.other_platforms > 0 {
            println!("Other platforms stored: {}", pulled.other_platforms);
        }
        println!("Image: {}", pulled.image.id);
        println!("{}", reference.familiar());
    }
    Ok(())
}

/// `pull -a`: every tag the registry lists for the repository, as docker.
fn pull_all_tags(g: &Global, a: PullArgs) -> Result<()> {
    let repo = Reference::parse(&a.reference)?;
    // Only a name: a tag or digest (after the last '/') cannot go with -a.
    let last = a.reference.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') {
        bail!(
            "pulling {}: a tag or digest can not be used with --all-tags/-a",
            a.reference
        );
    }
    let client = a
        .registry
        .client(repo.domain(), None)
        .with_context(|| format!("pulling {}", a.reference))?;
    let tags = client.tags(repo.path())?;
    if tags.is_empty() {
        bail!("pulling {}: the repository has no tags", a.reference);
    }
    let name = format!("{}/{}", repo.domain(), repo.path());
    for tag in &tags {
        let one = PullArgs {
            reference: format!("{name}:{tag}"),
            platform: a.platform.clone(),
            all_platforms: a.all_platforms,
            quiet: a.quiet,
            all_tags: false,
            registry: a.registry.clone(),
        };
        let (_, pulled) = fetch(g, &one)?;
        if a.quiet {
            println!("{}", pulled.image.id);
        } else {
            println!("{tag}: Digest: {}", pulled.digest);
        }
    }
    if !a.quiet {
        println!("{}", repo.familiar_repository());
    }
    Ok(())
}

fn push(g: &Global, a: PushArgs) -> Result<()> {
    let store = ImageStore::open(&g.root)?;
    let dest = match &a.dest {
        Some(d) => Reference::parse(d)?,
        None => match Reference::parse(&a.image) {
            Ok(r) => r,
            Err(_) => bail!(
                "pushing {}: not a reference to push to; name the destination with --dest",
                a.image
            ),
        },
    };
    let what = || format!("pushing {} to {}", a.image, dest.familiar());
    let client = a.registry.client(dest.domain(), None).with_context(what)?;
    let progress = Lines::new(a.quiet);
    let report =
        hako_image::push::push(&store, &client, &a.image, &dest, &progress).with_context(what)?;
    super::events::image_event(g, "push", &dest.familiar(), &dest.familiar());
    if a.quiet {
        println!("{}", report.digest);
    } else {
        for (d, outcome) in &report.blobs {
            if progress.tty {
                // Off a terminal the progress lines said this already.
                eprintln!("{d}: {}", outcome.as_str());
            }
        }
        println!(
            "{}: digest: {} size: {}",
            dest.tag().unwrap_or("latest"),
            report.digest,
            report.size
        );
    }
    Ok(())
}

fn login(a: LoginArgs) -> Result<()> {
    let registry = match &a.registry {
        Some(r) => normalise_registry(r),
        None => {
            // Said first, so nobody types a password for the wrong registry.
            eprintln!(
                "Logging in to docker.io (Docker Hub), the default registry; name another with `hako login HOST[:PORT]`."
            );
            "docker.io".to_string()
        }
    };
    let what = || format!("logging in to {registry}");
    let username = match a.username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .with_context(|| format!("{}: reading the user name", what()))?;
            line.trim().to_string()
        }
    };
    if username.is_empty() {
        bail!("{}: a user name is required (-u USER)", what());
    }
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .with_context(|| format!("{}: reading the password from stdin", what()))?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        p
    } else {
        read_password().with_context(|| format!("{}: reading the password", what()))?
    };
    if password.is_empty() {
        bail!("{}: a password is required (-p, --password-stdin)", what());
    }
    let creds = Credentials { username, password };
    let client = a
        .registry_opts
        .client(&registry, Some(creds.clone()))
        .with_context(what)?;
    client.ping().with_context(what)?;
    let file = a.authfile.unwrap_or_else(credentials::default_auth_file);
    credentials::store(&file, &registry, Some(&creds)).with_context(what)?;
    println!("Login Succeeded");
    Ok(())
}

fn logout(a: LogoutArgs) -> Result<()> {
    let registry = normalise_registry(&a.registry);
    let file = a.authfile.unwrap_or_else(credentials::default_auth_file);
    let had = credentials::store(&file, &registry, None)
        .with_context(|| format!("logging out of {registry}"))?;
    if had {
        println!("Removed login credentials for {registry}");
    } else {
        bail!(
            "logging out of {registry}: not logged in ({} has no credentials for it)",
            file.display()
        );
    }
    Ok(())
}

/// `https://host/` and docker's hub aliases as the registry names references use.
fn normalise_registry(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Read a password from the terminal without echo (from stdin when it is not a terminal).
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    eprint!("Password: ");
    let fd = libc::STDIN_FILENO;
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr, which fills it.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is open (it is a terminal, checked above) and `term` is writable.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    // SAFETY: `term` is a termios obtained from tcgetattr with ECHO cleared.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    let mut line = String::new();
    let res = stdin.read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    eprintln!();
    res?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `hako push REF` for other commands (compose push).
pub fn push_reference(g: &Global, reference: &str, quiet: bool) -> Result<()> {
    use clap::{Args as _, FromArgMatches as _};
    let mut argv = vec!["push"];
    if quiet {
        argv.push("-q");
    }
    argv.push(reference);
    let m = PushArgs::augment_args(clap::Command::new("push")).try_get_matches_from(argv)?;
    push(g, PushArgs::from_arg_matches(&m)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert_eq!(
            normalise_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalise_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalise_registry("http://reg.lan:5000/"), "reg.lan:5000");
    }
}
