//! `hako build`: argument parsing and progress output; the build itself
//! lives in `hako-build`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hako_build::{Options, Output};
use hako_image::pull::PullOptions;
use hako_image::{ImageStore, Reference};

use crate::commands::distribution::RegistryOpts;
use crate::Global;
use clap::Subcommand;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako build -t app:1 .\n  hako build -f build/Dockerfile --build-arg VERSION=2 --target test .\n  hako build --no-cache --progress plain -t app .\n  hako build --output type=oci,dest=app.tar .\n  hako build --output type=local,dest=./out .\n  hako build -f - . < Dockerfile.dev\n  hako build - < context.tar.gz\n  hako build https://example.com/app.git#v1:docker\n  hako build https://example.com/context.tar.gz\n  SOURCE_DATE_EPOCH=0 hako build --iidfile id.txt ."
)]
pub struct BuildArgs {
    /// Name (and tag) of the image, repeatable.
    #[arg(short, long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; - for standard input).
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build argument KEY=VALUE (KEY alone takes the value from the environment), repeatable.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build the stage of this name and what it needs.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images even when they are in the store.
    #[arg(long)]
    pub pull: bool,
    /// Label KEY=VALUE for the image, repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Target platform OS/ARCH[/VARIANT] (default: this machine's); base images
    /// are selected for it from multi-platform indexes. A comma-separated list
    /// builds each and joins them in an image index.
    #[arg(long, value_name = "OS/ARCH[,...]")]
    pub platform: Option<String>,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Where the result goes: type=image (default), type=oci,dest=FILE[,tar=false],
    /// type=docker-archive,dest=FILE or type=local,dest=DIR.
    #[arg(short, long, value_name = "SPEC")]
    pub output: Option<String>,
    /// Progress output: auto (tty on a terminal, else plain), plain (one line per event), tty or quiet.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub progress: String,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE, repeatable.
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    pub secrets: Vec<String>,
    /// An ssh agent for RUN --mount=type=ssh: default (from $SSH_AUTH_SOCK) or ID=SOCKET, repeatable.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// Layer compression in the image's manifest: none (default, fastest), gzip or zstd.
    #[arg(long, value_name = "ALGORITHM", default_value = "none")]
    pub compression: String,
    /// Grant an entitlement: security.insecure (RUN --security=insecure) or network.host, repeatable.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// OCI runtime for RUN steps (name or path).
    #[arg(long, value_name = "RUNTIME", default_value = "hako-runtime")]
    pub runtime: String,
    /// The network of RUN steps: default (the host's, as buildkit's), host or none.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Add NAME:IP (or NAME:host-gateway) to the RUN steps' /etc/hosts, repeatable.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// Size of the RUN steps' /dev/shm (e.g. 256m; default 64m).
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// A resource limit of the RUN steps, NAME=SOFT[:HARD] (e.g. nofile=1024:2048), repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// A named context NAME=PATH (for COPY --from=NAME) or NAME=docker-image://REF
    /// (for FROM NAME and COPY --from=NAME), repeatable.
    #[arg(long = "build-context", value_name = "NAME=PATH|docker-image://REF")]
    pub build_contexts: Vec<String>,
    /// An image whose layers and history are a cache for this build (docker's
    /// classic --cache-from), repeatable.
    #[arg(long = "cache-from", value_name = "IMAGE")]
    pub cache_from: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryOpts,
    /// The build context: a directory, a git repository (URL[#REF[:DIR]]), an http(s) URL
    /// of a tar (or of a lone Dockerfile), or - for either on standard input.
    pub context: PathBuf,
}

/// Plain progress: `#N ...` lines on stderr, like buildkit's plain mode.
struct Plain {
    quiet: bool,
    out: Mutex<()>,
}

impl Plain {
    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        let _g = self.out.lock().expect("progress lock");
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{s}");
    }
}

impl hako_build::Progress for Plain {
    fn start(&self, id: usize, name: &str) {
        self.line(&format!("#{id} {name}"));
    }

    fn log(&self, id: usize, elapsed: Duration, line: &str) {
        self.line(&format!("#{id} {:.3} {line}", elapsed.as_secs_f64()));
    }

    fn done(&self, id: usize, cached: bool, elapsed: Duration) {
        if cached {
            self.line(&format!("#{id} CACHED"));
        } else {
            self.line(&format!("#{id} DONE {:.1}s", elapsed.as_secs_f64()));
        }
    }

    fn failed(&self, id: usize, message: &str, elapsed: Duration) {
        self.line(&format!(
            "#{id} ERROR after {:.1}s: {message}",
            elapsed.as_secs_f64()
        ));
    }

    fn warn(&self, message: &str) {
        self.line(&format!("WARNING: {message}"));
    }
}

/// Terminal progress (`--progress auto` on a terminal, or `tty`): one line
/// per step, redrawn while it runs with its last output line; a failing
/// step's whole output is printed when it fails.
struct Tty {
    multi: indicatif::MultiProgress,
    bars: Mutex<std::collections::HashMap<usize, Running>>,
}

