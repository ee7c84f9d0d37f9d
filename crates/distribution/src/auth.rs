//! Authentication and authorisation: htpasswd (bcrypt) basic auth, and bearer tokens the
//! registry signs itself (HMAC-SHA256) at its token endpoint, carrying per-repository
//! pull/push/delete scopes in the Docker token format's `access` claim.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// An action on a repository, as scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            // `*` grants everything; expanded by the caller.
            _ => None,
        }
    }
}

/// What a request needs: an action on a repository, or any authenticated access (the `/v2/`
/// check and the catalog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    Repo { name: String, action: Action },
    Catalog,
    Base,
}

impl Need {
    /// The `scope` a client should request for this need.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Repo { name, action } => {
                let actions = match action {
                    Action::Pull => "pull",
                    Action::Push => "pull,push",
                    Action::Delete => "delete",
                };
                Some(format!("repository:{name}:{actions}"))
            }
            Need::Catalog => Some("registry:catalog:*".to_string()),
            Need::Base => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading htpasswd file {path}: {source}")]
    ReadHtpasswd {
        path: String,
        source: std::io::Error,
    },
    #[error("htpasswd file {path} line {line}: {reason}")]
    BadHtpasswd {
        path: String,
        line: usize,
        reason: &'static str,
    },
    #[error("reading token key {path}: {source}")]
    ReadKey {
        path: String,
        source: std::io::Error,
    },
    #[error("token key {path} is shorter than 32 bytes")]
    ShortKey { path: String },
}

/// Users and bcrypt hashes from an htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256(user:password) of credentials bcrypt has already accepted: bcrypt costs tens of
    /// milliseconds by design, and clients send credentials with every request.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::ReadHtpasswd {
            path: path.display().to_string(),
            source,
        })?;
        Htpasswd::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Htpasswd, AuthError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason| AuthError::BadHtpasswd {
                path: origin.to_string(),
                line: i + 1,
                reason,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| bad("no ':' separator"))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(bad("only bcrypt hashes ($2y$, $2b$, $2a$) are supported"));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let fingerprint: [u8; 32] = Sha256::digest(format!("{user}:{password}")).into();
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            == Some(&fingerprint)
        {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.to_string(), fingerprint);
        }
        ok
    }
}

/// Decode `Authorization: Basic ...` into user and password.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// One entry of a token's `access` claim.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    access: Vec<Access>,
}

/// Parse a request's `scope` parameters (`repository:name:pull,push`, space separated).
pub fn parse_scopes(scopes: &[String]) -> Vec<Access> {
    let mut out = Vec::new();
    for s in scopes.iter().flat_map(|s| s.split(' ')) {
        // The name may itself contain ':' (registry host with port): split from both ends.
        let Some((kind, rest)) = s.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        out.push(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions.split(',').map(str::to_string).collect(),
        });
    }
    out
}

/// Signs and checks bearer tokens: `base64url(claims).base64url(hmac-sha256)`.
pub struct TokenIssuer {
    key: Vec<u8>,
    pub ttl: Duration,
    pub service: String,
}

