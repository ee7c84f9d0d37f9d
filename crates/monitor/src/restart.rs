//! Restart policies as docker defines them, and the delay before a restart:
//! 100 ms, doubling after each restart up to a minute, back to 100 ms once
//! the container ran 10 seconds (so a crash loop slows down, a service that
//! crashes once a day restarts at once).

use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long counts as healthy: the delay starts over.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// `--restart NAME` (`no`, `on-failure`, `always`, `unless-stopped`) with
/// on-failure's maximum retry count (0: unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub max: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            name: "no".into(),
            max: 0,
        }
    }
}

impl Policy {
    /// The policy the engine wrote (`NAME MAX`), if there is such a file.
    pub fn from_file(path: &std::path::Path) -> Option<Policy> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut words = text.split_whitespace();
        let name = words.next()?.to_string();
        let max = words.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(Policy { name, max })
    }

    /// Whether a container that exited with `code` after `restarts`
    /// restarts is started again. A stop or kill by the user always ends it.
    pub fn should_restart(&self, code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (self.max == 0 || restarts < self.max),
            _ => false,
        }
    }
}

/// The growing delay between restarts.
#[derive(Debug, Default)]
pub struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    /// The delay before the next restart of a run that lasted `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        let d = match self.last {
            Some(prev) if ran < RESET_AFTER => (prev * 2).min(MAX_DELAY),
            _ => FIRST_DELAY,
        };
        self.last = Some(d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_is_read_when_there_is_one() {
        let dir = std::env::temp_dir().join(format!("hako-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("restart-policy");
        assert_eq!(Policy::from_file(&f), None);
        std::fs::write(&f, "on-failure 3\n").unwrap();
        assert_eq!(
            Policy::from_file(&f),
            Some(Policy {
                name: "on-failure".into(),
                max: 3
            })
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn p(name: &str, max: u32) -> Policy {
        Policy {
            name: name.into(),
            max,
        }
    }

    #[test]
    fn policies() {
        assert!(!p("no", 0).should_restart(1, 0, false));
        assert!(p("always", 0).should_restart(0, 99, false));
        assert!(!p("always", 0).should_restart(0, 0, true));
        assert!(p("unless-stopped", 0).should_restart(0, 0, false));
        assert!(!p("on-failure", 0).should_restart(0, 0, false));
        assert!(p("on-failure", 0).should_restart(3, 1000, false));
        assert!(p("on-failure", 2).should_restart(3, 1, false));
        assert!(!p("on-failure", 2).should_restart(3, 2, false));
    }

    #[test]
    fn backoff_doubles_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        assert_eq!(b.next(short), Duration::from_millis(100));
        assert_eq!(b.next(short), Duration::from_millis(200));
        assert_eq!(b.next(short), Duration::from_millis(400));
        assert_eq!(b.next(Duration::from_secs(11)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(short);
        }
        assert_eq!(b.next(short), MAX_DELAY);
    }
}
