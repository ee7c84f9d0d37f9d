//! Image commands: images, tag, rmi, save, load, import, and `hako image …`
//! (inspect, history, prune, mount, unmount).

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hako_image::archive::{self, Format, SaveItem};
use hako_image::images::format_rfc3339;
use hako_image::import::{self, ImportOptions};
use hako_image::view;
use hako_image::{ImageRecord, ImageStore, Reference, Removal};
use serde_json::{json, Value};

use crate::output::{human_age, human_size, print_table};
use crate::progress::Display;
use crate::Global;

/// `hako image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Show images' configuration and metadata as JSON.
    #[command(
        after_help = "Examples:\n  hako image inspect busybox\n  hako image inspect 3f57d9401f8d"
    )]
    Inspect(InspectArgs),
    /// Show the history of an image's layers.
    #[command(after_help = "Example:\n  hako image history busybox")]
    History(HistoryArgs),
    /// Remove dangling images (no name), or with -a all images not in use.
    #[command(after_help = "Examples:\n  hako image prune\n  hako image prune -a")]
    Prune(PruneArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove images.
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Save images to an archive.
    Save(SaveArgs),
    /// Load images from an archive.
    Load(LoadArgs),
    /// Create an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Mount an image's root filesystem (an overlay) and print its path.
    #[command(after_help = "Examples:\n  hako image mount busybox\n  hako image unmount busybox")]
    Mount(MountArgs),
    /// Unmount an image mounted with `hako image mount`.
    #[command(visible_alias = "umount")]
    Unmount(UnmountArgs),
    /// Download an image from a registry (same as `hako pull`).
    Pull(super::distribution::PullArgs),
    /// Upload an image to a registry (same as `hako push`).
    Push(super::distribution::PushArgs),
    /// Build an image from a Dockerfile (same as `hako build`).
    Build(Box<super::build::BuildArgs>),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako images\n  hako images --digests\n  hako images --filter reference=busybox\n  hako images --filter dangling=true -q\n  hako images --format json"
)]
pub struct ListArgs {
    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// "table" (default), "json" (one object per line, docker's keys), a Go
    /// template ('{{.Repository}}:{{.Tag}}') or "table TEMPLATE".
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show all images (hako stores no intermediate images: the same list).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: reference=PATTERN, dangling=true|false, label=KEY[=VALUE],
    /// before=IMAGE, since=IMAGE. Repeatable.
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Only images of this REPOSITORY[:TAG] (a reference filter).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A Go-style template per image ('{{.Id}}', '{{json .Config.Env}}'), or json.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Images (names or ids).
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image (name or id).
    pub image: String,
    /// Do not truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
    /// "table" (default), "json" (an array), a Go template
    /// ('{{.ID}} {{.CreatedBy}}') or "table TEMPLATE".
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images not in use, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(short, long)]
    pub force: bool,
    /// Only images passing this filter: until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE].
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  hako tag busybox localhost:5000/tools/busybox:1.36")]
pub struct TagArgs {
    /// Image to name (name or id).
    pub source: String,
    /// New names.
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  hako rmi busybox\n  hako rmi -f 3f57d9401f8d")]
pub struct RmiArgs {
    /// Images (names or ids).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an image even when several names point at it (and mounted names).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako save -o busybox.tar busybox\n  hako save --format oci-archive -o app.tar app:1 app:2\n  hako save --format oci-dir -o ./layout busybox"
)]
pub struct SaveArgs {
    /// Output file (directory for oci-dir); "-" or absent: standard output
    /// (which must not be a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (default), oci-archive or oci-dir.
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    /// Images to save (names or ids).
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako load -i busybox.tar\n  hako load -i ./oci-layout-dir\n  hako load < busybox.tar.gz"
)]
pub struct LoadArgs {
    /// Archive (docker-archive or oci-archive, optionally compressed) or OCI
    /// layout directory; standard input when absent or "-".
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Only print the loaded images' ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako import rootfs.tar myimage:1\n  tar -C rootfs -c . | hako import - myimage\n  hako import --change 'CMD [\"/bin/sh\"]' --change 'LABEL team=infra' rootfs.tar.gz myimage"
)]
pub struct ImportArgs {
    /// Root filesystem tarball (plain, gzip or zstd); "-" reads standard input.
    pub tarball: String,
    /// Name for the image.
    pub reference: Option<String>,
    /// Commit message for the history entry.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Dockerfile-like change: ENV KEY=VALUE, LABEL k=v, CMD ["..."] or VOLUME /path (repeatable).
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Image to mount (name or id).
    pub image: String,
}

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// Mount to remove: the image, the mount path or the mount id.
    pub what: String,
}

