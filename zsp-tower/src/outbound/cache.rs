//! Tokens kept for seconds: [`CachedTokenSource`] in front of any [`TokenSource`], and
//! [`PerRequest`] for APIs that demand a fresh single-use token per call.
//!
//! Invariants:
//! * One fetch per key at a time: concurrent misses for the same (audience, scopes, key)
//!   wait for the one fetch in flight instead of starting their own.
//! * A token is handed out only before its real expiry. From `expires_at − margin` on it is
//!   still handed out while one background task fetches its successor.
//! * Failures are never cached as results, but each key backs off exponentially after a
//!   failure: within a backoff window callers get [`FetchError::BrokerUnavailable`] at once and
//!   the broker sees no request, so an outage never turns into a storm. A still-valid token is
//!   served throughout an outage.
//!
//! Time comes from an injectable [`Clock`]; give the token endpoint the same clock so that
//! `expires_at` and "now" agree.
//!
//! One cache wraps one source, so the source (its token endpoint and client) is implicitly
//! part of every key. Fetches and refreshes get a `zsp.token_cache.fetch` span (source,
//! audience, `cache` = miss / refresh, latency); hits only a TRACE event, because the hit path
//! is about a hundred nanoseconds and a span would cost more than the lookup.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;
use zsp_core::{Clock, SystemClock, UnixTime};

use super::source::{AccessToken, FetchError, TokenRequest, TokenSource};

#[derive(Default)]
struct State {
    token: Option<AccessToken>,
    /// When `token` enters its refresh margin: worked out once per token, not on every hit.
    refresh_at: UnixTime,
    refreshing: bool,
    failures: u32,
    retry_at: UnixTime,
    last_error: Option<String>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    // Held for the duration of a fetch: the queue of waiters behind it is the coalescing.
    fetch: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (plain field
        // writes), so a poisoned lock is used as is rather than failing every caller.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    refresh_window_hits: AtomicU64,
    waited: AtomicU64,
    fetches: AtomicU64,
    failures: AtomicU64,
    fast_failures: AtomicU64,
    refreshing: AtomicUsize,
}

/// A snapshot of a cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Calls answered from the cache without waiting (refresh-window hits included).
    pub hits: u64,
    /// Of those, calls served while the token was inside its refresh margin.
    pub refresh_window_hits: u64,
    /// Calls that had to wait for a fetch (a cold or expired key).
    pub waited: u64,
    /// Fetches sent to the inner source (foreground and background).
    pub fetches: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Calls refused at once because the key was backing off.
    pub fast_failures: u64,
}

/// The hasher of the slot map. The keys are [`TokenRequest`]s the application configures or
/// builds (audiences and scopes it chose), not attacker-controlled input, so a fast
/// multiplicative hash (FxHash-style) replaces SipHash, whose HashDoS resistance buys nothing
/// here and which was a third of a hit. A poor distribution could only make lookups slower,
/// never return the wrong slot: keys are still compared in full.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if let Some((word, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*word)));
            bytes = rest;
        }
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply leaves its best-mixed bits at the top; the table indexes by the low ones.
        self.0.rotate_left(26)
    }
}

type SlotMap = std::collections::HashMap<TokenRequest, Arc<Slot>, std::hash::BuildHasherDefault<KeyHasher>>;

/// The slots per token request: a read-mostly map, so a hit costs one shared lock and one hash
/// (a general-purpose cache's admission and housekeeping cost more than the rest of a hit).
/// Bounded: when full, slots holding no token are dropped first, then everything; dropping
/// is always safe here, it only costs a fetch.
struct Slots {
    map: std::sync::RwLock<SlotMap>,
    max: usize,
}

