//! The broker's policy: which workload may have which audience and scopes, for how long.
//!
//! Built in code with [`BrokerPolicy::builder`] or read from TOML with
//! [`BrokerPolicy::from_toml`]:
//!
//! ```toml
//! issuer = "https://broker.internal"      # the exact `iss` of every token
//! max_ttl_secs = 60                       # global cap; no client gets more
//! token_rate_per_sec = 50                 # per-client /token rate limit (burst = 2x)
//! signing_algorithm = "ES256"             # or "EdDSA"
//! signing_key_pem = "/etc/zsp/broker.pem" # PKCS#8; absent: a fresh key per start
//!
//! [[clients]]
//! id = "frontend"
//! secret_sha256 = "…"                     # base64url SHA-256 of a high-entropy secret
//! audiences = ["orders-api"]
//! scopes = ["orders:read", "orders:write"]
//! max_ttl_secs = 60
//! dpop_required = false
//! single_use = false
//!
//! [[clients]]
//! id = "orders-api"
//! jwks = '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"…"}]}'   # private_key_jwt
//! audiences = ["billing-api"]
//! scopes = ["billing:charge"]
//! exchange_audience = "orders-api"        # may exchange tokens issued for it (RFC 8693)
//! ```
//!
//! Client secrets are stored only as SHA-256 hashes. They must be machine-generated with at
//! least 256 bits of entropy (see [`hash_secret`]); a slow password hash buys nothing for such
//! secrets and would make `/token` a CPU sink under attack.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use zsp_core::KeySet;
use zsp_core::policy::validate_scope;

/// Why a broker policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerConfigError {
    /// The TOML could not be parsed.
    #[error("policy file: {0}")]
    Parse(String),
    /// No issuer.
    #[error("issuer is required")]
    MissingIssuer,
    /// A client id is empty or duplicated.
    #[error("client id {0:?} is empty or duplicated")]
    BadClientId(String),
    /// A client has no way to authenticate, or two.
    #[error("client {0:?} needs exactly one of secret_sha256 or jwks")]
    ClientAuth(String),
    /// A client's JWKS is unusable.
    #[error("client {0:?}: {1}")]
    ClientKeys(String, String),
    /// A client's TTL exceeds the global cap, or a TTL is zero.
    #[error("client {0:?}: max TTL must be between 1 s and the global cap")]
    Ttl(String),
    /// A scope is malformed.
    #[error("client {0:?}: invalid scope {1:?}")]
    Scope(String, String),
    /// A secret hash is not 32 bytes of base64url.
    #[error("client {0:?}: secret_sha256 must be base64url of 32 bytes")]
    SecretHash(String),
    /// The global cap is zero or above one hour.
    #[error("max_ttl must be between 1 s and 3600 s")]
    GlobalTtl,
    /// Only ES256 and EdDSA signing keys are supported.
    #[error("signing_algorithm must be ES256 or EdDSA")]
    SigningAlgorithm,
}

/// How a client proves who it is at the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` / `client_secret_post`, checked against a SHA-256 hash.
    SecretSha256([u8; 32]),
    /// `private_key_jwt` (RFC 7523) with these public keys.
    PrivateKeyJwt(KeySet),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::SecretSha256(_) => f.write_str("SecretSha256(..)"),
            ClientAuth::PrivateKeyJwt(k) => write!(f, "PrivateKeyJwt({} keys)", k.len()),
        }
    }
}

/// What one client may obtain.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    /// Client id.
    pub id: String,
    /// Authentication.
    pub auth: ClientAuth,
    /// Audiences (resource indicators) it may request.
    pub audiences: Vec<String>,
    /// Scopes it may request.
    pub scopes: Vec<String>,
    /// Its lifetime cap (≤ the global cap).
    pub max_ttl: Duration,
    /// Its tokens must be DPoP-bound.
    pub dpop_required: bool,
    /// Its tokens are single-use at every verifier.
    pub single_use: bool,
    /// It may exchange (RFC 8693) tokens whose `aud` names this.
    pub exchange_audience: Option<String>,
}

