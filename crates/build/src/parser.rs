//! The Dockerfile parser: parser directives (`syntax`, `escape`, `check`),
//! comments, line continuations, heredocs, flags, and the JSON (exec) and
//! shell forms. It produces instructions with their position; variable
//! substitution happens later ([`crate::lex`]), per instruction, with the
//! environment of the build at that point.

use std::fmt;

/// A parse error with its position (1-based line and column) and the
/// offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub text: String,
}

/// The most characters of an instruction an error quotes.
const QUOTED: usize = 120;

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Quoted with escapes (no control characters), and cut: a 40 kB
        // line must not make a 40 kB error.
        let mut text: String = self.text.chars().take(QUOTED).collect();
        if self.text.chars().nth(QUOTED).is_some() {
            text.push_str("...");
        }
        write!(
            f,
            "{}:{}: {}: {:?}",
            self.line, self.column, self.message, text
        )
    }
}

/// The instructions a Dockerfile may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    Stopsignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    pub fn parse(word: &str) -> Option<Keyword> {
        use Keyword::*;
        Some(match word.to_ascii_uppercase().as_str() {
            "FROM" => From,
            "RUN" => Run,
            "CMD" => Cmd,
            "LABEL" => Label,
            "MAINTAINER" => Maintainer,
            "EXPOSE" => Expose,
            "ENV" => Env,
            "ADD" => Add,
            "COPY" => Copy,
            "ENTRYPOINT" => Entrypoint,
            "VOLUME" => Volume,
            "USER" => User,
            "WORKDIR" => Workdir,
            "ARG" => Arg,
            "ONBUILD" => Onbuild,
            "STOPSIGNAL" => Stopsignal,
            "HEALTHCHECK" => Healthcheck,
            "SHELL" => Shell,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Keyword::*;
        match self {
            From => "FROM",
            Run => "RUN",
            Cmd => "CMD",
            Label => "LABEL",
            Maintainer => "MAINTAINER",
            Expose => "EXPOSE",
            Env => "ENV",
            Add => "ADD",
            Copy => "COPY",
            Entrypoint => "ENTRYPOINT",
            Volume => "VOLUME",
            User => "USER",
            Workdir => "WORKDIR",
            Arg => "ARG",
            Onbuild => "ONBUILD",
            Stopsignal => "STOPSIGNAL",
            Healthcheck => "HEALTHCHECK",
            Shell => "SHELL",
        }
    }

    /// Flags (`--name=value`) each instruction accepts.
    fn flags(self) -> &'static [&'static str] {
        use Keyword::*;
        match self {
            From => &["platform"],
            Run => &["mount", "network", "security"],
            Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
            Add => &[
                "chown",
                "chmod",
                "link",
                "keep-git-dir",
                "checksum",
                "exclude",
            ],
            Healthcheck => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        }
    }

    /// Whether the arguments may be a JSON array (exec form).
    fn json_form(self) -> bool {
        use Keyword::*;
        matches!(self, Run | Cmd | Entrypoint | Shell | Copy | Add | Volume)
    }

    /// Whether the instruction may carry heredocs.
    fn heredocs(self) -> bool {
        matches!(self, Keyword::Run | Keyword::Copy | Keyword::Add)
    }
}

/// A `--name[=value]` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// An instruction's arguments: a JSON string array, or the raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    Exec(Vec<String>),
    Shell(String),
}

/// A heredoc body (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// Body lines, each with its newline.
    pub body: String,
    /// Unquoted delimiters have their body expanded (for COPY/ADD).
    pub expand: bool,
    /// `<<-`: leading tabs were stripped.
    pub chomp: bool,
}

/// One instruction with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: Keyword,
    pub line: usize,
    pub column: usize,
    pub flags: Vec<Flag>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// ONBUILD's instruction.
    pub inner: Option<Box<Instruction>>,
    /// A blank line inside the continuation (a build check warns).
    pub empty_continuation: bool,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    pub fn flag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |f| f.name == name)
            .map(|f| f.value.as_deref().unwrap_or(""))
    }

    pub fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: self.column,
            message: message.into(),
            text: self.original.clone(),
        }
    }
}

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    pub escape: char,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
}

/// `# name=value` at the top of the file, if the line has that shape.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Whether `line` ends with the escape character (a continuation), and the
/// line without it.
fn continues(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    let body = t.strip_suffix(escape)?;
    // An escaped escape character is a literal one, not a continuation.
    let run = body.chars().rev().take_while(|&c| c == escape).count();
    if run % 2 == 1 {
        return None;
    }
    Some(body)
}