impl Slots {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, SlotMap> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, req: &TokenRequest) -> Option<Arc<Slot>> {
        self.read().get(req).cloned()
    }

    fn get_or_insert(&self, req: &TokenRequest) -> Arc<Slot> {
        if let Some(slot) = self.get(req) {
            return slot;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(req) && map.len() >= self.max {
            map.retain(|_, slot| slot.state().token.is_some());
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.entry(req.clone())
            .or_insert_with(|| Arc::new(Slot::default()))
            .clone()
    }

    fn len(&self) -> usize {
        self.read().len()
    }
}

struct Inner<S> {
    source: S,
    slots: Slots,
    clock: Arc<dyn Clock>,
    margin_percent: u64,
    min_margin: u64,
    backoff_initial: u64,
    backoff_max: u64,
    counters: Counters,
}

/// A caching, coalescing, backing-off [`TokenSource`]. Cheap to clone (one `Arc`); clones
/// share the cache.
///
/// ```
/// # async fn demo(endpoint: zsp_tower::outbound::TokenEndpoint) -> Result<(), zsp_tower::outbound::FetchError> {
/// use zsp_tower::outbound::{CachedTokenSource, ClientCredentials, TokenRequest, TokenSource};
/// let tokens = CachedTokenSource::new(ClientCredentials::new(endpoint));
/// let req = TokenRequest::new("https://orders.example").scopes(["orders:read"]);
/// let a = tokens.token(&req).await?; // one fetch
/// let b = tokens.token(&req).await?; // cached
/// assert!(a.same_value(&b));
/// # Ok(()) }
/// ```
pub struct CachedTokenSource<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for CachedTokenSource<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: TokenSource> std::fmt::Debug for CachedTokenSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTokenSource")
            .field("source", &self.inner.source.id())
            .field("entries", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`CachedTokenSource`].
#[derive(Debug)]
pub struct CachedTokenSourceBuilder<S> {
    source: S,
    clock: Arc<dyn Clock>,
    margin_percent: u64,
    min_margin: u64,
    backoff_initial: u64,
    backoff_max: u64,
    max_entries: u64,
}

impl<S: TokenSource> CachedTokenSourceBuilder<S> {
    /// Uses `clock` for "now" (tests). Give the inner source the same clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Refresh margin: refresh once less than `percent` % of the lifetime, and at least
    /// `min`, is left. Default 20 % and 5 s.
    pub fn refresh_margin(mut self, percent: u8, min: Duration) -> Self {
        self.margin_percent = u64::from(percent.min(100));
        self.min_margin = min.as_secs();
        self
    }
    /// Backoff after a failed fetch: `initial`, doubling per consecutive failure up to `max`.
    /// Default 1 s and 30 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial.as_secs().max(1);
        self.backoff_max = max.as_secs().max(self.backoff_initial);
        self
    }
    /// Most (audience, scopes, key) entries kept (default 10,000).
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n.max(1);
        self
    }
    /// Builds the cache.
    pub fn build(self) -> CachedTokenSource<S> {
        CachedTokenSource {
            inner: Arc::new(Inner {
                source: self.source,
                slots: Slots {
                    map: Default::default(),
                    max: usize::try_from(self.max_entries).unwrap_or(usize::MAX),
                },
                clock: self.clock,
                margin_percent: self.margin_percent,
                min_margin: self.min_margin,
                backoff_initial: self.backoff_initial,
                backoff_max: self.backoff_max,
                counters: Counters::default(),
            }),
        }
    }
}

enum Lookup {
    Hit(AccessToken),
    Refused(FetchError),
    Miss,
}

impl<S: TokenSource> CachedTokenSource<S> {
    /// A cache with the defaults (20 % / 5 s margin, 1–30 s backoff, system clock).
    pub fn new(source: S) -> Self {
        Self::builder(source).build()
    }

    /// Configures a cache over `source`.
    pub fn builder(source: S) -> CachedTokenSourceBuilder<S> {
        CachedTokenSourceBuilder {
            source,
            clock: Arc::new(SystemClock),
            margin_percent: 20,
            min_margin: 5,
            backoff_initial: 1,
            backoff_max: 30,
            max_entries: 10_000,
        }
    }

    /// The wrapped source.
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// Counters since creation.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            refresh_window_hits: c.refresh_window_hits.load(Ordering::Relaxed),
            waited: c.waited.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            fast_failures: c.fast_failures.load(Ordering::Relaxed),
        }
    }

    /// Background refreshes currently running.
    pub fn refreshes_in_flight(&self) -> usize {
        self.inner.counters.refreshing.load(Ordering::SeqCst)
    }

    /// Drops whatever token is cached for `req`, whichever it is.
    pub fn invalidate_all_for(&self, req: &TokenRequest) {
        if let Some(slot) = self.inner.slots.get(req) {
            slot.state().token = None;
        }
    }
}

struct RefreshDone<S>(Arc<Inner<S>>, Arc<Slot>);

