//! The HTTP side of talking to an OAuth 2.0 token endpoint, shared by
//! [`crate::outbound::ClientCredentials`] and [`crate::outbound::TokenExchange`]: client
//! authentication (RFC 6749 §2.3.1, RFC 7523), RFC 8414 discovery, a bounded streaming read of
//! the response, and RFC 6749 §5.1/§5.2 parsing.
//!
//! Invariants: secrets and tokens appear in no `Debug` output and no log line; a response is
//! never read past `max_response_bytes`; no input from the endpoint can panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Url;
use serde::Deserialize;
use tracing::Instrument;
use zsp_core::dpop::{DPOP, DpopKey, response_nonce};
use zsp_core::{Clock, ScopeSet, SigningKey, SystemClock};

use super::source::{AccessToken, FetchError, OAuthErrorCode, TokenType};

/// RFC 7523 §2.2 assertion type for `private_key_jwt`.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client secret. `Debug` prints `ClientSecret(***)`; there is no `Display`.
#[derive(Clone)]
pub struct ClientSecret(Arc<str>);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Arc::from(secret.into()))
    }
    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

impl<S: Into<String>> From<S> for ClientSecret {
    fn from(s: S) -> Self {
        Self::new(s)
    }
}

/// Who the `aud` of a `private_key_jwt` assertion names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The issuer identifier when known (configured or discovered), else the token endpoint.
    /// The default: RFC 7523bis recommends the issuer.
    IssuerOrTokenEndpoint,
    /// Always the token endpoint URL (what some older servers require).
    TokenEndpoint,
    /// A fixed value.
    Custom(String),
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1): HTTP Basic with form-urlencoded id and secret.
    SecretBasic(ClientSecret),
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    SecretPost(ClientSecret),
    /// `private_key_jwt` (RFC 7523 §2.2): a fresh signed assertion per request.
    PrivateKeyJwt {
        /// The client's signing key; its public half is registered with the server.
        key: SigningKey,
        /// The assertion's `aud`.
        audience: AssertionAudience,
        /// Assertion lifetime, at most 60 s.
        lifetime: Duration,
    },
    /// Only `client_id` in the body (public clients, or mTLS done by the HTTP client).
    None,
}

enum EndpointSource {
    Fixed {
        token_endpoint: Url,
        issuer: Option<String>,
    },
    Discover {
        issuer: String,
        found: tokio::sync::OnceCell<Discovered>,
    },
}

#[derive(Clone)]
struct Discovered {
    token_endpoint: Url,
    issuer: String,
}

struct Inner {
    source: EndpointSource,
    client_id: String,
    auth: ClientAuth,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    total_timeout: Duration,
    max_response_bytes: usize,
    default_lifetime: u64,
    allow_http: bool,
    label: String,
    /// The latest `DPoP-Nonce` this endpoint sent, so later token requests carry it from the
    /// start instead of collecting a `use_dpop_nonce` refusal each time.
    dpop_nonce: std::sync::Mutex<Option<String>>,
}