/// Parse a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut directives = Directives::default();
    let mut seen = Vec::new();
    let mut i = 0;
    // A leading byte-order mark is not part of the first line.
    let first = lines
        .first()
        .map(|l| l.trim_start_matches('\u{feff}'))
        .unwrap_or("");
    while i < lines.len() {
        let line = if i == 0 { first } else { lines[i] };
        let Some((name, value)) = directive(line) else {
            break;
        };
        let err = |m: String| ParseError {
            line: i + 1,
            column: 1,
            message: m,
            text: line.to_string(),
        };
        match name.as_str() {
            "syntax" | "escape" | "check" => {
                if seen.contains(&name) {
                    return Err(err(format!("parser directive {name} given twice")));
                }
                seen.push(name.clone());
                match name.as_str() {
                    "syntax" => directives.syntax = Some(value),
                    "check" => directives.check = Some(value),
                    _ => {
                        directives.escape = match value.as_str() {
                            "\\" => '\\',
                            "`" => '`',
                            _ => {
                                return Err(err(format!(
                                    "invalid escape directive {value:?}: must be \\ or `"
                                )))
                            }
                        }
                    }
                }
            }
            // Unknown directives are comments, and end the directive block.
            _ => break,
        }
        i += 1;
    }
    let escape = directives.escape;
    let mut instructions = Vec::new();
    while i < lines.len() {
        let line = if i == 0 { first } else { lines[i] };
        if line.trim().is_empty() || is_comment(line) {
            i += 1;
            continue;
        }
        let start = i;
        let column = line.len() - line.trim_start().len() + 1;
        let mut logical = String::new();
        let mut empty_continuation = false;
        let mut cur = line;
        loop {
            match continues(cur, escape) {
                Some(body) => {
                    logical.push_str(body);
                    i += 1;
                    // Comment and empty lines inside a continuation are dropped.
                    while i < lines.len() && (is_comment(lines[i]) || lines[i].trim().is_empty()) {
                        empty_continuation |= lines[i].trim().is_empty();
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i];
                }
                None => {
                    logical.push_str(cur);
                    i += 1;
                    break;
                }
            }
        }
        let logical = logical.trim().to_string();
        let mut ins = parse_instruction(&logical, start + 1, column)?;
        // Heredoc bodies follow the instruction's line.
        let mut heredocs = Vec::new();
        if ins.keyword.heredocs() {
            for (name, expand, chomp) in heredoc_markers(&logical, escape) {
                let mut body = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if chomp { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                if !closed {
                    return Err(ins.error(format!("unterminated heredoc <<{name}")));
                }
                heredocs.push(Heredoc {
                    name,
                    body,
                    expand,
                    chomp,
                });
            }
        }
        ins.heredocs = heredocs;
        ins.empty_continuation = empty_continuation;
        instructions.push(ins);
    }
    Ok(Dockerfile {
        directives,
        instructions,
    })
}

/// The heredoc markers of a line, in order: (delimiter, expand, chomp).
pub fn heredoc_markers(line: &str, escape: char) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut j = 0;
    while j < chars.len() {
        let c = chars[j];
        if c == escape && quote != Some('\'') {
            j += 2;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '<'
                && chars.get(j + 1) == Some(&'<')
                && chars.get(j + 2) != Some(&'<') =>
            {
                let mut k = j + 2;
                let chomp = chars.get(k) == Some(&'-');
                if chomp {
                    k += 1;
                }
                let q = match chars.get(k) {
                    Some(&q) if q == '"' || q == '\'' => {
                        k += 1;
                        Some(q)
                    }
                    _ => None,
                };
                let name_start = k;
                while k < chars.len() && (chars[k].is_ascii_alphanumeric() || chars[k] == '_') {
                    k += 1;
                }
                let name: String = chars[name_start..k].iter().collect();
                let closes = match q {
                    Some(q) => chars.get(k) == Some(&q),
                    None => true,
                };
                let starts_ok = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
                if starts_ok && closes {
                    out.push((name, q.is_none(), chomp));
                    j = if q.is_some() { k + 1 } else { k };
                    continue;
                }
            }
            None => {}
        }
        j += 1;
    }
    out
}

