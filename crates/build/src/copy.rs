//! COPY and ADD: sources from the context, another stage or an image
//! (`--from`), heredocs, wildcards, docker's directory semantics (a
//! directory source copies its contents), `--chown`, `--chmod`; ADD also
//! unpacks local tar archives and fetches URLs.

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::cache;
use crate::context::Tree;
use crate::error::{Error, IoContext, Result};
use crate::executor::{chain_of, Cx, Done, Scope};
use crate::fsops::{self, CopyOwner, Overlay};
use crate::parser::{Args, Instruction, Keyword};
use crate::stages::Source;
use crate::state::State;

enum Src {
    /// A path of the source tree: (relative, host).
    Path(String, PathBuf),
    /// A heredoc: file name and content.
    Heredoc(String, String),
    /// A downloaded URL: file name and the temporary file.
    Url(String, PathBuf),
    /// A path of another stage or image, resolved when the step runs.
    Pattern(String),
    /// A git checkout (the directory to copy the contents of).
    Git(PathBuf),
}

/// How a local tar archive ADD unpacks is compressed: found by its magic
/// bytes (as docker does), not by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl ArchiveKind {
    fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            ArchiveKind::Gzip
        } else if head.starts_with(b"BZh") {
            ArchiveKind::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            ArchiveKind::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ArchiveKind::Zstd
        } else {
            ArchiveKind::Plain
        }
    }

    fn name(self) -> &'static str {
        match self {
            ArchiveKind::Plain => "tar",
            ArchiveKind::Gzip => "gzip",
            ArchiveKind::Bzip2 => "bzip2",
            ArchiveKind::Xz => "xz",
            ArchiveKind::Zstd => "zstd",
        }
    }

    /// The uncompressed stream of `path`.
    fn open(self, path: &Path) -> std::io::Result<Box<dyn Read>> {
        let f = BufReader::with_capacity(1 << 20, fs::File::open(path)?);
        Ok(match self {
            ArchiveKind::Plain => Box::new(f),
            ArchiveKind::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
            ArchiveKind::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(f)),
            ArchiveKind::Xz => Box::new(lzma_rust2::XzReader::new(f, true)),
            ArchiveKind::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(f)?),
        })
    }
}

/// Whether a file is a tar archive ADD unpacks (plain, gzip, bzip2, xz or
/// zstd): its first (uncompressed) block is a ustar header.
pub(crate) fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let mut head = [0u8; 6];
    let n = fs::File::open(path).ok()?.read(&mut head).ok()?;
    let kind = ArchiveKind::sniff(&head[..n]);
    let mut block = [0u8; 512];
    kind.open(path).ok()?.read_exact(&mut block).ok()?;
    (&block[257..262] == b"ustar").then_some(kind)
}

/// Unpack the archive `host` (named `rel` in errors) into `dir`, keeping owners.
fn unpack_archive(dir: &Path, rel: &str, host: &Path, kind: ArchiveKind) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        let e = e.to_string();
        let e = e.strip_prefix(&format!("layer {rel}: ")).unwrap_or(&e);
        Error::Invalid(format!("{rel}: unpacking the {} archive: {e}", kind.name()))
    };
    let limits = hako_image::layer::ApplyLimits::for_target(dir)?;
    let stream = kind.open(host).map_err(|e| fail(&e))?;
    hako_image::layer::apply(
        dir,
        rel,
        stream,
        hako_image::manifest::Compression::None,
        hako_image::digest::Algorithm::Sha256,
        &limits,
    )
    .map_err(|e| fail(&e))?;
    Ok(())
}

