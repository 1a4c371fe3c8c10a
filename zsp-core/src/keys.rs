//! Trusted verification keys, each pinned to exactly one algorithm.
//!
//! Invariants (RFC 8725 §3.1, §3.2):
//! * the algorithm comes from the trusted key, never from the token; a token whose header
//!   `alg` differs from its key's is denied;
//! * HMAC keys exist only through [`VerifyingKey::hmac`], an explicitly configured secret of at
//!   least 32 bytes; a JWKS never yields a symmetric key, and public-key bytes are never a secret;
//! * keys are parsed once into aws-lc-rs form when the set is built, so the hot path only
//!   verifies;
//! * `jku`, `x5u`, `x5c` and `jwk` token headers are never consulted: keys come from here only.

use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Maximum size of a JWKS document accepted by [`KeySet::from_jwks`] (DESIGN invariant 5).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why a key or key set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The JWKS document exceeds [`MAX_JWKS_BYTES`].
    #[error("JWKS document larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with a `keys` array.
    #[error("JWKS document is not valid: {0}")]
    InvalidDocument(String),
    /// The document held no key zsp can use for verification.
    #[error("JWKS document has no usable verification key")]
    NoUsableKeys,
    /// A single key is unusable; the reason says why.
    #[error("unusable key: {0}")]
    Unusable(&'static str),
    /// An HMAC secret shorter than 32 bytes.
    #[error("HMAC secret shorter than 32 bytes")]
    WeakSecret,
}

enum Material {
    Public(ParsedPublicKey),
    /// A P-256 key: aws-lc-rs until the key has proved itself reused, then its own table.
    #[cfg(feature = "p256-tables")]
    Es256(ParsedPublicKey, crate::p256_comb::LazyTable),
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

/// One trusted key with the single algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    material: Arc<Material>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes; HMAC secrets must not reach logs.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A JWK as found in a JWKS document; only the members zsp reads.
#[derive(Debug, Default, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`, `OKP`, `RSA` (and `oct`, which is always refused).
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is meant for.
    #[serde(default)]
    pub alg: Option<String>,
    /// Intended use; only `sig` (or absent) is accepted.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// Permitted operations; if present it must include `verify`.
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// Curve for EC/OKP keys.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC/OKP public coordinate.
    #[serde(default)]
    pub x: Option<String>,
    /// EC public coordinate.
    #[serde(default)]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// Private part; its presence makes the key unusable for a verifier.
    #[serde(default)]
    pub d: Option<serde::de::IgnoredAny>,
    /// Symmetric key bytes; never accepted from a JWKS.
    #[serde(default)]
    pub k: Option<serde::de::IgnoredAny>,
}

fn b64(field: &Option<String>, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let s = field.as_deref().ok_or(KeyError::Unusable(what))?;
    crate::b64::decode(s).map_err(|_| KeyError::Unusable(what))
}

impl VerifyingKey {
    /// Builds a key from a JWK, pinned to the JWK's `alg`, or when absent to the algorithm its
    /// curve implies, or for RSA to `rsa_default` (the policy's choice).
    pub fn from_jwk(jwk: &Jwk, rsa_default: Option<Algorithm>) -> Result<Self, KeyError> {
        Self::from_jwk_with(jwk, rsa_default, true)
    }

    /// [`VerifyingKey::from_jwk`] for a key that arrives with the request it verifies (a DPoP
    /// proof's): never given a precomputed table, which would cost a client that sends bursts
    /// of a few dozen proofs between other clients' a table build per burst.
    pub(crate) fn from_request_jwk(jwk: &Jwk, rsa_default: Option<Algorithm>) -> Result<Self, KeyError> {
        Self::from_jwk_with(jwk, rsa_default, false)
    }

