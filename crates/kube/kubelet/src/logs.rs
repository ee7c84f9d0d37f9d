//! Container logs as `kubectl logs` wants them: CRI log files (`TIME STREAM F|P TEXT`)
//! stripped to their text, with tailLines, sinceSeconds/sinceTime, timestamps,
//! limitBytes and follow.

use k8s_openapi::chrono::{DateTime, SecondsFormat, Utc};

#[derive(Debug, Default, Clone)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<usize>,
}

/// One log line: when, and the text with its newline (partial lines joined).
pub struct Entry {
    pub time: DateTime<Utc>,
    pub text: Vec<u8>,
}

/// Parse CRI log bytes into whole lines; `pending` carries a partial line across
/// calls; an incomplete last line (no newline yet) is left in `rest`.
pub fn parse(data: &[u8], pending: &mut Option<Entry>) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(nl) = data[used..].iter().position(|b| *b == b'\n') {
        let line = &data[used..used + nl];
        used += nl + 1;
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let text = parts.next().unwrap_or(b"");
        let Some(time) = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
        else {
            continue;
        };
        let e = pending.get_or_insert_with(|| Entry {
            time,
            text: Vec::new(),
        });
        e.text.extend_from_slice(text);
        if tag != b"P" {
            let mut e = pending.take().unwrap_or(Entry {
                time,
                text: Vec::new(),
            });
            e.text.push(b'\n');
            out.push(e);
        }
    }
    (out, used)
}

/// Format entries as kubectl shows them.
pub fn render(entries: &[Entry], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if timestamps {
            out.extend_from_slice(
                e.time
                    .to_rfc3339_opts(SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            out.push(b' ');
        }
        out.extend_from_slice(&e.text);
    }
    out
}

/// The selection of a whole file: since, then the last N lines.
pub fn select(mut entries: Vec<Entry>, opts: &LogOptions) -> Vec<Entry> {
    if let Some(s) = opts.since {
        entries.retain(|e| e.time >= s);
    }
    if let Some(n) = opts.tail_lines {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_join_and_tail() {
        let data = b"2024-01-01T00:00:00.000000001Z stdout P hel\n2024-01-01T00:00:00.2Z stdout F lo\n2024-01-01T00:00:01Z stderr F two\n2024-01-01T00:00:02Z stdout F thr";
        let mut p = None;
        let (e, used) = parse(data, &mut p);
        assert_eq!(used, data.len() - "2024-01-01T00:00:02Z stdout F thr".len());
        assert_eq!(render(&e, false), b"hello\ntwo\n");
        let t = render(
            &select(
                e,
                &LogOptions {
                    tail_lines: Some(1),
                    ..Default::default()
                },
            ),
            true,
        );
        assert_eq!(t, b"2024-01-01T00:00:01.000000000Z two\n");
    }
}