type HmacSha256 = Hmac<Sha256>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenIssuer {
    pub fn new(key: Vec<u8>, ttl: Duration, service: String) -> TokenIssuer {
        TokenIssuer { key, ttl, service }
    }

    pub fn load(path: &Path, ttl: Duration, service: String) -> Result<TokenIssuer, AuthError> {
        let key = std::fs::read(path).map_err(|source| AuthError::ReadKey {
            path: path.display().to_string(),
            source,
        })?;
        if key.len() < 32 {
            return Err(AuthError::ShortKey {
                path: path.display().to_string(),
            });
        }
        Ok(TokenIssuer::new(key, ttl, service))
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// Issue a token for `subject` granting `access`.
    pub fn issue(&self, subject: &str, access: Vec<Access>) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: subject.to_string(),
            aud: self.service.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            access,
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let sig = URL_SAFE_NO_PAD.encode(self.mac(body.as_bytes()));
        format!("{body}.{sig}")
    }

    /// The access a token grants, if its signature, audience and expiry check out.
    pub fn verify(&self, token: &str) -> Option<Vec<Access>> {
        let (body, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        m.update(body.as_bytes());
        m.verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        if claims.exp <= now_secs() || claims.aud != self.service {
            return None;
        }
        Some(claims.access)
    }
}

/// Whether granted `access` covers `need`.
pub fn access_covers(access: &[Access], need: &Need) -> bool {
    match need {
        Need::Base => true,
        Need::Catalog => access
            .iter()
            .any(|a| a.kind == "registry" && a.name == "catalog"),
        Need::Repo { name, action } => access.iter().any(|a| {
            a.kind == "repository"
                && &a.name == name
                && a.actions
                    .iter()
                    .any(|x| x == "*" || Action::parse(x) == Some(*action))
        }),
    }
}

/// One authorisation rule from the configuration's `[[access]]` tables.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// A user name, `*` for any authenticated user, or `anonymous`.
    pub account: String,
    /// A repository name, a prefix ending in `/*` (`team/*`), or `*` for all.
    pub repositories: String,
    /// `pull`, `push`, `delete`, or `*` for all three. A rule granting `pull` on `*` also
    /// grants the catalog.
    pub actions: Vec<String>,
}

impl AccessRule {
    fn matches_account(&self, user: Option<&str>) -> bool {
        match user {
            Some(u) => self.account == "*" || self.account == u,
            None => self.account == "anonymous",
        }
    }

    fn matches_repo(&self, name: &str) -> bool {
        match self.repositories.strip_suffix("/*") {
            _ if self.repositories == "*" => true,
            Some(prefix) => name
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')),
            None => self.repositories == name,
        }
    }

    fn allows_action(&self, action: Action) -> bool {
        self.actions
            .iter()
            .any(|a| a == "*" || Action::parse(a) == Some(action))
    }
}

/// Who may do what. Without rules every authenticated user may do everything; with rules
/// a request needs a rule matching its account, repository and action. Anonymous pulls are
/// also allowed by `anonymous_pull`.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub rules: Vec<AccessRule>,
    pub anonymous_pull: bool,
}

impl Policy {
    /// Whether `user` (None: no credentials) may do what `need` describes.
    pub fn allows(&self, user: Option<&str>, need: &Need) -> bool {
        if user.is_none()
            && self.anonymous_pull
            && matches!(
                need,
                Need::Repo {
                    action: Action::Pull,
                    ..
                }
            )
        {
            return true;
        }
        if self.rules.is_empty() {
            return user.is_some();
        }
        let rules = self.rules.iter().filter(|r| r.matches_account(user));
        match need {
            // The version check only says whether credentials are good.
            Need::Base => user.is_some(),
            Need::Catalog => rules
                .into_iter()
                .any(|r| r.repositories == "*" && r.allows_action(Action::Pull)),
            Need::Repo { name, action } => rules
                .into_iter()
                .any(|r| r.matches_repo(name) && r.allows_action(*action)),
        }
    }
}

