#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// axum integration: extractors and the token broker.
pub use zsp_axum as axum;
/// The framework-free core: policy, claims, verification, replay, revocation, minting, audit.
pub use zsp_core as core;
/// Tower layers: inbound verification and outbound token attachment.
pub use zsp_tower as tower;

/// The names most programs need.
pub mod prelude {
    pub use zsp_core::{
        Denial, Grant, KeySet, MemoryReplayGuard, MemoryRevocation, Policy, RequestFacts, RouteRule, Verifier,
    };
}
