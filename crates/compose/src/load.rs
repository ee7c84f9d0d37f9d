//! Finding and reading compose files: discovery, `.env`, interpolation
//! (`${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR?e}`, `${VAR:+r}`,
//! `$$`), and merging several `-f` files as the Compose Specification says
//! (mappings merge, most sequences append, single values are replaced).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The names `compose` looks for, in order.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files; empty: discovered in `workdir`.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file`; empty: `.env` in the project directory, if any.
    pub env_files: Vec<PathBuf>,
    /// `--profile`.
    pub profiles: Vec<String>,
    pub workdir: PathBuf,
    /// The caller's environment (wins over .env).
    pub environment: BTreeMap<String, String>,
}

/// The merged, interpolated document and where it came from.
pub struct Loaded {
    pub files: Vec<PathBuf>,
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub doc: Value,
}

pub fn discover(workdir: &Path) -> Result<PathBuf> {
    DEFAULT_FILES
        .iter()
        .map(|f| workdir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Project(format!(
                "no compose file in {} (looked for {})",
                workdir.display(),
                DEFAULT_FILES.join(", ")
            ))
        })
}

/// `KEY=value` lines; `#` comments and blank lines skipped, optional quotes.
pub fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some((k, v)) = l.split_once('=') else {
            return Err(Error::File {
                path: format!("{}:{}", path.display(), i + 1),
                message: format!("expected KEY=VALUE, found {l:?}"),
            });
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v[1..v.len() - 1].to_string()
        } else {
            v.split(" #").next().unwrap_or(v).trim().to_string()
        };
        out.insert(k.trim().to_string(), v);
    }
    Ok(out)
}

pub fn load(o: &LoadOptions) -> Result<Loaded> {
    let files: Vec<PathBuf> = if o.files.is_empty() {
        vec![discover(&o.workdir)?]
    } else {
        o.files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    o.workdir.join(f)
                }
            })
            .collect()
    };
    let dir = files[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| o.workdir.clone());
    let mut env = BTreeMap::new();
    if o.env_files.is_empty() {
        let dot = dir.join(".env");
        if dot.is_file() {
            env = parse_env_file(&dot)?;
        }
    } else {
        for f in &o.env_files {
            env.extend(parse_env_file(f)?);
        }
    }
    env.extend(o.environment.clone());
    let mut doc = Value::Object(Map::new());
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::File {
            path: f.display().to_string(),
            message: e.to_string(),
        })?;
        let mut v: Value = serde_saphyr::from_str(&text).map_err(|e| Error::File {
            path: f.display().to_string(),
            message: e.to_string().replace('\n', " "),
        })?;
        if v.is_null() {
            v = Value::Object(Map::new());
        }
        if !v.is_object() {
            return Err(Error::File {
                path: f.display().to_string(),
                message: "the top level must be a mapping".into(),
            });
        }
        interpolate(&mut v, &env, "")?;
        merge(&mut doc, v, "");
    }
    Ok(Loaded {
        files,
        dir,
        env,
        doc,
    })
}

