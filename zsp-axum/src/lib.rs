//! # zsp-axum
//!
//! axum integration for zsp:
//! * [`extract`]: the `Grant` and `Claims<T>` extractors and `require_scopes` for routes;
//! * [`broker`]: the token broker as an axum `Router` (token endpoint, JWKS, revocation,
//!   introspection).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broker;
pub mod extract;

pub use zsp_tower;
