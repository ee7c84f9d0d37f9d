//! Finding and reading compose files: discovery, `.env`, interpolation
//! (`${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR?e}`, `${VAR:+r}`,
//! `$$`), and merging several `-f` files as the Compose Specification says
//! (mappings merge, most sequences append, single values are replaced).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{shown_path, Error, Result};
use crate::files::{read_text, MAX_COMPOSE_FILE, MAX_ENV_FILE};

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
    // `exists`, not `is_file`: a compose.yaml that is a FIFO or a device is
    // an error when read, not silently passed over.
    DEFAULT_FILES
        .iter()
        .map(|f| workdir.join(f))
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::Project(format!(
                "no compose file in {} (looked for {})",
                shown_path(workdir),
                DEFAULT_FILES.join(", ")
            ))
        })
}

/// `KEY=value` lines; `#` comments and blank lines skipped, optional quotes.
/// A regular file of at most [`MAX_ENV_FILE`] bytes; errors name the file
/// and the line, never the line's content.
pub fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = read_text(path, MAX_ENV_FILE)?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| Error::File {
            path: format!("{}:{}", shown_path(path), i + 1),
            message: why.to_string(),
        };
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some((k, v)) = l.split_once('=') else {
            return Err(bad("expected KEY=VALUE"));
        };
        let k = k.trim();
        if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("invalid variable name before '='"));
        }
        if v.contains('\0') {
            return Err(bad("the value holds a NUL character"));
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v[1..v.len() - 1].to_string()
        } else {
            v.split(" #").next().unwrap_or(v).trim().to_string()
        };
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

/// How deep `include:` may nest.
const MAX_INCLUDE_DEPTH: usize = 8;

/// The top-level keys of a compose file (besides `x-` extensions).
const TOP_LEVEL: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "configs", "secrets", "include",
];

/// The parser's limits: compose files are small and shallow, so anything
/// deeper or larger is refused before it costs stack or memory.
fn yaml_options() -> serde_saphyr::Options {
    let budget = serde_saphyr::Budget {
        max_depth: 64,
        max_nodes: 200_000,
        max_events: 400_000,
        max_total_scalar_bytes: 16 << 20,
        ..serde_saphyr::Budget::default()
    };
    serde_saphyr::Options {
        budget: Some(budget),
        alias_limits: serde_saphyr::options::AliasLimits {
            max_total_replayed_events: 200_000,
            ..Default::default()
        },
        // The snippet would quote the file's lines.
        with_snippet: false,
        ..serde_saphyr::Options::default()
    }
}

/// A parser error as one line: where, and why in words that carry none of
/// the input (no quoted scalars, no Rust type names).
fn yaml_reason(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    let inner = e.without_snippet();
    let at = inner
        .location()
        .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
        .unwrap_or_default();
    let why = match inner {
        E::Message { msg, .. } => yaml_message(msg),
        E::Eof { .. } => "unexpected end of the file".into(),
        E::Unexpected { expected, .. } if *expected == "string scalar" => {
            "mapping keys must be strings".into()
        }
        E::Unexpected { expected, .. } => format!("invalid YAML: expected {expected}"),
        E::ContainerEndMismatch { .. } => "a sequence or mapping is not closed properly".into(),
        E::UnknownAnchor { .. } => "an alias refers to an undefined anchor".into(),
        E::Budget { .. } => {
            "the document exceeds the parser's limits (nesting, size or aliases)".into()
        }
        _ => "invalid YAML".into(),
    };
    format!("{at}{why}")
}

fn yaml_message(msg: &str) -> String {
    if msg.contains("null into") {
        return "a mapping key is null: keys must be strings".into();
    }
    if msg.starts_with("duplicate mapping key") {
        return "duplicate mapping key".into();
    }
    if msg.contains('<') || msg.contains("::") {
        return "invalid YAML".into();
    }
    // Quoted parts are input: leave them out.
    let mut out = String::new();
    let mut quote = None;
    for c in msg.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => {
                quote = Some(c);
                out.push_str("...");
            }
            None => out.push(c),
        }
    }
    crate::error::shown(&out)
}

