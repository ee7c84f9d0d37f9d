//! Git sources (ADD of a repository, a repository as the build context),
//! fetched at depth 1 with the host's `git`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsops;

/// Whether an ADD source names a git repository (buildkit's forms).
pub fn is_git(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || (base.contains("://") && base.ends_with(".git"))
}

/// Fetch `URL[#REF[:SUBDIR]]` (depth 1) with the host's git into a new
/// directory under `work`: (the directory to copy, the commit).
pub fn checkout(spec: &str, work: &Path, keep_git_dir: bool) -> Result<(PathBuf, String)> {
    let (url, fragment) = match spec.split_once('#') {
        Some((u, f)) => (u, f),
        None => (spec, ""),
    };
    let (reference, subdir) = match fragment.split_once(':') {
        Some((r, d)) => (r, d),
        None => (fragment, ""),
    };
    let reference = if reference.is_empty() {
        "HEAD"
    } else {
        reference
    };
    fs::create_dir_all(work).ctx(|| format!("creating {}", work.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(work)
        .ctx(|| format!("creating a checkout directory in {}", work.display()))?
        .keep();
    let git = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("{spec}: running git"), e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Invalid(format!(
                "{spec}: git {} failed: {}",
                args.first().unwrap_or(&""),
                err.trim().replace('\n', " ")
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    git(&["init", "-q"])?;
    git(&["fetch", "-q", "--depth", "1", url, reference])?;
    git(&["checkout", "-q", "FETCH_HEAD"])?;
    let commit = git(&["rev-parse", "HEAD"])?;
    if !keep_git_dir {
        fs::remove_dir_all(dir.join(".git")).ctx(|| format!("{spec}: removing .git"))?;
    }
    let src = fsops::secure_join(&dir, subdir)?;
    if !src.is_dir() {
        return Err(Error::Invalid(format!(
            "{spec}: {subdir:?} is not a directory of the repository"
        )));
    }
    Ok((src, commit))
}
