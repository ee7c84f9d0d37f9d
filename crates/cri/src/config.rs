//! The `hako cri serve` configuration file (TOML), shaped after
//! containerd's CRI plugin settings: the sandbox image, the CNI
//! configuration directory, registry mirrors and RuntimeClass handlers.
//! Every key has a default, so an empty (or absent) file is valid; unknown
//! keys are refused with their line, so a typo never silently does nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The default CNI configuration directory (kubelet's and containerd's).
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The image run as each pod's infra process; unset: hako's built-in pause.
    pub sandbox_image: Option<String>,
    /// Where the pod network's CNI configuration is read from (a default
    /// bridge configuration is written there when it holds none).
    pub cni_conf_dir: PathBuf,
    /// Registry settings.
    pub registry: RegistryConfig,
    /// RuntimeClass handlers: name -> OCI runtime.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// Where the streaming server (Exec/Attach/PortForward URLs) listens.
    pub stream_server_address: String,
    /// Its port; 0: an ephemeral one.
    pub stream_server_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sandbox_image: None,
            cni_conf_dir: PathBuf::from(DEFAULT_CNI_CONF_DIR),
            registry: RegistryConfig::default(),
            runtimes: BTreeMap::new(),
            stream_server_address: "127.0.0.1".into(),
            stream_server_port: 0,
        }
    }
}

/// `[registry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// `[registry.mirrors."HOST"]`: where images named after HOST are pulled from.
    pub mirrors: BTreeMap<String, Mirror>,
}

/// One registry's mirrors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mirror {
    /// `http://HOST[:PORT]` or `https://HOST[:PORT]`, tried in order.
    pub endpoints: Vec<String>,
    /// Also try the registry itself once every mirror failed (default: never).
    pub fallback: bool,
}

/// `[runtimes.NAME]`: the OCI runtime of a RuntimeClass handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// The runtime binary (runc command line).
    pub path: PathBuf,
}

impl Config {
    /// Parse a configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml's Display is a multi-line snippet: keep its message and
            // say the line ourselves, on one line.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().replace(['\n', '\r'], " ");
            Error::Config(match line {
                Some(l) => format!("{origin} line {l}: {message}"),
                None => format!("{origin}: {message}"),
            })
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Read a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("reading the configuration {}: {e}", path.display()))
        })?;
        Config::parse(&text, &format!("configuration {}", path.display()))
    }

    fn validate(&self, origin: &str) -> Result<()> {
        for (host, m) in &self.registry.mirrors {
            for e in &m.endpoints {
                Endpoint::parse(e).map_err(|why| {
                    Error::Config(format!("{origin}: mirror endpoint {e:?} of {host}: {why}"))
                })?;
            }
        }
        for (name, r) in &self.runtimes {
            if !r.path.is_absolute() {
                return Err(Error::Config(format!(
                    "{origin}: runtime {name}: path {} is not absolute",
                    r.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// A mirror endpoint: a registry host and whether it speaks plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub plain_http: bool,
}

impl Endpoint {
    /// `http://HOST[:PORT]`, `https://HOST[:PORT]` (a trailing `/` or `/v2`
    /// is tolerated, as containerd does), or a bare `HOST[:PORT]` (https,
    /// loopback plain HTTP).
    pub fn parse(s: &str) -> std::result::Result<Endpoint, &'static str> {
        let (plain_http, rest) = if let Some(r) = s.strip_prefix("http://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (false, r)
        } else if s.contains("://") {
            return Err("only http:// and https:// endpoints are supported");
        } else {
            (false, s)
        };
        let host = rest.trim_end_matches('/').trim_end_matches("/v2");
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !valid {
            return Err("not a registry host[:port]");
        }
        Ok(Endpoint {
            host: host.to_string(),
            plain_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse("", "t").unwrap();
        assert_eq!(c.cni_conf_dir, Path::new(DEFAULT_CNI_CONF_DIR));
        assert!(c.sandbox_image.is_none());
        assert!(c.registry.mirrors.is_empty());
    }

    #[test]
    fn the_issue_example_parses() {
        let c = Config::parse(
            r#"
sandbox_image = "registry.k8s.io/pause:3.9"
cni_conf_dir = "/tmp/net.d"
[registry.mirrors."registry.k8s.io"]
endpoints = ["http://127.0.0.1:5000"]
[runtimes.runc]
path = "/usr/sbin/runc"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(
            c.sandbox_image.as_deref(),
            Some("registry.k8s.io/pause:3.9")
        );
        let m = &c.registry.mirrors["registry.k8s.io"];
        assert_eq!(
            Endpoint::parse(&m.endpoints[0]).unwrap(),
            Endpoint {
                host: "127.0.0.1:5000".into(),
                plain_http: true
            }
        );
        assert!(!m.fallback);
        assert_eq!(c.runtimes["runc"].path, Path::new("/usr/sbin/runc"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = Config::parse("cni_conf_dir = \"/x\"\n\nsandbox_imgae = \"p\"\n", "conf")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("conf line 3: unknown field `sandbox_imgae`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = Config::parse("[registry.mirrors.\"a\"]\nendpoint = []\n", "conf")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("conf line 2: unknown field `endpoint`"),
            "{e}"
        );
    }

    #[test]
    fn bad_endpoints_and_relative_runtimes_are_refused() {
        let e = Config::parse(
            "[registry.mirrors.\"a\"]\nendpoints = [\"ftp://x\"]\n",
            "conf",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("mirror endpoint \"ftp://x\" of a"), "{e}");
        let e = Config::parse("[runtimes.x]\npath = \"runc\"\n", "conf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("runtime x: path runc is not absolute"), "{e}");
    }
}
