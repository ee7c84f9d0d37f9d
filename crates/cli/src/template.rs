//! The part of Go templates docker users type in `--format`: text with
//! `{{.Field}}`, `{{.Field.Sub}}`, `{{.}}` and `{{json .Field}}` actions,
//! applied to the JSON object docker would template. `\t` and `\n` typed
//! literally become a tab and a newline, as in docker's formatter.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// Render `tmpl` over `v`.
pub fn render(tmpl: &str, v: &Value) -> Result<String> {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("invalid --format {tmpl:?}: unclosed action"))?;
        // `{{- x -}}` trims spaces in Go; here the action alone matters.
        let action = after[..end].trim().trim_matches('-').trim();
        out.push_str(&action_value(action, v, tmpl)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out.replace("\\t", "\t").replace("\\n", "\n"))
}

fn action_value(action: &str, v: &Value, tmpl: &str) -> Result<String> {
    let (json, path) = match action.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, action),
    };
    let Some(fields) = path.strip_prefix('.') else {
        bail!(
            "invalid --format {tmpl:?}: unsupported action {{{{{action}}}}} (only .Field, .Field.Sub and json .Field)"
        );
    };
    let mut cur = v;
    for key in fields.split('.').filter(|k| !k.is_empty()) {
        cur = match cur {
            Value::Object(m) => m.get(key).unwrap_or(&Value::Null),
            _ => bail!(
                "invalid --format {tmpl:?}: {key} is not a field of a {}",
                kind(cur)
            ),
        };
    }
    Ok(if json {
        serde_json::to_string(cur)?
    } else {
        text(cur)
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "missing value",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// A value as Go's text/template prints it.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_json_and_escapes() {
        let v = serde_json::json!({"Name": "db", "Labels": {"a": "1"}, "Size": 3, "Options": null});
        assert_eq!(render("{{ .Name }}\\t{{.Size}}", &v).unwrap(), "db\t3");
        assert_eq!(
            render("{{.Labels.a}} {{json .Labels}}", &v).unwrap(),
            "1 {\"a\":\"1\"}"
        );
        assert_eq!(render("{{.Labels}}", &v).unwrap(), "map[a:1]");
        assert_eq!(
            render("{{.Options}}|{{.Nope}}", &v).unwrap(),
            "<no value>|<no value>"
        );
        assert_eq!(
            render("{{json .}}", &serde_json::json!([1])).unwrap(),
            "[1]"
        );
        assert!(render("{{.Name", &v).is_err());
        assert!(render("{{range .Labels}}", &v).is_err());
        assert!(render("{{.Name.x}}", &v).is_err());
    }
}
