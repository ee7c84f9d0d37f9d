//! The executor: checks everything a build needs before any step runs, then
//! builds the target's stages (independent stages in parallel), each step
//! cached, and writes the result (an image in the store, an OCI layout, a
//! docker archive or a directory).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hako_image::archive::{self, SaveItem};
use hako_image::images::format_rfc3339;
use hako_image::lease::Lease;
use hako_image::manifest::PlatformSpec;
use hako_image::snapshot::{self, Snapshotter};
use hako_image::store::ContentStore;
use hako_image::{Digest, ImageRecord, ImageStore, NoProgress, Reference};
use sha2::{Digest as _, Sha256};

use crate::cache::{self, Cache};
use crate::context::Tree;
use crate::error::{Error, IoContext, Result};
use crate::fsops::{self, Overlay};
use crate::lex::Lexer;
use crate::parser::{self, Args, Instruction, Keyword};
use crate::platform;
use crate::stages::{self, Base, Graph, Source};
use crate::state::{History, Layer, State};

/// Where the result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An image in the store, named with the tags.
    Image,
    /// An OCI image layout: a directory, or a tar when `tar`.
    Oci { dest: PathBuf, tar: bool },
    /// A `docker save` archive.
    DockerArchive { dest: PathBuf },
    /// The root filesystem as a directory.
    Local { dest: PathBuf },
}

/// A build.
#[derive(Debug, Clone)]
pub struct Options {
    pub context: PathBuf,
    /// The Dockerfile (default: `Dockerfile` in the context).
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Pull base images even when present.
    pub pull: bool,
    pub labels: BTreeMap<String, String>,
    pub platform: Option<String>,
    pub output: Output,
    pub iidfile: Option<PathBuf>,
    /// Timestamps of history, config and layer entries (clamped) for reproducible builds.
    pub source_date_epoch: Option<i64>,
    /// `--secret id=ID,src=PATH`: files RUN --mount=type=secret can mount.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh id=SOCKET`: ssh agent sockets RUN --mount=type=ssh can mount.
    pub ssh: BTreeMap<String, PathBuf>,
    /// How the image's new layers are stored in its manifest (the snapshots
    /// are the same either way).
    pub compression: hako_image::manifest::Compression,
    /// Entitlements granted (`security.insecure`, `network.host`).
    pub allow: Vec<String>,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// What every RUN step gets.
    pub run: RunDefaults,
    /// `--build-context NAME=PATH|docker-image://REF`, by lowercased name.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--cache-from IMAGE`s: docker's classic-builder cache sources (see
    /// [`cache_from_hit`]).
    pub cache_from: Vec<String>,
}

/// Check a `--cache-from` value: an image reference (docker's classic
/// builder); buildkit's `type=...` cache exports are refused.
pub fn check_cache_from(v: &str) -> Result<()> {
    if v.is_empty() || v.contains("type=") || v.contains(',') {
        return Err(Error::Unsupported(format!(
            "--cache-from {v:?}: only an image reference is taken (docker's classic builder cache); buildkit cache exports (type=registry, type=local, ...) are not"
        )));
    }
    Ok(())
}

/// docker's classic `--cache-from`: a step is taken from a cache image when
/// the stage so far is that image's prefix (the same layers, the same
/// history entries apart from their times) and the image's next history
/// entry is this step's; the step then gets that entry and, unless it
/// made no layer, the image's next layer.
pub(crate) fn cache_from_hit(
    sources: &[State],
    st: &State,
    desc: &str,
) -> Option<(Option<Layer>, History)> {
    let same = |a: &History, b: &History| {
        a.created_by == b.created_by && a.empty_layer == b.empty_layer && a.comment == b.comment
    };
    sources.iter().find_map(|c| {
        let next = c.history.get(st.history.len())?;
        if next.created_by.as_deref() != Some(desc)
            || st.layers.len() > c.layers.len()
            || !st
                .layers
                .iter()
                .zip(&c.layers)
                .all(|(a, b)| a.diff_id == b.diff_id)
            || !st.history.iter().zip(&c.history).all(|(a, b)| same(a, b))
        {
            return None;
        }
        let layer = if next.empty_layer {
            None
        } else {
            Some(c.layers.get(st.layers.len())?.clone())
        };
        Some((layer, next.clone()))
    })
}

/// A named build context (`--build-context`): what `FROM NAME` and
/// `COPY --from=NAME` take instead of the image NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory of files, for `COPY --from` (like the main context).
    Dir(PathBuf),
    /// An image reference (`docker-image://REF`) standing for NAME.
    Image(String),
}

impl Options {
    /// The image `name` stands for: a `docker-image://` named context's
    /// reference, or the name itself.
    pub(crate) fn image_name<'a>(&'a self, name: &'a str) -> &'a str {
        match self.named_contexts.get(&name.to_ascii_lowercase()) {
            Some(NamedContext::Image(r)) => r,
            _ => name,
        }
    }

    /// The directory of a named context called `name`, if it is one.
    pub(crate) fn named_dir(&self, name: &str) -> Option<&Path> {
        match self.named_contexts.get(&name.to_ascii_lowercase()) {
            Some(NamedContext::Dir(d)) => Some(d),
            _ => None,
        }
    }
}

impl NamedContext {
    /// Parse `NAME=PATH` or `NAME=docker-image://REF` as docker buildx does;
    /// other sources (`oci-layout://`, URLs, `target:`) are refused.
    pub fn parse(spec: &str) -> Result<(String, NamedContext)> {
        let bad = |why: &str| Error::Invalid(format!("invalid --build-context {spec:?}: {why}"));
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=PATH or NAME=docker-image://REF"))?;
        if name.is_empty() || value.is_empty() {
            return Err(bad("expected NAME=PATH or NAME=docker-image://REF"));
        }
        let context = if let Some(r) = value.strip_prefix("docker-image://") {
            if r.is_empty() {
                return Err(bad("docker-image:// needs an image reference"));
            }
            NamedContext::Image(r.to_string())
        } else if value.contains("://") || value.starts_with("target:") {
            return Err(bad("only a directory or docker-image://REF is supported"));
        } else {
            let dir = PathBuf::from(value);
            if !dir.is_dir() {
                return Err(bad("the path is not a directory"));
            }
            NamedContext::Dir(dir)
        };
        Ok((name.to_ascii_lowercase(), context))
    }
}

