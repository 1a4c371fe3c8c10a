//! A [`reqwest_middleware::Middleware`] that attaches tokens, for teams that already wrap
//! reqwest with `reqwest-middleware`.
//!
//! Same behaviour as [`crate::outbound::AttachLayer`]: the [`TokenRequest`] comes from the
//! request's extensions (`reqwest_middleware::Extension(TokenRequest)` on the request builder
//! or `with_extension`) or the middleware's fixed one; a 401 `invalid_token` drops the token
//! and retries once, only if `Request::try_clone` succeeds (streamed bodies are not retried).
//! With [`AttachMiddleware::dpop`], DPoP works as in the layer: bound tokens, a fresh proof per
//! request and retry, nonces per origin, and the one retry going to `use_dpop_nonce` first.

use std::sync::Arc;

use http::{Extensions, StatusCode, header};
use reqwest_middleware::{Middleware, Next};

use zsp_core::dpop::{DPOP, DpopKey, is_use_dpop_nonce};

use super::dpop::{DpopState, proof_header};
use super::source::{AccessToken, FetchError, TokenRequest, TokenSource, TokenType};

/// Attaches tokens from a [`TokenSource`] to every request of a
/// `reqwest_middleware::ClientWithMiddleware`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use zsp_tower::outbound::{AccessToken, AttachMiddleware, FetchError, TokenRequest, TokenSource, TokenType};
/// # struct Fixed;
/// # #[async_trait::async_trait]
/// # impl TokenSource for Fixed {
/// #     async fn token(&self, _: &TokenRequest) -> Result<AccessToken, FetchError> {
/// #         AccessToken::new("t0k3n", TokenType::Bearer, 0, u64::MAX, None)
/// #     }
/// # }
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let addr = listener.local_addr().unwrap();
/// tokio::spawn(async move {
///     use tokio::io::{AsyncReadExt, AsyncWriteExt};
///     let (mut sock, _) = listener.accept().await.unwrap();
///     let mut buf = vec![0; 4096];
///     let n = sock.read(&mut buf).await.unwrap();
///     let ok = String::from_utf8_lossy(&buf[..n]).to_lowercase().contains("authorization: bearer t0k3n");
///     let status = if ok { "204 No Content" } else { "401 Unauthorized" };
///     let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
///     sock.write_all(resp.as_bytes()).await.unwrap();
/// });
///
/// // `Fixed` stands in for a CachedTokenSource over ClientCredentials.
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(AttachMiddleware::new(Fixed, TokenRequest::new("orders-api")))
///     .build();
/// let resp = client.get(format!("http://{addr}/orders")).send().await.unwrap();
/// assert_eq!(resp.status(), 204);
/// # }
/// ```
#[derive(Clone)]
pub struct AttachMiddleware {
    source: Arc<dyn TokenSource>,
    request: Option<Arc<TokenRequest>>,
    dpop: Option<Arc<DpopState>>,
}

impl std::fmt::Debug for AttachMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachMiddleware")
            .field("source", &self.source.id())
            .field("request", &self.request)
            .field(
                "dpop",
                &self
                    .dpop
                    .as_ref()
                    .map(|d| d.key().thumbprint().as_str().to_owned()),
            )
            .finish()
    }
}

impl AttachMiddleware {
    /// Tokens for `request` unless a request carries its own [`TokenRequest`] extension.
    pub fn new(source: impl TokenSource, request: TokenRequest) -> Self {
        Self {
            source: Arc::new(source),
            request: Some(Arc::new(request)),
            dpop: None,
        }
    }
    /// Every request must carry a [`TokenRequest`] extension; others fail closed.
    pub fn from_extensions(source: impl TokenSource) -> Self {
        Self {
            source: Arc::new(source),
            request: None,
            dpop: None,
        }
    }
    /// Uses a shared source.
    pub fn with_shared_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.source = source;
        self
    }
    /// Sender-constrains tokens to `key` (DPoP), as [`crate::outbound::AttachLayer::dpop`].
    pub fn dpop(mut self, key: DpopKey) -> Self {
        if let Some(r) = &self.request
            && r.dpop().is_none()
        {
            self.request = Some(Arc::new((**r).clone().dpop_key(key.clone())));
        }
        self.dpop = Some(Arc::new(DpopState::new(key)));
        self
    }

    /// Sets `Authorization` and, for a DPoP token, a fresh proof. Returns whether a proof
    /// was sent.
    fn authorize(
        &self,
        req: &mut reqwest::Request,
        treq: &TokenRequest,
        token: &AccessToken,
    ) -> Result<bool, FetchError> {
        req.headers_mut()
            .insert(header::AUTHORIZATION, token.authorization().clone());
        req.headers_mut().remove(DPOP);
        if *token.token_type() != TokenType::DPoP {
            return Ok(false);
        }
        let key = treq
            .dpop()
            .ok_or_else(|| FetchError::Config("DPoP token but no DPoP key configured".into()))?;
        let nonce = self.dpop.as_ref().and_then(|d| d.nonce(&origin(req.url())));
        let value = proof_header(key, req.method(), req.url().as_str(), token, nonce.as_deref())?;
        req.headers_mut().insert(DPOP, value);
        Ok(true)
    }

    fn remember_nonce(&self, url: &reqwest::Url, resp: &reqwest::Response) {
        if let Some(d) = &self.dpop {
            d.remember(&origin(url), resp.headers());
        }
    }
}

fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

fn is_invalid_token(resp: &reqwest::Response) -> bool {
    resp.status() == StatusCode::UNAUTHORIZED
        && resp.headers().get_all(header::WWW_AUTHENTICATE).iter().any(|v| {
            let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
            v.contains("error=\"invalid_token\"") || v.contains("error=invalid_token")
        })
}

#[async_trait::async_trait]
impl Middleware for AttachMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let treq = match (extensions.get::<TokenRequest>(), &self.request) {
            (Some(r), _) => Arc::new(r.clone()),
            (None, Some(r)) => Arc::clone(r),
            (None, None) => {
                return Err(reqwest_middleware::Error::middleware(FetchError::Config(
                    "no TokenRequest for this request".into(),
                )));
            }
        };
        let treq = match &self.dpop {
            Some(d) if treq.dpop().is_none() => Arc::new((*treq).clone().dpop_key(d.key().clone())),
            _ => treq,
        };
        let token = self
            .source
            .token(&treq)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let replay = req.try_clone();
        let url = req.url().clone();
        let sent_proof = self
            .authorize(&mut req, &treq, &token)
            .map_err(reqwest_middleware::Error::middleware)?;
        let resp = next.clone().run(req, extensions).await?;
        self.remember_nonce(&url, &resp);
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // One retry in total; use_dpop_nonce first (the token passed), then invalid_token.
        let nonce_retry = sent_proof && is_use_dpop_nonce(resp.headers());
        if !nonce_retry && !is_invalid_token(&resp) {
            return Ok(resp);
        }
        let Some(mut again) = replay else {
            return Ok(resp);
        };
        let token = if nonce_retry {
            token
        } else {
            tracing::info!(
                source = %self.source.id(),
                rejected = %token.fingerprint(),
                "401 invalid_token: dropping the token and retrying once"
            );
            self.source.invalidate(&treq, &token).await;
            self.source
                .token(&treq)
                .await
                .map_err(reqwest_middleware::Error::middleware)?
        };
        self.authorize(&mut again, &treq, &token)
            .map_err(reqwest_middleware::Error::middleware)?;
        let resp = next.run(again, extensions).await?;
        self.remember_nonce(&url, &resp);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{AccessToken, TokenType};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl TokenSource for Arc<Counting> {
        async fn token(&self, _: &TokenRequest) -> Result<AccessToken, FetchError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            AccessToken::new(format!("tok{n}"), TokenType::Bearer, 0, 100, None)
        }
    }

    /// Answers 401 invalid_token to the first `rejects` requests, then 200; records the
    /// Authorization header of each.
    async fn api(rejects: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 8192];
                let n = sock.read(&mut buf).await.unwrap();
                let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let auth = text
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: "))
                    .unwrap_or_default()
                    .to_owned();
                let count = {
                    let mut s = s.lock().unwrap();
                    s.push(auth);
                    s.len()
                };
                let resp = if count <= rejects {
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer error=\"invalid_token\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                sock.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn rfc6750_3_1_invalid_token_is_retried_once_with_a_new_token() {
        let src = Arc::new(Counting::default());
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AttachMiddleware::new(Arc::clone(&src), TokenRequest::new("api")))
            .build();
        let (url, seen) = api(1).await;
        let resp = client.post(&url).body("payload").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(*seen.lock().unwrap(), ["bearer tok0", "bearer tok1"]);

        let (url, seen) = api(5).await;
        let resp = client.post(&url).body("payload").send().await.unwrap();
        assert_eq!(resp.status(), 401, "never more than one retry");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    struct DpopTokens;

    #[async_trait::async_trait]
    impl TokenSource for DpopTokens {
        async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
            assert!(req.dpop().is_some());
            AccessToken::new("dpop-tok", TokenType::DPoP, 0, u64::MAX, None)
        }
    }

    /// An API that wants a nonce: 401 use_dpop_nonce for proofs without one.
    async fn nonce_api() -> (String, Arc<Mutex<Vec<(String, bool)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 8192];
                let n = sock.read(&mut buf).await.unwrap();
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(": ")?;
                            k.eq_ignore_ascii_case(name).then(|| v.to_owned())
                        })
                        .unwrap_or_default()
                };
                let proof = header("dpop");
                let payload = proof.split('.').nth(1).unwrap_or_default();
                let claims: serde_json::Value =
                    serde_json::from_slice(&zsp_core::b64::decode(payload).unwrap_or_default())
                        .unwrap_or_default();
                let has_nonce = claims["nonce"] == "n-7";
                s.lock().unwrap().push((header("authorization"), has_nonce));
                let resp = if has_nonce {
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: DPoP error=\"use_dpop_nonce\"\r\ndpop-nonce: n-7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                sock.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn rfc9449_8_dpop_nonce_challenge_is_retried_once_and_remembered() {
        let key = zsp_core::dpop::DpopKey::generate().unwrap();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AttachMiddleware::new(DpopTokens, TokenRequest::new("api")).dpop(key))
            .build();
        let (url, seen) = nonce_api().await;
        let resp = client.post(&url).body("payload").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("DPoP dpop-tok".to_owned(), false),
                ("DPoP dpop-tok".to_owned(), true)
            ]
        );
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(seen.lock().unwrap().len(), 3, "the nonce was remembered");
    }
}