/// A configured token endpoint client: where to post, how to authenticate, the limits. Cheap
/// to clone.
#[derive(Clone)]
pub struct TokenEndpoint(Arc<Inner>);

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("endpoint", &self.0.label)
            .field("client_id", &self.0.client_id)
            .field("auth", &self.0.auth)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenEndpoint`]; validated at [`TokenEndpointBuilder::build`].
#[derive(Debug)]
pub struct TokenEndpointBuilder {
    token_endpoint: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    auth: ClientAuth,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_response_bytes: usize,
    default_lifetime: u64,
    allow_http: bool,
    assertion_audience: Option<AssertionAudience>,
    assertion_lifetime: Option<Duration>,
}

impl TokenEndpoint {
    /// Starts a builder. Defaults: connect timeout 2 s, total 5 s, responses ≤ 64 KiB, a
    /// response without `expires_in` counts as 60 s, plain `http` only to loopback.
    pub fn builder() -> TokenEndpointBuilder {
        TokenEndpointBuilder {
            token_endpoint: None,
            issuer: None,
            client_id: None,
            auth: ClientAuth::None,
            http: None,
            clock: Arc::new(SystemClock),
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
            default_lifetime: 60,
            allow_http: false,
            assertion_audience: None,
            assertion_lifetime: None,
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.0.client_id
    }

    /// The token endpoint URL or, before discovery, the issuer; for logs.
    pub fn label(&self) -> &str {
        &self.0.label
    }

    /// The clock used for `expires_at` and assertion times.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// Resolves the token endpoint (running discovery once if configured).
    pub async fn resolve(&self) -> Result<(Url, Option<String>), FetchError> {
        match &self.0.source {
            EndpointSource::Fixed {
                token_endpoint,
                issuer,
            } => Ok((token_endpoint.clone(), issuer.clone())),
            EndpointSource::Discover { issuer, found } => {
                // A failed discovery is not remembered, so the next call tries again; the
                // token cache's backoff keeps that from becoming a storm.
                let d = found.get_or_try_init(|| self.discover(issuer)).await?;
                Ok((d.token_endpoint.clone(), Some(d.issuer.clone())))
            }
        }
    }

    async fn discover(&self, issuer: &str) -> Result<Discovered, FetchError> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            token_endpoint: Option<String>,
        }
        let base =
            Url::parse(issuer).map_err(|e| FetchError::Discovery(format!("issuer is not a URL: {e}")))?;
        let mut last = FetchError::Discovery("no metadata document".into());
        for url in well_known_urls(&base) {
            let resp = self
                .0
                .http
                .get(url.clone())
                .header(http::header::ACCEPT, "application/json")
                .timeout(self.0.total_timeout)
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    last = map_reqwest(e);
                    continue;
                }
            };
            let status = resp.status();
            let body = read_limited(resp, self.0.max_response_bytes).await?;
            if !status.is_success() {
                last = FetchError::Discovery(format!("{url} answered HTTP {}", status.as_u16()));
                continue;
            }
            let meta: Metadata = serde_json::from_slice(&body)
                .map_err(|e| FetchError::Discovery(format!("{url}: invalid metadata: {e}")))?;
            // RFC 8414 §3.3: the metadata must name exactly the issuer we asked about, or an
            // attacker-controlled document could redirect our credentials.
            if meta.issuer != issuer {
                return Err(FetchError::Discovery(format!(
                    "issuer mismatch: metadata says {:?}",
                    truncate(&meta.issuer, 128)
                )));
            }
            let te = meta
                .token_endpoint
                .ok_or_else(|| FetchError::Discovery("metadata has no token_endpoint".into()))?;
            let token_endpoint = Url::parse(&te)
                .map_err(|e| FetchError::Discovery(format!("token_endpoint is not a URL: {e}")))?;
            check_scheme(&token_endpoint, self.0.allow_http)?;
            return Ok(Discovered {
                token_endpoint,
                issuer: meta.issuer,
            });
        }
        Err(last)
    }

    /// Posts `params` (grant-specific) plus client authentication to the token endpoint and
    /// parses the answer. `audience` is only for the span.
    pub async fn request(
        &self,
        grant_type: &'static str,
        params: &[(&str, &str)],
        audience: Option<&str>,
    ) -> Result<AccessToken, FetchError> {
        self.request_dpop(grant_type, params, audience, None).await
    }

    /// [`request`](Self::request) asking for a token bound to `dpop` (RFC 9449 §5): the
    /// request carries a `DPoP` proof for `POST <token endpoint>`. When the endpoint answers
    /// 400 `use_dpop_nonce` with a `DPoP-Nonce` header (§8), the request is sent once more with
    /// a fresh proof carrying that nonce (and fresh client authentication, so a
    /// `private_key_jwt` assertion is never reused); the endpoint's latest nonce is remembered
    /// for later requests.
    pub async fn request_dpop(
        &self,
        grant_type: &'static str,
        params: &[(&str, &str)],
        audience: Option<&str>,
        dpop: Option<&DpopKey>,
    ) -> Result<AccessToken, FetchError> {
        let span = tracing::info_span!(
            "zsp.token_fetch",
            endpoint = %self.0.label,
            grant_type,
            audience = audience.unwrap_or(""),
            client_id = %self.0.client_id,
            latency_ms = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .request_inner(grant_type, params, dpop)
            .instrument(span.clone())
            .await;
        span.record("latency_ms", started.elapsed().as_millis() as u64);
        match &result {
            Ok(t) => {
                span.record("outcome", "ok");
                span.in_scope(|| {
                    tracing::debug!(fingerprint = %t.fingerprint(), lifetime = t.lifetime(), "token fetched")
                });
            }
            Err(e) => {
                span.record("outcome", "error");
                span.in_scope(|| tracing::warn!(error = %e, "token fetch failed"));
            }
        }
        result
    }

    async fn request_inner(
        &self,
        grant_type: &str,
        params: &[(&str, &str)],
        dpop: Option<&DpopKey>,
    ) -> Result<AccessToken, FetchError> {
        let (url, issuer) = self.resolve().await?;
        let Some(key) = dpop else {
            return self.send_once(&url, issuer, grant_type, params, None).await.0;
        };
        let nonce = self.remembered_nonce();
        let (result, new_nonce) = self
            .send_once(
                &url,
                issuer.clone(),
                grant_type,
                params,
                Some((key, nonce.as_deref())),
            )
            .await;
        if let Some(n) = &new_nonce {
            self.remember_nonce(n);
        }
        match (&result, new_nonce) {
            (Err(FetchError::OAuth { code, .. }), Some(fresh))
                if matches!(code, OAuthErrorCode::Other(c) if c == "use_dpop_nonce")
                    && nonce.as_deref() != Some(fresh.as_str()) =>
            {
                let (result, newer) = self
                    .send_once(&url, issuer, grant_type, params, Some((key, Some(&fresh))))
                    .await;
                if let Some(n) = &newer {
                    self.remember_nonce(n);
                }
                result
            }
            _ => result,
        }
    }

    fn remembered_nonce(&self) -> Option<String> {
        match self.0.dpop_nonce.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn remember_nonce(&self, nonce: &str) {
        let mut g = match self.0.dpop_nonce.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if g.as_deref() != Some(nonce) {
            *g = Some(nonce.to_owned());
        }
    }

    /// One POST to the token endpoint; also returns the `DPoP-Nonce` the answer carried.
    async fn send_once(
        &self,
        url: &Url,
        issuer: Option<String>,
        grant_type: &str,
        params: &[(&str, &str)],
        dpop: Option<(&DpopKey, Option<&str>)>,
    ) -> (Result<AccessToken, FetchError>, Option<String>) {
        let proof = match dpop {
            None => None,
            Some((key, nonce)) => {
                match key.proof_at(&http::Method::POST, url.as_str(), None, nonce, self.0.clock.now()) {
                    Ok(p) => Some(p),
                    Err(e) => return (Err(FetchError::Signing(format!("DPoP proof: {e}"))), None),
                }
            }
        };
        let url = url.clone();
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 4);
        form.push(("grant_type", grant_type));
        form.extend_from_slice(params);
        let assertion;
        let mut basic = None;
        match &self.0.auth {
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: form-urlencode id and secret before base64, which many
                // clients forget (and then secrets with ':' or '%' fail).
                let raw = format!(
                    "{}:{}",
                    form_encode(&self.0.client_id),
                    form_encode(secret.expose())
                );
                let Ok(mut v) = http::HeaderValue::try_from(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )) else {
                    let e = FetchError::Config("client credentials are not header-safe".into());
                    return (Err(e), None);
                };
                v.set_sensitive(true);
                basic = Some(v);
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", &self.0.client_id));
                form.push(("client_secret", secret.expose()));
            }
            ClientAuth::PrivateKeyJwt {
                key,
                audience,
                lifetime,
            } => {
                let aud = match audience {
                    AssertionAudience::IssuerOrTokenEndpoint => issuer.unwrap_or_else(|| url.to_string()),
                    AssertionAudience::TokenEndpoint => url.to_string(),
                    AssertionAudience::Custom(a) => a.clone(),
                };
                assertion = match self.assertion(key, &aud, *lifetime) {
                    Ok(a) => a,
                    Err(e) => return (Err(e), None),
                };
                form.push(("client_id", &self.0.client_id));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION));
                form.push(("client_assertion", &assertion));
            }
            ClientAuth::None => form.push(("client_id", &self.0.client_id)),
        }
        let body = match serde_urlencoded::to_string(&form) {
            Ok(b) => b,
            Err(e) => return (Err(FetchError::Config(e.to_string())), None),
        };
        let mut rb = self
            .0
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.0.total_timeout)
            .body(body);
        if let Some(v) = basic {
            rb = rb.header(http::header::AUTHORIZATION, v);
        }
        if let Some(proof) = proof {
            match http::HeaderValue::try_from(proof) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    rb = rb.header(DPOP, v);
                }
                Err(_) => {
                    return (
                        Err(FetchError::Signing("DPoP proof is not header-safe".into())),
                        None,
                    );
                }
            }
        }
        let sent_at = self.0.clock.now();
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return (Err(map_reqwest(e)), None),
        };
        let status = resp.status();
        let nonce = response_nonce(resp.headers()).map(str::to_owned);
        let bytes = match read_limited(resp, self.0.max_response_bytes).await {
            Ok(b) => b,
            Err(e) => return (Err(e), nonce),
        };
        let result = if status.is_success() {
            parse_success(&bytes, sent_at, self.0.default_lifetime)
        } else {
            Err(parse_error(status.as_u16(), &bytes))
        };
        (result, nonce)
    }

    fn assertion(&self, key: &SigningKey, aud: &str, lifetime: Duration) -> Result<String, FetchError> {
        let iat = self.0.clock.now();
        let jti = zsp_core::crypto::random_id::<16>().map_err(|e| FetchError::Signing(e.to_string()))?;
        let claims = serde_json::json!({
            "iss": self.0.client_id,
            "sub": self.0.client_id,
            "aud": aud,
            "jti": jti,
            "iat": iat,
            "exp": iat.saturating_add(lifetime.as_secs().clamp(1, 60)),
        });
        key.sign("JWT", &claims)
            .map_err(|e| FetchError::Signing(e.to_string()))
    }
}

impl TokenEndpointBuilder {
    /// The token endpoint URL, given directly.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }
    /// The issuer identifier. Without a token endpoint, it is found by RFC 8414 discovery
    /// (`/.well-known/oauth-authorization-server`, then `openid-configuration`) on first use;
    /// with one, it is the default `aud` of client assertions.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
    /// The client id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }
    /// Authenticates with `client_secret_basic`.
    pub fn client_secret_basic(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.auth = ClientAuth::SecretBasic(secret.into());
        self
    }
    /// Authenticates with `client_secret_post`.
    pub fn client_secret_post(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.auth = ClientAuth::SecretPost(secret.into());
        self
    }
    /// Authenticates with `private_key_jwt` (60 s assertions, `aud` = issuer when known).
    pub fn private_key_jwt(mut self, key: SigningKey) -> Self {
        self.auth = ClientAuth::PrivateKeyJwt {
            key,
            audience: AssertionAudience::IssuerOrTokenEndpoint,
            lifetime: Duration::from_secs(60),
        };
        self
    }
    /// The `aud` of `private_key_jwt` assertions (default: the issuer when known, else the
    /// token endpoint).
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = Some(audience);
        self
    }
    /// The lifetime of `private_key_jwt` assertions, 1 to 60 s (default 60 s).
    pub fn assertion_lifetime(mut self, d: Duration) -> Self {
        self.assertion_lifetime = Some(d);
        self
    }
    /// Any client authentication.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }
    /// Uses this HTTP client (its own timeouts apply too; the total timeout is set per request).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }
    /// Uses `clock` for `expires_at` and assertion times (tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// Connect timeout (default 2 s) for the built-in HTTP client.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Total time budget per request (default 5 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.total_timeout = d;
        self
    }
    /// Largest response read (default 64 KiB).
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }
    /// Lifetime assumed when a response has no `expires_in` (default 60 s: short, so a
    /// token of unknown lifetime is refreshed soon rather than used after it died).
    pub fn default_lifetime(mut self, d: Duration) -> Self {
        self.default_lifetime = d.as_secs();
        self
    }
    /// Allows plain `http` token endpoints on non-loopback hosts. Off by default: client
    /// secrets and tokens must not cross a network in clear text.
    pub fn allow_insecure_http(mut self, on: bool) -> Self {
        self.allow_http = on;
        self
    }

    /// Validates and builds.
    pub fn build(mut self) -> Result<TokenEndpoint, FetchError> {
        if let ClientAuth::PrivateKeyJwt {
            audience, lifetime, ..
        } = &mut self.auth
        {
            if let Some(a) = self.assertion_audience.take() {
                *audience = a;
            }
            if let Some(l) = self.assertion_lifetime.take() {
                *lifetime = l;
            }
        }
        let client_id = self
            .client_id
            .filter(|c| !c.is_empty())
            .ok_or_else(|| FetchError::Config("client_id is required".into()))?;
        if let ClientAuth::PrivateKeyJwt { lifetime, .. } = &self.auth
            && (lifetime.as_secs() == 0 || lifetime.as_secs() > 60)
        {
            return Err(FetchError::Config("assertion lifetime must be 1..=60 s".into()));
        }
        if self.max_response_bytes == 0 || self.total_timeout.is_zero() {
            return Err(FetchError::Config("limits must be non-zero".into()));
        }
        let (source, label) = match (self.token_endpoint, self.issuer) {
            (Some(te), issuer) => {
                let url = Url::parse(&te).map_err(|e| FetchError::Config(format!("token endpoint: {e}")))?;
                check_scheme(&url, self.allow_http)?;
                let label = url.to_string();
                (
                    EndpointSource::Fixed {
                        token_endpoint: url,
                        issuer,
                    },
                    label,
                )
            }
            (None, Some(issuer)) => {
                let url = Url::parse(&issuer).map_err(|e| FetchError::Config(format!("issuer: {e}")))?;
                check_scheme(&url, self.allow_http)?;
                let label = issuer.clone();
                (
                    EndpointSource::Discover {
                        issuer,
                        found: tokio::sync::OnceCell::new(),
                    },
                    label,
                )
            }
            (None, None) => {
                return Err(FetchError::Config(
                    "a token endpoint or an issuer is required".into(),
                ));
            }
        };
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .timeout(self.total_timeout)
                // A token endpoint that redirects is misconfigured or hostile; following it
                // would resend credentials somewhere else.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| FetchError::Config(format!("HTTP client: {e}")))?,
        };
        Ok(TokenEndpoint(Arc::new(Inner {
            source,
            client_id,
            auth: self.auth,
            http,
            clock: self.clock,
            total_timeout: self.total_timeout,
            max_response_bytes: self.max_response_bytes,
            default_lifetime: self.default_lifetime.max(1),
            allow_http: self.allow_http,
            label,
            dpop_nonce: std::sync::Mutex::new(None),
        })))
    }
}

fn check_scheme(url: &Url, allow_http: bool) -> Result<(), FetchError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(FetchError::Config(
                    "plain http token endpoint on a non-loopback host (allow_insecure_http to override)"
                        .into(),
                ))
            }
        }
        other => Err(FetchError::Config(format!("unsupported URL scheme {other:?}"))),
    }
}

/// RFC 8414 §3.1 (well-known inserted between host and path), then the OpenID Connect
/// Discovery form (appended).
fn well_known_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut out = Vec::with_capacity(2);
    let mut a = issuer.clone();
    a.set_query(None);
    a.set_fragment(None);
    a.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    out.push(a);
    let mut b = issuer.clone();
    b.set_query(None);
    b.set_fragment(None);
    b.set_path(&format!("{path}/.well-known/openid-configuration"));
    out.push(b);
    out
}

pub(crate) fn map_reqwest(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        // Without the URL (it is in the span already and may carry a query string), with the
        // causes, which say what actually failed ("connection refused").
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cause = c.source();
        }
        FetchError::Transport(msg)
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge { limit });
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(map_reqwest)? {
        if buf.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

#[derive(Deserialize)]
struct SuccessBody {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
}

pub(crate) fn parse_success(
    bytes: &[u8],
    received_at: u64,
    default_lifetime: u64,
) -> Result<AccessToken, FetchError> {
    let body: SuccessBody = serde_json::from_slice(bytes)
        .map_err(|e| FetchError::Malformed(format!("not a token response: {e}")))?;
    let token_type = TokenType::parse(&body.token_type).ok_or_else(|| {
        FetchError::Malformed(format!(
            "unsupported token_type {:?}",
            truncate(&body.token_type, 32)
        ))
    })?;
    // Some servers send expires_in as a string; anything else that is not a non-negative
    // integer is refused rather than guessed.
    let lifetime = match body.expires_in {
        None | Some(serde_json::Value::Null) => default_lifetime,
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| FetchError::Malformed("expires_in is not a non-negative integer".into()))?,
        Some(serde_json::Value::String(s)) => s
            .parse::<u64>()
            .map_err(|_| FetchError::Malformed("expires_in is not a non-negative integer".into()))?,
        Some(_) => return Err(FetchError::Malformed("expires_in has the wrong type".into())),
    };
    let scope = body.scope.map(ScopeSet::from);
    AccessToken::new(
        body.access_token,
        token_type,
        received_at,
        received_at.saturating_add(lifetime),
        scope,
    )
}

pub(crate) fn parse_error(status: u16, bytes: &[u8]) -> FetchError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => FetchError::OAuth {
            code: OAuthErrorCode::parse(&b.error),
            description: b.error_description.map(|d| truncate(&d, 256)),
        },
        Err(_) => FetchError::Status(status),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// application/x-www-form-urlencoded byte serialisation (WHATWG URL §5.2).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_2_3_1_basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c%d/é"), "a+b%3Ac%25d%2F%C3%A9");
    }

    #[test]
    fn rfc8414_3_1_well_known_is_inserted_before_the_path() {
        let u = well_known_urls(&Url::parse("https://as.example/tenant/").unwrap());
        assert_eq!(
            u[0].as_str(),
            "https://as.example/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            u[1].as_str(),
            "https://as.example/tenant/.well-known/openid-configuration"
        );
        let u = well_known_urls(&Url::parse("https://as.example").unwrap());
        assert_eq!(
            u[0].as_str(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn rfc6749_5_1_success_parsing() {
        let t = parse_success(
            br#"{"access_token":"abc","token_type":"bearer","expires_in":30,"scope":"b a"}"#,
            100,
            60,
        )
        .unwrap();
        assert_eq!(t.expires_at(), 130);
        assert_eq!(t.authorization(), "Bearer abc");
        assert_eq!(t.scope().unwrap().to_string(), "a b");
        let t = parse_success(br#"{"access_token":"abc","token_type":"Bearer"}"#, 100, 60).unwrap();
        assert_eq!(t.expires_at(), 160);
        let t = parse_success(
            br#"{"access_token":"abc","token_type":"Bearer","expires_in":"45"}"#,
            0,
            60,
        )
        .unwrap();
        assert_eq!(t.expires_at(), 45);
        for bad in [
            &br#"{"access_token":"abc","token_type":"mac"}"#[..],
            br#"{"access_token":"abc","token_type":"Bearer","expires_in":-1}"#,
            br#"{"access_token":"abc","token_type":"Bearer","expires_in":1.5}"#,
            br#"{"access_token":"a b","token_type":"Bearer"}"#,
            br#"{"token_type":"Bearer"}"#,
            b"\xff\xfe",
            b"",
            b"[]",
        ] {
            assert!(matches!(parse_success(bad, 0, 60), Err(FetchError::Malformed(_))));
        }
    }

    #[test]
    fn truncated_and_mangled_responses_never_panic() {
        let good = br#"{"access_token":"abc","token_type":"Bearer","expires_in":30,"scope":"a"}"#;
        for i in 0..good.len() {
            let _ = parse_success(&good[..i], u64::MAX - 5, u64::MAX);
            let _ = parse_error(400, &good[..i]);
            let mut m = good.to_vec();
            m[i] ^= 0x80;
            let _ = parse_success(&m, 0, 60);
            m[i] = b'"';
            let _ = parse_success(&m, 0, 60);
        }
        let huge = br#"{"access_token":"abc","token_type":"Bearer","expires_in":18446744073709551615}"#;
        assert_eq!(parse_success(huge, 10, 60).unwrap().expires_at(), u64::MAX);
    }

    #[test]
    fn rfc6749_5_2_errors_are_typed() {
        let e = parse_error(400, br#"{"error":"invalid_scope","error_description":"no"}"#);
        assert_eq!(
            e,
            FetchError::OAuth {
                code: OAuthErrorCode::InvalidScope,
                description: Some("no".into())
            }
        );
        assert_eq!(parse_error(502, b"<html>"), FetchError::Status(502));
    }

    #[test]
    fn http_only_to_loopback() {
        let b = || TokenEndpoint::builder().client_id("c");
        assert!(b().token_endpoint("http://127.0.0.1:9/token").build().is_ok());
        assert!(b().token_endpoint("http://localhost:9/token").build().is_ok());
        assert!(b().token_endpoint("http://broker.example/token").build().is_err());
        assert!(
            b().token_endpoint("http://broker.example/token")
                .allow_insecure_http(true)
                .build()
                .is_ok()
        );
        assert!(b().build().is_err());
        assert!(
            TokenEndpoint::builder()
                .token_endpoint("https://x/t")
                .build()
                .is_err()
        );
    }

    #[test]
    fn rfc7523_assertions_live_at_most_60_s() {
        let key = SigningKey::generate_es256("k").unwrap();
        let b = || {
            TokenEndpoint::builder()
                .client_id("c")
                .token_endpoint("https://x/t")
                .private_key_jwt(key.clone())
        };
        assert!(b().assertion_lifetime(Duration::from_secs(61)).build().is_err());
        assert!(b().assertion_lifetime(Duration::ZERO).build().is_err());
        let ep = b()
            .assertion_lifetime(Duration::from_secs(30))
            .assertion_audience(AssertionAudience::TokenEndpoint)
            .build()
            .unwrap();
        assert!(matches!(
            &ep.0.auth,
            ClientAuth::PrivateKeyJwt { audience: AssertionAudience::TokenEndpoint, lifetime, .. }
                if lifetime.as_secs() == 30
        ));
    }

    #[test]
    fn secrets_are_not_in_debug() {
        let ep = TokenEndpoint::builder()
            .client_id("c")
            .token_endpoint("https://x/t")
            .client_secret_post("hunter2-secret")
            .build()
            .unwrap();
        assert!(!format!("{ep:?}").contains("hunter2"));
    }
}