fn parse_instruction(logical: &str, line: usize, column: usize) -> Result<Instruction, ParseError> {
    let err = |m: String| ParseError {
        line,
        column,
        message: m,
        text: logical.to_string(),
    };
    let (word, rest) = match logical.find(char::is_whitespace) {
        Some(p) => (&logical[..p], logical[p..].trim_start()),
        None => (logical, ""),
    };
    let keyword = Keyword::parse(word).ok_or_else(|| err(format!("unknown instruction {word}")))?;
    let mut rest = rest;
    let mut flags = Vec::new();
    let allowed = keyword.flags();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(unquote_flag(v))),
            None => (word, None),
        };
        if name.is_empty() {
            // A bare `--` is an argument, not a flag.
            break;
        }
        if !allowed.contains(&name) {
            return Err(err(format!("unknown flag --{name} for {}", keyword.name())));
        }
        flags.push(Flag {
            name: name.to_string(),
            value,
        });
        rest = after[end..].trim_start();
    }
    let mut inner = None;
    let args = if keyword == Keyword::Onbuild {
        if rest.is_empty() {
            return Err(err("ONBUILD needs an instruction".into()));
        }
        let nested = parse_instruction(rest, line, column)?;
        match nested.keyword {
            Keyword::Onbuild | Keyword::From | Keyword::Maintainer => {
                return Err(err(format!(
                    "{} is not allowed as an ONBUILD instruction",
                    nested.keyword.name()
                )))
            }
            _ => {}
        }
        inner = Some(Box::new(nested));
        Args::Shell(rest.to_string())
    } else if keyword.json_form() && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Exec(v),
            Err(_) if keyword == Keyword::Shell => {
                return Err(err("SHELL requires a JSON array of strings".into()))
            }
            // Not valid JSON: docker falls back to the shell form.
            Err(_) => Args::Shell(rest.to_string()),
        }
    } else {
        if keyword == Keyword::Shell {
            return Err(err("SHELL requires a JSON array of strings".into()));
        }
        Args::Shell(rest.to_string())
    };
    let needs_args = !matches!(keyword, Keyword::Cmd | Keyword::Entrypoint);
    if needs_args && matches!(&args, Args::Shell(s) if s.is_empty()) {
        return Err(err(format!(
            "{} needs at least one argument",
            keyword.name()
        )));
    }
    if keyword == Keyword::Healthcheck {
        healthcheck_form(&args).map_err(err)?;
    }
    Ok(Instruction {
        keyword,
        line,
        column,
        flags,
        args,
        heredocs: Vec::new(),
        original: logical.to_string(),
        inner,
        empty_continuation: false,
    })
}

