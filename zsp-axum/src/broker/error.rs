//! RFC 6749 §5.2 error responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An OAuth error answer. `description` is a fixed, generic phrase: never an internal detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// Malformed request.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Client authentication failed. `basic` adds the Basic challenge (RFC 6749 §5.2).
    #[error("invalid_client")]
    InvalidClient {
        /// Whether the client tried HTTP Basic.
        basic: bool,
    },
    /// The grant (subject token) is invalid, expired or revoked.
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// The client may not use this grant type or feature.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    /// Unknown grant type.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// Scopes beyond what the client (or the subject token) has.
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// Audience/resource not allowed (RFC 8707 §2).
    #[error("invalid_target: {0}")]
    InvalidTarget(&'static str),
    /// Invalid DPoP proof (RFC 9449 §5).
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(&'static str),
    /// The DPoP proof must carry the broker's nonce (RFC 9449 §8).
    #[error("use_dpop_nonce")]
    UseDpopNonce(String),
    /// Per-client rate limit.
    #[error("rate limited")]
    RateLimited,
    /// Something failed on the broker's side.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::InvalidDpopProof(_) => "invalid_dpop_proof",
            OAuthError::UseDpopNonce(_) => "use_dpop_nonce",
            OAuthError::RateLimited => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }

    fn description(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidTarget(d)
            | OAuthError::InvalidDpopProof(d) => d,
            OAuthError::InvalidClient { .. } => "client authentication failed",
            OAuthError::UnsupportedGrantType => "grant type not supported",
            OAuthError::UseDpopNonce(_) => "DPoP proof must carry the server nonce",
            OAuthError::RateLimited => "too many token requests",
            OAuthError::ServerError => "the broker could not complete the request",
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match &self {
            OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            OAuthError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({ "error": self.code(), "error_description": self.description() });
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match &self {
            OAuthError::InvalidClient { basic: true } => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"zsp-broker\""),
                );
            }
            OAuthError::RateLimited => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            OAuthError::UseDpopNonce(nonce) => {
                if let Ok(v) = HeaderValue::from_str(nonce) {
                    h.insert("dpop-nonce", v);
                }
            }
            _ => {}
        }
        resp
    }
}
