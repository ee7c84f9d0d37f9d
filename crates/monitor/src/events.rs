//! The container events only the monitor sees (start, die, health_status,
//! oom), appended to the engine's event log as JSON lines in the Engine API
//! shape the engine's reader expects. One `write(2)` with O_APPEND per
//! event, so lines from other writers never interleave with ours.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::jsonlog::escape_into;

#[derive(Debug, Clone)]
pub struct Events {
    pub path: PathBuf,
    pub id: String,
    /// The container's attributes (name, image, labels) as a JSON object,
    /// rendered by the engine.
    pub attributes: String,
}

impl Events {
    /// Append `action` with `extra` attributes; a failure loses the event,
    /// never the container.
    pub fn emit(&self, action: &str, extra: &[(&str, &str)]) {
        let line = self.line(action, extra, now_nanos());
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }

    fn line(&self, action: &str, extra: &[(&str, &str)], nanos: i128) -> String {
        let mut attrs = String::from("{");
        for (k, v) in extra {
            attrs.push('"');
            escape_into(&mut attrs, k);
            attrs.push_str("\":\"");
            escape_into(&mut attrs, v);
            attrs.push_str("\",");
        }
        let given = self.attributes.trim();
        let inner = given
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        if inner.is_empty() {
            if attrs.ends_with(',') {
                attrs.pop();
            }
        } else {
            attrs.push_str(inner);
        }
        attrs.push('}');
        let mut out = String::from("{\"Type\":\"container\",\"Action\":\"");
        escape_into(&mut out, action);
        out.push_str("\",\"Actor\":{\"ID\":\"");
        escape_into(&mut out, &self.id);
        out.push_str(&format!(
            "\",\"Attributes\":{attrs}}},\"scope\":\"local\",\"time\":{},\"timeNano\":{nanos}}}\n",
            nanos / 1_000_000_000
        ));
        out
    }
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_attributes_and_the_extras() {
        let e = Events {
            path: PathBuf::new(),
            id: "abc".into(),
            attributes: r#"{"image":"busybox","name":"w\"x"}"#.into(),
        };
        assert_eq!(
            e.line("die", &[("exitCode", "3")], 1_700_000_000_000_000_001),
            "{\"Type\":\"container\",\"Action\":\"die\",\"Actor\":{\"ID\":\"abc\",\"Attributes\":\
             {\"exitCode\":\"3\",\"image\":\"busybox\",\"name\":\"w\\\"x\"}},\"scope\":\"local\",\
             \"time\":1700000000,\"timeNano\":1700000000000000001}\n"
        );
        let bare = Events {
            attributes: "{}".into(),
            ..e.clone()
        };
        assert!(bare.line("start", &[], 5).contains("\"Attributes\":{}},"));
        assert!(bare
            .line("die", &[("exitCode", "0")], 5)
            .contains("\"Attributes\":{\"exitCode\":\"0\"}},"));
    }
}
