//! Single-use tokens: a `jti` is accepted once and remembered until it can no longer verify.
//!
//! Invariant (DESIGN 4 and the TinyLFU lesson): a replay store never forgets an unexpired
//! entry. [`MemoryReplayGuard`] is bounded by a capacity; when it is full of live entries it
//! refuses to record new single-use tokens ([`ReplayError::Full`], a 503) instead of evicting
//! one and letting its replay through. A store that cannot answer denies; it never allows.
//!
//! # What [`MemoryReplayGuard`] stores: a keyed 128-bit hash, not the `jti`
//!
//! Each id is reduced to a 128-bit fingerprint by a keyed hash (std's DoS-resistant hasher,
//! SipHash-1-3 today, whose random key std seeds from the OS, additionally salted with 16 bytes
//! from the system CSPRNG per guard). Storing 24 bytes inline instead of an allocated string
//! makes a check allocation-free, cuts the memory per entry to about a third and makes table
//! growth a plain copy (no string re-hashing under the lock). Why this cannot let a replay through:
//!
//! * The fingerprint is a deterministic function of the id for the life of a guard, so a
//!   replayed id always produces the fingerprint recorded at its first use and is found: the
//!   hash can never turn a replay into an acceptance.
//! * The only effect of a collision (two different ids, one fingerprint) is that the second,
//!   fresh id is reported as already used: a false *denial*, never a false acceptance. With 128
//!   bits and a million live entries its probability is below 2⁻⁸⁸.
//! * The key is random and private to each guard, so an attacker (who would in any case need
//!   the issuer to sign tokens with ids of their choosing) can neither aim for collisions nor
//!   pile ids into one bucket or one shard (HashDoS).
//!
//! Concurrency: the guard is split into 16 to 256 shards (more for larger capacities), each
//! behind its own lock and padded to 128 bytes so that two threads working on neighbouring
//! shards do not bounce one cache line between cores (false sharing). Expired entries are swept
//! per shard every few seconds; a full shard is swept again only once time has moved on, so
//! refusing a request when full does not rescan the shard each time.

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, Entry, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

use crate::clock::UnixTime;

/// Why the replay store could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The store holds its capacity of unexpired entries.
    #[error("replay store full")]
    Full,
    /// The store did not answer (down, timed out); the reason is for logs.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

/// Records single-use identifiers.
#[async_trait::async_trait]
pub trait ReplayGuard: Send + Sync + std::fmt::Debug + 'static {
    /// Records `id` as used until `until` (unix seconds). `Ok(true)` on first use, `Ok(false)`
    /// when `id` was already recorded and has not expired.
    async fn first_use(&self, id: &str, now: UnixTime, until: UnixTime) -> Result<bool, ReplayError>;
}

/// Shards of a small guard; larger guards get more (see [`shard_count`]).
const SHARDS: usize = 16;
/// Most shards a guard gets.
const MAX_SHARDS: usize = 256;
/// A guard gets as many shards as it can while each still holds this many entries: many
/// shards keep threads off each other's locks (and a shard's table growth, which happens
/// under its lock, short); a large share per shard keeps one unlucky shard from filling up
/// long before the guard as a whole does.
const MIN_PER_SHARD: usize = 1024;
const SWEEP_INTERVAL_SECS: u64 = 5;

/// A power of two in `SHARDS..=MAX_SHARDS`.
fn shard_count(capacity: usize) -> usize {
    let fitting = (capacity / MIN_PER_SHARD).max(1);
    // The largest power of two not above `fitting`.
    let pow = 1usize << (usize::BITS - 1 - fitting.leading_zeros());
    pow.clamp(SHARDS, MAX_SHARDS)
}

/// The 128-bit keyed fingerprint of an id (see the module docs). `lo` picks the bucket inside
/// a shard, `hi` picks the shard, so the two choices are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    lo: u64,
    hi: u64,
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed, uniformly distributed hash: hand it to the table as is.
        state.write_u64(self.lo);
    }
}

/// Passes a [`Fingerprint`]'s precomputed hash through to the table unchanged.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `Fingerprint`); fold anything else in rather than panic.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct Shard {
    live: HashMap<Fingerprint, UnixTime, BuildHasherDefault<PassThrough>>,
    next_sweep: UnixTime,
    /// `Some(t)`: every entry has `until > t` (set by a sweep at `t`), so a sweep at any
    /// `now <= t` cannot free anything.
    clean_at: Option<UnixTime>,
}

impl Shard {
    fn sweep(&mut self, now: UnixTime) {
        self.live.retain(|_, until| *until > now);
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL_SECS);
        self.clean_at = Some(now);
    }
}

