//! Running a parsed template over a JSON value as Go's text/template runs
//! it over docker's objects: fields of maps (a missing one is `<no value>`),
//! truth as Go's (false, 0, "", nil and empty lists and maps are false),
//! Go's builtins (and, or, not, eq, ne, lt, le, gt, ge, len, index, print,
//! printf, println, slice) and docker's (json, join, split, upper, lower,
//! title, truncate, pad), and values printed as Go's `%v`.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use super::parse::{Arg, Node, Pipeline};

pub struct State<'a> {
    vars: Vec<(String, Value)>,
    out: &'a mut String,
}

pub fn run(nodes: &[Node], data: &Value, out: &mut String) -> Result<()> {
    let mut st = State {
        vars: vec![("$".to_string(), data.clone())],
        out,
    };
    st.walk(nodes, data)
}

impl State<'_> {
    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        let text = print(&v);
                        self.out.push_str(&text);
                    }
                }
                Node::If(p, body, els) | Node::With(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot)?;
                    let res = if truth(&v) {
                        let inner = if matches!(n, Node::With(..)) { &v } else { dot };
                        self.walk(body, inner)
                    } else {
                        self.walk(els, dot)
                    };
                    self.vars.truncate(mark);
                    res?;
                }
                Node::Range(p, body, els) => {
                    let mark = self.vars.len();
                    let list = self.eval_pipe(p, dot)?;
                    let entries: Vec<(Value, Value)> = match &list {
                        Value::Array(a) => a
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (Value::from(i), v.clone()))
                            .collect(),
                        Value::Object(m) => {
                            let mut keys: Vec<&String> = m.keys().collect();
                            keys.sort();
                            keys.into_iter()
                                .map(|k| (Value::from(k.clone()), m[k].clone()))
                                .collect()
                        }
                        Value::Null => Vec::new(),
                        Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                            .map(|i| (Value::from(i), Value::from(i)))
                            .collect(),
                        other => bail!("range can't iterate over {}", print(other)),
                    };
                    if entries.is_empty() {
                        self.walk(els, dot)?;
                    }
                    for (k, v) in entries {
                        let inner = self.vars.len();
                        match p.vars.as_slice() {
                            [] => {}
                            [one] => self.vars.push((one.clone(), v.clone())),
                            [key, val, ..] => {
                                self.vars.push((key.clone(), k));
                                self.vars.push((val.clone(), v.clone()));
                            }
                        }
                        self.walk(body, &v)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    /// A pipeline; declared variables are set (they live to the end of the
    /// enclosing block).
    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value> {
        let v = self.eval_pipe(p, dot)?;
        for name in &p.vars {
            if p.declare {
                self.vars.push((name.clone(), v.clone()));
            } else {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| anyhow!("undefined variable {name}"))?;
                slot.1 = v.clone();
            }
        }
        Ok(v)
    }

    /// The value of a pipeline (range's own variables are not set here).
    fn eval_pipe(&mut self, p: &Pipeline, dot: &Value) -> Result<Value> {
        let mut last: Option<Value> = None;
        for cmd in &p.commands {
            last = Some(self.command(cmd, dot, last)?);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    fn command(&mut self, cmd: &[Arg], dot: &Value, fin: Option<Value>) -> Result<Value> {
        match &cmd[0] {
            Arg::Func(name) => {
                let mut args = Vec::new();
                // and/or stop at the first operand that decides them.
                if name == "and" || name == "or" {
                    let mut v = Value::Null;
                    for a in cmd[1..].iter() {
                        v = self.arg(a, dot)?;
                        if truth(&v) == (name == "or") {
                            return Ok(v);
                        }
                    }
                    if let Some(f) = fin {
                        v = f;
                    }
                    return Ok(v);
                }
                for a in &cmd[1..] {
                    args.push(self.arg(a, dot)?);
                }
                args.extend(fin);
                call(name, &args)
            }
            // docker's `.Label "key"` method of ps/images objects.
            Arg::Field(f) if f.last().map(String::as_str) == Some("Label") && cmd.len() == 2 => {
                let owner = lookup(dot, &f[..f.len() - 1]);
                let key = self.arg(&cmd[1], dot)?;
                Ok(label(&owner, &print(&key)))
            }
            first => {
                if cmd.len() > 1 || fin.is_some() {
                    bail!("{} is not a function but has arguments", describe(first));
                }
                self.arg(first, dot)
            }
        }
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value> {
        Ok(match a {
            Arg::Field(f) => lookup(dot, f),
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| anyhow!("undefined variable {name}"))?;
                lookup(&v, f)
            }
            Arg::Func(name) => call(name, &[])?,
            Arg::Str(s) => Value::from(s.clone()),
            Arg::Int(i) => Value::from(*i),
            Arg::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Sub(p, f) => {
                let v = self.eval_pipe(p, dot)?;
                lookup(&v, f)
            }
        })
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Field(f) => format!(".{}", f.join(".")),
        Arg::Var(n, _) => n.clone(),
        _ => "a constant".into(),
    }
}

/// `.A.B` of `v`: a missing field (or a field of a non-map) is null.
fn lookup(v: &Value, fields: &[String]) -> Value {
    let mut cur = v;
    for f in fields {
        match cur.get(f) {
            Some(x) => cur = x,
            None => return Value::Null,
        }
    }
    cur.clone()
}

