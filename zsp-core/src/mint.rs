//! Minting ephemeral tokens: the broker's side, and the basis of [`crate::testing`].
//!
//! Every token gets a fresh random `jti` (128 bits), `iat`, `exp`, `aud` and `scope`, the
//! header `typ` `at+jwt` (RFC 9068) and the signing key's `kid`. A lifetime above the minter's
//! cap is refused, never silently shortened.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::claims::{Actor, Audience, Confirmation};
use crate::clock::{Clock, SharedClock, UnixTime};

/// Why a token or key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The requested lifetime exceeds the cap.
    #[error("requested lifetime {requested} s exceeds the cap of {cap} s")]
    LifetimeAboveCap {
        /// Requested seconds.
        requested: u64,
        /// Cap in seconds.
        cap: u64,
    },
    /// A zero lifetime.
    #[error("lifetime must be at least one second")]
    ZeroLifetime,
    /// Only ES256 and EdDSA signing keys are supported.
    #[error("unsupported signing algorithm")]
    UnsupportedAlgorithm,
    /// Key material could not be parsed or generated.
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The system RNG failed.
    #[error(transparent)]
    Rng(#[from] crate::crypto::RngUnavailable),
}

/// A private signing key with its `kid` and public JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: Arc<str>,
    alg: Algorithm,
    encoding: Arc<EncodingKey>,
    public_jwk: Arc<serde_json::Value>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a P-256 key for ES256.
    pub fn generate_es256(kid: &str) -> Result<Self, MintError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| MintError::InvalidKey(e.to_string()))?;
        let der = kp
            .to_pkcs8v1()
            .map_err(|e| MintError::InvalidKey(e.to_string()))?;
        Self::from_der(kid, Algorithm::ES256, der.as_ref())
    }

    /// Generates an Ed25519 key for EdDSA.
    pub fn generate_ed25519(kid: &str) -> Result<Self, MintError> {
        let kp = aws_lc_rs::signature::Ed25519KeyPair::generate()
            .map_err(|e| MintError::InvalidKey(e.to_string()))?;
        let der = kp
            .to_pkcs8v1()
            .map_err(|e| MintError::InvalidKey(e.to_string()))?;
        Self::from_der(kid, Algorithm::EdDSA, der.as_ref())
    }

    /// A key from PKCS#8 DER.
    pub fn from_der(kid: &str, alg: Algorithm, pkcs8: &[u8]) -> Result<Self, MintError> {
        crate::crypto::ensure_provider();
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(pkcs8),
            Algorithm::EdDSA => EncodingKey::from_ed_der(pkcs8),
            _ => return Err(MintError::UnsupportedAlgorithm),
        };
        Self::finish(kid, alg, encoding)
    }

    /// A key from a PKCS#8 PEM file's contents.
    pub fn from_pem(kid: &str, alg: Algorithm, pem: &[u8]) -> Result<Self, MintError> {
        crate::crypto::ensure_provider();
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => return Err(MintError::UnsupportedAlgorithm),
        }
        .map_err(|e| MintError::InvalidKey(e.to_string()))?;
        Self::finish(kid, alg, encoding)
    }

    /// A key from a private JWK (EC P-256 with `d`, or OKP Ed25519 with `d`). The kid is the
    /// JWK's `kid`, or its RFC 7638 thumbprint.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, MintError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
        let field = |name: &str| -> Result<Vec<u8>, MintError> {
            let v = jwk
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| MintError::InvalidKey(format!("JWK lacks {name}")))?;
            crate::b64::decode(v).map_err(|_| MintError::InvalidKey(format!("JWK {name} is not base64url")))
        };
        let kid = match jwk.get("kid").and_then(|k| k.as_str()) {
            Some(k) => k.to_owned(),
            None => crate::dpop::jwk_thumbprint(jwk)
                .map_err(|e| MintError::InvalidKey(e.to_string()))?
                .into_string(),
        };
        let kty = jwk.get("kty").and_then(|v| v.as_str());
        let crv = jwk.get("crv").and_then(|v| v.as_str());
        match (kty, crv) {
            (Some("EC"), Some("P-256")) => {
                let mut point = vec![4u8];
                point.extend(field("x")?);
                point.extend(field("y")?);
                let kp = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &field("d")?,
                    &point,
                )
                .map_err(|e| MintError::InvalidKey(e.to_string()))?;
                let der = kp
                    .to_pkcs8v1()
                    .map_err(|e| MintError::InvalidKey(e.to_string()))?;
                Self::from_der(&kid, Algorithm::ES256, der.as_ref())
            }
            (Some("OKP"), Some("Ed25519")) => {
                let kp = Ed25519KeyPair::from_seed_and_public_key(&field("d")?, &field("x")?)
                    .map_err(|e| MintError::InvalidKey(e.to_string()))?;
                let der = kp
                    .to_pkcs8v1()
                    .map_err(|e| MintError::InvalidKey(e.to_string()))?;
                Self::from_der(&kid, Algorithm::EdDSA, der.as_ref())
            }
            _ => Err(MintError::UnsupportedAlgorithm),
        }
    }

    /// A key from a file's contents: a PKCS#8 PEM (ES256 or Ed25519) or a private JWK. The kid
    /// of a PEM key is its public JWK's RFC 7638 thumbprint.
    pub fn from_pem_or_jwk(bytes: &[u8]) -> Result<Self, MintError> {
        if let Ok(jwk) = serde_json::from_slice::<serde_json::Value>(bytes) {
            return Self::from_jwk(&jwk);
        }
        let probe = Self::from_pem("probe", Algorithm::ES256, bytes)
            .or_else(|_| Self::from_pem("probe", Algorithm::EdDSA, bytes))?;
        let kid = crate::dpop::jwk_thumbprint(probe.public_jwk())
            .map_err(|e| MintError::InvalidKey(e.to_string()))?
            .into_string();
        Self::from_pem(&kid, probe.alg, bytes)
    }

    fn finish(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Result<Self, MintError> {
        // Derive the public JWK; this also proves the private key parses for `alg`.
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg)
            .map_err(|e| MintError::InvalidKey(e.to_string()))?;
        let mut value = serde_json::to_value(&jwk).map_err(|e| MintError::InvalidKey(e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("kid".into(), kid.into());
            obj.insert("use".into(), "sig".into());
            obj.insert("alg".into(), alg_name(alg).into());
        }
        Ok(Self {
            kid: Arc::from(kid),
            alg,
            encoding: Arc::new(encoding),
            public_jwk: Arc::new(value),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
    /// The public half as a JWK (with `kid`, `use` and `alg`).
    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.public_jwk
    }
    /// The public half as a [`crate::VerifyingKey`].
    pub fn verifying_key(&self) -> Result<crate::VerifyingKey, crate::KeyError> {
        let jwk: crate::keys::Jwk = serde_json::from_value((*self.public_jwk).clone())
            .map_err(|_| crate::KeyError::Unusable("public JWK"))?;
        crate::VerifyingKey::from_jwk(&jwk, None)
    }
    /// jsonwebtoken's key, for signing other JWTs (client assertions, DPoP proofs).
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
    /// Signs arbitrary claims with this key and the given header `typ`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, MintError> {
        crate::crypto::ensure_provider();
        let mut header = Header::new(self.alg);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| MintError::Signing(e.to_string()))
    }
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// What to put in a token.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    /// Subject.
    pub subject: Option<String>,
    /// Audiences (one is usual; `aud` is a string then).
    pub audiences: Vec<String>,
    /// Scopes, space-joined into `scope`.
    pub scopes: Vec<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// Client id.
    pub client_id: Option<String>,
    /// Bind to this JWK thumbprint (`cnf.jkt`).
    pub jkt: Option<String>,
    /// Delegation chain.
    pub act: Option<Actor>,
    /// `nbf`, if any.
    pub not_before: Option<UnixTime>,
    /// Mark the token single-use for every verifier (claim `single_use`).
    pub single_use: bool,
    /// Additional claims; they cannot override registered ones.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl MintRequest {
    /// A request for `audience` with `scopes` and lifetime `ttl`.
    pub fn new(audience: impl Into<String>, scopes: &[&str], ttl: Duration) -> Self {
        Self {
            audiences: vec![audience.into()],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ttl,
            ..Self::default()
        }
    }
}