/// What every RUN step gets: docker build's `--network`, `--add-host`,
/// `--shm-size` and `--ulimit`.
#[derive(Debug, Clone, Default)]
pub struct RunDefaults {
    /// `default`, `host` or `none` (empty: default, the host's network as
    /// buildkit's); a step's own `RUN --network` wins.
    pub network: String,
    /// `NAME:IP` entries added to the steps' /etc/hosts (`host-gateway`: the
    /// host, 127.0.0.1 from its network).
    pub add_hosts: Vec<String>,
    /// Bytes of the steps' /dev/shm (0: docker's 64 MiB).
    pub shm_size: i64,
    pub ulimits: Vec<hako_engine::record::Ulimit>,
}

impl RunDefaults {
    /// Refuse what docker build refuses, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.network.as_str(), "" | "default" | "host" | "none") {
            return Err(Error::Invalid(format!(
                "--network {:?}: a build runs on default, host or none",
                self.network
            )));
        }
        for h in &self.add_hosts {
            let ok = h.split_once(':').is_some_and(|(n, ip)| {
                !n.is_empty()
                    && !n.contains(char::is_whitespace)
                    && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok())
            });
            if !ok {
                return Err(Error::Invalid(format!(
                    "invalid --add-host {h:?}: expected NAME:IP or NAME:host-gateway"
                )));
            }
        }
        if self.shm_size < 0 {
            return Err(Error::Invalid("--shm-size must not be negative".into()));
        }
        Ok(())
    }
}

/// How the build reports progress; calls come from several threads.
pub trait Progress: Sync {
    /// A step starts: `[stage n/m] INSTRUCTION`.
    fn start(&self, id: usize, name: &str);
    /// A line of a RUN step's output.
    fn log(&self, id: usize, elapsed: Duration, line: &str);
    fn done(&self, id: usize, cached: bool, elapsed: Duration);
    fn failed(&self, id: usize, message: &str, elapsed: Duration);
    fn warn(&self, message: &str);
}

/// Fetches a base image into the store (the caller knows registries): the
/// manifest for `platform` when the reference names an index.
pub trait Puller {
    fn pull(
        &self,
        store: &mut ImageStore,
        reference: &str,
        platform: &PlatformSpec,
    ) -> std::result::Result<(), String>;
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image config digest (the image id).
    pub id: Digest,
    pub record: Option<ImageRecord>,
    pub steps: usize,
    pub cached: usize,
}

/// Build arguments docker predefines: usable without ARG, kept out of history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub(crate) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A finished stage.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub(crate) state: State,
    pub(crate) key: String,
}

pub(crate) struct Cx<'a> {
    pub(crate) content: &'a ContentStore,
    pub(crate) snapshots: &'a Snapshotter,
    pub(crate) opts: &'a Options,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) cache: Cache,
    pub(crate) graph: Graph,
    pub(crate) lexer: Lexer,
    /// Base images and `--from` images by [`image_key`] (name and platform).
    pub(crate) images: HashMap<String, Done>,
    /// The platform this build is for (`--platform`, or this machine's).
    pub(crate) target: PlatformSpec,
    pub(crate) context: Tree,
    pub(crate) work: PathBuf,
    pub(crate) runtime_root: PathBuf,
    /// Global ARG values (for re-declared ARGs in stages).
    pub(crate) globals: BTreeMap<String, String>,
    pub(crate) automatic: BTreeMap<String, String>,
    pub(crate) file: String,
    pub(crate) next_step: AtomicUsize,
    pub(crate) steps: AtomicUsize,
    pub(crate) cached: AtomicUsize,
    pub(crate) used_args: std::sync::Mutex<BTreeSet<String>>,
    /// The `# check=` configuration (UndefinedVar runs as steps expand).
    pub(crate) checks: crate::checks::Config,
    pub(crate) undefined_seen: std::sync::Mutex<BTreeSet<(usize, String)>>,
    /// Paths known missing in layers, for WORKDIR lookups without a mount.
    pub(crate) missing: crate::chainview::Memo,
    /// The `--cache-from` images found.
    pub(crate) cache_from: Vec<State>,
}

/// Per-stage scope: declared ARGs and their values.
#[derive(Default)]
pub(crate) struct Scope {
    pub(crate) args: BTreeMap<String, String>,
    pub(crate) declared: BTreeSet<String>,
    pub(crate) cmd_set: bool,
    /// Bytes of processed words so far (bounded by `lex::MAX_STAGE_TOTAL`).
    pub(crate) expanded: std::cell::Cell<usize>,
}

