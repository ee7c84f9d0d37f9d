//! `hako cp`: copy files between a container and the host, with docker's
//! rules for names (an existing directory receives the source by its name,
//! a missing path becomes the copy, `SRC/.` copies a directory's contents)
//! and `-` for a tar stream on stdin or stdout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hako_engine::cp::Kind;
use hako_engine::Engine;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hako cp web:/etc/hosts ./hosts\n  hako cp ./site/. web:/www\n  hako cp web:/var/log - | tar -tv"
)]
pub struct CpArgs {
    /// Keep the source's owners (into a container; default: root).
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Follow a symlink given as the source.
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// CONTAINER:PATH, a host path, or - (a tar on stdin).
    pub source: String,
    /// CONTAINER:PATH, a host path, or - (a tar on stdout).
    pub destination: String,
}

/// "web:/etc" → Some(("web", "/etc")); host paths with a colon need ./ or /.
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty())
}

/// The name a copied tree gets: "." for `dir/.` (its contents), else the last component.
fn top_name(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".into();
    }
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

pub fn run(engine: &Engine, a: CpArgs) -> Result<()> {
    // A failed side closes its pipe: the other must see EPIPE, not die of SIGPIPE.
    // SAFETY: setting a disposition to SIG_IGN installs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    match (split(&a.source), split(&a.destination)) {
        (Some((c, src)), None) => copy_out(engine, c, src, &a.destination, a.follow_link),
        (None, Some((c, dst))) => copy_in(engine, &a.source, c, dst, a.archive, a.follow_link),
        (Some(_), Some(_)) => {
            bail!("copying between containers is not supported: copy through the host")
        }
        (None, None) => bail!("one of source and destination must be CONTAINER:PATH"),
    }
}

fn copy_out(engine: &Engine, ctr: &str, src: &str, dst: &str, follow: bool) -> Result<()> {
    if dst == "-" {
        let out = std::io::stdout().lock();
        return Ok(engine.copy_out(ctr, src, follow, &top_name(src), out)?);
    }
    let dst_path = PathBuf::from(dst);
    let (dir, name) = if dst_path.is_dir() {
        (dst_path.clone(), top_name(src))
    } else {
        if dst.ends_with('/') {
            bail!("destination directory {dst} does not exist");
        }
        let parent = dst_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !parent.is_dir() {
            bail!("destination directory {} does not exist", parent.display());
        }
        let name = dst_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("destination has no file name")?;
        (parent, name)
    };
    // Into a private temp directory first, then renamed into place: a
    // failed copy leaves nothing half-written at the destination.
    let staging = tempfile::Builder::new()
        .prefix(".hako-cp-")
        .tempdir_in(&dir)
        .with_context(|| format!("creating a staging directory in {}", dir.display()))?;
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let result = std::thread::scope(|s| -> Result<()> {
        let unpack = s.spawn(|| -> Result<()> {
            let mut ar = tar::Archive::new(reader);
            ar.set_preserve_permissions(true);
            ar.set_preserve_mtime(true);
            ar.set_preserve_ownerships(true);
            ar.set_overwrite(true);
            ar.unpack(staging.path())
                .with_context(|| format!("unpacking into {}", dir.display()))?;
            // The reader stops at the first end block: what follows is read
            // too, so the writer never meets a closed pipe (SIGPIPE).
            let _ = std::io::copy(&mut ar.into_inner(), &mut std::io::sink());
            Ok(())
        });
        let produced = engine.copy_out(ctr, src, follow, &name, writer);
        let unpacked = unpack.join().expect("unpack thread");
        produced?;
        unpacked
    });
    result?;
    for e in std::fs::read_dir(staging.path())? {
        let e = e?;
        let to = dir.join(e.file_name());
        if to.is_dir() && e.path().is_dir() {
            merge_dir(&e.path(), &to)?;
        } else {
            std::fs::rename(e.path(), &to)
                .with_context(|| format!("moving the copy to {}", to.display()))?;
        }
    }
    Ok(())
}

/// Move the entries of `from` into the existing directory `to` (a copy of
/// `dir/.` or into an existing tree overwrites what is there, as docker does).
fn merge_dir(from: &Path, to: &Path) -> Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if target.is_dir() && e.path().is_dir() && !target.is_symlink() {
            merge_dir(&e.path(), &target)?;
        } else {
            if target.is_dir() && !target.is_symlink() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(e.path(), &target)
                .with_context(|| format!("moving the copy to {}", target.display()))?;
        }
    }
    Ok(())
}

fn copy_in(
    engine: &Engine,
    src: &str,
    ctr: &str,
    dst: &str,
    archive: bool,
    follow: bool,
) -> Result<()> {
    if src == "-" {
        return Ok(engine.copy_in(ctr, dst, std::io::stdin().lock())?);
    }
    let mut src_path = PathBuf::from(src);
    if follow {
        src_path = std::fs::canonicalize(&src_path).with_context(|| format!("resolving {src}"))?;
    }
    let meta = std::fs::symlink_metadata(&src_path)
        .with_context(|| format!("no such file or directory: {src}"))?;
    let (dir, name) = match engine.stat_in(ctr, dst)? {
        Kind::Dir => (dst.to_string(), top_name(src)),
        Kind::Other if meta.is_dir() => {
            bail!("cannot copy directory {src} onto file {dst} in container {ctr}")
        }
        Kind::Other | Kind::Missing => {
            if dst.ends_with('/') {
                bail!("destination directory {dst} does not exist in container {ctr}");
            }
            let p = Path::new(dst);
            let parent = p
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or("/".into());
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .context("destination has no file name")?;
            (
                if parent.is_empty() {
                    "/".into()
                } else {
                    parent
                },
                name,
            )
        }
    };
    if engine.stat_in(ctr, &dir)? != Kind::Dir {
        bail!("destination directory {dir} does not exist in container {ctr}");
    }
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    std::thread::scope(|s| -> Result<()> {
        let producer = s.spawn(|| hako_engine::cp::tar_path(&src_path, &name, archive, writer));
        let copied = engine.copy_in(ctr, &dir, reader);
        let produced = producer.join().expect("tar thread");
        copied?;
        produced.with_context(|| format!("reading {src}"))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(split("web:/etc"), Some(("web", "/etc")));
        assert_eq!(split("./a:b"), None);
        assert_eq!(split("/tmp/x"), None);
        assert_eq!(top_name("/etc/hosts"), "hosts");
        assert_eq!(top_name("/www/"), "www");
        assert_eq!(top_name("site/."), ".");
    }
}