/// A freshly minted token.
#[derive(Clone)]
pub struct Minted {
    /// The compact JWS. A credential: never log it.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`.
    pub issued_at: UnixTime,
    /// Its `exp`.
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("jti", &self.jti)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Registered<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    aud: Audience,
    exp: UnixTime,
    iat: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<UnixTime>,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<&'a Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    single_use: Option<bool>,
}

/// Signs ephemeral access tokens.
///
/// ```
/// use std::time::Duration;
/// use zsp_core::{MintRequest, Minter, SigningKey};
/// let minter = Minter::new("https://broker", SigningKey::generate_ed25519("k1").unwrap(), Duration::from_secs(60));
/// let ok = minter.mint(&MintRequest::new("orders-api", &["orders:read"], Duration::from_secs(30))).unwrap();
/// assert_eq!(ok.expires_at - ok.issued_at, 30);
/// let too_long = MintRequest::new("orders-api", &[], Duration::from_secs(3600));
/// assert!(minter.mint(&too_long).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Minter {
    issuer: Arc<str>,
    key: SigningKey,
    max_ttl: Duration,
    clock: SharedClock,
}

impl Minter {
    /// A minter for `issuer` signing with `key`, refusing lifetimes above `max_ttl`.
    pub fn new(issuer: impl Into<String>, key: SigningKey, max_ttl: Duration) -> Self {
        Self {
            issuer: Arc::from(issuer.into()),
            key,
            max_ttl,
            clock: crate::clock::system(),
        }
    }
    /// Uses `clock` for `iat`.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
    /// The lifetime cap.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }
    /// Current time per the minter's clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Mints a token.
    pub fn mint(&self, req: &MintRequest) -> Result<Minted, MintError> {
        let ttl = req.ttl.as_secs();
        if ttl == 0 {
            return Err(MintError::ZeroLifetime);
        }
        if req.ttl > self.max_ttl {
            return Err(MintError::LifetimeAboveCap {
                requested: ttl,
                cap: self.max_ttl.as_secs(),
            });
        }
        self.mint_unchecked(req, self.clock.now(), ttl)
    }

