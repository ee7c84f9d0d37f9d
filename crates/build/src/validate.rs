//! Checks of every needed instruction before any step runs.

use crate::context::Tree;
use crate::error::{Error, Result};
use crate::instructions::parse_duration;
use crate::parser::{Args, Instruction, Keyword};
use crate::stages::Graph;

/// Checks of every needed instruction before any step runs: flags and
/// arguments each instruction needs, sources in the context.
pub(crate) fn check(graph: &Graph, context: &Tree, file: &str, allow: &[String]) -> Result<()> {
    let err = |ins: &Instruction, m: String| Error::Parse {
        file: file.to_string(),
        err: ins.error(m),
    };
    for &si in &graph.order {
        for ins in &graph.stages[si].instructions {
            let name = ins.keyword.name();
            match ins.keyword {
                Keyword::Copy | Keyword::Add => {
                    let words = raw_words(ins);
                    if words.len() < 2 {
                        return Err(err(ins, format!("{name} needs a source and a destination")));
                    }
                    let from = ins.flag("from").is_some();
                    for src in &words[..words.len() - 1] {
                        let heredoc = src.starts_with("<<") && !ins.heredocs.is_empty();
                        let url = src.contains("://") || src.starts_with("git@");
                        if from || heredoc || url || src.contains('$') {
                            continue;
                        }
                        let what = format!("{file}:{}: {name}", ins.line);
                        context.sources(src, &what)?;
                    }
                }
                Keyword::Run => {
                    match ins
                        .flag("security")
                        .map(|f| f.value.as_deref().unwrap_or(""))
                    {
                        None | Some("sandbox") => {}
                        Some("insecure") if allow.iter().any(|a| a == "security.insecure") => {}
                        Some("insecure") => {
                            return Err(err(
                                ins,
                                "RUN --security=insecure needs --allow security.insecure".into(),
                            ))
                        }
                        Some(v) => {
                            return Err(err(
                                ins,
                                format!("RUN --security={v}: must be sandbox or insecure"),
                            ))
                        }
                    }
                    if let Some(f) = ins.flag("network") {
                        match f.value.as_deref() {
                            Some("none") | Some("default") | Some("host") => {}
                            v => {
                                return Err(err(
                                    ins,
                                    format!(
                                        "RUN --network={}: must be none, default or host",
                                        v.unwrap_or("")
                                    ),
                                ))
                            }
                        }
                    }
                    for m in ins.flag_values("mount") {
                        let typ = m
                            .split(',')
                            .find_map(|kv| kv.strip_prefix("type="))
                            .unwrap_or("bind");
                        if !matches!(typ, "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                            return Err(Error::Unsupported(format!(
                                "{file}:{}: RUN --mount=type={typ}",
                                ins.line
                            )));
                        }
                    }
                }
                Keyword::Healthcheck => {
                    for f in &ins.flags {
                        if f.name != "retries" {
                            parse_duration(f.value.as_deref().unwrap_or(""))
                                .map_err(|e| err(ins, format!("HEALTHCHECK --{}: {e}", f.name)))?;
                        } else if f.value.as_deref().unwrap_or("").parse::<i64>().is_err() {
                            return Err(err(ins, "HEALTHCHECK --retries needs a number".into()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// COPY/ADD words before substitution.
fn raw_words(ins: &Instruction) -> Vec<String> {
    match &ins.args {
        Args::Exec(v) => v.clone(),
        Args::Shell(s) => s.split_whitespace().map(str::to_string).collect(),
    }
}
