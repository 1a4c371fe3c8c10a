//! OAuth 2.0 Token Exchange (RFC 8693): trade the inbound request's token for a narrower one
//! to call the next service.
//!
//! Invariant: a request for a scope the subject token was not granted is refused here,
//! before anything is sent ([`FetchError::ScopeWidening`]); the broker refuses it too, but a
//! client that never asks leaks nothing about what it wanted.

use std::sync::Arc;

use zsp_core::{Grant, ScopeSet};

use super::endpoint::TokenEndpoint;
use super::source::{AccessToken, FetchError, TokenRequest, TokenSource};

/// RFC 8693 §2.1 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token type of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token to exchange: its value and, when known, the scopes it carries.
#[derive(Clone)]
pub struct SubjectToken {
    token: Arc<str>,
    granted: Option<ScopeSet>,
}

impl std::fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectToken")
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

impl SubjectToken {
    /// The verified inbound token: value and granted scopes, so widening is caught locally.
    pub fn from_grant(grant: &Grant) -> Self {
        Self {
            token: Arc::from(grant.token()),
            granted: Some(grant.scopes().clone()),
        }
    }
    /// A raw token whose scopes are unknown here (only the broker can refuse widening).
    pub fn from_token(token: impl Into<String>) -> Self {
        Self {
            token: Arc::from(token.into()),
            granted: None,
        }
    }
    /// States the scopes the token carries.
    pub fn with_granted(mut self, scopes: ScopeSet) -> Self {
        self.granted = Some(scopes);
        self
    }
}

impl From<&Grant> for SubjectToken {
    fn from(g: &Grant) -> Self {
        Self::from_grant(g)
    }
}

/// Token exchange against a token endpoint.
///
/// ```
/// use zsp_tower::outbound::{TokenEndpoint, TokenExchange};
/// let exchange = TokenExchange::new(
///     TokenEndpoint::builder()
///         .token_endpoint("https://broker.example/token")
///         .client_id("orders-service")
///         .client_secret_post("s3cret")
///         .build()
///         .unwrap(),
/// );
/// // In a handler: `exchange.source(SubjectToken::from_grant(&grant))` is a TokenSource for
/// // the next hop, or call `exchange.exchange(&subject, None, &request)` directly.
/// # let _ = exchange;
/// ```
#[derive(Debug, Clone)]
pub struct TokenExchange {
    endpoint: TokenEndpoint,
}

impl TokenExchange {
    /// Exchange through `endpoint`.
    pub fn new(endpoint: TokenEndpoint) -> Self {
        Self { endpoint }
    }

    /// Exchanges `subject` (optionally with `actor`) for a token for `req`.
    pub async fn exchange(
        &self,
        subject: &SubjectToken,
        actor: Option<&SubjectToken>,
        req: &TokenRequest,
    ) -> Result<AccessToken, FetchError> {
        if let Some(granted) = &subject.granted {
            let not_granted: ScopeSet = req.scope_set().iter().filter(|s| !granted.contains(s)).collect();
            if !not_granted.is_empty() {
                tracing::warn!(%not_granted, "token exchange refused locally: scope widening");
                return Err(FetchError::ScopeWidening { not_granted });
            }
        }
        let scope = req.scope_set().to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("subject_token", &subject.token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        if let Some(a) = actor {
            params.push(("actor_token", &a.token));
            params.push(("actor_token_type", ACCESS_TOKEN_TYPE));
        }
        if let Some(aud) = req.audience() {
            // RFC 8693 allows both; `resource` for URIs, `audience` for logical names.
            params.push(("resource", aud));
            params.push(("audience", aud));
        }
        if !scope.is_empty() {
            params.push(("scope", &scope));
        }
        self.endpoint
            .request_dpop(TOKEN_EXCHANGE_GRANT, &params, req.audience(), req.dpop())
            .await
    }

    /// A [`TokenSource`] exchanging this one subject token. Use it per inbound request
    /// (tokens derived from different subjects must never share a cache).
    pub fn source(&self, subject: SubjectToken) -> ExchangeSource {
        ExchangeSource {
            exchange: self.clone(),
            subject,
            actor: None,
        }
    }
}

/// [`TokenExchange`] bound to one subject (and optional actor) token.
#[derive(Debug, Clone)]
pub struct ExchangeSource {
    exchange: TokenExchange,
    subject: SubjectToken,
    actor: Option<SubjectToken>,
}

impl ExchangeSource {
    /// Adds an actor token (RFC 8693 §2.1 `actor_token`).
    pub fn actor(mut self, actor: SubjectToken) -> Self {
        self.actor = Some(actor);
        self
    }
}

#[async_trait::async_trait]
impl TokenSource for ExchangeSource {
    async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
        self.exchange
            .exchange(&self.subject, self.actor.as_ref(), req)
            .await
    }
    fn id(&self) -> &str {
        self.exchange.endpoint.label()
    }
}
