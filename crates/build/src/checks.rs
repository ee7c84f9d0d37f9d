//! Build checks (the `# check=` directive): buildkit's style rules, found
//! before any step runs. `# check=skip=Rule1,Rule2` or `skip=all` turns rules
//! off; `error=true` makes any finding fail the build.

use crate::parser::{Args, Dockerfile, Instruction, Keyword};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub line: usize,
    pub message: String,
}

/// What the directive asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub skip: Vec<String>,
    pub skip_all: bool,
    pub error: bool,
}

impl Config {
    /// Parse `skip=A,B;error=true`.
    pub fn parse(directive: Option<&str>) -> Result<Config, String> {
        let mut c = Config::default();
        let Some(d) = directive else {
            return Ok(c);
        };
        for part in d.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("skip", v)) => {
                    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if r.eq_ignore_ascii_case("all") {
                            c.skip_all = true;
                        } else {
                            c.skip.push(r.to_string());
                        }
                    }
                }
                Some(("error", v)) => {
                    c.error = match v {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(format!("check directive error={v}: must be true or false"))
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "check directive {part:?}: expected skip=... or error=..."
                    ))
                }
            }
        }
        Ok(c)
    }
}

fn keyword_text(ins: &Instruction) -> &str {
    ins.original.split_whitespace().next().unwrap_or("")
}

/// Whether a name looks like it holds a secret (buildkit's word list).
fn secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    name.to_ascii_lowercase()
        .split('_')
        .any(|w| WORDS.contains(&w))
}