impl Scope {
    /// Count `n` more bytes of processed words; an error past the bound.
    pub(crate) fn spend(&self, n: usize) -> std::result::Result<(), String> {
        let total = self.expanded.get() + n;
        self.expanded.set(total);
        if total > crate::lex::MAX_STAGE_TOTAL {
            return Err(crate::lex::stage_too_large());
        }
        Ok(())
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The state of an image in the store.
fn image_state(store: &ImageStore, rec: &ImageRecord) -> Result<State> {
    let img = store.load_image(rec)?;
    let diff_ids = img.diff_ids()?;
    let layers = img
        .manifest
        .layers()
        .iter()
        .zip(diff_ids.iter())
        .map(|(d, diff)| Layer {
            blob: d.digest().to_string(),
            media_type: d.media_type().to_string(),
            size: d.size(),
            diff_id: diff.to_string(),
        })
        .collect();
    let cfg = &img.config_json;
    let config =
        serde_json::from_value(cfg.get("config").cloned().unwrap_or_default()).unwrap_or_default();
    let history =
        serde_json::from_value(cfg.get("history").cloned().unwrap_or_default()).unwrap_or_default();
    let s = |k: &str| cfg.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Ok(State {
        layers,
        config,
        history,
        architecture: s("architecture").unwrap_or_default(),
        os: s("os").unwrap_or_default(),
        variant: s("variant"),
        author: s("author"),
        created: s("created").unwrap_or_default(),
    })
}

pub(crate) fn diff_ids(st: &State) -> Result<Vec<Digest>> {
    st.layers
        .iter()
        .map(|l| l.diff_id.parse().map_err(Error::from))
        .collect()
}

fn chain(st: &State) -> Result<Vec<Digest>> {
    Ok(snapshot::chain_ids(&diff_ids(st)?))
}

/// Build per `opts` in `store`.
pub fn build(
    store: &mut ImageStore,
    opts: &Options,
    progress: &dyn Progress,
    puller: Option<&dyn Puller>,
) -> Result<Built> {
    let dockerfile = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let (file, text) = crate::context::read_dockerfile(&opts.context, &dockerfile)?;
    let df = parser::parse(&text).map_err(|err| Error::Parse {
        file: file.clone(),
        err,
    })?;
    let checks = crate::checks::Config::parse(df.directives.check.as_deref())
        .map_err(|e| Error::Invalid(format!("{file}: {e}")))?;
    let findings = crate::checks::run(&df, &checks);
    for f in &findings {
        progress.warn(&format!("{file}:{}: {}: {}", f.line, f.rule, f.message));
    }
    if checks.error && !findings.is_empty() {
        return Err(Error::Invalid(format!(
            "{file}: {} build check(s) failed (check=error=true): {}",
            findings.len(),
            findings
                .iter()
                .map(|f| f.rule)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let platforms = match &opts.platform {
        Some(p) => platform::parse_list(p)?,
        None => vec![platform::host()],
    };
    if platforms.len() > 1 {
        return build_multi(
            store,
            opts,
            progress,
            puller,
            &df,
            &file,
            &dockerfile,
            &checks,
            &platforms,
        );
    }
    let mut leases = Vec::new();
    let local = match &opts.output {
        Output::Local { dest } => Some(dest.as_path()),
        _ => None,
    };
    let target = platforms.into_iter().next().expect("a platform");
    let (state, steps, cached) = build_platform(
        store,
        opts,
        progress,
        puller,
        &df,
        &file,
        &dockerfile,
        &checks,
        target,
        local,
        &mut leases,
    )?;
    // No pull from here on: the store stays shared-locked (no gc) until the
    // image that references the new blobs is recorded.
    let _hold = store.write_lock()?;
    if local.is_some() {
        let (id, _) = write_image(store.content(), &state)?;
        return Ok(Built {
            id,
            record: None,
            steps,
            cached,
        });
    }
    let state = crate::compress::layers(
        store.content(),
        &cx_cache_dir(store.root()),
        state,
        opts.compression,
    )?;
    let (_, manifest) = write_image(store.content(), &state)?;
    let names = if opts.output == Output::Image {
        opts.tags.clone()
    } else {
        Vec::new()
    };
    let rec = {
        let _lock = store.write_lock()?;
        store.commit(&manifest, &manifest, &names, &NoProgress)?
    };
    let item = || SaveItem {
        image: rec.clone(),
        name: opts.tags.first().cloned(),
    };
    match &opts.output {
        Output::Image | Output::Local { .. } => {}
        Output::Oci { dest, tar } => {
            let format = if *tar {
                archive::Format::OciArchive
            } else {
                archive::Format::OciDir
            };
            archive::save(store, &[item()], format, dest, &NoProgress)?;
        }
        Output::DockerArchive { dest } => {
            archive::save(
                store,
                &[item()],
                archive::Format::DockerArchive,
                dest,
                &NoProgress,
            )?;
        }
    }
    if let Some(f) = &opts.iidfile {
        write_atomic(f, rec.id.to_string().as_bytes())?;
    }
    Ok(Built {
        id: rec.id.clone(),
        record: Some(rec),
        steps,
        cached,
    })
}

/// Build the target for one platform; the final state (with `--label`s),
/// exported to `local` when given. Steps and cache hits counted.
#[allow(clippy::too_many_arguments)]
fn build_platform(
    store: &mut ImageStore,
    opts: &Options,
    progress: &dyn Progress,
    puller: Option<&dyn Puller>,
    df: &parser::Dockerfile,
    file: &str,
    dockerfile: &Path,
    checks: &crate::checks::Config,
    target: PlatformSpec,
    local: Option<&Path>,
    leases: &mut Vec<Lease>,
) -> Result<(State, usize, usize)> {
    let file = file.to_string();
    let checks = checks.clone();
    let automatic = platform::automatic_args(&target);
    let mut graph = stages::graph(
        &file,
        df,
        &opts.build_args,
        &automatic,
        opts.target.as_deref(),
    )?;
    // Named contexts stand for the images they name: a docker-image:// one
    // is that image; a directory is for COPY --from only.
    for st in graph.stages.iter_mut() {
        if let Base::Image(n) = &st.base {
            if opts.named_dir(n).is_some() {
                return Err(Error::Unsupported(format!(
                    "{file}:{}: FROM {n}: the build context {n} is a directory (FROM takes a docker-image:// context)",
                    st.from.line
                )));
            }
            st.base = Base::Image(opts.image_name(n).to_string());
        }
    }
    for src in graph.sources.values_mut() {
        if let Source::Image(n) = src {
            *src = Source::Image(opts.image_name(n).to_string());
        }
    }
    let lexer = Lexer {
        escape: df.directives.escape,
    };
    let globals = stages::global_values(&lexer, &graph.global_args, &opts.build_args, &automatic)
        .map_err(Error::Invalid)?;
    let context = Tree::context(&opts.context, dockerfile)?;
    crate::validate::check(&graph, &context, &file, &opts.allow)?;

    // Base and --from images, found (or pulled) before any step runs, each
    // for the platform it is wanted for: a stage's own (`FROM --platform`,
    // or the target), the target for `--from` images (as buildkit does).
    let stage_platforms = stage_platforms(&graph, &file, &target)?;
    let mut wanted: Vec<(String, PlatformSpec)> = Vec::new();
    for &si in &graph.order {
        if let Base::Image(n) = &graph.stages[si].base {
            wanted.push((n.clone(), stage_platforms[&si].clone()));
        }
        for (ii, _) in graph.stages[si].instructions.iter().enumerate() {
            if let Some(Source::Image(n)) = graph.sources.get(&(si, ii)) {
                // A directory context is read when its COPY runs.
                if opts.named_dir(n).is_none() {
                    wanted.push((n.clone(), target.clone()));
                }
            }
        }
    }
    let mut images = HashMap::new();
    for (name, plat) in wanted {
        let k = image_key(&name, &plat);
        if images.contains_key(&k) {
            continue;
        }
        let (rec, state) = find_image(store, opts.pull, puller, &name, &plat)?;
        // Held until the build ends: `rmi` refuses it, gc keeps its blobs.
        leases.push(store.lease(LEASE_HOLDER, &rec)?);
        images.insert(
            k,
            Done {
                state,
                key: rec.id.to_string(),
            },
        );
    }
    // RUN needs the stage's platform to execute here: refused before any
    // step when it cannot (rather than "exec format error" inside a step).
    let mut run_platform: HashMap<usize, PlatformSpec> = HashMap::new();
    for &si in &graph.order {
        let st = &graph.stages[si];
        let p = match &st.base {
            Base::Scratch => stage_platforms[&si].clone(),
            Base::Image(n) => {
                let s = &images[&image_key(n, &stage_platforms[&si])].state;
                state_platform(s)
            }
            Base::Stage(b) => run_platform[b].clone(),
        };
        if let Some(ins) = st.instructions.iter().find(|i| i.keyword == Keyword::Run) {
            if let Err(why) = platform::can_run(&p) {
                return Err(Error::Invalid(format!(
                    "{file}:{}: {}",
                    ins.line,
                    cannot_run(&st.label(), &p, &why)
                )));
            }
        }
        run_platform.insert(si, p);
    }

    // --cache-from images: found (or pulled) and held like base images; one
    // that cannot be had is said and skipped, as docker does.
    let mut cache_from = Vec::new();
    for name in &opts.cache_from {
        match find_image(store, false, puller, name, &target) {
            Ok((rec, state)) => {
                leases.push(store.lease(LEASE_HOLDER, &rec)?);
                cache_from.push(state);
            }
            Err(e) => progress.warn(&format!("--cache-from {name}: not used: {e}")),
        }
    }

    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Unsupported(
            "building as a non-root user (steps mount overlays and start containers as root)"
                .into(),
        ));
    }
    let _lock = store.write_lock()?;
    let work = store.root().join("build").join("work");
    let runtime_root = store.root().join("build").join("runtime");
    // RUN steps of builds that were killed: their containers and overlays.
    cache::reap_orphans(&work, false);
    let cx = Cx {
        content: store.content(),
        snapshots: store.snapshots(),
        opts,
        progress,
        cache: Cache::open(store.root())?,
        graph,
        lexer,
        images,
        target,
        context,
        work,
        runtime_root,
        globals,
        automatic,
        file,
        next_step: AtomicUsize::new(1),
        steps: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        used_args: Default::default(),
        checks,
        undefined_seen: Default::default(),
        missing: Default::default(),
        cache_from,
    };
    let target = cx.run_stages()?;
    let unused: Vec<&String> = {
        let used = cx.used_args.lock().expect("args lock");
        opts.build_args
            .keys()
            .filter(|k| {
                !used.contains(*k)
                    && !cx.graph.global_args.iter().any(|(n, _)| n == *k)
                    && !PROXY_ARGS.contains(&k.as_str())
            })
            .collect()
    };
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        progress.warn(&format!(
            "build args not consumed by any stage: {}",
            names.join(", ")
        ));
    }
    let (steps, cached) = (
        cx.steps.load(Ordering::SeqCst),
        cx.cached.load(Ordering::SeqCst),
    );
    let mut state = target.state;
    state.config.labels.extend(opts.labels.clone());
    if let Some(dest) = local {
        export_local(cx.snapshots, &cx.work, &state, dest)?;
    }
    // The new layers are referenced by no image until the commit, after this
    // function drops the store lock: leased so no gc collects them meanwhile.
    let blobs = state
        .layers
        .iter()
        .map(|l| l.blob.parse().map_err(Error::from))
        .collect::<Result<Vec<Digest>>>()?;
    leases.push(hako_image::lease::take(
        store.root(),
        LEASE_HOLDER,
        None,
        blobs,
        chain(&state)?,
    )?);
    Ok((state, steps, cached))
}

/// How a build names itself in leases (and so in `rmi`'s refusal).
const LEASE_HOLDER: &str = "hako build";

/// Where compressed copies of layers are remembered.
fn cx_cache_dir(root: &Path) -> PathBuf {
    root.join("build-cache").join("compressed")
}

/// Write a file through a temporary name in its directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).ctx(|| format!("creating {}", path.display()))?;
    tmp.write_all(data)
        .ctx(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

/// The config and manifest of a state, into the content store.
fn write_image(content: &ContentStore, state: &State) -> Result<(Digest, Digest)> {
    let mut config = serde_json::to_vec(&state.image_config())
        .map_err(|e| Error::Invalid(format!("serialising the image config: {e}")))?;
    config.push(b'\n');
    let config_digest = content.put(&config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": state.layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.blob,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Invalid(format!("serialising the image manifest: {e}")))?;
    let manifest_digest = content.put(&bytes)?;
    Ok((config_digest, manifest_digest))
}

/// Copy the final root filesystem to `dest`.
fn export_local(snapshots: &Snapshotter, work: &Path, state: &State, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).ctx(|| format!("creating {}", dest.display()))?;
    let mut o = Overlay::mount(snapshots, &chain(state)?, work)?;
    let own = fsops::CopyOwner::default();
    for e in fsops::sorted_entries(&o.rootfs)? {
        fsops::copy_entry(&e.path(), &dest.join(e.file_name()), own, &|_| true)?;
    }
    o.unmount()
}

impl Cx<'_> {
    /// Build the needed stages, independent ones in parallel; the target's result.
    pub(crate) fn run_stages(&self) -> Result<Done> {
        let order = self.graph.order.clone();
        let mut done: HashMap<usize, Done> = HashMap::new();
        let mut started: BTreeSet<usize> = BTreeSet::new();
        let mut first_err: Option<Error> = None;
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<(usize, Result<Done>)>();
            let mut running = 0;
            loop {
                if first_err.is_none() {
                    for &si in &order {
                        let ready = !started.contains(&si)
                            && self.graph.stages[si]
                                .deps
                                .iter()
                                .all(|d| done.contains_key(d));
                        if ready {
                            started.insert(si);
                            running += 1;
                            let deps: HashMap<usize, Done> = self.graph.stages[si]
                                .deps
                                .iter()
                                .map(|d| (*d, done[d].clone()))
                                .collect();
                            let tx = tx.clone();
                            // A roomy stack: a stage walks deep trees.
                            let spawned = std::thread::Builder::new()
                                .name(format!("stage-{si}"))
                                .stack_size(64 << 20)
                                .spawn_scoped(s, move || {
                                    let r = self.stage(si, &deps);
                                    let _ = tx.send((si, r));
                                });
                            if let Err(e) = spawned {
                                running -= 1;
                                first_err.get_or_insert(Error::io("starting a stage thread", e));
                            }
                        }
                    }
                }
                if running == 0 {
                    break;
                }
                let (si, r) = rx.recv().expect("a stage thread reports");
                running -= 1;
                match r {
                    Ok(d) => {
                        done.insert(si, d);
                    }
                    Err(e) => {
                        if first_err.is_none() {
                            first_err = Some(e);
                        }
                    }
                }
            }
        });
        if let Some(e) = first_err {
            return Err(e);
        }
        done.remove(&self.graph.target)
            .ok_or_else(|| Error::Invalid("the target stage was not built".into()))
    }

    pub(crate) fn created(&self) -> String {
        format_rfc3339(self.opts.source_date_epoch.unwrap_or_else(now_secs))
    }

    pub(crate) fn stage(&self, si: usize, deps: &HashMap<usize, Done>) -> Result<Done> {
        let stage = &self.graph.stages[si];
        let plat = match &stage.platform {
            Some(p) => platform::parse(p)?,
            None => self.target.clone(),
        };
        let (mut st, mut key) = match &stage.base {
            Base::Scratch => (
                State {
                    architecture: plat.architecture.clone(),
                    os: plat.os.clone(),
                    variant: plat.variant.clone(),
                    ..Default::default()
                },
                // The host's key stays what it was before platforms.
                if plat == platform::host() {
                    cache::key("", "scratch", b"")
                } else {
                    cache::key("", &format!("scratch {plat}"), b"")
                },
            ),
            Base::Image(n) => {
                let d = &self.images[&image_key(n, &plat)];
                (d.state.clone(), d.key.clone())
            }
            Base::Stage(b) => {
                let d = &deps[b];
                (d.state.clone(), d.key.clone())
            }
        };
        // Like buildkit and buildah, a stage always has a PATH.
        if st.config.env_get("PATH").is_none() {
            st.config.env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        // ONBUILD triggers of the base run first, then leave the config.
        let mut list: Vec<(Option<usize>, Instruction)> = Vec::new();
        for t in std::mem::take(&mut st.config.on_build) {
            let df = parser::parse(&t).map_err(|err| Error::Parse {
                file: format!("ONBUILD trigger of {}", stage.label()),
                err,
            })?;
            list.extend(df.instructions.into_iter().map(|i| (None, i)));
        }
        list.extend(
            stage
                .instructions
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, ins)| (Some(i), ins)),
        );
        let total = list.len() + 1;
        let label = stage.label();
        let id = self.next_step.fetch_add(1, Ordering::SeqCst);
        self.progress
            .start(id, &format!("[{label} 1/{total}] {}", stage.from.original));
        self.progress.done(id, false, Duration::ZERO);
        let mut scope = Scope::default();
        for (n, (idx, ins)) in list.iter().enumerate() {
            let name = format!("[{label} {}/{total}] {}", n + 2, ins.original);
            self.step(si, *idx, ins, &name, &mut st, &mut key, &mut scope, deps)
                .map_err(|e| match e {
                    e @ (Error::Parse { .. } | Error::RunFailed { .. }) => e,
                    e => Error::Invalid(format!(
                        "{}:{}: {}: {e}",
                        self.file,
                        ins.line,
                        ins.keyword.name()
                    )),
                })?;
        }
        Ok(Done { state: st, key })
    }

