//! [`AttachService`] and the [`ReplayBody`] trait that decides whether a retry is possible.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use tower::ServiceExt;
use tower_service::Service;

use zsp_core::dpop::{DPOP, is_use_dpop_nonce};

use super::future::ResponseFuture;
use super::layer::Resolver;
use crate::outbound::dpop::{DpopState, origin, proof_header};
use crate::outbound::source::{AccessToken, FetchError, TokenRequest, TokenSource, TokenType};

/// A request body that can be sent again, if it can. The retry after a 401 `invalid_token`
/// needs a second copy of the body; bodies that return `None` are sent once and their 401 is
/// handed back unchanged.
pub trait ReplayBody: Sized {
    /// A copy to resend, or `None` if the body cannot be replayed (a stream).
    fn try_replay(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($t:ty),*) => {$(
        impl ReplayBody for $t {
            fn try_replay(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}
replay_by_clone!(
    String,
    Vec<u8>,
    Bytes,
    (),
    &'static str,
    &'static [u8],
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>
);

impl ReplayBody for reqwest::Body {
    fn try_replay(&self) -> Option<Self> {
        // Only buffered bodies expose their bytes; a stream answers None and is not retried.
        self.as_bytes()
            .map(|b| reqwest::Body::from(Bytes::copy_from_slice(b)))
    }
}

impl<E> ReplayBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn try_replay(&self) -> Option<Self> {
        None
    }
}

impl<E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn try_replay(&self) -> Option<Self> {
        None
    }
}

/// Why an [`AttachService`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError<E> {
    /// No token could be obtained; the request was not sent.
    #[error("no access token: {0}")]
    Token(#[source] FetchError),
    /// The inner service failed.
    #[error("{0}")]
    Service(#[source] E),
}

impl<E> AttachError<E> {
    /// The token error, if that is what this is.
    pub fn as_token_error(&self) -> Option<&FetchError> {
        match self {
            AttachError::Token(e) => Some(e),
            AttachError::Service(_) => None,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) source: Arc<dyn TokenSource>,
    pub(crate) fixed: Option<Arc<TokenRequest>>,
    pub(crate) resolver: Option<Resolver>,
    pub(crate) retry: bool,
    pub(crate) dpop: Option<DpopState>,
}

impl Shared {
    /// The token request, bound to the layer's DPoP key unless it names its own key.
    fn resolve_bound(&self, parts: &http::request::Parts) -> Result<Arc<TokenRequest>, FetchError> {
        let treq = self.resolve(parts)?;
        match &self.dpop {
            Some(d) if treq.dpop().is_none() => Ok(Arc::new((*treq).clone().dpop_key(d.key().clone()))),
            _ => Ok(treq),
        }
    }

    /// Sets `Authorization` and, for a DPoP token, a fresh proof for this request (with the
    /// origin's latest nonce). Returns whether a proof was sent.
    fn authorize(
        &self,
        parts: &mut http::request::Parts,
        treq: &TokenRequest,
        token: &AccessToken,
    ) -> Result<bool, FetchError> {
        parts
            .headers
            .insert(header::AUTHORIZATION, token.authorization().clone());
        parts.headers.remove(DPOP);
        if *token.token_type() != TokenType::DPoP {
            return Ok(false);
        }
        // A DPoP token is worthless without its key's proof: fail here, not at the API.
        let key = treq
            .dpop()
            .ok_or_else(|| FetchError::Config("DPoP token but no DPoP key configured".into()))?;
        let nonce = match (&self.dpop, origin(&parts.uri)) {
            (Some(d), Some(o)) => d.nonce(&o),
            _ => None,
        };
        let value = proof_header(
            key,
            &parts.method,
            &parts.uri.to_string(),
            token,
            nonce.as_deref(),
        )?;
        parts.headers.insert(DPOP, value);
        Ok(true)
    }

    fn remember_nonce(&self, uri: &http::Uri, headers: &http::HeaderMap) {
        if let (Some(d), Some(o)) = (&self.dpop, origin(uri)) {
            d.remember(&o, headers);
        }
    }

    fn resolve(&self, parts: &http::request::Parts) -> Result<Arc<TokenRequest>, FetchError> {
        if let Some(r) = parts.extensions.get::<TokenRequest>() {
            return Ok(Arc::new(r.clone()));
        }
        if let Some(f) = &self.resolver {
            return f(parts)
                .map(Arc::new)
                .ok_or_else(|| FetchError::Config("no TokenRequest for this request".into()));
        }
        self.fixed
            .clone()
            .ok_or_else(|| FetchError::Config("no TokenRequest in the request extensions".into()))
    }
}

/// The service made by [`super::AttachLayer`].
pub struct AttachService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for AttachService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for AttachService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachService")
            .field("source", &self.shared.source.id())
            .finish_non_exhaustive()
    }
}

impl<S> AttachService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Whether a 401 says the token itself was bad (RFC 6750 §3.1), as opposed to, say, missing
/// scope or a DPoP nonce, which a new token would not fix.
fn is_invalid_token(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::WWW_AUTHENTICATE).iter().any(|v| {
        let v = v.as_bytes().to_ascii_lowercase();
        let hay = String::from_utf8_lossy(&v);
        hay.contains("error=\"invalid_token\"") || hay.contains("error=invalid_token")
    })
}

fn copy_parts(parts: &http::request::Parts) -> http::request::Parts {
    let (mut p, ()) = Request::new(()).into_parts();
    p.method = parts.method.clone();
    p.uri = parts.uri.clone();
    p.version = parts.version;
    p.headers = parts.headers.clone();
    p.extensions = parts.extensions.clone();
    p
}

impl<S, B, RB> Service<Request<B>> for AttachService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: ReplayBody + Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = AttachError<S::Error>;
    type Future = ResponseFuture<Response<RB>, AttachError<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(AttachError::Service)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The instance that was polled ready is the one that must be called: take it, leave
        // a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::new(Box::pin(run(shared, inner, req)))
    }
}

