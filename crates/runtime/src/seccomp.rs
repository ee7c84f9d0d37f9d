//! `linux.seccomp`: compiling the spec's profile into a seccomp BPF program and
//! loading it into the container's init just before execve.
//!
//! Compilation uses libseccomp (Debian's, through the `libseccomp` crate), which
//! knows every architecture's syscall numbers and builds correct multi-arch
//! filters. It runs in the runtime before fork; the result is kept as the raw
//! BPF instructions, so loading in the child is a single seccomp(2) call with
//! no allocation and no library state, safe after fork in a process that may
//! have had other threads.
//!
//! Like runc, hako-runtime does not set no_new_privs on load: the caller sets it
//! when `process.noNewPrivileges` asks, and otherwise the process must still
//! hold CAP_SYS_ADMIN when [`Filter::load`] runs.

use std::collections::HashSet;
use std::fs::File;
use std::io::{IoSlice, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: unknown syscall {name:?}")]
    UnknownSyscall { field: String, name: String },
    #[error("{field}: libseccomp: {source}")]
    Libseccomp {
        field: String,
        source: libseccomp::error::SeccompError,
    },
    #[error("exporting the compiled seccomp program: {0}")]
    Export(String),
    #[error(
        "loading the seccomp filter (seccomp(SECCOMP_SET_MODE_FILTER, flags {flags:#x})): {source}"
    )]
    Load { flags: u32, source: nix::Error },
    #[error("sending the seccomp listener fd to {}: {source}", path.display())]
    Send {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = SeccompError> = std::result::Result<T, E>;

// seccomp(2) constants (linux/seccomp.h); libc lacks some of the newer flags.
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_NEW_LISTENER: u32 = 8;
const FLAG_TSYNC_ESRCH: u32 = 16;
const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// A compiled seccomp profile, ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: u32,
    notify: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    skipped: Vec<String>,
}

impl Filter {
    /// Installs the filter on the calling thread (and, with
    /// SECCOMP_FILTER_FLAG_TSYNC, all its threads). Returns the user-notification
    /// listener fd when the profile uses SCMP_ACT_NOTIFY.
    pub fn load(&self) -> Result<Option<OwnedFd>> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `self.program`, which outlives the call; the
        // kernel copies the program and does not keep the pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(SeccompError::Load {
                flags: self.flags,
                source: nix::Error::last(),
            });
        }
        if self.notify {
            // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful call
            // returns a new fd that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }));
        }
        if ret > 0 && self.flags & FLAG_TSYNC != 0 {
            // TSYNC without NEW_LISTENER reports the thread it could not sync.
            return Err(SeccompError::Load {
                flags: self.flags,
                source: nix::Error::EAGAIN,
            });
        }
        Ok(None)
    }

    /// Whether loading returns a notification listener fd.
    pub fn has_notify(&self) -> bool {
        self.notify
    }

    /// `linux.seccomp.listenerPath`, where [`send_listener_fd`] sends the fd.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// `linux.seccomp.listenerMetadata`, to put into the state sent with the fd.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// Syscall names [`compile_lenient`] skipped because libseccomp does not know
    /// them.
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

/// Validates and compiles the profile. A syscall name libseccomp does not know
/// is an error naming the field (`linux.seccomp.syscalls[3].names[0]`).
pub fn compile(spec: &LinuxSeccomp) -> Result<Filter> {
    build(spec, false)
}

/// Like [`compile`], but skips syscall names libseccomp does not know, as runc
/// does: published profiles (Docker's, podman's) list syscalls newer than the
/// host's libseccomp. The skipped names are in [`Filter::skipped_syscalls`] for
/// the caller to log.
pub fn compile_lenient(spec: &LinuxSeccomp) -> Result<Filter> {
    build(spec, true)
}

