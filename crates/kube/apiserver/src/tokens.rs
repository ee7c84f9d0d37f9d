//! Service account tokens as upstream's TokenRequest API issues them: ES256 JWTs signed
//! with a key kept under the root's `kube/pki` (`sa.key`), with audiences, an expiry and
//! the pod they are bound to; the API server accepts them as bearer tokens while they
//! are valid and their pod exists.

use std::path::Path;

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hako_kube_store::Store;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{json, Value};

use crate::status::{quoted, ApiError};

/// The issuer and the API server's own audience, as upstream's defaults.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub struct TokenIssuer {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

impl TokenIssuer {
    /// Load `sa.key` (PKCS#8) from the PKI directory, generating it the first time.
    pub fn load_or_create(dir: &Path) -> Result<TokenIssuer> {
        let path = dir.join("sa.key");
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let der = match std::fs::read(&path) {
            Ok(d) => d,
            Err(_) => {
                let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                    .map_err(|_| anyhow::anyhow!("generating the service account key"))?;
                crate::certs::write_private(&path, doc.as_ref())?;
                doc.as_ref().to_vec()
            }
        };
        let key = EcdsaKeyPair::from_pkcs8(alg, &der, &rng)
            .map_err(|_| anyhow::anyhow!("{} is not a P-256 PKCS#8 key", path.display()))
            .with_context(|| format!("loading {}", path.display()))?;
        let public = key.public_key().as_ref().to_vec();
        use sha2::Digest as _;
        let kid = B64.encode(&sha2::Sha256::digest(&public)[..16]);
        Ok(TokenIssuer {
            key,
            public,
            kid,
            rng,
        })
    }

    fn sign(&self, claims: &Value) -> Result<String> {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing a token"))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of a token this server signed, when the signature holds and it has
    /// not expired.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .ok()?;
        let claims: Value = serde_json::from_slice(&B64.decode(c).ok()?).ok()?;
        let now = now();
        (claims["exp"].as_i64()? > now && claims["nbf"].as_i64().unwrap_or(0) <= now + 60)
            .then_some(claims)
    }

    /// The service account (namespace, name) `token` authenticates as to this API
    /// server: signed here, unexpired, for its audience, and its pod (if bound)
    /// still there with the same uid.
    pub fn service_account(&self, store: &dyn Store, token: &str) -> Option<(String, String)> {
        let claims = self.verify(token)?;
        let aud_ok = claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == ISSUER));
        if !aud_ok {
            return None;
        }
        let k = &claims["kubernetes.io"];
        let ns = k["namespace"].as_str()?.to_string();
        let name = k["serviceaccount"]["name"].as_str()?.to_string();
        if let Some(pod) = k["pod"]["name"].as_str() {
            let bound = store
                .get(&format!("/core/pods/{ns}/{pod}"))
                .is_ok_and(|p| p.value["metadata"]["uid"] == k["pod"]["uid"]);
            if !bound {
                return None;
            }
        }
        Some((ns, name))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// POST serviceaccounts/NAME/token: a TokenRequest answered with a signed token.
/// `sa` is the stored ServiceAccount, `pod` the stored pod of a Pod boundObjectRef.
pub fn token_request(
    issuer: &TokenIssuer,
    store: &dyn Store,
    ns: &str,
    sa: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    let name = sa["metadata"]["name"].as_str().unwrap_or("");
    let mut req: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })?;
    let spec = &req["spec"];
    let exp = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let mut causes = Vec::new();
    if exp < 600 {
        causes.push((
            "spec.expirationSeconds".to_string(),
            "FieldValueInvalid".to_string(),
            format!("Invalid value: {exp}: may not specify a duration less than 10 minutes"),
        ));
    }
    if exp > 1 << 32 {
        causes.push((
            "spec.expirationSeconds".to_string(),
            "FieldValueTooLong".to_string(),
            format!("Invalid value: {exp}: may not specify a duration larger than 2^32 seconds"),
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            causes,
        ));
    }
    let mut audiences: Vec<Value> = spec["audiences"].as_array().cloned().unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(json!(ISSUER));
    }
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]},
    });
    let bound = &spec["boundObjectRef"];
    if let Some(kind) = bound["kind"].as_str() {
        let bname = bound["name"].as_str().unwrap_or("");
        if kind != "Pod" && kind != "Secret" {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {} to object of kind {}",
                quoted(name),
                quoted(kind)
            )));
        }
        let plural = if kind == "Pod" { "pods" } else { "secrets" };
        let obj = store
            .get(&format!("/core/{plural}/{ns}/{bname}"))
            .map_err(|_| ApiError::not_found("", plural, bname))?;
        let uid = obj.value["metadata"]["uid"].clone();
        if bound["uid"]
            .as_str()
            .is_some_and(|u| Some(u) != uid.as_str())
        {
            return Err(ApiError::conflict_msg(
                "",
                plural,
                bname,
                format!(
                    "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    bound["uid"].as_str().unwrap_or("")
                ),
            ));
        }
        k8s[kind.to_lowercase()] = json!({"name": bname, "uid": uid});
    }
    let iat = now();
    let claims = json!({
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "aud": audiences,
        "iat": iat,
        "nbf": iat,
        "exp": iat + exp,
        "kubernetes.io": k8s,
    });
    let token = issuer
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = k8s_openapi::chrono::DateTime::from_timestamp(iat + exp, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["spec"]["audiences"] = json!(claims["aud"]);
    req["spec"]["expirationSeconds"] = json!(exp);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(req)
}
