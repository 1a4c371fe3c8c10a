//! Redis-backed replay guard and revocation, shared by all replicas (feature `redis`).
//!
//! One process can remember single-use `jti`s and revocations in memory; N replicas behind a
//! load balancer need one shared record, or a token replayed to another replica is accepted
//! again and a revocation reaches only the replica that received it. This module keeps both in
//! one Redis, at one round trip per check.
//!
//! # Pieces
//!
//! * [`RedisStore`]: one shared, multiplexed connection ([`redis::aio::ConnectionManager`]),
//!   a key prefix and a per-check time budget. Cheap to clone; every clone shares the
//!   connection, so the hot path never opens one.
//! * [`RedisReplayGuard`]: a [`ReplayGuard`]. First use is decided by one atomic
//!   `SET key 1 NX PX ttl` (the key exists until `exp + leeway`, so every replica sees it).
//! * [`RedisRevocation`]: a [`Revocation`]. `is_revoked` reads the token's `jti`, subject and
//!   client records with one `MGET`; the writes (`revoke_*`) keep the maximum of what was
//!   written, through a small Lua script, so concurrent revocations never shorten each other.
//!   On a single-use route, [`Revocation::check_single_use`] runs one Lua script that checks
//!   the three revocation records and, only if none applies, does the same `SET NX` as the
//!   replay guard: revocation and replay in ONE round trip, and a revoked token never burns
//!   its `jti`. (Disable with [`RedisRevocation::records_single_use`].)
//!
//! # Keys
//!
//! `{prefix}replay:{h}`, `{prefix}revoked:jti:{h}`, `{prefix}revoked:sub:{h}` and
//! `{prefix}revoked:client:{h}`, where `h` is the unpadded base64url SHA-256 of the identifier:
//! raw `jti`s, subjects and client ids never appear in Redis keys (they may be logged by
//! `MONITOR`, slow logs or key-space tooling), key length is bounded whatever the token says,
//! and no identifier can smuggle a separator into another namespace. The default prefix is
//! [`DEFAULT_PREFIX`]; give each deployment (or test run) its own.
//!
//! # Consistency
//!
//! Strong, per check: every `first_use`, `is_revoked` and `check_single_use` is a round trip
//! to the Redis primary, with no local cache. `SET NX` (alone or inside the script) is atomic,
//! so of any number of concurrent first uses of one `jti` on any number of replicas exactly
//! one wins; a revocation acknowledged by Redis is seen by every replica's next check. There
//! is no pub/sub-fed local view: it would save the round trip only where no replay check
//! needs one anyway, at the price of revocation becoming eventually consistent.
//!
//! What Redis itself guarantees bounds what this module can: with asynchronous replication, a
//! write acknowledged by a primary that fails over before replicating it is lost; a Redis
//! restarted without persistence forgets every record, so a single-use token used before the
//! restart can be used once more until it expires (at most the policy's maximum lifetime plus
//! leeway, 310 s by default). Run Redis with AOF persistence where that window matters.
//!
//! # Failure behaviour (fail closed)
//!
//! Every call has a budget ([`DEFAULT_BUDGET`], 50 ms, configurable): a Redis that does not
//! answer within it (down, unreachable, overloaded, reconnecting) is an error, never an answer.
//! The [`crate::Verifier`] turns a replay error into [`crate::Denial::StoreUnavailable`]
//! (`"replay"`, 503) and a revocation error, the combined single-use script's included, into
//! `StoreUnavailable("revocation")` (503); both are logged at warn on target `zsp::verify`
//! with the cause, and audited with reason `store_unavailable`.
//!
//! A check that ran out of budget may still reach Redis later (a stalled server processes its
//! backlog when it resumes): its `jti` may then be recorded although the request was denied
//! with 503. That errs on the safe side; a client that gets a 503 on a single-use route
//! retries with a fresh token, never with the same one.
//!
//! Revocation may instead be configured to fail open with [`RedisRevocation::fail_open`]:
//! then an unanswered check counts as "not revoked", and every such occurrence is logged at
//! warn on target `zsp::audit` with reason `revocation_unavailable_fail_open`. Replay never
//! fails open: a single-use route that cannot record its `jti` always denies.
//!
//! When Redis comes back, the connection manager reconnects by itself (backoff capped by
//! [`RedisStoreBuilder::reconnect_max_delay`], 1 s by default): the verifier keeps running and
//! starts allowing again without being rebuilt.
//!
//! # Example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use zsp_core::redis::RedisStore;
//! use zsp_core::{testing::TestIssuer, Policy, RouteRule, Verifier};
//!
//! let issuer = TestIssuer::es256("https://broker.example");
//! let policy = Policy::builder()
//!     .issuer("https://broker.example")
//!     .audience("payments-api")
//!     .route(RouteRule::post("/payments").all_of(["payments:write"]).single_use())
//!     .build()?;
//!
//! // Lazy: succeeds even while Redis is down; checks fail closed until it answers.
//! let store = RedisStore::builder("redis://127.0.0.1:6379/")
//!     .prefix("payments-api:zsp:")
//!     .budget(Duration::from_millis(50))
//!     .build()?;
//! let verifier = Verifier::builder(policy, issuer.key_set())
//!     .replay_guard(Arc::new(store.replay_guard()))
//!     .revocation(Arc::new(store.revocation()))
//!     .build();
//! # let _ = verifier;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::replay::{ReplayError, ReplayGuard};
use crate::revoke::{Revocation, RevocationError, RevocationQuery, SingleUseCheck};

