//! Device rules on cgroup v2: cgroup2 has no devices controller; the kernel
//! instead runs BPF_PROG_TYPE_CGROUP_DEVICE programs attached to the cgroup on
//! every device open and mknod (Documentation/admin-guide/cgroup-v2.rst,
//! "Device controller"). This module compiles the OCI rules into such a
//! program and attaches it through the bpf(2) syscall directly, so no BPF
//! toolchain or library is needed.
//!
//! The program mirrors v1 semantics: the rules are checked last to first and
//! the first that matches decides; when none matches the access is allowed,
//! as a fresh v1 devices cgroup allows everything (specs start their list with
//! a deny-all rule). An allow rule matches when it grants every requested
//! access; a deny rule when it denies any of them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{devices::access, CgroupError, Result};

/// One eBPF instruction (struct bpf_insn): opcode, dst/src registers packed in
/// one byte (dst in the low nibble), offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used (linux/bpf.h: class | operation | source).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; } where
// access_type = (access << 16) | device type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

fn access_bits(r: &LinuxDeviceCgroup) -> Result<u32> {
    Ok(access(r)?
        .chars()
        .map(|c| match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => ACC_MKNOD,
        })
        .fold(0, |a, b| a | b))
}

/// Compiles the rules into the program's instructions.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    // Prologue: r2 = device type, r3 = requested access, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    let mut shadowed = false;
    for r in rules.iter().rev() {
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            LinuxDeviceType::P => {
                return Err(CgroupError::InvalidValue {
                    field: "devices".into(),
                    reason: "type \"p\" (fifo) is not a device the cgroup controls".into(),
                })
            }
        };
        let mask = access_bits(r)?;
        let num = |n: Option<i64>, what: &str| -> Result<Option<i32>> {
            match n {
                Some(n) if n >= 0 => {
                    i32::try_from(n)
                        .map(Some)
                        .map_err(|_| CgroupError::InvalidValue {
                            field: "devices".into(),
                            reason: format!("{what} {n} is out of range"),
                        })
                }
                _ => Ok(None),
            }
        };
        let major = num(r.major(), "major")?;
        let minor = num(r.minor(), "minor")?;
        // Each test jumps to the end of this rule's block when it fails; the
        // offsets are filled in once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps: Vec<usize> = Vec::new();
        if let Some(t) = typ {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 2, 0, 0, t));
        }
        if mask != 0b111 {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            if r.allow() {
                // Matches when nothing outside the rule's access is asked for.
                block.push(insn(ALU32_AND_K, 1, 0, 0, (!mask & 0b111) as i32));
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, 1, 0, 0, 0));
            } else {
                // Matches when any denied access is asked for.
                block.push(insn(ALU32_AND_K, 1, 0, 0, mask as i32));
                jumps.push(block.len());
                block.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(m) = major {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 4, 0, 0, m));
        }
        if let Some(m) = minor {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 5, 0, 0, m));
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(r.allow())));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for j in jumps.iter().copied() {
            block[j].off = (len - j - 1) as i16;
        }
        p.extend(block);
        if jumps.is_empty() {
            // A rule matching everything: earlier rules can never decide.
            shadowed = true;
            break;
        }
    }
    if !shadowed {
        p.push(insn(ALU32_MOV_K, 0, 0, 0, 1));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    Ok(p)
}

// bpf(2) commands and constants.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The BPF_PROG_LOAD part of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The BPF_PROG_ATTACH / BPF_PROG_DETACH part of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The BPF_PROG_QUERY part of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The BPF_PROG_GET_FD_BY_ID part of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T, what: &str) -> Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] prefix of union
    // bpf_attr for `cmd`, and its exact size is passed, so the kernel reads and
    // writes only within it. Pointers inside it refer to buffers that outlive
    // the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(CgroupError::Sys {
            what: what.to_string(),
            source: nix::Error::last(),
        });
    }
    Ok(ret)
}

/// Loads the program; on a verifier rejection the error carries its log.
fn load(dir: &Path, insns: &[Insn]) -> Result<OwnedFd> {
    let license = CString::new("Apache-2.0").expect("no NUL");
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"hako_devcg");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    match bpf(
        BPF_PROG_LOAD,
        &mut attr,
        "loading the device cgroup BPF program",
    ) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr, "") {
                // SAFETY: as above.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            if text.is_empty() {
                Err(e)
            } else {
                Err(CgroupError::Other {
                    dir: dir.to_path_buf(),
                    what: format!("loading the device BPF program: {e}; verifier log: {text}"),
                })
            }
        }
    }
}