impl ClientPolicy {
    /// A client authenticated by a secret whose SHA-256 is `secret_sha256`.
    pub fn with_secret_hash(id: &str, secret_sha256: [u8; 32]) -> Self {
        Self::new(id, ClientAuth::SecretSha256(secret_sha256))
    }
    /// A client authenticated by a secret (hashed here; the secret itself is not kept).
    pub fn with_secret(id: &str, secret: &str) -> Self {
        Self::with_secret_hash(id, zsp_core::crypto::sha256(secret.as_bytes()))
    }
    /// A client authenticated by `private_key_jwt` with `keys`.
    pub fn with_keys(id: &str, keys: KeySet) -> Self {
        Self::new(id, ClientAuth::PrivateKeyJwt(keys))
    }
    fn new(id: &str, auth: ClientAuth) -> Self {
        Self {
            id: id.to_owned(),
            auth,
            audiences: Vec::new(),
            scopes: Vec::new(),
            max_ttl: Duration::from_secs(60),
            dpop_required: false,
            single_use: false,
            exchange_audience: None,
        }
    }
    /// Adds an audience it may request.
    pub fn audience(mut self, aud: &str) -> Self {
        self.audiences.push(aud.to_owned());
        self
    }
    /// Sets the scopes it may request.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// Sets its lifetime cap.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
    /// Requires DPoP-bound tokens.
    pub fn dpop_required(mut self, on: bool) -> Self {
        self.dpop_required = on;
        self
    }
    /// Makes its tokens single-use.
    pub fn single_use(mut self, on: bool) -> Self {
        self.single_use = on;
        self
    }
    /// Lets it exchange tokens issued for `aud`.
    pub fn exchange_audience(mut self, aud: &str) -> Self {
        self.exchange_audience = Some(aud.to_owned());
        self
    }
}

/// The validated broker policy.
#[derive(Debug, Clone)]
pub struct BrokerPolicy {
    pub(crate) issuer: String,
    pub(crate) max_ttl: Duration,
    pub(crate) clients: HashMap<String, ClientPolicy>,
    pub(crate) token_rate_per_sec: u32,
    pub(crate) signing_algorithm: zsp_core::Algorithm,
    pub(crate) signing_key_pem: Option<std::path::PathBuf>,
}

impl BrokerPolicy {
    /// Starts a builder for `issuer` (the exact `iss`, and the base URL of the endpoints).
    pub fn builder(issuer: &str) -> BrokerPolicyBuilder {
        BrokerPolicyBuilder {
            issuer: issuer.to_owned(),
            max_ttl: Duration::from_secs(60),
            clients: Vec::new(),
            token_rate_per_sec: 50,
            signing_algorithm: zsp_core::Algorithm::ES256,
            signing_key_pem: None,
        }
    }
    /// Reads a TOML policy file's contents.
    pub fn from_toml(text: &str) -> Result<Self, BrokerConfigError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| BrokerConfigError::Parse(e.to_string()))?;
        file.build(None)
    }
    /// Reads a TOML policy file, overriding its issuer (e.g. with the listen address).
    pub fn from_toml_with_issuer(text: &str, issuer: &str) -> Result<Self, BrokerConfigError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| BrokerConfigError::Parse(e.to_string()))?;
        file.build(Some(issuer))
    }
    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The global lifetime cap.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }
    /// A client's policy.
    pub fn client(&self, id: &str) -> Option<&ClientPolicy> {
        self.clients.get(id)
    }
}

/// Builds a [`BrokerPolicy`].
#[derive(Debug, Clone)]
pub struct BrokerPolicyBuilder {
    issuer: String,
    max_ttl: Duration,
    clients: Vec<ClientPolicy>,
    token_rate_per_sec: u32,
    signing_algorithm: zsp_core::Algorithm,
    signing_key_pem: Option<std::path::PathBuf>,
}

impl BrokerPolicyBuilder {
    /// The algorithm of the signing key generated at start or loaded (ES256 or EdDSA).
    pub fn signing_algorithm(mut self, alg: zsp_core::Algorithm) -> Self {
        self.signing_algorithm = alg;
        self
    }
    /// A PKCS#8 PEM file holding the signing key (default: a fresh key per start).
    pub fn signing_key_pem(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.signing_key_pem = Some(path.into());
        self
    }
    /// The global lifetime cap (default 60 s, at most 3600 s).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
    /// Adds a client.
    pub fn client(mut self, c: ClientPolicy) -> Self {
        self.clients.push(c);
        self
    }
    /// Per-client `/token` requests per second (burst twice that; default 50).
    pub fn token_rate_per_sec(mut self, n: u32) -> Self {
        self.token_rate_per_sec = n.max(1);
        self
    }
    /// Validates and builds.
    pub fn build(self) -> Result<BrokerPolicy, BrokerConfigError> {
        if self.issuer.is_empty() {
            return Err(BrokerConfigError::MissingIssuer);
        }
        if self.max_ttl.as_secs() == 0 || self.max_ttl > Duration::from_secs(3600) {
            return Err(BrokerConfigError::GlobalTtl);
        }
        if !matches!(
            self.signing_algorithm,
            zsp_core::Algorithm::ES256 | zsp_core::Algorithm::EdDSA
        ) {
            return Err(BrokerConfigError::SigningAlgorithm);
        }
        let mut clients = HashMap::new();
        for c in self.clients {
            if c.id.is_empty() || clients.contains_key(&c.id) {
                return Err(BrokerConfigError::BadClientId(c.id));
            }
            if c.max_ttl.as_secs() == 0 || c.max_ttl > self.max_ttl {
                return Err(BrokerConfigError::Ttl(c.id));
            }
            for s in &c.scopes {
                validate_scope(s).map_err(|_| BrokerConfigError::Scope(c.id.clone(), s.clone()))?;
            }
            clients.insert(c.id.clone(), c);
        }
        Ok(BrokerPolicy {
            issuer: self.issuer.trim_end_matches('/').to_owned(),
            max_ttl: self.max_ttl,
            clients,
            token_rate_per_sec: self.token_rate_per_sec,
            signing_algorithm: self.signing_algorithm,
            signing_key_pem: self.signing_key_pem,
        })
    }
}

