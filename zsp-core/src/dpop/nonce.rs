//! Stateless server nonces (RFC 9449 §8), shared by replicas through a secret, not a store.
//!
//! A nonce is `base64url(step || HMAC-SHA256(secret, label || step)[..16])`, where `step` is
//! `floor(now / step_secs)` as 8 big-endian bytes. Every replica built from the same secret
//! and step length issues and accepts the same nonces, so a nonce from replica A is good at
//! replica B with no shared storage, as node oidc-provider does.
//!
//! Invariants:
//! * a nonce is accepted only if its MAC verifies (compared in constant time) and its step is
//!   the current one, one of the configured previous ones, or at most one step ahead (clock
//!   skew between replicas); everything else is refused;
//! * the secret is at least 32 bytes and never printed (`Debug` omits it);
//! * nonces are 32 base64url characters, valid `NQCHAR`s for the `DPoP-Nonce` header.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;

use crate::clock::UnixTime;

/// Domain separation: the same secret used for something else never yields a valid nonce.
const LABEL: &[u8] = b"zsp/dpop-nonce/v1\0";
const STEP_LEN: usize = 8;
const MAC_LEN: usize = 16;
const NONCE_CHARS: usize = (STEP_LEN + MAC_LEN) / 3 * 4;

/// Why a nonce configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceConfigError {
    /// The shared secret is shorter than 32 bytes.
    #[error("nonce secret shorter than 32 bytes")]
    WeakSecret,
    /// The time step is zero or longer than an hour.
    #[error("nonce time step must be between 1 s and 3600 s")]
    InvalidStep,
    /// More than 60 previous steps accepted: a nonce would live too long to mean anything.
    #[error("too many previous nonce steps accepted")]
    TooManySteps,
}

/// Why a presented nonce was refused. All of them mean the same to the client
/// (`use_dpop_nonce`); the distinction is for audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Not a nonce of this format.
    #[error("malformed nonce")]
    Malformed,
    /// The MAC does not verify: not issued with this secret.
    #[error("nonce not issued by this service")]
    Forged,
    /// Issued more steps ago than accepted.
    #[error("stale nonce")]
    Stale,
    /// Issued for a step beyond the next one.
    #[error("nonce from the future")]
    FromFuture,
}

/// Issues and checks stateless DPoP server nonces. Cheap to clone.
///
/// ```
/// use zsp_core::dpop::NonceIssuer;
/// let secret = [7u8; 32];
/// let replica_a = NonceIssuer::builder(&secret).build().unwrap();
/// let replica_b = NonceIssuer::builder(&secret).build().unwrap();
/// let nonce = replica_a.current(1_700_000_000);
/// assert_eq!(replica_b.check(&nonce, 1_700_000_100), Ok(()));
/// assert!(replica_b.check(&nonce, 1_700_001_000).is_err()); // stale
/// ```
#[derive(Clone)]
pub struct NonceIssuer {
    key: Arc<hmac::Key>,
    step: u64,
    previous: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("step_secs", &self.step)
            .field("previous_steps", &self.previous)
            .finish_non_exhaustive()
    }
}

/// Builds a [`NonceIssuer`]; validated at [`build`](NonceIssuerBuilder::build).
pub struct NonceIssuerBuilder<'a> {
    secret: &'a [u8],
    step: Duration,
    previous: u64,
}

impl std::fmt::Debug for NonceIssuerBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuerBuilder")
            .field("step", &self.step)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl NonceIssuerBuilder<'_> {
    /// Length of one time step (default 60 s, whole seconds, 1 s to 1 h).
    pub fn step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }
    /// How many steps before the current one are still accepted (default 2).
    pub fn previous_steps(mut self, n: u64) -> Self {
        self.previous = n;
        self
    }
    /// Validates the configuration.
    pub fn build(self) -> Result<NonceIssuer, NonceConfigError> {
        if self.secret.len() < 32 {
            return Err(NonceConfigError::WeakSecret);
        }
        let step = self.step.as_secs();
        if step == 0 || step > 3600 || self.step.subsec_nanos() != 0 {
            return Err(NonceConfigError::InvalidStep);
        }
        if self.previous > 60 {
            return Err(NonceConfigError::TooManySteps);
        }
        Ok(NonceIssuer {
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, self.secret)),
            step,
            previous: self.previous,
        })
    }
}

