//! Authentication: who a request comes from (user name, groups), from its
//! client certificate (CN = user, O = groups, as upstream reads them) or
//! its bearer token, and impersonation (`Impersonate-*` headers), which the
//! caller must be allowed by the `impersonate` verb.

use axum::http::{header, HeaderMap};
use axum_server::tls::TlsInfo;
use serde_json::{json, Value};

use crate::handler::sanitize;
use crate::App;

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group whose members bypass authorization (the admin's).
pub const MASTERS: &str = "system:masters";
/// The user name of the admin kubeconfig's bearer token.
pub const ADMIN: &str = "hako-admin";

/// An authenticated user, as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (only impersonation sets them).
    pub extra: Vec<(String, Vec<String>)>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        let mut u = UserInfo {
            name: name.to_string(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Vec::new(),
        };
        u.add_authenticated();
        u
    }

    fn add_authenticated(&mut self) {
        if self.name != "system:anonymous" && !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.to_string());
        }
    }

    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// The authentication.k8s.io/v1 UserInfo.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = self
                .extra
                .iter()
                .map(|(k, vs)| (k.clone(), json!(vs)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        v
    }
}

/// Compare without an early exit, so timing tells nothing about the secret.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who holds `token`: the single place bearer tokens are resolved (the
/// admin's and service accounts').
pub fn user_of_token(app: &App, token: &str) -> Option<UserInfo> {
    if !app.token.is_empty() && same_secret(token.as_bytes(), app.token.as_bytes()) {
        return Some(UserInfo::new(ADMIN, &[MASTERS]));
    }
    // A service account token this server issued (TokenRequest): the account's
    // user and groups, as upstream names them.
    let (ns, name) = app.tokens.service_account(app.store.as_ref(), token)?;
    Some(UserInfo::new(
        &format!("system:serviceaccount:{ns}:{name}"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
        ],
    ))
}

/// The user of a request: a client certificate the TLS layer verified
/// against the cluster CA, else a bearer token. None: anonymous (refused).
pub fn authenticate(app: &App, headers: &HeaderMap, tls: Option<&TlsInfo>) -> Option<UserInfo> {
    if let Some(der) = tls.and_then(|t| t.peer_certificates.first()) {
        if let Some((user, groups)) = crate::certs::client_identity(der) {
            tracing::debug!(user = %sanitize(&user), ?groups, "client certificate");
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            return Some(UserInfo::new(&user, &groups));
        }
    }
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ")?.trim();
    user_of_token(app, token)
}

/// What a request asks to act as (`Impersonate-User`, `-Group`, `-Uid`,
/// `-Extra-KEY`); None without those headers.
pub fn impersonation(headers: &HeaderMap) -> Result<Option<UserInfo>, String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect()
    };
    let users = values("impersonate-user");
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid");
    let mut extra = Vec::new();
    for (name, _) in headers.iter() {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = form_urlencoded::parse(format!("k={key}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if !extra.iter().any(|(k, _): &(String, Vec<String>)| *k == key) {
                extra.push((key, values(name.as_str())));
            }
        }
    }
    let Some(user) = users.first() else {
        if !groups.is_empty() || !uid.is_empty() || !extra.is_empty() {
            return Err(
                "requested impersonation of groups, uid or extra without a user: \
                        Impersonate-User is required"
                    .into(),
            );
        }
        return Ok(None);
    };
    let mut u = UserInfo {
        name: user.clone(),
        uid: uid.first().cloned().unwrap_or_default(),
        groups,
        extra,
    };
    // A service account is in its groups whatever the headers say.
    if let Some(rest) = u.name.strip_prefix("system:serviceaccount:") {
        if u.groups.is_empty() {
            if let Some((ns, _)) = rest.split_once(':') {
                u.groups = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
    }
    u.add_authenticated();
    Ok(Some(u))
}