pub(crate) fn open_store(g: &Global) -> Result<ImageStore> {
    ImageStore::open(&g.root)
        .with_context(|| format!("opening image store in {}", g.root.display()))
}

pub fn run(g: &Global, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Ls(a) => list(g, a),
        ImageCommand::Inspect(a) => inspect(g, a),
        ImageCommand::History(a) => history(g, a),
        ImageCommand::Prune(a) => prune(g, a),
        ImageCommand::Tag(a) => tag(g, a),
        ImageCommand::Rm(a) => rmi(g, a),
        ImageCommand::Save(a) => save(g, a),
        ImageCommand::Load(a) => load(g, a),
        ImageCommand::Import(a) => import(g, a),
        ImageCommand::Mount(a) => mount(g, a),
        ImageCommand::Unmount(a) => unmount(g, a),
        ImageCommand::Pull(a) => {
            super::distribution::run(g, super::distribution::DistributionCommand::Pull(a))
        }
        ImageCommand::Push(a) => {
            super::distribution::run(g, super::distribution::DistributionCommand::Push(a))
        }
        ImageCommand::Build(a) => super::build::build(g, *a),
    }
}

pub fn list(g: &Global, a: ListArgs) -> Result<()> {
    let store = open_store(g)?;
    let mut filters = a
        .filter
        .iter()
        .map(|f| view::ListFilter::parse(f))
        .collect::<hako_image::Result<Vec<_>>>()?;
    if let Some(r) = &a.reference {
        filters.push(view::ListFilter::Reference(r.clone()));
    }
    // One row per name, as docker's; an unnamed image is one row.
    let mut rows: Vec<(ImageRecord, Option<Reference>)> = Vec::new();
    for (rec, names) in view::select(&store, &filters)? {
        if names.is_empty() {
            rows.push((rec, None));
        } else {
            rows.extend(names.into_iter().map(|n| (rec.clone(), Some(n))));
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for (r, _) in &rows {
            if seen.insert(r.id.clone()) {
                println!(
                    "{}",
                    if a.no_trunc {
                        r.id.to_string()
                    } else {
                        r.id.short().to_string()
                    }
                );
            }
        }
        return Ok(());
    }
    let objects: Vec<Value> = rows
        .iter()
        .map(|(r, n)| list_object(&store, r, n.as_ref(), a.no_trunc))
        .collect();
    let row = if a.digests {
        "{{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
    } else {
        "{{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
    };
    let mut out = io::stdout().lock();
    crate::template::print_list(
        &mut out,
        a.format.as_deref(),
        row,
        &[
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
        ],
        &objects,
    )
}

/// docker's `images` object (one per name, as its rows): its keys for
/// `--format json` and templates, and the labels for `.Label "k"`.
fn list_object(
    store: &ImageStore,
    r: &ImageRecord,
    name: Option<&Reference>,
    no_trunc: bool,
) -> Value {
    let none = || "<none>".to_string();
    let created = format_rfc3339(r.created);
    json!({
        "Containers": "N/A",
        "CreatedAt": if r.created == 0 {
            "N/A".to_string()
        } else {
            format!("{} +0000 UTC", created.trim_end_matches('Z').replace('T', " "))
        },
        "CreatedSince": if r.created == 0 { "N/A".into() } else { human_age(r.created) },
        "Digest": r.manifest_digest.to_string(),
        "ID": if no_trunc { r.id.to_string() } else { r.id.short().to_string() },
        "Repository": name.map(|n| n.familiar_repository()).unwrap_or_else(none),
        "SharedSize": "N/A",
        "Size": human_size(r.size),
        "Tag": name.and_then(|n| n.tag().map(str::to_string)).unwrap_or_else(none),
        "UniqueSize": "N/A",
        "VirtualSize": human_size(r.size),
        "Labels": view::labels(store, r),
    })
}

fn inspect(g: &Global, a: InspectArgs) -> Result<()> {
    let store = open_store(g)?;
    let mut out = Vec::new();
    for what in &a.images {
        out.push(inspect_object(&store, what)?);
    }
    crate::output::print_inspected(&out, a.format.as_deref())
}

/// docker's `image inspect` object of an image by name or id.
pub fn inspect_object(store: &ImageStore, what: &str) -> Result<Value> {
    // An unknown image is reported as the store says ("image X not found").
    let rec = store.find(what)?;
    view::inspect(store, &rec.id.to_string()).with_context(|| format!("inspecting image {what}"))
}

fn history(g: &Global, a: HistoryArgs) -> Result<()> {
    let store = open_store(g)?;
    let rec = store.find(&a.image)?;
    // Newest first, like docker; the top entry carries the image id.
    let rows: Vec<(String, String, u64, String)> = view::history(&store, &rec)
        .with_context(|| format!("reading history of image {}", a.image))?
        .into_iter()
        .map(|h| (h.created, h.created_by, h.size, h.comment))
        .collect();
    if a.format == "json" {
        let out: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, (created, by, size, comment))| {
                json!({
                    "id": if i == 0 { rec.id.hex().to_string() } else { "<missing>".to_string() },
                    "created": created, "createdBy": by, "size": size, "comment": comment,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if a.format != "table" {
        // docker's keys, for templates and "table TEMPLATE".
        let objects: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, (created, by, size, comment))| {
                let id = if i == 0 {
                    rec.id.short().to_string()
                } else {
                    "<missing>".to_string()
                };
                let since = hako_image::images::parse_rfc3339(created)
                    .map(human_age)
                    .unwrap_or_else(|| "N/A".into());
                json!({
                    "ID": id, "CreatedSince": since, "CreatedAt": created,
                    "CreatedBy": by, "Size": human_size(*size), "Comment": comment,
                })
            })
            .collect();
        let mut out = io::stdout().lock();
        return crate::template::print_list(
            &mut out,
            Some(&a.format),
            "{{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}",
            &[
                ("ID", "IMAGE"),
                ("CreatedSince", "CREATED"),
                ("CreatedBy", "CREATED BY"),
            ],
            &objects,
        );
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, (created, by, size, comment))| {
            let mut by = by.clone();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                if i == 0 {
                    rec.id.short().to_string()
                } else {
                    "<missing>".into()
                },
                hako_image::images::parse_rfc3339(created)
                    .map(human_age)
                    .unwrap_or_else(|| "N/A".into()),
                by,
                human_size(*size),
                comment.clone(),
            ]
        })
        .collect();
    print_table(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &table,
    );
    Ok(())
}

