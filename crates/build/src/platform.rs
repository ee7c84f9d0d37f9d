//! Build platforms: `--platform` and `FROM --platform` values parsed and
//! normalised as containerd does (`x86_64` → `amd64`, `aarch64` → `arm64`,
//! `arm` → `arm/v7`, …), the automatic platform args, and whether this
//! machine can execute a platform's programs (natively, or through a
//! binfmt_misc handler such as qemu-user-static's).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hako_image::manifest::PlatformSpec;

use crate::error::{Error, Result};

/// The CPU architectures hako knows, with their aliases.
fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let v = variant.map(str::to_ascii_lowercase);
    let v = v.as_deref();
    let (arch, variant) = match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64", v.filter(|v| *v != "v1")),
        "i386" | "i486" | "i586" | "i686" | "386" => ("386", None),
        "aarch64" | "arm64" => ("arm64", v.filter(|v| !matches!(*v, "8" | "v8" | "v8.0"))),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "arm" => (
            "arm",
            Some(match v {
                None | Some("7") | Some("v7") => "v7",
                Some("5") => "v5",
                Some("6") => "v6",
                Some("8") => "v8",
                Some(other) => other,
            }),
        ),
        other => (other, v),
    };
    (arch.to_string(), variant.map(str::to_string))
}

/// Normalise a platform (aliases, default variants).
pub fn normalise(p: &PlatformSpec) -> PlatformSpec {
    let os = match p.os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_string(),
        o => o.to_string(),
    };
    let (architecture, variant) =
        normalise_arch(&p.architecture.to_ascii_lowercase(), p.variant.as_deref());
    PlatformSpec {
        os,
        architecture,
        variant,
    }
}

/// This machine's platform, normalised.
pub fn host() -> PlatformSpec {
    normalise(&PlatformSpec::host())
}

/// Parse `os/arch[/variant]` (or a lone `arch` or `os`, completed with this
/// machine's) and normalise it. Only `linux` can be built.
pub fn parse(s: &str) -> Result<PlatformSpec> {
    let s = s.trim();
    let parts: Vec<&str> = s.split('/').collect();
    let raw = match parts.as_slice() {
        [one] if !one.is_empty() => {
            let (arch, _) = normalise_arch(&one.to_ascii_lowercase(), None);
            if ELF.iter().any(|(a, ..)| *a == arch) {
                PlatformSpec {
                    os: "linux".into(),
                    architecture: one.to_string(),
                    variant: None,
                }
            } else {
                PlatformSpec {
                    os: one.to_string(),
                    ..host()
                }
            }
        }
        _ => PlatformSpec::parse(s).map_err(|_| {
            Error::Invalid(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ))
        })?,
    };
    let p = normalise(&raw);
    if p.os != "linux" {
        return Err(Error::Unsupported(format!(
            "platform {s}: building for os {} (only linux)",
            p.os
        )));
    }
    Ok(p)
}

/// A comma-separated `--platform` list, each parsed; duplicates dropped.
pub fn parse_list(s: &str) -> Result<Vec<PlatformSpec>> {
    let mut out: Vec<PlatformSpec> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let p = parse(part)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("invalid platform {s:?}: empty")));
    }
    Ok(out)
}

/// Whether an image's platform (from its config) serves a request: same os
/// and architecture, and the requested variant when one is asked for.
pub fn matches(want: &PlatformSpec, os: &str, arch: &str, variant: Option<&str>) -> bool {
    let have = normalise(&PlatformSpec {
        os: os.to_string(),
        architecture: arch.to_string(),
        variant: variant.map(str::to_string),
    });
    have.os == want.os
        && have.architecture == want.architecture
        && (want.variant.is_none() || have.variant == want.variant)
}

/// `TARGETPLATFORM`, `TARGETOS`, … and `BUILDPLATFORM`, … for a build for `target` here.
pub fn automatic_args(target: &PlatformSpec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (prefix, p) in [("TARGET", target.clone()), ("BUILD", host())] {
        out.insert(format!("{prefix}PLATFORM"), p.to_string());
        out.insert(format!("{prefix}OS"), p.os.clone());
        out.insert(format!("{prefix}ARCH"), p.architecture.clone());
        out.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    out
}

/// ELF identification of each architecture: (arch, 64-bit, big-endian, e_machine).
const ELF: &[(&str, bool, bool, u16)] = &[
    ("amd64", true, false, 0x3e),
    ("386", false, false, 0x03),
    ("arm64", true, false, 0xb7),
    ("arm", false, false, 0x28),
    ("ppc64le", true, false, 0x15),
    ("ppc64", true, true, 0x15),
    ("s390x", true, true, 0x16),
    ("riscv64", true, false, 0xf3),
    ("mips64le", true, false, 0x08),
    ("mips64", true, true, 0x08),
    ("mipsle", false, false, 0x08),
    ("mips", false, true, 0x08),
    ("loong64", true, false, 0x102),
];

/// The first 20 bytes of an executable of `arch` (what binfmt_misc handlers match).
fn elf_header(arch: &str) -> Option<[u8; 20]> {
    let &(_, wide, big, machine) = ELF.iter().find(|(a, ..)| *a == arch)?;
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = if wide { 2 } else { 1 };
    h[5] = if big { 2 } else { 1 };
    h[6] = 1;
    let (t, m) = if big {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    h[16..18].copy_from_slice(&t);
    h[18..20].copy_from_slice(&m);
    Some(h)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Whether an enabled handler in `dir` (a binfmt_misc mount) matches `header`.
fn handler_for(dir: &Path, header: &[u8]) -> Option<String> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        let Ok(text) = fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.lines();
        if lines.next() != Some("enabled") {
            continue;
        }
        let (mut offset, mut magic, mut mask) = (None, None, None);
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("offset ") {
                offset = v.trim().parse::<usize>().ok();
            } else if let Some(v) = l.strip_prefix("magic ") {
                magic = unhex(v.trim());
            } else if let Some(v) = l.strip_prefix("mask ") {
                mask = unhex(v.trim());
            }
        }
        let (Some(offset), Some(magic)) = (offset, magic) else {
            continue; // an extension handler
        };
        let hit = magic.iter().enumerate().all(|(i, m)| {
            let byte = header.get(offset + i).copied().unwrap_or(0);
            let k = mask
                .as_ref()
                .and_then(|k| k.get(i))
                .copied()
                .unwrap_or(0xff);
            byte & k == *m
        });
        if hit {
            return Some(name);
        }
    }
    None
}