    /// A variable's value in a stage: ENV wins over ARG.
    pub(crate) fn lookup(st: &State, scope: &Scope, name: &str) -> Option<String> {
        st.config
            .env_get(name)
            .or_else(|| scope.args.get(name).cloned())
    }

    pub(crate) fn word(
        &self,
        st: &State,
        scope: &Scope,
        ins: &Instruction,
        s: &str,
    ) -> Result<String> {
        let missing = std::cell::RefCell::new(Vec::new());
        let env = |n: &str| {
            let v = Self::lookup(st, scope, n);
            if v.is_none() {
                missing.borrow_mut().push(n.to_string());
            }
            v
        };
        let out = self
            .lexer
            .word(s, &env)
            .and_then(|o| scope.spend(o.len()).map(|_| o))
            .map_err(|e| Error::Parse {
                file: self.file.clone(),
                err: ins.error(e),
            })?;
        self.undefined(ins, s, &missing.into_inner())?;
        Ok(out)
    }

    /// The UndefinedVar build check: `$NAME` or `${NAME}` (no default) of a
    /// variable neither ENV nor ARG defines.
    fn undefined(&self, ins: &Instruction, text: &str, missing: &[String]) -> Result<()> {
        let c = &self.checks;
        if c.skip_all || c.skip.iter().any(|r| r == "UndefinedVar") {
            return Ok(());
        }
        for name in missing {
            let braced = text.contains(&format!("${{{name}}}"));
            let plain = text.match_indices(&format!("${name}")).any(|(i, m)| {
                !text[i + m.len()..].starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
            });
            if !(braced || plain) {
                continue;
            }
            let first = self
                .undefined_seen
                .lock()
                .expect("checks lock")
                .insert((ins.line, name.clone()));
            if !first {
                continue;
            }
            let msg = format!(
                "{}:{}: UndefinedVar: Usage of undefined variable '${name}'",
                self.file, ins.line
            );
            if c.error {
                return Err(Error::Invalid(format!("{msg} (check=error=true)")));
            }
            self.progress.warn(&msg);
        }
        Ok(())
    }

