//! `RUN --mount=type=cache|bind|tmpfs|secret`: parsed and keyed before the
//! step (a bind's content is part of the cache key, a cache mount's is not),
//! mounted into the step's container.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;
use sha2::{Digest as _, Sha256};

use crate::cache;
use crate::error::{Error, IoContext, Result};
use crate::executor::{chain_of, Cx, Done, Scope};
use crate::fsops::{self, Overlay};
use crate::parser::Instruction;
use crate::run;
use crate::stages::Source;
use crate::state::State;

enum Kind {
    Cache {
        id: String,
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
        ro: bool,
        sharing: Sharing,
        seed: Option<(Box<State>, String)>,
    },
    BindContext {
        host: PathBuf,
        rw: bool,
    },
    BindRootfs {
        state: Box<State>,
        source: String,
        rw: bool,
    },
    Tmpfs {
        size: Option<String>,
    },
    Secret {
        host: PathBuf,
        mode: u32,
        owner: (u32, u32),
    },
    /// An ssh agent socket of the host.
    Ssh {
        socket: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sharing {
    Shared,
    /// One user at a time; others wait.
    Locked,
    /// One user at a time; others get a fresh, throwaway directory.
    Private,
}

/// What mounts hold while their step runs: overlays of other stages, locks.
#[derive(Default)]
pub(crate) struct Keep {
    overlays: Vec<Overlay>,
    locks: Vec<fs::File>,
}

/// flock(2) the file: exclusive, blocking or not. False when busy.
fn lock(f: &fs::File, wait: bool) -> Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    // SAFETY: the descriptor belongs to `f`, open for the whole call.
    let r = unsafe { libc::flock(f.as_raw_fd(), op) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(Error::io("locking a cache mount".to_string(), e))
}

pub(crate) struct RunMount {
    /// What the cache key learns of the mount.
    pub key: String,
    target: String,
    kind: Kind,
}

fn num(what: &str, v: &str) -> Result<u32> {
    v.parse()
        .map_err(|_| Error::Invalid(format!("RUN --mount {what}={v}: not a number")))
}

fn octal(v: &str) -> Result<u32> {
    u32::from_str_radix(v.trim_start_matches("0o"), 8)
        .map_err(|_| Error::Invalid(format!("RUN --mount mode={v}: not an octal mode")))
}

/// The state and key of a `from=` stage or image.
fn source_state(cx: &Cx<'_>, deps: &HashMap<usize, Done>, from: &str) -> Result<(State, String)> {
    match cx.graph.source(from) {
        Source::Stage(n) => {
            let d = deps.get(&n).ok_or_else(|| {
                Error::Unsupported(format!(
                    "RUN --mount from={from} outside the stage's dependencies (in ONBUILD)"
                ))
            })?;
            Ok((d.state.clone(), d.key.clone()))
        }
        Source::Image(name) => {
            if cx.opts.named_dir(&name).is_some() {
                return Err(Error::Unsupported(format!(
                    "RUN --mount from={from}: a directory build context (COPY --from takes it)"
                )));
            }
            let d = cx
                .source_image(&name)
                .ok_or_else(|| Error::Invalid(format!("image {name} not found")))?;
            Ok((d.state.clone(), d.key.clone()))
        }
    }
}

/// Parse every `--mount` of a RUN.
pub(crate) fn parse_all(
    cx: &Cx<'_>,
    ins: &Instruction,
    st: &State,
    scope: &Scope,
    deps: &HashMap<usize, Done>,
) -> Result<Vec<RunMount>> {
    let mut out = Vec::new();
    for raw in ins.flag_values("mount") {
        let v = cx.word(st, scope, ins, raw)?;
        let mut f: HashMap<String, String> = HashMap::new();
        let mut flags = Vec::new();
        for kv in v.split(',') {
            match kv.split_once('=') {
                Some((k, v)) => {
                    f.insert(k.to_ascii_lowercase(), v.to_string());
                }
                None => flags.push(kv.to_ascii_lowercase()),
            }
        }
        let flag = |n: &str| {
            flags.iter().any(|x| x == n) || f.get(n).is_some_and(|v| v == "true" || v.is_empty())
        };
        let typ = f.get("type").cloned().unwrap_or_else(|| "bind".into());
        let target = f
            .get("target")
            .or_else(|| f.get("dst"))
            .or_else(|| f.get("destination"))
            .cloned();
        let id_or = |t: &str| f.get("id").cloned().unwrap_or_else(|| t.to_string());
        let owner = match (f.get("uid"), f.get("gid")) {
            (None, None) => None,
            (u, g) => Some((
                u.map(|u| num("uid", u)).transpose()?.unwrap_or(0),
                g.map(|g| num("gid", g)).transpose()?.unwrap_or(0),
            )),
        };
        let mode = f.get("mode").map(|m| octal(m)).transpose()?;
        let ro = flag("ro") || flag("readonly");
        let m = match typ.as_str() {
            "cache" => {
                let target = target
                    .ok_or_else(|| Error::Invalid("RUN --mount=type=cache needs target=".into()))?;
                let sharing = match f.get("sharing").map(String::as_str) {
                    None | Some("shared") => Sharing::Shared,
                    Some("locked") => Sharing::Locked,
                    Some("private") => Sharing::Private,
                    Some(s) => {
                        return Err(Error::Invalid(format!(
                            "RUN --mount sharing={s}: must be shared, private or locked"
                        )))
                    }
                };
                // from=: what a new (empty) cache starts with.
                let seed = match f.get("from") {
                    None => None,
                    Some(from) => {
                        let (state, _) = source_state(cx, deps, from)?;
                        let source = f
                            .get("source")
                            .or_else(|| f.get("src"))
                            .cloned()
                            .unwrap_or_default();
                        Some((Box::new(state), source))
                    }
                };
                let id = id_or(&target);
                RunMount {
                    key: format!("cache id={id} target={target} ro={ro}"),
                    target,
                    kind: Kind::Cache {
                        id,
                        owner,
                        mode,
                        ro,
                        sharing,
                        seed,
                    },
                }
            }
            "bind" => {
                let target = target
                    .ok_or_else(|| Error::Invalid("RUN --mount=type=bind needs target=".into()))?;
                let source = f
                    .get("source")
                    .or_else(|| f.get("src"))
                    .cloned()
                    .unwrap_or_default();
                let rw = flag("rw") || flag("readwrite");
                match f.get("from") {
                    None => {
                        let tree = &cx.context;
                        let (rel, host) = tree
                            .sources(&source, "RUN --mount=type=bind")?
                            .into_iter()
                            .next()
                            .expect("sources returns one at least");
                        let mut h = Sha256::new();
                        tree.hash_into(&rel, &host, &mut h)?;
                        RunMount {
                            key: format!(
                                "bind context:{} target={target} {}",
                                rel,
                                cache::hex(&h.finalize())
                            ),
                            target,
                            kind: Kind::BindContext { host, rw },
                        }
                    }
                    Some(from) => {
                        let (state, key) = source_state(cx, deps, from)?;
                        RunMount {
                            key: format!("bind from={key} source={source} target={target} rw={rw}"),
                            target,
                            kind: Kind::BindRootfs {
                                state: Box::new(state),
                                source,
                                rw,
                            },
                        }
                    }
                }
            }
            "tmpfs" => {
                let target = target
                    .ok_or_else(|| Error::Invalid("RUN --mount=type=tmpfs needs target=".into()))?;
                let size = f.get("size").cloned();
                RunMount {
                    key: format!("tmpfs target={target} size={size:?}"),
                    target,
                    kind: Kind::Tmpfs { size },
                }
            }
            "secret" => {
                let id = f
                    .get("id")
                    .cloned()
                    .or_else(|| target.as_deref().map(|t| fsops::base_name(t).to_string()))
                    .ok_or_else(|| Error::Invalid("RUN --mount=type=secret needs id=".into()))?;
                let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                let host = match cx.opts.secrets.get(&id) {
                    Some(p) => p.clone(),
                    None if flag("required") => {
                        return Err(Error::Invalid(format!(
                            "secret {id} is required but not given (--secret id={id},src=FILE)"
                        )))
                    }
                    None => continue, // an optional secret that is not given is not mounted
                };
                RunMount {
                    // Secrets never enter the cache key: their content must not leak.
                    key: format!("secret id={id} target={target}"),
                    target,
                    kind: Kind::Secret {
                        host,
                        mode: mode.unwrap_or(0o400),
                        owner: owner.unwrap_or((0, 0)),
                    },
                }
            }
            "ssh" => {
                let id = f.get("id").cloned().unwrap_or_else(|| "default".into());
                let n = out
                    .iter()
                    .filter(|m: &&RunMount| matches!(m.kind, Kind::Ssh { .. }))
                    .count();
                let target = target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}"));
                let socket = match cx.opts.ssh.get(&id) {
                    Some(p) => p.clone(),
                    // ssh mounts are required unless required=false.
                    None if f.get("required").map(String::as_str) == Some("false") => continue,
                    None => {
                        return Err(Error::Invalid(format!(
                            "ssh agent {id} is required but not given (--ssh {id}[=SOCKET])"
                        )))
                    }
                };
                RunMount {
                    key: format!("ssh id={id} target={target}"),
                    target,
                    kind: Kind::Ssh { socket },
                }
            }
            t => return Err(Error::Unsupported(format!("RUN --mount=type={t}"))),
        };
        if !m.target.starts_with('/') {
            return Err(Error::Invalid(format!(
                "RUN --mount target {}: must be an absolute path",
                m.target
            )));
        }
        out.push(m);
    }
    Ok(out)
}

/// Paths below `dir` (relative to it) the context's .dockerignore excludes.
fn hidden(
    tree: &crate::context::Tree,
    dir: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    for e in fsops::sorted_entries(dir)? {
        let p = e.path();
        let r = rel.join(e.file_name());
        if !tree.keep(&p) {
            out.push(r);
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            hidden(tree, &p, &r, out)?;
        }
    }
    Ok(())
}

impl RunMount {
    /// The environment the mount adds: `SSH_AUTH_SOCK` for an ssh agent.
    pub(crate) fn env(&self) -> Option<String> {
        matches!(self.kind, Kind::Ssh { .. }).then(|| format!("SSH_AUTH_SOCK={}", self.target))
    }