/// A label of an object whose `Labels` is a map or docker's "k=v,k2=v2".
fn label(owner: &Value, key: &str) -> Value {
    match owner.get("Labels") {
        Some(Value::Object(m)) => m.get(key).cloned().unwrap_or(Value::from("")),
        Some(Value::String(s)) => Value::from(
            s.split(',')
                .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key))
                .map(|(_, v)| v)
                .unwrap_or(""),
        ),
        _ => Value::from(""),
    }
}

/// Go's truth.
pub fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as Go's `%v` prints it.
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", print(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn compare(name: &str, a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x
                .partial_cmp(&y)
                .ok_or_else(|| anyhow!("{name}: incomparable numbers")),
            _ => bail!(
                "{name}: incompatible types for comparison ({} and {})",
                print(a),
                print(b)
            ),
        },
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn string_arg<'v>(name: &str, args: &'v [Value], i: usize) -> Result<&'v str> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => bail!(
            "{name}: argument {} is not a string: {}",
            i + 1,
            print(other)
        ),
        None => bail!("{name}: missing argument {}", i + 1),
    }
}

fn int_arg(name: &str, args: &[Value], i: usize) -> Result<i64> {
    match args.get(i) {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| anyhow!("{name}: argument {} is not an integer", i + 1)),
        _ => bail!("{name}: argument {} is not an integer", i + 1),
    }
}

fn want(name: &str, args: &[Value], n: usize) -> Result<()> {
    if args.len() != n {
        bail!("{name} takes {n} argument(s), got {}", args.len());
    }
    Ok(())
}

/// Go's fmt.Sprint: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&print(a));
    }
    out
}

fn call(name: &str, args: &[Value]) -> Result<Value> {
    Ok(match name {
        "not" => {
            want(name, args, 1)?;
            Value::Bool(!truth(&args[0]))
        }
        "eq" => {
            if args.len() < 2 {
                bail!("eq takes at least 2 arguments");
            }
            Value::Bool(args[1..].iter().any(|b| equal(&args[0], b)))
        }
        "ne" => {
            want(name, args, 2)?;
            Value::Bool(!equal(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            let o = compare(name, &args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "len" => {
            want(name, args, 1)?;
            Value::from(match &args[0] {
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => bail!("len of {}", print(other)),
            })
        }
        "index" => {
            let Some(mut cur) = args.first().cloned() else {
                bail!("index takes at least 1 argument");
            };
            for k in &args[1..] {
                cur = match (&cur, k) {
                    (Value::Array(a), _) => {
                        let i = num(k).filter(|i| i.fract() == 0.0 && *i >= 0.0);
                        let i = i.ok_or_else(|| anyhow!("index: bad index {}", print(k)))?;
                        a.get(i as usize)
                            .cloned()
                            .ok_or_else(|| anyhow!("index: index out of range: {i}"))?
                    }
                    (Value::Object(m), Value::String(s)) => {
                        m.get(s).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Null, _) => Value::Null,
                    (other, _) => bail!("index of {}", print(other)),
                };
            }
            cur
        }
        "slice" => {
            let s = string_arg(name, args, 0)?;
            let from = if args.len() > 1 {
                int_arg(name, args, 1)? as usize
            } else {
                0
            };
            let to = if args.len() > 2 {
                int_arg(name, args, 2)? as usize
            } else {
                s.len()
            };
            Value::from(
                s.get(from..to)
                    .ok_or_else(|| anyhow!("slice: index out of range"))?,
            )
        }
        "print" => Value::from(sprint(args)),
        "println" => Value::from(args.iter().map(print).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            let f = string_arg(name, args, 0)?;
            Value::from(super::printf::format(f, &args[1..]))
        }
        // docker's functions (cli/templates).
        "json" => {
            want(name, args, 1)?;
            Value::from(serde_json::to_string(&args[0])?)
        }
        "join" => {
            want(name, args, 2)?;
            let sep = string_arg(name, args, 1)?;
            match &args[0] {
                Value::Array(a) => Value::from(a.iter().map(print).collect::<Vec<_>>().join(sep)),
                Value::Null => Value::from(""),
                other => bail!("join of {}", print(other)),
            }
        }
        "split" => {
            want(name, args, 2)?;
            let (s, sep) = (string_arg(name, args, 0)?, string_arg(name, args, 1)?);
            Value::Array(s.split(sep).map(Value::from).collect())
        }
        "upper" | "lower" | "title" => {
            want(name, args, 1)?;
            let s = print(&args[0]);
            Value::from(match name {
                "upper" => s.to_uppercase(),
                "lower" => s.to_lowercase(),
                _ => title(&s),
            })
        }
        "truncate" => {
            want(name, args, 2)?;
            let s = print(&args[0]);
            let n = int_arg(name, args, 1)?.max(0) as usize;
            Value::from(s.chars().take(n).collect::<String>())
        }
        "pad" => {
            want(name, args, 3)?;
            let s = print(&args[0]);
            let (l, r) = (
                int_arg(name, args, 1)?.max(0),
                int_arg(name, args, 2)?.max(0),
            );
            Value::from(format!(
                "{}{s}{}",
                " ".repeat(l as usize),
                " ".repeat(r as usize)
            ))
        }
        other => bail!("function {other:?} not defined"),
    })
}

/// Each word's first letter upper-cased (Go's strings.Title).
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}