fn prune(g: &Global, a: PruneArgs) -> Result<()> {
    let filter = hako_engine::prune_filter::PruneFilter::parse(&a.filter)?;
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !crate::output::confirm(warning)? {
        return Ok(());
    }
    let mut store = open_store(g)?;
    let (removed, total) = hako_engine::prune_filter::prune_images(&mut store, a.all, &filter)
        .context("pruning images")?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for id in &removed {
            writeln!(out, "deleted: {id}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(total))?;
    Ok(())
}

pub fn tag(g: &Global, a: TagArgs) -> Result<()> {
    let mut store = open_store(g)?;
    for t in &a.targets {
        let name = Reference::parse(t)?;
        store
            .tag(&a.source, &name)
            .with_context(|| format!("tagging {} as {t}", a.source))?;
        if let Ok(rec) = store.find(&name.to_string()) {
            super::events::image_event(g, "tag", &rec.id.to_string(), &name.familiar());
        }
    }
    Ok(())
}

pub fn rmi(g: &Global, a: RmiArgs) -> Result<()> {
    let mut store = open_store(g)?;
    let mut failed = None;
    for what in &a.images {
        let id = store.find(what).map(|r| r.id.to_string()).ok();
        match store.remove(what, a.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removal::Untagged(n) => {
                            println!("Untagged: {}", n.familiar());
                            if let Some(id) = &id {
                                super::events::image_event(g, "untag", id, &n.familiar());
                            }
                        }
                        Removal::Deleted(id) => {
                            println!("Deleted: {id}");
                            let id = id.to_string();
                            super::events::image_event(g, "delete", &id, &id);
                        }
                    }
                }
            }
            // Keep going like docker, reporting each failure; fail at the end.
            Err(e) => {
                eprintln!("Error: removing image {what}: {e}");
                failed = Some(what.clone());
            }
        }
    }
    match failed {
        Some(w) if a.images.len() == 1 => bail!("could not remove image {w}"),
        Some(_) => bail!("could not remove some images"),
        None => Ok(()),
    }
}