/// The part of a `--parents` source before its `/./` pivot, if any.
fn pivot_of(pattern: &str) -> Option<String> {
    pattern
        .rsplit_once("/./")
        .map(|(p, _)| crate::ignore::clean(p))
        .filter(|p| !p.is_empty())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn step(
    cx: &Cx<'_>,
    name: &str,
    ins: &Instruction,
    st: &mut State,
    key: &mut String,
    scope: &Scope,
    deps: &HashMap<usize, Done>,
    from: Option<(String, Source)>,
) -> Result<()> {
    let kw = ins.keyword.name();
    let is_add = ins.keyword == Keyword::Add;
    let raw: Vec<String> = match &ins.args {
        Args::Exec(v) => v.clone(),
        Args::Shell(s) => s.split_whitespace().map(str::to_string).collect(),
    };
    let mut words = Vec::new();
    for w in &raw {
        let heredoc = w.starts_with("<<");
        words.push(if heredoc {
            w.clone()
        } else {
            cx.word(st, scope, ins, w)?
        });
    }
    let Some((dest_word, srcs)) = words.split_last() else {
        return Err(Error::Invalid(format!(
            "{kw} needs a source and a destination"
        )));
    };
    if srcs.is_empty() {
        return Err(Error::Invalid(format!(
            "{kw} needs a source and a destination"
        )));
    }
    let workdir = if st.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        st.config.working_dir.clone()
    };
    let dest_abs = if dest_word.starts_with('/') {
        dest_word.clone()
    } else {
        format!("{workdir}/{dest_word}")
    };
    let dest = fsops::clean_abs(&dest_abs);
    let dest_dir_syntax = dest_word.ends_with('/') || dest_word == "." || dest_word.ends_with("/.");

    // Another stage or image: its key stands for its content, so it is
    // only mounted when the step runs (a cache hit never mounts it).
    let mut inputs = Vec::new();
    // A directory named context (`--build-context NAME=PATH`): read like
    // the main context, its content digests keyed as such.
    let named_dir = match &from {
        Some((_, Source::Image(name))) => cx.opts.named_dir(name).map(|d| (name, d)),
        _ => None,
    };
    let named_tree;
    let context: &Tree = match named_dir {
        Some((name, dir)) => {
            inputs.extend_from_slice(format!("named-context {name}\n").as_bytes());
            named_tree = Tree::named(dir)?;
            &named_tree
        }
        None => &cx.context,
    };
    let from_state = match &from {
        None => None,
        Some(_) if named_dir.is_some() => None,
        Some((v, src)) => {
            let (state, k) = match src {
                Source::Stage(n) => {
                    let d = deps.get(n).ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{kw} --from={v} outside the stage's dependencies (in ONBUILD)"
                        ))
                    })?;
                    (d.state.clone(), d.key.clone())
                }
                Source::Image(name) => {
                    let d = cx.source_image(name).ok_or_else(|| {
                        Error::Invalid(format!("{kw} --from={v}: image {name} not found"))
                    })?;
                    (d.state.clone(), d.key.clone())
                }
            };
            inputs.extend_from_slice(format!("from {k}\n").as_bytes());
            Some(state)
        }
    };
    let what = kw.to_string();
    let mut sources = Vec::new();
    // Source path → its `--parents` pivot (`a/./b/c` keeps `b/c`).
    let mut pivots: HashMap<String, String> = HashMap::new();
    let download_dir = cx.work.join(format!("downloads-{}", std::process::id()));
    for s in srcs {
        if let Some(marker) = s.strip_prefix("<<") {
            let n = marker
                .trim_start_matches('-')
                .trim_matches(|c| c == '"' || c == '\'');
            let h = ins
                .heredocs
                .iter()
                .find(|h| h.name == n)
                .ok_or_else(|| Error::Invalid(format!("{kw}: no heredoc named {n}")))?;
            let body = if h.expand {
                cx.expand_heredoc(st, scope, ins, &h.body)?
            } else {
                h.body.clone()
            };
            sources.push(Src::Heredoc(n.to_string(), body));
            continue;
        }
        if crate::git::is_git(s) {
            if !is_add {
                return Err(Error::Invalid(format!(
                    "COPY {s}: COPY does not take git repositories (use ADD)"
                )));
            }
            let keep = ins.flag("keep-git-dir").is_some();
            let (dir, commit) = crate::git::checkout(s, &download_dir, keep)?;
            inputs.extend_from_slice(format!("git {s} {commit} keep={keep}\n").as_bytes());
            sources.push(Src::Git(dir));
            continue;
        }
        if s.contains("://") {
            if !is_add {
                return Err(Error::Invalid(format!(
                    "COPY {s}: COPY does not take URLs (use ADD)"
                )));
            }
            let (n, p) = crate::remote::fetch(s, &download_dir)?;
            if let Some(want) = ins.flag("checksum").and_then(|f| f.value.as_deref()) {
                let data = fs::read(&p).ctx(|| format!("reading download {n}"))?;
                let got = format!("sha256:{}", crate::executor::sha_hex(&data));
                if !want.starts_with("sha256:") {
                    return Err(Error::Unsupported(format!(
                        "ADD --checksum={want} (only sha256)"
                    )));
                }
                if got != want {
                    return Err(Error::Invalid(format!(
                        "ADD {s}: checksum mismatch: expected {want}, got {got}"
                    )));
                }
            }
            sources.push(Src::Url(n, p));
            continue;
        }
        if ins.flag("checksum").is_some() {
            return Err(Error::Invalid(format!(
                "ADD --checksum needs an http(s) source, not {s}"
            )));
        }
        if from_state.is_some() {
            inputs.extend_from_slice(format!("pattern {s}\n").as_bytes());
            sources.push(Src::Pattern(s.clone()));
            continue;
        }
        for (rel, host) in context.sources(s, &what)? {
            if let Some(p) = pivot_of(s) {
                pivots.insert(rel.clone(), p);
            }
            sources.push(Src::Path(rel, host));
        }
    }
    let excludes: Vec<String> = ins
        .flag_values("exclude")
        .map(|e| cx.word(st, scope, ins, e))
        .collect::<Result<_>>()?;
    let dirs_of = |sources: &[Src]| -> Vec<String> {
        sources
            .iter()
            .filter_map(|s| match s {
                Src::Path(rel, host) if host.is_dir() => Some(rel.clone()),
                _ => None,
            })
            .collect()
    };
    let context_tree = context.excluding(&excludes, &dirs_of(&sources));
    let tree = &context_tree;
    // Excluded sources named at the top are dropped too.
    sources.retain(
        |s| !matches!(s, Src::Path(rel, _) if !rel.is_empty() && tree.ignore.excluded(rel)),
    );
    for e in &excludes {
        inputs.extend_from_slice(format!("exclude {e}\n").as_bytes());
    }
    // Inputs: every source's content digest.
    for s in &sources {
        match s {
            Src::Path(rel, host) => {
                let mut h = Sha256::new();
                tree.hash_into(rel, host, &mut h)?;
                inputs.extend_from_slice(
                    format!("path {rel} {}\n", cache::hex(&h.finalize())).as_bytes(),
                );
            }
            Src::Heredoc(n, body) => {
                inputs.extend_from_slice(
                    format!(
                        "heredoc {n} {}\n",
                        crate::executor::sha_hex(body.as_bytes())
                    )
                    .as_bytes(),
                );
            }
            Src::Pattern(_) | Src::Git(_) => {}
            Src::Url(n, p) => {
                let data = fs::read(p).ctx(|| format!("reading download {n}"))?;
                inputs.extend_from_slice(
                    format!("url {n} {}\n", crate::executor::sha_hex(&data)).as_bytes(),
                );
            }
        }
    }
    let chmod_text = ins
        .flag("chmod")
        .map(|f| f.value.clone().unwrap_or_default());
    let chmod = match &chmod_text {
        Some(v) => Some(fsops::Chmod::parse(v).map_err(|e| Error::Invalid(format!("{kw} {e}")))?),
        None => None,
    };
    let chown = match ins.flag("chown") {
        Some(f) => Some(cx.word(st, scope, ins, f.value.as_deref().unwrap_or(""))?),
        None => None,
    };
    let mut flags = String::new();
    if let Some((v, _)) = &from {
        flags.push_str(&format!("--from={v} "));
    }
    if let Some(c) = &chown {
        flags.push_str(&format!("--chown={c} "));
    }
    if let Some(m) = &chmod_text {
        flags.push_str(&format!("--chmod={m} "));
    }
    if ins.flag("link").is_some() {
        flags.push_str("--link ");
    }
    let parents = ins.flag("parents").is_some();
    if parents {
        if is_add {
            return Err(Error::Invalid(
                "ADD does not take --parents (use COPY)".into(),
            ));
        }
        flags.push_str("--parents ");
    }
    let desc = format!("{kw} {flags}{} {dest_word} # buildkit", srcs.join(" "));
    let epoch = cx.opts.source_date_epoch;
    let globbed = srcs.iter().any(|s| crate::ignore::has_glob(s));
    let linked = ins.flag("link").is_some();
    let parent_chain = chain_of(st)?;
    let res = cx.layer(name, st, key, desc, &inputs, linked, move |o, _, _| {
        let root = &o.rootfs;
        let from_tree = match &from_state {
            Some(state) => {
                let m = Overlay::mount(cx.snapshots, &chain_of(state)?, &cx.work)?;
                let t = Tree::rootfs(&m.rootfs);
                Some((m, t))
            }
            None => None,
        };
        let tree = from_tree.as_ref().map(|(_, t)| t).unwrap_or(tree);
        let mut resolved = Vec::new();
        for s in sources {
            match s {
                Src::Pattern(p) => {
                    for (rel, host) in tree.sources(&p, &what)? {
                        if let Some(pv) = pivot_of(&p) {
                            pivots.insert(rel.clone(), pv);
                        }
                        resolved.push(Src::Path(rel, host));
                    }
                }
                s => resolved.push(s),
            }
        }
        let from_excluding;
        let tree = if from_tree.is_some() && !excludes.is_empty() {
            from_excluding = tree.excluding(&excludes, &dirs_of(&resolved));
            resolved.retain(|s| {
                !matches!(s, Src::Path(rel, _) if !rel.is_empty() && from_excluding.ignore.excluded(rel))
            });
            &from_excluding
        } else {
            tree
        };
        let sources = resolved;
        let keep_owner = tree.is_rootfs;
        let multiple = sources.len() > 1 || globbed || parents;
        let owner = match &chown {
            Some(c) => {
                // Names are looked up in the image; a --link layer has none of its own.
                let numeric = c.split(':').all(|p| p.parse::<u32>().is_ok());
                let u = if linked && !numeric && !parent_chain.is_empty() {
                    let parent = Overlay::mount(cx.snapshots, &parent_chain, &cx.work)?;
                    hako_engine::user::resolve(&parent.rootfs, c)?
                } else {
                    hako_engine::user::resolve(root, c)?
                };
                Some((u.uid, u.gid))
            }
            None => None,
        };
        let dir_owner = owner.unwrap_or((0, 0));
        let own = CopyOwner {
            chown: if keep_owner { owner } else { Some(dir_owner) },
            chmod,
        };
        let dest_host = fsops::secure_join(root, &dest)?;
        let dest_is_dir = dest_dir_syntax
            || multiple
            || fs::metadata(&dest_host).is_ok_and(|m| m.is_dir());
        if multiple && !dest_dir_syntax && !fs::metadata(&dest_host).is_ok_and(|m| m.is_dir()) {
            return Err(Error::Invalid(format!(
                "{kw} with several sources: the destination {dest_word} must be a directory ending in /"
            )));
        }
        let filter = |p: &Path| tree.keep(p);
        let file_target = |fname: &str| -> Result<PathBuf> {
            if dest_is_dir {
                let d = fsops::mkdir_all_in(root, &dest, dir_owner)?;
                Ok(d.join(fname))
            } else {
                let parent = Path::new(&dest)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "/".into());
                let p = fsops::mkdir_all_in(root, &parent, dir_owner)?;
                Ok(p.join(fsops::base_name(&dest)))
            }
        };
        for s in &sources {
            match s {
                Src::Pattern(_) => unreachable!("patterns are resolved above"),
                Src::Heredoc(n, body) => {
                    let target = file_target(n)?;
                    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                        return Err(Error::Invalid(format!("{kw}: {dest} is a directory")));
                    }
                    fs::write(&target, body).ctx(|| format!("writing heredoc {n}"))?;
                    let (u, g) = dir_owner;
                    std::os::unix::fs::lchown(&target, Some(u), Some(g))
                        .ctx(|| format!("changing owner of {}", target.display()))?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(chmod.map_or(0o644, |c| c.apply(0o644, false))))
                        .ctx(|| format!("changing mode of {}", target.display()))?;
                    let t = epoch.unwrap_or_else(|| {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs() as i64)
                            .unwrap_or(0)
                    });
                    fsops::set_times(&target, t, 0)?;
                }
                Src::Git(dir) => {
                    // A repository's files go into the destination, like a directory's.
                    let d = fsops::mkdir_all_in(root, &dest, dir_owner)?;
                    let own = CopyOwner {
                        chown: Some(dir_owner),
                        chmod,
                    };
                    for e in fsops::sorted_entries(dir)? {
                        fsops::copy_entry(&e.path(), &d.join(e.file_name()), own, &|_| true)?;
                    }
                }
                Src::Url(n, p) => {
                    let target = file_target(n)?;
                    let own = CopyOwner {
                        chown: Some(dir_owner),
                        chmod: Some(chmod.unwrap_or(fsops::Chmod::parse("600").expect("octal"))),
                    };
                    fsops::copy_entry(p, &target, own, &|_| true)?;
                }
                Src::Path(rel, host) if parents => {
                    // --parents: the source's path (after a `/./` pivot) is kept under dest.
                    let kept = pivots
                        .get(rel)
                        .and_then(|p| rel.strip_prefix(p.as_str()))
                        .map(|r| r.trim_start_matches('/'))
                        .unwrap_or(rel);
                    let target_path = fsops::clean_abs(&format!("{dest}/{kept}"));
                    let m = fs::metadata(host).ctx(|| format!("reading {}", host.display()))?;
                    if m.is_dir() {
                        let d = fsops::mkdir_all_in(root, &target_path, dir_owner)?;
                        for e in fsops::sorted_entries(host)? {
                            let p = e.path();
                            if filter(&p) {
                                fsops::copy_entry(&p, &d.join(e.file_name()), own, &filter)?;
                            }
                        }
                    } else {
                        let parent = Path::new(&target_path)
                            .parent()
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "/".into());
                        let d = fsops::mkdir_all_in(root, &parent, dir_owner)?;
                        fsops::copy_entry(host, &d.join(fsops::base_name(&target_path)), own, &filter)?;
                    }
                }
                Src::Path(rel, host) => {
                    let m = fs::metadata(host).ctx(|| format!("reading {}", host.display()))?;
                    if m.is_dir() {
                        // A directory's contents go into the destination.
                        let d = fsops::mkdir_all_in(root, &dest, dir_owner)?;
                        for e in fsops::sorted_entries(host)? {
                            let p = e.path();
                            if filter(&p) {
                                fsops::copy_entry(&p, &d.join(e.file_name()), own, &filter)?;
                            }
                        }
                    } else if let Some(kind) = is_add.then(|| archive_kind(host)).flatten() {
                        let d = fsops::mkdir_all_in(root, &dest, dir_owner)?;
                        unpack_archive(&d, rel, host, kind)?;
                    } else {
                        let fname = fsops::base_name(rel);
                        let fname = if fname.is_empty() { "file" } else { fname };
                        let target = file_target(fname)?;
                        fsops::copy_entry(host, &target, own, &filter)?;
                    }
                }
            }
        }
        Ok(Vec::new())
    });
    let _ = fs::remove_dir_all(&download_dir);
    res
}
