//! The token broker as an axum [`Router`]: the part of ZSP that mints ephemeral credentials.
//!
//! It authenticates the calling workload, looks up what its [`BrokerPolicy`] lets that client
//! have (audiences, scopes, max TTL, DPoP binding, single use), and mints a short-lived JWT
//! (`typ` `at+jwt`, RFC 9068 claims, fresh `jti`).
//!
//! DPoP (RFC 9449 §5): a token request with a valid `DPoP` proof (htm `POST`, htu
//! `{issuer}/token`, single-use through the broker's replay guard) gets a token bound to the
//! proof key (`cnf.jkt`, `token_type` `DPoP`); a client whose policy sets `dpop_required` is
//! refused without one (`invalid_dpop_proof`). With [`BrokerBuilder::dpop_nonces`] proofs must
//! carry a broker nonce (400 `use_dpop_nonce` + `DPoP-Nonce` otherwise). The metadata lists
//! `dpop_signing_alg_values_supported`. Endpoints:
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /token` | `client_credentials` and RFC 8693 token exchange |
//! | `GET /.well-known/jwks.json` | the published verification keys |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |
//! | `POST /revoke` | RFC 7009: the `jti` goes into the shared [`Revocation`] store |
//! | `POST /introspect` | RFC 7662, authenticated callers only |
//!
//! ```no_run
//! use std::time::Duration;
//! use zsp_axum::broker::{Broker, BrokerPolicy, ClientPolicy};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = BrokerPolicy::builder("http://127.0.0.1:8443")
//!     .client(
//!         ClientPolicy::with_secret("frontend", "a-256-bit-random-secret-from-your-vault")
//!             .audience("orders-api")
//!             .scopes(&["orders:read", "orders:write"])
//!             .max_ttl(Duration::from_secs(60)),
//!     )
//!     .build()?;
//! let broker = Broker::builder(policy).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! axum::serve(listener, broker.router()).await?;
//! # Ok(()) }
//! ```

mod client_auth;
mod config;
mod error;
mod introspect;
mod keyring;
mod ratelimit;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use zsp_core::clock::Clock;
use zsp_core::dpop::{DpopVerifier, NonceIssuer};
use zsp_core::{
    KeySet, KeySource, MemoryReplayGuard, MemoryRevocation, Policy, ReplayGuard, Revocation, RouteRule,
    SigningKey, SystemClock, Verifier,
};

pub use config::{
    BrokerConfigError, BrokerPolicy, BrokerPolicyBuilder, ClientAuth, ClientPolicy, hash_secret,
};
pub use error::OAuthError;
pub use keyring::{KeyRing, RotationError};

