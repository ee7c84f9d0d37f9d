//! Registry configuration: a TOML file (`--config`) whose every field the command line can
//! override.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/hako/registry"
//! htpasswd = "/etc/hako/htpasswd"
//! anonymous_pull = false
//! tls_cert = "/etc/hako/cert.pem"
//! tls_key = "/etc/hako/key.pem"
//! upload_expiry_secs = 86400
//! gc_grace_secs = 3600
//! sendfile = true         # plain HTTP: blob bodies leave with sendfile(2)
//! read_timeout_secs = 60  # request headers, TLS handshake, pauses inside a request body
//! idle_timeout_secs = 120 # a connection with no request in progress and no bytes moving
//! max_connections = 1000  # served at once; more are closed on arrival
//!
//! [[access]]              # optional; without rules authenticated users may do anything
//! account = "alice"       # a user, "*" (any authenticated user) or "anonymous"
//! repositories = "team/*" # a name, a prefix ending in "/*", or "*"
//! actions = ["pull", "push"]   # pull, push, delete or "*"
//!
//! [token]                 # issue and accept bearer tokens at /token
//! secret_file = "/etc/hako/token.key"
//! ttl_secs = 300
//! service = "hako-registry"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
pub const DEFAULT_ROOT: &str = "/var/lib/hako/registry";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    #[serde(default = "default_root")]
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    /// Let clients without credentials pull (but never push or delete).
    #[serde(default)]
    pub anonymous_pull: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default = "default_upload_expiry")]
    pub upload_expiry_secs: u64,
    /// Blobs younger than this survive garbage collection even when unreferenced: they may
    /// belong to a push whose manifest has not arrived yet.
    #[serde(default = "default_gc_grace")]
    pub gc_grace_secs: u64,
    /// Send blob bodies over plain HTTP with sendfile(2): no copy in the server (a third
    /// less server CPU per byte). Off, they are written from a mapping with one copy,
    /// which costs less in total when the only clients copy every byte on the same
    /// machine (a loopback registry); docs/registry.md has the figures.
    #[serde(default = "default_true")]
    pub sendfile: bool,
    /// Longest wait for a request's headers (HTTP/1, counted from when the connection is
    /// ready for the next request, so it also bounds an idle HTTP/1 keep-alive), a TLS
    /// handshake, or the next chunk of a request body; past it the connection (or
    /// request) is closed.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// A connection with no request in progress that moves no byte for this long (idle
    /// keep-alive, half-open, or never sending a request) is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Connections served at once; one more is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    pub token: Option<TokenSettings>,
    /// Authorisation rules; without any, every authenticated user may do everything.
    #[serde(default)]
    pub access: Vec<crate::auth::AccessRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// File holding the HMAC key tokens are signed with (at least 32 bytes).
    pub secret_file: PathBuf,
    #[serde(default = "default_token_ttl")]
    pub ttl_secs: u64,
    #[serde(default = "default_service")]
    pub service: String,
}

fn default_addr() -> SocketAddr {
    DEFAULT_ADDR.parse().expect("default address parses")
}
fn default_root() -> PathBuf {
    PathBuf::from(DEFAULT_ROOT)
}
fn default_upload_expiry() -> u64 {
    24 * 3600
}
fn default_gc_grace() -> u64 {
    3600
}
fn default_true() -> bool {
    true
}
fn default_read_timeout() -> u64 {
    60
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_max_connections() -> usize {
    // Under the usual 1024 open-file soft limit, with room for blob files.
    1000
}
fn default_token_ttl() -> u64 {
    300
}
fn default_service() -> String {
    "hako-registry".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: default_addr(),
            root: default_root(),
            htpasswd: None,
            anonymous_pull: false,
            tls_cert: None,
            tls_key: None,
            upload_expiry_secs: default_upload_expiry(),
            gc_grace_secs: default_gc_grace(),
            sendfile: true,
            read_timeout_secs: default_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_connections: default_max_connections(),
            token: None,
            access: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading registry config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing registry config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("registry config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            source: Box::new(e),
        })?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        for rule in &self.access {
            if let Some(bad) = rule
                .actions
                .iter()
                .find(|a| !matches!(a.as_str(), "pull" | "push" | "delete" | "*"))
            {
                return Err(ConfigError::Invalid(format!(
                    "access rule for {:?} names unknown action {bad:?}",
                    rule.account
                )));
            }
        }
        for (name, v) in [
            ("read_timeout_secs", self.read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_connections", self.max_connections as u64),
        ] {
            // Zero would close every connection (or serve none); a day is plenty.
            if v == 0 || (name != "max_connections" && v > 86_400) {
                return Err(ConfigError::Invalid(format!(
                    "{name} = {v}: must be at least 1{}",
                    if name == "max_connections" {
                        ""
                    } else {
                        " and at most 86400"
                    }
                )));
            }
        }
        if self.token.is_some() && self.htpasswd.is_none() {
            return Err(ConfigError::Invalid(
                "token auth needs htpasswd to authenticate token requests".into(),
            ));
        }
        Ok(())
    }

    pub fn upload_expiry(&self) -> Duration {
        Duration::from_secs(self.upload_expiry_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let c =
            Config::parse("addr = \"127.0.0.1:6000\"\nroot = \"/tmp/r\"\nanonymous_pull = true\n")
                .unwrap();
        assert_eq!(c.addr.port(), 6000);
        assert!(c.anonymous_pull);
        assert_eq!(c.upload_expiry_secs, 86400);
        assert!(Config::parse("tls_cert = \"/c\"").is_err());
        assert!(Config::parse("bogus = 1").is_err());
        assert!(Config::parse("[token]\nsecret_file = \"/k\"").is_err());
        let c = Config::parse(
            "[[access]]\naccount = \"alice\"\nrepositories = \"team/*\"\nactions = [\"pull\", \"push\"]\n",
        )
        .unwrap();
        assert_eq!(c.access.len(), 1);
        assert!(Config::parse(
            "[[access]]\naccount = \"a\"\nrepositories = \"*\"\nactions = [\"write\"]\n"
        )
        .is_err());
    }
}
