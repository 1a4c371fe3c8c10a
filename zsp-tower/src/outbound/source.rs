//! What every token source speaks: [`TokenRequest`] in, [`AccessToken`] or [`FetchError`] out.
//!
//! Invariant: the token value lives only inside [`AccessToken`] (and the `Authorization`
//! header value it pre-builds, marked sensitive); neither `Debug` nor `Display` of any type in
//! this module prints it.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use zsp_core::dpop::DpopKey;
use zsp_core::{ScopeSet, UnixTime};

/// A DPoP key inside a [`TokenRequest`]: compared and hashed by its thumbprint, so the cache
/// key stays what it was (the thumbprint is also in `key_thumbprint`).
#[derive(Clone)]
struct BoundKey(DpopKey);

impl PartialEq for BoundKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.thumbprint().as_str() == other.0.thumbprint().as_str()
    }
}
impl Eq for BoundKey {}
impl std::hash::Hash for BoundKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.thumbprint().as_str().hash(state);
    }
}
impl std::fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.thumbprint().as_str())
    }
}

/// What a caller needs a token for: one audience, a set of scopes, optionally bound to a key.
///
/// It is also the cache key of [`crate::outbound::CachedTokenSource`] (per source), so two
/// requests that differ only in scope order share one token.
#[derive(Clone, Default)]
pub struct TokenRequest {
    audience: Option<String>,
    scopes: ScopeSet,
    key_thumbprint: Option<String>,
    dpop: Option<BoundKey>,
    /// The hash of the fields above, worked out the first time the request is hashed and kept
    /// (clones keep it too): a cache looks a request up on every call, and hashing it field by
    /// field was a fifth of a cache hit. Every method that changes a field clears it.
    key_hash: OnceLock<u64>,
}

impl PartialEq for TokenRequest {
    fn eq(&self, other: &Self) -> bool {
        self.audience == other.audience
            && self.scopes == other.scopes
            && self.key_thumbprint == other.key_thumbprint
            && self.dpop == other.dpop
    }
}
impl Eq for TokenRequest {}

impl std::hash::Hash for TokenRequest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let key_hash = self.key_hash.get_or_init(|| {
            use std::hash::Hasher;
            // Fixed keys: the requests come from the application, not from its callers, and
            // the cache's own hasher is unkeyed too.
            let mut h = std::hash::DefaultHasher::new();
            (&self.audience, &self.scopes, &self.key_thumbprint, &self.dpop).hash(&mut h);
            h.finish()
        });
        state.write_u64(*key_hash);
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .field("key_thumbprint", &self.key_thumbprint)
            .field("dpop", &self.dpop)
            .finish()
    }
}

impl TokenRequest {
    /// A request for `audience`, sent as the RFC 8707 `resource` parameter.
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: Some(audience.into()),
            ..Self::default()
        }
    }
    /// A request without an audience (the broker's default).
    pub fn without_audience() -> Self {
        Self::default()
    }
    /// Adds scopes (kept sorted and deduplicated).
    pub fn scopes<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, scopes: I) -> Self {
        for s in scopes {
            self.scopes.insert(s.as_ref());
        }
        self.key_hash = OnceLock::new();
        self
    }
    /// Binds the request to a proof-of-possession key by its RFC 7638 thumbprint (DPoP
    /// `jkt`); part of the cache key so tokens bound to different keys never mix.
    pub fn key_thumbprint(mut self, jkt: impl Into<String>) -> Self {
        self.key_thumbprint = Some(jkt.into());
        self.key_hash = OnceLock::new();
        self
    }
    /// Asks for a DPoP-bound token (RFC 9449 §5): the token endpoint request carries a proof
    /// made with `key`, and the key's thumbprint becomes part of the cache key.
    pub fn dpop_key(mut self, key: DpopKey) -> Self {
        self.key_thumbprint = Some(key.thumbprint().as_str().to_owned());
        self.dpop = Some(BoundKey(key));
        self.key_hash = OnceLock::new();
        self
    }
    /// The DPoP key the token is to be bound to, if any.
    pub fn dpop(&self) -> Option<&DpopKey> {
        self.dpop.as_ref().map(|k| &k.0)
    }
    /// The audience / resource.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }
    /// The requested scopes, sorted.
    pub fn scope_set(&self) -> &ScopeSet {
        &self.scopes
    }
    /// The bound key's thumbprint.
    pub fn thumbprint(&self) -> Option<&str> {
        self.key_thumbprint.as_deref()
    }
}

/// The token type of an access token (RFC 6749 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449).
    DPoP,
}

impl TokenType {
    /// The `Authorization` scheme.
    pub fn scheme(&self) -> &'static str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::DPoP => "DPoP",
        }
    }
    /// Parses a `token_type` value, case-insensitively as RFC 6749 §5.1 requires.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("bearer") {
            Some(TokenType::Bearer)
        } else if s.eq_ignore_ascii_case("dpop") {
            Some(TokenType::DPoP)
        } else {
            None
        }
    }
}