/// Replaces the device program(s) attached to the cgroup at `dir` by one for
/// `rules`. The new program is attached before the old ones are detached, so
/// the cgroup is never left without a device policy.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let insns = program(rules)?;
    let prog = load(dir, &insns)?;
    let cg = std::fs::File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let ctx = |what: &str| format!("cgroup {}: {what}", dir.display());

    let mut ids = [0u32; 64];
    let mut q = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(
        BPF_PROG_QUERY,
        &mut q,
        &ctx("querying attached device programs"),
    )?;
    let old: Vec<u32> = ids[..(q.prog_cnt as usize).min(ids.len())].to_vec();
    // Programs attached without BPF_F_ALLOW_MULTI can only be replaced by
    // attaching with the same (no) flags; otherwise add ours alongside and
    // detach the old ones.
    let multi = old.is_empty() || q.attach_flags & BPF_F_ALLOW_MULTI != 0;
    let mut a = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: if multi { BPF_F_ALLOW_MULTI } else { 0 },
        ..Default::default()
    };
    bpf(
        BPF_PROG_ATTACH,
        &mut a,
        &ctx("attaching the device program"),
    )?;
    if !multi {
        return Ok(());
    }
    for id in old {
        let mut g = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let fd = bpf(
            BPF_PROG_GET_FD_BY_ID,
            &mut g,
            &ctx(&format!("opening old device program {id}")),
        )?;
        // SAFETY: a successful BPF_PROG_GET_FD_BY_ID returns a new fd we own.
        let old_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut d = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(
            BPF_PROG_DETACH,
            &mut d,
            &ctx(&format!("detaching old device program {id}")),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::default_device_rules;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Runs the subset of eBPF that `program` emits, as the kernel would.
    fn run(p: &[Insn], typ: u32, acc: u32, major: u32, minor: u32) -> u32 {
        let ctx = [(acc << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
                ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                ALU32_MOV_K => r[dst] = u64::from(i.imm as u32),
                ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
                JMP_JEQ_K | JMP_JNE_K => {
                    let eq = r[dst] == i.imm as i64 as u64;
                    if eq == (i.code == JMP_JEQ_K) {
                        pc += i.off as usize;
                    }
                }
                JMP_EXIT => return r[0] as u32,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(acc.to_string());
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    const R: u32 = ACC_READ;
    const W: u32 = ACC_WRITE;
    const M: u32 = ACC_MKNOD;
    const C: u32 = DEV_CHAR as u32;
    const B: u32 = DEV_BLOCK as u32;

    #[test]
    fn deny_all_then_defaults() {
        let mut rules = vec![rule(false, LinuxDeviceType::A, None, None, "rwm")];
        rules.extend(default_device_rules());
        let p = program(&rules).unwrap();
        assert_eq!(run(&p, C, R | W, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, C, R, 136, 7), 1, "a pty");
        assert_eq!(run(&p, C, R, 1, 11), 0, "/dev/kmsg");
        assert_eq!(run(&p, B, R, 8, 0), 0, "a disk");
        assert_eq!(run(&p, B, M, 8, 0), 1, "mknod of a disk");
        assert_eq!(run(&p, B, M | R, 8, 0), 0, "mknod+read of a disk");
        // The deny-all rule shadows nothing before it, so no default epilogue.
        assert_eq!(p.last().unwrap().code, JMP_EXIT);
    }

    #[test]
    fn partial_access_and_later_rules_win() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, None, None, ""),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw"),
            rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        ];
        let p = program(&rules).unwrap();
        assert_eq!(run(&p, C, R, 1, 3), 1);
        assert_eq!(run(&p, C, W, 1, 3), 0);
        assert_eq!(run(&p, C, R | W, 1, 3), 0);
        assert_eq!(run(&p, C, M, 1, 3), 0, "m was never allowed");
    }

    #[test]
    fn without_deny_all_unmatched_access_is_allowed() {
        let rules = vec![rule(false, LinuxDeviceType::B, None, None, "rwm")];
        let p = program(&rules).unwrap();
        assert_eq!(run(&p, B, R, 8, 0), 0);
        assert_eq!(run(&p, C, R, 1, 3), 1);
    }

    #[test]
    fn rejects_fifo_rules() {
        let err = program(&[rule(true, LinuxDeviceType::P, None, None, "r")]).unwrap_err();
        assert!(err.to_string().contains("fifo"));
    }
}