pub fn save(g: &Global, a: SaveArgs) -> Result<()> {
    let store = open_store(g)?;
    let format: Format = a.format.parse()?;
    let mut items = Vec::new();
    for what in &a.images {
        let rec = store.find(what)?;
        // A name given is recorded in the archive; an id saves the image unnamed.
        let name = Reference::parse(what)
            .ok()
            .filter(|r| r.digest().is_none() && rec.names.contains(r));
        items.push(SaveItem { image: rec, name });
    }
    let display = Display::new();
    match a.output.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => archive::save(&store, &items, format, path, &display)
            .with_context(|| format!("saving {} to {}", a.images.join(", "), path.display()))?,
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal: use the -o flag or redirect");
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let what = || format!("saving {} to standard output", a.images.join(", "));
            archive::save_to_writer(&store, &items, format, &mut out, &display)
                .with_context(what)?;
            out.flush().with_context(what)?;
        }
    }
    for (item, what) in items.iter().zip(&a.images) {
        super::events::image_event(g, "save", &item.image.id.to_string(), what);
    }
    Ok(())
}

pub fn load(g: &Global, a: LoadArgs) -> Result<()> {
    let mut store = open_store(g)?;
    let display = Display::new();
    // Loading seeks inside the archive, so standard input is spooled to a
    // temporary file on the store's filesystem first.
    let mut _spool = None;
    let input = match &a.input {
        Some(p) if p.as_os_str() != "-" => p.clone(),
        _ => {
            let mut tmp = tempfile::Builder::new()
                .prefix("stdin-")
                .tempfile_in(store.content().ingest_dir())
                .context("creating a temporary file for standard input")?;
            io::copy(&mut io::stdin().lock(), tmp.as_file_mut())
                .context("reading the archive from standard input")?;
            let path = tmp.path().to_path_buf();
            _spool = Some(tmp);
            path
        }
    };
    let shown = match &a.input {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "standard input".to_string(),
    };
    let loaded =
        archive::load(&mut store, &input, &display).with_context(|| format!("loading {shown}"))?;
    for rec in loaded {
        let id = rec.id.to_string();
        let name = rec.names.first().map_or(id.clone(), |n| n.familiar());
        super::events::image_event(g, "load", &id, &name);
        if a.quiet {
            println!("{}", rec.id);
        } else if rec.names.is_empty() {
            println!("Loaded image ID: {}", rec.id);
        } else {
            for n in &rec.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct Changes {
    env: Vec<String>,
    cmd: Vec<String>,
    labels: Vec<(String, String)>,
    volumes: Vec<String>,
}

fn parse_changes(changes: &[String]) -> Result<Changes> {
    let mut out = Changes::default();
    for c in changes {
        let (verb, rest) = c
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((c.as_str(), ""));
        match verb.to_ascii_uppercase().as_str() {
            "ENV" => {
                let rest = rest.trim();
                let kv = match rest.split_once('=') {
                    Some(_) => rest.to_string(),
                    None => match rest.split_once(char::is_whitespace) {
                        Some((k, v)) => format!("{k}={}", v.trim()),
                        None => bail!("invalid change {c:?}: ENV needs KEY=VALUE"),
                    },
                };
                out.env.push(kv);
            }
            "LABEL" => {
                let (k, v) = rest
                    .trim()
                    .split_once('=')
                    .with_context(|| format!("invalid change {c:?}: LABEL needs KEY=VALUE"))?;
                out.labels
                    .push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
            }
            "CMD" => {
                let rest = rest.trim();
                out.cmd = if rest.starts_with('[') {
                    serde_json::from_str(rest)
                        .with_context(|| format!("invalid change {c:?}: CMD JSON array"))?
                } else {
                    vec!["/bin/sh".into(), "-c".into(), rest.to_string()]
                };
            }
            "VOLUME" => {
                let rest = rest.trim();
                // Dockerfile forms: VOLUME ["/a", "/b"] or VOLUME /a /b.
                let paths: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest)
                        .with_context(|| format!("invalid change {c:?}: VOLUME JSON array"))?
                } else {
                    rest.split_whitespace().map(str::to_string).collect()
                };
                if paths.is_empty() {
                    bail!("invalid change {c:?}: VOLUME needs a path");
                }
                out.volumes.extend(paths);
            }
            other => {
                bail!("unsupported change {other:?} (ENV, LABEL, CMD and VOLUME are supported)")
            }
        }
    }
    Ok(out)
}

pub fn import(g: &Global, a: ImportArgs) -> Result<()> {
    let mut store = open_store(g)?;
    let names = match &a.reference {
        Some(r) => vec![Reference::parse(r)?],
        None => Vec::new(),
    };
    let changes = parse_changes(&a.change)?;
    let opts = ImportOptions {
        source: if a.tarball == "-" {
            "-".into()
        } else {
            a.tarball.clone()
        },
        message: a.message.clone(),
        env: changes.env,
        cmd: changes.cmd,
        labels: changes.labels,
        volumes: changes.volumes,
    };
    let input: Box<dyn Read> = if a.tarball == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&a.tarball).with_context(|| format!("opening {}", a.tarball))?)
    };
    let display = Display::new();
    let rec = import::import(&mut store, input, &names, &opts, &display)
        .with_context(|| format!("importing {}", a.tarball))?;
    // Like podman, import prints the new image's id (with -q too: there is nothing else to omit).
    let _ = a.quiet;
    let id = rec.id.to_string();
    let name = rec.names.first().map_or(id.clone(), |n| n.familiar());
    super::events::image_event(g, "import", &id, &name);
    println!("{}", rec.id);
    Ok(())
}