/// Parse one compose file: a mapping with compose's top-level keys only.
fn parse_file(f: &Path) -> Result<Value> {
    let text = read_text(f, MAX_COMPOSE_FILE)?;
    let file_err = |message: String| Error::File {
        path: shown_path(f),
        message,
    };
    let v: Value = serde_saphyr::from_str_with_options(&text, yaml_options())
        .map_err(|e| file_err(yaml_reason(&e)))?;
    let v = match v {
        Value::Null => Value::Object(Map::new()),
        Value::Object(m) => Value::Object(m),
        _ => {
            return Err(file_err(
                "not a compose file: the top level must be a mapping".into(),
            ))
        }
    };
    for k in v.as_object().expect("checked").keys() {
        if !TOP_LEVEL.contains(&k.as_str()) && !k.starts_with("x-") {
            // The key is shown only when it looks like one (a typo), not
            // when it is some other file's text.
            let plain = k.len() <= 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            let which = if plain {
                format!("top-level key {k}")
            } else {
                "a top-level key".into()
            };
            return Err(file_err(format!(
                "not a compose file: {which} is not one of {} or x-*",
                TOP_LEVEL.join(", ")
            )));
        }
    }
    Ok(v)
}

/// Read, interpolate and expand the `include:`s of the compose file `f`
/// (`seen`: the files being included, to refuse cycles).
fn read_compose(
    f: &Path,
    env: &BTreeMap<String, String>,
    seen: &mut Vec<PathBuf>,
) -> Result<Value> {
    let mut v = parse_file(f)?;
    interpolate(&mut v, env, "")?;
    let includes = v
        .as_object_mut()
        .expect("a mapping")
        .remove("include")
        .unwrap_or(Value::Null);
    let dir = f.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut included = Value::Object(Map::new());
    for (i, p) in include_paths(&includes)?.into_iter().enumerate() {
        let here = format!("include[{i}]");
        let abs = dir.join(&p);
        let key = std::fs::canonicalize(&abs).unwrap_or_else(|_| abs.clone());
        if seen.contains(&key) {
            return Err(crate::error::field(
                here,
                format!("{} includes itself", shown_path(&abs)),
            ));
        }
        if seen.len() >= MAX_INCLUDE_DEPTH {
            return Err(crate::error::field(
                here,
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files"),
            ));
        }
        seen.push(key);
        let mut sub = read_compose(&abs, env, seen)?;
        seen.pop();
        rebase(&mut sub, abs.parent().unwrap_or(Path::new("/")));
        // Included resources may not redefine the including file's (compose
        // refuses such conflicts too).
        for section in ["services", "networks", "volumes", "configs", "secrets"] {
            let (Some(Value::Object(a)), Some(Value::Object(b))) =
                (v.get(section), sub.get(section))
            else {
                continue;
            };
            if let Some(k) = b.keys().find(|k| a.contains_key(*k)) {
                return Err(crate::error::field(
                    format!("{section}.{k}"),
                    format!(
                        "is defined both in {} and in the file it includes, {}",
                        shown_path(f),
                        shown_path(&abs)
                    ),
                ));
            }
        }
        sub.as_object_mut().expect("a mapping").remove("name");
        merge(&mut included, sub, "");
    }
    merge(&mut included, v, "");
    Ok(included)
}