impl<S> Drop for RefreshDone<S> {
    fn drop(&mut self) {
        self.1.state().refreshing = false;
        self.0.counters.refreshing.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S: TokenSource> Inner<S> {
    fn margin(&self, token: &AccessToken) -> u64 {
        let lifetime = token.lifetime();
        // u128: a broker may send an absurd expires_in; that must not overflow.
        let share = (u128::from(lifetime) * u128::from(self.margin_percent) / 100) as u64;
        share.max(self.min_margin).min(lifetime)
    }

    fn backoff(&self, failures: u32) -> u64 {
        let shift = failures.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1u64 << shift)
            .min(self.backoff_max)
    }

    /// The non-waiting part of [`TokenSource::token`]: a hit or a refusal is answered from
    /// under the map's read lock (no `Arc<Slot>` clone); a miss hands back the slot to wait on.
    fn probe(self: &Arc<Self>, req: &TokenRequest) -> Result<Result<AccessToken, FetchError>, Arc<Slot>> {
        {
            let map = self.slots.read();
            if let Some(slot) = map.get(req) {
                return self.settle(slot, req);
            }
        }
        let slot = self.slots.get_or_insert(req);
        self.settle(&slot, req)
    }

    fn settle(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        req: &TokenRequest,
    ) -> Result<Result<AccessToken, FetchError>, Arc<Slot>> {
        match self.lookup(slot, req, true) {
            Lookup::Hit(t) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(source = %self.source.id(), cache = "hit", "token from cache");
                Ok(Ok(t))
            }
            Lookup::Refused(e) => {
                self.counters.fast_failures.fetch_add(1, Ordering::Relaxed);
                Ok(Err(e))
            }
            Lookup::Miss => Err(Arc::clone(slot)),
        }
    }

    /// Looks at the slot without waiting. `allow_refresh` starts a background refresh when
    /// the token is inside its margin.
    fn lookup(self: &Arc<Self>, slot: &Arc<Slot>, req: &TokenRequest, allow_refresh: bool) -> Lookup {
        let now = self.clock.now();
        let mut st = slot.state();
        if let Some(token) = &st.token {
            if now < token.expires_at() {
                let token = token.clone();
                if now >= st.refresh_at {
                    self.counters.refresh_window_hits.fetch_add(1, Ordering::Relaxed);
                    if allow_refresh && !st.refreshing && now >= st.retry_at && self.spawn_refresh(slot, req)
                    {
                        st.refreshing = true;
                    }
                }
                return Lookup::Hit(token);
            }
            // Expired tokens are never handed out; forget it.
            st.token = None;
        }
        if now < st.retry_at {
            return Lookup::Refused(FetchError::BrokerUnavailable {
                retry_after_secs: st.retry_at - now,
                last_error: st.last_error.clone().unwrap_or_default(),
            });
        }
        Lookup::Miss
    }

    fn spawn_refresh(self: &Arc<Self>, slot: &Arc<Slot>, req: &TokenRequest) -> bool {
        // Without a runtime there is nobody to run a background task; the caller keeps the
        // valid token and the first call after expiry fetches in the foreground.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let this = Arc::clone(self);
        let slot = Arc::clone(slot);
        let req = req.clone();
        self.counters.refreshing.fetch_add(1, Ordering::SeqCst);
        handle.spawn(async move {
            // Clears the flags even if this task is cancelled mid-fetch (runtime shutdown), so
            // the slot can refresh again.
            let _done = RefreshDone(Arc::clone(&this), Arc::clone(&slot));
            let _guard = slot.fetch.lock().await;
            // A foreground fetch may have replaced the token, or failed and started a backoff,
            // while this task waited for the lock.
            let still_needed = {
                let st = slot.state();
                let now = this.clock.now();
                now >= st.retry_at
                    && match &st.token {
                        Some(_) => now >= st.refresh_at,
                        None => true,
                    }
            };
            if still_needed {
                // The result is recorded in the slot; errors are already logged and backed off.
                let _ = this.fetch(&slot, &req, "refresh").await;
            }
        });
        true
    }

