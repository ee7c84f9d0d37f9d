//! Applying a rule set to the host: `iptables-restore --noflush` (one
//! transaction for all of an instance's chains), the jumps from the
//! built-in chains added once, and removal of everything on stop.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::rules::{self, Chains, SvcPort};

fn iptables(args: &[&str]) -> Result<std::process::Output> {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .with_context(|| format!("running iptables {}", args.join(" ")))
}

/// The instance's chains that exist in `table` now.
pub fn existing(ch: &Chains, table: &str) -> Result<Vec<String>> {
    let out = Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .with_context(|| format!("running iptables-save -t {table}"))?;
    if !out.status.success() {
        bail!(
            "listing the {table} table: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(&ch.prefix))
        .map(str::to_string)
        .collect())
}

fn restore(input: &str) -> Result<()> {
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running iptables-restore")?;
    child
        .stdin
        .take()
        .context("iptables-restore's input")?
        .write_all(input.as_bytes())
        .context("writing to iptables-restore")?;
    let out = child
        .wait_with_output()
        .context("waiting for iptables-restore")?;
    if !out.status.success() {
        bail!(
            "iptables-restore refused the rule set: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Replace the instance's rules with those for `ports`.
pub fn apply(ch: &Chains, ports: &[SvcPort]) -> Result<()> {
    let existing = existing(ch, "nat")?;
    restore(&rules::render(ch, ports, &existing)).context("programming the Service rules")?;
    for (table, hook, matches, target) in ch.hooks() {
        let rule = |op: &'static str| {
            let mut a = vec!["-t", table, op, hook];
            if op == "-I" {
                a.push("1");
            }
            a.extend_from_slice(matches);
            a.extend(["-j", target.as_str()]);
            a
        };
        if !iptables(&rule("-C"))?.status.success() {
            let out = iptables(&rule("-I"))?;
            if !out.status.success() {
                bail!(
                    "adding the jump from {hook} to {target}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    Ok(())
}

/// Tags of instances whose owning process is gone (killed without a
/// chance to clean up): their rules are removed by the next proxy.
pub fn orphaned_tags() -> Result<Vec<String>> {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .context("running iptables-save -t nat")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tags = Vec::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("-A HK") else {
            continue;
        };
        let Some((tag, rest)) = rest.split_once("-MARK-MASQ ") else {
            continue;
        };
        let Some(pid) = rest
            .split_once(rules::OWNER_COMMENT)
            .and_then(|(_, p)| p.split('"').next())
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) {
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Remove every rule and chain of the instance.
pub fn cleanup(ch: &Chains) -> Result<()> {
    for (table, hook, matches, target) in ch.hooks() {
        let mut rule = vec!["-t", table, "-D", hook];
        rule.extend_from_slice(matches);
        rule.extend(["-j", target.as_str()]);
        // Delete every copy of the jump.
        while iptables(&rule)?.status.success() {}
    }
    let mut input = String::new();
    for table in ["filter", "nat"] {
        let existing = existing(ch, table)?;
        if existing.is_empty() {
            continue;
        }
        input.push_str(&format!("*{table}\n"));
        for c in &existing {
            input.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &existing {
            input.push_str(&format!("-X {c}\n"));
        }
        input.push_str("COMMIT\n");
    }
    if input.is_empty() {
        return Ok(());
    }
    restore(&input).context("removing the Service rules")
}
