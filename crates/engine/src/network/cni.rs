//! Running CNI plugins (the Container Network Interface spec, 1.0.0): a
//! network's configuration list is executed plugin by plugin for ADD, with
//! each plugin's result handed to the next as `prevResult`, and in reverse
//! for DEL with the cached ADD result. Plugins are the standard binaries
//! (Debian's containernetworking-plugins: bridge, host-local, portmap,
//! firewall, loopback), found on the CNI path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Error, Result};

pub const CNI_VERSION: &str = "1.0.0";

/// Where plugins are looked for: `$HAKO_CNI_PATH` (colon-separated), else
/// Debian's and the upstream install locations.
pub fn plugin_path() -> Vec<PathBuf> {
    match std::env::var_os("HAKO_CNI_PATH") {
        Some(p) => std::env::split_paths(&p).collect(),
        None => vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
    }
}

/// One interface of a container in one network.
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
}

fn find_plugin(typ: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    if typ.is_empty() || typ.contains('/') {
        return Err(Error::Invalid(format!("invalid CNI plugin type {typ:?}")));
    }
    dirs.iter()
        .map(|d| d.join(typ))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::not_found(format!(
                "CNI plugin {typ:?} in {} (install containernetworking-plugins)",
                std::env::join_paths(dirs)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ))
        })
}

/// Execute one plugin; returns its stdout parsed (ADD's result), or Null.
fn exec(
    net: &str,
    command: &str,
    plugin_conf: &Value,
    att: &Attachment,
    dirs: &[PathBuf],
) -> Result<Value> {
    let typ = plugin_conf["type"].as_str().unwrap_or_default();
    let bin = find_plugin(typ, dirs)?;
    let what = || format!("network {net}: CNI plugin {typ} {command}");
    let mut child = Command::new(&bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", att.container_id)
        .env("CNI_NETNS", att.netns)
        .env("CNI_IFNAME", att.ifname)
        .env("CNI_PATH", std::env::join_paths(dirs).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("{}: starting {}", what(), bin.display()), e))?;
    let conf = serde_json::to_vec(plugin_conf).expect("plugin config serialises");
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that fails early may not read its stdin; its exit says why.
        let _ = stdin.write_all(&conf);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("{}: waiting", what()), e))?;
    if !out.status.success() {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let msg = v["msg"].as_str().map(str::to_string).unwrap_or_else(|| {
            String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            })
            .trim()
            .replace('\n', " ")
        });
        let details = v["details"].as_str().unwrap_or_default();
        return Err(Error::Runtime {
            context: what(),
            message: if details.is_empty() {
                msg
            } else {
                format!("{msg}: {details}")
            },
        });
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Error::Runtime {
        context: what(),
        message: format!("malformed result: {e}"),
    })
}

/// A plugin's stdin: its entry of the list plus the list's name and version,
/// the runtime values it declared capabilities for, and the previous result.
fn plugin_conf(list: &Value, plugin: &Value, runtime: &Value, prev: &Value) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(caps) = plugin["capabilities"].as_object() {
        let mut rc = serde_json::Map::new();
        for (k, on) in caps {
            if on.as_bool() == Some(true) && !runtime[k].is_null() {
                rc.insert(k.clone(), runtime[k].clone());
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
    }
    if !prev.is_null() {
        conf["prevResult"] = prev.clone();
    }
    conf
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// ADD every plugin of `list` in order; returns the final result. If one
/// fails, it and those already added are deleted again before the error
/// returns.
pub fn add(list: &Value, att: &Attachment, runtime: &Value) -> Result<Value> {
    let dirs = plugin_path();
    let net = list["name"].as_str().unwrap_or("?");
    let mut prev = Value::Null;
    for (i, p) in plugins(list).iter().enumerate() {
        match exec(
            net,
            "ADD",
            &plugin_conf(list, p, runtime, &prev),
            att,
            &dirs,
        ) {
            Ok(r) => {
                if !r.is_null() {
                    prev = r;
                }
            }
            Err(e) => {
                // The failed plugin too: bridge leaves its veth behind when
                // IPAM fails (an address asked for is taken, say).
                for q in plugins(list)[..=i].iter().rev() {
                    let _ = exec(
                        net,
                        "DEL",
                        &plugin_conf(list, q, runtime, &prev),
                        att,
                        &dirs,
                    );
                }
                return Err(e);
            }
        }
    }
    Ok(prev)
}

/// DEL every plugin of `list` in reverse order with the ADD result; every
/// plugin is asked even if one fails (the first error is returned).
pub fn del(list: &Value, att: &Attachment, runtime: &Value, prev: &Value) -> Result<()> {
    let dirs = plugin_path();
    let net = list["name"].as_str().unwrap_or("?");
    let mut first = None;
    for p in plugins(list).iter().rev() {
        if let Err(e) = exec(net, "DEL", &plugin_conf(list, p, runtime, prev), att, &dirs) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The container-side address, gateway and MAC of an ADD result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// "10.88.0.2" and its prefix length.
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac: String,
}

pub fn endpoint(result: &Value, ifname: &str) -> Endpoint {
    let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let idx = ifaces
        .iter()
        .position(|i| i["name"] == ifname && !i["sandbox"].is_null());
    let mac = idx
        .and_then(|i| ifaces[i]["mac"].as_str())
        .unwrap_or_default()
        .to_string();
    let ip = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|ip| idx.is_none() || ip["interface"].as_u64().map(|n| n as usize) == idx)
        .cloned()
        .unwrap_or(Value::Null);
    let addr = ip["address"].as_str().unwrap_or_default();
    let (a, p) = addr.split_once('/').unwrap_or((addr, "0"));
    Endpoint {
        ip: a.to_string(),
        prefix_len: p.parse().unwrap_or(0),
        gateway: ip["gateway"].as_str().unwrap_or_default().to_string(),
        mac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugin_conf_carries_name_version_capabilities_and_prev() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": []});
        let p = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let rt = json!({"portMappings": [{"hostPort": 1}], "other": 1});
        let c = plugin_conf(&list, &p, &rt, &json!({"ips": []}));
        assert_eq!(c["name"], "n");
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 1}]})
        );
        assert_eq!(c["prevResult"], json!({"ips": []}));
        let c = plugin_conf(&list, &json!({"type": "bridge"}), &rt, &Value::Null);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }

    #[test]
    fn endpoint_of_a_bridge_result() {
        let r = json!({
            "interfaces": [{"name": "br"}, {"name": "veth1"},
                           {"name": "eth0", "mac": "aa:bb", "sandbox": "/ns"}],
            "ips": [{"interface": 2, "address": "10.1.2.3/24", "gateway": "10.1.2.1"}],
        });
        let e = endpoint(&r, "eth0");
        assert_eq!(
            (
                e.ip.as_str(),
                e.prefix_len,
                e.gateway.as_str(),
                e.mac.as_str()
            ),
            ("10.1.2.3", 24, "10.1.2.1", "aa:bb")
        );
    }

    #[test]
    fn a_missing_plugin_is_named() {
        let e = find_plugin("no-such-plugin", &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(
            e.to_string().contains("CNI plugin \"no-such-plugin\""),
            "{e}"
        );
    }
}