    pub(crate) fn words(
        &self,
        st: &State,
        scope: &Scope,
        ins: &Instruction,
        s: &str,
    ) -> Result<Vec<String>> {
        let missing = std::cell::RefCell::new(Vec::new());
        let env = |n: &str| {
            let v = Self::lookup(st, scope, n);
            if v.is_none() {
                missing.borrow_mut().push(n.to_string());
            }
            v
        };
        let out = self
            .lexer
            .words(s, &env)
            .and_then(|o| scope.spend(o.iter().map(String::len).sum()).map(|_| o))
            .map_err(|e| Error::Parse {
                file: self.file.clone(),
                err: ins.error(e),
            })?;
        self.undefined(ins, s, &missing.into_inner())?;
        Ok(out)
    }

    /// `k=v` pairs of ENV/LABEL (and the legacy `ENV k v` form), expanded.
    pub(crate) fn pairs(
        &self,
        st: &State,
        scope: &Scope,
        ins: &Instruction,
    ) -> Result<Vec<(String, String)>> {
        let Args::Shell(s) = &ins.args else {
            return Ok(Vec::new());
        };
        let raw = self.lexer.split_raw(s);
        let perr = |m: String| Error::Parse {
            file: self.file.clone(),
            err: ins.error(m),
        };
        if raw.first().is_some_and(|w| !w.contains('=')) {
            if ins.keyword == Keyword::Label || raw.len() < 2 {
                return Err(perr(format!(
                    "{} needs key=value pairs",
                    ins.keyword.name()
                )));
            }
            // `ENV key value with spaces`.
            let k = raw[0].clone();
            let v = s[s.find(char::is_whitespace).unwrap_or(s.len())..].trim();
            return Ok(vec![(
                self.word(st, scope, ins, &k)?,
                self.word(st, scope, ins, v)?,
            )]);
        }
        let mut out = Vec::new();
        for w in raw {
            let Some((k, v)) = w.split_once('=') else {
                return Err(perr(format!(
                    "{}: {w:?} is not key=value",
                    ins.keyword.name()
                )));
            };
            let k = self.word(st, scope, ins, k)?;
            if k.is_empty() {
                return Err(perr(format!(
                    "{} names can not be blank",
                    ins.keyword.name()
                )));
            }
            out.push((k, self.word(st, scope, ins, v)?));
        }
        Ok(out)
    }

