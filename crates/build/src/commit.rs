//! `commit` and `diff`: a container's writable layer (the overlay upper
//! directory) as a new image on top of its image, and as the list of paths
//! it added, changed and deleted.
//!
//! The mount points the runtime made for the engine's bind mounts, volumes
//! and tmpfs (an empty `/etc/hosts` the image lacked, say) are not the
//! user's changes and stay out of both, as docker keeps them in a separate
//! init layer.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hako_engine::{Engine, Status};
use hako_image::images::{format_rfc3339, ImageStore};
use hako_image::metadata::ImageRecord;
use hako_image::progress::Progress;
use hako_image::{Digest, Reference};
use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsops;

/// What `commit` records beside the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub names: Vec<Reference>,
    /// `-a`: the image's author.
    pub author: Option<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-c`: Dockerfile instructions applied to the config (CMD, ENTRYPOINT,
    /// ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL).
    pub changes: Vec<String>,
    /// `-p`: freeze a running container while its layer is read (default on).
    pub pause: bool,
}

/// One line of `diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 'A' added, 'C' changed, 'D' deleted.
    pub kind: char,
    pub path: String,
}

/// The container's upper directory, the lower directories of its image
/// (top first) and the mount points to leave out.
struct Layers {
    name: String,
    upper: PathBuf,
    lowers: Vec<PathBuf>,
    skip: Vec<PathBuf>,
}

fn layers_of(engine: &Engine, store: &ImageStore, what: &str) -> Result<(Layers, ImageRecord)> {
    let c = engine.get(what)?;
    let dir = engine.container_dir(&c.id);
    let upper = dir.join("upper");
    if !upper.is_dir() {
        return Err(Error::Invalid(format!(
            "container {}: it has no writable layer (its root filesystem was never mounted)",
            c.name
        )));
    }
    let rec = store.find(&c.image_id).map_err(|e| {
        Error::Invalid(format!(
            "container {}: its image {} is gone: {e}",
            c.name, c.image_id
        ))
    })?;
    let image = store.load_image(&rec)?;
    let diff_ids: Vec<Digest> = image
        .config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse())
        .collect::<std::result::Result<_, _>>()?;
    let lowers = hako_image::snapshot::chain_ids(&diff_ids)
        .iter()
        .rev()
        .map(|id| store.snapshots().fs_path(id))
        .collect();
    // Mount destinations from the bundle the runtime was given.
    let spec: Value = fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let skip = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .map(|d| PathBuf::from(d.trim_start_matches('/')))
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    Ok((
        Layers {
            name: c.name.clone(),
            upper,
            lowers,
            skip,
        },
        rec,
    ))
}

/// What the container changed in its image's filesystem, sorted by path.
pub fn diff(engine: &Engine, store: &ImageStore, what: &str) -> Result<Vec<Change>> {
    let (l, _) = layers_of(engine, store, what)?;
    let mut out = Vec::new();
    walk(&l, Path::new(""), &mut out)?;
    Ok(out)
}

/// Record the changes under `rel` (relative to the upper directory); true
/// if anything was recorded, so that a directory copied up only for a
/// left-out mount point is not reported as changed.
fn walk(l: &Layers, rel: &Path, out: &mut Vec<Change>) -> Result<bool> {
    let dir = l.upper.join(rel);
    let mut any = false;
    for e in fsops::sorted_entries(&dir)? {
        let name = rel.join(e.file_name());
        if l.skip.contains(&name) {
            continue;
        }
        let host = e.path();
        let m = fs::symlink_metadata(&host).ctx(|| format!("reading {}", host.display()))?;
        let shown = format!("/{}", name.display());
        if fsops::is_whiteout_entry(&m) {
            out.push(Change {
                kind: 'D',
                path: shown,
            });
            any = true;
            continue;
        }
        let below = l
            .lowers
            .iter()
            .any(|low| fs::symlink_metadata(low.join(&name)).is_ok());
        if !below {
            out.push(Change {
                kind: 'A',
                path: shown,
            });
            if m.is_dir() {
                walk(l, &name, out)?;
            }
            any = true;
            continue;
        }
        if m.is_dir() {
            let at = out.len();
            let inner = walk(l, &name, out)?;
            // A directory in the upper layer was copied up: changed if
            // something below it changed, or its own attributes did.
            let own = lower_meta(l, &name).is_some_and(|lm| {
                lm.mode() != m.mode() || lm.uid() != m.uid() || lm.gid() != m.gid()
            });
            if inner || own {
                out.insert(
                    at,
                    Change {
                        kind: 'C',
                        path: shown,
                    },
                );
                any = true;
            }
        } else {
            out.push(Change {
                kind: 'C',
                path: shown,
            });
            any = true;
        }
    }
    Ok(any)
}