/// Verifier leeway the broker assumes when deciding how long a retired key stays published.
const LEEWAY_SECS: u64 = 10;
/// Form bodies larger than this are refused before parsing.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Why a broker could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Key generation or loading failed.
    #[error("signing key: {0}")]
    Key(#[from] zsp_core::MintError),
    /// A per-client verifier policy could not be built.
    #[error("policy: {0}")]
    Policy(#[from] zsp_core::PolicyError),
    /// The signing key file could not be read.
    #[error("signing key file {0}")]
    KeyFile(String),
    /// The DPoP proof verifier configuration was refused.
    #[error("DPoP: {0}")]
    Dpop(#[from] zsp_core::dpop::DpopConfigError),
}

pub(crate) struct State {
    pub(crate) policy: BrokerPolicy,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) key_source: Arc<RingKeys>,
    pub(crate) revocation: Arc<dyn Revocation>,
    pub(crate) assertion_verifiers: HashMap<String, Verifier>,
    pub(crate) exchange_verifiers: HashMap<String, Verifier>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limiter: ratelimit::RateLimiter,
    pub(crate) token_endpoint: String,
    /// Checks proofs on `/token` (htm POST, htu the token endpoint); shares the broker's
    /// replay guard so a proof is single-use across replicas that share it.
    pub(crate) dpop: DpopVerifier,
}

/// The key ring seen as a verifier's key source (for token exchange and introspection):
/// rebuilt only when the ring changes, so verification reads a parsed set.
#[derive(Debug)]
pub(crate) struct RingKeys {
    ring: Arc<KeyRing>,
    cached: RwLock<Arc<KeySet>>,
}

impl RingKeys {
    fn refresh(&self) {
        let set = Arc::new(self.ring.key_set());
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = set;
    }
}

#[async_trait::async_trait]
impl KeySource for RingKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        Some(self.cached.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// A configured broker; [`Broker::router`] serves it.
#[derive(Clone)]
pub struct Broker {
    state: Arc<State>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("issuer", &self.state.policy.issuer)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Broker`].
pub struct BrokerBuilder {
    policy: BrokerPolicy,
    key: Option<SigningKey>,
    revocation: Option<Arc<dyn Revocation>>,
    replay: Option<Arc<dyn ReplayGuard>>,
    clock: Arc<dyn Clock>,
    dpop_nonces: Option<NonceIssuer>,
}

impl BrokerBuilder {
    /// The signing key (default: the policy's key file, or a fresh key of the policy's
    /// algorithm generated at start).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }
    /// The revocation store shared with verifiers (default: in memory).
    pub fn revocation(mut self, store: Arc<dyn Revocation>) -> Self {
        self.revocation = Some(store);
        self
    }
    /// Where client assertion `jti`s are recorded (default: in memory).
    pub fn replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }
    /// The clock (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Requires a server nonce in every DPoP proof sent to `/token` (RFC 9449 §8): a proof
    /// without a current one is answered 400 `use_dpop_nonce` with a `DPoP-Nonce` header, and
    /// successful token responses carry a fresh nonce. Give every broker replica the same
    /// issuer secret so each accepts the others' nonces.
    ///
    /// ```
    /// use zsp_axum::broker::{Broker, BrokerPolicy, ClientPolicy};
    /// use zsp_core::dpop::NonceIssuer;
    ///
    /// let policy = BrokerPolicy::builder("https://broker.example")
    ///     .client(ClientPolicy::with_secret("svc", "a-256-bit-random-secret-from-your-vault")
    ///         .audience("orders-api")
    ///         .scopes(&["orders:read"])
    ///         .dpop_required(true))
    ///     .build()
    ///     .unwrap();
    /// let nonces = NonceIssuer::builder(b"the same 32+ byte secret on every broker replica")
    ///     .build()
    ///     .unwrap();
    /// let broker = Broker::builder(policy).dpop_nonces(nonces).build().unwrap();
    /// # let _ = broker;
    /// ```
    pub fn dpop_nonces(mut self, issuer: NonceIssuer) -> Self {
        self.dpop_nonces = Some(issuer);
        self
    }
    /// Builds the broker.
    pub fn build(self) -> Result<Broker, BrokerError> {
        let key = match self.key {
            Some(k) => k,
            None => initial_key(&self.policy)?,
        };
        let policy = self.policy;
        let issuer = policy.issuer.clone();
        let token_endpoint = format!("{issuer}/token");
        let retention = policy.max_ttl.as_secs() + LEEWAY_SECS;
        let ring = Arc::new(KeyRing::new(key, retention));
        let key_source = Arc::new(RingKeys {
            ring: ring.clone(),
            cached: RwLock::new(Arc::new(ring.key_set())),
        });
        let revocation = self
            .revocation
            .unwrap_or_else(|| Arc::new(MemoryRevocation::default()));
        let replay = self
            .replay
            .unwrap_or_else(|| Arc::new(MemoryReplayGuard::new(100_000)));

        let mut assertion_verifiers = HashMap::new();
        let mut exchange_verifiers = HashMap::new();
        for c in policy.clients.values() {
            if let ClientAuth::PrivateKeyJwt(keys) = &c.auth {
                // RFC 7523 §3: iss = sub = client_id, aud = the broker (issuer or endpoint),
                // short-lived and single-use.
                let p = Policy::builder()
                    .issuer(c.id.clone())
                    .audience(issuer.clone())
                    .also_audience(token_endpoint.clone())
                    .also_audience(format!("{issuer}/revoke"))
                    .also_audience(format!("{issuer}/introspect"))
                    .algorithms(assertion_algorithms())
                    .max_lifetime(Duration::from_secs(60))
                    .default_route(RouteRule::any("/{*any}").single_use())
                    .build()?;
                let v = Verifier::builder(p, keys.clone())
                    .replay_guard(replay.clone())
                    .clock(self.clock.clone())
                    .audit(false)
                    .build();
                assertion_verifiers.insert(c.id.clone(), v);
            }
            if let Some(aud) = &c.exchange_audience {
                let p = Policy::builder()
                    .issuer(issuer.clone())
                    .audience(aud.clone())
                    .max_lifetime(policy.max_ttl)
                    .default_route(RouteRule::any("/{*any}"))
                    .build()?;
                let v = Verifier::builder(p, key_source.clone())
                    .revocation(revocation.clone())
                    .clock(self.clock.clone())
                    .audit(false)
                    .build();
                exchange_verifiers.insert(c.id.clone(), v);
            }
        }
        let mut dpop = DpopVerifier::builder().replay_guard(replay.clone());
        if let Some(n) = self.dpop_nonces {
            dpop = dpop.require_nonces(n);
        }
        // The defaults (ES256, EdDSA, 60 s) always validate; the error cannot happen, but it
        // is still reported rather than unwrapped.
        let dpop = dpop.build().map_err(BrokerError::Dpop)?;
        let limiter = ratelimit::RateLimiter::new(policy.token_rate_per_sec);
        Ok(Broker {
            state: Arc::new(State {
                policy,
                keys: ring,
                key_source,
                revocation,
                assertion_verifiers,
                exchange_verifiers,
                clock: self.clock,
                limiter,
                token_endpoint,
                dpop,
            }),
        })
    }
}

/// The policy's configured key file, or a fresh key. A loaded key's kid is derived from its
/// public half, so restarts with the same file keep the same kid.
fn initial_key(p: &BrokerPolicy) -> Result<SigningKey, BrokerError> {
    let alg = p.signing_algorithm;
    match &p.signing_key_pem {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| BrokerError::KeyFile(format!("{}: {e}", path.display())))?;
            let probe = SigningKey::from_pem("probe", alg, &pem)?;
            let kid = zsp_core::b64::encode(
                &zsp_core::crypto::sha256(probe.public_jwk().to_string().as_bytes())[..12],
            );
            Ok(SigningKey::from_pem(&kid, alg, &pem)?)
        }
        None => {
            let kid = zsp_core::crypto::random_id::<12>().map_err(zsp_core::MintError::from)?;
            Ok(match alg {
                zsp_core::Algorithm::EdDSA => SigningKey::generate_ed25519(&kid)?,
                _ => SigningKey::generate_es256(&kid)?,
            })
        }
    }
}