/// Like [`compile`], but keeps compiled programs under `cache_dir` keyed by a
/// digest of the profile and the libseccomp version, as crun does: compiling a
/// default allowlist through libseccomp costs several milliseconds, a third of
/// a container start, and engines send the same profile every time. Only
/// profiles that compiled (and so passed validation) are cached. A cache that
/// cannot be read or written is ignored: the profile is compiled as without it.
pub fn compile_cached(spec: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter> {
    let Some(key) = cache_key(spec) else {
        return compile(spec);
    };
    let path = cache_dir.join(format!("{key}.bpf"));
    if let Some(program) = read_cached(&path) {
        if let Ok(filter) = from_program(spec, program) {
            return Ok(filter);
        }
    }
    let filter = compile(spec)?;
    let _ = write_cached(cache_dir, &path, &filter.program);
    Ok(filter)
}

/// The cache's directory under the runtime root: `@` is not allowed in a
/// container id, so no container's state directory can take the name.
pub const CACHE_DIR: &str = "@seccomp-cache";

/// The cache format; bump when the meaning of a cached program changes.
const CACHE_FORMAT: &str = "hako-seccomp-cache-1";
/// Past this many entries the cache is emptied before the next write, so a
/// stream of distinct profiles cannot grow it without bound.
const CACHE_MAX_ENTRIES: usize = 256;

fn cache_key(spec: &LinuxSeccomp) -> Option<String> {
    let json = serde_json::to_vec(spec).ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(CACHE_FORMAT.as_bytes());
    h.update(
        format!(
            "\0{}.{}.{}\0{}\0",
            v.major,
            v.minor,
            v.micro,
            std::env::consts::ARCH
        )
        .as_bytes(),
    );
    h.update(&json);
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn read_cached(path: &Path) -> Option<Vec<libc::sock_filter>> {
    let bytes = std::fs::read(path).ok()?;
    decode_program(&bytes).ok()
}

fn write_cached(dir: &Path, path: &Path, program: &[libc::sock_filter]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if std::fs::read_dir(dir)?.count() >= CACHE_MAX_ENTRIES {
        for e in std::fs::read_dir(dir)?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut f = File::create(&tmp)?;
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for i in program {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    f.write_all(&bytes)?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The Filter for `spec` around an already compiled program: the same fields
/// [`build`] derives from the spec, without going through libseccomp.
fn from_program(spec: &LinuxSeccomp, program: Vec<libc::sock_filter>) -> Result<Filter> {
    let notify = spec
        .syscalls()
        .iter()
        .flatten()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify && !r.names().is_empty());
    Ok(Filter {
        program,
        flags: load_flags(spec, notify),
        notify,
        listener_path: spec.listener_path().clone(),
        listener_metadata: spec.listener_metadata().clone(),
        skipped: Vec::new(),
    })
}

fn action(action: LinuxSeccompAction, errno_ret: Option<u32>, field: &str) -> Result<ScmpAction> {
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    if errno > u16::MAX as u32 {
        return Err(SeccompError::Invalid {
            field: field.into(),
            reason: format!("errnoRet {errno} does not fit the 16-bit action data"),
        });
    }
    Ok(match action {
        // SCMP_ACT_KILL is the historical name of killing the thread.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno as i32),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        // As in runc, errnoRet doubles as the value the tracer sees.
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

fn condition(arg: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare> {
    if arg.index() > 5 {
        return Err(SeccompError::Invalid {
            field: format!("{field}.index"),
            reason: format!("{} is not a syscall argument index (0-5)", arg.index()),
        });
    }
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The spec's `value` is the mask and `valueTwo` the value compared
        // against after masking, as libseccomp's datum_a/datum_b. `valueTwo`
        // is optional and absent means 0: Go's spec types omit a zero value, so
        // profiles written by containerd, CRI-O and podman lack it.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                arg.index() as u32,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            ));
        }
    };
    Ok(ScmpArgCompare::new(arg.index() as u32, op, arg.value()))
}

fn flag_bits(spec: &LinuxSeccomp) -> u32 {
    spec.flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        })
        .fold(0, |a, b| a | b)
}

/// The seccomp(2) flags: the spec's, plus a listener when a rule notifies.
fn load_flags(spec: &LinuxSeccomp, notify: bool) -> u32 {
    let mut flags = flag_bits(spec);
    if notify {
        flags |= FLAG_NEW_LISTENER;
        // With both, the kernel would overload the return value; ESRCH makes
        // thread-sync failures an error instead.
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    }
    flags
}

fn build(spec: &LinuxSeccomp, lenient: bool) -> Result<Filter> {
    let lib = |field: &str| {
        let field = field.to_string();
        move |source| SeccompError::Libseccomp { field, source }
    };
    if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::Invalid {
            field: "linux.seccomp.defaultAction".into(),
            reason:
                "SCMP_ACT_NOTIFY cannot be the default action (the runtime's own calls would block)"
                    .into(),
        });
    }
    let default = action(
        spec.default_action(),
        spec.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("linux.seccomp.defaultAction"))?;
    for (i, arch) in spec.architectures().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.architectures[{i}]");
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let a: ScmpArch = name.parse().map_err(|_| SeccompError::Invalid {
            field: field.clone(),
            reason: format!("architecture {name:?} is unknown to libseccomp"),
        })?;
        if !ctx.is_arch_present(a).map_err(lib(&field))? {
            ctx.add_arch(a).map_err(lib(&field))?;
        }
    }
    let mut notify = false;
    let mut skipped = Vec::new();
    for (i, rule) in spec.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(
            rule.action(),
            rule.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        let conds = rule
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, a)| Ok((a.index(), condition(a, &format!("{field}.args[{j}]"))?)))
            .collect::<Result<Vec<_>>>()?;
        for (j, name) in rule.names().iter().enumerate() {
            let nfield = format!("{field}.names[{j}]");
            let sc = match ScmpSyscall::from_name(name) {
                Ok(sc) => sc,
                Err(_) if lenient => {
                    skipped.push(name.clone());
                    continue;
                }
                Err(_) => {
                    return Err(SeccompError::UnknownSyscall {
                        field: nfield,
                        name: name.clone(),
                    })
                }
            };
            // libseccomp rejects a rule whose action is the default one; it
            // would change nothing anyway.
            if act == default {
                continue;
            }
            if act == ScmpAction::Notify {
                notify = true;
            }
            add_rule(&mut ctx, act, sc, &conds).map_err(lib(&nfield))?;
        }
    }
    if notify && spec.listener_path().is_none() {
        return Err(SeccompError::Invalid {
            field: "linux.seccomp.listenerPath".into(),
            reason: "required when a rule uses SCMP_ACT_NOTIFY".into(),
        });
    }
    Ok(Filter {
        program: export(&ctx)?,
        flags: load_flags(spec, notify),
        notify,
        listener_path: spec.listener_path().clone(),
        listener_metadata: spec.listener_metadata().clone(),
        skipped,
    })
}