fn lower_meta(l: &Layers, name: &Path) -> Option<fs::Metadata> {
    l.lowers
        .iter()
        .find_map(|low| fs::symlink_metadata(low.join(name)).ok())
}

/// A new image: the container's image plus its writable layer, with the
/// container's configuration (command, environment, …) and `o.changes`.
pub fn commit(
    engine: &Engine,
    store: &mut ImageStore,
    what: &str,
    o: &CommitOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let c = engine.get(what)?;
    let pause = o.pause && c.state.status == Status::Running && !engine.is_paused(&c);
    if pause {
        engine.pause(&c.id)?;
    }
    let res = commit_layer(engine, store, &c, o, progress);
    // Thawed whatever happened; an unpause failure matters only after a good commit.
    if pause {
        let thawed = engine.unpause(&c.id);
        if res.is_ok() {
            thawed?;
        }
    }
    res
}

fn commit_layer(
    engine: &Engine,
    store: &mut ImageStore,
    c: &hako_engine::Container,
    o: &CommitOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let (l, base) = layers_of(engine, store, &c.id)?;
    let image = store.load_image(&base)?;
    let mut config = image.config_json.clone();
    let created = format_rfc3339(hako_engine::clock::unix_now());
    let cfg = &c.config;
    let mut inner = config["config"].as_object().cloned().unwrap_or_default();
    let list = |v: &[String]| -> Value {
        if v.is_empty() {
            Value::Null
        } else {
            json!(v)
        }
    };
    inner.insert("Env".into(), list(&cfg.env));
    inner.insert("Cmd".into(), list(&cfg.cmd));
    inner.insert("Entrypoint".into(), list(&cfg.entrypoint));
    let text = |s: &str| -> Value {
        if s.is_empty() {
            Value::Null
        } else {
            json!(s)
        }
    };
    inner.insert("WorkingDir".into(), text(&cfg.working_dir));
    inner.insert("User".into(), text(&cfg.user));
    inner.insert("StopSignal".into(), text(&cfg.stop_signal));
    let set = |keys: &[String]| -> Value {
        if keys.is_empty() {
            Value::Null
        } else {
            Value::Object(keys.iter().map(|k| (k.clone(), json!({}))).collect())
        }
    };
    inner.insert("ExposedPorts".into(), set(&cfg.exposed_ports));
    inner.insert("Volumes".into(), set(&cfg.volumes));
    inner.insert(
        "Labels".into(),
        if cfg.labels.is_empty() {
            Value::Null
        } else {
            json!(cfg.labels)
        },
    );
    let mut inner = Value::Object(inner);
    for ch in &o.changes {
        apply_change(&mut inner, ch)?;
    }
    if let Value::Object(m) = &mut inner {
        m.retain(|_, v| !v.is_null());
    }
    config["config"] = inner;
    config["created"] = json!(created);
    if let Some(a) = &o.author {
        config["author"] = json!(a);
    }

    let _lock = store.write_lock()?;
    let layer = fsops::layer_of_tree(store.content(), &l.upper, None, l.skip.clone())
        .map_err(|e| Error::Invalid(format!("committing container {}: {e}", l.name)))?;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .ok_or_else(|| Error::Invalid(format!("image {}: its config has no diff ids", base.id)))?
        .push(json!(layer.diff_id));
    let mut entry = json!({
        "created": created,
        "created_by": shell_words(&[cfg.entrypoint.clone(), cfg.cmd.clone()].concat()),
    });
    if let Some(a) = &o.author {
        entry["author"] = json!(a);
    }
    if let Some(m) = &o.message {
        entry["comment"] = json!(m);
    }
    match config["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => config["history"] = json!([entry]),
    }
    let mut config_bytes = serde_json::to_vec(&config)
        .map_err(|e| Error::Invalid(format!("serialising the config of the commit: {e}")))?;
    config_bytes.push(b'\n');
    let config_digest = store.content().put(&config_bytes)?;
    let mut layers = serde_json::to_value(image.manifest.layers())
        .map_err(|e| Error::Invalid(format!("reading the layers of image {}: {e}", base.id)))?;
    layers
        .as_array_mut()
        .expect("layers serialise as a list")
        .push(json!({
            "mediaType": layer.media_type,
            "digest": layer.blob,
            "size": layer.size,
        }));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Invalid(format!("serialising the manifest of the commit: {e}")))?;
    let manifest_digest = store.content().put(&bytes)?;
    Ok(store.commit(&manifest_digest, &manifest_digest, &o.names, progress)?)
}

