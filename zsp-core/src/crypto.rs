//! The cryptographic backend, chosen deliberately.
//!
//! jsonwebtoken 10+ selects its backend from cargo features and panics at the first signature
//! operation when feature unification enables both `aws_lc_rs` and `rust_crypto`, or neither.
//! zsp always installs the aws-lc-rs provider explicitly before it touches jsonwebtoken, so the
//! choice does not depend on what other crates in the build enable. The verify hot path does not
//! go through jsonwebtoken at all: it calls aws-lc-rs on keys parsed once.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Installs jsonwebtoken's aws-lc-rs provider as the process default if no provider is
/// installed yet. Idempotent and cheap after the first call; every zsp entry point that uses
/// jsonwebtoken calls it.
pub fn ensure_provider() {
    INSTALL.call_once(|| {
        // Err means the application installed a provider of its own first: respect it.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

/// Whether jsonwebtoken's process provider is the aws-lc-rs one zsp chose.
pub fn provider_is_aws_lc() -> bool {
    ensure_provider();
    match jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default() {
        Ok(()) => true, // unreachable after ensure_provider, but it would now be ours
        Err(installed) => std::ptr::eq(installed, &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER),
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("system random number generator unavailable")]
pub struct RngUnavailable;

/// A random identifier of `N` bytes from the system CSPRNG, base64url-encoded.
pub fn random_id<const N: usize>() -> Result<String, RngUnavailable> {
    let mut bytes = [0u8; N];
    // Nothing safe can be minted without entropy, so the error propagates instead of falling
    // back to anything predictable.
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RngUnavailable)?;
    Ok(crate::b64::encode(bytes))
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails if jsonwebtoken's backend is not the one zsp chose, e.g. when feature unification
    /// pulled in `rust_crypto` and something installed it, or if the provider would panic.
    #[test]
    fn jsonwebtoken_backend_is_aws_lc_and_does_not_panic() {
        assert!(provider_is_aws_lc());
        let key = crate::SigningKey::generate_es256("k").unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &serde_json::json!({"sub": "x"}),
            key.encoding_key(),
        )
        .unwrap();
        assert_eq!(token.split('.').count(), 3);
    }

    #[test]
    fn random_ids_are_distinct_and_long_enough() {
        let a = random_id::<16>().unwrap();
        let b = random_id::<16>().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }
}