/// The base64url SHA-256 of a client secret, as `secret_sha256` in a policy file expects.
///
/// ```
/// let h = zsp_axum::broker::hash_secret("s3cr3t-with-256-bits-of-entropy-please");
/// assert_eq!(h.len(), 43);
/// ```
pub fn hash_secret(secret: &str) -> String {
    zsp_core::b64::encode(zsp_core::crypto::sha256(secret.as_bytes()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    issuer: Option<String>,
    #[serde(default)]
    max_ttl_secs: Option<u64>,
    #[serde(default)]
    token_rate_per_sec: Option<u32>,
    #[serde(default)]
    signing_algorithm: Option<String>,
    #[serde(default)]
    signing_key_pem: Option<std::path::PathBuf>,
    #[serde(default)]
    clients: Vec<ClientFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    id: String,
    #[serde(default)]
    secret_sha256: Option<String>,
    #[serde(default)]
    jwks: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    max_ttl_secs: Option<u64>,
    #[serde(default)]
    dpop_required: bool,
    #[serde(default)]
    single_use: bool,
    #[serde(default)]
    exchange_audience: Option<String>,
}

impl PolicyFile {
    fn build(self, issuer: Option<&str>) -> Result<BrokerPolicy, BrokerConfigError> {
        let issuer = issuer
            .map(str::to_owned)
            .or(self.issuer)
            .ok_or(BrokerConfigError::MissingIssuer)?;
        let mut b = BrokerPolicy::builder(&issuer);
        if let Some(s) = self.max_ttl_secs {
            b = b.max_ttl(Duration::from_secs(s));
        }
        if let Some(n) = self.token_rate_per_sec {
            b = b.token_rate_per_sec(n);
        }
        if let Some(a) = &self.signing_algorithm {
            b = b.signing_algorithm(zsp_core::keys::parse_alg(a).ok_or(BrokerConfigError::SigningAlgorithm)?);
        }
        if let Some(p) = self.signing_key_pem {
            b = b.signing_key_pem(p);
        }
        for c in self.clients {
            let auth = match (c.secret_sha256, c.jwks) {
                (Some(h), None) => {
                    let bytes = zsp_core::b64::decode(h.trim())
                        .map_err(|_| BrokerConfigError::SecretHash(c.id.clone()))?;
                    let arr: [u8; 32] = bytes
                        .try_into()
                        .map_err(|_| BrokerConfigError::SecretHash(c.id.clone()))?;
                    ClientAuth::SecretSha256(arr)
                }
                (None, Some(jwks)) => ClientAuth::PrivateKeyJwt(
                    KeySet::from_jwks(jwks.as_bytes(), None)
                        .map_err(|e| BrokerConfigError::ClientKeys(c.id.clone(), e.to_string()))?,
                ),
                _ => return Err(BrokerConfigError::ClientAuth(c.id)),
            };
            let mut p = ClientPolicy::new(&c.id, auth);
            p.audiences = c.audiences;
            p.scopes = c.scopes;
            p.max_ttl = Duration::from_secs(c.max_ttl_secs.unwrap_or(60));
            p.dpop_required = c.dpop_required;
            p.single_use = c.single_use;
            p.exchange_audience = c.exchange_audience;
            b = b.client(p);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_policy_parses_and_validates() {
        let h = hash_secret("x".repeat(40).as_str());
        let p = BrokerPolicy::from_toml(&format!(
            r#"issuer = "https://b"
max_ttl_secs = 60
[[clients]]
id = "a"
secret_sha256 = "{h}"
audiences = ["api"]
scopes = ["r", "w"]
max_ttl_secs = 30
"#
        ))
        .unwrap();
        assert_eq!(p.client("a").unwrap().max_ttl, Duration::from_secs(30));
        let over = BrokerPolicy::from_toml(&format!(
            "issuer = \"https://b\"\n[[clients]]\nid = \"a\"\nsecret_sha256 = \"{h}\"\nmax_ttl_secs = 61\n"
        ));
        assert_eq!(over.unwrap_err(), BrokerConfigError::Ttl("a".into()));
        let none = BrokerPolicy::from_toml("issuer = \"https://b\"\n[[clients]]\nid = \"a\"\n");
        assert_eq!(none.unwrap_err(), BrokerConfigError::ClientAuth("a".into()));
        assert!(matches!(
            BrokerPolicy::from_toml("issuer = ["),
            Err(BrokerConfigError::Parse(_))
        ));
    }
}
