//! Revocation: short lifetimes plus a shared store make revoking a JWT real.
//!
//! A token is revoked when its `jti` was revoked, or when its subject or client was revoked
//! "before T" and the token's `iat` is at or before T. (At, not only before: a token minted in
//! the same second as the revocation may predate it, so it is refused too: fail closed.)

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::UnixTime;

/// Why the revocation store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The store did not answer (down, timed out); the reason is for logs.
    #[error("revocation store unavailable: {0}")]
    Unavailable(String),
}

/// The facts of a token that revocation looks at.
#[derive(Debug, Clone, Copy)]
pub struct RevocationQuery<'a> {
    /// Token id.
    pub jti: Option<&'a str>,
    /// Subject.
    pub sub: Option<&'a str>,
    /// Client id.
    pub client_id: Option<&'a str>,
    /// Issued at.
    pub iat: UnixTime,
    /// Now.
    pub now: UnixTime,
}

/// A revocation store, shared by every verifier that must honour it.
#[async_trait::async_trait]
pub trait Revocation: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the token described by `q` is revoked.
    async fn is_revoked(&self, q: &RevocationQuery<'_>) -> Result<bool, RevocationError>;
    /// Revokes one token id until `until` (the token's `exp` plus leeway).
    async fn revoke_jti(&self, jti: &str, until: UnixTime) -> Result<(), RevocationError>;
    /// Revokes every token of `subject` issued at or before `before`.
    async fn revoke_subject_before(&self, subject: &str, before: UnixTime) -> Result<(), RevocationError>;
    /// Revokes every token of `client_id` issued at or before `before`.
    async fn revoke_client_before(&self, client_id: &str, before: UnixTime) -> Result<(), RevocationError>;
    /// For a single-use token: whether it is revoked and, if not, whether this is the first use
    /// of `jti`, recorded until `until`, decided in one step (one round trip for a remote store).
    ///
    /// `None`, the default, when this store does not record single use: the verifier then
    /// calls [`Revocation::is_revoked`] and its [`crate::ReplayGuard`]. A store answering
    /// `Some` records first use in place of the verifier's replay guard, so it must be shared
    /// by every replica that accepts the token (e.g. `zsp_core::redis::RedisRevocation`).
    async fn check_single_use(
        &self,
        q: &RevocationQuery<'_>,
        jti: &str,
        until: UnixTime,
    ) -> Option<Result<SingleUseCheck, RevocationError>> {
        let _ = (q, jti, until);
        None
    }
}

/// The answer of [`Revocation::check_single_use`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SingleUseCheck {
    /// Not revoked, and this was the first use: it is now recorded.
    FirstUse,
    /// Not revoked, but the `jti` was already used.
    Replayed,
    /// Revoked (nothing was recorded).
    Revoked,
}

#[derive(Debug, Default)]
struct State {
    jtis: HashMap<String, UnixTime>,
    subjects: HashMap<String, UnixTime>,
    clients: HashMap<String, UnixTime>,
}

/// In-process revocation for a single replica.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use zsp_core::{MemoryRevocation, Revocation, RevocationQuery};
/// let r = MemoryRevocation::default();
/// r.revoke_jti("abc", 500).await.unwrap();
/// let q = RevocationQuery { jti: Some("abc"), sub: None, client_id: None, iat: 100, now: 200 };
/// assert!(r.is_revoked(&q).await.unwrap());
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryRevocation {
    state: RwLock<State>,
    // Most of the time nothing is revoked: skip the lock entirely then.
    any: AtomicBool,
}

impl MemoryRevocation {
    /// The synchronous check behind [`Revocation::is_revoked`].
    pub fn check(&self, q: &RevocationQuery<'_>) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        q.jti
            .and_then(|j| s.jtis.get(j))
            .is_some_and(|until| *until > q.now)
            || q.sub.and_then(|x| s.subjects.get(x)).is_some_and(|t| q.iat <= *t)
            || q.client_id
                .and_then(|x| s.clients.get(x))
                .is_some_and(|t| q.iat <= *t)
    }

    fn write(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        self.any.store(true, Ordering::Release);
    }
}

#[async_trait::async_trait]
impl Revocation for MemoryRevocation {
    async fn is_revoked(&self, q: &RevocationQuery<'_>) -> Result<bool, RevocationError> {
        Ok(self.check(q))
    }
    async fn revoke_jti(&self, jti: &str, until: UnixTime) -> Result<(), RevocationError> {
        self.write(|s| {
            // Entries past their token's expiry protect nothing; drop them as we go.
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            s.jtis.retain(|_, u| *u > now.min(until));
            let e = s.jtis.entry(jti.to_owned()).or_insert(until);
            *e = (*e).max(until);
        });
        Ok(())
    }
    async fn revoke_subject_before(&self, subject: &str, before: UnixTime) -> Result<(), RevocationError> {
        self.write(|s| {
            let e = s.subjects.entry(subject.to_owned()).or_insert(before);
            *e = (*e).max(before);
        });
        Ok(())
    }
    async fn revoke_client_before(&self, client_id: &str, before: UnixTime) -> Result<(), RevocationError> {
        self.write(|s| {
            let e = s.clients.entry(client_id.to_owned()).or_insert(before);
            *e = (*e).max(before);
        });
        Ok(())
    }
}
