//! Keys from a remote JWKS: fetch, cache, rotation, stale-if-error.
//!
//! [`RemoteJwks`] is a [`KeySource`] for a [`crate::Verifier`]. It takes keys from a `jwks_uri`,
//! or discovers that URI from an issuer (RFC 8414 `/.well-known/oauth-authorization-server`,
//! then OpenID Connect `/.well-known/openid-configuration`; the document's `issuer` must equal
//! the configured issuer exactly, or the keys are refused).
//!
//! Invariants, each a lesson from verifiers that caused key-rotation outages (DESIGN.md):
//! * **Readers never wait.** The current key set lives in an `ArcSwap`; a verification loads
//!   it without a lock, whatever a fetch is doing.
//! * **Refresh per `Cache-Control`.** The document's `max-age` (clamped to [60 s, 24 h],
//!   default 5 min when absent) decides when keys are stale. The first read after that spawns
//!   one background refresh (on the current tokio runtime) and keeps using the current keys.
//! * **Unknown `kid` → one refetch, coalesced and rate-limited.** All concurrent requests that
//!   name an unknown `kid` share a single fetch, and fetches happen at most once per cooldown
//!   (10 s by default); a `kid` still unknown afterwards is denied (`UnknownKey`).
//! * **Stale-if-error.** If the endpoint is down or answers junk, the last good keys stay in use
//!   for up to `max_staleness` (24 h by default) after their last successful fetch, and every
//!   failure is logged on target `zsp::jwks`. A source that has never obtained keys yields none,
//!   so the verifier denies with `Denial::KeysUnavailable` (503): it fails closed.
//! * **Bounded input.** Documents are streamed and cut off at 256 KiB; the default client
//!   connects within 2 s and finishes within 5 s. A client you supply keeps its own connect
//!   timeout, but every request still carries the 5 s total timeout.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use zsp_core::{jwks::RemoteJwks, Policy, RouteRule, Verifier};
//!
//! let policy = Policy::builder()
//!     .issuer("https://login.example.com")
//!     .audience("orders-api")
//!     .route(RouteRule::get("/orders").all_of(["orders:read"]))
//!     .build()?;
//! // Discovers jwks_uri from the issuer's metadata; keys are fetched when first needed.
//! let jwks = RemoteJwks::builder().issuer("https://login.example.com").build()?;
//! let verifier = Verifier::builder(policy, Arc::new(jwks)).build();
//! # let _ = verifier; Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde::Deserialize;

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::keys::{KeyError, KeySet, KeySource, MAX_JWKS_BYTES};

