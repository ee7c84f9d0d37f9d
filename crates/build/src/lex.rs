//! Variable substitution and word processing with docker's rules: `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/rep}`, `${VAR//pat/rep}`; single quotes are literal, double quotes
//! group and still expand, the escape character quotes the next character.
//! Quotes are removed. Which instructions are substituted is decided by the
//! caller (the executor).

/// How deep `${VAR:-${VAR:-…}}` may nest (the lexer recurses per level).
pub const MAX_DEPTH: usize = 64;

/// The most bytes variables may add to one processed string (docker's builder
/// bounds its values too): `ENV b=$a$a` repeated must fail, not eat memory.
pub const MAX_EXPANSION: usize = 1 << 20;

/// The most bytes the processed words of one stage (or the global ARGs) may
/// add up to: each value is bounded by [`MAX_EXPANSION`], but many lines of
/// `ENV vN=$big` would still grow without bound.
pub const MAX_STAGE_TOTAL: usize = 64 << 20;

/// The error when a stage's words exceed [`MAX_STAGE_TOTAL`].
pub fn stage_too_large() -> String {
    format!(
        "variable expansions of this stage add up to more than {} MiB",
        MAX_STAGE_TOTAL >> 20
    )
}

/// Looks a variable up.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The lexer of one Dockerfile (its escape character).
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
}

struct Cursor<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Env,
    /// Unquoted expansion results split words (ProcessWords).
    split: bool,
    words: Vec<String>,
    /// Whether the current word holds anything (an empty "" is a word).
    word_started: bool,
    /// `${` levels entered.
    depth: usize,
    /// Bytes expansions added so far (bounded by [`MAX_EXPANSION`]).
    expanded: usize,
}

fn too_large() -> String {
    format!("variable expansion larger than {} MiB", MAX_EXPANSION >> 20)
}

impl Cursor<'_> {
    /// Append an expansion to `out`, within [`MAX_EXPANSION`] for the whole text.
    fn grow(&mut self, out: &mut String, v: &str) -> Result<(), String> {
        self.expanded += v.len();
        if self.expanded > MAX_EXPANSION {
            return Err(too_large());
        }
        out.push_str(v);
        Ok(())
    }
}

impl Lexer {
    /// Process one word: expand and remove quotes.
    pub fn word(&self, s: &str, env: &dyn Env) -> Result<String, String> {
        let mut c = self.cursor(s, env, false);
        let out = c.run(None)?;
        Ok(out)
    }

    /// Process a string into words: unquoted whitespace (also from
    /// expansions) separates words.
    pub fn words(&self, s: &str, env: &dyn Env) -> Result<Vec<String>, String> {
        let mut c = self.cursor(s, env, true);
        let last = c.run(None)?;
        if !last.is_empty() || c.word_started {
            c.words.push(last);
        }
        Ok(c.words)
    }

    /// Expand variables only, keeping quotes and escapes (heredoc bodies).
    pub fn expand_only(&self, s: &str, env: &dyn Env) -> Result<String, String> {
        // One cursor over the whole text (not one per `$`, which made texts
        // with many `$` quadratic).
        let mut c = self.cursor(s, env, false);
        let mut out = String::new();
        while let Some(ch) = c.peek() {
            if ch == self.escape && c.chars.get(c.pos + 1) == Some(&'$') {
                out.push('$');
                c.pos += 2;
                continue;
            }
            c.pos += 1;
            if ch == '$' {
                let v = c.dollar()?;
                c.grow(&mut out, &v)?;
                continue;
            }
            out.push(ch);
        }
        Ok(out)
    }

