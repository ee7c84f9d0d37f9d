//! The instructions that change a stage's config (ENV, LABEL, EXPOSE, …),
//! and the dispatch of every instruction to its step.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::executor::{Cx, Done, Scope};
use crate::fsops;
use crate::parser::{self, Args, Instruction, Keyword};
use crate::stages;
use crate::state::State;

/// Go's `%q` of a string list, as docker writes CMD/ENTRYPOINT in history.
fn go_quote(v: &[String]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).expect("strings serialise"))
        .collect();
    format!("[{}]", parts.join(" "))
}

/// Parse a duration like docker's flags: `30s`, `1m30s`, `500ms`, `1h`.
pub(crate) fn parse_duration(s: &str) -> std::result::Result<i64, String> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {s:?} lacks a unit"))?;
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

impl Cx<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &self,
        si: usize,
        idx: Option<usize>,
        ins: &Instruction,
        name: &str,
        st: &mut State,
        key: &mut String,
        scope: &mut Scope,
        deps: &HashMap<usize, Done>,
    ) -> Result<()> {
        let text = match &ins.args {
            Args::Shell(s) => s.clone(),
            Args::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        };
        match ins.keyword {
            Keyword::From => unreachable!("FROM starts a stage"),
            Keyword::Arg => {
                let mut shown = Vec::new();
                for (k, default) in stages::arg_decls(&self.lexer, ins) {
                    if k.is_empty() {
                        return Err(Error::Parse {
                            file: self.file.clone(),
                            err: ins.error("ARG names can not be blank"),
                        });
                    }
                    self.used_args.lock().expect("args lock").insert(k.clone());
                    let default = match default {
                        Some(d) => Some(self.word(st, scope, ins, &d)?),
                        None => None,
                    };
                    // History shows the declaration, not the value given.
                    shown.push(match &default {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    let v = match (self.opts.build_args.get(&k), default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(d),
                        (None, None) => self
                            .globals
                            .get(&k)
                            .or_else(|| self.automatic.get(&k))
                            .cloned(),
                    };
                    scope.declared.insert(k.clone());
                    match v {
                        Some(v) => {
                            scope.args.insert(k, v);
                        }
                        None => {
                            scope.args.remove(&k);
                        }
                    }
                }
                // Like buildkit, an empty-layer history entry; the values reach
                // the cache keys of the steps that have them in scope.
                self.meta(name, st, key, format!("ARG {}", shown.join(" ")), |_| {})
            }
            Keyword::Env => {
                let pairs = self.pairs(st, scope, ins)?;
                let desc = format!(
                    "ENV {}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                self.meta(name, st, key, desc, |st| {
                    for (k, v) in pairs {
                        st.config.env_set(&k, &v);
                    }
                })
            }
            Keyword::Label => {
                let pairs = self.pairs(st, scope, ins)?;
                let desc = format!(
                    "LABEL {}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                self.meta(name, st, key, desc, |st| {
                    st.config.labels.extend(pairs);
                })
            }
            Keyword::Maintainer => {
                let who = text.clone();
                self.meta(name, st, key, format!("MAINTAINER {who}"), |st| {
                    st.author = Some(who);
                })
            }
            Keyword::Expose => {
                let mut ports = BTreeMap::new();
                for w in self.words(st, scope, ins, &text)? {
                    let (p, proto) = match w.split_once('/') {
                        Some((p, proto)) => (p.to_string(), proto.to_ascii_lowercase()),
                        None => (w.clone(), "tcp".to_string()),
                    };
                    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(Error::Invalid(format!(
                            "EXPOSE {w}: unknown protocol {proto}"
                        )));
                    }
                    let (lo, hi) = match p.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (p.as_str(), p.as_str()),
                    };
                    let bad = || Error::Invalid(format!("EXPOSE {w}: invalid port"));
                    let lo: u16 = lo.parse().map_err(|_| bad())?;
                    let hi: u16 = hi.parse().map_err(|_| bad())?;
                    if lo > hi {
                        return Err(bad());
                    }
                    for port in lo..=hi {
                        ports.insert(format!("{port}/{proto}"), serde_json::json!({}));
                    }
                }
                let desc = format!(
                    "EXPOSE map[{}]",
                    ports
                        .keys()
                        .map(|k| format!("{k}:{{}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                self.meta(name, st, key, desc, |st| {
                    st.config.exposed_ports.extend(ports)
                })
            }
            Keyword::User => {
                let u = self.word(st, scope, ins, &text)?;
                self.meta(name, st, key, format!("USER {u}"), |st| st.config.user = u)
            }
            Keyword::Volume => {
                let vols = match &ins.args {
                    Args::Exec(v) => v
                        .iter()
                        .map(|w| self.word(st, scope, ins, w))
                        .collect::<Result<Vec<_>>>()?,
                    Args::Shell(s) => self.words(st, scope, ins, s)?,
                };
                if vols.iter().any(|v| v.is_empty()) {
                    return Err(Error::Invalid("VOLUME paths can not be empty".into()));
                }
                let desc = format!("VOLUME [{}]", vols.join(" "));
                self.meta(name, st, key, desc, |st| {
                    for v in vols {
                        st.config.volumes.insert(v, serde_json::json!({}));
                    }
                })
            }
            Keyword::Stopsignal => {
                let s = self.word(st, scope, ins, &text)?;
                let valid = s.parse::<u32>().is_ok_and(|n| n > 0 && n < 65)
                    || s.parse::<nix::sys::signal::Signal>().is_ok()
                    || format!("SIG{s}")
                        .parse::<nix::sys::signal::Signal>()
                        .is_ok()
                    || s.starts_with("SIGRTMIN")
                    || s.starts_with("SIGRTMAX");
                if !valid {
                    return Err(Error::Invalid(format!("STOPSIGNAL {s}: unknown signal")));
                }
                self.meta(name, st, key, format!("STOPSIGNAL {s}"), |st| {
                    st.config.stop_signal = s
                })
            }
            Keyword::Cmd | Keyword::Entrypoint => {
                let v = self.command_of(st, ins);
                let kw = ins.keyword;
                if kw == Keyword::Cmd {
                    scope.cmd_set = true;
                }
                let reset_cmd = kw == Keyword::Entrypoint && !scope.cmd_set;
                let desc = format!("{} {}", kw.name(), go_quote(&v));
                self.meta(name, st, key, desc, |st| {
                    if kw == Keyword::Cmd {
                        st.config.cmd = Some(v);
                    } else {
                        // docker: ENTRYPOINT drops a CMD inherited from the base.
                        if reset_cmd {
                            st.config.cmd = None;
                        }
                        st.config.entrypoint = Some(v);
                    }
                })
            }
            Keyword::Shell => {
                let Args::Exec(v) = &ins.args else {
                    unreachable!("the parser requires JSON for SHELL")
                };
                let v = v.clone();
                let desc = format!("SHELL [{}]", v.join(" "));
                self.meta(name, st, key, desc, |st| st.config.shell = v)
            }
            Keyword::Healthcheck => {
                let test = parser::healthcheck_form(&ins.args).map_err(Error::Invalid)?;
                let mut hc = crate::state::Healthcheck {
                    test: test.unwrap_or_else(|| vec!["NONE".into()]),
                    ..Default::default()
                };
                for f in &ins.flags {
                    let v = f.value.as_deref().unwrap_or("");
                    match f.name.as_str() {
                        "retries" => hc.retries = v.parse().unwrap_or(0),
                        n => {
                            let d = parse_duration(v).map_err(Error::Invalid)?;
                            match n {
                                "interval" => hc.interval = d,
                                "timeout" => hc.timeout = d,
                                "start-period" => hc.start_period = d,
                                _ => hc.start_interval = d,
                            }
                        }
                    }
                }
                let desc = format!("HEALTHCHECK {}", go_quote(&hc.test));
                self.meta(name, st, key, desc, |st| st.config.healthcheck = Some(hc))
            }
            Keyword::Onbuild => {
                let t = text.clone();
                self.meta(name, st, key, format!("ONBUILD {t}"), |st| {
                    st.config.on_build.push(t)
                })
            }
            Keyword::Workdir => {
                let w = self.word(st, scope, ins, &text)?;
                let dir = if w.starts_with('/') {
                    fsops::clean_abs(&w)
                } else {
                    let base = if st.config.working_dir.is_empty() {
                        "/".to_string()
                    } else {
                        st.config.working_dir.clone()
                    };
                    fsops::clean_abs(&format!("{base}/{w}"))
                };
                st.config.working_dir = dir.clone();
                self.workdir(name, st, key, &dir)
            }
            Keyword::Run => self.run_step(name, ins, st, key, scope, deps),
            Keyword::Copy | Keyword::Add => {
                let from = match ins.flag("from") {
                    Some(f) => {
                        let v = self.word(st, scope, ins, f.value.as_deref().unwrap_or(""))?;
                        let src = idx
                            .and_then(|i| self.graph.sources.get(&(si, i)).cloned())
                            .unwrap_or_else(|| self.graph.source(&v));
                        Some((v, src))
                    }
                    None => None,
                };
                crate::copy::step(self, name, ins, st, key, scope, deps, from)
            }
        }
    }

    /// CMD/ENTRYPOINT/RUN argv: exec form as is, shell form through SHELL.
    pub(crate) fn command_of(&self, st: &State, ins: &Instruction) -> Vec<String> {
        match &ins.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) if s.is_empty() => Vec::new(),
            Args::Shell(s) => {
                let mut v = self.shell(st);
                v.push(s.clone());
                v
            }
        }
    }

    pub(crate) fn shell(&self, st: &State) -> Vec<String> {
        if st.config.shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            st.config.shell.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_quoting() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(
            go_quote(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
    }
}
