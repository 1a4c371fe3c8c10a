//! The verified-signature cache: skips the signature check for a token seen before.
//!
//! Invariants:
//! * keyed by the SHA-256 of the whole compact token, so no part can be swapped;
//! * an entry remembers the exact key object that verified it, and counts only while the key
//!   set still resolves the token's `kid` to that same key (a rotated-out or replaced key
//!   invalidates its entries);
//! * an entry dies with its token (`exp` + leeway);
//! * only the signature is skipped: claims, policy, revocation and replay run on every request;
//! * never consulted or filled for single-use tokens or routes, whose every use is new.
//!
//! Unlike the replay store, evicting here is always safe (a miss only costs a signature check),
//! so a full shard is simply emptied.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::UnixTime;
use crate::keys::VerifyingKey;

const SHARDS: usize = 16;

struct Entry {
    until: UnixTime,
    key: VerifyingKey,
}

type Shard = Mutex<HashMap<[u8; 32], Entry>>;

/// A bounded map from token hash to the key that verified it.
pub(crate) struct SignatureCache {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl SignatureCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    pub(crate) fn digest(token: &[u8]) -> [u8; 32] {
        crate::crypto::sha256(token)
    }

    fn shard(&self, digest: &[u8; 32]) -> &Shard {
        &self.shards[usize::from(digest[0]) % SHARDS]
    }

    /// Whether `digest` was verified by `key` and is still live at `now`.
    pub(crate) fn hit(&self, digest: &[u8; 32], key: &VerifyingKey, now: UnixTime) -> bool {
        let shard = self.shard(digest).lock().unwrap_or_else(|p| p.into_inner());
        shard
            .get(digest)
            .is_some_and(|e| e.until > now && e.key.same_key(key))
    }

    pub(crate) fn insert(&self, digest: [u8; 32], key: &VerifyingKey, until: UnixTime, now: UnixTime) {
        let mut shard = self.shard(&digest).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.until > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(
            digest,
            Entry {
                until,
                key: key.clone(),
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    #[test]
    fn entries_bind_to_the_key_and_expire() {
        let k1 = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let k1_again = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let c = SignatureCache::new(64);
        let d = SignatureCache::digest(b"token");
        c.insert(d, &k1, 100, 50);
        assert!(c.hit(&d, &k1, 99));
        assert!(!c.hit(&d, &k1, 100));
        assert!(
            !c.hit(&d, &k1_again, 99),
            "an equal-looking but different key object never hits"
        );
        assert!(!c.hit(&SignatureCache::digest(b"other"), &k1, 99));
    }

    #[test]
    fn bounded() {
        let k = VerifyingKey::hmac(None, Algorithm::HS256, &[1; 32]).unwrap();
        let c = SignatureCache::new(32);
        for i in 0..1000u32 {
            c.insert(SignatureCache::digest(&i.to_be_bytes()), &k, 1_000, 0);
        }
        assert!(c.len() <= 32);
    }
}
