//! # zsp-axum
//!
//! axum integration for zsp: extractors, per-route requirements and the token broker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use zsp_tower;
