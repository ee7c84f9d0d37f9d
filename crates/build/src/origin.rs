//! Where the build context comes from: a directory, a git repository, a tar
//! (or a lone Dockerfile) on standard input or at an http(s) URL. Everything
//! fetched or unpacked lives in the build's [`Scratch`] directory.

use std::fs;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use hako_image::manifest::Compression;

use crate::error::{Error, IoContext, Result};
use crate::scratch::Scratch;

/// A prepared build context.
pub struct Origin {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile when it is not the context's `Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// Holds what was unpacked or fetched until the build ends.
    pub scratch: Option<Scratch>,
}

fn is_remote(arg: &str) -> bool {
    (arg.starts_with("http://") || arg.starts_with("https://")) && !crate::git::is_git(arg)
}

/// Unpack `input` (a tar, compressed or not) into `dir`; false when it is not a tar.
fn unpack(input: &Path, dir: &Path) -> Result<bool> {
    let mut f = fs::File::open(input).ctx(|| format!("reading {}", input.display()))?;
    let mut head = Vec::with_capacity(512);
    (&mut f)
        .take(512)
        .read_to_end(&mut head)
        .ctx(|| format!("reading {}", input.display()))?;
    let compression = Compression::sniff(&head);
    let is_tar =
        compression != Compression::None || (head.len() > 262 && &head[257..262] == b"ustar");
    if !is_tar {
        return Ok(false);
    }
    f.rewind().ctx(|| format!("reading {}", input.display()))?;
    let limits = hako_image::layer::ApplyLimits::for_target(dir)?;
    hako_image::layer::apply(
        dir,
        "the build context",
        std::io::BufReader::new(f),
        compression,
        hako_image::digest::Algorithm::Sha256,
        &limits,
    )?;
    Ok(true)
}

/// Prepare the context `arg` (`-` for standard input) with the Dockerfile
/// `file` (`-` for standard input), reading standard input from `stdin`.
pub fn prepare(arg: &Path, file: Option<&Path>, stdin: &mut dyn Read) -> Result<Origin> {
    let arg_s = arg.to_string_lossy().into_owned();
    let file_stdin = file.is_some_and(|f| f.as_os_str() == "-");
    if arg_s == "-" && file_stdin {
        return Err(Error::Invalid(
            "the build context and the Dockerfile cannot both come from standard input".into(),
        ));
    }
    let needs_scratch = arg_s == "-" || is_remote(&arg_s) || crate::git::is_git(&arg_s);
    if !needs_scratch && !file_stdin {
        // Every build sweeps what killed builds left, even one that needs
        // no directory of its own.
        crate::scratch::sweep(&std::env::temp_dir());
        return Ok(Origin {
            context: arg.to_path_buf(),
            dockerfile: file.map(Path::to_path_buf),
            scratch: None,
        });
    }
    let scratch = Scratch::new()?;
    let mut dockerfile = file.map(Path::to_path_buf);
    let context = if arg_s == "-" || is_remote(&arg_s) {
        // Streamed to a file: a large context never sits in memory.
        let input = if arg_s == "-" {
            let p = scratch.path().join("input");
            let mut f = fs::File::create(&p).ctx(|| format!("creating {}", p.display()))?;
            std::io::copy(stdin, &mut f)
                .ctx(|| "reading the build context from standard input".to_string())?;
            p
        } else {
            let (_, p) = crate::remote::fetch(&arg_s, &scratch.subdir("download")?)
                .map_err(|e| Error::Invalid(format!("fetching the build context {arg_s}: {e}")))?;
            p
        };
        let dir = scratch.subdir("context")?;
        if unpack(&input, &dir)
            .map_err(|e| Error::Invalid(format!("unpacking the build context: {e}")))?
        {
            fs::remove_file(&input).ctx(|| format!("removing {}", input.display()))?;
        } else {
            // A lone Dockerfile: an empty context.
            dockerfile = Some(input);
        }
        dir
    } else if crate::git::is_git(&arg_s) {
        crate::git::checkout(&arg_s, &scratch.subdir("git")?, false)?.0
    } else {
        arg.to_path_buf()
    };
    if file_stdin {
        let p = scratch.path().join("Dockerfile");
        let mut f = fs::File::create(&p).ctx(|| format!("creating {}", p.display()))?;
        std::io::copy(stdin, &mut f)
            .ctx(|| "reading the Dockerfile from standard input".to_string())?;
        dockerfile = Some(p);
    } else {
        // In a tar or git context, a relative -f names a file inside it.
        dockerfile = dockerfile.map(|f| if f.is_relative() { context.join(f) } else { f });
    }
    Ok(Origin {
        context,
        dockerfile,
        scratch: Some(scratch),
    })
}
