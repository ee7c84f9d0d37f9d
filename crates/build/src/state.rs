//! The state of a stage between steps: its layers, the image config in
//! docker's format (which has fields OCI's config lacks: Healthcheck,
//! OnBuild, Shell) and the history. The cache stores it after every step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// docker's `config` object of an image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Where each variable of `env` is, so ENV and lookups cost O(1), not
    /// O(variables): 10 000 ENV lines were quadratic.
    #[serde(skip)]
    index: EnvIndex,
}

/// A lazily built index of `env`: name -> position of its (last) entry,
/// valid while `env` has the length it was built for (every change other
/// than [`ContainerConfig::env_set`] changes the length or is rare enough
/// to be caught by the entry check in lookups).
#[derive(Default)]
struct EnvIndex(Mutex<Option<(usize, HashMap<String, usize>)>>);

impl Clone for EnvIndex {
    fn clone(&self) -> Self {
        EnvIndex::default()
    }
}

impl PartialEq for EnvIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for EnvIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvIndex")
    }
}

fn env_name(kv: &str) -> &str {
    kv.split_once('=').map_or(kv, |(k, _)| k)
}

impl ContainerConfig {
    /// The position of `name`'s last entry in `env`.
    fn env_position(&self, name: &str) -> Option<usize> {
        let mut guard = self.index.0.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |env: &[String]| {
            let map: HashMap<String, usize> = env
                .iter()
                .enumerate()
                .map(|(i, kv)| (env_name(kv).to_string(), i))
                .collect();
            (env.len(), map)
        };
        match &*guard {
            Some((len, _)) if *len == self.env.len() => {}
            _ => *guard = Some(fresh(&self.env)),
        }
        let (_, map) = guard.as_ref().expect("index built");
        match map.get(name) {
            Some(&i) if self.env.get(i).is_some_and(|kv| env_name(kv) == name) => Some(i),
            Some(_) => {
                // Changed behind the index: rebuild once.
                *guard = Some(fresh(&self.env));
                guard.as_ref().expect("index built").1.get(name).copied()
            }
            None => None,
        }
    }

    pub fn env_get(&self, name: &str) -> Option<String> {
        let i = self.env_position(name)?;
        self.env[i].split_once('=').map(|(_, v)| v.to_string())
    }

    pub fn env_set(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        match self.env_position(name) {
            Some(i) => self.env[i] = entry,
            None => {
                self.env.push(entry);
                let len = self.env.len();
                let mut guard = self.index.0.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((l, map)) = guard.as_mut() {
                    *l = len;
                    map.insert(name.to_string(), len - 1);
                }
            }
        }
    }
}

/// docker's healthcheck (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One history entry (OCI/docker image config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// A layer of the stage: its blob and diff id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    pub blob: String,
    pub media_type: String,
    pub size: u64,
    pub diff_id: String,
}

/// Everything a stage has built so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub layers: Vec<Layer>,
    pub config: ContainerConfig,
    pub history: Vec<History>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Time of the last step (RFC 3339), the image's `created`.
    #[serde(default)]
    pub created: String,
}

impl State {
    /// The image config JSON (docker's format, which OCI tools read).
    pub fn image_config(&self) -> Value {
        let mut v = serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config,
            "created": self.created,
            "history": self.history,
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
        });
        if let Some(variant) = &self.variant {
            v["variant"] = Value::String(variant.clone());
        }
        if let Some(author) = &self.author {
            v["author"] = Value::String(author.clone());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_index_follows_every_change() {
        let mut c = ContainerConfig::default();
        for i in 0..20_000 {
            c.env_set(&format!("V{i}"), &i.to_string());
        }
        c.env_set("V7", "seven");
        assert_eq!(c.env.len(), 20_000);
        assert_eq!(c.env_get("V7").as_deref(), Some("seven"));
        assert_eq!(c.env_get("V19999").as_deref(), Some("19999"));
        assert_eq!(c.env_get("V20000"), None);
        // Changes made to `env` directly are seen too.
        c.env.insert(0, "PATH=/bin".into());
        assert_eq!(c.env_get("PATH").as_deref(), Some("/bin"));
        assert_eq!(c.env_get("V7").as_deref(), Some("seven"));
        c.env[1] = "OTHER=x".into();
        assert_eq!(c.env_get("V0"), None);
        assert_eq!(c.env_get("OTHER").as_deref(), Some("x"));
        // The last entry of a duplicated name wins, as before.
        let mut d: ContainerConfig =
            serde_json::from_str(r#"{"Env":["A=1","B=2","A=3"]}"#).unwrap();
        assert_eq!(d.env_get("A").as_deref(), Some("3"));
        d.env_set("A", "4");
        assert_eq!(d.env_get("A").as_deref(), Some("4"));
        // Clones and round trips keep the values.
        let e = d.clone();
        assert_eq!(e, d);
        assert_eq!(e.env_get("B").as_deref(), Some("2"));
    }
}