async fn run<S, B, RB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<RB>, AttachError<S::Error>>
where
    S: Service<Request<B>, Response = Response<RB>>,
    B: ReplayBody,
{
    let (mut parts, body) = req.into_parts();
    let treq = shared.resolve_bound(&parts).map_err(AttachError::Token)?;
    let token = match shared.source.token_now(&treq) {
        Some(answer) => answer,
        None => shared.source.token(&treq).await,
    }
    .map_err(AttachError::Token)?;
    // The nonce retry is part of speaking DPoP, so it does not depend on `retry`.
    let replay = if shared.retry || shared.dpop.is_some() {
        body.try_replay().map(|b| (copy_parts(&parts), b))
    } else {
        None
    };
    let sent_proof = shared
        .authorize(&mut parts, &treq, &token)
        .map_err(AttachError::Token)?;
    let uri = parts.uri.clone();
    let resp = inner
        .call(Request::from_parts(parts, body))
        .await
        .map_err(AttachError::Service)?;
    shared.remember_nonce(&uri, resp.headers());
    if resp.status() != StatusCode::UNAUTHORIZED {
        return Ok(resp);
    }
    // One retry in total. A use_dpop_nonce challenge comes first: the token itself passed
    // (the API checks the proof only after the token), so the retry keeps the token and only
    // makes a new proof with the nonce just remembered. Otherwise invalid_token drops the
    // token and retries with a fresh one (and a fresh proof). Whatever the retry answers is
    // final.
    let nonce_retry = sent_proof && is_use_dpop_nonce(resp.headers());
    let token_retry = !nonce_retry && shared.retry && is_invalid_token(resp.headers());
    if !nonce_retry && !token_retry {
        return Ok(resp);
    }
    let Some((mut parts, body)) = replay else {
        tracing::debug!(source = %shared.source.id(), "401; body not replayable, not retried");
        return Ok(resp);
    };
    let token = if nonce_retry {
        tracing::debug!(source = %shared.source.id(), "401 use_dpop_nonce: retrying once with the nonce");
        token
    } else {
        tracing::info!(
            source = %shared.source.id(),
            audience = treq.audience().unwrap_or(""),
            rejected = %token.fingerprint(),
            "401 invalid_token: dropping the token and retrying once"
        );
        shared.source.invalidate(&treq, &token).await;
        shared.source.token(&treq).await.map_err(AttachError::Token)?
    };
    shared
        .authorize(&mut parts, &treq, &token)
        .map_err(AttachError::Token)?;
    // The first call consumed readiness; the retry must wait for it again.
    let ready = inner.ready().await.map_err(AttachError::Service)?;
    let resp = ready
        .call(Request::from_parts(parts, body))
        .await
        .map_err(AttachError::Service)?;
    shared.remember_nonce(&uri, resp.headers());
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{AccessToken, AttachLayer, TokenType};
    use std::sync::Mutex;
    use tower::ServiceBuilder;

    /// Hands out `tok-<audience>-<n>` and records what it was asked for.
    #[derive(Default)]
    struct Recording {
        asked: Mutex<Vec<TokenRequest>>,
        invalidated: Mutex<usize>,
    }

    #[async_trait::async_trait]
    impl TokenSource for Arc<Recording> {
        async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
            let mut asked = self.asked.lock().unwrap();
            asked.push(req.clone());
            let value = format!("tok-{}-{}", req.audience().unwrap_or("none"), asked.len());
            AccessToken::new(value, TokenType::Bearer, 0, 100, None)
        }
        async fn invalidate(&self, _req: &TokenRequest, _rejected: &AccessToken) {
            *self.invalidated.lock().unwrap() += 1;
        }
    }

    fn echo() -> impl Service<
        Request<String>,
        Response = Response<String>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(|req: Request<String>| async move {
            let auth = req.headers()[header::AUTHORIZATION].to_str().unwrap().to_owned();
            let mut resp = Response::new(auth);
            if req.body() == "reject" {
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    "Bearer error=\"invalid_token\"".parse().unwrap(),
                );
            }
            Ok(resp)
        })
    }

    #[tokio::test]
    async fn token_request_from_extension_then_closure() {
        let src = Arc::new(Recording::default());
        let svc = ServiceBuilder::new()
            .layer(AttachLayer::per_request(Arc::clone(&src), |parts| {
                let aud = parts
                    .uri
                    .path()
                    .split('/')
                    .nth(1)
                    .filter(|s| !s.is_empty())?
                    .to_owned();
                Some(TokenRequest::new(aud).scopes(["read"]))
            }))
            .service(echo());
        let resp = svc
            .clone()
            .oneshot(Request::get("/billing/x").body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.body(), "Bearer tok-billing-1");
        let mut req = Request::get("/billing/x").body(String::new()).unwrap();
        req.extensions_mut().insert(TokenRequest::new("override"));
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.body(), "Bearer tok-override-2");
        // A caller-set Authorization header is replaced, never forwarded.
        let req = Request::get("/orders")
            .header("authorization", "Bearer stolen")
            .body(String::new())
            .unwrap();
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().body(),
            "Bearer tok-orders-3"
        );
        // No TokenRequest at all: fail closed, nothing sent.
        let err = svc
            .oneshot(Request::get("/").body(String::new()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, AttachError::Token(FetchError::Config(_))));
        assert_eq!(src.asked.lock().unwrap()[0].scope_set().to_string(), "read");
    }

    #[tokio::test]
    async fn retry_can_be_turned_off() {
        let src = Arc::new(Recording::default());
        let layer = AttachLayer::new(Arc::clone(&src), TokenRequest::new("a"));
        let svc = ServiceBuilder::new().layer(layer.clone()).service(echo());
        let resp = svc.oneshot(Request::new("reject".to_owned())).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(*src.invalidated.lock().unwrap(), 1);
        assert_eq!(src.asked.lock().unwrap().len(), 2, "one refetch");
        let svc = ServiceBuilder::new()
            .layer(layer.retry_on_invalid_token(false))
            .service(echo());
        svc.oneshot(Request::new("reject".to_owned())).await.unwrap();
        assert_eq!(src.asked.lock().unwrap().len(), 3, "no refetch");
    }

    #[test]
    fn rfc6750_3_1_only_invalid_token_triggers_retry() {
        let mut h = http::HeaderMap::new();
        assert!(!is_invalid_token(&h));
        h.insert(
            header::WWW_AUTHENTICATE,
            "Bearer error=\"insufficient_scope\", scope=\"a\""
                .parse()
                .unwrap(),
        );
        assert!(!is_invalid_token(&h));
        h.append(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"x\", error=\"invalid_token\"".parse().unwrap(),
        );
        assert!(is_invalid_token(&h));
    }

    #[test]
    fn streams_are_not_replayable() {
        let b: http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible> =
            http_body_util::BodyExt::boxed(http_body_util::Full::new(Bytes::from_static(b"x")));
        assert!(b.try_replay().is_none());
        assert!(reqwest::Body::from("abc").try_replay().is_some());
    }

    /// A DPoP token source and an API that first wants a nonce, then (for body "expire")
    /// rejects the token: the one retry goes to the nonce, the token refusal is final.
    struct DpopSource(Mutex<usize>);

    #[async_trait::async_trait]
    impl TokenSource for Arc<DpopSource> {
        async fn token(&self, req: &TokenRequest) -> Result<AccessToken, FetchError> {
            assert!(req.dpop().is_some(), "the layer binds the request to its key");
            *self.0.lock().unwrap() += 1;
            AccessToken::new("dpop-token", TokenType::DPoP, 0, u64::MAX, None)
        }
    }

    /// (Authorization, proof nonce) of each call the API saw.
    type Calls = Arc<Mutex<Vec<(String, Option<String>)>>>;

    fn nonce_api(
        calls: Calls,
    ) -> impl Service<
        Request<String>,
        Response = Response<String>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(move |req: Request<String>| {
            let calls = Arc::clone(&calls);
            async move {
                let auth = req.headers()[header::AUTHORIZATION].to_str().unwrap().to_owned();
                let proof = req.headers()[DPOP].to_str().unwrap().to_owned();
                let payload = proof.split('.').nth(1).unwrap();
                let claims: serde_json::Value =
                    serde_json::from_slice(&zsp_core::b64::decode(payload).unwrap()).unwrap();
                let nonce = claims["nonce"].as_str().map(str::to_owned);
                calls.lock().unwrap().push((auth, nonce.clone()));
                let mut resp = Response::new(String::new());
                resp.headers_mut().insert("dpop-nonce", "n-1".parse().unwrap());
                let challenge = match (nonce.as_deref(), req.body().as_str()) {
                    (None, _) => Some("DPoP error=\"use_dpop_nonce\", algs=\"ES256\""),
                    (Some(_), "expire") => Some("DPoP error=\"invalid_token\", algs=\"ES256\""),
                    _ => None,
                };
                if let Some(c) = challenge {
                    *resp.status_mut() = StatusCode::UNAUTHORIZED;
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, c.parse().unwrap());
                }
                Ok(resp)
            }
        })
    }

    #[tokio::test]
    async fn rfc9449_8_use_dpop_nonce_is_retried_once_and_the_nonce_is_remembered() {
        let src = Arc::new(DpopSource(Mutex::new(0)));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let key = zsp_core::dpop::DpopKey::generate().unwrap();
        let svc = ServiceBuilder::new()
            .layer(AttachLayer::new(Arc::clone(&src), TokenRequest::new("a")).dpop(key))
            .service(nonce_api(Arc::clone(&calls)));
        let url = "http://api.example/orders";
        let resp = svc
            .clone()
            .oneshot(Request::get(url).body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        {
            let c = calls.lock().unwrap();
            assert_eq!(c.len(), 2);
            assert_eq!(c[0], ("DPoP dpop-token".to_owned(), None));
            assert_eq!(c[1].1.as_deref(), Some("n-1"), "the retry carries the nonce");
        }
        // The nonce is remembered for the origin: the next request needs no retry.
        let resp = svc
            .clone()
            .oneshot(Request::get(url).body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(calls.lock().unwrap().len(), 3);
        // Another origin gets no nonce of this one.
        svc.clone()
            .oneshot(
                Request::get("http://other.example/x")
                    .body(String::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(calls.lock().unwrap()[3].1, None);
        assert_eq!(*src.0.lock().unwrap(), 3, "no refetch for nonce retries");
    }

    #[tokio::test]
    async fn one_retry_in_total_when_a_nonce_retry_meets_invalid_token() {
        let src = Arc::new(DpopSource(Mutex::new(0)));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let key = zsp_core::dpop::DpopKey::generate().unwrap();
        let svc = ServiceBuilder::new()
            .layer(AttachLayer::new(Arc::clone(&src), TokenRequest::new("a")).dpop(key))
            .service(nonce_api(Arc::clone(&calls)));
        let resp = svc
            .oneshot(
                Request::get("http://api.example/orders")
                    .body("expire".to_owned())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "the retry's answer is final");
        assert_eq!(calls.lock().unwrap().len(), 2);
    }
}
