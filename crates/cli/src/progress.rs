//! Progress display: one bar per item on a terminal (indicatif), plain
//! lines otherwise so logs stay readable.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress shown on stderr.
pub struct Display {
    tty: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Display {
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Display {
            tty,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

fn short(id: &str) -> String {
    // "sha256:0123456789ab…" → "0123456789ab"
    match id.split_once(':') {
        Some((alg, hex)) if alg.starts_with("sha") && hex.len() > 12 => hex[..12].to_string(),
        _ => id.to_string(),
    }
}

impl hako_image::Progress for Display {
    fn start(&self, id: &str, what: &str, total: Option<u64>) {
        if !self.tty {
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template("{prefix} {msg:<20} [{bar:30}] {bytes}/{total_bytes}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix} {msg:<20} {spinner} {bytes}")
                    .expect("valid template"),
            ),
        };
        bar.set_prefix(short(id));
        bar.set_message(what.to_string());
        let bar = self.multi.add(bar);
        self.bars
            .lock()
            .expect("progress lock")
            .insert(id.to_string(), bar);
    }

    fn advance(&self, id: &str, n: u64) {
        if let Some(bar) = self.bars.lock().expect("progress lock").get(id) {
            bar.inc(n);
        }
    }

    fn finish(&self, id: &str, note: &str) {
        // Off a terminal nothing is shown: the command's own output says what was done.
        if let Some(bar) = self.bars.lock().expect("progress lock").remove(id) {
            bar.finish_with_message(note.to_string());
        }
    }
}