    fn cursor<'a>(&self, s: &str, env: &'a dyn Env, split: bool) -> Cursor<'a> {
        Cursor {
            chars: s.chars().collect(),
            pos: 0,
            escape: self.escape,
            env,
            split,
            words: Vec::new(),
            word_started: false,
            depth: 0,
            expanded: 0,
        }
    }

    /// Split on unquoted whitespace, keeping quotes and escapes (docker's
    /// `parseWords`, for ENV/LABEL/ARG key=value lists).
    pub fn split_raw(&self, s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some(q) => {
                    cur.push(c);
                    if c == self.escape && q == '"' {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c.is_whitespace() => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                None => {
                    cur.push(c);
                    if c == self.escape {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    } else if c == '"' || c == '\'' {
                        quote = Some(c);
                    }
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Process until one of `stops` (unquoted); an error at the end.
    fn run_until(&mut self, stops: &[char]) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                Some(c) if stops.contains(&c) => return Ok(out),
                None => return Err("missing '}'".into()),
                Some(_) => {
                    // One character (or quoted run / escape / variable) at a time.
                    let start = self.pos;
                    let end = self.next_unit_end(stops);
                    let sub: String = self.chars[start..end].iter().collect();
                    let mut c = Cursor {
                        chars: sub.chars().collect(),
                        pos: 0,
                        escape: self.escape,
                        env: self.env,
                        split: false,
                        words: Vec::new(),
                        word_started: false,
                        depth: self.depth,
                        expanded: self.expanded,
                    };
                    let v = c.run(None)?;
                    self.expanded = c.expanded;
                    out.push_str(&v);
                    self.pos = end;
                }
            }
        }
    }

    /// The end of the text before the next unquoted stop character,
    /// skipping quotes, escapes and `${...}`.
    fn next_unit_end(&self, stops: &[char]) -> usize {
        let mut i = self.pos;
        let mut depth = 0;
        let mut quote: Option<char> = None;
        while i < self.chars.len() {
            let c = self.chars[i];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == self.escape => i += 1,
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == '$' && self.chars.get(i + 1) == Some(&'{') => {
                    depth += 1;
                    i += 1;
                }
                None if c == '}' && depth > 0 => depth -= 1,
                None if depth == 0 && stops.contains(&c) => return i,
                None => {}
            }
            i += 1;
        }
        i.min(self.chars.len())
    }

    /// Process until `stop` (unquoted, at this level) or the end.
    fn run(&mut self, stop: Option<char>) -> Result<String, String> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                return Ok(out);
            }
            self.pos += 1;
            if c == self.escape {
                match self.peek() {
                    Some(n) => {
                        out.push(n);
                        self.pos += 1;
                    }
                    // A trailing escape character is kept.
                    None => out.push(c),
                }
                self.word_started = true;
            } else if c == '\'' {
                self.word_started = true;
                loop {
                    match self.peek() {
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(n) => {
                            out.push(n);
                            self.pos += 1;
                        }
                        None => return Err("unexpected end of text: missing '".into()),
                    }
                }
            } else if c == '"' {
                self.word_started = true;
                loop {
                    match self.peek() {
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(n) if n == self.escape => {
                            self.pos += 1;
                            match self.peek() {
                                Some(m) if m == '"' || m == '$' || m == self.escape => {
                                    out.push(m);
                                    self.pos += 1;
                                }
                                _ => out.push(n),
                            }
                        }
                        Some('$') => {
                            self.pos += 1;
                            let v = self.dollar()?;
                            self.grow(&mut out, &v)?;
                        }
                        Some(n) => {
                            out.push(n);
                            self.pos += 1;
                        }
                        None => return Err("unexpected end of text: missing \"".into()),
                    }
                }
            } else if c == '$' {
                let v = self.dollar()?;
                if self.split && stop.is_none() {
                    self.grow(&mut String::new(), &v)?;
                    // Unquoted: the value's whitespace separates words.
                    let mut parts = v.split(char::is_whitespace).peekable();
                    let mut first = true;
                    while let Some(p) = parts.next() {
                        if !first {
                            if !out.is_empty() || self.word_started {
                                self.words.push(std::mem::take(&mut out));
                            }
                            self.word_started = false;
                        }
                        first = false;
                        out.push_str(p);
                        if !p.is_empty() {
                            self.word_started = true;
                        }
                        let _ = parts.peek();
                    }
                } else {
                    self.grow(&mut out, &v)?;
                }
            } else if self.split && stop.is_none() && c.is_whitespace() {
                if !out.is_empty() || self.word_started {
                    self.words.push(std::mem::take(&mut out));
                }
                self.word_started = false;
            } else {
                out.push(c);
                self.word_started = true;
            }
        }
        if stop.is_some() {
            return Err("missing '}'".into());
        }
        Ok(out)
    }

    /// After a `$`: the variable's expansion.
    fn dollar(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('{') => {
                if self.depth >= MAX_DEPTH {
                    return Err(format!(
                        "bad substitution: ${{...}} nested more than {MAX_DEPTH} deep"
                    ));
                }
                self.depth += 1;
                let r = self.braced();
                self.depth -= 1;
                r
            }
            Some(c) if is_name_start(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_name_char) {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                Ok(self.env.get(&name).unwrap_or_default())
            }
            // `$` before anything else is a literal dollar.
            _ => Ok("$".into()),
        }
    }

    /// After `${`: the braced expansion.
    fn braced(&mut self) -> Result<String, String> {
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if name.is_empty() || !name.starts_with(is_name_start) {
            return Err(format!("bad substitution: invalid variable name {name:?}"));
        }
        let value = self.env.get(&name);
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                Ok(value.unwrap_or_default())
            }
            Some(':') | Some('-') | Some('+') | Some('?') => {
                let colon = self.peek() == Some(':');
                if colon {
                    self.pos += 1;
                }
                let op = self.peek().ok_or("missing '}'")?;
                if !matches!(op, '-' | '+' | '?') {
                    return Err(format!(
                        "bad substitution ${{{name}:{op}...}}: modifier not supported"
                    ));
                }
                self.pos += 1;
                // The word is processed like text (it may hold variables
                // and quotes) but never split.
                let split = std::mem::replace(&mut self.split, false);
                let word = self.run(Some('}'));
                self.split = split;
                let word = word?;
                self.pos += 1; // the '}'
                let set = match (&value, colon) {
                    (Some(v), true) => !v.is_empty(),
                    (Some(_), false) => true,
                    (None, _) => false,
                };
                Ok(match op {
                    '-' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            word
                        }
                    }
                    '+' => {
                        if set {
                            word
                        } else {
                            String::new()
                        }
                    }
                    _ => {
                        if set {
                            value.unwrap_or_default()
                        } else if word.is_empty() {
                            return Err(format!("{name}: is not allowed to be unset"));
                        } else {
                            return Err(format!("{name}: {word}"));
                        }
                    }
                })
            }
            Some(op @ ('#' | '%' | '/')) => {
                self.pos += 1;
                let longest = self.peek() == Some(op);
                if longest {
                    self.pos += 1;
                }
                let split = std::mem::replace(&mut self.split, false);
                let parts = if op == '/' {
                    // `${VAR/pat}` without a replacement deletes the match.
                    self.run_until(&['/', '}']).and_then(|p| {
                        if self.peek() == Some('/') {
                            self.pos += 1;
                            Ok((p, self.run(Some('}'))?))
                        } else {
                            Ok((p, String::new()))
                        }
                    })
                } else {
                    self.run(Some('}')).map(|p| (p, String::new()))
                };
                self.split = split;
                let (pattern, replacement) = parts?;
                self.pos += 1; // the '}'
                let v = value.unwrap_or_default();
                Ok(match op {
                    '#' => strip_prefix(&v, &pattern, longest)?,
                    '%' => strip_suffix(&v, &pattern, longest)?,
                    _ => replace(&v, &pattern, &replacement, longest)?,
                })
            }
            Some(c) => Err(format!(
                "bad substitution ${{{name}{c}...}}: modifier not supported"
            )),
            None => Err("missing '}'".into()),
        }
    }
}
/// The most steps (value characters x pattern characters) the pattern
/// operators may take: a matcher never recurses and never backtracks, but a
/// long pattern over a long value is still quadratic.
pub const MAX_PATTERN_WORK: usize = 1 << 26;