/// A shard on its own 128-byte line (two 64-byte lines: the adjacent-line prefetcher pairs
/// them), so locking one shard never invalidates a neighbour's cache line on another core.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// An in-process replay guard: sharded maps with a hard capacity and no eviction of live
/// entries.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use zsp_core::{MemoryReplayGuard, ReplayGuard};
/// let guard = MemoryReplayGuard::new(10_000);
/// assert_eq!(guard.first_use("jti-1", 100, 400).await, Ok(true));
/// assert_eq!(guard.first_use("jti-1", 101, 400).await, Ok(false));
/// # }
/// ```
pub struct MemoryReplayGuard {
    shards: Box<[Padded]>,
    per_shard: usize,
    /// The per-guard key: std's randomly keyed hasher with a CSPRNG salt already absorbed.
    keyed: DefaultHasher,
}

impl std::fmt::Debug for MemoryReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hash key: with it, colliding ids could be crafted.
        f.debug_struct("MemoryReplayGuard")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryReplayGuard {
    /// A guard holding at most `capacity` live entries (rounded up to a multiple of the shard
    /// count, which grows with the capacity from 16 to 256).
    pub fn new(capacity: usize) -> Self {
        let shards = shard_count(capacity);
        let per_shard = capacity.div_ceil(shards).max(1);
        let mut keyed = RandomState::new().build_hasher();
        let mut salt = [0u8; 16];
        // RandomState is already seeded from the OS; the salt makes each guard's key fully
        // independent of other guards'. Should the CSPRNG fail, the RandomState key remains.
        if aws_lc_rs::rand::fill(&mut salt).is_ok() {
            keyed.write(&salt);
        }
        Self {
            shards: (0..shards).map(|_| Padded::default()).collect(),
            per_shard,
            keyed,
        }
    }

    fn fingerprint(&self, id: &str) -> Fingerprint {
        let mut h = self.keyed.clone();
        id.hash(&mut h);
        let lo = h.finish();
        // Same key, a longer message (ids are UTF-8 and never contain 0xff): a second,
        // independent 64 bits for one more finalisation instead of a second pass over the id.
        h.write_u8(0xff);
        Fingerprint { lo, hi: h.finish() }
    }

    /// Number of recorded entries, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().map(|s| s.live.len()).unwrap_or(0))
            .sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous check behind [`ReplayGuard::first_use`].
    pub fn check(&self, id: &str, now: UnixTime, until: UnixTime) -> Result<bool, ReplayError> {
        let fp = self.fingerprint(id);
        // The shard count is a power of two.
        let idx = (fp.hi as usize) & (self.shards.len() - 1);
        // A poisoned shard means a panic mid-update elsewhere; its contents are still a set of
        // recorded ids, so keep using them rather than failing open or closed for good.
        let mut shard = self.shards[idx].0.lock().unwrap_or_else(|p| p.into_inner());
        if now >= shard.next_sweep {
            shard.sweep(now);
        }
        let room = shard.live.len() < self.per_shard;
        let recorded = match shard.live.entry(fp) {
            // Recorded and not expired: a replay.
            Entry::Occupied(e) if *e.get() > now => return Ok(false),
            // Expired record: this is a new use of an id whose old token is dead.
            Entry::Occupied(mut e) => {
                e.insert(until);
                true
            }
            Entry::Vacant(v) if room => {
                v.insert(until);
                true
            }
            Entry::Vacant(_) => false,
        };
        if !recorded {
            // Full. Something may have expired since the last sweep, unless that sweep ran at
            // `now` or later: then nothing can have, and a full shard is not rescanned for
            // every refused request.
            if shard.clean_at.is_some_and(|t| now <= t) {
                return Err(ReplayError::Full);
            }
            shard.sweep(now);
            if shard.live.len() >= self.per_shard {
                return Err(ReplayError::Full);
            }
            shard.live.insert(fp, until);
        }
        if shard.clean_at.is_some_and(|t| until <= t) {
            // Recorded already expired (a caller's odd `until`): the shard is no longer clean.
            shard.clean_at = None;
        }
        Ok(true)
    }
}

