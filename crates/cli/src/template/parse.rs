//! Go text/template's syntax (https://pkg.go.dev/text/template): text and
//! `{{actions}}` (with `{{-`/`-}}` trimming and `{{/* comments */}}`),
//! pipelines of commands joined by `|`, variables (`$x := ...`, `$i, $v :=`
//! in range), and the `if`/`else if`/`else`, `range`, `with` and `end`
//! structure. `define`/`template`/`block` are not parsed: docker's `--format`
//! strings are single templates.

use anyhow::{anyhow, bail, Result};

/// One piece of a parsed template.
#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// `$x := cmd | cmd arg`.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by the pipeline.
    pub vars: Vec<String>,
    pub declare: bool,
    pub commands: Vec<Vec<Arg>>,
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B` (empty: `.` itself).
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is the data).
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).A.B`.
    Sub(Box<Pipeline>, Vec<String>),
}

/// Parse `text` into nodes.
pub fn parse(text: &str) -> Result<Vec<Node>> {
    let items = split(text)?;
    let mut pos = 0;
    let (nodes, end) = parse_list(&items, &mut pos)?;
    match end {
        None => Ok(nodes),
        Some(e) => bail!("unexpected {{{{{}}}}}", e.describe()),
    }
}

/// Text or the tokens of one action.
enum Item {
    Text(String),
    Action(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(String),
    Pipe,
    Open,
    Close,
    /// `.A.B` right after `)`.
    FieldAfter(Vec<String>),
    Declare,
    Assign,
    Comma,
}

/// What ended a list: `{{end}}` or `{{else ...}}` (with the rest of its tokens).
enum End {
    End,
    Else(Vec<Tok>),
}

impl End {
    fn describe(&self) -> &'static str {
        match self {
            End::End => "end",
            End::Else(_) => "else",
        }
    }
}

fn split(text: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_before = after.starts_with("- ") || after.starts_with("-\t") || after == "-";
        if trim_before {
            before = before.trim_end();
        }
        if !before.is_empty() {
            items.push(Item::Text(before.to_string()));
        }
        let body_start = if trim_before { 1 } else { 0 };
        let end = find_close(&after[body_start..]).ok_or_else(|| anyhow!("unclosed action"))?
            + body_start;
        let mut body = &after[body_start..end];
        trim_next = body.ends_with(" -") || body.ends_with("\t-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            items.push(Item::Action(lex(body)?));
        }
        rest = &after[end + 2..];
    }
    let last = if trim_next { rest.trim_start() } else { rest };
    if !last.is_empty() {
        items.push(Item::Text(last.to_string()));
    }
    Ok(items)
}

/// The `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `.A.B` at `s` (starting with '.'): the names and the length taken.
fn field_chain(s: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut i = 0;
    let b: Vec<char> = s.chars().collect();
    while i < b.len() && b[i] == '.' {
        let start = i + 1;
        let mut j = start;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        if j == start {
            // `.` alone (dot).
            i = j;
            break;
        }
        names.push(b[start..j].iter().collect());
        i = j;
    }
    (names, b[..i].iter().map(|c| c.len_utf8()).sum())
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(toks);
        };
        let (tok, len) = match c {
            '|' => (Tok::Pipe, 1),
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '=' => (Tok::Assign, 1),
            ':' if rest.starts_with(":=") => (Tok::Declare, 2),
            '.' if toks.last() == Some(&Tok::Close)
                && rest[1..].starts_with(|c: char| is_ident(c)) =>
            {
                let (names, len) = field_chain(rest);
                (Tok::FieldAfter(names), len)
            }
            '.' if !rest[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                let (names, len) = field_chain(rest);
                (Tok::Field(names), len.max(1))
            }
            '$' => {
                let name_len = rest[1..]
                    .find(|c: char| !is_ident(c))
                    .unwrap_or(rest.len() - 1);
                let name = format!("${}", &rest[1..1 + name_len]);
                let (fields, flen) = field_chain(&rest[1 + name_len..]);
                (Tok::Var(name, fields), 1 + name_len + flen)
            }
            '"' => {
                let end = find_quote_end(rest).ok_or_else(|| anyhow!("unterminated string"))?;
                let lit: String = serde_json::from_str(&rest[..=end])
                    .map_err(|_| anyhow!("bad string literal {}", &rest[..=end]))?;
                (Tok::Str(lit), end + 1)
            }
            '`' => {
                let end = rest[1..]
                    .find('`')
                    .ok_or_else(|| anyhow!("unterminated raw string"))?;
                (Tok::Str(rest[1..1 + end].to_string()), end + 2)
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let len = rest[1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                    .map_or(rest.len(), |n| n + 1);
                (Tok::Num(rest[..len].to_string()), len)
            }
            c if is_ident(c) => {
                let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
                (Tok::Ident(rest[..len].to_string()), len)
            }
            other => bail!("unexpected {other:?} in action"),
        };
        toks.push(tok);
        rest = &rest[len..];
    }
}

