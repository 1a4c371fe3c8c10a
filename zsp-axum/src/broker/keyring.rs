//! The broker's signing keys, rotated publish-before-use.
//!
//! A new key is first *staged*: it appears in the JWKS but signs nothing, so verifiers can
//! learn it on their next refresh. Only then is it *activated*. The key it replaces stays
//! published until every token it signed has expired (its last possible `exp` plus leeway),
//! then drops out of the JWKS.

use std::sync::RwLock;

use zsp_core::{SigningKey, UnixTime};

#[derive(Debug, Clone)]
struct Published {
    key: SigningKey,
    retire_after: Option<UnixTime>,
}

#[derive(Debug)]
struct Ring {
    active: SigningKey,
    published: Vec<Published>,
}

/// Why a rotation step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The kid is already published.
    #[error("kid {0:?} is already published")]
    DuplicateKid(String),
    /// The kid was never staged, so activating it would sign with an unpublished key.
    #[error("kid {0:?} is not staged")]
    NotStaged(String),
}

/// The broker's published and active signing keys.
#[derive(Debug)]
pub struct KeyRing {
    ring: RwLock<Ring>,
    /// How long after its last use a retired key stays published: max token TTL + leeway.
    retention_secs: u64,
}

impl KeyRing {
    /// A ring whose one key is published and active. `retention_secs` is the longest a token
    /// can live plus verifier leeway.
    pub fn new(key: SigningKey, retention_secs: u64) -> Self {
        Self {
            ring: RwLock::new(Ring {
                active: key.clone(),
                published: vec![Published {
                    key,
                    retire_after: None,
                }],
            }),
            retention_secs,
        }
    }

    /// The key that signs now.
    pub fn active(&self) -> SigningKey {
        self.read().active.clone()
    }

    /// Publishes `key` without signing with it yet.
    pub fn stage(&self, key: SigningKey) -> Result<(), RotationError> {
        let mut r = self.write();
        if r.published.iter().any(|p| p.key.kid() == key.kid()) {
            return Err(RotationError::DuplicateKid(key.kid().to_owned()));
        }
        r.published.push(Published {
            key,
            retire_after: None,
        });
        Ok(())
    }

    /// Starts signing with the staged key `kid`; the previous key stays published until
    /// `now + retention`.
    pub fn activate(&self, kid: &str, now: UnixTime) -> Result<(), RotationError> {
        let mut r = self.write();
        let Some(next) = r
            .published
            .iter()
            .find(|p| p.key.kid() == kid)
            .map(|p| p.key.clone())
        else {
            return Err(RotationError::NotStaged(kid.to_owned()));
        };
        let old_kid = r.active.kid().to_owned();
        let retire = now.saturating_add(self.retention_secs);
        for p in r.published.iter_mut() {
            if p.key.kid() == old_kid && old_kid != kid {
                p.retire_after = Some(retire);
            }
            if p.key.kid() == kid {
                p.retire_after = None;
            }
        }
        r.active = next;
        Ok(())
    }

    /// The JWKS document at `now`: staged, active and not-yet-retired keys.
    pub fn jwks(&self, now: UnixTime) -> serde_json::Value {
        let mut r = self.write();
        r.published.retain(|p| p.retire_after.is_none_or(|t| now <= t));
        let keys: Vec<_> = r.published.iter().map(|p| p.key.public_jwk().clone()).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The published public keys as a verification key set.
    pub fn key_set(&self) -> zsp_core::KeySet {
        let r = self.read();
        zsp_core::KeySet::from_keys(r.published.iter().filter_map(|p| p.key.verifying_key().ok()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_before_use_and_retention() {
        let ring = KeyRing::new(SigningKey::generate_es256("k1").unwrap(), 70);
        ring.stage(SigningKey::generate_es256("k2").unwrap()).unwrap();
        assert_eq!(ring.active().kid(), "k1");
        assert_eq!(ring.jwks(100)["keys"].as_array().unwrap().len(), 2);
        assert_eq!(
            ring.activate("k3", 100),
            Err(RotationError::NotStaged("k3".into()))
        );
        ring.activate("k2", 100).unwrap();
        assert_eq!(ring.active().kid(), "k2");
        assert_eq!(ring.jwks(170)["keys"].as_array().unwrap().len(), 2);
        let after = ring.jwks(171);
        assert_eq!(after["keys"].as_array().unwrap().len(), 1);
        assert_eq!(after["keys"][0]["kid"], "k2");
    }
}
