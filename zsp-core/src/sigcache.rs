//! The verified-signature cache: skips the signature check for a token seen before.
//!
//! Invariants:
//! * keyed by the SHA-256 of the whole compact token, so no part can be swapped;
//! * an entry remembers the exact key object that verified it, and counts only while the key
//!   set still resolves the token's `kid` to that same key (a rotated-out or replaced key
//!   invalidates its entries);
//! * an entry dies with its token (`exp` + leeway);
//! * only the signature (and the decoding it needs) is skipped: the token's bytes are those
//!   that were checked, so its header and its `iss`/`aud` checks against the verifier's fixed
//!   policy give the same answer again; time claims, route rules, revocation and replay run on
//!   every request;
//! * never consulted or filled for single-use tokens or routes, whose every use is new.
//!
//! Unlike the replay store, evicting here is always safe (a miss only costs a signature check),
//! so a full shard is simply emptied.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::clock::UnixTime;
use crate::grant::Parsed;
use crate::keys::{KeySet, VerifyingKey};

const SHARDS: usize = 16;

struct Entry {
    until: UnixTime,
    key: VerifyingKey,
    /// Whether the token named its key (`kid`); without one, it was the set's only key.
    named: bool,
    parsed: Arc<Parsed>,
}

/// The keys are SHA-256 digests: already uniform, so the first 8 bytes are the hash.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Called with the length prefix, then the 32 digest bytes: folding both keeps the
        // digest's uniformity.
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

type Shard = Mutex<HashMap<[u8; 32], Entry, BuildHasherDefault<DigestHasher>>>;

/// A bounded map from token hash to the verified token and the key that verified it.
pub(crate) struct SignatureCache {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl SignatureCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    pub(crate) fn digest(token: &[u8]) -> [u8; 32] {
        crate::crypto::sha256(token)
    }

    fn shard(&self, digest: &[u8; 32]) -> &Shard {
        // Byte 8, not 0: the map's hash uses bytes 0..8, the shard must be independent of it.
        &self.shards[usize::from(digest[8]) % SHARDS]
    }

    /// The verified token for `digest`, if it is still live at `now` and `keys` still resolve
    /// its `kid` to the very key that verified it.
    pub(crate) fn get(&self, digest: &[u8; 32], keys: &KeySet, now: UnixTime) -> Option<Arc<Parsed>> {
        let shard = self.shard(digest).lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(digest)?;
        let kid = if e.named { e.key.kid() } else { None };
        let current = keys.get(kid)?;
        (e.until > now && e.key.same_key(current)).then(|| e.parsed.clone())
    }

    pub(crate) fn insert(
        &self,
        digest: [u8; 32],
        key: &VerifyingKey,
        named: bool,
        parsed: Arc<Parsed>,
        until: UnixTime,
        now: UnixTime,
    ) {
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
                named,
                parsed,
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
    use crate::grant::Fields;
    use jsonwebtoken::Algorithm;

    fn parsed() -> Arc<Parsed> {
        Arc::new(Parsed::new("t", Vec::new(), Fields::default()))
    }

    #[test]
    fn entries_bind_to_the_key_and_expire() {
        let k1 = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let k1_again = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let set = KeySet::from_keys([k1.clone()]);
        let replaced = KeySet::from_keys([k1_again]);
        let c = SignatureCache::new(64);
        let d = SignatureCache::digest(b"token");
        c.insert(d, &k1, true, parsed(), 100, 50);
        assert!(c.get(&d, &set, 99).is_some());
        assert!(c.get(&d, &set, 100).is_none());
        assert!(
            c.get(&d, &replaced, 99).is_none(),
            "an equal-looking but different key object never hits"
        );
        assert!(c.get(&d, &KeySet::default(), 99).is_none());
        assert!(c.get(&SignatureCache::digest(b"other"), &set, 99).is_none());
    }

    #[test]
    fn a_token_without_kid_hits_only_while_its_key_is_the_only_one() {
        let k = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let other = VerifyingKey::hmac(Some("b"), Algorithm::HS256, &[2; 32]).unwrap();
        let c = SignatureCache::new(64);
        let d = SignatureCache::digest(b"token");
        c.insert(d, &k, false, parsed(), 100, 50);
        assert!(c.get(&d, &KeySet::from_keys([k.clone()]), 60).is_some());
        assert!(c.get(&d, &KeySet::from_keys([k, other]), 60).is_none());
    }

    #[test]
    fn bounded() {
        let k = VerifyingKey::hmac(None, Algorithm::HS256, &[1; 32]).unwrap();
        let c = SignatureCache::new(32);
        for i in 0..1000u32 {
            c.insert(
                SignatureCache::digest(&i.to_be_bytes()),
                &k,
                false,
                parsed(),
                1_000,
                0,
            );
        }
        assert!(c.len() <= 32);
    }
}