fn find_quote_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn parse_list(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Option<End>)> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        let toks = match item {
            Item::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                continue;
            }
            Item::Action(toks) => toks,
        };
        match toks.first() {
            Some(Tok::Ident(k)) if k == "end" => return Ok((nodes, Some(End::End))),
            Some(Tok::Ident(k)) if k == "else" => {
                return Ok((nodes, Some(End::Else(toks[1..].to_vec()))))
            }
            Some(Tok::Ident(k)) if k == "if" || k == "range" || k == "with" => {
                let node = parse_control(k, &toks[1..], items, pos)?;
                nodes.push(node);
            }
            Some(Tok::Ident(k)) if ["define", "template", "block"].contains(&k.as_str()) => {
                bail!("{{{{{k}}}}} is not supported in --format")
            }
            _ => nodes.push(Node::Action(pipeline(toks)?)),
        }
    }
    Ok((nodes, None))
}

fn parse_control(kind: &str, toks: &[Tok], items: &[Item], pos: &mut usize) -> Result<Node> {
    let pipe = pipeline(toks)?;
    let (body, end) = parse_list(items, pos)?;
    let els = match end {
        None => bail!("{{{{{kind}}}}} without {{{{end}}}}"),
        Some(End::End) => Vec::new(),
        Some(End::Else(rest)) if rest.is_empty() => {
            let (els, end) = parse_list(items, pos)?;
            if !matches!(end, Some(End::End)) {
                bail!("{{{{else}}}} without {{{{end}}}}");
            }
            els
        }
        // `{{else if x}}` / `{{else with x}}`: a nested one sharing the end.
        Some(End::Else(rest)) => match rest.first() {
            Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                vec![parse_control(&k.clone(), &rest[1..], items, pos)?]
            }
            _ => bail!("unexpected tokens after else"),
        },
    };
    Ok(match kind {
        "if" => Node::If(pipe, body, els),
        "range" => Node::Range(pipe, body, els),
        _ => Node::With(pipe, body, els),
    })
}

fn pipeline(toks: &[Tok]) -> Result<Pipeline> {
    let mut p = Pipeline::default();
    let mut toks = toks;
    // `$x :=`, `$i, $v :=`, `$x =`.
    let decl_at = toks
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(at) = decl_at {
        let vars: Vec<&Tok> = toks[..at].iter().filter(|t| **t != Tok::Comma).collect();
        if !vars.is_empty()
            && vars
                .iter()
                .all(|t| matches!(t, Tok::Var(_, f) if f.is_empty()))
        {
            p.vars = vars
                .iter()
                .map(|t| match t {
                    Tok::Var(n, _) => n.clone(),
                    _ => unreachable!("checked above"),
                })
                .collect();
            p.declare = toks[at] == Tok::Declare;
            toks = &toks[at + 1..];
        }
    }
    if toks.is_empty() {
        bail!("missing value in action");
    }
    let mut i = 0;
    let mut cmd = Vec::new();
    while i < toks.len() {
        match &toks[i] {
            Tok::Pipe => {
                if cmd.is_empty() {
                    bail!("missing command before |");
                }
                p.commands.push(std::mem::take(&mut cmd));
            }
            Tok::Open => {
                let close = matching_close(toks, i)?;
                let inner = pipeline(&toks[i + 1..close])?;
                let fields = match toks.get(close + 1) {
                    Some(Tok::FieldAfter(f)) => {
                        i = close + 1;
                        f.clone()
                    }
                    _ => {
                        i = close;
                        Vec::new()
                    }
                };
                cmd.push(Arg::Sub(Box::new(inner), fields));
            }
            t => cmd.push(operand(t)?),
        }
        i += 1;
    }
    if cmd.is_empty() {
        bail!("missing command after |");
    }
    p.commands.push(cmd);
    Ok(p)
}

fn matching_close(toks: &[Tok], open: usize) -> Result<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    bail!("unclosed (")
}

fn operand(t: &Tok) -> Result<Arg> {
    Ok(match t {
        Tok::Field(f) => Arg::Field(f.clone()),
        Tok::Var(n, f) => Arg::Var(n.clone(), f.clone()),
        Tok::Str(s) => Arg::Str(s.clone()),
        Tok::Num(n) => {
            if let Ok(i) = n.parse::<i64>() {
                Arg::Int(i)
            } else if let Some(i) = n
                .strip_prefix("0x")
                .and_then(|h| i64::from_str_radix(h, 16).ok())
            {
                Arg::Int(i)
            } else {
                Arg::Float(n.parse().map_err(|_| anyhow!("bad number {n}"))?)
            }
        }
        Tok::Ident(k) if k == "true" => Arg::Bool(true),
        Tok::Ident(k) if k == "false" => Arg::Bool(false),
        Tok::Ident(k) if k == "nil" => Arg::Nil,
        Tok::Ident(k) => Arg::Func(k.clone()),
        Tok::Close => bail!("unexpected )"),
        Tok::Declare | Tok::Assign | Tok::Comma => bail!("unexpected declaration"),
        Tok::FieldAfter(_) | Tok::Pipe | Tok::Open => bail!("unexpected token"),
    })
}
