//! Image references, parsed and normalised like docker does:
//! `busybox` → `docker.io/library/busybox:latest`, `host:5000/a/b:tag`,
//! `name@sha256:…`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The registry assumed when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace of official images on the default registry.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag assumed when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// One path component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+, always followed by an alphanumeric.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        // IPv6 literals are bracketed; a colon inside brackets is not a port.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host.len() > 2;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Reference {
    /// Parse and normalise a reference; a missing tag and digest become `:latest`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut r = Self::parse_partial(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parse and normalise without defaulting the tag (for filters such as
    /// `reference=busybox`, which match every tag).
    pub fn parse_partial(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        if s.len() > 4096 {
            return Err(invalid(s, "longer than 4096 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((name, d)) => (
                name,
                Some(d.parse::<Digest>().map_err(|e| invalid(s, e.to_string()))?),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that is not part of a host:port (i.e. after the last '/').
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, format!("invalid tag {t:?}")));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if !valid_domain(&domain) {
            return Err(invalid(s, format!("invalid registry host {domain:?}")));
        }
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if path.is_empty() {
            return Err(invalid(s, "missing repository name"));
        }
        for component in path.split('/') {
            if !valid_component(component) {
                let reason = if component.bytes().any(|b| b.is_ascii_uppercase()) {
                    "repository name must be lowercase".to_string()
                } else {
                    format!("invalid repository name component {component:?}")
                };
                return Err(invalid(s, reason));
            }
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > 255 {
            return Err(invalid(s, "repository name longer than 255 characters"));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// A reference `repository:tag` built from parts already validated elsewhere.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !valid_tag(tag) {
            return Err(invalid(tag, "invalid tag"));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// Registry host (and port).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path within the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form docker prints: `busybox:latest`, `user/app:1`, `host:5000/x:y`.
    pub fn familiar(&self) -> String {
        let mut name = if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        };
        if let Some(t) = &self.tag {
            name = format!("{name}:{t}");
        }
        if let Some(d) = &self.digest {
            name = format!("{name}@{d}");
        }
        name
    }

    /// The repository part in familiar form (`busybox`), as `docker images` shows it.
    pub fn familiar_repository(&self) -> String {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
        .familiar()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("quay.io/a/b/c:v1"), "quay.io/a/b/c:v1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
    }

    #[test]
    fn host_port_is_not_a_tag() {
        let r = Reference::parse("localhost:5000/app").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "app");
        assert_eq!(r.tag(), Some("latest"));
        let r = Reference::parse("127.0.0.1:5000/ns/app:v2").unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.familiar(), "127.0.0.1:5000/ns/app:v2");
    }

    #[test]
    fn digests() {
        let hex = "a".repeat(64);
        let r = Reference::parse(&format!("busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), hex);
        assert_eq!(r.familiar(), format!("busybox@sha256:{hex}"));
        let hex512 = "b".repeat(128);
        let r = Reference::parse(&format!("h.io/x:t@sha512:{hex512}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.to_string(), format!("h.io/x:t@sha512:{hex512}"));
        assert!(Reference::parse("busybox@sha256:abc").is_err());
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::parse("docker.io/u/a:1").unwrap().familiar(),
            "u/a:1"
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar_repository(),
            "busybox"
        );
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a:",
            "-a",
            "a/-b",
            "a:/b",
            "a@sha256",
            "a..b",
            "a:tag with space",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn partial_keeps_tag_unset() {
        let r = Reference::parse_partial("busybox").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.repository(), "docker.io/library/busybox");
    }
}
