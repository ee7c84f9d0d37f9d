//! Query parameters as docker sends them: booleans as `1`/`true`/`True`
//! (anything else but `0`/`false`/empty counts as true, as docker's
//! `BoolValue`), numbers, and `filters` as a JSON object of lists (or, from
//! old clients, of `{"value": true}` maps).

use std::collections::{BTreeMap, HashMap};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::{printable, ApiError, ApiResult};

/// A request's query parameters.
#[derive(Debug, Default, Clone)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Params> {
        let q = parts.uri.query().unwrap_or("");
        Ok(Params(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl Params {
    pub fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// docker's boolean: absent, empty, `0` and `false` are false.
    pub fn bool(&self, k: &str) -> bool {
        match self.0.get(k) {
            None => false,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"),
        }
    }

    /// An integer parameter; a malformed one is a 400 naming it.
    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.0.get(k) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for {k}: {:?} is not a number",
                    printable(v)
                ))
            }),
        }
    }

    /// The `filters` parameter as KEY=VALUE strings (the engine's filter form).
    pub fn filters(&self) -> ApiResult<Vec<String>> {
        Ok(parse_filters(self.str("filters").unwrap_or(""))?
            .into_iter()
            .flat_map(|(k, vs)| vs.into_iter().map(move |v| format!("{k}={v}")))
            .collect())
    }
}

/// docker's filters JSON: `{"key": ["v1", "v2"]}` or `{"key": {"v1": true}}`.
pub fn parse_filters(s: &str) -> ApiResult<BTreeMap<String, Vec<String>>> {
    if s.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| ApiError::bad_request(format!("invalid filters: not a JSON object ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filters: not a JSON object"))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let vals: Vec<String> = match v {
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid filter {}: values must be strings",
                        printable(k)
                    ))
                })?,
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(false))
                .map(|(v, _)| v.clone())
                .collect(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter {}: expected a list of values",
                    printable(k)
                )))
            }
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}