/// The key prefix used unless [`RedisStoreBuilder::prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "zsp:";
/// The time one check may take, connection (re-)establishment included, before it fails.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);
/// How long a subject or client revocation is kept past its cut-off time.
pub const DEFAULT_REVOCATION_RETENTION: Duration = Duration::from_secs(24 * 3600);

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(20);
// A failed reconnection round is restarted by the next request that sees the I/O error, so a
// few attempts per round are enough; more would only delay the error a caller sees.
const RECONNECT_RETRIES: usize = 6;

/// Keeps the larger of the stored and the new value, with the new value's expiry when it wins:
/// two revocations racing on one key never shorten each other.
const SET_MAX_SCRIPT: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Revocation and first use of a single-use token in one round trip. KEYS[1] is the replay
/// key, KEYS[2..] the revocation keys; ARGV[1] the replay TTL in ms, ARGV[2] the token's `iat`,
/// ARGV[3..] `j` (a jti record: presence revokes) or `c` (a cut-off: revokes `iat <= value`)
/// per revocation key. Returns 0 first use (now recorded), 1 revoked, 2 replayed.
const SINGLE_USE_SCRIPT: &str = r"
local iat = tonumber(ARGV[2])
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    if ARGV[i + 1] == 'j' then return 1 end
    local cutoff = tonumber(v)
    if (not cutoff) or iat <= cutoff then return 1 end
  end
end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
return 2
";

/// Why a [`RedisStore`] could not be built or reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL is not a Redis connection URL. (The URL itself is not repeated: it may hold a
    /// password.)
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// A setting is out of range.
    #[error("invalid Redis store configuration: {0}")]
    InvalidConfig(&'static str),
    /// Redis did not answer a `PING` ([`RedisStoreBuilder::connect`] only).
    #[error("Redis unreachable: {0}")]
    Unreachable(String),
}