/// Lower bound on the refresh interval, whatever `Cache-Control` says.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
/// Upper bound on the refresh interval.
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Refresh interval when the response carries no usable `max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Minimum time between two fetches caused by unknown `kid`s.
pub const DEFAULT_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(10);
/// How long the last good keys stay in use after their last successful fetch.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(24 * 3600);
/// Connect timeout of the default HTTP client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Total timeout of every request.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a remote key source could not be built or could not fetch keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Neither a `jwks_uri` nor an issuer was configured.
    #[error("a jwks_uri or an issuer is required")]
    MissingSource,
    /// A URL is not an absolute http(s) URL (or an issuer has a query or fragment).
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    /// A configured interval or limit is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The default HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The request failed (connection, timeout, body).
    #[error("request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document exceeds the size limit; it was not parsed.
    #[error("document larger than {0} bytes")]
    TooLarge(usize),
    /// The JWKS document is unusable.
    #[error("invalid JWKS: {0}")]
    Keys(#[from] KeyError),
    /// The discovery document is unusable (not JSON, no `jwks_uri`).
    #[error("invalid discovery document: {0}")]
    Discovery(String),
    /// The discovery document names another issuer (RFC 8414 §3.3): its keys are refused.
    #[error("discovery document issuer {found:?} does not equal the configured {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The issuer the document claims.
        found: String,
    },
}

#[derive(Debug, Clone)]
enum Source {
    Jwks(Url),
    Issuer(String),
}

/// Builds a [`RemoteJwks`]; validation happens in [`RemoteJwksBuilder::build`].
#[derive(Debug)]
pub struct RemoteJwksBuilder {
    jwks_uri: Option<String>,
    issuer: Option<String>,
    client: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    rsa_default: Option<Algorithm>,
    default_refresh: Duration,
    min_refresh: Duration,
    max_refresh: Duration,
    cooldown: Duration,
    max_staleness: Duration,
    max_bytes: usize,
}

impl Default for RemoteJwksBuilder {
    fn default() -> Self {
        Self {
            jwks_uri: None,
            issuer: None,
            client: None,
            clock: Arc::new(SystemClock),
            rsa_default: None,
            default_refresh: DEFAULT_REFRESH,
            min_refresh: MIN_REFRESH,
            max_refresh: MAX_REFRESH,
            cooldown: DEFAULT_UNKNOWN_KID_COOLDOWN,
            max_staleness: DEFAULT_MAX_STALENESS,
            max_bytes: MAX_JWKS_BYTES,
        }
    }
}

impl RemoteJwksBuilder {
    /// Fetch keys from this JWKS URL (takes precedence over discovery).
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }
    /// Discover the JWKS URL from this issuer's metadata (RFC 8414, then OpenID Connect
    /// Discovery). The document's `issuer` must equal this string exactly.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
    /// The HTTP client to use (proxies, TLS roots, connect timeout are its own). Every request
    /// still carries the 5 s total timeout.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }
    /// The clock that decides staleness and rate limits (tests inject a
    /// [`crate::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// How RSA keys without `alg` are pinned (pass [`crate::Policy::rsa_default`]); without it
    /// they are skipped.
    pub fn rsa_default(mut self, alg: Option<Algorithm>) -> Self {
        self.rsa_default = alg;
        self
    }
    /// Refresh interval when the response has no `max-age` (default 5 min; clamped to the
    /// bounds).
    pub fn default_refresh(mut self, d: Duration) -> Self {
        self.default_refresh = d;
        self
    }
    /// Bounds the refresh interval a `Cache-Control: max-age` may ask for (default 60 s–24 h).
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max;
        self
    }
    /// Minimum time between fetches caused by unknown `kid`s (default 10 s).
    pub fn unknown_kid_cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }
    /// How long the last good keys stay in use when refreshes fail (default 24 h).
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.max_staleness = d;
        self
    }
    /// Document size limit in bytes (default and maximum 256 KiB).
    pub fn max_document_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Validates the configuration and builds the source. Nothing is fetched yet: keys come on
    /// first use (or call [`RemoteJwks::refresh`] to fetch at startup).
    pub fn build(self) -> Result<RemoteJwks, JwksError> {
        let source = match (self.jwks_uri, self.issuer) {
            (Some(uri), _) => Source::Jwks(parse_http_url(&uri)?),
            (None, Some(iss)) => {
                let url = parse_http_url(&iss)?;
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(JwksError::InvalidUrl(iss));
                }
                Source::Issuer(iss)
            }
            (None, None) => return Err(JwksError::MissingSource),
        };
        if self.min_refresh.is_zero() || self.min_refresh > self.max_refresh {
            return Err(JwksError::InvalidConfig("refresh bounds"));
        }
        if self.max_bytes == 0 || self.max_bytes > MAX_JWKS_BYTES {
            return Err(JwksError::InvalidConfig("max_document_bytes must be 1..=256 KiB"));
        }
        if self.max_staleness.is_zero() {
            return Err(JwksError::InvalidConfig("max_staleness must be positive"));
        }
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(TOTAL_TIMEOUT)
                .build()
                .map_err(|e| JwksError::Client(e.to_string()))?,
        };
        let default_refresh = self.default_refresh.clamp(self.min_refresh, self.max_refresh);
        Ok(RemoteJwks(Arc::new(Shared {
            source,
            discovered: ArcSwapOption::empty(),
            client,
            clock: self.clock,
            rsa_default: self.rsa_default,
            default_refresh: default_refresh.as_secs(),
            min_refresh: self.min_refresh.as_secs(),
            max_refresh: self.max_refresh.as_secs(),
            cooldown: self.cooldown.as_secs(),
            max_staleness: self.max_staleness.as_secs(),
            max_bytes: self.max_bytes,
            state: ArcSwapOption::empty(),
            next_refresh: AtomicU64::new(0),
            last_attempt: AtomicU64::new(NEVER),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
        })))
    }
}