    /// The miss path: waits for the fetch in flight, if any, then fetches unless that one
    /// settled the question.
    async fn wait_and_fetch(
        self: &Arc<Self>,
        slot: Arc<Slot>,
        req: &TokenRequest,
    ) -> Result<AccessToken, FetchError> {
        self.counters.waited.fetch_add(1, Ordering::Relaxed);
        let _guard = slot.fetch.lock().await;
        // Whoever held the lock before us may have fetched (use it) or failed (back off).
        match self.lookup(&slot, req, false) {
            Lookup::Hit(t) => Ok(t),
            Lookup::Refused(e) => {
                self.counters.fast_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
            Lookup::Miss => self.fetch(&slot, req, "miss").await,
        }
    }

    /// Fetches and records the outcome. Call with `slot.fetch` held.
    async fn fetch(
        &self,
        slot: &Slot,
        req: &TokenRequest,
        kind: &'static str,
    ) -> Result<AccessToken, FetchError> {
        let span = tracing::info_span!(
            "zsp.token_cache.fetch",
            source = %self.source.id(),
            audience = req.audience().unwrap_or(""),
            cache = kind,
            latency_ms = tracing::field::Empty,
        );
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.source.token(req).instrument(span.clone()).await;
        span.record("latency_ms", started.elapsed().as_millis() as u64);
        let now = self.clock.now();
        let mut st = slot.state();
        match &result {
            Ok(token) => {
                st.refresh_at = token.expires_at().saturating_sub(self.margin(token));
                st.token = Some(token.clone());
                st.failures = 0;
                st.retry_at = 0;
                st.last_error = None;
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                st.failures = st.failures.saturating_add(1);
                st.retry_at = now.saturating_add(self.backoff(st.failures));
                st.last_error = Some(e.to_string());
                // A token that is still valid stays: it is served until its real expiry.
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl<S: TokenSource> TokenSource for CachedTokenSource<S> {
    async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
        let inner = &self.inner;
        let slot = match inner.probe(req) {
            Ok(answer) => return answer,
            Err(slot) => slot,
        };
        // Boxed: the waiting and fetching state is large, and inline it would make every hit
        // allocate and copy a future sized for a miss.
        Box::pin(inner.wait_and_fetch(slot, req)).await
    }

    /// A hit, or a refusal during a backoff, exactly as [`token`](Self::token) would answer
    /// it (a token inside its refresh margin starts the background refresh here too).
    fn token_now(&self, req: &TokenRequest) -> Option<Result<AccessToken, FetchError>> {
        self.inner.probe(req).ok()
    }

    async fn invalidate(&self, req: &TokenRequest, rejected: &AccessToken) {
        if let Some(slot) = self.inner.slots.get(req) {
            let mut st = slot.state();
            // Only the rejected token: a concurrent 401 must not throw away the replacement
            // another request already fetched.
            if st.token.as_ref().is_some_and(|t| t.same_value(rejected)) {
                st.token = None;
            }
        }
    }

    fn id(&self) -> &str {
        self.inner.source.id()
    }
}

/// No caching: every call fetches a fresh token, for APIs that accept each token once.
///
/// ```
/// # fn demo(endpoint: zsp_tower::outbound::TokenEndpoint) {
/// use zsp_tower::outbound::{ClientCredentials, PerRequest};
/// let single_use = PerRequest::new(ClientCredentials::new(endpoint));
/// # let _ = single_use; }
/// ```
#[derive(Debug, Clone)]
pub struct PerRequest<S>(S);

impl<S: TokenSource> PerRequest<S> {
    /// Wraps `source`.
    pub fn new(source: S) -> Self {
        Self(source)
    }
}

#[async_trait::async_trait]
impl<S: TokenSource> TokenSource for PerRequest<S> {
    async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
        let span = tracing::info_span!(
            "zsp.token_cache.fetch",
            source = %self.0.id(),
            audience = req.audience().unwrap_or(""),
            cache = "per-request",
        );
        self.0.token(req).instrument(span).await
    }
    fn id(&self) -> &str {
        self.0.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::TokenType;
    use zsp_core::ManualClock;

    #[test]
    fn slot_map_is_bounded_and_keeps_live_slots_first() {
        let slots = Slots {
            map: Default::default(),
            max: 4,
        };
        let live = TokenRequest::new("live");
        let slot = slots.get_or_insert(&live);
        slot.state().token = Some(AccessToken::new("t", TokenType::Bearer, 0, u64::MAX, None).unwrap());
        for i in 0..3 {
            slots.get_or_insert(&TokenRequest::new(format!("a{i}")));
        }
        assert_eq!(slots.len(), 4);
        // Full: the tokenless slots go, the live one stays.
        slots.get_or_insert(&TokenRequest::new("new"));
        assert_eq!(slots.len(), 2);
        assert!(Arc::ptr_eq(&slots.get(&live).unwrap(), &slot));
    }

    #[derive(Debug)]
    struct Fake {
        clock: ManualClock,
        calls: AtomicU64,
        fail: std::sync::atomic::AtomicBool,
        ttl: u64,
    }

    #[async_trait::async_trait]
    impl TokenSource for Fake {
        async fn token(&self, _req: &TokenRequest) -> Result<AccessToken, FetchError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(FetchError::Status(503));
            }
            let now = self.clock.now();
            AccessToken::new(format!("tok-{n}"), TokenType::Bearer, now, now + self.ttl, None)
        }
    }

    fn setup(ttl: u64) -> (ManualClock, CachedTokenSource<Arc<Fake>>, Arc<Fake>) {
        let clock = ManualClock::new(1_000);
        let fake = Arc::new(Fake {
            clock: clock.clone(),
            calls: AtomicU64::new(0),
            fail: false.into(),
            ttl,
        });
        let cache = CachedTokenSource::builder(Arc::clone(&fake))
            .clock(clock.clone())
            .build();
        (clock, cache, fake)
    }

    #[tokio::test]
    async fn margin_is_20_percent_with_a_5_s_floor() {
        let (clock, cache, fake) = setup(100);
        let req = TokenRequest::new("a");
        cache.token(&req).await.unwrap();
        clock.advance(79);
        cache.token(&req).await.unwrap();
        assert_eq!(cache.refreshes_in_flight(), 0);
        clock.advance(1); // 20 s left: inside the margin
        let t = cache.token(&req).await.unwrap();
        assert_eq!(t.secret(), "tok-0", "the caller keeps the valid token");
        while cache.refreshes_in_flight() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.token(&req).await.unwrap().secret(), "tok-1");
        assert_eq!(cache.stats().waited, 1);

        let (_, cache, _) = setup(10);
        let t = cache.token(&req).await.unwrap();
        assert_eq!(cache.inner.margin(&t), 5);
        let huge = AccessToken::new("x", TokenType::Bearer, 1, u64::MAX, None).unwrap();
        assert_eq!(cache.inner.margin(&huge), (u64::MAX - 1) / 5);
    }

    #[tokio::test]
    async fn token_now_answers_as_token_does_without_waiting() {
        let (clock, cache, fake) = setup(100);
        let req = TokenRequest::new("a");
        assert!(cache.token_now(&req).is_none(), "cold: only token() can fetch");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0, "token_now never fetches");
        let t0 = cache.token(&req).await.unwrap();
        let hit = cache.token_now(&req).unwrap().unwrap();
        assert!(hit.same_value(&t0));
        // Inside the margin: the valid token, and the background refresh starts.
        clock.advance(80);
        assert!(cache.token_now(&req).unwrap().unwrap().same_value(&t0));
        while cache.refreshes_in_flight() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.token_now(&req).unwrap().unwrap().secret(), "tok-1");
        // Expired and the source failing: the backoff's refusal, with no wait.
        fake.fail.store(true, Ordering::SeqCst);
        clock.advance(100);
        assert!(cache.token_now(&req).is_none(), "expired: a fetch is needed");
        assert!(cache.token(&req).await.is_err());
        assert!(matches!(
            cache.token_now(&req),
            Some(Err(FetchError::BrokerUnavailable { .. }))
        ));
        // Through an Arc, as the attach layer holds its source.
        let shared: Arc<dyn TokenSource> = Arc::new(cache);
        assert!(matches!(shared.token_now(&req), Some(Err(_))));
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_and_valid_tokens_survive_them() {
        let (clock, cache, fake) = setup(60);
        let req = TokenRequest::new("a");
        cache.token(&req).await.unwrap();
        fake.fail.store(true, Ordering::SeqCst);
        clock.advance(50); // inside margin: background refresh fails
        assert!(cache.token(&req).await.is_ok());
        while cache.refreshes_in_flight() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(cache.token(&req).await.is_ok(), "still valid until 60 s");
        clock.advance(10); // expired
        let mut errors = 0;
        for _ in 0..100 {
            if cache.token(&req).await.is_err() {
                errors += 1;
            }
        }
        assert_eq!(errors, 100);
        // 1 (cold) + 1 (refresh) + 1 (after expiry, backoff 1 s had ended? no: 2 s) at most.
        assert!(fake.calls.load(Ordering::SeqCst) <= 3);
        assert!(matches!(
            cache.token(&req).await,
            Err(FetchError::BrokerUnavailable { .. })
        ));
        assert_eq!(cache.inner.backoff(1), 1);
        assert_eq!(cache.inner.backoff(3), 4);
        assert_eq!(cache.inner.backoff(30), 30);
    }

    #[tokio::test]
    async fn invalidate_drops_only_the_rejected_token() {
        let (_, cache, fake) = setup(60);
        let req = TokenRequest::new("a");
        let t0 = cache.token(&req).await.unwrap();
        let other = AccessToken::new("zzz", TokenType::Bearer, 0, 1, None).unwrap();
        cache.invalidate(&req, &other).await;
        assert!(cache.token(&req).await.unwrap().same_value(&t0));
        cache.invalidate(&req, &t0).await;
        assert!(!cache.token(&req).await.unwrap().same_value(&t0));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }
}
