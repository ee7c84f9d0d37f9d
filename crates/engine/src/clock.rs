//! Timestamps as docker shows them: RFC 3339 with nanoseconds, UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as "2024-01-02T03:04:05.123456789Z".
pub fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = hako_image::images::format_rfc3339(d.as_secs() as i64);
    // "…:05Z" → "…:05.123456789Z"
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), d.subsec_nanos())
}

/// Unix seconds of an RFC 3339 time; None for "" or garbage.
pub fn unix(t: &str) -> Option<i64> {
    hako_image::images::parse_rfc3339(t)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_round_trips() {
        let t = super::now();
        assert!(
            t.ends_with('Z') && t.len() == "2024-01-02T03:04:05.123456789Z".len(),
            "{t}"
        );
        assert!(super::unix(&t).is_some());
    }
}