/// `include:` entries: paths, or mappings with `path` (a path or a list).
fn include_paths(v: &Value) -> Result<Vec<String>> {
    use crate::error::field;
    let mut out = Vec::new();
    let items = match v {
        Value::Null => return Ok(out),
        Value::Array(a) => a.clone(),
        Value::String(_) => vec![v.clone()],
        _ => return Err(field("include", "must be a list")),
    };
    for (i, item) in items.iter().enumerate() {
        let here = format!("include[{i}]");
        match item {
            Value::String(s) => out.push(s.clone()),
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| k.as_str() != "path") {
                    return Err(field(
                        format!("{here}.{k}"),
                        "is not supported by hako compose",
                    ));
                }
                match m.get("path") {
                    Some(Value::String(s)) => out.push(s.clone()),
                    Some(Value::Array(a)) => {
                        for (j, p) in a.iter().enumerate() {
                            match p {
                                Value::String(s) => out.push(s.clone()),
                                _ => {
                                    return Err(field(
                                        format!("{here}.path[{j}]"),
                                        "must be a string",
                                    ))
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(field(
                            format!("{here}.path"),
                            "must be a path or a list of paths",
                        ))
                    }
                }
            }
            _ => return Err(field(here, "must be a path or a mapping")),
        }
    }
    Ok(out)
}

/// Make the relative host paths of an included file absolute (they are
/// relative to that file's directory, not to the project's).
fn rebase(doc: &mut Value, dir: &Path) {
    let abs = |s: &str| -> Option<String> {
        (!s.is_empty() && !s.starts_with('/') && !s.starts_with('~'))
            .then(|| dir.join(s).display().to_string())
    };
    if let Some(Value::Object(services)) = doc.get_mut("services") {
        for svc in services.values_mut() {
            let Value::Object(svc) = svc else { continue };
            match svc.get_mut("env_file") {
                Some(Value::String(s)) => {
                    if let Some(a) = abs(s) {
                        *s = a;
                    }
                }
                Some(Value::Array(list)) => {
                    for x in list {
                        let s = match x {
                            Value::String(s) => s,
                            Value::Object(m) => match m.get_mut("path") {
                                Some(Value::String(s)) => s,
                                _ => continue,
                            },
                            _ => continue,
                        };
                        if let Some(a) = abs(s) {
                            *s = a;
                        }
                    }
                }
                _ => {}
            }
            match svc.get_mut("build") {
                Some(Value::String(s)) => {
                    if let Some(a) = abs(s) {
                        *s = a;
                    }
                }
                Some(Value::Object(b)) => {
                    let ctx = match b.get("context") {
                        Some(Value::String(c)) => c.clone(),
                        None => ".".into(),
                        _ => continue,
                    };
                    if let Some(a) = abs(&ctx) {
                        b.insert("context".into(), Value::String(a));
                    }
                }
                _ => {}
            }
            if let Some(Value::Array(vols)) = svc.get_mut("volumes") {
                for m in vols {
                    match m {
                        Value::String(s) if s.starts_with('.') => {
                            if let Some((src, rest)) = s.split_once(':') {
                                if let Some(a) = abs(src) {
                                    *s = format!("{a}:{rest}");
                                }
                            }
                        }
                        Value::Object(o)
                            if o.get("type").and_then(Value::as_str) == Some("bind") =>
                        {
                            if let Some(Value::String(src)) = o.get_mut("source") {
                                if let Some(a) = abs(src) {
                                    *src = a;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    for section in ["configs", "secrets"] {
        if let Some(Value::Object(m)) = doc.get_mut(section) {
            for def in m.values_mut() {
                if let Some(Value::String(f)) = def.get_mut("file") {
                    if let Some(a) = abs(f) {
                        *f = a;
                    }
                }
            }
        }
    }
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
        // A `.env` that is there but not a regular file is an error (read_text says so).
        let dot = dir.join(".env");
        if dot.exists() {
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
        let key = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        let v = read_compose(f, &env, &mut vec![key])?;
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

/// How deep `${A:-${B:-...}}` defaults may nest (each level is a recursion).
const MAX_NESTING: usize = 16;

/// One string's substitution.
pub fn substitute(s: &str, env: &BTreeMap<String, String>) -> std::result::Result<String, String> {
    substitute_at(s, env, 0)
}

fn substitute_at(
    s: &str,
    env: &BTreeMap<String, String>,
    depth: usize,
) -> std::result::Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "invalid interpolation format: defaults nest deeper than {MAX_NESTING} levels"
        ));
    }
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
                let mut open = 1;
                let mut j = start;
                while j < b.len() && open > 0 {
                    match b[j] {
                        '{' => open += 1,
                        '}' => open -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if open != 0 {
                    return Err(format!(
                        "invalid interpolation format in {}: unclosed ${{",
                        crate::error::quoted(s)
                    ));
                }
                let inner: String = b[start..j - 1].iter().collect();
                out.push_str(&expand(&inner, env, s, depth)?);
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
    depth: usize,
) -> std::result::Result<String, String> {
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_end);
    if name.is_empty() {
        return Err(format!(
            "invalid interpolation format in {}",
            crate::error::quoted(whole)
        ));
    }
    let val = env.get(name);
    let set_nonempty = val.is_some_and(|v| !v.is_empty());
    let rest = |n: usize| substitute_at(&op[n..], env, depth + 1);
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
                    crate::error::shown(&rest(2)?)
                ));
            }
        }
        o if o.starts_with('?') => match val {
            Some(v) => v.clone(),
            None => {
                return Err(format!(
                    "required variable {name} is missing a value: {}",
                    crate::error::shown(&rest(1)?)
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
                "invalid interpolation format in {}",
                crate::error::quoted(whole)
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
        std::fs::write(&p, "A=1\noops secret\n").unwrap();
        assert_eq!(
            parse_env_file(&p).unwrap_err().to_string(),
            format!("{}:2: expected KEY=VALUE", p.display())
        );
    }

    fn open_dir(dir: &Path) -> Result<crate::Project> {
        crate::open(&LoadOptions {
            workdir: dir.to_path_buf(),
            ..Default::default()
        })
    }

    /// Issue 13 point 3: env files, `.env` and compose files are regular,
    /// bounded files; errors name the file and line, never the content.
    #[test]
    fn hostile_project_files_are_refused_without_reading_them() {
        let d = tempfile::tempdir().unwrap();
        let compose = d.path().join("compose.yaml");
        let write = |text: &str| std::fs::write(&compose, text).unwrap();
        // A device as env_file: refused at once (it used to be read until the
        // kernel killed hako).
        write("services:\n  web:\n    image: busybox\n    env_file: /dev/zero\n");
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            "services.web.env_file[0]: /dev/zero: is a device, not a regular file"
        );
        // A secret-looking file that is not KEY=VALUE: the line number, not the line.
        let secret = d.path().join("shadow");
        std::fs::write(&secret, "root:$6$SECRETHASH:19000:0:99999:7:::\n").unwrap();
        write(&format!(
            "services:\n  web:\n    image: busybox\n    env_file: {}\n",
            secret.display()
        ));
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "services.web.env_file[0]: {}:1: expected KEY=VALUE",
                secret.display()
            )
        );
        assert!(!e.contains("SECRETHASH"));
        // Too large.
        let big = d.path().join("big.env");
        std::fs::write(&big, "A=".to_string() + &"x".repeat(MAX_ENV_FILE as usize)).unwrap();
        write(&format!(
            "services:\n  web:\n    image: busybox\n    env_file: {}\n",
            big.display()
        ));
        assert!(open_dir(d.path())
            .unwrap_err()
            .to_string()
            .ends_with(&format!("is larger than {MAX_ENV_FILE} bytes")));
        // `.env` as a symlink to a device, and the compose file itself.
        write("services:\n  web:\n    image: busybox\n");
        std::os::unix::fs::symlink("/dev/zero", d.path().join(".env")).unwrap();
        assert_eq!(
            open_dir(d.path()).unwrap_err().to_string(),
            format!(
                "{}/.env: is a device, not a regular file",
                d.path().display()
            )
        );
        std::fs::remove_file(d.path().join(".env")).unwrap();
        let e = crate::open(&LoadOptions {
            workdir: d.path().to_path_buf(),
            files: vec!["/dev/zero".into()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert_eq!(e, "/dev/zero: is a device, not a regular file");
        // Invalid UTF-8 with control bytes: the line, not the bytes.
        std::fs::write(d.path().join(".env"), b"A=1\nB=\x1b[31m\xff\n").unwrap();
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert!(e.ends_with(".env: line 2: not UTF-8 text"), "{e}");
        std::fs::remove_file(d.path().join(".env")).unwrap();
    }

    /// Issue 13 point 3: `include:` of a file that is not a compose file is
    /// refused; included compose files are merged with their paths rebased.
    #[test]
    fn include_takes_compose_files_only() {
        let d = tempfile::tempdir().unwrap();
        let compose = d.path().join("compose.yaml");
        let secret = d.path().join("passwd");
        std::fs::write(&secret, "root:x:0:0:TOPSECRET:/root:/bin/sh\n").unwrap();
        std::fs::write(
            &compose,
            format!(
                "include:\n  - {}\nservices:\n  web:\n    image: busybox\n",
                secret.display()
            ),
        )
        .unwrap();
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: not a compose file: the top level must be a mapping",
                secret.display()
            )
        );
        std::fs::write(&secret, "password: TOPSECRET\n").unwrap();
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("not a compose file: top-level key password is not one of"),
            "{e}"
        );
        assert!(!e.contains("TOPSECRET"));
        std::fs::write(
            &compose,
            "include:\n  - /dev/zero\nservices:\n  web:\n    image: busybox\n",
        )
        .unwrap();
        assert_eq!(
            open_dir(d.path()).unwrap_err().to_string(),
            "/dev/zero: is a device, not a regular file"
        );
        // A real include: its services join, its relative paths are its own.
        std::fs::create_dir(d.path().join("db")).unwrap();
        std::fs::write(d.path().join("db/db.env"), "PW=x\n").unwrap();
        std::fs::write(
            d.path().join("db/compose.yaml"),
            "services:\n  db:\n    image: busybox\n    env_file: db.env\n    volumes: [./data:/data]\n",
        )
        .unwrap();
        std::fs::write(
            &compose,
            "include:\n  - db/compose.yaml\nservices:\n  web:\n    image: busybox\n",
        )
        .unwrap();
        let p = open_dir(d.path()).unwrap();
        assert_eq!(p.services["db"].environment["PW"], "x");
        assert_eq!(
            p.services["db"].volumes[0].source,
            d.path().join("db/data").display().to_string()
        );
        assert!(p.services.contains_key("web"));
        // A cycle, and a conflict.
        std::fs::write(
            d.path().join("db/compose.yaml"),
            "include: [../compose.yaml]\nservices:\n  db:\n    image: busybox\n",
        )
        .unwrap();
        assert!(open_dir(d.path())
            .unwrap_err()
            .to_string()
            .ends_with("includes itself"));
        std::fs::write(
            d.path().join("db/compose.yaml"),
            "services:\n  web:\n    image: busybox\n",
        )
        .unwrap();
        assert!(open_dir(d.path())
            .unwrap_err()
            .to_string()
            .starts_with("services.web: is defined both in"));
    }

    /// Issue 13 point 10: parser errors say where and why without the
    /// input's bytes or Rust type names (a null key printed
    /// "use Option<String>").
    #[test]
    fn yaml_errors_carry_no_input() {
        let d = tempfile::tempdir().unwrap();
        let compose = d.path().join("compose.yaml");
        let shown = compose.display().to_string();
        for (text, want) in [
            (
                "services:\n  ~:\n    image: b\n",
                "line 2, column 3: a mapping key is null: keys must be strings",
            ),
            (
                "services:\n  null: {image: b}\n",
                "line 2, column 3: a mapping key is null: keys must be strings",
            ),
            (
                "SECRET1: 1\nSECRET1: 2\n",
                "line 2, column 1: duplicate mapping key",
            ),
            (
                "? [SECRET2]\n: x\n",
                "line 1, column 3: mapping keys must be strings",
            ),
            ("a: [SECRET3\n", "line 1, column 4: unclosed bracket '['"),
            (
                "a: *SECRET4\n",
                "line 1, column 4: while parsing node, found unknown anchor",
            ),
            (
                "services:\n  \"w\\e\": {image: b}\n",
                "services.w\\u{1b}: is not a valid name: use letters, digits, '.', '_' and '-'",
            ),
        ] {
            std::fs::write(&compose, text).unwrap();
            let e = open_dir(d.path()).unwrap_err().to_string();
            assert!(e.ends_with(want), "{text:?}: {e}");
            assert!(e.starts_with(&shown) || e.starts_with("services."), "{e}");
            assert!(
                !e.contains("SECRET") && !e.contains("Option<") && !e.contains('\n'),
                "{e}"
            );
            assert!(!e.chars().any(char::is_control), "{e}");
        }
        // Deep nesting and nested defaults: refused in a line, no stack overflow.
        std::fs::write(&compose, "a: ".to_string() + &"[".repeat(100_000)).unwrap();
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("recursion limit exceeded") || e.ends_with("(nesting, size or aliases)"),
            "{e}"
        );
        let nested = "${A:-".repeat(50_000) + &"}".repeat(50_000);
        std::fs::write(
            &compose,
            format!("services:\n  web:\n    image: \"{nested}\"\n"),
        )
        .unwrap();
        let e = open_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("defaults nest deeper than 16 levels"),
            "{}",
            &e[..200.min(e.len())]
        );
    }
}
