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

/// Unix nanoseconds of an RFC 3339 time (fraction kept); None for garbage.
pub fn unix_nanos(t: &str) -> Option<i128> {
    let secs = unix(t)? as i128;
    let frac = t
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .map(|f| f.split(['+', '-']).next().unwrap_or(""))
        .unwrap_or("");
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32)
    };
    Some(secs * 1_000_000_000 + nanos)
}

/// docker's `--since`/`--until` forms as unix nanoseconds: an RFC 3339
/// time, unix seconds ("1700000000.5"), or a duration before `now_nanos`
/// ("10m", "1h30m", "45s", "500ms").
pub fn parse_time_arg(s: &str, now_nanos: i128) -> Option<i128> {
    if let Some(t) = unix_nanos(s) {
        return Some(t);
    }
    // Exact: docker clients send "SECONDS.NANOSECONDS", which a float
    // would round by hundreds of nanoseconds.
    if let Some((sec, frac)) = s.split_once('.') {
        if let (Ok(sec), true) = (
            sec.parse::<i128>(),
            !frac.is_empty() && frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()),
        ) {
            let nanos = frac.parse::<i128>().ok()? * 10i128.pow(9 - frac.len() as u32);
            return Some(sec * 1_000_000_000 + nanos);
        }
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1e9) as i128);
    }
    // Go-style duration.
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(now_nanos - total as i128)
}

/// Unix nanoseconds now.
pub fn unix_nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_arguments() {
        use super::*;
        let t = unix_nanos("2024-01-02T03:04:05.5Z").unwrap();
        assert_eq!(t % 1_000_000_000, 500_000_000);
        assert_eq!(parse_time_arg("2024-01-02T03:04:05.5Z", 0), Some(t));
        assert_eq!(
            parse_time_arg("1700000000", 0),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time_arg("1h30m", 10_000_000_000_000),
            Some(10_000_000_000_000 - 5_400_000_000_000)
        );
        assert_eq!(parse_time_arg("500ms", 1_000_000_000), Some(500_000_000));
        // docker clients' SECONDS.NANOSECONDS, to the nanosecond.
        assert_eq!(
            parse_time_arg("1765137000.123456789", 0),
            Some(1_765_137_000_123_456_789)
        );
        assert_eq!(
            parse_time_arg("1765137000.5", 0),
            Some(1_765_137_000_500_000_000)
        );
        assert!(parse_time_arg("soon", 0).is_none());
    }

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