/// Whether programs of `p` can run on this machine: natively (the host's
/// architecture, or 32-bit x86/arm on their 64-bit hosts) or through a
/// registered binfmt_misc handler. The error says why not, in a few words.
pub fn can_run(p: &PlatformSpec) -> std::result::Result<(), String> {
    can_run_in(p, &host(), Path::new("/proc/sys/fs/binfmt_misc"))
}

fn can_run_in(
    p: &PlatformSpec,
    host: &PlatformSpec,
    binfmt: &Path,
) -> std::result::Result<(), String> {
    let native = p.architecture == host.architecture
        || (host.architecture == "amd64" && p.architecture == "386")
        || (host.architecture == "arm64" && p.architecture == "arm");
    if p.os == host.os && native {
        return Ok(());
    }
    let Some(header) = elf_header(&p.architecture) else {
        return Err(format!(
            "hako knows no executable format for architecture {}",
            p.architecture
        ));
    };
    if !binfmt.join("status").exists() {
        return Err("binfmt_misc is not mounted, so no emulator can be registered".into());
    }
    if fs::read_to_string(binfmt.join("status")).is_ok_and(|s| s.trim() == "disabled") {
        return Err("binfmt_misc is disabled".into());
    }
    match handler_for(binfmt, &header) {
        Some(_) => Ok(()),
        None => Err("no binfmt_misc handler registered for it".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        parse(s)
            .map(|p| p.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("Linux/AMD64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/arm/6"), "linux/arm/v6");
        assert_eq!(p("linux/i686"), "linux/386");
        assert_eq!(p("linux/amd64/v3"), "linux/amd64/v3");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(p("s390x"), "linux/s390x");
        assert!(
            p("windows/amd64").contains("only linux"),
            "{}",
            p("windows/amd64")
        );
        assert!(p("linux/").starts_with("error"));
        assert!(p("a/b/c/d").starts_with("error"));
        let l: Vec<String> = parse_list("linux/amd64, linux/arm64,linux/x86_64")
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(l, ["linux/amd64", "linux/arm64"]);
        assert!(matches(
            &parse("linux/arm64").unwrap(),
            "linux",
            "arm64",
            Some("v8")
        ));
        assert!(matches(&parse("linux/arm").unwrap(), "linux", "arm", None));
        assert!(!matches(
            &parse("linux/arm/v6").unwrap(),
            "linux",
            "arm",
            Some("v7")
        ));
        assert!(!matches(
            &parse("linux/arm64").unwrap(),
            "linux",
            "amd64",
            None
        ));
        let a = automatic_args(&parse("linux/arm/v7").unwrap());
        assert_eq!(a["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(a["TARGETVARIANT"], "v7");
        assert_eq!(a["BUILDPLATFORM"], host().to_string());
    }

    #[test]
    fn binfmt_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let amd64 = parse("linux/amd64").unwrap();
        let arm64 = parse("linux/arm64").unwrap();
        let s390x = parse("linux/s390x").unwrap();
        assert_eq!(can_run_in(&amd64, &amd64, dir.path()), Ok(()));
        assert_eq!(
            can_run_in(&parse("linux/386").unwrap(), &amd64, dir.path()),
            Ok(())
        );
        assert!(can_run_in(&arm64, &amd64, dir.path())
            .unwrap_err()
            .contains("not mounted"));
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        assert!(can_run_in(&arm64, &amd64, dir.path())
            .unwrap_err()
            .contains("no binfmt_misc handler"));
        // qemu-user-static's aarch64 entry, as the kernel shows it.
        fs::write(
            dir.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        assert_eq!(can_run_in(&arm64, &amd64, dir.path()), Ok(()));
        assert!(can_run_in(&s390x, &amd64, dir.path()).is_err());
        fs::write(
            dir.path().join("qemu-aarch64"),
            "disabled\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n",
        )
        .unwrap();
        assert!(can_run_in(&arm64, &amd64, dir.path()).is_err());
    }
}
