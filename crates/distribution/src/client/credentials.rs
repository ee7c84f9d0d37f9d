//! Registry credentials in a docker-compatible auth file:
//! `{"auths": {"HOST": {"auth": base64("user:password")}}}`.
//!
//! `hako login` writes `$HAKO_AUTH_FILE` or `~/.config/hako/auth.json`;
//! lookups also read `~/.docker/config.json`, so a `docker login` works for hako.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

use super::error::{ClientError, Result};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The auth file `hako login` writes.
pub fn default_auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("HAKO_AUTH_FILE") {
        return PathBuf::from(p);
    }
    home().join(".config/hako/auth.json")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// The keys a registry may be stored under: docker keeps Docker Hub as its
/// v1 index URL, and some tools store `https://host`.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{registry}")];
    if registry == "docker.io" {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("index.docker.io".into());
        keys.push("registry-1.docker.io".into());
    }
    keys
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    match fs::read(path) {
        Ok(data) => match serde_json::from_slice::<Value>(&data) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(ClientError::protocol(
                format!("reading auth file {}", path.display()),
                "not a JSON object",
            )),
            Err(e) => Err(ClientError::protocol(
                format!("reading auth file {}", path.display()),
                e.to_string(),
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::io(
            format!("reading auth file {}", path.display()),
            e,
        )),
    }
}

fn decode(entry: &Value) -> Option<Credentials> {
    let auth = entry.get("auth")?.as_str()?;
    let raw = STANDARD.decode(auth.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// Credentials for `registry` (a host[:port]) from the given auth files, first match wins.
pub fn lookup_in(files: &[PathBuf], registry: &str) -> Result<Option<Credentials>> {
    for file in files {
        let Some(doc) = read_json(file)? else {
            continue;
        };
        let Some(Value::Object(auths)) = doc.get("auths") else {
            continue;
        };
        for key in keys_for(registry) {
            if let Some(c) = auths.get(&key).and_then(decode) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Credentials for `registry` from hako's auth file, then docker's.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    lookup_in(
        &[default_auth_file(), home().join(".docker/config.json")],
        registry,
    )
}

/// Store (or with `None` remove) the credentials of `registry` in `file`,
/// keeping every other key; written to a temporary name, mode 0600, and renamed.
/// Returns whether the file had an entry for the registry before.
pub fn store(file: &Path, registry: &str, creds: Option<&Credentials>) -> Result<bool> {
    let what = || format!("writing auth file {}", file.display());
    let mut doc = read_json(file)?.unwrap_or_default();
    let auths = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(ClientError::protocol(what(), "\"auths\" is not an object"));
    };
    let mut had = false;
    for key in keys_for(registry) {
        had |= auths.remove(&key).is_some();
    }
    if let Some(c) = creds {
        let token = STANDARD.encode(format!("{}:{}", c.username, c.password));
        let mut entry = BTreeMap::new();
        entry.insert("auth", token);
        auths.insert(
            registry.to_string(),
            serde_json::to_value(entry).expect("a string map serialises"),
        );
    }
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| ClientError::io(what(), e))?;
    let mut tmp = tempfile::NamedTempFile::with_prefix_in(".auth.json.", dir)
        .map_err(|e| ClientError::io(what(), e))?;
    let body = serde_json::to_vec_pretty(&Value::Object(doc)).expect("JSON serialises");
    (|| -> std::io::Result<()> {
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))?;
        tmp.write_all(&body)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()
    })()
    .map_err(|e| ClientError::io(what(), e))?;
    tmp.persist(file)
        .map_err(|e| ClientError::io(what(), e.error))?;
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lookup_and_remove_keep_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/auth.json");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(
            &file,
            r#"{"auths":{"other.io":{"auth":"dTpw"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let c = Credentials {
            username: "alice".into(),
            password: "p:ss".into(),
        };
        assert!(!store(&file, "127.0.0.1:5000", Some(&c)).unwrap());
        assert_eq!(
            lookup_in(std::slice::from_ref(&file), "127.0.0.1:5000").unwrap(),
            Some(c)
        );
        let other = lookup_in(std::slice::from_ref(&file), "other.io")
            .unwrap()
            .unwrap();
        assert_eq!(
            (other.username.as_str(), other.password.as_str()),
            ("u", "p")
        );
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(store(&file, "127.0.0.1:5000", None).unwrap());
        assert_eq!(
            lookup_in(std::slice::from_ref(&file), "127.0.0.1:5000").unwrap(),
            None
        );
        let doc: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(doc["credsStore"], "x");
    }

    #[test]
    fn docker_hub_legacy_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        fs::write(
            &file,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"Ym9iOnNlY3JldA=="}}}"#,
        )
        .unwrap();
        let c = lookup_in(&[file], "docker.io").unwrap().unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.password, "secret");
    }
}
