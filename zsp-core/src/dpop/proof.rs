//! Making DPoP proofs: the client's side (RFC 9449 §4.2).
//!
//! Invariants:
//! * the header carries `typ` `dpop+jwt`, the key's `alg` and only the public members of its
//!   JWK (never a `kid`, never private material);
//! * every proof has a fresh 128-bit random `jti`; a failing RNG is an error, never a
//!   predictable id;
//! * `htu` is the target URI without query and fragment, in the normal form a zsp server
//!   compares against (so a string-comparing server agrees too);
//! * `ath` is base64url(SHA-256(access token)) whenever a token is presented.

use std::sync::Arc;

use http::Method;
use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Value, json};

use super::htu::{HtuError, normalize_htu};
use super::thumbprint::{Jkt, jwk_thumbprint};
use crate::clock::{Clock, SystemClock, UnixTime};
use crate::mint::{MintError, SigningKey, alg_name};

/// The JOSE header `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// Why a DPoP key or proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The target URI is not an absolute http(s) URI zsp can normalise.
    #[error("invalid target URI for htu: {0}")]
    InvalidUrl(#[from] HtuError),
    /// Only ES256 and EdDSA keys make proofs.
    #[error("unsupported DPoP key algorithm")]
    UnsupportedAlgorithm,
    /// Key material could not be generated, parsed or described.
    #[error("invalid DPoP key: {0}")]
    InvalidKey(String),
    /// Signing failed.
    #[error("signing the DPoP proof failed: {0}")]
    Signing(String),
    /// The system RNG failed.
    #[error(transparent)]
    Rng(#[from] crate::crypto::RngUnavailable),
}

impl From<MintError> for DpopError {
    fn from(e: MintError) -> Self {
        match e {
            MintError::UnsupportedAlgorithm => DpopError::UnsupportedAlgorithm,
            MintError::Rng(r) => DpopError::Rng(r),
            MintError::Signing(s) => DpopError::Signing(s),
            other => DpopError::InvalidKey(other.to_string()),
        }
    }
}

/// The `ath` claim for an access token: base64url(SHA-256(token)) (RFC 9449 §4.2).
///
/// ```
/// assert_eq!(
///     zsp_core::dpop::access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
///     "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
/// );
/// ```
pub fn access_token_hash(access_token: &str) -> String {
    crate::b64::encode(crate::crypto::sha256(access_token.as_bytes()))
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// A client's DPoP key: makes proofs, and names itself by its thumbprint. Cheap to clone.
///
/// ```
/// use zsp_core::dpop::DpopKey;
/// let key = DpopKey::generate().unwrap();
/// let proof = key
///     .proof(&http::Method::POST, "https://api.example/orders?x=1", Some("the-access-token"), None)
///     .unwrap();
/// assert_eq!(proof.split('.').count(), 3);
/// assert_eq!(key.thumbprint().as_str().len(), 43);
/// ```
#[derive(Clone)]
pub struct DpopKey {
    key: SigningKey,
    jwk: Arc<Value>,
    jkt: Jkt,
    header_b64: Arc<str>,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.key.algorithm())
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh key of the default algorithm, ES256: what a process that holds its DPoP key
    /// in memory only (the outbound layer's default) uses.
    pub fn generate() -> Result<Self, DpopError> {
        Self::generate_es256()
    }

    /// A fresh P-256 key (ES256).
    pub fn generate_es256() -> Result<Self, DpopError> {
        Self::from_signing_key(SigningKey::generate_es256("dpop")?)
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn generate_ed25519() -> Result<Self, DpopError> {
        Self::from_signing_key(SigningKey::generate_ed25519("dpop")?)
    }

    /// Uses an existing ES256 or EdDSA signing key (its `kid` is not used in proofs).
    pub fn from_signing_key(key: SigningKey) -> Result<Self, DpopError> {
        let alg = key.algorithm();
        if !matches!(alg, Algorithm::ES256 | Algorithm::EdDSA) {
            return Err(DpopError::UnsupportedAlgorithm);
        }
        let full = key.public_jwk();
        let members: &[&str] = match alg {
            Algorithm::ES256 => &["kty", "crv", "x", "y"],
            _ => &["kty", "crv", "x"],
        };
        let mut jwk = serde_json::Map::new();
        for m in members {
            let v = full
                .get(*m)
                .cloned()
                .ok_or_else(|| DpopError::InvalidKey(format!("public JWK lacks {m}")))?;
            jwk.insert((*m).to_owned(), v);
        }
        let jwk = Value::Object(jwk);
        let jkt = jwk_thumbprint(&jwk).map_err(|e| DpopError::InvalidKey(e.to_string()))?;
        let header = json!({ "typ": DPOP_TYP, "alg": alg_name(alg), "jwk": jwk });
        let header_json = serde_json::to_vec(&header).map_err(|e| DpopError::InvalidKey(e.to_string()))?;
        Ok(Self {
            key,
            jwk: Arc::new(jwk),
            jkt,
            header_b64: Arc::from(crate::b64::encode(header_json)),
        })
    }

    /// The proof algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The public JWK carried in every proof header: required members only.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The key's RFC 7638 SHA-256 thumbprint: the `jkt` a broker puts in `cnf.jkt`, and a
    /// natural part of a token cache key.
    pub fn thumbprint(&self) -> &Jkt {
        &self.jkt
    }

    /// A proof for one request, issued now (system clock). `url` may carry a query and
    /// fragment; they are left out of `htu`. `access_token` sets `ath`; `nonce` is the latest
    /// `DPoP-Nonce` the server sent.
    pub fn proof(
        &self,
        method: &Method,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, DpopError> {
        self.proof_at(method, url, access_token, nonce, SystemClock.now())
    }

    /// [`proof`](Self::proof) with an explicit `iat`.
    pub fn proof_at(
        &self,
        method: &Method,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: UnixTime,
    ) -> Result<String, DpopError> {
        let htu = normalize_htu(url)?;
        let jti = crate::crypto::random_id::<16>()?;
        let claims = ProofClaims {
            jti: &jti,
            htm: method.as_str(),
            htu: &htu,
            iat,
            ath: access_token.map(access_token_hash),
            nonce,
        };
        let payload = serde_json::to_vec(&claims).map_err(|e| DpopError::Signing(e.to_string()))?;
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 96);
        out.push_str(&self.header_b64);
        out.push('.');
        out.push_str(&crate::b64::encode(payload));
        crate::crypto::ensure_provider();
        let sig = jsonwebtoken::crypto::sign(out.as_bytes(), self.key.encoding_key(), self.key.algorithm())
            .map_err(|e| DpopError::Signing(e.to_string()))?;
        out.push('.');
        out.push_str(&sig);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_part(proof: &str, i: usize) -> Value {
        let part = proof.split('.').nth(i).unwrap();
        serde_json::from_slice(&crate::b64::decode(part).unwrap()).unwrap()
    }

    #[test]
    fn rfc9449_4_2_header_and_claims() {
        for key in [
            DpopKey::generate_es256().unwrap(),
            DpopKey::generate_ed25519().unwrap(),
        ] {
            let p = key
                .proof_at(
                    &Method::GET,
                    "HTTPS://Server.Example:443/r?q=1#x",
                    Some("tok"),
                    Some("n1"),
                    1000,
                )
                .unwrap();
            let h = decode_part(&p, 0);
            assert_eq!(h["typ"], DPOP_TYP);
            assert_eq!(h["alg"], alg_name(key.algorithm()));
            let jwk = h["jwk"].as_object().unwrap();
            assert!(!jwk.contains_key("d") && !jwk.contains_key("kid"));
            assert!(h.get("kid").is_none());
            let c = decode_part(&p, 1);
            assert_eq!(c["htm"], "GET");
            assert_eq!(c["htu"], "https://server.example/r");
            assert_eq!(c["iat"], 1000);
            assert_eq!(c["ath"], access_token_hash("tok"));
            assert_eq!(c["nonce"], "n1");
            assert_eq!(crate::b64::decode(c["jti"].as_str().unwrap()).unwrap().len(), 16);
            assert_eq!(jwk_thumbprint(&h["jwk"]).unwrap(), *key.thumbprint());
        }
    }

    #[test]
    fn jti_is_fresh_per_proof_and_optional_claims_are_absent() {
        let key = DpopKey::generate_es256().unwrap();
        let a = key.proof_at(&Method::GET, "https://h/", None, None, 1).unwrap();
        let b = key.proof_at(&Method::GET, "https://h/", None, None, 1).unwrap();
        assert_ne!(decode_part(&a, 1)["jti"], decode_part(&b, 1)["jti"]);
        assert!(decode_part(&a, 1).get("ath").is_none());
        assert!(decode_part(&a, 1).get("nonce").is_none());
        assert!(key.proof(&Method::GET, "not a url", None, None).is_err());
        assert!(!format!("{key:?}").contains("\"x\""));
    }
}
