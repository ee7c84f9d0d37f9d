//! The host's packet filter for every hako network, installed once and
//! shared by all of them (and by every hako root): static chains matching
//! the bridges by name (`hk-*`, `hako0`), so no per-container rule is
//! needed (the bridge plugin's per-container masquerade chain and the
//! firewall plugin cost a dozen iptables runs per start and stop).
//!
//! filter `HAKO-FORWARD` (first in FORWARD): same-bridge traffic, replies
//! and published ports (DNAT) are accepted; traffic routed from one hako
//! bridge to another is dropped (isolation between networks, as docker's);
//! what leaves a bridge for elsewhere is accepted (so a FORWARD policy of
//! DROP does not cut containers off).
//!
//! nat `HAKO-PREROUTING`/`HAKO-POSTROUTING`: connections that enter from a
//! hako bridge are marked, and masqueraded unless they leave by a hako bridge.

use std::process::Command;

use crate::error::{Error, Result};

pub const CHAIN: &str = "HAKO-FORWARD";
/// Marks the rule sets so a listing tells they are complete and current.
const VERSION: &str = "hako-netfilter-v1";
/// The connection mark bit for "came from a hako bridge" (portmap uses 0x2000).
const MARK: &str = "0x4000/0x4000";

struct Chain {
    table: &'static str,
    name: &'static str,
    /// The built-in chain that jumps here (inserted first).
    hook: &'static str,
    rules: &'static [&'static [&'static str]],
}

const CHAINS: &[Chain] = &[
    Chain {
        table: "filter",
        name: CHAIN,
        hook: "FORWARD",
        rules: &[
            &["-m", "physdev", "--physdev-is-bridged", "-j", "ACCEPT"],
            &[
                "-o",
                "hk-+",
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "ACCEPT",
            ],
            &[
                "-o",
                "hako0",
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "ACCEPT",
            ],
            &["-i", "hk-+", "-o", "hk-+", "-j", "DROP"],
            &["-i", "hk-+", "-o", "hako0", "-j", "DROP"],
            &["-i", "hako0", "-o", "hk-+", "-j", "DROP"],
            &["-i", "hk-+", "-j", "ACCEPT"],
            &["-i", "hako0", "-j", "ACCEPT"],
        ],
    },
    Chain {
        table: "nat",
        name: "HAKO-PREROUTING",
        hook: "PREROUTING",
        rules: &[
            &["-i", "hk-+", "-j", "MARK", "--set-xmark", MARK],
            &["-i", "hako0", "-j", "MARK", "--set-xmark", MARK],
        ],
    },
    Chain {
        table: "nat",
        name: "HAKO-POSTROUTING",
        hook: "POSTROUTING",
        rules: &[
            &["-m", "mark", "!", "--mark", MARK, "-j", "RETURN"],
            &["-o", "hk-+", "-j", "RETURN"],
            &["-o", "hako0", "-j", "RETURN"],
            &["-j", "MASQUERADE"],
        ],
    },
];

fn iptables(args: &[&str]) -> Result<std::process::Output> {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running iptables {}", args.join(" ")), e))
}

fn check(args: &[&str], what: impl FnOnce() -> String) -> Result<()> {
    let out = iptables(args)?;
    if !out.status.success() {
        return Err(Error::Runtime {
            context: what(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn save(table: &str) -> Result<String> {
    let out = Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .map_err(|e| Error::io(format!("running iptables-save -t {table}"), e))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn install(c: &Chain) -> Result<()> {
    // Another hako may be doing the same; -N failing on an existing chain is fine.
    let _ = iptables(&["-t", c.table, "-N", c.name]);
    check(&["-t", c.table, "-F", c.name], || {
        format!("flushing {}", c.name)
    })?;
    for (i, r) in c.rules.iter().enumerate() {
        let mut args = vec!["-t", c.table, "-A", c.name];
        args.extend_from_slice(r);
        if i == 0 {
            args.extend_from_slice(&["-m", "comment", "--comment", VERSION]);
        }
        check(&args, || {
            format!("adding rule {} to {}", r.join(" "), c.name)
        })?;
    }
    let jump = ["-t", c.table, "-C", c.hook, "-j", c.name];
    if !iptables(&jump)?.status.success() {
        check(&["-t", c.table, "-I", c.hook, "1", "-j", c.name], || {
            format!("adding the jump from {} to {}", c.hook, c.name)
        })?;
    }
    Ok(())
}

/// Install the chains and their jumps unless they are already there.
pub fn ensure() -> Result<()> {
    for table in ["filter", "nat"] {
        let listing = save(table)?;
        for c in CHAINS.iter().filter(|c| c.table == table) {
            let marked = listing
                .lines()
                .any(|l| l.starts_with(&format!("-A {} ", c.name)) && l.contains(VERSION));
            let jumped = listing
                .lines()
                .any(|l| l == format!("-A {} -j {}", c.hook, c.name));
            if !(marked && jumped) {
                install(c)?;
            }
        }
    }
    Ok(())
}