fn parse_http_url(s: &str) -> Result<Url, JwksError> {
    let url = Url::parse(s).map_err(|_| JwksError::InvalidUrl(s.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(JwksError::InvalidUrl(s.to_owned()));
    }
    Ok(url)
}

const NEVER: u64 = u64::MAX;

struct State {
    keys: Arc<KeySet>,
    fetched_at: UnixTime,
}

struct Shared {
    source: Source,
    discovered: ArcSwapOption<Url>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    rsa_default: Option<Algorithm>,
    default_refresh: u64,
    min_refresh: u64,
    max_refresh: u64,
    cooldown: u64,
    max_staleness: u64,
    max_bytes: usize,
    /// The last good keys; readers load this without a lock.
    state: ArcSwapOption<State>,
    /// When the keys become stale and the next read starts a background refresh.
    next_refresh: AtomicU64,
    /// Start of the last fetch attempt (for the unknown-`kid` rate limit), `NEVER` at first.
    last_attempt: AtomicU64,
    /// Bumped after every attempt, so callers that queued behind a fetch reuse its result.
    generation: AtomicU64,
    /// Number of fetch attempts, for metrics and tests.
    fetches: AtomicU64,
    /// Serialises fetches only; readers never touch it.
    fetch_lock: tokio::sync::Mutex<()>,
    background: AtomicBool,
}

/// Keys from a remote JWKS, refreshed in the background and on unknown `kid`s. Cheap to clone.
///
/// Pass it to a verifier as `Arc<RemoteJwks>`: `Verifier::builder(policy, Arc::new(jwks))`.
/// See the [module docs](self) for the refresh rules.
#[derive(Clone)]
pub struct RemoteJwks(Arc<Shared>);

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.0.state.load().as_ref().map(|s| s.keys.len());
        f.debug_struct("RemoteJwks")
            .field("source", &self.0.source)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

/// Resets the background flag even if the refresh task is cancelled or panics.
struct BackgroundGuard(Arc<Shared>);
impl Drop for BackgroundGuard {
    fn drop(&mut self) {
        self.0.background.store(false, Ordering::Release);
    }
}

impl RemoteJwks {
    /// Starts a builder.
    pub fn builder() -> RemoteJwksBuilder {
        RemoteJwksBuilder::default()
    }

    /// A source for `jwks_uri` with the defaults.
    pub fn from_jwks_uri(jwks_uri: impl Into<String>) -> Result<Self, JwksError> {
        Self::builder().jwks_uri(jwks_uri).build()
    }

    /// A source discovered from `issuer` with the defaults.
    pub fn from_issuer(issuer: impl Into<String>) -> Result<Self, JwksError> {
        Self::builder().issuer(issuer).build()
    }

    /// Fetches now, waiting for a fetch already in flight instead of starting a second one.
    /// Useful at startup; failures keep the last good keys and are returned.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        let _lock = self.0.fetch_lock.lock().await;
        self.0.fetch_locked().await
    }

    /// The number of fetch attempts so far (successful or not).
    pub fn fetch_count(&self) -> u64 {
        self.0.fetches.load(Ordering::Relaxed)
    }

    /// The unix time of the last successful fetch, if any.
    pub fn fetched_at(&self) -> Option<UnixTime> {
        self.0.state.load().as_ref().map(|s| s.fetched_at)
    }

    fn spawn_background_refresh(&self) {
        if self.0.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = BackgroundGuard(self.0.clone());
        // Without a runtime there is nowhere to run the fetch; the next unknown kid or read
        // under a runtime will try again.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let shared = guard.0.clone();
                let _lock = shared.fetch_lock.lock().await;
                // Someone else refreshed while this task waited.
                if shared.clock.now() < shared.next_refresh.load(Ordering::Acquire) {
                    return;
                }
                let _ = shared.fetch_locked().await;
                drop(guard);
            });
        }
    }
}

