//! The stage graph: a Dockerfile's stages, what each is built from, which
//! stages each needs (FROM an earlier stage, `COPY --from`, `RUN
//! --mount=from=`), pruning to the target, and cycle detection. Everything
//! here is checked before any step runs.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::lex::Lexer;
use crate::parser::{Args, Dockerfile, Instruction, Keyword};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    Image(String),
    Stage(usize),
}

/// Where `COPY --from` / `--mount from=` takes files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    pub base: Base,
    pub platform: Option<String>,
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
    /// Stages this one needs, sorted.
    pub deps: Vec<usize>,
}

impl Stage {
    /// How progress names the stage.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A Dockerfile's stages with the ones the target needs, in build order.
#[derive(Debug, Clone)]
pub struct Graph {
    /// ARGs before the first FROM: name and default.
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
    /// The stage whose result is the build's result.
    pub target: usize,
    /// The stages needed for the target, dependencies first.
    pub order: Vec<usize>,
    /// Resolved `--from` values per stage and instruction index.
    pub sources: HashMap<(usize, usize), Source>,
    /// Stage names to indexes.
    pub names: HashMap<String, usize>,
}

impl Graph {
    /// What a `from=` value (already expanded) names.
    pub fn source(&self, v: &str) -> Source {
        match v.parse::<usize>() {
            Ok(n) if n < self.stages.len() => Source::Stage(n),
            _ => match self.names.get(&v.to_ascii_lowercase()) {
                Some(&n) => Source::Stage(n),
                None => Source::Image(v.to_string()),
            },
        }
    }
}

fn parse_err(file: &str, ins: &Instruction, msg: impl Into<String>) -> Error {
    Error::Parse {
        file: file.to_string(),
        err: ins.error(msg),
    }
}

/// Split `ARG a=1 b` into names and defaults (raw, unexpanded).
pub fn arg_decls(lexer: &Lexer, ins: &Instruction) -> Vec<(String, Option<String>)> {
    let Args::Shell(s) = &ins.args else {
        return Vec::new();
    };
    lexer
        .split_raw(s)
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect()
}

/// The values of the global ARGs given the build args (for FROM and --from).
pub fn global_values(
    lexer: &Lexer,
    decls: &[(String, Option<String>)],
    build_args: &BTreeMap<String, String>,
    automatic: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut vals: BTreeMap<String, String> = automatic.clone();
    let mut total = 0;
    for (name, default) in decls {
        let v = match (build_args.get(name), default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) => {
                let env = |n: &str| vals.get(n).cloned();
                let v = lexer.word(d, &env)?;
                total += v.len();
                if total > crate::lex::MAX_STAGE_TOTAL {
                    return Err(crate::lex::stage_too_large());
                }
                Some(v)
            }
            (None, None) => None,
        };
        if let Some(v) = v {
            vals.insert(name.clone(), v);
        }
    }
    Ok(vals)
}

/// Whether a stage name is valid (docker: `[a-z][a-z0-9-_.]*`).
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || "-_.".contains(x))
}