fn mount(g: &Global, a: MountArgs) -> Result<()> {
    let mut store = open_store(g)?;
    let (_, rootfs) = store
        .mount_managed(&a.image)
        .with_context(|| format!("mounting image {}", a.image))?;
    println!("{}", rootfs.rootfs.display());
    Ok(())
}

fn unmount(g: &Global, a: UnmountArgs) -> Result<()> {
    let mut store = open_store(g)?;
    let m = store
        .unmount(&a.what)
        .with_context(|| format!("unmounting {}", a.what))?;
    println!("{}", m.image_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse() {
        let c = parse_changes(&[
            "ENV A=b".into(),
            "CMD [\"/bin/sh\"]".into(),
            "LABEL x=y".into(),
        ])
        .unwrap();
        assert_eq!(c.env, vec!["A=b"]);
        assert_eq!(c.cmd, vec!["/bin/sh"]);
        assert_eq!(c.labels, vec![("x".to_string(), "y".to_string())]);
        assert!(parse_changes(&["RUN x".into()]).is_err());
        let c = parse_changes(&["VOLUME /a /b".into(), "VOLUME [\"/c\"]".into()]).unwrap();
        assert_eq!(c.volumes, vec!["/a", "/b", "/c"]);
        assert!(parse_changes(&["VOLUME".into()]).is_err());
    }
}
