//! # zsp-tower
//!
//! Tower layers for zsp:
//! * [`verify`]: inbound. `VerifyLayer` checks every request's token and hands the handler a
//!   `Grant`, or answers 401/403 with the RFC 6750 challenge.
//! * [`outbound`]: outbound. Fetch ephemeral tokens from a broker or OAuth 2.0 token endpoint,
//!   cache them for seconds, and attach them to each request (`AttachLayer`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(hidden)]
pub mod fuzzing;
pub mod outbound;
pub mod verify;

pub use outbound::{AccessToken, AttachLayer, CachedTokenSource, ClientCredentials, FetchError};
pub use outbound::{PerRequest, TokenEndpoint, TokenExchange, TokenRequest, TokenSource};
pub use verify::{VerifyLayer, VerifyService};
pub use zsp_core;
