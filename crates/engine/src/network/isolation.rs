//! Isolation between networks, as docker has it: traffic routed from one
//! hako bridge to another is dropped, so a container reaches only the
//! networks it is attached to. One static chain serves every network (and
//! every hako root): the bridges are matched by their name patterns, and
//! traffic that stays on one bridge (seen by iptables only where
//! br_netfilter is loaded) and traffic to published ports are let through
//! first.

use std::process::Command;

use crate::error::{Error, Result};

pub const CHAIN: &str = "HAKO-ISOLATION";

const RULES: &[&[&str]] = &[
    &["-m", "physdev", "--physdev-is-bridged", "-j", "RETURN"],
    // Published ports stay reachable from every network, as from the host.
    &["-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN"],
    &["-i", "hk-+", "-o", "hk-+", "-j", "DROP"],
    &["-i", "hk-+", "-o", "hako0", "-j", "DROP"],
    &["-i", "hako0", "-o", "hk-+", "-j", "DROP"],
];

fn iptables(args: &[&str]) -> Result<std::process::Output> {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running iptables {}", args.join(" ")), e))
}

fn listing(chain: &str) -> Result<String> {
    let out = iptables(&["-S", chain])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Install the chain and the jump to it from FORWARD if they are missing.
pub fn ensure() -> Result<()> {
    let have = listing(CHAIN)?;
    let want: Vec<String> = RULES
        .iter()
        .map(|r| format!("-A {CHAIN} {}", r.join(" ")))
        .collect();
    let lines: Vec<&str> = have.lines().collect();
    if !want.iter().all(|w| lines.contains(&w.as_str())) {
        if !lines.iter().any(|l| *l == format!("-N {CHAIN}")) {
            // Another process may create it first; the listing below decides.
            let _ = iptables(&["-N", CHAIN]);
        }
        let _ = iptables(&["-F", CHAIN]);
        for r in RULES {
            let mut args = vec!["-A", CHAIN];
            args.extend_from_slice(r);
            let out = iptables(&args)?;
            if !out.status.success() {
                return Err(Error::Runtime {
                    context: format!("adding network isolation rule {}", r.join(" ")),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
    }
    let jump = format!("-A FORWARD -j {CHAIN}");
    if !listing("FORWARD")?.lines().any(|l| l == jump) {
        let out = iptables(&["-I", "FORWARD", "1", "-j", CHAIN])?;
        if !out.status.success() {
            return Err(Error::Runtime {
                context: "adding the network isolation jump to FORWARD".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}