    /// A step that only changes the config: cached like the others, so an
    /// unchanged rebuild gives the very same image.
    pub(crate) fn meta(
        &self,
        name: &str,
        st: &mut State,
        key: &mut String,
        desc: String,
        apply: impl FnOnce(&mut State),
    ) -> Result<()> {
        let k = cache::key(key, &desc, b"");
        let id = self.next_step.fetch_add(1, Ordering::SeqCst);
        self.steps.fetch_add(1, Ordering::SeqCst);
        let t = Instant::now();
        self.progress.start(id, name);
        apply(st);
        let cached = if self.opts.no_cache {
            None
        } else {
            self.cache
                .get_meta(&k)
                .filter(|h| h.created_by.as_deref() == Some(desc.as_str()))
                .or_else(|| match cache_from_hit(&self.cache_from, st, &desc) {
                    // A --cache-from image's entry: its time too, so the
                    // image comes out the same.
                    Some((None, h)) => {
                        let _ = self.cache.put_meta(&k, &h);
                        Some(h)
                    }
                    _ => None,
                })
        };
        if let Some(h) = cached {
            st.created = h.created.clone().unwrap_or_default();
            st.history.push(h);
            self.cached.fetch_add(1, Ordering::SeqCst);
            self.progress.done(id, true, t.elapsed());
        } else {
            let created = self.created();
            let h = History {
                created: Some(created.clone()),
                created_by: Some(desc),
                comment: Some(HISTORY_COMMENT.into()),
                empty_layer: true,
                ..Default::default()
            };
            self.cache.put_meta(&k, &h)?;
            st.history.push(h);
            st.created = created;
            self.progress.done(id, false, t.elapsed());
        }
        *key = k;
        Ok(())
    }

    pub(crate) fn cached_state(&self, key: &str) -> Option<State> {
        if self.opts.no_cache {
            return None;
        }
        self.cache.get(key, self.content, self.snapshots)
    }