/// Variables a FROM image reference uses (`$X`, `${X}`, `${X:-d}` counts as defaulted).
fn from_vars(image: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = image.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' {
            let braced = b.get(i + 1) == Some(&'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            let name: String = b[start..j].iter().collect();
            let defaulted = braced && b.get(j).is_some_and(|c| *c != '}');
            if !name.is_empty() && !defaulted {
                out.push(name);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Run every rule the config leaves on.
pub fn run(df: &Dockerfile, config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |rule: &'static str, line: usize, message: String| {
        if !config.skip_all && !config.skip.iter().any(|s| s == rule) {
            out.push(Finding {
                rule,
                line,
                message,
            });
        }
    };
    let all: Vec<&Instruction> = df.instructions.iter().collect();
    let upper = all
        .iter()
        .filter(|i| {
            let k = keyword_text(i);
            k == k.to_ascii_uppercase()
        })
        .count();
    let majority_upper = upper * 2 >= all.len();
    let mut seen_in_stage: Vec<Keyword> = Vec::new();
    let mut workdir_set = false;
    // Global ARGs (before the first FROM): name → has a default.
    let mut globals: Vec<(String, bool)> = Vec::new();
    let mut in_stage = false;
    for ins in &all {
        let k = keyword_text(ins);
        let is_upper = k == k.to_ascii_uppercase();
        let is_lower = k == k.to_ascii_lowercase();
        if (majority_upper && !is_upper) || (!majority_upper && !is_lower) {
            add(
                "ConsistentInstructionCasing",
                ins.line,
                format!(
                    "Command '{k}' should match the case of the command majority ({})",
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            );
        }
        if ins.empty_continuation {
            add(
                "NoEmptyContinuation",
                ins.line,
                "Empty continuation line".into(),
            );
        }
        match ins.keyword {
            Keyword::From => {
                seen_in_stage.clear();
                workdir_set = false;
                in_stage = true;
                if let Args::Shell(s) = &ins.args {
                    let words: Vec<&str> = s.split_whitespace().collect();
                    for name in from_vars(words.first().copied().unwrap_or("")) {
                        let automatic = name.starts_with("TARGET") || name.starts_with("BUILD");
                        match globals.iter().find(|(n, _)| *n == name) {
                            None if !automatic => add(
                                "UndefinedArgInFrom",
                                ins.line,
                                format!("FROM argument '{name}' is not declared"),
                            ),
                            Some((_, false)) => add(
                                "InvalidDefaultArgInFrom",
                                ins.line,
                                format!("Default value for ARG {name} results in empty or invalid base image name"),
                            ),
                            _ => {}
                        }
                    }
                    if let [_, as_, name] = words.as_slice() {
                        let as_upper = *as_ == as_.to_ascii_uppercase();
                        if as_upper != is_upper {
                            add(
                                "FromAsCasing",
                                ins.line,
                                "'as' and 'FROM' keywords' casing do not match".into(),
                            );
                        }
                        if *name != name.to_ascii_lowercase() {
                            add(
                                "StageNameCasing",
                                ins.line,
                                format!("Stage name '{name}' should be lowercase"),
                            );
                        }
                    }
                }
            }
            Keyword::Cmd | Keyword::Entrypoint | Keyword::Healthcheck => {
                if seen_in_stage.contains(&ins.keyword) {
                    add(
                        "MultipleInstructionsDisallowed",
                        ins.line,
                        format!(
                            "Multiple {} instructions should not be used in the same stage because only the last one will be used",
                            ins.keyword.name()
                        ),
                    );
                }
                if ins.keyword != Keyword::Healthcheck
                    && matches!(&ins.args, Args::Shell(s) if !s.is_empty())
                {
                    add(
                        "JSONArgsRecommended",
                        ins.line,
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            ins.keyword.name()
                        ),
                    );
                }
            }
            Keyword::Maintainer => add(
                "MaintainerDeprecated",
                ins.line,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            Keyword::Env | Keyword::Label | Keyword::Arg => {
                if let (Keyword::Arg, false, Args::Shell(s)) = (ins.keyword, in_stage, &ins.args) {
                    for w in s.split_whitespace() {
                        match w.split_once('=') {
                            Some((n, v)) => globals.push((n.to_string(), !v.is_empty())),
                            None => globals.push((w.to_string(), false)),
                        }
                    }
                }
                if let Args::Shell(s) = &ins.args {
                    let first = s.split_whitespace().next().unwrap_or("");
                    let legacy = ins.keyword != Keyword::Arg
                        && !first.contains('=')
                        && s.split_whitespace().count() > 1;
                    if legacy {
                        let n = ins.keyword.name();
                        add(
                            "LegacyKeyValueFormat",
                            ins.line,
                            format!("\"{n} key=value\" should be used instead of legacy \"{n} key value\" format"),
                        );
                    }
                    if ins.keyword != Keyword::Label {
                        let names: Vec<&str> = if legacy {
                            vec![first]
                        } else {
                            s.split_whitespace()
                                .map(|w| w.split('=').next().unwrap_or(""))
                                .collect()
                        };
                        for n in names.into_iter().filter(|n| secret_name(n)) {
                            add(
                                "SecretsUsedInArgOrEnv",
                                ins.line,
                                format!(
                                    "Do not use ARG or ENV instructions for sensitive data ({} \"{n}\")",
                                    ins.keyword.name()
                                ),
                            );
                        }
                    }
                }
            }
            Keyword::Workdir => {
                if let Args::Shell(s) = &ins.args {
                    if !s.starts_with('/') && !s.starts_with('$') && !workdir_set {
                        add(
                            "WorkdirRelativePath",
                            ins.line,
                            format!("Relative workdir \"{s}\" can have unexpected results if the base image changes"),
                        );
                    }
                    workdir_set = true;
                }
            }
            _ => {}
        }
        seen_in_stage.push(ins.keyword);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn rules(text: &str, directive: Option<&str>) -> Vec<&'static str> {
        let c = Config::parse(directive).unwrap();
        run(&parse(text).unwrap(), &c)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn rules_fire() {
        let text = "FROM busybox as Build\nMAINTAINER me\nENV API_TOKEN abc\nARG password=x\nWORKDIR app\nCMD echo hi\nCMD [\"x\"]\nrun true\n";
        assert_eq!(
            rules(text, None),
            [
                "FromAsCasing",
                "StageNameCasing",
                "MaintainerDeprecated",
                "LegacyKeyValueFormat",
                "SecretsUsedInArgOrEnv",
                "SecretsUsedInArgOrEnv",
                "WorkdirRelativePath",
                "JSONArgsRecommended",
                "MultipleInstructionsDisallowed",
                "ConsistentInstructionCasing",
            ]
        );
        assert!(rules(text, Some("skip=all")).is_empty());
        let skipped = rules(
            text,
            Some("skip=SecretsUsedInArgOrEnv,FromAsCasing;error=true"),
        );
        assert!(!skipped.contains(&"SecretsUsedInArgOrEnv") && !skipped.contains(&"FromAsCasing"));
        assert!(Config::parse(Some("error=maybe")).is_err());
        assert!(rules("FROM busybox AS b\nCMD [\"sh\"]\n", None).is_empty());
        assert_eq!(
            rules("FROM busybox\nRUN a \\\n\n  b \\\n# c\n  d\n", None),
            ["NoEmptyContinuation"]
        );
        assert_eq!(
            rules("ARG TAG\nARG BASE=busybox\nFROM $BASE:${TAG}\nFROM ${NOPE}\nFROM ${D:-x} AS d\nFROM --platform=$BUILDPLATFORM busybox AS e\n", None),
            ["InvalidDefaultArgInFrom", "UndefinedArgInFrom"]
        );
        assert!(!secret_name("MONKEY") && secret_name("my_key") && secret_name("GITHUB_TOKEN"));
    }
}
