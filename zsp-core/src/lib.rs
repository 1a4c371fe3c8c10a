//! # zsp-core
//!
//! The framework-free heart of zsp (Zero Standing Privilege): for one token and one request,
//! allow or deny, and exactly why.
//!
//! * [`Policy`] says what is allowed: issuers, audience, algorithms, maximum lifetime, leeway and
//!   per-route rules (scopes, single use, sender constraint).
//! * [`KeySet`] holds the trusted verification keys, each pinned to exactly one algorithm.
//! * [`Verifier`] checks a token against keys and policy and returns a [`Grant`] or a typed
//!   [`Denial`], emitting one [`AuditEvent`] per decision.
//! * [`ReplayGuard`] and [`Revocation`] are the stores behind single-use tokens and revocation.
//! * [`Minter`] signs ephemeral tokens (broker side, and [`testing`] helpers for your tests).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use zsp_core::{testing::TestIssuer, Policy, RequestFacts, RouteRule, Verifier};
//!
//! let issuer = TestIssuer::es256("https://broker.example");
//! let policy = Policy::builder()
//!     .issuer("https://broker.example")
//!     .audience("orders-api")
//!     .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
//!     .build()
//!     .unwrap();
//! let verifier = Verifier::builder(policy, issuer.key_set()).build();
//!
//! let token = issuer.token("orders-api", &["orders:read"]).mint().unwrap();
//! let grant = verifier
//!     .verify(&token, &RequestFacts::new(&http::Method::GET, "/orders/42"))
//!     .await
//!     .unwrap();
//! assert!(grant.scopes().contains("orders:read"));
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
#[cfg(feature = "audit-layer")]
mod audit_layer;
mod audit_log;
pub mod b64;
pub mod claims;
mod claims_view;
pub mod clock;
pub mod crypto;
pub mod denial;
pub mod dpop;
mod flat_json;
pub mod grant;
mod header_memo;
#[cfg(feature = "remote-jwks")]
pub mod jwks;
pub mod keys;
pub mod mint;
#[cfg(feature = "p256-tables")]
mod p256_comb;
#[cfg(feature = "p256-tables")]
mod p256_inv;
pub mod policy;
#[cfg(feature = "redis")]
pub mod redis;
pub mod replay;
pub mod revoke;
mod sigcache;
pub mod testing;
pub mod verify;

#[cfg(feature = "audit-layer")]
pub use audit::JsonAuditLayer;
pub use audit::{AuditDecision, AuditEvent, AuditSink, JsonLinesAudit, TokenAudit};
pub use claims::{Actor, Audience, Claims, Confirmation, ScopeSet};
pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use denial::Denial;
pub use dpop::{DpopKey, DpopVerifier, Jkt, NonceIssuer};
pub use grant::Grant;
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "remote-jwks")]
pub use jwks::{JwksError, RemoteJwks};
pub use keys::{KeyError, KeySet, KeySource, VerifyingKey};
pub use mint::{MintError, MintRequest, Minter, SigningKey};
pub use policy::{Policy, PolicyBuilder, PolicyConfig, PolicyError, RouteRule, ScopeRequirement};
pub use replay::{MemoryReplayGuard, ReplayError, ReplayGuard};
pub use revoke::{MemoryRevocation, Revocation, RevocationError, RevocationQuery};
pub use verify::{DEFAULT_SIGNATURE_CACHE, RequestFacts, Unfinished, Verifier, VerifierBuilder};