/// The part of the requested scopes `policy` lets `user` (None: anonymous) have.
pub fn grant(requested: Vec<Access>, user: Option<&str>, policy: &Policy) -> Vec<Access> {
    requested
        .into_iter()
        .filter_map(|mut a| {
            match a.kind.as_str() {
                "repository" => {
                    let name = a.name.clone();
                    a.actions.retain(|x| {
                        let actions: Vec<Action> = if x == "*" {
                            vec![Action::Pull, Action::Push, Action::Delete]
                        } else {
                            Action::parse(x).into_iter().collect()
                        };
                        !actions.is_empty()
                            && actions.into_iter().all(|action| {
                                policy.allows(
                                    user,
                                    &Need::Repo {
                                        name: name.clone(),
                                        action,
                                    },
                                )
                            })
                    });
                }
                "registry" if a.name == "catalog" => {
                    if !policy.allows(user, &Need::Catalog) {
                        a.actions.clear();
                    }
                }
                _ => a.actions.clear(),
            }
            (!a.actions.is_empty()).then_some(a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_bcrypt() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n"), "test").unwrap();
        assert!(h.verify("alice", "s3cret"));
        assert!(h.verify("alice", "s3cret"), "cached verification");
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.verify("bob", "s3cret"));
        assert!(Htpasswd::parse("alice:{SHA}abc", "t").is_err());
        assert!(Htpasswd::parse("nocolon", "t").is_err());
    }

    #[test]
    fn basic_header() {
        let h = format!("Basic {}", STANDARD.encode("u:p:x"));
        assert_eq!(parse_basic(&h), Some(("u".into(), "p:x".into())));
        assert_eq!(parse_basic("Bearer x"), None);
    }

    #[test]
    fn tokens_carry_scopes() {
        let issuer = TokenIssuer::new(vec![7; 32], Duration::from_secs(60), "svc".into());
        let scopes = parse_scopes(&["repository:a/b:pull,push repository:c:pull".to_string()]);
        assert_eq!(scopes.len(), 2);
        let token = issuer.issue("alice", scopes);
        let access = issuer.verify(&token).unwrap();
        let need = |name: &str, action| Need::Repo {
            name: name.into(),
            action,
        };
        assert!(access_covers(&access, &need("a/b", Action::Push)));
        assert!(access_covers(&access, &need("c", Action::Pull)));
        assert!(!access_covers(&access, &need("c", Action::Push)));
        assert!(!access_covers(&access, &need("a/b", Action::Delete)));
        // Tampering breaks the signature.
        let mut forged = token.clone();
        forged.insert(3, 'x');
        assert!(issuer.verify(&forged).is_none());
        let other = TokenIssuer::new(vec![8; 32], Duration::from_secs(60), "svc".into());
        assert!(other.verify(&token).is_none());
    }

    #[test]
    fn anonymous_grants_only_pull() {
        let req = parse_scopes(&[
            "repository:a:pull,push".to_string(),
            "registry:catalog:*".to_string(),
        ]);
        let open = Policy {
            rules: vec![],
            anonymous_pull: true,
        };
        let g = grant(req.clone(), None, &open);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].actions, vec!["pull".to_string()]);
        assert!(grant(req.clone(), None, &Policy::default()).is_empty());
        assert_eq!(grant(req, Some("u"), &Policy::default()).len(), 2);
    }

    #[test]
    fn access_rules() {
        let rule = |account: &str, repos: &str, actions: &[&str]| AccessRule {
            account: account.into(),
            repositories: repos.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        let policy = Policy {
            rules: vec![
                rule("alice", "team/*", &["*"]),
                rule("*", "public", &["pull"]),
                rule("anonymous", "public", &["pull"]),
                rule("admin", "*", &["pull"]),
            ],
            anonymous_pull: false,
        };
        let need = |name: &str, action| Need::Repo {
            name: name.into(),
            action,
        };
        assert!(policy.allows(Some("alice"), &need("team/app", Action::Push)));
        assert!(policy.allows(Some("alice"), &need("team/a/b", Action::Delete)));
        assert!(!policy.allows(Some("alice"), &need("teamx/app", Action::Pull)));
        assert!(!policy.allows(Some("alice"), &need("team", Action::Pull)));
        assert!(policy.allows(Some("bob"), &need("public", Action::Pull)));
        assert!(!policy.allows(Some("bob"), &need("public", Action::Push)));
        assert!(policy.allows(None, &need("public", Action::Pull)));
        assert!(!policy.allows(None, &need("team/app", Action::Pull)));
        assert!(policy.allows(Some("admin"), &Need::Catalog));
        assert!(!policy.allows(Some("alice"), &Need::Catalog));
        let g = grant(
            parse_scopes(&[
                "repository:team/app:pull,push,delete repository:public:pull,push".into(),
            ]),
            Some("bob"),
            &policy,
        );
        assert_eq!(
            g,
            vec![Access {
                kind: "repository".into(),
                name: "public".into(),
                actions: vec!["pull".into()]
            }]
        );
    }
}
