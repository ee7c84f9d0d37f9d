//! `.dockerignore`: patterns with `*`, `?`, `[...]`, `**` (any number of
//! directories) and `!` exceptions; the last matching pattern decides, and a
//! pattern matching a directory excludes everything below it. Also the glob
//! matcher COPY/ADD sources use.

/// A parsed ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    exception: bool,
}

/// Clean a path the way Go's filepath.Clean does, relative, no leading `/`.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let p = clean(p);
            if p.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                segments: p.split('/').map(str::to_string).collect(),
                exception,
            });
        }
        Ignore { patterns }
    }

    /// Add one more pattern (after the others, so it decides over them).
    pub fn add(&mut self, pattern: &str) {
        self.patterns.extend(Ignore::parse(pattern).patterns);
    }

    /// Whether the context path (relative, `/`-separated) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // A match on the path or on any of its parent directories.
            let hit = (1..=segs.len()).any(|n| match_segments(&p.segments, &segs[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception could re-include something below `dir`, so an
    /// excluded directory must still be walked.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let segs: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        self.patterns.iter().any(|p| {
            p.exception && {
                // The exception's leading segments must be able to match the dir.
                let n = segs.len().min(p.segments.len());
                p.segments[..n].iter().any(|s| s == "**")
                    || p.segments.len() > segs.len() && match_segments(&p.segments[..n], &segs[..n])
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Match pattern segments against path segments; `**` matches any number.
pub fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|k| match_segments(&pat[1..], &path[k..])),
        Some(p) => !path.is_empty() && glob(p, path[0]) && match_segments(&pat[1..], &path[1..]),
    }
}

/// Whether a path (`/`-separated) matches a glob where `*` does not cross `/`.
pub fn glob_path(pattern: &str, path: &str) -> bool {
    let pat: Vec<String> = clean(pattern).split('/').map(str::to_string).collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pat, &segs)
}

/// Whether a string holds glob metacharacters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Match one path segment against a glob segment (Go's filepath.Match).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|k| glob_at(&p[1..], &n[k..])),
        Some('?') => !n.is_empty() && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some('^') | Some('!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != ']' || first) {
                first = false;
                let lo = if p[i] == '\\' && i + 1 < p.len() {
                    i += 1;
                    p[i]
                } else {
                    p[i]
                };
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&c| c != ']') {
                    let hi = p[i + 2];
                    if lo <= *c && *c <= hi {
                        matched = true;
                    }
                    i += 3;
                } else {
                    if lo == *c {
                        matched = true;
                    }
                    i += 1;
                }
            }
            if i >= p.len() {
                return false; // unterminated class matches nothing
            }
            matched != negate && glob_at(&p[i + 1..], &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_at(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_at(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "a.txt.bak"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("\\*", "*"));
        assert!(glob_path("src/*.rs", "src/main.rs"));
        assert!(!glob_path("src/*.rs", "src/a/main.rs"));
    }

    #[test]
    fn ignore_rules() {
        let i = Ignore::parse(
            "# comment\n*.log\n!keep.log\nbuild/\n**/*.tmp\n/secret\n  node_modules  \n",
        );
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("dir/a.log")); // `*` does not cross directories
        assert!(i.excluded("build"));
        assert!(i.excluded("build/out/x"));
        assert!(i.excluded("x.tmp"));
        assert!(i.excluded("deep/er/x.tmp"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("node_modules/pkg/index.js"));
        assert!(!i.excluded("src/main.rs"));
    }

    #[test]
    fn exceptions_inside_excluded_dirs() {
        let i = Ignore::parse("docs\n!docs/README.md\n");
        assert!(i.excluded("docs/other.md"));
        assert!(!i.excluded("docs/README.md"));
        assert!(i.excluded("docs"));
        assert!(i.may_include_below("docs"));
        assert!(!i.may_include_below("src"));
        let i = Ignore::parse("*\n!**/*.go\n");
        assert!(i.may_include_below("a/b"));
        assert!(!i.excluded("a/b/c.go"));
        assert!(i.excluded("a/b/c.rs"));
    }

    #[test]
    fn last_match_wins() {
        let i = Ignore::parse("!a.txt\n*.txt\n");
        assert!(i.excluded("a.txt"));
        assert_eq!(clean("./a//b/../c/"), "a/c");
    }
}