/// One rule per syscall with all conditions ANDed, except when conditions repeat
/// an argument index: then each condition is its own rule (ORed). That is how
/// runc reads profiles (Docker's lists several allowed values for one argument
/// as separate entries), and libseccomp cannot AND two tests of one argument.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    act: ScmpAction,
    sc: ScmpSyscall,
    conds: &[(usize, ScmpArgCompare)],
) -> std::result::Result<(), libseccomp::error::SeccompError> {
    if conds.is_empty() {
        ctx.add_rule(act, sc)?;
        return Ok(());
    }
    let indexes: HashSet<usize> = conds.iter().map(|(i, _)| *i).collect();
    if indexes.len() == conds.len() {
        let all: Vec<ScmpArgCompare> = conds.iter().map(|(_, c)| *c).collect();
        ctx.add_rule_conditional(act, sc, &all)?;
    } else {
        for (_, c) in conds {
            ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))?;
        }
    }
    Ok(())
}

/// Exports the program libseccomp built as raw sock_filter instructions, through
/// a memfd (libseccomp 2.5 can only export to an fd).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let err = |what: &str, e: std::io::Error| SeccompError::Export(format!("{what}: {e}"));
    // SAFETY: the name is a valid NUL-terminated string; the returned fd (if
    // any) is new and owned by nothing else.
    let fd = unsafe { libc::memfd_create(c"hako-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(err("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is owned only here.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(|e| SeccompError::Export(e.to_string()))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| err("reading the exported program", e))?;
    decode_program(&bytes)
}

