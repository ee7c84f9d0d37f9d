//! Builds hako-dmz (dmz/dmz.rs): a libc-free static program the container init
//! execs from a sealed memfd on its way to the container's process (see
//! src/selfexe.rs). It is compiled here with the same rustc and embedded in the
//! runtime, so there is no second file to install or to keep in step.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=dmz/dmz.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("hako-dmz");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" || !matches!(arch.as_str(), "x86_64" | "aarch64") {
        // No dmz for this target: the runtime then always re-executes itself
        // from a read-only copy instead.
        std::fs::write(&dest, b"").expect("writing an empty hako-dmz");
        return;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--crate-name",
            "hako_dmz",
        ])
        .args(["--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "strip=symbols", "-C", "relocation-model=static"])
        .args(["-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        .arg("dmz/dmz.rs")
        .arg("-o")
        .arg(&dest)
        // The outer build's flags (crt-static, target-cpu, ...) are for the
        // runtime, not for this program.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running rustc for dmz/dmz.rs");
    assert!(status.success(), "compiling dmz/dmz.rs failed");
}
