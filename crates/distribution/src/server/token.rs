//! `GET /token?service=..&scope=..`: the registry's own token endpoint. Credentials come
//! as Basic auth checked against htpasswd; the token grants the requested scopes the
//! client is allowed (see [`crate::auth::grant`]).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::response::header_str;
use super::AppState;
use crate::auth::{self, grant, parse_scopes};
use crate::error::{ErrorCode, RegistryError};

pub async fn issue(State(app): State<AppState>, req: Request) -> Response {
    let (Some(tokens), Some(htpasswd)) = (&app.tokens, &app.htpasswd) else {
        return RegistryError::new(
            ErrorCode::Unsupported,
            "this registry does not issue tokens",
        )
        .with_status(404)
        .into_response();
    };
    let scopes: Vec<String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let user = match header_str(req.headers(), header::AUTHORIZATION) {
        Some(h) => match auth::parse_basic(h) {
            Some((u, p)) if htpasswd.verify(&u, &p) => Some(u),
            _ => {
                let mut resp = RegistryError::new(
                    ErrorCode::Unauthorized,
                    "token request credentials were not accepted",
                )
                .into_response();
                super::response::set(
                    &mut resp,
                    "WWW-Authenticate",
                    "Basic realm=\"hako-registry\"",
                );
                return resp;
            }
        },
        None => None,
    };
    let granted = grant(parse_scopes(&scopes), user.as_deref(), &app.policy);
    let token = tokens.issue(user.as_deref().unwrap_or("anonymous"), granted);
    (
        StatusCode::OK,
        Json(json!({
            "token": token,
            "access_token": token,
            "expires_in": tokens.ttl.as_secs(),
        })),
    )
        .into_response()
}

/// Decode `%XX` escapes and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_scopes() {
        assert_eq!(
            super::percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
            "repository:a/b:pull,push"
        );
        assert_eq!(super::percent_decode("a+b%"), "a b%");
    }
}
