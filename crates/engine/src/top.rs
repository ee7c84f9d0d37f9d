//! `top`: the container's processes as the host's `ps` shows them, as
//! docker does (the runtime lists the pids; `ps` formats them).

use std::process::Command;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::record::Status;

/// `ps` output restricted to one container: the header and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl Engine {
    /// `ps_args` as given to `ps` (default `-ef`).
    pub fn top(&self, what: &str, ps_args: &[String]) -> Result<Top> {
        let c = self.get(what)?;
        if c.state.status != Status::Running {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        let pids = self.runtime_of(&c).pids(&c.id)?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| Error::io("running ps", e))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

/// Keep the rows whose PID column is one of `pids`. The last column (the
/// command) may contain spaces, so rows are split into as many fields as
/// the header has.
fn parse_ps(text: &str, pids: &[i32]) -> Result<Top> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::Invalid("ps output has no PID column (add -o pid)".into()))?;
    let n = titles.len();
    let mut processes = Vec::new();
    for l in lines {
        let mut fields: Vec<String> = Vec::new();
        let mut rest = l.trim_start();
        while fields.len() + 1 < n {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
        fields.push(rest.to_string());
        if fields
            .get(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            processes.push(fields);
        }
    }
    Ok(Top { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_the_container_only() {
        let text = "UID PID PPID C STIME TTY TIME CMD\n\
                    root 1 0 0 10:00 ? 00:00:01 /sbin/init\n\
                    root 42 1 0 10:01 ? 00:00:00 sleep 1000 now\n";
        let t = parse_ps(text, &[42]).unwrap();
        assert_eq!(t.titles.len(), 8);
        assert_eq!(
            t.processes,
            vec![vec![
                "root",
                "42",
                "1",
                "0",
                "10:01",
                "?",
                "00:00:00",
                "sleep 1000 now"
            ]]
        );
        assert!(parse_ps("USER CMD\nroot x\n", &[1]).is_err());
    }
}