/// Substitute variables in every string of `v` (values, not keys).
pub fn interpolate(v: &mut Value, env: &BTreeMap<String, String>, path: &str) -> Result<()> {
    match v {
        Value::String(s) => *s = substitute(s, env).map_err(|m| crate::error::field(path, m))?,
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate(x, env, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate(x, env, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One string's substitution.
pub fn substitute(s: &str, env: &BTreeMap<String, String>) -> std::result::Result<String, String> {
    let mut out = String::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] != '$' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let start = i + 2;
                let mut depth = 1;
                let mut j = start;
                while j < b.len() && depth > 0 {
                    match b[j] {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth != 0 {
                    return Err(format!(
                        "invalid interpolation format in {s:?}: unclosed ${{"
                    ));
                }
                let inner: String = b[start..j - 1].iter().collect();
                out.push_str(&expand(&inner, env, s)?);
                i = j;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                    j += 1;
                }
                let name: String = b[i + 1..j].iter().collect();
                out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn expand(
    inner: &str,
    env: &BTreeMap<String, String>,
    whole: &str,
) -> std::result::Result<String, String> {
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_end);
    if name.is_empty() {
        return Err(format!(
            "invalid interpolation format in {whole:?}: ${{{inner}}}"
        ));
    }
    let val = env.get(name);
    let set_nonempty = val.is_some_and(|v| !v.is_empty());
    let rest = |n: usize| substitute(&op[n..], env);
    Ok(match op {
        "" => val.cloned().unwrap_or_default(),
        o if o.starts_with(":-") => {
            if set_nonempty {
                val.cloned().unwrap()
            } else {
                rest(2)?
            }
        }
        o if o.starts_with('-') => match val {
            Some(v) => v.clone(),
            None => rest(1)?,
        },
        o if o.starts_with(":?") => {
            if set_nonempty {
                val.cloned().unwrap()
            } else {
                return Err(format!(
                    "required variable {name} is missing a value: {}",
                    rest(2)?
                ));
            }
        }
        o if o.starts_with('?') => match val {
            Some(v) => v.clone(),
            None => {
                return Err(format!(
                    "required variable {name} is missing a value: {}",
                    rest(1)?
                ))
            }
        },
        o if o.starts_with(":+") => {
            if set_nonempty {
                rest(2)?
            } else {
                String::new()
            }
        }
        o if o.starts_with('+') => {
            if val.is_some() {
                rest(1)?
            } else {
                String::new()
            }
        }
        _ => {
            return Err(format!(
                "invalid interpolation format in {whole:?}: ${{{inner}}}"
            ))
        }
    })
}

/// Keys whose sequences are appended when files merge (others replace).
const APPENDED: &[&str] = &[
    "ports",
    "expose",
    "volumes",
    "dns",
    "dns_search",
    "tmpfs",
    "cap_add",
    "cap_drop",
    "env_file",
    "extra_hosts",
    "security_opt",
    "profiles",
];

/// Merge `over` into `base` (the Compose Specification's rules, simplified:
/// mappings merge key by key, listed sequences append without duplicates,
/// everything else is replaced by the later file).
pub fn merge(base: &mut Value, over: Value, key: &str) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v, &k),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) if APPENDED.contains(&key) => {
            for v in o {
                if !b.contains(&v) {
                    b.push(v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> BTreeMap<String, String> {
        [("A", "1"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interpolation_forms() {
        let e = env();
        for (input, want) in [
            ("x${A}y", "x1y"),
            ("$A", "1"),
            ("${NOPE:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${NOPE-def}", "def"),
            ("${A:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("$$A", "$A"),
            ("${NOPE:-${A}}", "1"),
            ("cost: 5$", "cost: 5$"),
        ] {
            assert_eq!(substitute(input, &e).unwrap(), want, "{input}");
        }
        let err = substitute("${NOPE:?give it}", &e).unwrap_err();
        assert_eq!(err, "required variable NOPE is missing a value: give it");
        assert!(substitute("${A", &e).is_err());
        let mut v = json!({"services": {"web": {"image": "${NOPE?x}"}}});
        let err = interpolate(&mut v, &e, "").unwrap_err().to_string();
        assert!(
            err.starts_with("services.web.image: required variable NOPE"),
            "{err}"
        );
    }

    #[test]
    fn merging_files() {
        let mut a =
            json!({"services": {"web": {"image": "a", "ports": ["80:80"], "command": ["x"]}}});
        merge(
            &mut a,
            json!({"services": {"web": {"image": "b", "ports": ["81:81"], "command": ["y"]}, "db": {"image": "d"}}}),
            "",
        );
        assert_eq!(a["services"]["web"]["image"], "b");
        assert_eq!(a["services"]["web"]["ports"], json!(["80:80", "81:81"]));
        assert_eq!(a["services"]["web"]["command"], json!(["y"]));
        assert_eq!(a["services"]["db"]["image"], "d");
    }

    #[test]
    fn env_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".env");
        std::fs::write(&p, "# c\nA=1\nexport B=\"two words\"\nC='x' \nD=v # note\n").unwrap();
        let m = parse_env_file(&p).unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
        assert_eq!(m["D"], "v");
        std::fs::write(&p, "oops\n").unwrap();
        assert!(parse_env_file(&p)
            .unwrap_err()
            .to_string()
            .contains(".env:1"));
    }
}
