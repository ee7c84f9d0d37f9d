//! Kubernetes resource quantities (`100m`, `128Mi`, `1.5`, `2G`, `1e3`) as numbers.

/// The value of a quantity in thousandths of its unit (millicores for cpu, milli-bytes for
/// memory: divide by 1000), rounded up; `None` when it is not a quantity.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (mul_num, mul_den): (i128, i128) = match suffix {
        "" => (1000, 1),
        "m" => (1, 1),
        "k" => (1000 * 1000, 1),
        "M" => (1000 * 1_000_000, 1),
        "G" => (1000 * 1_000_000_000, 1),
        "T" => (1000 * 1_000_000_000_000, 1),
        "P" => (1000 * 1_000_000_000_000_000, 1),
        "Ki" => (1000 << 10, 1),
        "Mi" => (1000 << 20, 1),
        "Gi" => (1000 << 30, 1),
        "Ti" => (1000 << 40, 1),
        "Pi" => (1000 << 50, 1),
        "Ei" => (1000 << 60, 1),
        "n" => (1, 1_000_000),
        "u" => (1, 1000),
        e if e.starts_with('e') || e.starts_with('E') => {
            let exp: u32 = e[1..].parse().ok()?;
            (1000 * 10i128.checked_pow(exp)?, 1)
        }
        _ => return None,
    };
    // Exact decimal arithmetic: integer and fraction digits separately.
    let neg = num.starts_with('-');
    let num = num.trim_start_matches(['+', '-']);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let scale = 10i128.checked_pow(frac.len() as u32)?;
    let v = digits.checked_mul(mul_num)?;
    let den = scale * mul_den;
    let r = (v + den - 1) / den;
    Some(if neg { -r } else { r })
}

/// The quantity in whole units, rounded up (bytes for memory, cores for cpu).
pub fn parse_units(s: &str) -> Option<i128> {
    parse_milli(s).map(|m| (m + 999).div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_units("128Mi"), Some(128 << 20));
        assert_eq!(parse_units("1G"), Some(1_000_000_000));
        assert_eq!(parse_units("1e3"), Some(1000));
        assert_eq!(parse_units("1.5Ki"), Some(1536));
        assert_eq!(parse_milli("250000n"), Some(1));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(parse_milli("1X"), None);
        assert_eq!(parse_milli(""), None);
    }
}
