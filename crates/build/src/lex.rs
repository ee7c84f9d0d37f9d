//! Variable substitution and word processing with docker's rules: `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/rep}`, `${VAR//pat/rep}`; single quotes are literal, double quotes
//! group and still expand, the escape character quotes the next character.
//! Quotes are removed. Which instructions are substituted is decided by the
//! caller (the executor).

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
        let chars: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            if ch == self.escape && chars.get(i + 1) == Some(&'$') {
                out.push('$');
                i += 2;
                continue;
            }
            if ch == '$' {
                let mut c = self.cursor(&chars[i..].iter().collect::<String>(), env, false);
                c.pos = 1;
                let v = c.dollar()?;
                out.push_str(&v);
                i += c.pos;
                continue;
            }
            out.push(ch);
            i += 1;
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
                    };
                    out.push_str(&c.run(None)?);
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
                            out.push_str(&v);
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
                    out.push_str(&v);
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
                            '#' => strip_prefix(&v, &pattern, longest),
                            '%' => strip_suffix(&v, &pattern, longest),
                            _ => replace(&v, &pattern, &replacement, longest),
                        })
                    }
                    Some(c) => Err(format!(
                        "bad substitution ${{{name}{c}...}}: modifier not supported"
                    )),
                    None => Err("missing '}'".into()),
                }
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
}

/// Glob match of a whole string (`*` and `?` match any characters, `/` too).
fn matches(pattern: &str, s: &str) -> bool {
    fn at(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|k| at(&p[1..], &t[k..])),
            Some('?') => !t.is_empty() && at(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && at(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    at(&p, &t)
}

/// Char boundaries of `s`, shortest first.
fn cuts(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
}

/// `${VAR#pat}` / `${VAR##pat}`.
fn strip_prefix(v: &str, pat: &str, longest: bool) -> String {
    let mut c = cuts(v);
    if longest {
        c.reverse();
    }
    c.into_iter()
        .find(|&i| matches(pat, &v[..i]))
        .map(|i| v[i..].to_string())
        .unwrap_or_else(|| v.to_string())
}

/// `${VAR%pat}` / `${VAR%%pat}`.
fn strip_suffix(v: &str, pat: &str, longest: bool) -> String {
    let mut c = cuts(v);
    if !longest {
        c.reverse();
    }
    c.into_iter()
        .find(|&i| matches(pat, &v[i..]))
        .map(|i| v[..i].to_string())
        .unwrap_or_else(|| v.to_string())
}

/// `${VAR/pat/rep}` (first match, longest) / `${VAR//pat/rep}` (every match).
fn replace(v: &str, pat: &str, rep: &str, all: bool) -> String {
    if pat.is_empty() {
        return v.to_string();
    }
    let c = cuts(v);
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let end = c
            .iter()
            .rev()
            .copied()
            .filter(|&e| e > i)
            .find(|&e| matches(pat, &v[i..e]));
        match end {
            Some(e) => {
                out.push_str(rep);
                i = e;
                if !all {
                    out.push_str(&v[i..]);
                    return out;
                }
            }
            None => {
                let next = c.iter().copied().find(|&e| e > i).unwrap_or(v.len());
                out.push_str(&v[i..next]);
                i = next;
            }
        }
    }
    out
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
}