    /// Mints with explicit `iat` and lifetime and no cap: for tests that need tokens a real
    /// issuer would never produce (standing, expired, future). Not for production use.
    pub fn mint_unchecked(&self, req: &MintRequest, iat: UnixTime, ttl: u64) -> Result<Minted, MintError> {
        let jti = crate::crypto::random_id::<16>()?;
        let exp = iat.saturating_add(ttl);
        let aud = match req.audiences.as_slice() {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        };
        let reg = Registered {
            iss: &self.issuer,
            sub: req.subject.as_deref(),
            aud,
            exp,
            iat,
            nbf: req.not_before,
            jti: &jti,
            client_id: req.client_id.as_deref(),
            scope: (!req.scopes.is_empty()).then(|| req.scopes.join(" ")),
            cnf: req.jkt.as_ref().map(|j| Confirmation { jkt: Some(j.clone()) }),
            act: req.act.as_ref(),
            single_use: req.single_use.then_some(true),
        };
        let mut claims = serde_json::to_value(&reg).map_err(|e| MintError::Signing(e.to_string()))?;
        if let Some(obj) = claims.as_object_mut() {
            for (k, v) in &req.extra {
                obj.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let token = self.key.sign("at+jwt", &claims)?;
        Ok(Minted {
            token,
            jti,
            issued_at: iat,
            expires_at: exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_jwk_round_trips_for_both_algorithms() {
        use aws_lc_rs::encoding::AsBigEndian;
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let kp_der = match alg {
                Algorithm::ES256 => {
                    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
                    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
                    kp.to_pkcs8v1().unwrap().as_ref().to_vec()
                }
                _ => {
                    let kp = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
                    kp.to_pkcs8v1().unwrap().as_ref().to_vec()
                }
            };
            let key = SigningKey::from_der("k", alg, &kp_der).unwrap();
            // Rebuild a private JWK from the PKCS#8 via aws-lc and check the public halves match.
            let mut jwk = key.public_jwk().clone();
            let d = match alg {
                Algorithm::ES256 => {
                    let kp = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &kp_der,
                    )
                    .unwrap();
                    let be = kp.private_key().as_be_bytes().unwrap();
                    crate::b64::encode(be.as_ref())
                }
                _ => {
                    let kp = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&kp_der).unwrap();
                    crate::b64::encode(kp.seed().unwrap().as_be_bytes().unwrap().as_ref())
                }
            };
            jwk["d"] = d.into();
            let back = SigningKey::from_pem_or_jwk(jwk.to_string().as_bytes()).unwrap();
            assert_eq!(back.public_jwk()["x"], key.public_jwk()["x"]);
            assert_eq!(back.kid(), "k");
        }
        assert!(SigningKey::from_pem_or_jwk(b"garbage").is_err());
    }
}
