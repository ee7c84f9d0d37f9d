//! Numeric fields of a compose file, range-checked: a value outside its
//! field's range is an error naming the field's path and the range, never
//! a silent wrap (4294967296 replicas used to become 0) or a saturation.

use serde_json::Value;

use crate::error::{field, quoted, Result};

/// The most replicas a service may ask for (`deploy.replicas`, `scale`,
/// `--scale`): far beyond what one host runs, far below what exhausts it.
pub const MAX_REPLICAS: u64 = 10_000;
/// The largest size (`mem_limit`, `shm_size`, ...): 1 PiB.
pub const MAX_BYTES: i64 = 1 << 50;
/// The most CPUs `cpus` may name.
pub const MAX_CPUS: f64 = 1024.0;
/// The longest duration (timeouts, intervals, grace periods): 2^31-1 seconds.
pub const MAX_DURATION_SECS: i64 = i32::MAX as i64;

/// An integer in `min..=max`: a YAML integer, or a string of one (what
/// interpolation leaves).
pub fn integer(v: &Value, path: &str, min: i64, max: i64) -> Result<i64> {
    let out_of_range = || field(path, format!("must be a whole number from {min} to {max}"));
    let n = match v {
        // Above i64::MAX or fractional: out of range either way.
        Value::Number(n) => n.as_i64().ok_or_else(out_of_range)?,
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| out_of_range())?,
        _ => return Err(out_of_range()),
    };
    if n < min || n > max {
        return Err(out_of_range());
    }
    Ok(n)
}

/// A replica count (0..=[`MAX_REPLICAS`]).
pub fn replicas(v: &Value, path: &str) -> Result<u32> {
    Ok(integer(v, path, 0, MAX_REPLICAS as i64)? as u32)
}

/// A size ("512m", "1g", a number of bytes) up to [`MAX_BYTES`].
pub fn bytes(s: &str, path: &str) -> Result<i64> {
    let n = hako_engine::options::parse_bytes(s).map_err(|e| field(path, e.to_string()))?;
    if n > MAX_BYTES {
        return Err(field(
            path,
            format!("{} is out of range: at most 1 PiB", quoted(s)),
        ));
    }
    Ok(n)
}

/// A CPU count, above 0 and at most [`MAX_CPUS`].
pub fn cpus(s: &str, path: &str) -> Result<()> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| field(path, format!("{} is not a number of CPUs", quoted(s))))?;
    if !(n > 0.0 && n <= MAX_CPUS) {
        return Err(field(
            path,
            format!(
                "{} is out of range: above 0 and at most {MAX_CPUS}",
                quoted(s)
            ),
        ));
    }
    Ok(())
}

/// A duration ("1m30s", "500ms") in nanoseconds, 0 up to [`MAX_DURATION_SECS`].
pub fn duration_ns(s: &str, path: &str) -> Result<i64> {
    let ns = hako_engine::options::parse_duration(s).map_err(|e| field(path, e.to_string()))?;
    // parse_duration saturates: anything at the cap is out of range too.
    if !(0..=MAX_DURATION_SECS * 1_000_000_000).contains(&ns) {
        return Err(field(
            path,
            format!(
                "{} is out of range: at most {MAX_DURATION_SECS}s",
                quoted(s)
            ),
        ));
    }
    Ok(ns)
}

/// A duration in whole seconds (rounded up).
pub fn duration_secs(s: &str, path: &str) -> Result<u32> {
    let ns = duration_ns(s, path)? as u64;
    Ok(ns.div_ceil(1_000_000_000) as u32)
}

/// A port (1..=65535) or a range of ports `A-B`, as a string.
pub fn port_or_range(s: &str, path: &str) -> Result<()> {
    let one = |p: &str| -> Result<u16> {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                field(
                    path,
                    format!("{} is not a port number (1 to 65535)", quoted(s)),
                )
            })
    };
    match s.split_once('-') {
        Some((a, b)) => {
            if one(a)? > one(b)? {
                return Err(field(path, format!("{} is an empty port range", quoted(s))));
            }
        }
        None => {
            one(s)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges() {
        let e = |r: Result<i64>| r.unwrap_err().to_string();
        assert_eq!(
            e(integer(&json!(4294967296u64), "x", 0, 10)),
            "x: must be a whole number from 0 to 10"
        );
        assert!(integer(&json!(u64::MAX), "x", 0, 10).is_err());
        assert!(integer(&json!(-1), "x", 0, 10).is_err());
        assert!(integer(&json!(1.5), "x", 0, 10).is_err());
        assert_eq!(integer(&json!("7"), "x", 0, 10).unwrap(), 7);
        assert!(bytes("1e30", "m").is_err());
        assert_eq!(bytes("1g", "m").unwrap(), 1 << 30);
        assert!(cpus("0", "c").is_err());
        assert!(cpus("1e9", "c").is_err());
        assert!(cpus("NaN", "c").is_err());
        assert!(cpus("0.5", "c").is_ok());
        assert!(duration_ns("99999999999999h", "d").is_err());
        assert_eq!(duration_secs("1m30s", "d").unwrap(), 90);
        assert!(port_or_range("70000", "p").is_err());
        assert!(port_or_range("0", "p").is_err());
        assert!(port_or_range("90-80", "p").is_err());
        assert!(port_or_range("80-90", "p").is_ok());
    }
}
