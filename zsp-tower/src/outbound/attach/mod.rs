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