fn too_complex() -> String {
    "pattern substitution too large (value x pattern)".to_string()
}

/// A glob (`*` and `?` match any characters, `/` too) run as a set of
/// pattern positions over the text, one character at a time: O(pattern)
/// per character, no recursion, no backtracking.
struct Glob {
    p: Vec<char>,
    /// Pattern positions reachable after the characters fed so far.
    on: Vec<bool>,
    any: bool,
}

impl Glob {
    fn new(p: Vec<char>) -> Glob {
        let mut g = Glob {
            on: vec![false; p.len() + 1],
            p,
            any: true,
        };
        g.on[0] = true;
        g.close();
        g
    }

    /// A `*` may match nothing: its position reaches the next.
    fn close(&mut self) {
        for j in 0..self.p.len() {
            if self.on[j] && self.p[j] == '*' {
                self.on[j + 1] = true;
            }
        }
    }

    fn feed(&mut self, c: char) {
        let mut next = vec![false; self.on.len()];
        let mut any = false;
        for (j, &pc) in self.p.iter().enumerate() {
            if !self.on[j] {
                continue;
            }
            if pc == '*' {
                next[j] = true;
                any = true;
            } else if pc == '?' || pc == c {
                next[j + 1] = true;
                any = true;
            }
        }
        self.on = next;
        self.any = any;
        self.close();
    }