    /// The runtime-spec mount; overlays it needs are pushed to `keep`.
    pub(crate) fn mount(&self, cx: &Cx<'_>, o: &Overlay, keep: &mut Keep) -> Result<Mount> {
        let t = self.target.as_str();
        Ok(match &self.kind {
            Kind::Cache {
                id,
                owner,
                mode,
                ro,
                sharing,
                seed,
            } => {
                let mut dir = cx.cache.mount_dir(id)?;
                if let Some((state, source)) = seed {
                    if fsops::is_empty_dir(&dir)? {
                        let from = Overlay::mount(cx.snapshots, &chain_of(state)?, &cx.work)?;
                        let src = fsops::secure_join(&from.rootfs, source)?;
                        for e in fsops::sorted_entries(&src)? {
                            let own = fsops::CopyOwner::default();
                            fsops::copy_entry(&e.path(), &dir.join(e.file_name()), own, &|_| true)?;
                        }
                    }
                }
                if *sharing != Sharing::Shared {
                    let lock_path = dir.with_extension("lock");
                    let f = fs::File::create(&lock_path)
                        .ctx(|| format!("opening lock of cache mount {id}"))?;
                    if lock(&f, *sharing == Sharing::Locked)? {
                        keep.locks.push(f);
                    } else {
                        // private and in use: a fresh directory, dropped with the step.
                        dir = o.dir.join(format!("cache-{}", cache::hex(id.as_bytes())));
                        fs::create_dir_all(&dir)
                            .ctx(|| format!("creating a private cache mount {id}"))?;
                    }
                }
                if let Some((u, g)) = owner {
                    std::os::unix::fs::chown(&dir, Some(*u), Some(*g))
                        .ctx(|| format!("changing owner of cache mount {id}"))?;
                }
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode.unwrap_or(0o755)))
                    .ctx(|| format!("changing mode of cache mount {id}"))?;
                run::bind(t, &dir, *ro)
            }
            Kind::BindContext { host, rw } => {
                let hidden = if host.is_dir() {
                    let mut v = Vec::new();
                    hidden(&cx.context, host, Path::new(""), &mut v)?;
                    v
                } else {
                    Vec::new()
                };
                if !rw && hidden.is_empty() {
                    return Ok(run::bind(t, host, true));
                }
                if !host.is_dir() {
                    return Err(Error::Unsupported(
                        "RUN --mount=type=bind,rw of a single file of the build context".into(),
                    ));
                }
                // An overlay hides what .dockerignore excludes and takes the writes
                // of an rw mount, so the context itself is never changed.
                let ov = Overlay::over_dir(host, &hidden, &cx.work)?;
                let m = run::bind(t, &ov.rootfs, !rw);
                keep.overlays.push(ov);
                m
            }
            Kind::BindRootfs { state, source, rw } => {
                let ov = Overlay::mount(cx.snapshots, &chain_of(state)?, &cx.work)?;
                let host = fsops::secure_join(&ov.rootfs, source)?;
                keep.overlays.push(ov);
                run::bind(t, &host, !rw)
            }
            Kind::Tmpfs { size } => {
                let mut opts = vec!["nosuid", "nodev", "mode=1777"];
                let s;
                if let Some(size) = size {
                    s = format!("size={size}");
                    opts.push(&s);
                }
                run::mount(t, "tmpfs", "tmpfs", &opts)
            }
            Kind::Ssh { socket } => run::bind(t, socket, false),
            Kind::Secret { host, mode, owner } => {
                // A private copy with the requested owner and mode, outside the rootfs.
                let dir = o.dir.join("secrets");
                fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
                let copy = dir.join(cache::hex(t.as_bytes()));
                fs::copy(host, &copy).ctx(|| format!("reading secret {}", host.display()))?;
                std::os::unix::fs::chown(&copy, Some(owner.0), Some(owner.1))
                    .ctx(|| "changing owner of a secret".to_string())?;
                fs::set_permissions(&copy, fs::Permissions::from_mode(*mode))
                    .ctx(|| "changing mode of a secret".to_string())?;
                run::bind(t, &copy, true)
            }
        })
    }
}