/// Configures a [`RedisStore`]. Start with [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    budget: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    reconnect_max_delay: Duration,
    retention: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    // The URL may carry credentials (DESIGN invariant 6): never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("budget", &self.budget)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default [`DEFAULT_PREFIX`]). Replicas that must share records use the
    /// same prefix; unrelated services sharing one Redis use different ones.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// The time one check may take, waiting for a (re)connection included (default 50 ms).
    /// A slower answer is an error, which the verifier turns into a 503.
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }
    /// How long one connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// How long the connection waits for any reply before it is considered broken and
    /// replaced (default 1 s). Longer than the budget: a reply slower than the budget fails
    /// the check, but only a connection that stopped answering altogether is replaced.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
    /// The longest pause between reconnection attempts (default 1 s): roughly how long after
    /// Redis returns the first check succeeds again.
    pub fn reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.reconnect_max_delay = delay;
        self
    }
    /// How long a subject or client revocation is kept after its cut-off time (default 24 h).
    /// Must exceed the longest token lifetime plus leeway any verifier accepts: after it, a
    /// token issued before the cut-off would no longer be recognised as revoked.
    pub fn revocation_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Builds the store without touching the network: the first check connects. Succeeds while
    /// Redis is down (checks fail closed until it answers). Must be called inside a Tokio
    /// runtime, which runs the connection's background tasks.
    pub fn build(self) -> Result<RedisStore, RedisStoreError> {
        if self.budget.is_zero() {
            return Err(RedisStoreError::InvalidConfig("budget must be positive"));
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(RedisStoreError::InvalidConfig("timeouts must be positive"));
        }
        if self.retention.is_zero() {
            return Err(RedisStoreError::InvalidConfig(
                "revocation retention must be positive",
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| RedisStoreError::InvalidUrl(e.category().to_owned()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(self.reconnect_max_delay.max(RECONNECT_MIN_DELAY))
            .set_number_of_retries(RECONNECT_RETRIES);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisStoreError::InvalidUrl(e.to_string()))?;
        Ok(RedisStore(Arc::new(StoreInner {
            conn,
            prefix: self.prefix,
            budget: self.budget,
            retention_secs: self.retention.as_secs().max(1),
            set_max: redis::Script::new(SET_MAX_SCRIPT),
            single_use: redis::Script::new(SINGLE_USE_SCRIPT),
        })))
    }

    /// Builds the store and checks that Redis answers a `PING` within the connect timeout:
    /// for services that would rather not start than start unable to serve single-use routes.
    pub async fn connect(self) -> Result<RedisStore, RedisStoreError> {
        let timeout = self.connect_timeout.max(self.budget);
        let store = self.build()?;
        store.ping_within(timeout).await?;
        Ok(store)
    }
}

struct StoreInner {
    conn: ConnectionManager,
    prefix: String,
    budget: Duration,
    retention_secs: u64,
    set_max: redis::Script,
    single_use: redis::Script,
}

/// A shared Redis connection, key prefix and per-check budget, from which the
/// [`RedisReplayGuard`] and [`RedisRevocation`] of one service are made. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore(Arc<StoreInner>);

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.0.prefix)
            .field("budget", &self.0.budget)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Starts configuring a store for `url` (`redis://[:password@]host:port/db`, or
    /// `rediss://` when the `redis` crate's TLS features are enabled).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            budget: DEFAULT_BUDGET,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            reconnect_max_delay: DEFAULT_RECONNECT_MAX_DELAY,
            retention: DEFAULT_REVOCATION_RETENTION,
        }
    }

    /// A store with default settings that has answered one `PING`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, RedisStoreError> {
        Self::builder(url).connect().await
    }

    /// The replay guard on this store.
    pub fn replay_guard(&self) -> RedisReplayGuard {
        RedisReplayGuard { store: self.clone() }
    }

    /// The revocation store on this store (fail closed).
    pub fn revocation(&self) -> RedisRevocation {
        RedisRevocation {
            store: self.clone(),
            fail_open: false,
            records_single_use: true,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.0.prefix
    }

    /// The per-check budget.
    pub fn budget(&self) -> Duration {
        self.0.budget
    }

    /// Whether Redis answers a `PING` within the budget; for readiness probes.
    pub async fn ping(&self) -> Result<(), RedisStoreError> {
        self.ping_within(self.0.budget).await
    }

    async fn ping_within(&self, limit: Duration) -> Result<(), RedisStoreError> {
        let mut conn = self.0.conn.clone();
        let fut = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        within(limit, fut)
            .await
            .map(|_| ())
            .map_err(RedisStoreError::Unreachable)
    }

    /// The Redis key recording `id` as used: `{prefix}replay:{base64url(sha256(id))}`.
    pub fn replay_key(&self, id: &str) -> String {
        self.key("replay:", id)
    }

    /// The Redis key recording a revoked `jti`.
    pub fn revoked_jti_key(&self, jti: &str) -> String {
        self.key("revoked:jti:", jti)
    }

    /// The Redis key recording a subject's revocation cut-off.
    pub fn revoked_subject_key(&self, subject: &str) -> String {
        self.key("revoked:sub:", subject)
    }

    /// The Redis key recording a client's revocation cut-off.
    pub fn revoked_client_key(&self, client_id: &str) -> String {
        self.key("revoked:client:", client_id)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        let digest = crate::b64::encode(crate::crypto::sha256(id.as_bytes()));
        let mut key = String::with_capacity(self.0.prefix.len() + kind.len() + digest.len());
        key.push_str(&self.0.prefix);
        key.push_str(kind);
        key.push_str(&digest);
        key
    }

    /// Runs one command on a clone of the shared connection within the budget.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        within(self.0.budget, f(self.0.conn.clone())).await
    }

    async fn set_max(&self, key: String, value: u64, ttl_ms: u64) -> Result<(), String> {
        self.run(|mut conn| async move {
            self.0
                .set_max
                .key(key)
                .arg(value)
                .arg(ttl_ms)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(|_| ())
    }
}

async fn within<T>(limit: Duration, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Milliseconds from `now` to `until`, at least one second: Redis rejects a zero expiry, and a
/// record that outlives its token by a second costs nothing.
fn ttl_ms(now: UnixTime, until: UnixTime) -> u64 {
    until.saturating_sub(now).max(1).saturating_mul(1000)
}

/// A [`ReplayGuard`] shared by every replica using the same Redis and prefix.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use zsp_core::redis::RedisReplayGuard;
/// use zsp_core::ReplayGuard;
///
/// let guard = RedisReplayGuard::connect("redis://127.0.0.1:6379/").await?;
/// assert_eq!(guard.first_use("jti-1", 100, 400).await, Ok(true));
/// assert_eq!(guard.first_use("jti-1", 101, 400).await, Ok(false));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RedisReplayGuard {
    store: RedisStore,
}

impl RedisReplayGuard {
    /// A guard on a new default [`RedisStore`] that has answered one `PING`. To share one
    /// connection with a [`RedisRevocation`] or to configure it, use
    /// [`RedisStore::builder`] and [`RedisStore::replay_guard`].
    pub async fn connect(url: impl Into<String>) -> Result<Self, RedisStoreError> {
        Ok(RedisStore::connect(url).await?.replay_guard())
    }

    /// The store this guard writes to.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }
}

#[async_trait::async_trait]
impl ReplayGuard for RedisReplayGuard {
    async fn first_use(&self, id: &str, now: UnixTime, until: UnixTime) -> Result<bool, ReplayError> {
        let key = self.store.replay_key(id);
        let ttl = ttl_ms(now, until);
        let reply = self
            .store
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1u8)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<redis::Value>(&mut conn)
                    .await
            })
            .await
            .map_err(ReplayError::Unavailable)?;
        match reply {
            redis::Value::Okay => Ok(true),
            redis::Value::SimpleString(s) if s == "OK" => Ok(true),
            redis::Value::Nil => Ok(false),
            // Anything else is not an answer to SET NX: treat as no answer, never as "first".
            other => Err(ReplayError::Unavailable(format!(
                "unexpected SET reply {other:?}"
            ))),
        }
    }
}