/// Flag values may be quoted (`--chown="1:1"`).
fn unquote_flag(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// HEALTHCHECK's command: None for `NONE`, else its test as docker stores it.
pub fn healthcheck_form(args: &Args) -> Result<Option<Vec<String>>, String> {
    let Args::Shell(s) = args else {
        return Err("HEALTHCHECK needs NONE or CMD".into());
    };
    let (word, rest) = match s.find(char::is_whitespace) {
        Some(p) => (&s[..p], s[p..].trim_start()),
        None => (s.as_str(), ""),
    };
    match word.to_ascii_uppercase().as_str() {
        "NONE" if rest.is_empty() => Ok(None),
        "NONE" => Err("HEALTHCHECK NONE takes no arguments".into()),
        "CMD" if rest.is_empty() => Err("HEALTHCHECK CMD needs a command".into()),
        "CMD" => Ok(Some(match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => std::iter::once("CMD".to_string()).chain(v).collect(),
            _ => vec!["CMD-SHELL".to_string(), rest.to_string()],
        })),
        _ => Err(format!("HEALTHCHECK needs NONE or CMD, not {word}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let d = parse(text).unwrap();
        assert_eq!(d.instructions.len(), 1, "{d:?}");
        d.instructions.into_iter().next().unwrap()
    }

    #[test]
    fn directives_and_comments() {
        let d = parse("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\n\n# a comment\nFROM busybox\n").unwrap();
        assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.directives.escape, '`');
        assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
        assert_eq!(d.instructions[0].line, 6);
        // After a comment, a directive-looking line is a comment.
        let d = parse("# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(d.directives.escape, '\\');
        let e = parse("# escape=x\nFROM a").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(parse("# escape=`\n# escape=\\\nFROM a").is_err());
    }

    #[test]
    fn continuations() {
        let i = one("RUN echo a \\\n  # comment inside\n\n  && echo b\n");
        assert_eq!(i.args, Args::Shell("echo a   && echo b".into()));
        assert_eq!(i.line, 1);
        let d = parse("# escape=`\nRUN dir c:\\ `\n  && echo x\n").unwrap();
        assert_eq!(
            d.instructions[0].args,
            Args::Shell("dir c:\\   && echo x".into())
        );
        // An escaped escape at the end is literal.
        let d = parse("RUN echo \\\\\nRUN x").unwrap();
        assert_eq!(d.instructions.len(), 2);
    }

    #[test]
    fn exec_and_shell_forms() {
        assert_eq!(
            one(r#"CMD ["echo", "hi there"]"#).args,
            Args::Exec(vec!["echo".into(), "hi there".into()])
        );
        assert_eq!(one("CMD echo hi").args, Args::Shell("echo hi".into()));
        // Broken JSON falls back to the shell form.
        assert_eq!(one("CMD [echo]").args, Args::Shell("[echo]".into()));
        assert!(parse("SHELL /bin/bash -c").is_err());
        assert_eq!(
            one(r#"SHELL ["/bin/sh", "-c"]"#).args,
            Args::Exec(vec!["/bin/sh".into(), "-c".into()])
        );
        assert_eq!(one("CMD").args, Args::Shell("".into()));
    }

    #[test]
    fn flags() {
        let i = one("COPY --from=build --chown=1:2 --link a b");
        assert_eq!(i.flag("from").unwrap().value.as_deref(), Some("build"));
        assert_eq!(i.flag("link").unwrap().value, None);
        assert_eq!(i.args, Args::Shell("a b".into()));
        let i = one("RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t echo");
        assert_eq!(i.flag_values("mount").count(), 2);
        let e = parse("\n  COPY --frm=x a b").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("--frm"), "{e}");
        assert_eq!(e.text, "COPY --frm=x a b");
    }

    #[test]
    fn unknown_instruction_position() {
        let e = parse("FROM a\nRUN x\n   FOO bar\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 4));
        assert_eq!(e.to_string(), "3:4: unknown instruction FOO: \"FOO bar\"");
        assert!(parse("FROM").is_err());
    }

    #[test]
    fn heredocs() {
        let d = parse("FROM a\nRUN <<EOF\necho one\necho $HOME\nEOF\nCOPY <<-\"X\" /f\n\thello\n\tX\nENV a=b\n").unwrap();
        let run = &d.instructions[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].body, "echo one\necho $HOME\n");
        assert!(run.heredocs[0].expand);
        let copy = &d.instructions[2];
        assert_eq!(copy.heredocs[0].body, "hello\n");
        assert!(!copy.heredocs[0].expand && copy.heredocs[0].chomp);
        assert_eq!(d.instructions[3].keyword, Keyword::Env);
        // Two heredocs on one line.
        let d = parse("COPY <<A <<B /dir/\na\nA\nb\nB\n").unwrap();
        assert_eq!(d.instructions[0].heredocs.len(), 2);
        assert_eq!(d.instructions[0].heredocs[1].body, "b\n");
        let e = parse("RUN <<EOF\necho\n").unwrap_err();
        assert!(e.message.contains("unterminated heredoc"), "{e}");
        // `<<` inside quotes is no heredoc.
        assert!(heredoc_markers("echo '<<EOF'", '\\').is_empty());
    }

    #[test]
    fn onbuild_and_healthcheck() {
        let i = one("ONBUILD RUN echo hi");
        assert_eq!(i.inner.as_ref().unwrap().keyword, Keyword::Run);
        assert!(parse("ONBUILD FROM x").is_err());
        let i = one("HEALTHCHECK --interval=5s CMD curl -f http://x/");
        assert_eq!(
            healthcheck_form(&i.args).unwrap().unwrap(),
            vec!["CMD-SHELL", "curl -f http://x/"]
        );
        let i = one(r#"HEALTHCHECK CMD ["true"]"#);
        assert_eq!(
            healthcheck_form(&i.args).unwrap().unwrap(),
            vec!["CMD", "true"]
        );
        assert_eq!(
            healthcheck_form(&one("HEALTHCHECK NONE").args).unwrap(),
            None
        );
        assert!(parse("HEALTHCHECK foo").is_err());
    }

    #[test]
    fn case_insensitive_and_crlf() {
        let d = parse("from busybox AS b\r\nrun echo\r\n").unwrap();
        assert_eq!(d.instructions[0].keyword, Keyword::From);
        assert_eq!(d.instructions[1].args, Args::Shell("echo".into()));
    }
}
