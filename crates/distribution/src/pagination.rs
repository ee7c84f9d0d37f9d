//! `n`/`last` pagination of tag and repository lists, and the RFC 5988 `Link` header that
//! points at the next page.

/// Largest page a client may ask for; larger `n` values are clamped, not rejected, so a
/// client asking for "everything" still gets a Link to continue.
pub const MAX_PAGE: usize = 10_000;

/// One page of a sorted list, and whether more entries follow it.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<'a> {
    pub items: &'a [String],
    pub has_more: bool,
}

/// Select the page of `sorted` after `last` (exclusive) holding at most `n` entries.
/// `n == Some(0)` yields an empty page, as the spec allows.
pub fn paginate<'a>(sorted: &'a [String], n: Option<usize>, last: Option<&str>) -> Page<'a> {
    let start = match last {
        Some(l) => sorted.partition_point(|x| x.as_str() <= l),
        None => 0,
    };
    let rest = &sorted[start..];
    let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    if rest.len() > n {
        Page {
            items: &rest[..n],
            has_more: true,
        }
    } else {
        Page {
            items: rest,
            has_more: false,
        }
    }
}

/// `Link: <path?n=N&last=LAST>; rel="next"` for the page following `page`.
pub fn next_link(path: &str, n: Option<usize>, page: &Page<'_>) -> Option<String> {
    if !page.has_more {
        return None;
    }
    let last = page.items.last()?;
    let mut url = format!("{path}?");
    if let Some(n) = n {
        url.push_str(&format!("n={n}&"));
    }
    url.push_str("last=");
    url.push_str(&percent_encode(last));
    Some(format!("<{url}>; rel=\"next\""))
}

/// Query-component percent-encoding for names and tags (which only contain `[a-z0-9._/-]`
/// and `[A-Za-z0-9._-]`, but `/` is escaped so the value stays one query parameter).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_through_a_list() {
        let l = list(&["a", "b", "c", "d", "e"]);
        let p = paginate(&l, Some(2), None);
        assert_eq!(p.items, &l[0..2]);
        assert!(p.has_more);
        assert_eq!(
            next_link("/v2/r/tags/list", Some(2), &p).unwrap(),
            "</v2/r/tags/list?n=2&last=b>; rel=\"next\""
        );
        let p = paginate(&l, Some(2), Some("d"));
        assert_eq!(p.items, &l[4..5]);
        assert!(!p.has_more);
        assert_eq!(next_link("/x", Some(2), &p), None);
        assert!(paginate(&l, Some(0), None).items.is_empty());
        // `last` need not be present in the list.
        assert_eq!(paginate(&l, None, Some("bb")).items, &l[2..]);
        assert_eq!(percent_encode("a/b"), "a%2Fb");
    }
}
