//! reqwest as a tower [`Service`], so the outbound layers (and any other tower middleware)
//! wrap a `reqwest::Client` while users keep reqwest's client, TLS and pooling.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_service::Service;

/// A tower service over a [`reqwest::Client`]: `http::Request<B>` in,
/// `http::Response<reqwest::Body>` out.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower::{ServiceBuilder, ServiceExt};
/// use zsp_tower::outbound::{AccessToken, AttachLayer, FetchError, ReqwestService, TokenRequest, TokenSource, TokenType};
///
/// # struct Fixed;
/// # #[async_trait::async_trait]
/// # impl TokenSource for Fixed {
/// #     async fn token(&self, _: &TokenRequest) -> Result<AccessToken, FetchError> {
/// #         AccessToken::new("t0k3n", TokenType::Bearer, 0, u64::MAX, None)
/// #     }
/// # }
/// // An API on 127.0.0.1 that echoes the Authorization header.
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let addr = listener.local_addr().unwrap();
/// tokio::spawn(async move {
///     use tokio::io::{AsyncReadExt, AsyncWriteExt};
///     let (mut sock, _) = listener.accept().await.unwrap();
///     let mut buf = vec![0; 4096];
///     let n = sock.read(&mut buf).await.unwrap();
///     let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
///     let auth = req.lines().find(|l| l.starts_with("authorization:")).unwrap_or("").to_owned();
///     let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{auth}", auth.len());
///     sock.write_all(resp.as_bytes()).await.unwrap();
/// });
///
/// // `Fixed` stands in for a CachedTokenSource over ClientCredentials.
/// let client = ServiceBuilder::new()
///     .layer(AttachLayer::new(Fixed, TokenRequest::new("orders-api")))
///     .service(ReqwestService::new(reqwest::Client::new()));
/// let req = http::Request::get(format!("http://{addr}/orders")).body(reqwest::Body::from("")).unwrap();
/// // `oneshot` (or `ready` + `call`) as with any tower service.
/// let resp = client.oneshot(req).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
/// assert_eq!(&body[..], b"authorization: bearer t0k3n");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReqwestService {
    client: reqwest::Client,
}

impl ReqwestService {
    /// Wraps `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
    /// The client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl From<reqwest::Client> for ReqwestService {
    fn from(client: reqwest::Client) -> Self {
        Self::new(client)
    }
}

/// The future of [`ReqwestService`].
pub type ReqwestFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<reqwest::Body>, reqwest::Error>> + Send + 'static>>;

impl<B: Into<reqwest::Body>> Service<http::Request<B>> for ReqwestService {
    type Response = http::Response<reqwest::Body>;
    type Error = reqwest::Error;
    type Future = ReqwestFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // reqwest's pool queues internally; there is no readiness to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let client = self.client.clone();
        let req = reqwest::Request::try_from(req);
        Box::pin(async move {
            let resp = client.execute(req?).await?;
            Ok(http::Response::from(resp))
        })
    }
}
