//! [`AttachLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::service::{AttachService, Shared};
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
}

impl std::fmt::Debug for AttachLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachLayer")
            .field("source", &self.source.id())
            .field("request", &self.fixed)
            .field("per_request", &self.resolver.is_some())
            .field("retry", &self.retry)
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
}

impl<S> Layer<S> for AttachLayer {
    type Service = AttachService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AttachService::new(
            inner,
            Arc::new(Shared {
                source: Arc::clone(&self.source),
                fixed: self.fixed.clone(),
                resolver: self.resolver.clone(),
                retry: self.retry,
            }),
        )
    }
}
