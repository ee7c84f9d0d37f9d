//! Shell integration: `hako completion` scripts driven in real bash, zsh and
//! fish (command names, and container and image names from a temp root), and
//! `hako man` pages.

mod engine_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use engine_common::Root;

fn hako() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hako"))
}

fn script(r: &Root, shell: &str) -> PathBuf {
    let text = r.ok(&["completion", shell]);
    let path = r.dir().join(format!("completion.{shell}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// PATH with the hako under test first: the scripts call `hako`.
fn path_env() -> String {
    format!(
        "{}:{}",
        hako().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// What bash's completion function offers for `words` (the last one being
/// completed), as `complete -F` would call it.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         _hako_names hako \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(prog)
        .env("PATH", path_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_commands_options_and_names() {
    let r = Root::new();
    r.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "web-one",
        "busybox",
        "true",
    ]);
    r.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "db-two",
        "busybox",
        "true",
    ]);
    r.ok(&["tag", "busybox", "shelltest:v1"]);
    let s = script(&r, "bash");
    let root = r.root();
    let root = root.to_str().unwrap();

    let subs = bash_complete(&s, &["hako", "sta"]);
    assert!(subs.contains(&"start".to_string()), "{subs:?}");
    assert!(subs.contains(&"stats".to_string()), "{subs:?}");
    let opts = bash_complete(&s, &["hako", "run", "--netw"]);
    assert_eq!(opts, ["--network", "--network-alias"], "{opts:?}");

    // Every operand of rm is a container; only the first of exec.
    let c = bash_complete(&s, &["hako", "--root", root, "rm", ""]);
    assert_eq!(c, ["db-two", "web-one"], "{c:?}");
    let c = bash_complete(&s, &["hako", "--root", root, "rm", "web-one", "d"]);
    assert_eq!(c, ["db-two"], "{c:?}");
    let c = bash_complete(&s, &["hako", "--root", root, "exec", "-i", "w"]);
    assert_eq!(c, ["web-one"], "{c:?}");
    // run's first operand is an image.
    let c = bash_complete(&s, &["hako", "--root", root, "run", "--rm", "shell"]);
    assert_eq!(c, ["shelltest:v1"], "{c:?}");
    // HAKO_ROOT works as --root does.
    let out = Command::new(hako())
        .args(["__complete-names", "containers"])
        .env("HAKO_ROOT", root)
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(names, ["db-two", "web-one"]);
    // A root that does not exist offers nothing and prints no error.
    let missing = r.dir().join("no-such-root");
    let c = bash_complete(&s, &["hako", "--root", missing.to_str().unwrap(), "rm", ""]);
    assert!(c.is_empty(), "{c:?}");
    assert!(!missing.exists(), "completion created a root");
    r.ok(&["rm", "web-one", "db-two"]);
}

#[test]
fn fish_completes_names() {
    let r = Root::new();
    r.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "fishy",
        "busybox",
        "true",
    ]);
    let s = script(&r, "fish");
    let out = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "source '{}'; complete -C 'hako stop '; complete -C 'hako ins'",
            s.display()
        ))
        .env("PATH", path_env())
        .env("HAKO_ROOT", r.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let firsts: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert!(firsts.contains(&"fishy"), "{text}");
    assert!(firsts.contains(&"inspect"), "{text}");
    r.ok(&["rm", "fishy"]);
}

#[test]
fn zsh_script_loads_and_registers() {
    let r = Root::new();
    let s = script(&r, "zsh");
    let out = Command::new("zsh")
        .arg("-f")
        .arg("-c")
        .arg(format!(
            "autoload -U compinit && compinit -u -D && source '{}' && print -r -- ${{_comps[hako]}}",
            s.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "_hako");
}

#[test]
fn man_pages_for_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let out = Command::new(hako())
        .args(["man", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "hako.1",
        "hako-run.1",
        "hako-image-ls.1",
        "hako-compose-up.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    let run = std::fs::read_to_string(dir.join("hako-run.1")).unwrap();
    assert!(run.contains(".TH hako-run 1"), "{run}");
    assert!(run.contains("\\-\\-publish"), "--publish not documented");
    // No temporary directory is left beside the pages, and hidden commands get none.
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".1") && !name.starts_with('.'), "{name}");
        assert!(!name.contains("complete-names"), "{name}");
    }
    // man renders a page.
    let out = Command::new("man")
        .args(["-l", dir.join("hako-run.1").to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Create and start a container"), "{text}");
}
