//! ConfigMap and Secret checks as upstream's API server makes them: base64 in `data` /
//! `binaryData` (400, as a decoding error), valid keys, at most 1 MiB of data, and the
//! keys each Secret type needs.

use base64::Engine as _;
use serde_json::Value;

use crate::status::ApiError;

/// Upstream's MaxSecretSize, the limit of a ConfigMap's and a Secret's data.
const MAX_SIZE: usize = 1024 * 1024;

type Cause = (String, String, String);

fn required(field: String) -> Cause {
    (field, "FieldValueRequired".into(), "Required value".into())
}

/// Upstream's IsConfigMapKey.
fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if key == "." || key == ".." || key.starts_with("..") {
        return Some("must not be '.' or '..' or start with '..'".into());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    None
}

/// Decode the base64 values of `obj[field]`: a 400 naming the object on bad input (the
/// request could not be decoded, as upstream says it).
fn decoded(kind: &str, obj: &Value, field: &str) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in obj
        .get(field)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let s = v.as_str().unwrap_or("");
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "{kind} in version \"v1\" cannot be handled as a {kind}: {field}[{}]: illegal base64 data ({e})",
                    crate::status::quoted(k).trim_matches('"')
                ))
            })?;
        out.push((k.clone(), b));
    }
    Ok(out)
}

/// Check a ConfigMap or Secret being written; `old` on updates. Err is a 400 for
/// undecodable data; Ok holds the 422 causes (empty when valid).
pub fn check(kind: &str, old: Option<&Value>, obj: &Value) -> Result<Vec<Cause>, ApiError> {
    let mut causes = Vec::new();
    let (text, binary_field) = if kind == "ConfigMap" {
        (
            obj.get("data")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").len()))
                .collect::<Vec<_>>(),
            "binaryData",
        )
    } else {
        (Vec::new(), "data")
    };
    let binary = decoded(kind, obj, binary_field)?;
    let mut total = 0;
    for (k, len) in text
        .iter()
        .map(|(k, l)| (k, *l))
        .chain(binary.iter().map(|(k, b)| (k, b.len())))
    {
        let field = if kind == "ConfigMap" && !binary.iter().any(|(b, _)| b == k) {
            "data"
        } else {
            binary_field
        };
        if let Some(p) = key_problem(k) {
            causes.push((
                format!("{field}[{k}]"),
                "FieldValueInvalid".into(),
                format!("Invalid value: {}: {p}", crate::status::quoted(k)),
            ));
        }
        total += k.len() + len;
    }
    if total > MAX_SIZE {
        let field = if kind == "ConfigMap" { "[]" } else { "data" };
        causes.push((
            field.into(),
            "FieldValueTooLong".into(),
            format!("Too long: must have at most {MAX_SIZE} bytes"),
        ));
    }
    if kind == "Secret" {
        secret_type(obj, &binary, &mut causes);
        if let Some(old) = old {
            let t = |o: &Value| {
                o.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque")
                    .to_string()
            };
            if t(old) != t(obj) {
                causes.push((
                    "type".into(),
                    "FieldValueInvalid".into(),
                    format!(
                        "Invalid value: {}: field is immutable",
                        crate::status::quoted(&t(obj))
                    ),
                ));
            }
        }
    }
    Ok(causes)
}

/// The keys each Secret type needs (upstream's ValidateSecret).
fn secret_type(obj: &Value, data: &[(String, Vec<u8>)], causes: &mut Vec<Cause>) {
    let has = |k: &str| data.iter().any(|(x, _)| x == k);
    let get = |k: &str| data.iter().find(|(x, _)| x == k).map(|(_, v)| v);
    let json_key = |k: &str, causes: &mut Vec<Cause>| match get(k) {
        None => causes.push(required(format!("data[{k}]"))),
        Some(v) => {
            if let Err(e) = serde_json::from_slice::<Value>(v) {
                causes.push((
                    format!("data[{k}]"),
                    "FieldValueInvalid".into(),
                    format!("Invalid value: \"<secret contents redacted>\": {e}"),
                ));
            }
        }
    };
    match obj.get("type").and_then(Value::as_str).unwrap_or("Opaque") {
        "kubernetes.io/service-account-token" => {
            let ann = obj["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str();
            if ann.is_none_or(str::is_empty) {
                causes.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]".into(),
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg", causes),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson", causes),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            causes.push(required("data[username]".into()));
            causes.push(required("data[password]".into()));
        }
        "kubernetes.io/ssh-auth" if get("ssh-privatekey").is_none_or(|v| v.is_empty()) => {
            causes.push(required("data[ssh-privatekey]".into()));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    causes.push(required(format!("data[{k}]")));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_types_and_sizes() {
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        let c = check("Secret", None, &tls).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "data[tls.key]");
        assert!(check("Secret", None, &json!({"data": {"a": "!!"}})).is_err());
        let big = "x".repeat(MAX_SIZE);
        let c = check("ConfigMap", None, &json!({"data": {"k": big}})).unwrap();
        assert_eq!(c[0].0, "[]");
        let c = check("ConfigMap", None, &json!({"data": {"a b": "x"}})).unwrap();
        assert_eq!(c[0].0, "data[a b]");
    }
}