fn assertion_algorithms() -> [zsp_core::Algorithm; 4] {
    use zsp_core::Algorithm::*;
    [ES256, EdDSA, RS256, PS256]
}

impl Broker {
    /// Starts a builder.
    pub fn builder(policy: BrokerPolicy) -> BrokerBuilder {
        BrokerBuilder {
            policy,
            key: None,
            revocation: None,
            replay: None,
            clock: Arc::new(SystemClock),
            dpop_nonces: None,
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.state.policy.issuer
    }

    /// The revocation store `/revoke` writes to.
    pub fn revocation(&self) -> Arc<dyn Revocation> {
        self.state.revocation.clone()
    }

    /// Publishes `key` in the JWKS without signing with it (first half of a rotation).
    pub fn stage_key(&self, key: SigningKey) -> Result<(), RotationError> {
        self.state.keys.stage(key)?;
        self.state.key_source.refresh();
        Ok(())
    }

    /// Starts signing with a staged key; the old key stays published until its tokens expire.
    pub fn activate_key(&self, kid: &str) -> Result<(), RotationError> {
        self.state.keys.activate(kid, self.state.clock.now())?;
        self.state.key_source.refresh();
        Ok(())
    }

    /// The kid that signs now.
    pub fn active_kid(&self) -> String {
        self.state.keys.active().kid().to_owned()
    }

    /// The JWKS document as served now.
    pub fn jwks(&self) -> serde_json::Value {
        self.state.keys.jwks(self.state.clock.now())
    }

    /// The broker's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/token", post(token::handle))
            .route("/revoke", post(introspect::revoke))
            .route("/introspect", post(introspect::introspect))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            .with_state(self.state.clone())
    }
}

fn json_no_store(value: serde_json::Value, cache: &'static str) -> Response {
    let mut r = axum::Json(value).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn jwks(axum::extract::State(s): axum::extract::State<Arc<State>>) -> Response {
    // Verifiers refresh per max-age; a short one lets staged keys reach them quickly.
    json_no_store(s.keys.jwks(s.clock.now()), "public, max-age=60")
}

async fn metadata(axum::extract::State(s): axum::extract::State<Arc<State>>) -> Response {
    let iss = &s.policy.issuer;
    json_no_store(
        serde_json::json!({
            "issuer": iss,
            "token_endpoint": s.token_endpoint,
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "revocation_endpoint": format!("{iss}/revoke"),
            "introspection_endpoint": format!("{iss}/introspect"),
            "grant_types_supported": ["client_credentials", token::TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
            "revocation_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "introspection_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "dpop_signing_alg_values_supported": zsp_core::verify::algorithm_names(s.dpop.algorithms())
                .split(' ')
                .collect::<Vec<_>>(),
        }),
        "public, max-age=300",
    )
}

/// An `application/x-www-form-urlencoded` body where every parameter may appear once
/// (RFC 6749 §3.2), except those listed as repeatable.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| OAuthError::InvalidRequest("malformed form body"))?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if k != "resource" && pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(OAuthError::InvalidRequest("repeated parameter"));
            }
        }
        Ok(Form(pairs))
    }
    pub(crate) fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}
