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

/// The instance's chains that exist in the nat table now.
pub fn existing(ch: &Chains) -> Result<Vec<String>> {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .context("running iptables-save -t nat")?;
    if !out.status.success() {
        bail!(
            "listing the nat table: {}",
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
    let existing = existing(ch)?;
    restore(&rules::render(ch, ports, &existing)).context("programming the Service rules")?;
    for (hook, target) in ch.hooks() {
        let rule = ["-t", "nat", "-C", hook, "-j", &target];
        if !iptables(&rule)?.status.success() {
            let out = iptables(&["-t", "nat", "-I", hook, "1", "-j", &target])?;
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

/// Remove every rule and chain of the instance.
pub fn cleanup(ch: &Chains) -> Result<()> {
    for (hook, target) in ch.hooks() {
        // Delete every copy of the jump.
        while iptables(&["-t", "nat", "-D", hook, "-j", &target])?
            .status
            .success()
        {}
    }
    let existing = existing(ch)?;
    if existing.is_empty() {
        return Ok(());
    }
    let mut input = String::from("*nat\n");
    for c in &existing {
        input.push_str(&format!(":{c} - [0:0]\n"));
    }
    for c in &existing {
        input.push_str(&format!("-X {c}\n"));
    }
    input.push_str("COMMIT\n");
    restore(&input).context("removing the Service rules")
}