#[async_trait::async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn first_use(&self, id: &str, now: UnixTime, until: UnixTime) -> Result<bool, ReplayError> {
        self.check(id, now, until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_until_expiry_then_forgotten() {
        let g = MemoryReplayGuard::new(100);
        assert_eq!(g.check("a", 100, 110), Ok(true));
        assert_eq!(g.check("a", 109, 110), Ok(false));
        assert_eq!(g.check("a", 110, 120), Ok(true));
    }

    #[test]
    fn full_store_refuses_instead_of_evicting() {
        let g = MemoryReplayGuard::new(SHARDS); // one entry per shard
        let mut accepted = Vec::new();
        let mut refused = 0;
        for i in 0..200 {
            let id = format!("id-{i}");
            match g.check(&id, 100, 1_000) {
                Ok(true) => accepted.push(id),
                Err(ReplayError::Full) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(refused > 0);
        // Every accepted id is still remembered: nothing live was evicted.
        for id in &accepted {
            assert_eq!(g.check(id, 101, 1_000), Ok(false));
        }
        // Once entries expire, capacity returns.
        assert_eq!(g.check("late", 1_000, 2_000), Ok(true));
    }

    #[test]
    fn full_store_across_all_shards_refuses_then_recovers_on_expiry() {
        let g = MemoryReplayGuard::new(SHARDS * 8);
        let ids: Vec<String> = (0..SHARDS * 64).map(|i| format!("jti-{i}")).collect();
        let mut accepted = Vec::new();
        for id in &ids {
            match g.check(id, 100, 200) {
                Ok(true) => accepted.push(id),
                Err(ReplayError::Full) => {}
                other => panic!("{other:?}"),
            }
        }
        // Every shard filled to exactly its share, and not one entry more.
        assert_eq!(accepted.len(), SHARDS * 8);
        assert_eq!(g.len(), SHARDS * 8);
        // Refusals at the same second are stable (no sweep can free anything), and every
        // accepted id is still a replay, at the last second of its life too.
        for id in &ids {
            let expected = if accepted.contains(&id) {
                Ok(false)
            } else {
                Err(ReplayError::Full)
            };
            assert_eq!(g.check(id, 199, 200), expected, "{id}");
        }
        // At expiry every accepted id can be used again, once (and no more than fit).
        for id in &accepted {
            assert_eq!(g.check(id, 200, 300), Ok(true), "{id}");
            assert_eq!(g.check(id, 201, 300), Ok(false), "{id}");
        }
    }

    #[test]
    fn entry_recorded_already_expired_still_frees_room() {
        let g = MemoryReplayGuard::new(1); // one entry per shard
        // Fill shards at t=100 with records that are already dead (until <= now) ...
        let ids: Vec<String> = (0..SHARDS * 16).map(|i| format!("x-{i}")).collect();
        for id in &ids {
            let _ = g.check(id, 100, 100);
        }
        // ... so at the same second every shard can still take a live one.
        let mut live = 0;
        for i in 0..SHARDS * 16 {
            if g.check(&format!("y-{i}"), 100, 500) == Ok(true) {
                live += 1;
            }
        }
        assert_eq!(live, SHARDS);
    }

    #[test]
    fn poisoned_shard_keeps_its_records() {
        let g = std::sync::Arc::new(MemoryReplayGuard::new(1_000));
        assert_eq!(g.check("p", 100, 200), Ok(true));
        for shard in g.shards.iter() {
            let s = &shard.0;
            let _ = std::thread::scope(|t| {
                t.spawn(|| {
                    let _held = s.lock();
                    panic!("poison");
                })
                .join()
            });
            assert!(shard.0.is_poisoned());
        }
        assert_eq!(g.check("p", 101, 200), Ok(false));
        assert_eq!(g.check("q", 101, 200), Ok(true));
    }

    #[test]
    fn keys_differ_per_guard_and_stay_out_of_debug() {
        let (a, b) = (MemoryReplayGuard::new(10), MemoryReplayGuard::new(10));
        assert_ne!(a.fingerprint("same"), b.fingerprint("same"));
        assert_eq!(a.fingerprint("same"), a.fingerprint("same"));
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("k0") && !dbg.contains("Hasher"), "{dbg}");
    }

    #[test]
    fn shard_count_grows_with_capacity_within_bounds() {
        assert_eq!(shard_count(0), SHARDS);
        assert_eq!(shard_count(SHARDS), SHARDS);
        assert_eq!(shard_count(100_000), 64);
        assert_eq!(shard_count(1_000_000), MAX_SHARDS);
        assert_eq!(shard_count(usize::MAX), MAX_SHARDS);
        for c in [1, 1_000, 16_384, 100_000, 1_000_000, 2_000_000, 50_000_000] {
            let n = shard_count(c);
            assert!(n.is_power_of_two() && (SHARDS..=MAX_SHARDS).contains(&n));
            assert!(n == SHARDS || c / n >= MIN_PER_SHARD);
        }
    }
}
