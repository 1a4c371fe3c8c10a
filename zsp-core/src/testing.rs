//! Helpers for tests, yours and ours: an issuer that mints tokens with a fresh key and hands out
//! the matching [`KeySet`] and JWKS document.
//!
//! ```
//! use zsp_core::testing::TestIssuer;
//! let issuer = TestIssuer::ed25519("https://issuer.test");
//! let token = issuer.token("my-api", &["read"]).subject("svc-a").ttl_secs(30).mint().unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 1);
//! ```

use std::time::Duration;

use serde::Serialize;

use crate::claims::Actor;
use crate::clock::{Clock, UnixTime};
use crate::keys::KeySet;
use crate::mint::{MintError, MintRequest, Minter, SigningKey};

/// A test issuer: a key, a minter with a generous cap, and its public keys.
#[derive(Debug, Clone)]
pub struct TestIssuer {
    minter: Minter,
}

impl TestIssuer {
    /// An issuer with a fresh ES256 key (kid `test-es256`).
    pub fn es256(issuer: &str) -> Self {
        Self::with_key(issuer, SigningKey::generate_es256("test-es256"))
    }
    /// An issuer with a fresh Ed25519 key (kid `test-ed25519`).
    pub fn ed25519(issuer: &str) -> Self {
        Self::with_key(issuer, SigningKey::generate_ed25519("test-ed25519"))
    }
    fn with_key(issuer: &str, key: Result<SigningKey, MintError>) -> Self {
        // Key generation fails only without OS entropy, where no test can run anyway.
        let key = key.unwrap_or_else(|e| panic!("test key generation failed: {e}")); // ok: test helper
        Self::from_key(issuer, key)
    }
    /// An issuer signing with `key`.
    pub fn from_key(issuer: &str, key: SigningKey) -> Self {
        Self {
            minter: Minter::new(issuer, key, Duration::from_secs(24 * 3600)),
        }
    }
    /// Uses `clock` for `iat` of tokens minted without explicit times.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.minter = self.minter.with_clock(clock);
        self
    }
    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        self.minter.key()
    }
    /// The minter.
    pub fn minter(&self) -> &Minter {
        &self.minter
    }
    /// The public keys as a [`KeySet`].
    pub fn key_set(&self) -> KeySet {
        match self.minter.key().verifying_key() {
            Ok(k) => KeySet::from_keys([k]),
            Err(e) => panic!("test key has no usable public key: {e}"), // ok: test helper
        }
    }
    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.minter.key().public_jwk()] })
    }
    /// Starts a token for `audience` with `scopes`, 60 s lifetime, subject `test-subject`.
    pub fn token(&self, audience: &str, scopes: &[&str]) -> TokenBuilder<'_> {
        let mut req = MintRequest::new(audience, scopes, Duration::from_secs(60));
        req.subject = Some("test-subject".into());
        TokenBuilder {
            issuer: self,
            req,
            iat: None,
            ttl: 60,
        }
    }
    /// Signs an arbitrary header and payload with this issuer's key, for adversarial tests.
    pub fn sign_raw<H: Serialize, P: Serialize>(&self, header: &H, payload: &P) -> String {
        sign_raw_with(self.minter.key(), header, payload)
    }
}

/// Signs `header.payload` with `key`, whatever the header says.
pub fn sign_raw_with<H: Serialize, P: Serialize>(key: &SigningKey, header: &H, payload: &P) -> String {
    crate::crypto::ensure_provider();
    let h = crate::b64::encode(serde_json::to_vec(header).unwrap_or_default());
    let p = crate::b64::encode(serde_json::to_vec(payload).unwrap_or_default());
    let input = format!("{h}.{p}");
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key.encoding_key(), key.algorithm())
        .unwrap_or_else(|e| panic!("signing failed: {e}")); // ok: test helper
    format!("{input}.{sig}")
}

/// Builds one test token.
#[derive(Debug)]
pub struct TokenBuilder<'a> {
    issuer: &'a TestIssuer,
    req: MintRequest,
    iat: Option<UnixTime>,
    ttl: u64,
}

impl TokenBuilder<'_> {
    /// Sets the subject.
    pub fn subject(mut self, sub: &str) -> Self {
        self.req.subject = Some(sub.into());
        self
    }
    /// Sets the client id.
    pub fn client_id(mut self, id: &str) -> Self {
        self.req.client_id = Some(id.into());
        self
    }
    /// Sets the lifetime.
    pub fn ttl_secs(mut self, secs: u64) -> Self {
        self.ttl = secs;
        self.req.ttl = Duration::from_secs(secs);
        self
    }
    /// Sets `iat` explicitly (default: the issuer clock's now).
    pub fn issued_at(mut self, iat: UnixTime) -> Self {
        self.iat = Some(iat);
        self
    }
    /// Sets `nbf`.
    pub fn not_before(mut self, nbf: UnixTime) -> Self {
        self.req.not_before = Some(nbf);
        self
    }
    /// Binds to a JWK thumbprint (`cnf.jkt`).
    pub fn jkt(mut self, jkt: &str) -> Self {
        self.req.jkt = Some(jkt.into());
        self
    }
    /// Sets the delegation chain.
    pub fn act(mut self, act: Actor) -> Self {
        self.req.act = Some(act);
        self
    }
    /// Adds a custom claim.
    pub fn claim(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.req.extra.insert(name.into(), value.into());
        self
    }
    /// Adds another audience.
    pub fn also_audience(mut self, aud: &str) -> Self {
        self.req.audiences.push(aud.into());
        self
    }
    /// Signs the token.
    pub fn mint(self) -> Result<String, MintError> {
        let iat = self.iat.unwrap_or_else(|| self.issuer.minter.now());
        Ok(self.issuer.minter.mint_unchecked(&self.req, iat, self.ttl)?.token)
    }
}
