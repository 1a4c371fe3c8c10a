//! Outbound: fetch, cache and attach ephemeral tokens.
//!
//! A service never holds a long-lived API key. It asks a broker (any RFC 6749 token endpoint)
//! for a short-lived token for exactly the audience and scopes it needs, keeps it for seconds,
//! and attaches it to each request:
//!
//! * [`TokenSource`]: `TokenRequest` → [`AccessToken`] | [`FetchError`].
//! * [`ClientCredentials`] (RFC 6749 §4.4) and [`TokenExchange`] (RFC 8693) over a
//!   [`TokenEndpoint`] (client authentication, RFC 8414 discovery, limits).
//! * [`CachedTokenSource`]: keyed by (audience, sorted scopes, key thumbprint), background
//!   refresh inside the margin, one fetch per key at a time, backoff on failure;
//!   [`PerRequest`] for single-use APIs.
//! * DPoP (RFC 9449): [`TokenRequest::dpop_key`] asks the token endpoint for a token bound to
//!   a key (proof on the token request, one retry on its `use_dpop_nonce`);
//!   [`AttachLayer::dpop`] binds every token of a layer and proves possession on each request.
//! * [`AttachLayer`]: the tower layer; [`ReqwestService`] makes reqwest a tower service;
//!   `AttachMiddleware` (feature `reqwest-middleware`) plugs into `reqwest-middleware`.
//!
//! Tokens and client secrets never appear in `Debug` output or logs; spans carry the
//! endpoint, audience, latency and cache outcome.

pub mod attach;
mod cache;
mod client_credentials;
mod dpop;
pub(crate) mod endpoint;
mod exchange;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
mod reqwest;
mod source;

pub use attach::{AttachError, AttachLayer, AttachService, ReplayBody};
pub use cache::{CacheStats, CachedTokenSource, CachedTokenSourceBuilder, PerRequest};
pub use client_credentials::ClientCredentials;
pub use endpoint::{
    AssertionAudience, ClientAuth, ClientSecret, JWT_BEARER_ASSERTION, TokenEndpoint, TokenEndpointBuilder,
};
pub use exchange::{ACCESS_TOKEN_TYPE, ExchangeSource, SubjectToken, TOKEN_EXCHANGE_GRANT, TokenExchange};
#[cfg(feature = "reqwest-middleware")]
pub use middleware::AttachMiddleware;
pub use reqwest::{ReqwestFuture, ReqwestService};
pub use source::{AccessToken, FetchError, OAuthErrorCode, TokenRequest, TokenSource, TokenType};