    /// A step that changes files: `work` runs on the mounted overlay and
    /// returns mount stubs to clean; the upper directory becomes the layer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer(
        &self,
        name: &str,
        st: &mut State,
        key: &mut String,
        desc: String,
        inputs: &[u8],
        linked: bool,
        work: impl FnOnce(&Overlay, usize, Instant) -> Result<Vec<String>>,
    ) -> Result<()> {
        self.layer_by(name, st, key, desc, inputs, |st, id, t| {
            self.on_overlay(st, linked, id, t, work)
        })
    }

    /// A step that changes files, cached: `make` writes the layer (None when
    /// nothing changed).
    pub(crate) fn layer_by(
        &self,
        name: &str,
        st: &mut State,
        key: &mut String,
        desc: String,
        inputs: &[u8],
        make: impl FnOnce(&State, usize, Instant) -> Result<Option<Layer>>,
    ) -> Result<()> {
        let k = cache::key(key, &desc, inputs);
        let id = self.next_step.fetch_add(1, Ordering::SeqCst);
        self.steps.fetch_add(1, Ordering::SeqCst);
        let t = Instant::now();
        self.progress.start(id, name);
        if let Some(c) = self.cached_state(&k) {
            *st = c;
            self.cached.fetch_add(1, Ordering::SeqCst);
            self.progress.done(id, true, t.elapsed());
            *key = k;
            return Ok(());
        }
        let from_hit = if self.opts.no_cache {
            None
        } else {
            cache_from_hit(&self.cache_from, st, &desc)
        };
        // COPY/ADD name their sources, not their content: as docker compares
        // the files, the step runs and the cache image's layer is taken
        // when it holds the same files. Other steps hit by their text.
        let by_content = desc.starts_with("COPY ") || desc.starts_with("ADD ");
        let take =
            |st: &mut State, key: &mut String, layer: Option<Layer>, h: History| -> Result<()> {
                st.layers.extend(layer);
                st.created = h.created.clone().unwrap_or_else(|| self.created());
                st.history.push(h);
                self.cache.put(&k, st)?;
                self.cached.fetch_add(1, Ordering::SeqCst);
                self.progress.done(id, true, t.elapsed());
                *key = k.clone();
                Ok(())
            };
        if let Some((layer, h)) = from_hit.clone().filter(|_| !by_content) {
            return take(st, key, layer, h);
        }
        let layer = match make(st, id, t) {
            Ok(l) => l,
            Err(e) => {
                self.progress.failed(id, &e.to_string(), t.elapsed());
                return Err(e);
            }
        };
        if let Some((cached, h)) = from_hit {
            if self.same_layer(st, layer.as_ref(), cached.as_ref())? {
                return take(st, key, cached, h);
            }
        }
        let created = self.created();
        let empty = layer.is_none();
        if let Some(l) = layer {
            st.layers.push(l);
        }
        st.history.push(History {
            created: Some(created.clone()),
            created_by: Some(desc),
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: empty,
            ..Default::default()
        });
        st.created = created;
        self.cache.put(&k, st)?;
        self.progress.done(id, false, t.elapsed());
        *key = k;
        Ok(())
    }

    /// Whether two layers over `st` hold the same files (owners, modes,
    /// content, link targets; not times): the same diff id, or equal trees.
    fn same_layer(&self, st: &State, a: Option<&Layer>, b: Option<&Layer>) -> Result<bool> {
        let (a, b) = match (a, b) {
            (None, None) => return Ok(true),
            (Some(a), Some(b)) => (a, b),
            _ => return Ok(false),
        };
        if a.diff_id == b.diff_id {
            return Ok(true);
        }
        let dir = |l: &Layer| -> Result<PathBuf> {
            let mut ids = diff_ids(st)?;
            ids.push(l.diff_id.parse()?);
            let chain = snapshot::chain_ids(&ids);
            Ok(self
                .snapshots
                .fs_path(chain.last().expect("one layer at least")))
        };
        Ok(cache::same_tree(&dir(a)?, &dir(b)?))
    }

    /// Run `work` on an overlay of the layers of `st` (none for `COPY
    /// --link`) and make its upper directory the layer.
    pub(crate) fn on_overlay(
        &self,
        st: &State,
        linked: bool,
        id: usize,
        t: Instant,
        work: impl FnOnce(&Overlay, usize, Instant) -> Result<Vec<String>>,
    ) -> Result<Option<Layer>> {
        // `COPY --link`: the layer is made on an empty tree, independent of its parent.
        let lower = if linked { Vec::new() } else { chain(st)? };
        let mut o = Overlay::mount(self.snapshots, &lower, &self.work)?;
        let stubs = work(&o, id, t)?;
        o.unmount()?;
        fsops::remove_stubs(&o.upper, &stubs);
        self.commit(st, &o.upper)
    }

    /// Make an upper directory the layer over `st` (None when it is empty).
    pub(crate) fn commit(&self, st: &State, upper: &Path) -> Result<Option<Layer>> {
        fsops::commit_upper(
            self.content,
            self.snapshots,
            upper,
            &diff_ids(st)?,
            self.opts.source_date_epoch,
        )
    }

    /// The layers of `st` as a chain to look paths up in without a mount.
    pub(crate) fn chain_view(&self, st: &State) -> Result<crate::chainview::Chain<'_>> {
        let layers = chain(st)?
            .into_iter()
            .rev()
            .map(|id| {
                let p = self.snapshots.fs_path(&id);
                (id, p)
            })
            .collect();
        Ok(crate::chainview::Chain::new(layers, &self.missing))
    }
}

impl Cx<'_> {
    pub(crate) fn expand_heredoc(
        &self,
        st: &State,
        scope: &Scope,
        ins: &Instruction,
        s: &str,
    ) -> Result<String> {
        let env = |n: &str| Self::lookup(st, scope, n);
        self.lexer
            .expand_only(s, &env)
            .and_then(|o| scope.spend(o.len()).map(|_| o))
            .map_err(|e| Error::Parse {
                file: self.file.clone(),
                err: ins.error(e),
            })
    }
}

/// A digest of `data` as hex, for cache inputs.
pub(crate) fn sha_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    cache::hex(&h.finalize())
}

pub(crate) fn chain_of(st: &State) -> Result<Vec<Digest>> {
    chain(st)
}

/// The key of an image in [`Cx::images`].
pub(crate) fn image_key(name: &str, p: &PlatformSpec) -> String {
    format!("{name} {p}")
}

impl Cx<'_> {
    /// A `--from` image (resolved for the target platform).
    pub(crate) fn source_image(&self, name: &str) -> Option<&Done> {
        self.images
            .get(&image_key(self.opts.image_name(name), &self.target))
    }
}

/// The platform of a stage state (its config's os/architecture/variant).
pub(crate) fn state_platform(st: &State) -> PlatformSpec {
    platform::normalise(&PlatformSpec {
        os: st.os.clone(),
        architecture: st.architecture.clone(),
        variant: st.variant.clone(),
    })
}

/// The one-line reason a RUN cannot execute.
pub(crate) fn cannot_run(stage: &str, p: &PlatformSpec, why: &str) -> String {
    format!(
        "RUN in stage {stage}: platform {p} cannot run on this {} host ({why})",
        platform::host()
    )
}

/// The platform each needed stage's FROM asks for (`--platform`, or the target).
fn stage_platforms(
    graph: &Graph,
    file: &str,
    target: &PlatformSpec,
) -> Result<HashMap<usize, PlatformSpec>> {
    let mut out = HashMap::new();
    for &si in &graph.order {
        let st = &graph.stages[si];
        let p = match &st.platform {
            Some(p) => platform::parse(p).map_err(|e| {
                Error::Invalid(format!("{file}:{}: FROM --platform: {e}", st.from.line))
            })?,
            None => target.clone(),
        };
        out.insert(si, p);
    }
    Ok(out)
}

