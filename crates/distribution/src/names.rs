//! The distribution-spec grammar for repository names and tags. Validation here is what
//! keeps hostile names (`..`, absolute paths, NUL, `%2e`) from ever reaching storage paths.

/// Longest repository name accepted. The spec leaves the limit to the registry; 255
/// matches what clients (docker, distribution) assume.
pub const MAX_NAME_LEN: usize = 255;

/// Whether `name` matches
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn is_valid_repository_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

/// One `/`-separated component: alphanumeric runs joined by `.`, `_`, `__` or `-+`.
fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        // A separator must be followed by an alphanumeric character.
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return false;
    }
    let first_ok = b[0].is_ascii_alphanumeric() || b[0] == b'_';
    first_ok
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/alpine",
            "my-org/my_repo/sub.name",
            "a__b",
            "a---b",
            "x0/y1/z2",
        ] {
            assert!(is_valid_repository_name(ok), "{ok:?} was rejected");
        }
    }

    #[test]
    fn rejects_hostile_names() {
        for bad in [
            "", "..", "../etc", "a/../b", "/abs", "a//b", "a/", "A", "a.-b", "a___b", "a/./b",
            "a\0b", "a%2e%2e", "-a", "a-", ".hidden", "_uploads",
        ] {
            assert!(!is_valid_repository_name(bad), "{bad:?} was accepted");
        }
        assert!(!is_valid_repository_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x.1-2"));
        assert!(is_valid_tag(&"a".repeat(128)));
        for bad in ["", ".hidden", "-x", "a/b", "..", "a b", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad:?} was accepted");
        }
    }
}