    #[cfg_attr(not(feature = "p256-tables"), allow(unused_variables))]
    fn from_jwk_with(jwk: &Jwk, rsa_default: Option<Algorithm>, tables: bool) -> Result<Self, KeyError> {
        if jwk.d.is_some() || jwk.k.is_some() {
            return Err(KeyError::Unusable("private or symmetric key material in a JWKS"));
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyError::Unusable("use is not sig"));
        }
        if let Some(ops) = &jwk.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err(KeyError::Unusable("key_ops lacks verify"));
        }
        let declared = match jwk.alg.as_deref() {
            None => None,
            Some(a) => Some(parse_alg(a).ok_or(KeyError::Unusable("unknown alg"))?),
        };
        let (alg, material) = match jwk.kty.as_str() {
            "EC" => {
                let (implied, vk, len): (Algorithm, &'static sig::EcdsaVerificationAlgorithm, usize) =
                    match jwk.crv.as_deref() {
                        Some("P-256") => (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED, 32),
                        Some("P-384") => (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED, 48),
                        _ => return Err(KeyError::Unusable("unsupported EC curve")),
                    };
                if declared.is_some_and(|d| d != implied) {
                    return Err(KeyError::Unusable("alg does not match curve"));
                }
                let x = b64(&jwk.x, "EC x")?;
                let y = b64(&jwk.y, "EC y")?;
                if x.len() != len || y.len() != len {
                    return Err(KeyError::Unusable("EC coordinate length"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let key = ParsedPublicKey::new(vk, &point[..])
                    .map_err(|_| KeyError::Unusable("EC point not on curve"))?;
                #[cfg(feature = "p256-tables")]
                let material = match (tables && implied == Algorithm::ES256)
                    .then(|| crate::p256_comb::LazyTable::new(&point))
                    .flatten()
                {
                    Some(lazy) => Material::Es256(key, lazy),
                    None => Material::Public(key),
                };
                #[cfg(not(feature = "p256-tables"))]
                let material = Material::Public(key);
                (implied, material)
            }
            "OKP" => {
                if jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(KeyError::Unusable("unsupported OKP curve"));
                }
                if declared.is_some_and(|d| d != Algorithm::EdDSA) {
                    return Err(KeyError::Unusable("alg does not match curve"));
                }
                let x = b64(&jwk.x, "OKP x")?;
                if x.len() != 32 {
                    return Err(KeyError::Unusable("Ed25519 key length"));
                }
                let key = ParsedPublicKey::new(&sig::ED25519, x)
                    .map_err(|_| KeyError::Unusable("invalid Ed25519 key"))?;
                (Algorithm::EdDSA, Material::Public(key))
            }
            "RSA" => {
                let alg = declared
                    .or(rsa_default)
                    .ok_or(KeyError::Unusable("RSA key without alg and no policy default"))?;
                let params = rsa_params(alg).ok_or(KeyError::Unusable("alg does not match RSA"))?;
                let n = b64(&jwk.n, "RSA n")?;
                let e = b64(&jwk.e, "RSA e")?;
                let n_bits = significant_bits(&n);
                if n_bits < 2048 {
                    return Err(KeyError::Unusable("RSA modulus below 2048 bits"));
                }
                let key = RsaPublicKeyComponents { n: &n[..], e: &e[..] }
                    .to_parsed_public_key(params)
                    .map_err(|_| KeyError::Unusable("invalid RSA key"))?;
                (alg, Material::Public(key))
            }
            "oct" => return Err(KeyError::Unusable("symmetric keys are never taken from a JWKS")),
            _ => return Err(KeyError::Unusable("unsupported kty")),
        };
        Ok(Self {
            kid: jwk.kid.as_deref().map(Arc::from),
            alg,
            material: Arc::new(material),
        })
    }

    /// An HMAC key from an explicitly configured secret (at least 32 bytes), pinned to `alg`
    /// (HS256, HS384 or HS512).
    pub fn hmac(kid: Option<&str>, alg: Algorithm, secret: &[u8]) -> Result<Self, KeyError> {
        let h = match alg {
            Algorithm::HS256 => aws_lc_rs::hmac::HMAC_SHA256,
            Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
            Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
            _ => return Err(KeyError::Unusable("not an HMAC algorithm")),
        };
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret);
        }
        Ok(Self {
            kid: kid.map(Arc::from),
            alg,
            material: Arc::new(Material::Hmac(Box::new(aws_lc_rs::hmac::Key::new(h, secret)))),
        })
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether `other` is this very key object (not merely equal material): a cache entry made
    /// with a key that was since replaced must not count.
    pub fn same_key(&self, other: &VerifyingKey) -> bool {
        Arc::ptr_eq(&self.material, &other.material)
    }

    /// Verifies `signature` over `signing_input` with this key's pinned algorithm.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &*self.material {
            Material::Public(k) => k.verify_sig(signing_input, signature).is_ok(),
            #[cfg(feature = "p256-tables")]
            Material::Es256(k, lazy) => match lazy.get() {
                Some(table) => crate::p256_comb::verify(table, signing_input, signature),
                None => k.verify_sig(signing_input, signature).is_ok(),
            },
            // hmac::verify compares in constant time.
            Material::Hmac(k) => aws_lc_rs::hmac::verify(k, signing_input, signature).is_ok(),
        }
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn significant_bits(be: &[u8]) -> usize {
    let mut bytes = be.iter().skip_while(|b| **b == 0);
    match bytes.next() {
        None => 0,
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * bytes.count(),
    }
}