/// Build the graph of `df` for `target` (a stage name; None: the last stage).
pub fn graph(
    file: &str,
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    automatic: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Graph> {
    let lexer = Lexer {
        escape: df.directives.escape,
    };
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    // Automatic platform args are in the global scope even without ARG.
    let mut globals = automatic.clone();
    for ins in &df.instructions {
        match (ins.keyword, stages.last_mut()) {
            (Keyword::Arg, None) => {
                global_args.extend(arg_decls(&lexer, ins));
                globals = global_values(&lexer, &global_args, build_args, automatic)
                    .map_err(|e| parse_err(file, ins, e))?;
            }
            (Keyword::From, _) => {
                let Args::Shell(s) = &ins.args else {
                    return Err(parse_err(file, ins, "FROM takes an image"));
                };
                let words: Vec<&str> = s.split_whitespace().collect();
                let (image, name) = match words.as_slice() {
                    [image] => (*image, None),
                    [image, as_, name] if as_.eq_ignore_ascii_case("as") => (*image, Some(*name)),
                    _ => {
                        return Err(parse_err(
                            file,
                            ins,
                            "FROM takes an image and optionally AS and a name",
                        ))
                    }
                };
                let env = |n: &str| globals.get(n).cloned();
                let image = lexer
                    .word(image, &env)
                    .map_err(|e| parse_err(file, ins, e))?;
                if image.is_empty() {
                    return Err(parse_err(
                        file,
                        ins,
                        "FROM names an empty image (an unset ARG?)",
                    ));
                }
                let name = match name {
                    Some(n) => {
                        let n = n.to_ascii_lowercase();
                        if !valid_name(&n) {
                            return Err(parse_err(file, ins, format!("invalid stage name {n:?}")));
                        }
                        if stages.iter().any(|s| s.name.as_deref() == Some(n.as_str())) {
                            return Err(parse_err(
                                file,
                                ins,
                                format!("stage name {n:?} is used twice"),
                            ));
                        }
                        Some(n)
                    }
                    None => None,
                };
                let lower = image.to_ascii_lowercase();
                let base = if lower == "scratch" {
                    Base::Scratch
                } else if let Some(s) = stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(lower.as_str()))
                {
                    Base::Stage(s.index)
                } else if let Some(n) = lower.parse::<usize>().ok().filter(|n| *n < stages.len()) {
                    // An earlier stage by index.
                    Base::Stage(n)
                } else {
                    Base::Image(image)
                };
                let platform = match ins.flag("platform") {
                    Some(f) => Some(
                        lexer
                            .word(f.value.as_deref().unwrap_or(""), &env)
                            .map_err(|e| parse_err(file, ins, e))?,
                    ),
                    None => None,
                };
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    base,
                    platform,
                    from: ins.clone(),
                    instructions: Vec::new(),
                    deps: Vec::new(),
                });
            }
            (_, None) => {
                return Err(parse_err(
                    file,
                    ins,
                    format!(
                        "{} before the first FROM (only ARG may come first)",
                        ins.keyword.name()
                    ),
                ))
            }
            (_, Some(stage)) => stage.instructions.push(ins.clone()),
        }
    }
    if stages.is_empty() {
        return Err(Error::Invalid(format!(
            "{file}: no FROM instruction: nothing to build"
        )));
    }
    // Resolve --from references.
    let names: HashMap<String, usize> = stages
        .iter()
        .filter_map(|s| s.name.clone().map(|n| (n, s.index)))
        .collect();
    let mut sources = HashMap::new();
    for si in 0..stages.len() {
        let mut deps = Vec::new();
        if let Base::Stage(b) = stages[si].base {
            deps.push(b);
        }
        for (ii, ins) in stages[si].instructions.iter().enumerate() {
            let mut froms: Vec<String> = Vec::new();
            if ins.keyword == Keyword::Copy {
                froms.extend(ins.flag_values("from").map(str::to_string));
            }
            if ins.keyword == Keyword::Add && ins.flag("from").is_some() {
                return Err(parse_err(file, ins, "ADD does not take --from (use COPY)"));
            }
            if ins.keyword == Keyword::Run {
                for m in ins.flag_values("mount") {
                    for kv in m.split(',') {
                        if let Some(v) = kv.strip_prefix("from=") {
                            froms.push(v.to_string());
                        }
                    }
                }
            }
            for raw in froms {
                let env = |n: &str| globals.get(n).cloned();
                let v = lexer
                    .word(&raw, &env)
                    .map_err(|e| parse_err(file, ins, e))?;
                let src = if let Ok(n) = v.parse::<usize>() {
                    if n >= stages.len() {
                        return Err(parse_err(
                            file,
                            ins,
                            format!(
                                "--from={n}: there is no stage {n} (stages are numbered from 0)"
                            ),
                        ));
                    }
                    Source::Stage(n)
                } else if let Some(&n) = names.get(&v.to_ascii_lowercase()) {
                    Source::Stage(n)
                } else if v.is_empty() {
                    return Err(parse_err(file, ins, "--from is empty"));
                } else {
                    Source::Image(v)
                };
                if let Source::Stage(n) = src {
                    deps.push(n);
                }
                // RUN mounts are looked up by value, COPY by instruction.
                sources.insert((si, ii), src);
            }
        }
        deps.sort();
        deps.dedup();
        stages[si].deps = deps;
    }
    let target = match target {
        None => stages.len() - 1,
        Some(t) => *names.get(&t.to_ascii_lowercase()).ok_or_else(|| {
            let known: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
            Error::Invalid(format!(
                "target stage {t:?} not found in {file} (stages: {})",
                if known.is_empty() {
                    "none named".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?,
    };
    let order = order(&stages, target)?;
    Ok(Graph {
        global_args,
        stages,
        target,
        order,
        sources,
        names,
    })
}

/// The stages `target` needs, dependencies first; a cycle is an error.
fn order(stages: &[Stage], target: usize) -> Result<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        stages: &[Stage],
        i: usize,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<()> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let cycle: Vec<String> = path[start..]
                    .iter()
                    .chain(std::iter::once(&i))
                    .map(|&s| stages[s].label())
                    .collect();
                return Err(Error::Invalid(format!(
                    "stages depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for &d in &stages[i].deps {
            visit(stages, d, marks, path, out)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        out.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; stages.len()];
    let mut out = Vec::new();
    visit(stages, target, &mut marks, &mut Vec::new(), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn g(text: &str, target: Option<&str>) -> Result<Graph> {
        let df = parse(text).unwrap();
        let mut args = BTreeMap::new();
        args.insert("TAG".to_string(), "1.36".to_string());
        graph("Dockerfile", &df, &args, &BTreeMap::new(), target)
    }

    #[test]
    fn stages_and_pruning() {
        let text = "ARG TAG=latest\nARG BASE=busybox:${TAG}\nFROM $BASE AS a\nRUN x\nFROM scratch AS b\nCOPY --from=a /x /x\nFROM a AS unused\nFROM b\nCOPY --from=0 /y /y\nFROM 1 AS by-index\n";
        let gr = g(text, None).unwrap();
        assert_eq!(gr.stages.len(), 5);
        assert_eq!(gr.stages[4].base, Base::Stage(1));
        assert_eq!(gr.stages[0].base, Base::Image("busybox:1.36".into()));
        assert_eq!(gr.stages[1].base, Base::Scratch);
        assert_eq!(gr.stages[2].base, Base::Stage(0));
        assert_eq!(gr.stages[3].base, Base::Stage(1));
        assert_eq!(gr.order, vec![0, 1, 4]);
        let text = text.replace("FROM 1 AS by-index\n", "");
        let text = text.as_str();
        let gr = g(text, None).unwrap();
        assert_eq!(gr.order, vec![0, 1, 3]);
        assert_eq!(g(text, Some("b")).unwrap().order, vec![0, 1]);
        assert_eq!(g(text, Some("UNUSED")).unwrap().order, vec![0, 2]);
        let e = g(text, Some("nope")).unwrap_err().to_string();
        assert!(
            e.contains("target stage \"nope\" not found") && e.contains("a, b, unused"),
            "{e}"
        );
    }

    #[test]
    fn copy_from_image_and_bad_index() {
        let gr = g("FROM busybox\nCOPY --from=alpine:3 /a /a\n", None).unwrap();
        assert_eq!(gr.sources[&(0, 0)], Source::Image("alpine:3".into()));
        let e = g("FROM busybox\nCOPY --from=3 /a /a\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Dockerfile:2:1: --from=3: there is no stage 3"),
            "{e}"
        );
    }

    #[test]
    fn cycles() {
        let e = g(
            "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cycle: b -> a -> b"), "{e}");
        let e = g(
            "FROM busybox AS a\nRUN --mount=type=bind,from=a,target=/m true\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cycle: a -> a"), "{e}");
    }

    #[test]
    fn bad_input() {
        let e = g("RUN x\nFROM a\n", None).unwrap_err().to_string();
        assert!(
            e.contains("Dockerfile:1:1: RUN before the first FROM"),
            "{e}"
        );
        assert!(g("ARG A\n", None).is_err());
        assert!(g("FROM a AS x\nFROM b AS x\n", None).is_err());
        assert!(g("FROM a AS X!\n", None).is_err());
        assert!(g("FROM ${NOPE}\n", None)
            .unwrap_err()
            .to_string()
            .contains("empty image"));
        assert!(g("FROM a b c d\n", None).is_err());
    }
}
