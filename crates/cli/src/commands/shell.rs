//! Shell integration: `hako completion SHELL` (clap_complete's scripts, plus
//! container and image names looked up as you type in bash and fish) and
//! `hako man` (one page per command, from the command tree by clap_mangen).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;
use hako_engine::Engine;
use hako_image::ImageStore;

use crate::Global;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    source <(hako completion bash)\n  \
    hako completion bash > /usr/local/share/bash-completion/completions/hako\n  \
    hako completion zsh > \"${fpath[1]}/_hako\"\n  \
    hako completion fish > ~/.config/fish/completions/hako.fish")]
pub struct CompletionArgs {
    /// The shell to write the script for.
    pub shell: Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    hako man\n  \
    hako man --dir ./man && man -l ./man/hako-run.1")]
pub struct ManArgs {
    /// Directory to write the pages into: hako.1, hako-run.1, hako-image-ls.1, ...
    #[arg(long, value_name = "DIR", default_value = "/usr/local/share/man/man1")]
    pub dir: PathBuf,
}

/// What the completion scripts ask for while the user types.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NameKind {
    Containers,
    Images,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    pub kind: NameKind,
}

/// Commands whose every operand is a container.
const CONTAINER_ALL: &str = "start stop restart kill rm pause unpause wait stats";
/// Commands whose first operand is a container (the rest is a command or a value).
const CONTAINER_FIRST: &str = "logs exec port top rename attach update commit diff export";
/// Commands whose every operand is an image.
const IMAGE_ALL: &str = "rmi save push history";
/// Commands whose first operand is an image.
const IMAGE_FIRST: &str = "run create tag";

pub fn completion(args: CompletionArgs) -> Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "hako", &mut script);
    match args.shell {
        Shell::Bash => script.extend_from_slice(bash_names().as_bytes()),
        Shell::Fish => script.extend_from_slice(fish_names().as_bytes()),
        _ => {}
    }
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script")
}

/// Wraps clap_complete's `_hako` so that operands of container and image
/// commands complete to the names in the store named by `--root` (or
/// HAKO_ROOT), and everything else completes as before.
fn bash_names() -> String {
    format!(
        r#"
# Container and image names, asked of hako as you type.
_hako_names() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} sub="" root=() operands=0 i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        case "$w" in
            --root) root=(--root "${{COMP_WORDS[i+1]}}"); ((i++)); continue ;;
            --root=*) root=("$w"); continue ;;
            --log-level) ((i++)); continue ;;
            -*) continue ;;
        esac
        if [[ -z $sub ]]; then sub=$w; else ((operands++)); fi
    done
    local kind=""
    if [[ -n $sub && $cur != -* ]]; then
        case " {container_all} " in *" $sub "*) kind=containers ;; esac
        case " {image_all} " in *" $sub "*) kind=images ;; esac
        if ((operands == 0)); then
            case " {container_first} " in *" $sub "*) kind=containers ;; esac
            case " {image_first} " in *" $sub "*) kind=images ;; esac
        fi
    fi
    if [[ -n $kind ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$(hako "${{root[@]}}" __complete-names "$kind" 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _hako "$@"
}}
if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _hako_names -o nosort -o bashdefault -o default hako
else
    complete -F _hako_names -o bashdefault -o default hako
fi
"#,
        container_all = CONTAINER_ALL,
        container_first = CONTAINER_FIRST,
        image_all = IMAGE_ALL,
        image_first = IMAGE_FIRST,
    )
}

fn fish_names() -> String {
    let containers: Vec<&str> = CONTAINER_ALL
        .split(' ')
        .chain(CONTAINER_FIRST.split(' '))
        .collect();
    let images: Vec<&str> = IMAGE_ALL.split(' ').chain(IMAGE_FIRST.split(' ')).collect();
    format!(
        "\n# Container and image names, asked of hako as you type.\n\
         complete -c hako -n '__fish_seen_subcommand_from {}' -f -a '(hako __complete-names containers 2>/dev/null)'\n\
         complete -c hako -n '__fish_seen_subcommand_from {}' -f -a '(hako __complete-names images 2>/dev/null)'\n",
        containers.join(" "),
        images.join(" ")
    )
}

/// One name per line: what the completion scripts offer. Errors (no store
/// yet, no permission) print nothing, so a completion never shows one.
pub fn names(g: &Global, args: NamesArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // Opening a store creates it: a completion must not.
    if !g.root.is_dir() {
        return Ok(());
    }
    match args.kind {
        NameKind::Containers => {
            let Ok(engine) = Engine::open(&g.root) else {
                return Ok(());
            };
            for c in engine.list().unwrap_or_default() {
                writeln!(out, "{}", c.name)?;
            }
        }
        NameKind::Images => {
            let Ok(store) = ImageStore::open(&g.root) else {
                return Ok(());
            };
            for rec in store.list().unwrap_or_default() {
                for n in &rec.names {
                    writeln!(out, "{}", n.familiar())?;
                }
            }
        }
    }
    Ok(())
}

/// Writes every page to a temporary directory beside the destination first,
/// then renames them in: a failure leaves no half-written page.
pub fn man(args: ManArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating man page directory {}", args.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".hako-man-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a temporary directory in {}", args.dir.display()))?;
    let cmd = crate::Cli::command();
    clap_mangen::generate_to(cmd, tmp.path())
        .with_context(|| format!("writing man pages into {}", args.dir.display()))?;
    let mut count = 0;
    for entry in std::fs::read_dir(tmp.path())? {
        let entry = entry?;
        let dest = args.dir.join(entry.file_name());
        std::fs::rename(entry.path(), &dest)
            .with_context(|| format!("installing man page {}", dest.display()))?;
        count += 1;
    }
    if count == 0 {
        bail!("no man pages were generated into {}", args.dir.display());
    }
    eprintln!("{count} man pages in {}", args.dir.display());
    Ok(())
}