/// A [`Revocation`] store shared by every replica (and the broker's `/revoke`) using the same
/// Redis and prefix. Fail closed unless [`RedisRevocation::fail_open`] says otherwise.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use zsp_core::redis::RedisRevocation;
/// use zsp_core::{Revocation, RevocationQuery};
///
/// let revocation = RedisRevocation::connect("redis://127.0.0.1:6379/").await?;
/// revocation.revoke_subject_before("svc-payments", 1_700_000_000).await?;
/// let q = RevocationQuery {
///     jti: Some("abc"),
///     sub: Some("svc-payments"),
///     client_id: None,
///     iat: 1_699_999_990,
///     now: 1_700_000_005,
/// };
/// assert!(revocation.is_revoked(&q).await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRevocation {
    store: RedisStore,
    fail_open: bool,
    records_single_use: bool,
}

impl fmt::Debug for RedisRevocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocation")
            .field("store", &self.store)
            .field("fail_open", &self.fail_open)
            .field("records_single_use", &self.records_single_use)
            .finish()
    }
}

impl RedisRevocation {
    /// Revocation on a new default [`RedisStore`] that has answered one `PING`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, RedisStoreError> {
        Ok(RedisStore::connect(url).await?.revocation())
    }

    /// **Fail open** when `on`: a revocation check that Redis does not answer within the budget
    /// counts as "not revoked" instead of denying with 503. Off by default (DESIGN invariant 1).
    ///
    /// This trades revocation for availability: while Redis is unreachable, revoked tokens are
    /// accepted until they expire. Every occurrence is logged at warn on target `zsp::audit`
    /// with reason `revocation_unavailable_fail_open`, the token's `jti`, subject and client.
    /// Writes (`revoke_*`) still report their errors. Replay checks never fail open.
    pub fn fail_open(mut self, on: bool) -> Self {
        self.fail_open = on;
        self
    }

    /// Whether this store fails open.
    pub fn is_fail_open(&self) -> bool {
        self.fail_open
    }

    /// The store this revocation reads and writes.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Whether this store also records the first use of single-use tokens, under the same keys
    /// as [`RedisStore::replay_guard`] (default on): a verifier with this revocation store then
    /// decides revocation and replay of a single-use token in ONE round trip (a Lua script),
    /// and does not consult its own replay guard for it. Turn off only when single use must be
    /// recorded somewhere else than this store.
    pub fn records_single_use(mut self, on: bool) -> Self {
        self.records_single_use = on;
        self
    }

    fn keys(&self, q: &RevocationQuery<'_>) -> (Vec<String>, Vec<Kind>) {
        let mut keys = Vec::with_capacity(4);
        let mut kinds = Vec::with_capacity(3);
        if let Some(jti) = q.jti {
            keys.push(self.store.revoked_jti_key(jti));
            kinds.push(Kind::Jti);
        }
        if let Some(sub) = q.sub {
            keys.push(self.store.revoked_subject_key(sub));
            kinds.push(Kind::Cutoff);
        }
        if let Some(client) = q.client_id {
            keys.push(self.store.revoked_client_key(client));
            kinds.push(Kind::Cutoff);
        }
        (keys, kinds)
    }

    async fn check(&self, q: &RevocationQuery<'_>) -> Result<bool, String> {
        let (keys, kinds) = self.keys(q);
        if keys.is_empty() {
            return Ok(false);
        }
        let values = self
            .store
            .run(|mut conn| async move {
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<Vec<Option<String>>>(&mut conn)
                    .await
            })
            .await?;
        if values.len() != kinds.len() {
            return Err(format!(
                "MGET returned {} values for {} keys",
                values.len(),
                kinds.len()
            ));
        }
        Ok(kinds.iter().zip(values).any(|(kind, value)| match (kind, value) {
            (_, None) => false,
            // The jti record lives exactly as long as the revocation: its presence is the answer.
            (Kind::Jti, Some(_)) => true,
            // A cut-off that does not parse was written by something else; refuse rather than
            // guess (fail closed).
            (Kind::Cutoff, Some(v)) => v.parse::<UnixTime>().map_or(true, |cutoff| q.iat <= cutoff),
        }))
    }

    async fn check_and_record(
        &self,
        q: &RevocationQuery<'_>,
        jti: &str,
        until: UnixTime,
    ) -> Result<SingleUseCheck, String> {
        let (rev_keys, kinds) = self.keys(q);
        let replay_key = self.store.replay_key(jti);
        let ttl = ttl_ms(q.now, until);
        let reply = self
            .store
            .run(|mut conn| async move {
                let mut call = self.store.0.single_use.key(replay_key);
                call.key(rev_keys).arg(ttl).arg(q.iat);
                for kind in &kinds {
                    call.arg(match kind {
                        Kind::Jti => "j",
                        Kind::Cutoff => "c",
                    });
                }
                call.invoke_async::<i64>(&mut conn).await
            })
            .await?;
        match reply {
            0 => Ok(SingleUseCheck::FirstUse),
            1 => Ok(SingleUseCheck::Revoked),
            2 => Ok(SingleUseCheck::Replayed),
            other => Err(format!("unexpected single-use script reply {other}")),
        }
    }
}