impl Shared {
    fn usable(&self, now: UnixTime) -> Option<Arc<KeySet>> {
        let state = self.state.load_full()?;
        if now.saturating_sub(state.fetched_at) > self.max_staleness {
            return None;
        }
        Some(state.keys.clone())
    }

    async fn refresh_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        let seen = self.generation.load(Ordering::Acquire);
        let _lock = self.fetch_lock.lock().await;
        if self.generation.load(Ordering::Acquire) == seen {
            let now = self.clock.now();
            let last = self.last_attempt.load(Ordering::Acquire);
            let cooled = last == NEVER || now >= last.saturating_add(self.cooldown);
            if cooled {
                let _ = self.fetch_locked().await;
            }
        }
        self.usable(self.clock.now())
    }

    /// One fetch attempt. Callers hold `fetch_lock`.
    async fn fetch_locked(&self) -> Result<Arc<KeySet>, JwksError> {
        let started = self.clock.now();
        self.last_attempt.store(started, Ordering::Release);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_once().await;
        let now = self.clock.now();
        let out = match result {
            Ok((keys, max_age)) => {
                let keys = Arc::new(keys);
                let interval = max_age
                    .unwrap_or(self.default_refresh)
                    .clamp(self.min_refresh, self.max_refresh);
                tracing::debug!(target: "zsp::jwks", keys = keys.len(), refresh_secs = interval, "JWKS fetched");
                self.state.store(Some(Arc::new(State {
                    keys: keys.clone(),
                    fetched_at: now,
                })));
                self.next_refresh
                    .store(now.saturating_add(interval), Ordering::Release);
                Ok(keys)
            }
            Err(e) => {
                let have = self.usable(now).is_some();
                tracing::warn!(
                    target: "zsp::jwks",
                    error = %e,
                    keeping_last_good_keys = have,
                    "JWKS refresh failed"
                );
                // Retry on the next read after the shortest refresh interval: an outage costs
                // one request per interval, never a storm.
                self.next_refresh
                    .store(now.saturating_add(self.min_refresh), Ordering::Release);
                Err(e)
            }
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        out
    }

    async fn fetch_once(&self) -> Result<(KeySet, Option<u64>), JwksError> {
        let url = self.jwks_url().await?;
        let (body, max_age) = self.get_limited(&url).await?;
        let keys = KeySet::from_jwks(&body, self.rsa_default)?;
        Ok((keys, max_age))
    }

    async fn jwks_url(&self) -> Result<Url, JwksError> {
        match &self.source {
            Source::Jwks(u) => Ok(u.clone()),
            Source::Issuer(iss) => {
                if let Some(u) = self.discovered.load_full() {
                    return Ok((*u).clone());
                }
                let u = self.discover(iss).await?;
                self.discovered.store(Some(Arc::new(u.clone())));
                Ok(u)
            }
        }
    }

    async fn discover(&self, issuer: &str) -> Result<Url, JwksError> {
        let (rfc8414, oidc) = well_known_urls(issuer)?;
        match self.read_metadata(&rfc8414, issuer).await {
            Ok(u) => Ok(u),
            // A document for another issuer is an attack or a misconfiguration: never fall back.
            Err(e @ JwksError::IssuerMismatch { .. }) => Err(e),
            Err(first) => {
                tracing::debug!(target: "zsp::jwks", error = %first, "RFC 8414 metadata unavailable; trying OpenID Connect discovery");
                self.read_metadata(&oidc, issuer).await
            }
        }
    }

    async fn read_metadata(&self, url: &Url, issuer: &str) -> Result<Url, JwksError> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            #[serde(default)]
            jwks_uri: Option<String>,
        }
        let (body, _) = self.get_limited(url).await?;
        let meta: Metadata =
            serde_json::from_slice(&body).map_err(|e| JwksError::Discovery(e.to_string()))?;
        if meta.issuer != issuer {
            return Err(JwksError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: meta.issuer,
            });
        }
        let jwks = meta
            .jwks_uri
            .ok_or_else(|| JwksError::Discovery("no jwks_uri".into()))?;
        parse_http_url(&jwks)
    }

    async fn get_limited(&self, url: &Url) -> Result<(Vec<u8>, Option<u64>), JwksError> {
        let http = |e: reqwest::Error| JwksError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let mut resp = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .timeout(TOTAL_TIMEOUT)
            .send()
            .await
            .map_err(http)?;
        if !resp.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        if resp.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(JwksError::TooLarge(self.max_bytes));
        }
        let max_age = resp
            .headers()
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        // Stream with a running total: a lying or absent Content-Length cannot make us buffer
        // more than the limit.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(JwksError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

