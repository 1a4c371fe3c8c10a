//! The verified-signature cache: skips the signature check for a token seen before.
//!
//! Invariants:
//! * an entry counts only for the very token that verified: the whole compact token is compared
//!   byte for byte, which no part can be swapped past and which, unlike a digest, has no
//!   collisions at all. Entries are found by a keyed mix (a folded multiply, with a random
//!   key per cache) of the token's last 16 bytes, which are signature bytes: a lookup costs a
//!   few instructions instead of a digest of the whole token. Where an entry sits decides
//!   nothing but placement: only fully verified tokens are ever inserted, their signature
//!   bytes are the signer's to choose, not the presenter's, and the key is secret, so no one
//!   can aim at a slot; at worst a collision replaces an entry, and a miss only costs a
//!   signature check;
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
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use std::sync::{Arc, RwLock};

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

/// The map keys are already keyed SipHash values: used as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Read-locked on a hit: requests presenting the same token on several cores look it up side
/// by side instead of queueing on one lock.
type Shard = RwLock<HashMap<u64, Entry, BuildHasherDefault<Identity>>>;

/// A bounded map from token hash to the verified token and the key that verified it.
pub(crate) struct SignatureCache {
    shards: Box<[Shard]>,
    per_shard: usize,
    /// The slot mix's secret key.
    key: [u64; 2],
}

/// The 128-bit product folded to 64 bits: every input bit reaches the middle of the result.
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl SignatureCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            // std's per-process random seed, advanced per RandomState: secret and distinct.
            key: {
                let r = RandomState::new();
                [r.hash_one(1u8), r.hash_one(2u8)]
            },
        }
    }

    /// Where `token` is filed: a keyed hash of its last 16 bytes, which lie in the signature
    /// of any real token (a signature is at least 43 characters): for tokens that verified,
    /// effectively random, and for anything else never trusted, only compared in full.
    pub(crate) fn slot(&self, token: &[u8]) -> u64 {
        let b = token;
        let tail: [u8; 16] = match b.last_chunk::<16>() {
            Some(t) => *t,
            None => {
                let mut t = [0u8; 16];
                t[16 - b.len()..].copy_from_slice(b);
                t
            }
        };
        let tail = u128::from_le_bytes(tail);
        let (lo, hi) = (tail as u64, (tail >> 64) as u64);
        // Two rounds, so that the shard (top bits) and the bucket (low bits) both depend on
        // every byte; the length tells tokens shorter than 16 bytes apart.
        let x = fold(lo ^ self.key[0], hi ^ self.key[1]);
        fold(x ^ b.len() as u64, 0x9E37_79B9_7F4A_7C15)
    }

    fn shard(&self, slot: u64) -> &Shard {
        // The top bits: the map uses the low ones.
        &self.shards[(slot >> 60) as usize % SHARDS]
    }

    /// The verified token `token` (filed at `slot`), if it is still live at `now` and `keys`
    /// still resolve its `kid` to the very key that verified it.
    pub(crate) fn get(&self, slot: u64, token: &[u8], keys: &KeySet, now: UnixTime) -> Option<Arc<Parsed>> {
        let shard = self.shard(slot).read().unwrap_or_else(|p| p.into_inner());
        let e = shard
            .get(&slot)
            .filter(|e| e.parsed.token().as_bytes() == token)?;
        let kid = if e.named { e.key.kid() } else { None };
        let current = keys.get(kid)?;
        (e.until > now && e.key.same_key(current)).then(|| e.parsed.clone())
    }

    pub(crate) fn insert(
        &self,
        slot: u64,
        key: &VerifyingKey,
        named: bool,
        parsed: Arc<Parsed>,
        until: UnixTime,
        now: UnixTime,
    ) {
        let mut shard = self.shard(slot).write().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard {
            shard.retain(|_, e| e.until > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(
            slot,
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
            .map(|s| s.read().map(|s| s.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::Fields;
    use jsonwebtoken::Algorithm;

    fn parsed(token: &str) -> Arc<Parsed> {
        Arc::new(Parsed::new(token, String::new(), Fields::default()))
    }

    fn put(c: &SignatureCache, token: &str, key: &VerifyingKey, named: bool, until: UnixTime) {
        c.insert(c.slot(token.as_bytes()), key, named, parsed(token), until, 0);
    }

    fn get(c: &SignatureCache, token: &str, keys: &KeySet, now: UnixTime) -> bool {
        c.get(c.slot(token.as_bytes()), token.as_bytes(), keys, now)
            .is_some()
    }

    #[test]
    fn entries_bind_to_the_key_and_expire() {
        let k1 = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let k1_again = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let set = KeySet::from_keys([k1.clone()]);
        let replaced = KeySet::from_keys([k1_again]);
        let c = SignatureCache::new(64);
        put(&c, "h.p.s", &k1, true, 100);
        assert!(get(&c, "h.p.s", &set, 99));
        assert!(!get(&c, "h.p.s", &set, 100));
        assert!(
            !get(&c, "h.p.s", &replaced, 99),
            "an equal-looking but different key object never hits"
        );
        assert!(!get(&c, "h.p.s", &KeySet::default(), 99));
        assert!(
            !get(&c, "h.q.s", &set, 99),
            "same signature, other payload: no hit"
        );
        assert!(!get(&c, "h.p.t", &set, 99));
    }

    #[test]
    fn a_token_without_kid_hits_only_while_its_key_is_the_only_one() {
        let k = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let other = VerifyingKey::hmac(Some("b"), Algorithm::HS256, &[2; 32]).unwrap();
        let c = SignatureCache::new(64);
        put(&c, "h.p.s", &k, false, 100);
        assert!(get(&c, "h.p.s", &KeySet::from_keys([k.clone()]), 60));
        assert!(!get(&c, "h.p.s", &KeySet::from_keys([k, other]), 60));
    }

    #[test]
    fn slots_spread_over_shards_and_buckets() {
        let c = SignatureCache::new(1024);
        let mut shards = [0usize; SHARDS];
        let mut slots = std::collections::HashSet::new();
        for i in 0u64..16_000 {
            // Signature-like tails: base64url of pseudo-random bytes.
            let sig = crate::b64::encode(i.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            let token = format!("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.{sig}");
            let slot = c.slot(token.as_bytes());
            shards[(slot >> 60) as usize % SHARDS] += 1;
            slots.insert(slot);
        }
        assert_eq!(slots.len(), 16_000, "no two of these tokens share a slot");
        assert!(shards.iter().all(|&n| (800..1200).contains(&n)), "{shards:?}");
        // Short inputs (not tokens, but presented all the same) are told apart by length too.
        assert_ne!(c.slot(b"a"), c.slot(b"\0a"));
    }

    #[test]
    fn bounded() {
        let k = VerifyingKey::hmac(None, Algorithm::HS256, &[1; 32]).unwrap();
        let c = SignatureCache::new(32);
        for i in 0..1000u32 {
            put(&c, &format!("h.p.{i}"), &k, false, 1_000);
        }
        assert!(c.len() <= 32);
    }

    #[test]
    fn concurrent_hits_on_one_token_all_hit() {
        let k = VerifyingKey::hmac(Some("a"), Algorithm::HS256, &[1; 32]).unwrap();
        let set = KeySet::from_keys([k.clone()]);
        let c = SignatureCache::new(64);
        put(&c, "h.p.s", &k, true, 100);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        assert!(get(&c, "h.p.s", &set, 50));
                    }
                });
            }
        });
    }
}