struct Inner {
    secret: Arc<str>,
    header: HeaderValue,
    token_type: TokenType,
    issued_at: UnixTime,
    expires_at: UnixTime,
    scope: Option<ScopeSet>,
}

/// An access token with its metadata. Cheap to clone (one `Arc`).
///
/// `Debug` shows type, times, scope and a short fingerprint, never the value; there is no
/// `Display`.
#[derive(Clone)]
pub struct AccessToken(Arc<Inner>);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.0.token_type)
            .field("fingerprint", &self.fingerprint())
            .field("issued_at", &self.0.issued_at)
            .field("expires_at", &self.0.expires_at)
            .field("scope", &self.0.scope)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// Wraps a token value. Fails if the value cannot go into an HTTP header (RFC 6749
    /// `access_token` is VSCHAR only) or the lifetime is inverted.
    pub fn new(
        secret: impl Into<String>,
        token_type: TokenType,
        issued_at: UnixTime,
        expires_at: UnixTime,
        scope: Option<ScopeSet>,
    ) -> Result<Self, FetchError> {
        let secret: String = secret.into();
        if secret.is_empty() || !secret.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(FetchError::Malformed(
                "access_token is empty or not VSCHAR".into(),
            ));
        }
        if expires_at < issued_at {
            return Err(FetchError::Malformed("token expires before it was issued".into()));
        }
        let mut header = HeaderValue::try_from(format!("{} {secret}", token_type.scheme()))
            .map_err(|_| FetchError::Malformed("access_token is not a valid header value".into()))?;
        header.set_sensitive(true);
        Ok(Self(Arc::new(Inner {
            secret: Arc::from(secret),
            header,
            token_type,
            issued_at,
            expires_at,
            scope,
        })))
    }
    /// The token value. A credential: never log it.
    pub fn secret(&self) -> &str {
        &self.0.secret
    }
    /// The ready `Authorization` header value (`<type> <token>`), marked sensitive.
    pub fn authorization(&self) -> &HeaderValue {
        &self.0.header
    }
    /// The token type.
    pub fn token_type(&self) -> &TokenType {
        &self.0.token_type
    }
    /// When the token was received (unix seconds, client clock).
    pub fn issued_at(&self) -> UnixTime {
        self.0.issued_at
    }
    /// When the token expires (unix seconds, client clock: received + `expires_in`).
    pub fn expires_at(&self) -> UnixTime {
        self.0.expires_at
    }
    /// Lifetime in seconds.
    pub fn lifetime(&self) -> u64 {
        self.0.expires_at - self.0.issued_at
    }
    /// The granted scope, when the token endpoint said (RFC 6749 §5.1: absent means as
    /// requested).
    pub fn scope(&self) -> Option<&ScopeSet> {
        self.0.scope.as_ref()
    }
    /// A short non-reversible fingerprint for logs: first 6 bytes of SHA-256, hex.
    pub fn fingerprint(&self) -> String {
        let h = zsp_core::crypto::sha256(self.0.secret.as_bytes());
        h[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Whether `other` carries the same value (constant time).
    pub fn same_value(&self, other: &AccessToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || zsp_core::crypto::ct_eq(self.secret().as_bytes(), other.secret().as_bytes())
    }
}

/// An RFC 6749 §5.2 (and RFC 8707 / RFC 8693) error code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// `invalid_target` (RFC 8707): the audience/resource is not allowed.
    InvalidTarget,
    /// Any other code, kept verbatim (truncated).
    Other(String),
}

impl OAuthErrorCode {
    /// Parses an `error` value.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "invalid_target" => Self::InvalidTarget,
            other => Self::Other(other.chars().take(64).collect()),
        }
    }
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The token endpoint could not be reached or the connection failed.
    #[error("token endpoint transport error: {0}")]
    Transport(String),
    /// The token endpoint did not answer within the time budget.
    #[error("token endpoint timed out")]
    Timeout,
    /// The token endpoint answered with an unexpected HTTP status and no OAuth error.
    #[error("token endpoint answered HTTP {0}")]
    Status(u16),
    /// The token endpoint refused with an RFC 6749 §5.2 error.
    #[error("token endpoint refused: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth {
        /// The `error` code.
        code: OAuthErrorCode,
        /// The `error_description`, truncated.
        description: Option<String>,
    },
    /// The response was not a valid token response.
    #[error("malformed token response: {0}")]
    Malformed(String),
    /// The response exceeded the size limit.
    #[error("token response larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Recent fetches failed; no attempt is made until the backoff ends.
    #[error("token broker unavailable, retry after {retry_after_secs} s (last error: {last_error})")]
    BrokerUnavailable {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
        /// The last fetch error, as text.
        last_error: String,
    },
    /// A token exchange asked for scopes the subject token does not have (RFC 8693 tokens
    /// may only narrow); refused before anything was sent.
    #[error("scope widening refused: {not_granted} not granted to the subject token")]
    ScopeWidening {
        /// The requested scopes the subject lacks.
        not_granted: ScopeSet,
    },
    /// RFC 8414 discovery failed.
    #[error("authorization server discovery failed: {0}")]
    Discovery(String),
    /// Invalid configuration.
    #[error("invalid token source configuration: {0}")]
    Config(String),
    /// A client assertion could not be signed.
    #[error("client assertion signing failed: {0}")]
    Signing(String),
}

