//! # zsp: Zero Standing Privilege for Rust HTTP services
//!
//! No permanent API keys, no long-lived tokens, no always-on access: every call carries a
//! credential minted just in time, scoped to one audience and operation, valid for seconds to
//! minutes, and verified on every request.
//!
//! This facade re-exports the workspace crates:
//! * [`core`]: policy, claims, verification, replay, revocation, minting, audit;
//! * [`tower`]: inbound and outbound tower layers;
//! * [`axum`]: extractors and the token broker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use zsp_axum as axum;
pub use zsp_core as core;
pub use zsp_tower as tower;

/// The names most programs need.
pub mod prelude {
    pub use zsp_core::{
        Denial, Grant, KeySet, MemoryReplayGuard, MemoryRevocation, Policy, RequestFacts, RouteRule,
        Verifier,
    };
}