/// Raw sock_filter instructions, as libseccomp exports them, into the program.
fn decode_program(bytes: &[u8]) -> Result<Vec<libc::sock_filter>> {
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty()
        || !bytes.len().is_multiple_of(INSN)
        || bytes.len() / INSN > u16::MAX as usize
    {
        return Err(SeccompError::Export(format!(
            "program of {} bytes is not a whole number of 8-byte instructions (or too long)",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Sends the notify listener fd to `listener_path` (a unix stream socket) with
/// `state_json`, the runtime-spec's container process state, as the message
/// body and the fd as SCM_RIGHTS ancillary data.
pub fn send_listener_fd(listener_path: &Path, fd: BorrowedFd, state_json: &[u8]) -> Result<()> {
    let err = |source| SeccompError::Send {
        path: listener_path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(listener_path).map_err(err)?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(state_json)];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| err(e.into()))?;
    if sent != state_json.len() {
        // The receiver reads one message; a short send would truncate the state.
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes of state", state_json.len()),
        )));
    }
    Ok(())
}

/// The `linux.seccomp` part of `hako-runtime features` (runtime-spec
/// features.md): what this build understands and what the kernel supports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    pub enabled: bool,
    pub actions: Vec<&'static str>,
    pub operators: Vec<&'static str>,
    pub archs: Vec<&'static str>,
    pub known_flags: Vec<&'static str>,
    pub supported_flags: Vec<&'static str>,
}

const FLAGS: [(&str, u32); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", FLAG_LOG),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", FLAG_SPEC_ALLOW),
    // The kernel accepts it only together with a listener.
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER,
    ),
];

/// Whether the running kernel accepts the filter flag bits: seccomp(2) checks
/// the flags before it reads the program, so a NULL program fails with EFAULT
/// for known flags and EINVAL for unknown ones, installing nothing.
pub fn kernel_supports_flags(bits: u32) -> bool {
    // SAFETY: the NULL program pointer is never dereferenced by a filter
    // install: the kernel either rejects the flags or fails copying from NULL.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            bits as libc::c_uint,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && nix::Error::last() == nix::Error::EFAULT
}