impl FetchError {
    /// Whether retrying later might succeed (transport, timeout, 5xx, 429, backoff). OAuth
    /// refusals and configuration errors are permanent until something changes.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Transport(_) | FetchError::Timeout | FetchError::BrokerUnavailable { .. } => true,
            FetchError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }
}

/// Anything that hands out access tokens: a token endpoint, a cache in front of one, a test
/// double.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A token for `req`.
    async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError>;

    /// What [`token`](Self::token) would answer, when the answer needs no waiting: a cached
    /// token, or a refusal while the source backs off. `None`: only `token` can answer.
    ///
    /// For callers on a hot path, which ask this first (the attach layer does): it spares them
    /// the boxed future `token` returns. Sources without a cache keep the default, `None`.
    fn token_now(&self, req: &TokenRequest) -> Option<Result<AccessToken, FetchError>> {
        let _ = req;
        None
    }

    /// Tells the source that `rejected` was refused by its audience (a 401 `invalid_token`),
    /// so that the next [`TokenSource::token`] does not return it again. Sources without
    /// state ignore it.
    async fn invalidate(&self, req: &TokenRequest, rejected: &AccessToken) {
        let _ = (req, rejected);
    }

    /// A label for logs and spans: the token endpoint, or the source's kind.
    fn id(&self) -> &str {
        "token-source"
    }
}

#[async_trait::async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
        (**self).token(req).await
    }
    fn token_now(&self, req: &TokenRequest) -> Option<Result<AccessToken, FetchError>> {
        (**self).token_now(req)
    }
    async fn invalidate(&self, req: &TokenRequest, rejected: &AccessToken) {
        (**self).invalidate(req, rejected).await
    }
    fn id(&self) -> &str {
        (**self).id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let t = AccessToken::new("s3cr3t-token-value", TokenType::Bearer, 10, 70, None).unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(format!("{:?}", t.authorization()).contains("Sensitive"));
        assert_eq!(t.lifetime(), 60);
    }

    #[test]
    fn rfc6749_5_1_token_value_must_be_vschar() {
        assert!(AccessToken::new("a b", TokenType::Bearer, 0, 1, None).is_err());
        assert!(AccessToken::new("", TokenType::Bearer, 0, 1, None).is_err());
        assert!(AccessToken::new("a\nb", TokenType::Bearer, 0, 1, None).is_err());
        assert!(AccessToken::new("x", TokenType::Bearer, 5, 1, None).is_err());
    }

    #[test]
    fn request_scopes_are_sorted_so_keys_match() {
        let a = TokenRequest::new("api").scopes(["b", "a"]);
        let b = TokenRequest::new("api").scopes(["a", "b", "a"]);
        assert_eq!(a, b);
    }

    #[test]
    fn the_kept_hash_follows_every_change_and_equal_requests_hash_alike() {
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        let key = DpopKey::generate_es256().unwrap();
        // Equal requests built along different paths, some hashed before they changed.
        let hashed_then_changed = {
            let r = TokenRequest::new("api").scopes(["b"]);
            state.hash_one(&r);
            r.scopes(["a"])
        };
        let cloned_then_bound = {
            let r = TokenRequest::new("api").key_thumbprint("x");
            state.hash_one(&r);
            r.clone().dpop_key(key.clone())
        };
        let pairs = [
            (TokenRequest::default(), TokenRequest::without_audience()),
            (hashed_then_changed, TokenRequest::new("api").scopes(["a", "b"])),
            (cloned_then_bound, TokenRequest::new("api").dpop_key(key.clone())),
        ];
        for (a, b) in &pairs {
            assert_eq!(a, b);
            assert_eq!(state.hash_one(a), state.hash_one(b), "{a:?}");
            assert_eq!(
                state.hash_one(a),
                state.hash_one(a.clone()),
                "clones keep the hash"
            );
        }
        // Each field, changed alone, changes the hash (as it changes equality), also when the
        // request was hashed before the change.
        let base = TokenRequest::new("api").scopes(["a"]);
        let base_hash = state.hash_one(&base);
        let changed = [
            TokenRequest::new("other").scopes(["a"]),
            TokenRequest::without_audience().scopes(["a"]),
            base.clone().scopes(["b"]),
            base.clone().key_thumbprint("jkt"),
            base.clone().dpop_key(key),
        ];
        for c in &changed {
            assert_ne!(&base, c);
            assert_ne!(base_hash, state.hash_one(c), "{c:?}");
        }
        assert!(
            !format!("{base:?}").contains("key_hash"),
            "Debug shows the request, not its hash"
        );
    }
}
