//! [`AttachLayer`].

use std::sync::Arc;

use tower_layer::Layer;
use zsp_core::dpop::{DpopError, DpopKey};

use super::service::{AttachService, Shared};
use crate::outbound::dpop::DpopState;
use crate::outbound::source::{TokenRequest, TokenSource};

pub(crate) type Resolver = Arc<dyn Fn(&http::request::Parts) -> Option<TokenRequest> + Send + Sync>;

/// Attaches access tokens from a [`TokenSource`] to requests. Cheap to clone.
///
/// See the [module docs](super) for behaviour and an example.
#[derive(Clone)]
pub struct AttachLayer {
    source: Arc<dyn TokenSource>,
    fixed: Option<Arc<TokenRequest>>,
    resolver: Option<Resolver>,
    retry: bool,
    dpop: Option<DpopKey>,
}

/// The key [`AttachLayer::dpop_generated`] uses: one per process, made on first use and kept
/// in memory only, so every layer of the process shares one binding and one token cache key.
fn process_dpop_key() -> Result<DpopKey, DpopError> {
    static KEY: std::sync::OnceLock<DpopKey> = std::sync::OnceLock::new();
    if let Some(k) = KEY.get() {
        return Ok(k.clone());
    }
    let fresh = DpopKey::generate()?;
    // A concurrent first call may have won; everyone uses the winner.
    Ok(KEY.get_or_init(|| fresh).clone())
}

impl std::fmt::Debug for AttachLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachLayer")
            .field("source", &self.source.id())
            .field("request", &self.fixed)
            .field("per_request", &self.resolver.is_some())
            .field("retry", &self.retry)
            .field("dpop", &self.dpop.as_ref().map(|k| k.thumbprint().as_str()))
            .finish()
    }
}

impl AttachLayer {
    /// Every request gets a token for `request` (unless its extensions carry their own
    /// [`TokenRequest`]).
    pub fn new(source: impl TokenSource, request: TokenRequest) -> Self {
        Self {
            source: Arc::new(source),
            fixed: Some(Arc::new(request)),
            resolver: None,
            retry: true,
            dpop: None,
        }
    }

    /// The token request is computed per request by `f` (from method, URI, headers,
    /// extensions); `None` fails the request closed. A [`TokenRequest`] in the request's
    /// extensions still takes precedence.
    pub fn per_request<F>(source: impl TokenSource, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<TokenRequest> + Send + Sync + 'static,
    {
        Self {
            source: Arc::new(source),
            fixed: None,
            resolver: Some(Arc::new(f)),
            retry: true,
            dpop: None,
        }
    }

    /// Each request must carry its [`TokenRequest`] in its extensions; requests without one
    /// fail closed.
    pub fn from_extensions(source: impl TokenSource) -> Self {
        Self {
            source: Arc::new(source),
            fixed: None,
            resolver: None,
            retry: true,
            dpop: None,
        }
    }

    /// Uses a shared source (for example one [`crate::outbound::CachedTokenSource`] behind
    /// several layers).
    pub fn with_shared_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.source = source;
        self
    }

    /// Whether a 401 `invalid_token` leads to one refetch and retry (default on).
    pub fn retry_on_invalid_token(mut self, on: bool) -> Self {
        self.retry = on;
        self
    }

    /// Sender-constrains every token to `key` (DPoP, RFC 9449): tokens are requested bound
    /// to it (a [`TokenRequest`] without its own key gets this one, which also keys the token
    /// cache), each request and each retry carries a fresh proof with `ath`, the token goes
    /// out as `Authorization: DPoP <token>`, the latest `DPoP-Nonce` of each origin is
    /// remembered, and a 401 `use_dpop_nonce` is retried once with the nonce. See the
    /// [module docs](super) for how this retry and the `invalid_token` one combine.
    ///
    /// A token the broker did not bind (`token_type` `Bearer`) is sent as a bearer token
    /// without a proof.
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// [`dpop`](Self::dpop) with the process's own key: generated on first use, kept in
    /// memory only and shared by every layer of the process. Fails only if the system cannot
    /// generate a key.
    pub fn dpop_generated(self) -> Result<Self, DpopError> {
        Ok(self.dpop(process_dpop_key()?))
    }

    /// The DPoP key, when tokens are sender-constrained.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }
}

impl<S> Layer<S> for AttachLayer {
    type Service = AttachService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AttachService::new(
            inner,
            Arc::new(Shared {
                source: Arc::clone(&self.source),
                // Bound once here so the common fixed-request case does not rebind per request.
                fixed: match (&self.fixed, &self.dpop) {
                    (Some(f), Some(k)) if f.dpop().is_none() => {
                        Some(Arc::new((**f).clone().dpop_key(k.clone())))
                    }
                    (f, _) => f.clone(),
                },
                resolver: self.resolver.clone(),
                retry: self.retry,
                dpop: self.dpop.clone().map(DpopState::new),
            }),
        )
    }
}