    fn accepts(&self) -> bool {
        self.on[self.p.len()]
    }
}

/// Whether `pattern` matches all of `s`.
#[cfg(test)]
fn matches(pattern: &str, s: &str) -> bool {
    let mut g = Glob::new(pattern.chars().collect());
    for c in s.chars() {
        g.feed(c);
        if !g.any {
            return false;
        }
    }
    g.accepts()
}

fn budget(v: &str, pat: &str) -> Result<(), String> {
    let work = v.chars().count().saturating_mul(pat.chars().count() + 1);
    if work > MAX_PATTERN_WORK {
        return Err(too_complex());
    }
    Ok(())
}

/// Byte lengths of the prefixes of `chars` the pattern matches, shortest first.
fn matching_prefixes(pat: Vec<char>, chars: impl Iterator<Item = char>) -> Vec<usize> {
    let mut g = Glob::new(pat);
    let mut out = Vec::new();
    let mut len = 0;
    if g.accepts() {
        out.push(0);
    }
    for c in chars {
        g.feed(c);
        len += c.len_utf8();
        if !g.any {
            break;
        }
        if g.accepts() {
            out.push(len);
        }
    }
    out
}

/// `${VAR#pat}` / `${VAR##pat}`.
fn strip_prefix(v: &str, pat: &str, longest: bool) -> Result<String, String> {
    budget(v, pat)?;
    let ends = matching_prefixes(pat.chars().collect(), v.chars());
    let cut = if longest { ends.last() } else { ends.first() };
    Ok(cut.map_or_else(|| v.to_string(), |&i| v[i..].to_string()))
}

/// `${VAR%pat}` / `${VAR%%pat}`: prefixes of the reversed value.
fn strip_suffix(v: &str, pat: &str, longest: bool) -> Result<String, String> {
    budget(v, pat)?;
    let ends = matching_prefixes(pat.chars().rev().collect(), v.chars().rev());
    let cut = if longest { ends.last() } else { ends.first() };
    Ok(cut.map_or_else(|| v.to_string(), |&n| v[..v.len() - n].to_string()))
}