/// `["sh", "-c", "echo hi"]` → `sh -c "echo hi"` for the history entry.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `--change` instruction on the image config's `config` object.
pub fn apply_change(cfg: &mut Value, change: &str) -> Result<()> {
    let bad = |why: &str| Error::Invalid(format!("invalid change {change:?}: {why}"));
    let t = change.trim();
    let (verb, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    let argv = |shell: bool| -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).map_err(|_| bad("not a JSON array of strings"))
        } else if rest.is_empty() {
            Err(bad("needs a value"))
        } else if shell {
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
        } else {
            Ok(rest.split_whitespace().map(str::to_string).collect())
        }
    };
    // Variables expand against the config's environment, as in a Dockerfile.
    let env: Vec<String> = serde_json::from_value(cfg["Env"].clone()).unwrap_or_default();
    let lookup = move |name: &str| -> Option<String> {
        env.iter().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let pairs = || -> Result<Vec<(String, String)>> {
        if rest.is_empty() {
            return Err(bad("needs KEY=VALUE"));
        }
        if !rest.contains('=') {
            // The old `ENV KEY value` form.
            let (k, v) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("needs KEY=VALUE"))?;
            return Ok(vec![(k.to_string(), v.trim().to_string())]);
        }
        crate::lex::Lexer { escape: '\\' }
            .words(rest, &lookup)
            .map_err(|e| bad(&e))?
            .into_iter()
            .map(|w| {
                let (k, v) = w.split_once('=').ok_or_else(|| bad("needs KEY=VALUE"))?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    };
    let obj = |cfg: &mut Value, key: &str| -> serde_json::Map<String, Value> {
        cfg[key].as_object().cloned().unwrap_or_default()
    };
    match verb.to_ascii_uppercase().as_str() {
        "CMD" => cfg["Cmd"] = json!(argv(true)?),
        "ENTRYPOINT" => cfg["Entrypoint"] = json!(argv(true)?),
        "ENV" => {
            let mut env: Vec<String> = serde_json::from_value(cfg["Env"].clone()).unwrap_or_default();
            for (k, v) in pairs()? {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                env.push(format!("{k}={v}"));
            }
            cfg["Env"] = json!(env);
        }
        "LABEL" => {
            let mut m = obj(cfg, "Labels");
            for (k, v) in pairs()? {
                m.insert(k, json!(v));
            }
            cfg["Labels"] = Value::Object(m);
        }
        "EXPOSE" => {
            let mut m = obj(cfg, "ExposedPorts");
            for p in argv(false)? {
                let key = if p.contains('/') { p } else { format!("{p}/tcp") };
                m.insert(key, json!({}));
            }
            cfg["ExposedPorts"] = Value::Object(m);
        }
        "VOLUME" => {
            let mut m = obj(cfg, "Volumes");
            for p in argv(false)? {
                m.insert(p, json!({}));
            }
            cfg["Volumes"] = Value::Object(m);
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" if rest.is_empty() => return Err(bad("needs a value")),
        "USER" => cfg["User"] = json!(rest),
        "WORKDIR" => cfg["WorkingDir"] = json!(rest),
        "STOPSIGNAL" => cfg["StopSignal"] = json!(rest),
        other => {
            return Err(bad(&format!(
                "{other} cannot be changed (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR and STOPSIGNAL can)"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_to_the_config() {
        let mut c = json!({"Env": ["A=1", "PATH=/bin"], "Cmd": ["sh"]});
        for ch in [
            "CMD [\"echo\", \"hi\"]",
            "ENTRYPOINT /init --x",
            "ENV A=2 B=\"two words\"",
            "env C 3",
            "LABEL tier=web",
            "EXPOSE 80 53/udp",
            "VOLUME [\"/data\"]",
            "USER 1000:1000",
            "WORKDIR /srv",
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        assert_eq!(c["Cmd"], json!(["echo", "hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --x"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=two words", "C=3"]));
        assert_eq!(c["Labels"], json!({"tier": "web"}));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["StopSignal"], "SIGINT");
        for (bad, want) in [
            ("RUN echo", "cannot be changed"),
            ("CMD [oops", "JSON array"),
            ("ENV", "KEY=VALUE"),
            ("USER", "needs a value"),
        ] {
            let e = apply_change(&mut c, bad).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn history_commands_are_quoted_where_needed() {
        assert_eq!(
            shell_words(&["sh".into(), "-c".into(), "echo hi > /f".into()]),
            "sh -c \"echo hi > /f\""
        );
    }
}