/// A running step: its bar, its name and its output so far.
type Running = (indicatif::ProgressBar, String, Vec<String>);

impl Tty {
    fn new() -> Tty {
        Tty {
            multi: indicatif::MultiProgress::new(),
            bars: Mutex::new(std::collections::HashMap::new()),
        }
    }
}

/// Keep progress lines to one terminal row.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl hako_build::Progress for Tty {
    fn start(&self, id: usize, name: &str) {
        let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(clip(name, 100));
        self.bars
            .lock()
            .expect("progress lock")
            .insert(id, (bar, name.to_string(), Vec::new()));
    }

    fn log(&self, id: usize, _elapsed: Duration, line: &str) {
        if let Some((bar, name, lines)) = self.bars.lock().expect("progress lock").get_mut(&id) {
            lines.push(line.to_string());
            bar.set_message(format!("{}  | {}", clip(name, 60), clip(line, 60)));
        }
    }

    fn done(&self, id: usize, cached: bool, elapsed: Duration) {
        if let Some((bar, name, _)) = self.bars.lock().expect("progress lock").remove(&id) {
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {msg}").expect("valid template"),
            );
            let how = if cached {
                "CACHED".to_string()
            } else {
                format!("{:.1}s", elapsed.as_secs_f64())
            };
            bar.finish_with_message(format!("{} {how}", clip(&name, 100)));
        }
    }

    fn failed(&self, id: usize, message: &str, elapsed: Duration) {
        if let Some((bar, name, lines)) = self.bars.lock().expect("progress lock").remove(&id) {
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {msg}").expect("valid template"),
            );
            bar.finish_with_message(format!(
                "{} ERROR after {:.1}s",
                clip(&name, 100),
                elapsed.as_secs_f64()
            ));
            for l in lines {
                let _ = self.multi.println(format!("  > {l}"));
            }
            let _ = self.multi.println(format!("  {message}"));
        }
    }

    fn warn(&self, message: &str) {
        let _ = self.multi.println(format!("WARNING: {message}"));
    }
}

struct Pull<'a> {
    registry: &'a RegistryOpts,
}

impl hako_build::Puller for Pull<'_> {
    fn pull(
        &self,
        store: &mut ImageStore,
        reference: &str,
        platform: &hako_image::manifest::PlatformSpec,
    ) -> std::result::Result<(), String> {
        let r = Reference::parse(reference).map_err(|e| e.to_string())?;
        let client = self
            .registry
            .client(r.domain(), None)
            .map_err(|e| format!("{e:#}"))?;
        hako_image::pull::pull(
            store,
            &client,
            &r,
            &PullOptions {
                platform: Some(platform.clone()),
                ..PullOptions::default()
            },
            &hako_image::NoProgress,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

fn key_value(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} {s:?}: expected KEY=VALUE"),
    }
}

fn parse_output(spec: &str) -> Result<Output> {
    let mut fields = BTreeMap::new();
    for kv in spec.split(',') {
        let (k, v) = key_value(kv, "--output field")?;
        fields.insert(k, v);
    }
    let dest = || -> Result<PathBuf> {
        fields
            .get("dest")
            .map(PathBuf::from)
            .with_context(|| format!("--output {spec}: needs dest="))
    };
    Ok(match fields.get("type").map(String::as_str) {
        None | Some("image") => Output::Image,
        Some("oci") => Output::Oci {
            dest: dest()?,
            tar: fields.get("tar").map(String::as_str) != Some("false"),
        },
        Some("docker-archive") | Some("docker") | Some("tar") => {
            Output::DockerArchive { dest: dest()? }
        }
        Some("local") => Output::Local { dest: dest()? },
        Some(t) => bail!("--output type={t}: must be image, oci, docker-archive or local"),
    })
}