/// `${VAR/pat/rep}` (first match, longest) / `${VAR//pat/rep}` (every match).
fn replace(v: &str, pat: &str, rep: &str, all: bool) -> Result<String, String> {
    if pat.is_empty() {
        return Ok(v.to_string());
    }
    // One pass at least; the running count below bounds the rest.
    budget(v, pat)?;
    let p: Vec<char> = pat.chars().collect();
    let mut out = String::new();
    let mut work = 0usize;
    let mut i = 0;
    while i < v.len() {
        // The longest non-empty match starting at i.
        let mut g = Glob::new(p.clone());
        let mut end = None;
        let mut len = 0;
        for c in v[i..].chars() {
            work += p.len() + 1;
            if work > MAX_PATTERN_WORK {
                return Err(too_complex());
            }
            g.feed(c);
            len += c.len_utf8();
            if !g.any {
                break;
            }
            if g.accepts() {
                end = Some(i + len);
            }
        }
        match end {
            Some(e) => {
                if out.len() + rep.len() > MAX_EXPANSION {
                    return Err(too_large());
                }
                out.push_str(rep);
                i = e;
                if !all {
                    out.push_str(&v[i..]);
                    return Ok(out);
                }
            }
            None => {
                let c = v[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&v[i..i + c]);
                i += c;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        Lexer { escape: '\\' }.word(s, &env).unwrap()
    }

    #[test]
    fn expansions() {
        assert_eq!(w("$A"), "alpha");
        assert_eq!(w("${A}x"), "alphax");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("${NOPE:-dflt}"), "dflt");
        assert_eq!(w("${EMPTY:-dflt}"), "dflt");
        assert_eq!(w("${EMPTY-dflt}"), "");
        assert_eq!(w("${A:-dflt}"), "alpha");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${EMPTY:+set}"), "");
        assert_eq!(w("${EMPTY+set}"), "set");
        assert_eq!(w("${NOPE:+set}"), "");
        assert_eq!(w("${NOPE:-$A}"), "alpha");
        assert_eq!(w("${NOPE:-a b}"), "a b");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$1"), "$1");
        let l = Lexer { escape: '\\' };
        assert_eq!(
            l.word("${NOPE:?must be set}", &env).unwrap_err(),
            "NOPE: must be set"
        );
        assert!(l.word("${A", &env).is_err());
        assert!(l
            .word("${A^^}", &env)
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn pattern_modifiers() {
        let e = |n: &str| match n {
            "P" => Some("/usr/local/bin/tool.tar.gz".to_string()),
            _ => None,
        };
        let l = Lexer { escape: '\\' };
        let w = |s: &str| l.word(s, &e).unwrap();
        assert_eq!(w("${P#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(w("${P##*/}"), "tool.tar.gz");
        assert_eq!(w("${P%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(w("${P%%.*}"), "/usr/local/bin/tool");
        assert_eq!(w("${P/local/opt}"), "/usr/opt/bin/tool.tar.gz");
        assert_eq!(w("${P//o/0}"), "/usr/l0cal/bin/t00l.tar.gz");
        assert_eq!(w("${P/l*l/X}"), "/usr/X.tar.gz");
        assert_eq!(w("${P/.tar}"), "/usr/local/bin/tool.gz");
        assert_eq!(w("${P#nomatch}"), "/usr/local/bin/tool.tar.gz");
        assert_eq!(w("${NOPE##*/}"), "");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "alpha b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\b\""), "a\\b");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("C:\\\\x"), "C:\\x");
        let tick = Lexer { escape: '`' };
        assert_eq!(tick.word("C:\\dir`$A", &env).unwrap(), "C:\\dir$A");
        assert!(Lexer { escape: '\\' }.word("'open", &env).is_err());
    }

    #[test]
    fn words() {
        let l = Lexer { escape: '\\' };
        assert_eq!(
            l.words("a  b \"c d\"", &env).unwrap(),
            vec!["a", "b", "c d"]
        );
        assert_eq!(l.words("$SP z", &env).unwrap(), vec!["x", "y", "z"]);
        assert_eq!(l.words("\"$SP\"", &env).unwrap(), vec!["x y"]);
        assert_eq!(l.words("\"\" a", &env).unwrap(), vec!["", "a"]);
        assert_eq!(
            l.split_raw(r#"a=1 b="x y" c=d\ e"#),
            vec!["a=1", "b=\"x y\"", "c=d\\ e"]
        );
    }

    #[test]
    fn expand_only_keeps_quotes() {
        let l = Lexer { escape: '\\' };
        assert_eq!(
            l.expand_only("echo '$A' \"${A}\" \\$A\n", &env).unwrap(),
            "echo 'alpha' \"alpha\" $A\n"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let l = Lexer { escape: '\\' };
        let nest = |n: usize| "${a:-".repeat(n) + "x" + &"}".repeat(n);
        assert_eq!(l.word(&nest(MAX_DEPTH), &env).unwrap(), "x");
        for s in [nest(4000), nest(100_000)] {
            let e = l.word(&s, &env).unwrap_err();
            assert!(e.contains("nested more than 64 deep"), "{e}");
            assert!(l.words(&s, &env).is_err());
            assert!(l.expand_only(&s, &env).is_err());
        }
        // Through the pattern operators' own path too.
        let s = "${A/".repeat(5000) + &"}".repeat(5000);
        assert!(l.word(&s, &env).unwrap_err().contains("nested more than"));
    }

    #[test]
    fn expansions_are_bounded() {
        let l = Lexer { escape: '\\' };
        let big = "v".repeat(MAX_EXPANSION / 2 + 1);
        let e = |n: &str| (n == "B").then(|| big.clone());
        assert_eq!(l.word("$B", &e).unwrap().len(), big.len());
        assert_eq!(l.word("${B/v/vv}", &e).unwrap().len(), big.len() + 1);
        for s in ["$B$B", "${B}${B}", "\"$B$B\"", "$B x $B", "${B//v/vv}"] {
            let err = l.word(s, &e).unwrap_err();
            assert!(
                err == "variable expansion larger than 1 MiB"
                    || err == "pattern substitution too large (value x pattern)",
                "{s}: {err}"
            );
        }
        assert!(l.words("$B $B", &e).is_err());
        assert!(l.expand_only("$B $B", &e).is_err());
        // Doubling from line to line stops at the bound.
        let mut vars: std::collections::HashMap<String, String> = Default::default();
        vars.insert("e0".into(), "x".into());
        let mut failed = None;
        for i in 0..40 {
            let env = |n: &str| vars.get(n).cloned();
            match l.word(&format!("${{e{i}}}${{e{i}}}"), &env) {
                Ok(v) => {
                    vars.insert(format!("e{}", i + 1), v);
                }
                Err(_) => {
                    failed = Some(i);
                    break;
                }
            }
        }
        assert_eq!(failed, Some(20));
    }

    #[test]
    fn glob_patterns_are_iterative() {
        assert!(matches("a*b?c", "aXXbYc"));
        assert!(!matches("a*b?c", "aXXbc"));
        assert!(matches("**", ""));
        assert!(matches("*a*a*a*a*a*a*a*a*a*a*a*a*", &"a".repeat(12)));
        // Exponential for a naive backtracker; a long pattern overflowed its stack.
        assert!(!matches(&"*a".repeat(40), &"a".repeat(39)));
        assert!(matches(&"?".repeat(2000), &"x".repeat(2000)));
        // Quadratic work is bounded with an error.
        let e = |_: &str| Some("x".repeat(100_000));
        let l = Lexer { escape: '\\' };
        let pat = "*".repeat(5000);
        for op in ["#", "##", "%", "%%", "/", "//"] {
            let err = l.word(&format!("${{V{op}{pat}}}"), &e).unwrap_err();
            assert_eq!(err, too_complex(), "{op}");
        }
        assert_eq!(l.word("${V##*x}", &e).unwrap(), "");
        assert_eq!(l.word("${V//x/y}", &e).unwrap().len(), 100_000);
    }
}
