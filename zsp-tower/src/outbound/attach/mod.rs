//! [`AttachLayer`]: puts a fresh-enough access token on every outbound request.
//!
//! For each request the layer decides what token it needs (a [`TokenRequest`](crate::outbound::TokenRequest) from the
//! request's extensions, else from a per-request closure, else the layer's fixed one), gets it
//! from a [`TokenSource`](crate::outbound::TokenSource) (usually a
//! [`CachedTokenSource`](crate::outbound::CachedTokenSource)), and sets
//! `Authorization: <type> <token>` marked sensitive, replacing any caller-set value.
//!
//! When the API answers 401 with `error="invalid_token"` (the token was revoked, or the API
//! disagrees about its expiry), the layer tells the source to drop that token, gets a new one
//! and sends the request once more, if the body can be replayed ([`ReplayBody`]): bodies
//! in memory (`String`, `Bytes`, `Vec<u8>`, `Full`, `Empty`, a buffered `reqwest::Body`) can,
//! streams cannot and their 401 is returned as is. Never more than one retry.
//!
//! **DPoP** ([`AttachLayer::dpop`], [`AttachLayer::dpop_generated`]): token requests are bound
//! to the layer's key (the token endpoint gets a proof, RFC 9449 §5, and the key thumbprint is
//! part of the token cache key); every request, and every retry, gets a fresh `DPoP` proof for
//! its method and URI with `ath` and the origin's latest `DPoP-Nonce` (learnt from any
//! response, kept per `scheme://authority`); the token goes out as `Authorization: DPoP
//! <token>`. Request URIs must be absolute (as they are for [`ReqwestService`](crate::outbound::ReqwestService)).
//! On a 401 the layer still retries **once in total**: a `DPoP` challenge with
//! `use_dpop_nonce` wins (the API checks the proof only after the token, so the token is kept
//! and only a new proof with the nonce is made; this retry happens even with
//! [`AttachLayer::retry_on_invalid_token`] off, as it is part of speaking DPoP); otherwise
//! `invalid_token` drops the token and retries as above. The retry's answer is final, even if
//! it is another 401.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use zsp_tower::outbound::{AttachLayer, CachedTokenSource, ClientCredentials, ReqwestService, TokenEndpoint, TokenRequest};
//!
//! let endpoint = TokenEndpoint::builder()
//!     .issuer("https://broker.example")
//!     .client_id("orders-client")
//!     .client_secret_basic("s3cret")
//!     .build()
//!     .unwrap();
//! let source = CachedTokenSource::builder(ClientCredentials::new(endpoint)).build();
//! let layer = AttachLayer::new(source, TokenRequest::new("orders-api").scopes(["orders:read"]))
//!     .dpop_generated() // or .dpop(DpopKey) to bring your own key
//!     .unwrap();
//! let client = tower::ServiceBuilder::new()
//!     .layer(layer)
//!     .service(ReqwestService::new(reqwest::Client::new()));
//! # let _ = client;
//! # }
//! ```
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use zsp_tower::outbound::{AccessToken, AttachLayer, FetchError, TokenRequest, TokenSource, TokenType};
//!
//! // Any TokenSource works; a real one is a CachedTokenSource over ClientCredentials.
//! struct Fixed;
//! #[async_trait::async_trait]
//! impl TokenSource for Fixed {
//!     async fn token(&self, _: &TokenRequest) -> Result<AccessToken, FetchError> {
//!         AccessToken::new("t0k3n", TokenType::Bearer, 0, u64::MAX, None)
//!     }
//! }
//!
//! let api = tower::service_fn(|req: http::Request<String>| async move {
//!     let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
//!     Ok::<_, Infallible>(http::Response::new(auth))
//! });
//! let mut client = ServiceBuilder::new()
//!     .layer(AttachLayer::new(Fixed, TokenRequest::new("orders-api").scopes(["orders:read"])))
//!     .service(api);
//! let resp = client.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
//! assert_eq!(resp.body(), "Bearer t0k3n");
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::AttachLayer;
pub use service::{AttachError, AttachService, ReplayBody};
