//! A bounded random-mutation test of the Dockerfile front end: valid
//! Dockerfiles are mutated (splices, deletions, duplications, insertions of
//! `${`, escapes, heredoc markers, deep nesting) with a seeded generator, and
//! each result goes through everything a build does before its first step:
//! parsing, the build checks, the stage graph, and substitution of every
//! instruction's words, flags and heredocs. Nothing may panic, and this
//! binary runs under an address-space limit, so unbounded memory or a stack
//! overflow (which aborts the process) fails the test.

use std::collections::BTreeMap;

use hako_build::lex::{Lexer, MAX_EXPANSION};
use hako_build::parser::{self, Args, Instruction};
use hako_build::{checks, stages};

/// splitmix64: a seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const CORPUS: &[&str] = &[
    "FROM busybox\nRUN echo hi\n",
    "# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox AS base\nENV A=1 B=\"two words\"\nRUN echo $A `\n  && echo ${B:-none}\n",
    "ARG BASE=busybox\nARG TAG=latest\nFROM ${BASE}:${TAG} AS build\nARG V=1\nWORKDIR /src/${V}\nCOPY --chown=1:1 --chmod=644 a b /dst/\nRUN --mount=type=cache,target=/c \\\n    echo ${V%%.*} ${V#*} ${V/1/2}\nFROM scratch\nCOPY --from=build /src /src\n",
    "FROM busybox\nCOPY <<EOF /etc/x\nhello $HOME ${A:-a}\nEOF\nRUN <<-'END' sh\n\techo $literal\n\tEND\n",
    "FROM busybox\nLABEL a=b \"c d\"=\"e f\" g=${h:+i}\nEXPOSE 80/tcp ${P:-443}\nUSER ${U:-1000}:${G:-1000}\nVOLUME [\"/data\", \"/logs\"]\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=5s --timeout=3s CMD [\"true\"]\nSHELL [\"/bin/sh\", \"-c\"]\nONBUILD RUN echo built\nENTRYPOINT [\"/bin/sh\"]\nCMD [\"-c\", \"echo ${X}\"]\n",
    "FROM busybox\nENV PATH=/opt/bin:$PATH\nADD --checksum=sha256:00 http://example.com/x.tar.gz /x/\nADD --keep-git-dir=true git@github.com:a/b.git#main:sub /b\nRUN --network=none --security=sandbox echo 'single $quoted' \"double ${quoted}\"\nMAINTAINER someone\n",
    "# check=skip=all\nFROM --platform=$BUILDPLATFORM busybox AS a\nFROM a AS b\nFROM b\nCOPY --from=a --link --parents --exclude=*.log ./x* /y/\n",
];

const INSERTS: &[&str] = &[
    "${",
    "}",
    "$",
    "\\",
    "\\\n",
    "`",
    "'",
    "\"",
    "\n",
    " ",
    "=",
    "#",
    "<<EOF\n",
    "EOF\n",
    "<<-X\n",
    "<<'Q'\n",
    "${a:-",
    "${a:+",
    "${a#",
    "${a//",
    "${a?",
    ":-",
    "[\"",
    "\"]",
    "--",
    "--mount=type=bind,",
    "--from=",
    "# escape=`\n",
    "# escape=\\\n",
    "# check=error=true\n",
    "FROM ",
    "RUN ",
    "ENV ",
    "ARG ",
    "COPY ",
    "LABEL ",
    "ONBUILD ",
    "WORKDIR ",
    "*",
    "?",
    "\t",
    "\r",
    "\u{0}",
    "é",
    "${a}${a}${a}",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut b: Vec<u8> = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(b.len() + 1);
        match rng.below(9) {
            // Splice a piece of another corpus file.
            0 => {
                let other = CORPUS[rng.below(CORPUS.len())].as_bytes();
                let s = rng.below(other.len());
                let e = s + rng.below(other.len() - s + 1);
                b.splice(at..at, other[s..e].iter().copied());
            }
            // Delete a range.
            1 => {
                let e = (at + rng.below(40)).min(b.len());
                b.drain(at..e);
            }
            // Duplicate a range, sometimes many times.
            2 => {
                let e = (at + rng.below(60)).min(b.len());
                let piece = b[at..e].to_vec();
                let times = if rng.below(10) == 0 { 200 } else { 2 };
                for _ in 0..times {
                    b.splice(at..at, piece.iter().copied());
                }
            }
            // Deep nesting of substitutions, quotes or brackets.
            3 => {
                let (open, close) = [
                    ("${a:-", "}"),
                    ("${a/", "}"),
                    ("\"", "\""),
                    ("[", "]"),
                    ("${", "}"),
                ][rng.below(5)];
                let n = [10, 65, 500, 5000][rng.below(4)];
                let s = format!("{}x{}", open.repeat(n), close.repeat(n));
                b.splice(at..at, s.bytes());
            }
            // Flip a byte.
            4 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            // A long line.
            5 => {
                let s = "x".repeat([100, 10_000, 100_000][rng.below(3)]);
                b.splice(at..at, s.bytes());
            }
            _ => {
                let s = INSERTS[rng.below(INSERTS.len())];
                b.splice(at..at, s.bytes());
            }
        }
    }
    // The Dockerfile reader refuses non-UTF-8 text before parsing.
    String::from_utf8_lossy(&b).into_owned()
}

