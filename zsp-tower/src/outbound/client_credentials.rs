//! The client credentials grant (RFC 6749 §4.4) as a [`TokenSource`].

use super::endpoint::TokenEndpoint;
use super::source::{AccessToken, FetchError, TokenRequest, TokenSource};

/// Fetches tokens with `grant_type=client_credentials`, sending the request's audience as
/// `resource` (RFC 8707) and its scopes as `scope`. Every call goes to the token endpoint:
/// put a [`crate::outbound::CachedTokenSource`] in front.
///
/// ```
/// use zsp_tower::outbound::{ClientCredentials, TokenEndpoint};
/// let source = ClientCredentials::new(
///     TokenEndpoint::builder()
///         .issuer("https://broker.example") // RFC 8414 discovery on first use
///         .client_id("orders-client")
///         .client_secret_basic("s3cret")
///         .build()
///         .unwrap(),
/// );
/// # let _ = source;
/// ```
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    endpoint: TokenEndpoint,
}

impl ClientCredentials {
    /// A source over `endpoint`.
    pub fn new(endpoint: TokenEndpoint) -> Self {
        Self { endpoint }
    }
    /// The endpoint client.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }
}

#[async_trait::async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
        let scope = req.scope_set().to_string();
        let mut params: Vec<(&str, &str)> = Vec::with_capacity(2);
        if let Some(aud) = req.audience() {
            params.push(("resource", aud));
        }
        if !scope.is_empty() {
            params.push(("scope", &scope));
        }
        self.endpoint
            .request_dpop("client_credentials", &params, req.audience(), req.dpop())
            .await
    }

    fn id(&self) -> &str {
        self.endpoint.label()
    }
}