impl NonceIssuer {
    /// Starts a builder from the shared secret (at least 32 bytes, the same on every replica).
    pub fn builder(secret: &[u8]) -> NonceIssuerBuilder<'_> {
        NonceIssuerBuilder {
            secret,
            step: Duration::from_secs(60),
            previous: 2,
        }
    }

    /// The time step length in seconds.
    pub fn step_secs(&self) -> u64 {
        self.step
    }

    fn mac(&self, step: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(&step.to_be_bytes());
        ctx.sign()
    }

    /// The nonce for the step containing `now`: send it in a `DPoP-Nonce` header.
    pub fn current(&self, now: UnixTime) -> String {
        let step = now / self.step;
        let mut raw = [0u8; STEP_LEN + MAC_LEN];
        raw[..STEP_LEN].copy_from_slice(&step.to_be_bytes());
        raw[STEP_LEN..].copy_from_slice(&self.mac(step).as_ref()[..MAC_LEN]);
        crate::b64::encode(raw)
    }

    /// Checks a nonce presented in a proof at time `now`.
    pub fn check(&self, nonce: &str, now: UnixTime) -> Result<(), NonceError> {
        if nonce.len() != NONCE_CHARS {
            return Err(NonceError::Malformed);
        }
        let mut raw = [0u8; STEP_LEN + MAC_LEN + 3];
        let n = crate::b64::decode_into(nonce.as_bytes(), &mut raw).ok_or(NonceError::Malformed)?;
        if n != STEP_LEN + MAC_LEN {
            return Err(NonceError::Malformed);
        }
        let mut step_bytes = [0u8; STEP_LEN];
        step_bytes.copy_from_slice(&raw[..STEP_LEN]);
        let step = u64::from_be_bytes(step_bytes);
        // MAC first, so the step is only interpreted once it is known to be ours.
        if !crate::crypto::ct_eq(&self.mac(step).as_ref()[..MAC_LEN], &raw[STEP_LEN..n]) {
            return Err(NonceError::Forged);
        }
        let current = now / self.step;
        if step > current.saturating_add(1) {
            return Err(NonceError::FromFuture);
        }
        if step < current.saturating_sub(self.previous) {
            return Err(NonceError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000; // a multiple of 60 plus 20

    fn issuer() -> NonceIssuer {
        NonceIssuer::builder(&[1u8; 32]).build().unwrap()
    }

    #[test]
    fn rfc9449_8_current_and_two_previous_steps_accepted() {
        let i = issuer();
        let n = i.current(T);
        assert_eq!(n.len(), NONCE_CHARS);
        let step_start = T - T % 60;
        assert_eq!(i.check(&n, step_start + 59), Ok(()));
        assert_eq!(i.check(&n, step_start + 60 * 2 + 59), Ok(()));
        assert_eq!(i.check(&n, step_start + 60 * 3), Err(NonceError::Stale));
        // One step of skew into the future is tolerated, two are not.
        assert_eq!(i.check(&n, step_start - 1), Ok(()));
        assert_eq!(i.check(&n, step_start - 61), Err(NonceError::FromFuture));
    }

    #[test]
    fn other_secrets_and_tampering_are_refused() {
        let n = issuer().current(T);
        let other = NonceIssuer::builder(&[2u8; 32]).build().unwrap();
        assert_eq!(other.check(&n, T), Err(NonceError::Forged));
        let mut bytes = n.clone().into_bytes();
        bytes[30] = if bytes[30] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(issuer().check(&tampered, T).is_err());
        for bad in ["", "short", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", &format!("{n}A")] {
            assert_eq!(issuer().check(bad, T), Err(NonceError::Malformed), "{bad}");
        }
    }

    #[test]
    fn configuration_is_validated() {
        assert_eq!(
            NonceIssuer::builder(&[0u8; 31]).build().unwrap_err(),
            NonceConfigError::WeakSecret
        );
        assert_eq!(
            NonceIssuer::builder(&[0u8; 32])
                .step(Duration::ZERO)
                .build()
                .unwrap_err(),
            NonceConfigError::InvalidStep
        );
        assert!(format!("{:?}", issuer()).contains("step_secs"));
    }
}
