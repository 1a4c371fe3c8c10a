//! DPoP (RFC 9449): sender-constrained tokens, on both sides, framework-free.
//!
//! * Client: a [`DpopKey`] makes one proof per request ([`DpopKey::proof`]) and names itself
//!   by its RFC 7638 thumbprint ([`DpopKey::thumbprint`]), which a broker puts in `cnf.jkt`.
//! * Server: a [`DpopVerifier`] runs every check of RFC 9449 §4.3 on the `DPoP` header values
//!   of a request and returns the proof key's [`Jkt`]; callers compare it with the token's
//!   `cnf.jkt` by passing that as `expected_jkt`.
//! * Nonces: a [`NonceIssuer`] derives stateless time-step nonces from a shared secret, so
//!   every replica accepts every other replica's nonces (RFC 9449 §8).
//!
//! Invariants:
//! * fail closed: every malformed, unexpected or unverifiable input denies, with
//!   [`Denial::InvalidDpopProof`](crate::Denial::InvalidDpopProof) (401 `invalid_dpop_proof`),
//!   [`Denial::UseDpopNonce`](crate::Denial::UseDpopNonce) (401 `use_dpop_nonce`) or a 503
//!   when the replay store cannot answer; no panic is reachable from input;
//! * the proof key comes from the proof header and is trusted for nothing but the proof: it
//!   must be public, asymmetric, of an allowed algorithm, and consistent with the header `alg`;
//! * a proof's `htu` must not carry a query or fragment (RFC 9449 §4.2 says it has none); the
//!   request URI's query and fragment are ignored; both sides are compared in RFC 3986
//!   normal form ([`normalize_htu`]);
//! * proof `jti`s are single-use through a [`ReplayGuard`](crate::ReplayGuard), stored hashed
//!   and scoped to the target URI, and recorded only once every other check has passed;
//! * `now` is always injected, so every time window is testable without sleeping.
//!
//! For the inbound layer: [`TokenScheme::parse`] splits `Authorization`;
//! [`DpopVerifier::verify_presentation`] applies the scheme and binding rules to a verified
//! [`Grant`](crate::Grant) (a bound token presented as `Bearer` is
//! [`Denial::DpopBoundTokenAsBearer`](crate::Denial::DpopBoundTokenAsBearer), RFC 9449 §7.2;
//! [`DpopMode::Required`] refuses unbound tokens); [`DpopVerifier::challenge`] builds the
//! `WWW-Authenticate: DPoP … algs="…"` value and [`DpopVerifier::fresh_nonce`] the
//! [`DPOP_NONCE`] header. For the outbound layer: [`DpopKey::proof`] per request and retry,
//! [`is_use_dpop_nonce`] and [`response_nonce`] to take a server's nonce and retry once.

mod headers;
mod htu;
mod nonce;
mod proof;
mod thumbprint;
mod verify;

pub use headers::{DPOP, DPOP_NONCE, is_use_dpop_nonce, proof_header_values, response_nonce};
pub use htu::{HtuError, MAX_HTU_LEN, normalize_htu};
pub use nonce::{NonceConfigError, NonceError, NonceIssuer, NonceIssuerBuilder};
pub use proof::{DPOP_TYP, DpopError, DpopKey, access_token_hash};
pub use thumbprint::{Jkt, ThumbprintError, jwk_thumbprint};
pub use verify::{
    DpopConfigError, DpopMode, DpopVerifier, DpopVerifierBuilder, MAX_PROOF_BYTES, TokenScheme,
};
