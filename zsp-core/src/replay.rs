//! Single-use tokens: a `jti` is accepted once and remembered until it can no longer verify.
//!
//! Invariant (DESIGN 4 and the TinyLFU lesson): a replay store never forgets an unexpired
//! entry. [`MemoryReplayGuard`] is bounded by a capacity; when it is full of live entries it
//! refuses to record new single-use tokens ([`ReplayError::Full`], a 503) instead of evicting
//! one and letting its replay through. A store that cannot answer denies; it never allows.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
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

const SHARDS: usize = 16;
const SWEEP_INTERVAL_SECS: u64 = 5;

#[derive(Debug, Default)]
struct Shard {
    live: HashMap<Box<str>, UnixTime>,
    next_sweep: UnixTime,
}

impl Shard {
    fn sweep(&mut self, now: UnixTime) {
        self.live.retain(|_, until| *until > now);
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL_SECS);
    }
}

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
#[derive(Debug)]
pub struct MemoryReplayGuard {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryReplayGuard {
    /// A guard holding at most `capacity` live entries (rounded up to a multiple of the shard
    /// count).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// Number of recorded entries, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.live.len()).unwrap_or(0))
            .sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous check behind [`ReplayGuard::first_use`].
    pub fn check(&self, id: &str, now: UnixTime, until: UnixTime) -> Result<bool, ReplayError> {
        let idx = (self.hasher.hash_one(id) as usize) % SHARDS;
        // A poisoned shard means a panic mid-update elsewhere; its contents are still a set of
        // recorded ids, so keep using them rather than failing open or closed for good.
        let mut shard = self.shards[idx].lock().unwrap_or_else(|p| p.into_inner());
        if now >= shard.next_sweep {
            shard.sweep(now);
        }
        let len = shard.live.len();
        match shard.live.entry(id.into()) {
            Entry::Occupied(mut e) => {
                if *e.get() > now {
                    Ok(false)
                } else {
                    // Expired record: this is a new use of an id whose old token is dead.
                    e.insert(until);
                    Ok(true)
                }
            }
            Entry::Vacant(v) => {
                if len < self.per_shard {
                    v.insert(until);
                    Ok(true)
                } else {
                    drop(v);
                    shard.sweep(now);
                    if shard.live.len() < self.per_shard {
                        shard.live.insert(id.into(), until);
                        Ok(true)
                    } else {
                        Err(ReplayError::Full)
                    }
                }
            }
        }
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
}