/// Substitute every word of an instruction as the executor would.
fn expand(lexer: &Lexer, ins: &Instruction, env: &dyn hako_build::lex::Env) {
    let check = |r: Result<String, String>| {
        if let Ok(v) = r {
            assert!(v.len() <= MAX_EXPANSION + 64 * 1024 * 1024);
        }
    };
    match &ins.args {
        Args::Shell(s) => {
            check(lexer.word(s, env));
            if let Ok(ws) = lexer.words(s, env) {
                assert!(ws.iter().map(String::len).sum::<usize>() <= MAX_EXPANSION + s.len());
            }
            for w in lexer.split_raw(s) {
                if let Some((k, v)) = w.split_once('=') {
                    check(lexer.word(k, env));
                    check(lexer.word(v, env));
                }
            }
        }
        Args::Exec(v) => {
            for w in v {
                check(lexer.word(w, env));
            }
        }
    }
    for f in &ins.flags {
        check(lexer.word(f.value.as_deref().unwrap_or(""), env));
    }
    for h in &ins.heredocs {
        check(lexer.expand_only(&h.body, env));
    }
    let _ = stages::arg_decls(lexer, ins);
    if let Some(inner) = &ins.inner {
        expand(lexer, inner, env);
    }
}

fn front_end(text: &str) {
    let Ok(df) = parser::parse(text) else {
        return;
    };
    let config = checks::Config::parse(df.directives.check.as_deref()).unwrap_or_default();
    let _ = checks::run(&df, &config);
    let automatic: BTreeMap<String, String> =
        [("TARGETARCH".to_string(), "amd64".to_string())].into();
    let build_args: BTreeMap<String, String> = [("V".to_string(), "1.2.3".to_string())].into();
    let _ = stages::graph("Dockerfile", &df, &build_args, &automatic, None);
    let lexer = Lexer {
        escape: df.directives.escape,
    };
    let big = "v".repeat(MAX_EXPANSION / 2 + 1);
    let env = move |n: &str| match n {
        "a" | "A" => Some("value with spaces".to_string()),
        "big" => Some(big.clone()),
        "e" => Some(String::new()),
        _ => None,
    };
    for ins in &df.instructions {
        expand(&lexer, ins, &env);
    }
}

/// Cap this process's address space: a bomb fails allocation (and aborts)
/// instead of eating the machine.
fn limit_memory() {
    let limit = 4u64 << 30;
    let r = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit);
    assert!(r.is_ok(), "setting RLIMIT_AS: {r:?}");
}

#[test]
fn mutated_dockerfiles_never_panic_abort_or_blow_up() {
    limit_memory();
    // The corpus itself parses and expands.
    for text in CORPUS {
        parser::parse(text).unwrap_or_else(|e| panic!("corpus file does not parse: {e}"));
        front_end(text);
    }
    // Known bombs from the issue.
    let deep = format!(
        "FROM busybox\nENV X={}x{}\n",
        "${a:-".repeat(4000),
        "}".repeat(4000)
    );
    front_end(&deep);
    let mut doubling = String::from("FROM busybox\nENV e0=x\n");
    for i in 0..40 {
        doubling.push_str(&format!("ENV e{}=${{e{i}}}${{e{i}}}\n", i + 1));
    }
    front_end(&doubling);
    front_end("FROM busybox\nENV X=${big}${big}${big//v/vv}\n");
    let seed = std::env::var("HAKO_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_d0c4_e7f1_1e00u64);
    let rounds: usize = std::env::var("HAKO_MUTATION_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let base = CORPUS[rng.below(CORPUS.len())];
        let mut text = mutate(&mut rng, base);
        // Sometimes mutate the mutant again.
        while rng.below(3) == 0 {
            text = mutate(&mut rng, &text);
        }
        let r = std::panic::catch_unwind(|| front_end(&text));
        if r.is_err() {
            let path = std::env::temp_dir().join(format!("hako-mutation-{seed}-{round}"));
            let _ = std::fs::write(&path, &text);
            panic!(
                "round {round} (seed {seed}) panicked; input saved in {}",
                path.display()
            );
        }
    }
}