/// `max-age` from one `Cache-Control` value; `no-cache`/`no-store` mean "as soon as allowed".
fn max_age(value: &str) -> Option<u64> {
    value.split(',').find_map(|d| {
        let d = d.trim();
        if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
            return Some(0);
        }
        let (name, v) = d.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            v.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

/// The RFC 8414 §3.1 and OpenID Connect Discovery §4 metadata URLs for `issuer`.
fn well_known_urls(issuer: &str) -> Result<(Url, Url), JwksError> {
    let base = parse_http_url(issuer)?;
    let path = base.path().trim_end_matches('/').to_owned();
    let mut rfc8414 = base.clone();
    // RFC 8414 inserts the well-known segment between host and path.
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = base;
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    Ok((rfc8414, oidc))
}

#[async_trait::async_trait]
impl KeySource for RemoteJwks {
    fn current(&self) -> Option<Arc<KeySet>> {
        let now = self.0.clock.now();
        if self.0.state.load().is_some() && now >= self.0.next_refresh.load(Ordering::Acquire) {
            self.spawn_background_refresh();
        }
        self.0.usable(now)
    }

    async fn refresh_for_unknown_kid(&self, _kid: Option<&str>) -> Option<Arc<KeySet>> {
        self.0.refresh_for_unknown_kid().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("public, max-age=600"), Some(600));
        assert_eq!(max_age("MAX-AGE = 7"), Some(7));
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=-1"), None);
    }

    proptest::proptest! {
        #[test]
        fn header_and_url_parsers_never_panic(s in "\\PC*") {
            let _ = max_age(&s);
            let _ = well_known_urls(&s);
            let _ = parse_http_url(&s);
        }
    }

    #[test]
    fn rfc8414_3_1_well_known_inserted_before_path() {
        let (a, b) = well_known_urls("https://idp.example/tenant1").unwrap();
        assert_eq!(
            a.as_str(),
            "https://idp.example/.well-known/oauth-authorization-server/tenant1"
        );
        assert_eq!(
            b.as_str(),
            "https://idp.example/tenant1/.well-known/openid-configuration"
        );
        let (a, b) = well_known_urls("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            a.as_str(),
            "http://127.0.0.1:8080/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            b.as_str(),
            "http://127.0.0.1:8080/.well-known/openid-configuration"
        );
    }

    #[test]
    fn builder_validates() {
        assert_eq!(
            RemoteJwks::builder().build().unwrap_err(),
            JwksError::MissingSource
        );
        assert!(matches!(
            RemoteJwks::from_jwks_uri("ftp://x/jwks"),
            Err(JwksError::InvalidUrl(_))
        ));
        assert!(matches!(
            RemoteJwks::from_issuer("https://x/?a=b"),
            Err(JwksError::InvalidUrl(_))
        ));
        assert!(matches!(
            RemoteJwks::builder()
                .jwks_uri("https://x/jwks")
                .max_document_bytes(MAX_JWKS_BYTES + 1)
                .build(),
            Err(JwksError::InvalidConfig(_))
        ));
        assert!(RemoteJwks::from_jwks_uri("https://x/jwks").is_ok());
    }

    #[tokio::test]
    async fn never_fetched_yields_no_keys() {
        // A port that was just free: nothing listens, the fetch fails fast.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let jwks = RemoteJwks::from_jwks_uri(format!("http://127.0.0.1:{port}/jwks")).unwrap();
        assert!(jwks.current().is_none());
        assert!(jwks.refresh_for_unknown_kid(Some("k")).await.is_none());
        // Rate-limited: a second unknown kid right away does not fetch again.
        assert!(jwks.refresh_for_unknown_kid(Some("k")).await.is_none());
        assert_eq!(jwks.fetch_count(), 1);
    }
}