pub fn build(g: &Global, a: BuildArgs) -> Result<()> {
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // docker: a bare KEY takes its value from the environment, if set.
            None => {
                if let Ok(v) = std::env::var(b) {
                    build_args.insert(b.clone(), v);
                }
            }
        }
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = key_value(l, "--label")?;
        labels.insert(k, v);
    }
    let mut secrets = BTreeMap::new();
    for s in &a.secrets {
        let mut id = None;
        let mut src = None;
        for kv in s.split(',') {
            match kv.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                _ => bail!("--secret {s:?}: expected id=ID,src=FILE"),
            }
        }
        let (Some(id), Some(src)) = (id, src) else {
            bail!("--secret {s:?}: expected id=ID,src=FILE");
        };
        secrets.insert(id, src);
    }
    for e in &a.allow {
        if !matches!(e.as_str(), "security.insecure" | "network.host") {
            bail!("--allow {e}: must be security.insecure or network.host");
        }
    }
    let mut ssh = BTreeMap::new();
    for s in &a.ssh {
        let (id, socket) = match s.split_once('=') {
            Some((id, p)) => (id.to_string(), PathBuf::from(p)),
            None => (
                s.clone(),
                std::env::var_os("SSH_AUTH_SOCK")
                    .map(PathBuf::from)
                    .with_context(|| {
                        format!("--ssh {s}: SSH_AUTH_SOCK is not set; give {s}=SOCKET")
                    })?,
            ),
        };
        ssh.insert(id, socket);
    }
    let tags = a
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("tag {t}")))
        .collect::<Result<Vec<_>>>()?;
    let epoch = match build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
    {
        Some(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH {v:?}: not a number of seconds"))?,
        ),
        _ => None,
    };
    if !matches!(a.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        bail!("--progress {}: must be auto, plain or quiet", a.progress);
    }
    // The context (a directory, a git repository, a tar or a lone Dockerfile
    // on standard input or at a URL) and the Dockerfile; what is fetched or
    // unpacked lives until the build ends.
    let origin =
        hako_build::origin::prepare(&a.context, a.file.as_deref(), &mut std::io::stdin().lock())?;
    let context = origin.context.clone();
    let dockerfile = origin.dockerfile.clone();
    let opts = Options {
        context: context.clone(),
        dockerfile,
        tags,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        labels,
        platform: a.platform.clone(),
        output: match &a.output {
            Some(s) => parse_output(s)?,
            None => Output::Image,
        },
        iidfile: a.iidfile.clone(),
        source_date_epoch: epoch,
        secrets,
        ssh,
        allow: a.allow.clone(),
        compression: match a.compression.as_str() {
            "none" | "uncompressed" => hako_image::manifest::Compression::None,
            "gzip" => hako_image::manifest::Compression::Gzip,
            "zstd" => hako_image::manifest::Compression::Zstd,
            c => bail!("--compression {c}: must be none, gzip or zstd"),
        },
        runtime: hako_engine::runtime::resolve(&a.runtime)?,
        run: run_defaults(&a)?,
        named_contexts: a
            .build_contexts
            .iter()
            .map(|c| hako_build::executor::NamedContext::parse(c))
            .collect::<std::result::Result<_, _>>()?,
        cache_from: {
            for c in &a.cache_from {
                hako_build::executor::check_cache_from(c)?;
            }
            a.cache_from.clone()
        },
    };
    let mut store = ImageStore::open(&g.root)?;
    let quiet = a.quiet || a.progress == "quiet";
    let tty = !quiet
        && (a.progress == "tty"
            || (a.progress == "auto" && std::io::IsTerminal::is_terminal(&std::io::stderr())));
    let plain = Plain {
        quiet,
        out: Mutex::new(()),
    };
    let terminal;
    let progress: &dyn hako_build::Progress = if tty {
        terminal = Tty::new();
        &terminal
    } else {
        &plain
    };
    let puller = Pull {
        registry: &a.registry,
    };
    let built = hako_build::build(&mut store, &opts, progress, Some(&puller))
        .with_context(|| format!("building {}", a.context.display()))?;
    if opts.output == Output::Image {
        for t in &opts.tags {
            super::events::image_event(g, "tag", &built.id.to_string(), &t.familiar());
        }
    }
    if !a.quiet {
        eprintln!(
            "{} steps, {} cached; image {}",
            built.steps, built.cached, built.id
        );
        for t in &opts.tags {
            if opts.output == Output::Image {
                eprintln!("Tagged {}", t.familiar());
            }
        }
    }
    println!("{}", built.id);
    Ok(())
}

/// `hako builder …`
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache entries whose layers are gone (-a: all, with cache mounts).
    #[command(after_help = "Examples:\n  hako builder prune\n  hako builder prune -a")]
    Prune(BuilderPruneArgs),
}

#[derive(Debug, Args)]
pub struct BuilderPruneArgs {
    /// Remove every cache entry and every cache mount.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt (prune never prompts; accepted for compatibility).
    #[arg(short, long)]
    pub force: bool,
}

pub fn builder(g: &Global, cmd: BuilderCommand) -> Result<()> {
    match cmd {
        BuilderCommand::Prune(a) => {
            let store = ImageStore::open(&g.root)?;
            let r = hako_build::cache::prune(&store, a.all).context("pruning the build cache")?;
            println!(
                "Removed {} cache entries, {} cache mounts, {} leftover step directories",
                r.entries, r.mounts, r.leftovers
            );
            Ok(())
        }
    }
}

/// `--network`, `--add-host`, `--shm-size` and `--ulimit`: what every RUN step gets.
fn run_defaults(a: &BuildArgs) -> Result<hako_build::RunDefaults> {
    let run = hako_build::RunDefaults {
        network: a.network.clone().unwrap_or_default(),
        add_hosts: a.add_hosts.clone(),
        shm_size: match &a.shm_size {
            Some(s) => {
                hako_engine::options::parse_bytes(s).with_context(|| format!("--shm-size {s:?}"))?
            }
            None => 0,
        },
        ulimits: a
            .ulimits
            .iter()
            .map(|u| hako_engine::options::parse_ulimit(u))
            .collect::<std::result::Result<_, _>>()?,
    };
    run.validate()?;
    Ok(run)
}
