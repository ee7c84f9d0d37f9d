//! What a caller asks of `create`, and parsers for docker's textual forms of
//! it ("512m", "/host:/ctr:ro", env files), shared by every front end.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Context, Error, Result};
use crate::record::{Bind, RestartPolicy, Tmpfs};

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
    /// A runtime name or path; None is hako-runtime.
    pub runtime: Option<String>,
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    /// `--restart` (see [`parse_restart`]).
    pub restart: RestartPolicy,
    /// `--health-*` and `--no-healthcheck`.
    pub health: HealthOptions,
}

/// The user's health check options; unset ones come from the image.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd`, run by /bin/sh -c.
    pub cmd: Option<String>,
    /// Nanoseconds (see [`parse_duration`]).
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub retries: Option<i64>,
    /// `--no-healthcheck`: none, not even the image's.
    pub disabled: bool,
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let bad = |why: &str| Error::Invalid(format!("invalid restart policy {s:?}: {why}"));
    match (name, count) {
        ("no" | "always" | "unless-stopped", None) => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: 0,
        }),
        ("no" | "always" | "unless-stopped", Some(_)) => {
            Err(bad("only on-failure takes a maximum retry count"))
        }
        ("on-failure", c) => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: match c {
                None => 0,
                Some(c) => c
                    .parse()
                    .map_err(|_| bad("the maximum retry count must be a number"))?,
            },
        }),
        _ => Err(bad("expected no, on-failure[:N], always or unless-stopped")),
    }
}

/// A Go duration as docker takes it ("30s", "1m30s", "500ms", "2h") in
/// nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let bad = || {
        Error::Invalid(format!(
            "invalid duration {s:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. 30s"
        ))
    };
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let mut rest = t;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    if t.is_empty() {
        return Err(bad());
    }
    Ok(total as i64)
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
        assert_eq!(
            parse_restart("on-failure:2").unwrap().maximum_retry_count,
            2
        );
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
        let t = parse_tmpfs("/run:size=64m,mode=755").unwrap();
        assert_eq!(t.options, vec!["size=64m", "mode=755"]);
    }
}