/// Whether `alg` is an RSA signature algorithm (PKCS#1 v1.5 or PSS): the family an RSA JWK
/// without `alg` may be pinned to.
pub(crate) fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

/// Parses a JOSE `alg` name. `none` and unknown names give `None`.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" | "Ed25519" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => return None,
    })
}

/// A set of trusted keys.
///
/// ```
/// use zsp_core::KeySet;
/// let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1",
///   "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
/// let keys = KeySet::from_jwks(jwks.as_bytes(), None).unwrap();
/// assert_eq!(keys.get(Some("k1")).unwrap().algorithm(), zsp_core::Algorithm::EdDSA);
/// ```
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// A set of explicitly given keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// Parses a JWKS document (RFC 7517 §5). Keys zsp cannot use (unknown types, private or
    /// symmetric material, RSA below 2048 bits, `use` other than `sig`) are skipped and logged;
    /// a document with no usable key is an error. `rsa_default` pins RSA keys that carry no
    /// `alg`; without it they are skipped.
    pub fn from_jwks(doc: &[u8], rsa_default: Option<Algorithm>) -> Result<Self, KeyError> {
        if doc.len() > MAX_JWKS_BYTES {
            return Err(KeyError::TooLarge);
        }
        let parsed: JwksDoc =
            serde_json::from_slice(doc).map_err(|e| KeyError::InvalidDocument(e.to_string()))?;
        let mut keys = Vec::with_capacity(parsed.keys.len());
        for value in parsed.keys {
            let jwk: Jwk = match serde_json::from_value(value) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(target: "zsp::keys", error = %e, "skipping malformed JWK");
                    continue;
                }
            };
            match VerifyingKey::from_jwk(&jwk, rsa_default) {
                Ok(k) => keys.push(k),
                Err(e) => {
                    tracing::warn!(target: "zsp::keys", kid = ?jwk.kid, error = %e, "skipping JWK")
                }
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoUsableKeys);
        }
        Ok(Self { keys })
    }

    /// Adds a key.
    pub fn push(&mut self, key: VerifyingKey) {
        self.keys.push(key);
    }

    /// The key for `kid`. A token without `kid` is matched only when the set holds exactly
    /// one key, so an ambiguous lookup never picks a key by guess.
    pub fn get(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    /// All keys.
    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Where a verifier gets keys that can change at run time (a remote JWKS, a rotating local
/// set). Implementations must never block readers.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + std::fmt::Debug + 'static {
    /// The current keys, without waiting; `None` if keys were never obtained.
    fn current(&self) -> Option<Arc<KeySet>>;

    /// Called when a token names a `kid` the current set lacks. An implementation may refetch
    /// (coalesced across callers and rate-limited) and return the new set; the default does
    /// nothing.
    async fn refresh_for_unknown_kid(&self, _kid: Option<&str>) -> Option<Arc<KeySet>> {
        None
    }
}

/// The keys a [`crate::Verifier`] uses: fixed, or from a [`KeySource`].
#[derive(Debug, Clone)]
pub enum Keys {
    /// A fixed set; the hot path borrows it without reference counting.
    Static(Arc<KeySet>),
    /// Keys that can change.
    Dynamic(Arc<dyn KeySource>),
}

impl From<KeySet> for Keys {
    fn from(k: KeySet) -> Self {
        Keys::Static(Arc::new(k))
    }
}

impl From<Arc<KeySet>> for Keys {
    fn from(k: Arc<KeySet>) -> Self {
        Keys::Static(k)
    }
}

impl<T: KeySource> From<Arc<T>> for Keys {
    fn from(k: Arc<T>) -> Self {
        Keys::Dynamic(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ES256 key from a test issuer's JWKS, the JWK, and a signing input with its signature.
    fn es256_case() -> (VerifyingKey, Jwk, String, Vec<u8>) {
        let issuer = crate::testing::TestIssuer::es256("https://iss");
        let jwk: Jwk = serde_json::from_value(issuer.jwks()["keys"][0].clone()).unwrap();
        let key = VerifyingKey::from_jwk(&jwk, None).unwrap();
        let token = issuer.sign_raw(
            &serde_json::json!({"alg": "ES256"}),
            &serde_json::json!({"sub": "a"}),
        );
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = crate::b64::decode(sig).unwrap();
        (key, jwk, input.to_owned(), sig)
    }

    #[test]
    fn es256_verdicts_hold_while_threads_race_through_the_table_build() {
        let (key, _, input, sig) = es256_case();
        let mut bad = sig.clone();
        bad[5] ^= 0x40;
        // Four threads cross the build threshold together: one builds, the others go on
        // through aws-lc-rs meanwhile, and no verdict changes on either path.
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..40 {
                        assert!(key.verify(input.as_bytes(), &sig));
                        assert!(!key.verify(input.as_bytes(), &bad));
                    }
                });
            }
        });
        #[cfg(feature = "p256-tables")]
        match &*key.material {
            Material::Es256(_, lazy) => assert!(lazy.get().is_some(), "table never built"),
            _ => panic!("ES256 key without a lazy table"),
        }
    }

    #[test]
    fn es256_verdicts_do_not_change_when_the_key_gets_its_table() {
        let (key, jwk, input, sig) = es256_case();
        assert_eq!(key.algorithm(), Algorithm::ES256);
        let mut bad = sig.clone();
        bad[40] ^= 1;
        // Well past the use count at which the table is built: the first uses go through
        // aws-lc-rs, the later ones through the table, and every verdict stays the same.
        for i in 0..200 {
            assert!(
                key.verify(input.as_bytes(), &sig),
                "valid signature refused at use {i}"
            );
            assert!(
                !key.verify(input.as_bytes(), &bad),
                "bad signature accepted at use {i}"
            );
            assert!(
                !key.verify(b"other.input", &sig),
                "wrong input accepted at use {i}"
            );
        }
        #[cfg(feature = "p256-tables")]
        match &*key.material {
            Material::Es256(_, lazy) => assert!(lazy.get().is_some(), "table never built"),
            _ => panic!("ES256 key without a lazy table"),
        }
        // A key that came with its request (a DPoP proof's) never gets a table.
        let request_key = VerifyingKey::from_request_jwk(&jwk, None).unwrap();
        for _ in 0..100 {
            assert!(request_key.verify(input.as_bytes(), &sig));
        }
        assert!(matches!(&*request_key.material, Material::Public(_)));
    }

    #[test]
    fn jwks_rejects_oct_and_private_keys() {
        let doc = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}"#;
        assert_eq!(KeySet::from_jwks(doc, None).unwrap_err(), KeyError::NoUsableKeys);
        let doc = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","d":"x",
            "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert_eq!(KeySet::from_jwks(doc, None).unwrap_err(), KeyError::NoUsableKeys);
    }

    #[test]
    fn jwks_garbage_is_typed_error() {
        assert!(matches!(
            KeySet::from_jwks(b"[]", None),
            Err(KeyError::InvalidDocument(_))
        ));
        assert!(matches!(
            KeySet::from_jwks(b"\xff", None),
            Err(KeyError::InvalidDocument(_))
        ));
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(KeySet::from_jwks(&big, None).unwrap_err(), KeyError::TooLarge);
    }

    #[test]
    fn hmac_requires_32_bytes() {
        assert_eq!(
            VerifyingKey::hmac(None, Algorithm::HS256, &[0; 31]).unwrap_err(),
            KeyError::WeakSecret
        );
        assert!(VerifyingKey::hmac(None, Algorithm::HS256, &[0; 32]).is_ok());
        assert!(VerifyingKey::hmac(None, Algorithm::ES256, &[0; 32]).is_err());
    }

    #[test]
    fn small_rsa_is_refused() {
        // 1024-bit modulus (any 128 bytes with the top bit set).
        let n = crate::b64::encode([0x80u8; 128]);
        let doc = format!(r#"{{"keys":[{{"kty":"RSA","alg":"RS256","n":"{n}","e":"AQAB"}}]}}"#);
        assert_eq!(
            KeySet::from_jwks(doc.as_bytes(), None).unwrap_err(),
            KeyError::NoUsableKeys
        );
    }

    #[test]
    fn kidless_lookup_only_when_unambiguous() {
        let k = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let mut set = KeySet::from_keys([k.clone()]);
        assert!(set.get(None).is_some());
        set.push(VerifyingKey::hmac(Some("b"), Algorithm::HS256, &[2; 32]).unwrap());
        assert!(set.get(None).is_none());
        assert!(set.get(Some("b")).is_some());
        assert!(set.get(Some("../../etc/passwd")).is_none());
    }
}
