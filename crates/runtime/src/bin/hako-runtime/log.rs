//! Error reporting: one line on stderr, and with --log a line in the log file
//! (`{"level":"error","msg":...,"time":...}` with --log-format json, which is
//! what podman and containerd parse).

use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Logger {
    file: Option<PathBuf>,
    json: bool,
}

impl Logger {
    pub fn new(file: Option<&Path>, json: bool) -> Logger {
        Logger {
            file: file.map(Path::to_path_buf),
            json,
        }
    }

    pub fn error(&self, msg: &str) {
        eprintln!("hako-runtime: {msg}");
        let Some(path) = &self.file else { return };
        let time = hako_runtime::util::rfc3339(std::time::SystemTime::now());
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        } else {
            format!("time=\"{time}\" level=error msg={msg:?}")
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