pub fn features() -> Features {
    const ARCHS: [&str; 24] = [
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K",
        "SCMP_ARCH_SH",
        "SCMP_ARCH_SHEB",
        "SCMP_ARCH_NATIVE",
    ];
    Features {
        enabled: true,
        actions: vec![
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_TRAP",
        ],
        operators: vec![
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_LE",
            "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ",
            "SCMP_CMP_NE",
        ],
        // Only those the linked libseccomp knows.
        archs: ARCHS
            .into_iter()
            .filter(|a| a.parse::<ScmpArch>().is_ok())
            .collect(),
        known_flags: FLAGS.iter().map(|(n, _)| *n).collect(),
        supported_flags: FLAGS
            .iter()
            .filter(|(_, bits)| kernel_supports_flags(*bits))
            .map(|(n, _)| *n)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn same_program(a: &Filter, b: &Filter) -> bool {
        a.program.len() == b.program.len()
            && a.program
                .iter()
                .zip(&b.program)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    #[test]
    fn the_cache_returns_what_libseccomp_compiles_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(CACHE_DIR);
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
                "flags":["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                             "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let direct = compile(&s).unwrap();
        let miss = compile_cached(&s, &cache).unwrap();
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one cached program");
        let hit = compile_cached(&s, &cache).unwrap();
        for f in [&miss, &hit] {
            assert!(same_program(&direct, f));
            assert_eq!(f.flags, direct.flags);
            assert_eq!(f.notify, direct.notify);
        }
        // A different profile is a different entry, never the cached program.
        let other = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let o = compile_cached(&other, &cache).unwrap();
        assert!(same_program(&compile(&other).unwrap(), &o));
        assert!(!same_program(&direct, &o));
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // A truncated entry is ignored and rewritten.
        let path = files[0].path();
        std::fs::write(&path, b"xyz").unwrap();
        let again = compile_cached(&s, &cache).unwrap();
        assert!(same_program(&direct, &again));
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            direct.program.len() * 8
        );
        // An unwritable cache location still compiles.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        assert!(same_program(
            &direct,
            &compile_cached(&s, &blocked.join("x")).unwrap()
        ));
    }

    #[test]
    fn compiles_a_profile_with_conditions_and_flags() {
        let f = compile(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "flags":["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls":[{"names":["mkdir","getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                            {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[
                               {"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":0,"value":9,"op":"SCMP_CMP_EQ"}]},
                            {"names":["clone"],"action":"SCMP_ACT_KILL_PROCESS","args":[
                               {"index":0,"value":2080505856,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        ))
        .unwrap();
        assert!(f.len() > 5);
        assert!(!f.has_notify());
        assert_eq!(f.flags, FLAG_LOG);
    }

    #[test]
    fn syscalls_of_other_architectures_are_accepted() {
        // Profiles list syscalls that exist only on some architectures; on the
        // others libseccomp leaves them out rather than failing.
        let f = compile(&spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["socketcall","ipc",
               "arm_fadvise64_64","s390_pci_mmio_read","sync_file_range2","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert!(!f.is_empty());
    }

    #[test]
    fn unknown_syscall_names_the_field() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_LOG"},
               {"names":["getcwd","no_such_call"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let err = compile(&s).unwrap_err().to_string();
        assert_eq!(
            err,
            "linux.seccomp.syscalls[1].names[1]: unknown syscall \"no_such_call\""
        );
        let f = compile_lenient(&s).unwrap();
        assert_eq!(f.skipped_syscalls(), ["no_such_call".to_string()]);
    }

    #[test]
    fn validates_fields() {
        let bad_index = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
               "args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(compile(&bad_index)
            .unwrap_err()
            .to_string()
            .starts_with("linux.seccomp.syscalls[0].args[0].index"));
        // valueTwo is optional (absent is 0): the same program as with 0.
        let masked = |two: &str| {
            spec(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["read"],"action":"SCMP_ACT_ERRNO",
                   "args":[{{"index":0,"value":1{two},"op":"SCMP_CMP_MASKED_EQ"}}]}}]}}"#
            ))
        };
        assert!(same_program(
            &compile(&masked("")).unwrap(),
            &compile(&masked(r#","valueTwo":0"#)).unwrap()
        ));
        assert!(!same_program(
            &compile(&masked("")).unwrap(),
            &compile(&masked(r#","valueTwo":1"#)).unwrap()
        ));
        let notify_default = spec(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#);
        assert!(compile(&notify_default)
            .unwrap_err()
            .to_string()
            .starts_with("linux.seccomp.defaultAction"));
        let notify_no_path = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(compile(&notify_no_path)
            .unwrap_err()
            .to_string()
            .starts_with("linux.seccomp.listenerPath"));
        let big_errno = spec(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#);
        assert!(compile(&big_errno)
            .unwrap_err()
            .to_string()
            .starts_with("linux.seccomp.defaultErrnoRet"));
    }

    #[test]
    fn notify_with_tsync_sets_esrch_and_listener() {
        let f = compile(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/x.sock","flags":["SECCOMP_FILTER_FLAG_TSYNC"],
               "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap();
        assert!(f.has_notify());
        assert_eq!(f.flags, FLAG_TSYNC | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH);
        assert_eq!(f.listener_path(), Some(Path::new("/run/x.sock")));
    }
}