enum Kind {
    Jti,
    Cutoff,
}

#[async_trait::async_trait]
impl Revocation for RedisRevocation {
    async fn is_revoked(&self, q: &RevocationQuery<'_>) -> Result<bool, RevocationError> {
        match self.check(q).await {
            Ok(revoked) => Ok(revoked),
            Err(e) if self.fail_open => {
                tracing::warn!(
                    target: "zsp::audit",
                    reason = "revocation_unavailable_fail_open",
                    jti = q.jti,
                    sub = q.sub,
                    client_id = q.client_id,
                    error = %e,
                    "revocation store unavailable: FAILING OPEN as configured, token not checked"
                );
                Ok(false)
            }
            Err(e) => Err(RevocationError::Unavailable(e)),
        }
    }

    async fn check_single_use(
        &self,
        q: &RevocationQuery<'_>,
        jti: &str,
        until: UnixTime,
    ) -> Option<Result<SingleUseCheck, RevocationError>> {
        if !self.records_single_use {
            return None;
        }
        match self.check_and_record(q, jti, until).await {
            Ok(answer) => Some(Ok(answer)),
            // Fail-open covers revocation only: hand back to the verifier, which checks the two
            // separately, so revocation fails open (logged) while replay still fails closed.
            Err(_) if self.fail_open => None,
            Err(e) => Some(Err(RevocationError::Unavailable(e))),
        }
    }

