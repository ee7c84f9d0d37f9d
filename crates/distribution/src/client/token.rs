//! Docker registry token auth: after a `Bearer realm=..,service=..` challenge,
//! `GET realm?service=..&scope=..` (with Basic credentials when hako has them)
//! answers `{"token": ..}` (or `{"access_token": ..}`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;

use super::credentials::Credentials;
use super::error::{parse_error_body, ClientError, Result};

pub(crate) fn fetch(
    http: &reqwest::blocking::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    creds: Option<&Credentials>,
    registry: &str,
) -> Result<String> {
    let what = if scopes.is_empty() {
        format!("getting a token for {registry} from {realm}")
    } else {
        format!("getting a token for {} from {realm}", scopes.join(" "))
    };
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = service {
        query.push(("service", s));
    }
    for s in scopes {
        query.push(("scope", s));
    }
    let mut req = http.get(realm).query(&query);
    if let Some(c) = creds {
        req = req.header(
            AUTHORIZATION,
            format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.username, c.password))
            ),
        );
    }
    let resp = req.send().map_err(|e| ClientError::Http {
        what: what.clone(),
        err: e,
    })?;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(ClientError::Unauthorized {
            what,
            reason: match creds {
                Some(c) => format!(
                    "the token service refused the credentials of user {}",
                    c.username
                ),
                None => format!("authentication required (run `hako login {registry}`)"),
            },
        });
    }
    let body = resp.bytes().map_err(|e| ClientError::Http {
        what: what.clone(),
        err: e,
    })?;
    if !status.is_success() {
        let (code, message) = parse_error_body(&body);
        return Err(ClientError::Status {
            what,
            status: status.as_u16(),
            code,
            message,
        });
    }
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let t: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| ClientError::protocol(&what, format!("malformed token response: {e}")))?;
    t.token
        .or(t.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ClientError::protocol(what, "the token response holds no token"))
}
