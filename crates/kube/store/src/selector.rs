//! Label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`)
//! and field selectors (`metadata.name=x`, `status.phase!=Running`), parsed
//! from the query-string form kubectl sends.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("invalid {what} selector: {problem}")]
pub struct SelectorError {
    pub what: &'static str,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Split at commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 316
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn label_err(problem: impl Into<String>) -> SelectorError {
    SelectorError {
        what: "label",
        problem: problem.into(),
    }
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = Self::parse_req(part)?;
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    fn parse_req(part: &str) -> Result<LabelReq, SelectorError> {
        let check = |k: &str| {
            if valid_key(k) {
                Ok(k.to_string())
            } else {
                Err(label_err(format!("{:?} is not a valid label key", k)))
            }
        };
        let checkv = |v: &str| {
            if valid_value(v) {
                Ok(v.to_string())
            } else {
                Err(label_err(format!("{:?} is not a valid label value", v)))
            }
        };
        if let Some(k) = part.strip_prefix('!') {
            return Ok(LabelReq::NotExists(check(k.trim())?));
        }
        if let Some((k, v)) = part.split_once("!=") {
            return Ok(LabelReq::NotEq(check(k.trim())?, checkv(v.trim())?));
        }
        if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            return Ok(LabelReq::Eq(check(k.trim())?, checkv(v.trim())?));
        }
        for (word, notin) in [(" notin ", true), (" in ", false)] {
            if let Some((k, set)) = part.split_once(word) {
                let set = set.trim();
                let inner = set
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(|| {
                        label_err(format!("set for {:?} needs parentheses", k.trim()))
                    })?;
                let values = inner
                    .split(',')
                    .map(|v| checkv(v.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                let k = check(k.trim())?;
                return Ok(if notin {
                    LabelReq::NotIn(k, values)
                } else {
                    LabelReq::In(k, values)
                });
            }
        }
        Ok(LabelReq::Exists(check(part)?))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: `path=value` / `path!=value` over the object's
/// JSON (dotted paths such as `metadata.name`, `spec.nodeName`,
/// `involvedObject.kind`). A missing field compares as the empty string, as
/// upstream's field sets do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(SelectorError {
                    what: "field",
                    problem: format!("{:?} is not of the form field=value", part),
                });
            };
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(SelectorError {
                    what: "field",
                    problem: format!("{:?} is not a field path", k),
                });
            }
            reqs.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields the selector uses (so an API server can refuse unsupported ones).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _, _)| k.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_operators() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (db, web)"));
        assert!(!m("app notin (db,web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m("missing!=x"));
        assert!(LabelSelector::parse("app in db").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_paths() {
        let o = json!({"metadata": {"name": "n"}, "status": {"phase": "Running"}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&o);
        assert!(m("metadata.name=n,status.phase=Running"));
        assert!(m("spec.nodeName="));
        assert!(!m("status.phase!=Running"));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