/// An image for `plat`: the stored one when it is for that platform, else
/// the platform's manifest of the index it was stored from (when the store
/// holds it), else pulled for that platform.
fn find_image(
    store: &mut ImageStore,
    pull: bool,
    puller: Option<&dyn Puller>,
    name: &str,
    plat: &PlatformSpec,
) -> Result<(ImageRecord, State)> {
    let fits = |s: &State| platform::matches(plat, &s.os, &s.architecture, s.variant.as_deref());
    let mut stored_other: Option<String> = None;
    if !pull {
        if let Ok(rec) = store.find(name) {
            let state = image_state(store, &rec)?;
            if fits(&state) {
                return Ok((rec, state));
            }
            let other = state_platform(&state).to_string();
            if rec.target_digest == rec.manifest_digest {
                // A single-platform image: its name cannot give another platform.
                return Err(Error::Invalid(format!(
                    "image {name} was found but is for {other}, not {plat} (FROM --platform={other} uses it; --pull fetches the name for {plat})"
                )));
            }
            if let Some(r) = from_stored_index(store, &rec, plat)? {
                let state = image_state(store, &r)?;
                return Ok((r, state));
            }
            stored_other = Some(other);
        }
    }
    let Some(p) = puller else {
        return Err(Error::Invalid(match stored_other {
            Some(o) => format!("image {name} is for {o}, not {plat}"),
            None => format!("image {name} not found in the store"),
        }));
    };
    p.pull(store, name, plat).map_err(|e| {
        Error::Invalid(match &stored_other {
            Some(o) => format!(
                "image {name} for {plat}: the stored one is for {o}, and pulling failed: {e}"
            ),
            None => format!("pulling image {name}: {e}"),
        })
    })?;
    let rec = store.find(name)?;
    let state = image_state(store, &rec)?;
    if !fits(&state) {
        return Err(Error::Invalid(format!(
            "image {name} is for {}, not {plat}",
            state_platform(&state)
        )));
    }
    Ok((rec, state))
}

/// The image for `plat` from the index `rec` was stored from, when the store
/// has that manifest (an image already, or its blobs: then made one).
fn from_stored_index(
    store: &mut ImageStore,
    rec: &ImageRecord,
    plat: &PlatformSpec,
) -> Result<Option<ImageRecord>> {
    use hako_image::manifest::{self, Document};
    if rec.target_digest == rec.manifest_digest || !store.content().contains(&rec.target_digest) {
        return Ok(None);
    }
    let bytes = store.content().read(&rec.target_digest)?;
    let Ok((_, Document::Index(index))) =
        manifest::parse_document(&bytes, &rec.target_digest.to_string())
    else {
        return Ok(None);
    };
    let Ok(chosen) = manifest::select_platform(&index, plat) else {
        return Ok(None);
    };
    let digest = manifest::descriptor_digest(chosen)?;
    if let Some(r) = store
        .list()?
        .into_iter()
        .find(|r| r.manifest_digest == digest)
    {
        return Ok(Some(r));
    }
    if !store.content().contains(&digest) {
        return Ok(None);
    }
    let _lock = store.write_lock()?;
    match store.commit(&digest, &rec.target_digest, &[], &NoProgress) {
        Ok(r) => Ok(Some(r)),
        // Its config or layers were not stored (the index was pulled for another platform).
        Err(_) => Ok(None),
    }
}

/// `os_arch[_variant]`: a platform's directory in a multi-platform local output (as buildkit).
fn platform_dir(p: &PlatformSpec) -> String {
    p.to_string().replace('/', "_")
}

/// A build for several platforms: each built in turn; the images joined in
/// an OCI image index (each manifest with its platform). The tags name this
/// machine's image (or the first platform's), stored as selected from that
/// index, so a later build for another platform finds its image there. The
/// id reported is the index's digest.
#[allow(clippy::too_many_arguments)]
fn build_multi(
    store: &mut ImageStore,
    opts: &Options,
    progress: &dyn Progress,
    puller: Option<&dyn Puller>,
    df: &parser::Dockerfile,
    file: &str,
    dockerfile: &Path,
    checks: &crate::checks::Config,
    platforms: &[PlatformSpec],
) -> Result<Built> {
    if let Output::Oci { .. } | Output::DockerArchive { .. } = &opts.output {
        return Err(Error::Unsupported(
            "--output type=oci or type=docker-archive for several platforms (an image in the store, or type=local)".into(),
        ));
    }
    let (mut steps, mut cached) = (0, 0);
    let mut leases = Vec::new();
    let mut built: Vec<(PlatformSpec, Digest, Digest, u64)> = Vec::new();
    for p in platforms {
        let local = match &opts.output {
            Output::Local { dest } => Some(dest.join(platform_dir(p))),
            _ => None,
        };
        let (state, s, c) = build_platform(
            store,
            opts,
            progress,
            puller,
            df,
            file,
            dockerfile,
            checks,
            p.clone(),
            local.as_deref(),
            &mut leases,
        )?;
        steps += s;
        cached += c;
        let state = if local.is_some() {
            state
        } else {
            crate::compress::layers(
                store.content(),
                &cx_cache_dir(store.root()),
                state,
                opts.compression,
            )?
        };
        let (config, manifest) = write_image(store.content(), &state)?;
        let size = store.content().size(&manifest)?;
        built.push((state_platform(&state), config, manifest, size));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": built.iter().map(|(p, _, m, size)| {
            let mut platform = serde_json::json!({"os": p.os, "architecture": p.architecture});
            if let Some(v) = &p.variant {
                platform["variant"] = v.clone().into();
            }
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": m.to_string(),
                "size": size,
                "platform": platform,
            })
        }).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&index)
        .map_err(|e| Error::Invalid(format!("serialising the image index: {e}")))?;
    let index_digest = store.content().put(&bytes)?;
    let mut record = None;
    if opts.output == Output::Image {
        let host = platform::host();
        let named = built.iter().position(|b| b.0 == host).unwrap_or(0);
        let _lock = store.write_lock()?;
        for (i, (_, _, manifest, _)) in built.iter().enumerate() {
            let names = if i == named {
                opts.tags.clone()
            } else {
                Vec::new()
            };
            let rec = store.commit(manifest, &index_digest, &names, &NoProgress)?;
            if i == named {
                record = Some(rec);
            }
        }
    }
    if let Some(f) = &opts.iidfile {
        write_atomic(f, index_digest.to_string().as_bytes())?;
    }
    Ok(Built {
        id: index_digest,
        record,
        steps,
        cached,
    })
}
