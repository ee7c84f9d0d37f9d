//! What a caller asks of `create`, and parsers for docker's textual forms of
//! it ("512m", "/host:/ctr:ro", env files), shared by every front end.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::record::{Bind, Tmpfs};

/// The user's options for a new container; unset fields come from the image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image: replace the image's Cmd.
    pub cmd: Vec<String>,
    /// `--entrypoint`: Some("") clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// `-e` and `--env-file` entries, in order ("KEY=value", or "KEY" to take the caller's value).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub expose: Vec<String>,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<Tmpfs>,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// "none", "host" or a network's name; None is the default network.
    pub network: Option<String>,
    /// `--network-alias`.
    pub network_aliases: Vec<String>,
    /// `-p` (see [`crate::network::ports::parse_publish`]).
    pub publish: Vec<crate::network::ports::PortBinding>,
    /// `-P`.
    pub publish_all: bool,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--security-opt` values (seccomp=..., no-new-privileges, ...).
    pub security_opt: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<crate::record::Ulimit>,
    /// `--init`: tini as the container's pid 1.
    pub init: bool,
    /// `--cpu-shares` (relative weight, 2..262144; 0 unset).
    pub cpu_shares: u64,
    /// `--cpuset-cpus`, `--cpuset-mems` ("0-1", "0,2").
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// A runtime name or path; None is hako-runtime.
    pub runtime: Option<String>,
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
}

/// "512m", "1g", "1024" (bytes), as docker's `--memory`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid size {s:?}: expected a number with an optional k, m, g or t suffix"
        ))
    })?;
    if n.is_nan() || n < 0.0 {
        return Err(Error::Invalid(format!(
            "invalid size {s:?}: must not be negative"
        )));
    }
    Ok((n * mult as f64) as i64)
}

/// "1.5" CPUs → 1_500_000_000 nano CPUs (docker's `--cpus`).
pub fn parse_cpus(s: &str) -> Result<i64> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid --cpus value {s:?}: expected a number")))?;
    if n.is_nan() || n <= 0.0 {
        return Err(Error::Invalid(format!(
            "invalid --cpus value {s:?}: must be positive"
        )));
    }
    Ok((n * 1e9) as i64)
}

/// `-v HOST:CTR[:OPTS]` with an absolute host path. Named volumes are a
/// later slice and are refused with a clear message. Options `ro`/`rw` are
/// honoured; SELinux (`z`, `Z`) and propagation options are accepted.
pub fn parse_bind(s: &str) -> Result<Bind> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        [_] => {
            return Err(Error::Invalid(format!(
                "volume {s:?}: anonymous volumes are not supported yet; give HOST:CONTAINER"
            )))
        }
        _ => {
            return Err(Error::Invalid(format!(
                "invalid volume specification {s:?}"
            )))
        }
    };
    if !src.starts_with('/') {
        return Err(Error::Invalid(format!(
            "volume {s:?}: named volumes are not supported yet; the source must be an absolute host path"
        )));
    }
    if !dst.starts_with('/') {
        return Err(Error::Invalid(format!(
            "volume {s:?}: the container path must be absolute"
        )));
    }
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "private" | "rprivate" | "shared" | "rshared" | "slave"
            | "rslave" | "nocopy" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "volume {s:?}: unknown option {other:?}"
                )))
            }
        }
    }
    Ok(Bind {
        source: src.to_string(),
        destination: dst.to_string(),
        read_only,
    })
}

/// `--tmpfs /path[:opts]`.
pub fn parse_tmpfs(s: &str) -> Result<Tmpfs> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    if !dst.starts_with('/') {
        return Err(Error::Invalid(format!(
            "tmpfs {s:?}: the container path must be absolute"
        )));
    }
    Ok(Tmpfs {
        destination: dst.to_string(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Lines of an `--env-file`: KEY=value or KEY; blank lines and # comments skipped.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).ctx(|| format!("reading env file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// `--label k=v` (a bare key gets an empty value).
pub fn parse_label(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// `--ulimit NAME=SOFT[:HARD]` (docker's names: nofile, nproc, core, ...;
/// -1 is unlimited).
pub fn parse_ulimit(s: &str) -> Result<crate::record::Ulimit> {
    const NAMES: &[&str] = &[
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let bad = |why: &str| Error::Invalid(format!("invalid --ulimit {s:?}: {why}"));
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    if !NAMES.contains(&name) {
        return Err(bad(&format!("unknown limit {name:?}")));
    }
    let num = |v: &str| -> Result<i64> {
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= -1)
            .ok_or_else(|| bad(&format!("{v:?} is not a number")))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    let as_u = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if as_u(soft) > as_u(hard) {
        return Err(bad("the soft limit is above the hard limit"));
    }
    Ok(crate::record::Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cpus_binds() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        let b = parse_bind("/srv:/data:ro").unwrap();
        assert_eq!(
            (b.source.as_str(), b.destination.as_str(), b.read_only),
            ("/srv", "/data", true)
        );
        assert!(parse_bind("vol:/data").is_err());
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert_eq!(parse_ulimit("nproc=-1").unwrap().hard, -1);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=x"] {
            assert!(
                parse_ulimit(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("--ulimit"),
                "{bad}"
            );
        }
        let t = parse_tmpfs("/run:size=64m,mode=755").unwrap();
        assert_eq!(t.options, vec!["size=64m", "mode=755"]);
    }
}
