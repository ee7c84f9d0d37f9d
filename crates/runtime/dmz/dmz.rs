//! hako-dmz: the last step between the container init and the container's
//! process. The init (a fork of hako-runtime) execs this tiny program from a
//! sealed memfd, and it execs the real process:
//!
//!   argv = [path, argv0, argv1, ...]  →  execve(path, [argv0, argv1, ...], envp)
//!
//! Why (CVE-2019-5736): if the container's executable is a script starting
//! `#!/proc/self/exe`, the kernel resolves /proc/self/exe in the exec'ing
//! process. Exec'd straight from the runtime that would be the host's
//! hako-runtime binary, which a container process could then open and overwrite.
//! From here it is this sealed memfd, which nothing can write.
//!
//! No libc (its start-up alone costs more than the rest of this program): raw
//! syscalls, no allocation, and nothing that could call memcpy. Built by the
//! runtime's build.rs with rustc and embedded in hako-runtime.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

#[cfg(target_arch = "x86_64")]
mod sys {
    pub const WRITE: usize = 1;
    pub const EXECVE: usize = 59;
    pub const EXIT_GROUP: usize = 231;
}
#[cfg(target_arch = "aarch64")]
mod sys {
    pub const WRITE: usize = 64;
    pub const EXECVE: usize = 221;
    pub const EXIT_GROUP: usize = 94;
}

// The kernel starts us with the stack pointer at argc, followed by the argv
// pointers, a NULL, the envp pointers and a NULL. Hand that address to Rust.
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym dmz_main,
);
#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x0, sp",
    "bl {main}",
    "brk #0",
    main = sym dmz_main,
);

#[cfg(target_arch = "x86_64")]
unsafe fn syscall3(n: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b,
             in("rdx") c, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}
#[cfg(target_arch = "aarch64")]
unsafe fn syscall3(n: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for syscall `n`.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c,
             options(nostack));
    }
    ret
}

fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice to stderr.
        let n = unsafe { syscall3(sys::WRITE, 2, bytes.as_ptr() as usize, bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = bytes.get(n as usize..).unwrap_or(&[]);
    }
}

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { syscall3(sys::EXIT_GROUP, code, 0, 0) };
    }
}

/// strerror for the failures an exec of a container process really meets.
fn describe(errno: usize) -> &'static [u8] {
    match errno {
        1 => b"operation not permitted",
        2 => b"no such file or directory",
        7 => b"argument list too long",
        8 => b"exec format error",
        12 => b"cannot allocate memory",
        13 => b"permission denied",
        20 => b"not a directory",
        21 => b"is a directory",
        26 => b"text file busy",
        40 => b"too many levels of symbolic links",
        _ => b"exec failed",
    }
}

fn write_number(mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    write_all(&digits[i..]);
}

/// # Safety
/// `sp` is the initial stack pointer the kernel set up.
unsafe extern "C" fn dmz_main(sp: *const usize) -> ! {
    // SAFETY: the initial stack layout is fixed by the ELF ABI.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    if argc < 2 {
        write_all(b"hako-runtime: hako-dmz needs a path and an argv[0]\n");
        exit(127);
    }
    // SAFETY: argv has argc entries and a NULL; envp follows that NULL.
    let (path, envp) = unsafe { (*argv, argv.add(argc + 1)) };
    // SAFETY: path, argv + 1 and envp are the kernel's NUL-terminated arrays.
    let ret = unsafe {
        syscall3(
            sys::EXECVE,
            path as usize,
            argv.add(1) as usize,
            envp as usize,
        )
    };
    let errno = ret.unsigned_abs();
    write_all(b"hako-runtime: exec ");
    // SAFETY: path is a NUL-terminated string from the kernel. (A volatile
    // read, or LLVM turns the loop into a call to libc's strlen.)
    let mut len = 0;
    while unsafe { path.add(len).read_volatile() } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes before the NUL are readable.
    write_all(unsafe { core::slice::from_raw_parts(path, len) });
    write_all(b": ");
    write_all(describe(errno));
    write_all(b" (errno ");
    write_number(errno);
    write_all(b")\n");
    // As a shell: 127 when the file is missing, 126 when it cannot be run.
    exit(if errno == 2 { 127 } else { 126 })
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(127)
}