    async fn revoke_jti(&self, jti: &str, until: UnixTime) -> Result<(), RevocationError> {
        let now = SystemClock.now();
        self.store
            .set_max(self.store.revoked_jti_key(jti), until, ttl_ms(now, until))
            .await
            .map_err(RevocationError::Unavailable)
    }

    async fn revoke_subject_before(&self, subject: &str, before: UnixTime) -> Result<(), RevocationError> {
        let key = self.store.revoked_subject_key(subject);
        self.revoke_cutoff(key, before).await
    }

    async fn revoke_client_before(&self, client_id: &str, before: UnixTime) -> Result<(), RevocationError> {
        let key = self.store.revoked_client_key(client_id);
        self.revoke_cutoff(key, before).await
    }
}

impl RedisRevocation {
    async fn revoke_cutoff(&self, key: String, before: UnixTime) -> Result<(), RevocationError> {
        let now = SystemClock.now();
        // Tokens issued up to `before` are dead by `before + retention`; so is the record.
        let until = before.max(now).saturating_add(self.store.0.retention_secs);
        self.store
            .set_max(key, before, ttl_ms(now, until))
            .await
            .map_err(RevocationError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_at_least_one_second() {
        assert_eq!(ttl_ms(100, 100), 1000);
        assert_eq!(ttl_ms(100, 50), 1000);
        assert_eq!(ttl_ms(100, 160), 60_000);
    }

    #[tokio::test]
    async fn keys_are_prefixed_hashed_and_never_raw() {
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .prefix("p:")
            .build()
            .unwrap();
        let k = store.replay_key("my-secret-jti");
        assert!(k.starts_with("p:replay:"));
        assert!(!k.contains("my-secret-jti"));
        assert_eq!(k.len(), "p:replay:".len() + 43);
        assert_ne!(store.revoked_jti_key("x"), store.revoked_subject_key("x"));
        assert_ne!(store.revoked_subject_key("x"), store.revoked_client_key("x"));
    }

    #[tokio::test]
    async fn bad_url_and_config_are_typed_errors() {
        assert!(matches!(
            RedisStore::builder("not a url").build(),
            Err(RedisStoreError::InvalidUrl(_))
        ));
        assert!(matches!(
            RedisStore::builder("redis://127.0.0.1/")
                .budget(Duration::ZERO)
                .build(),
            Err(RedisStoreError::InvalidConfig(_))
        ));
    }

    #[tokio::test]
    async fn debug_never_prints_the_url() {
        let b = RedisStore::builder("redis://:hunter2@127.0.0.1/");
        assert!(!format!("{b:?}").contains("hunter2"));
        let s = b.build().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", s.revocation()).contains("hunter2"));
    }

    #[tokio::test]
    async fn unreachable_redis_fails_closed_within_budget() {
        // Port 1 on loopback refuses connections: every check errors, none answers.
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .budget(Duration::from_millis(50))
            .build()
            .unwrap();
        let g = store.replay_guard();
        assert!(matches!(
            g.first_use("a", 100, 200).await,
            Err(ReplayError::Unavailable(_))
        ));
        let q = RevocationQuery {
            jti: Some("a"),
            sub: None,
            client_id: None,
            iat: 1,
            now: 2,
        };
        assert!(matches!(
            store.revocation().is_revoked(&q).await,
            Err(RevocationError::Unavailable(_))
        ));
        assert_eq!(store.revocation().fail_open(true).is_revoked(&q).await, Ok(false));
        assert!(store.revocation().revoke_jti("a", 10).await.is_err());
    }
}
