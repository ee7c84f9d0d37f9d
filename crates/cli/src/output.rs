//! Output helpers shared by the commands: error lines, sizes, ages, tables.

use std::time::{SystemTime, UNIX_EPOCH};

/// Render an error and its causes on one line: "doing X: because Y: because Z".
pub fn error_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Avoid "a: b: b" when a wrapper already embeds its source's text.
        if parts.last().is_some_and(|last| last.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    // Last guard: whatever a library quoted from its input, the line printed
    // carries no control characters (a terminal would act on them).
    hako_image::error::printable(&parts.join(": "))
}

/// Human size like docker: "4.26MB" (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", value)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[unit]
    }
}

/// "3 minutes ago" style age of a unix timestamp (seconds).
pub fn human_age(unix_seconds: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let secs = (now - unix_seconds).max(0);
    let (n, unit) = match secs {
        0..=59 => return "Less than a minute ago".to_string(),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=604_799 => (secs / 86_400, "day"),
        604_800..=2_591_999 => (secs / 604_800, "week"),
        2_592_000..=31_535_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    if n == 1 {
        format!("{} {unit} ago", if unit == "hour" { "An" } else { "1" })
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Print rows as left-aligned columns separated by three spaces.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&cell);
            } else {
                out.push_str(&format!("{:<width$}   ", cell, width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// What `inspect` prints: the objects as a pretty JSON array, or with `--format`
/// (a Go-style template, or "json") one line per object, as docker does.
/// docker's prune prompt: `warning`, then "Are you sure you want to
/// continue? [y/N]", asked only when stdin is a terminal (a script's prune
/// goes ahead, as before); false unless the answer is yes.
pub fn confirm(warning: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// `hako images | head -1`: the reader went away. End as `ls` would, by
/// the SIGPIPE it would have got (main's panic hook does the same for
/// println!).
pub fn end_by_sigpipe() -> ! {
    // SAFETY: restoring the default action of a signal and raising it is
    // async-signal-safe and touches no Rust state; the process ends.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141);
}

pub fn print_inspected(objects: &[serde_json::Value], format: Option<&str>) -> anyhow::Result<()> {
    match format {
        None => println!("{}", serde_json::to_string_pretty(objects)?),
        Some("json") => {
            for o in objects {
                println!("{}", serde_json::to_string(o)?);
            }
        }
        Some(f) => {
            for o in objects {
                println!("{}", crate::template::render(f, o)?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_decimal_units_like_docker() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }

    #[test]
    fn error_line_joins_causes() {
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&err), "outer: inner");
    }
}
