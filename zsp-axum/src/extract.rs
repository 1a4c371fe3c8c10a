//! axum extractors and per-route requirements.
//!
//! * [`verify_layer`]: a [`VerifyLayer`] that reads the client address from axum's
//!   `ConnectInfo<SocketAddr>` (serve with `into_make_service_with_connect_info`).
//! * [`Auth`]: the verified [`Grant`] of the request; `Option<Auth>` on routes the layer lets
//!   through anonymously.
//! * [`Claims<T>`]: custom claims of the verified token, typed with serde.
//! * [`require_scopes`]: a layer for `route_layer` that demands scopes on top of the policy.
//!
//! Without the verify layer in front, [`Auth`] and [`Claims`] reject with 401 and
//! `WWW-Authenticate: Bearer`: a missing layer denies, it never panics and never allows.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{body::Body, routing::{get, post}, Router};
//! use http::{Request, StatusCode};
//! use tower_service::Service;
//! use zsp_axum::extract::{require_scopes, verify_layer, Auth, Claims};
//! use zsp_core::{testing::TestIssuer, Policy, RouteRule, Verifier};
//!
//! #[derive(serde::Deserialize)]
//! struct Tenant {
//!     tenant: String,
//! }
//!
//! let issuer = TestIssuer::es256("https://broker.example");
//! let policy = Policy::builder()
//!     .issuer("https://broker.example")
//!     .audience("orders-api")
//!     .route(RouteRule::get("/orders").all_of(["orders:read"]))
//!     .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
//!     .build()
//!     .unwrap();
//! let verifier = Verifier::builder(policy, issuer.key_set()).build();
//!
//! let mut app = Router::new()
//!     .route(
//!         "/orders",
//!         get(|Auth(grant): Auth, Claims(t): Claims<Tenant>| async move {
//!             format!("{} of {}", grant.subject().unwrap_or("?"), t.tenant)
//!         }),
//!     )
//!     .route(
//!         "/orders",
//!         post(|| async { StatusCode::CREATED }).route_layer(require_scopes(["orders:approve"])),
//!     )
//!     .layer(verify_layer(verifier));
//!
//! let token = issuer.token("orders-api", &["orders:read"]).claim("tenant", "acme").mint().unwrap();
//! let req = Request::get("/orders")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(app.call(req).await.unwrap().status(), StatusCode::OK);
//!
//! // The policy allows the write, the route also wants orders:approve.
//! let token = issuer.token("orders-api", &["orders:write"]).mint().unwrap();
//! let req = Request::post("/orders")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Body::empty())
//!     .unwrap();
//! let resp = app.call(req).await.unwrap();
//! assert_eq!(resp.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     resp.headers()["www-authenticate"],
//!     r#"Bearer error="insufficient_scope", scope="orders:approve""#
//! );
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::Request;
use http::request::Parts;
use serde::de::DeserializeOwned;
use zsp_core::{AuditDecision, AuditEvent, Denial, Grant, Verifier};
use zsp_tower::verify::{VerifyLayer, denial_response};

/// A [`VerifyLayer`] for axum: the client address for source CIDR rules comes from
/// `ConnectInfo<SocketAddr>` (or a plain `SocketAddr` extension).
pub fn verify_layer(verifier: Verifier) -> VerifyLayer {
    VerifyLayer::new(verifier).client_ip_from(|ext| {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .or_else(|| ext.get::<SocketAddr>().map(SocketAddr::ip))
    })
}

/// Why an extractor refused the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No verified `Grant`: the verify layer is missing in front of this route, or it let an
    /// anonymous request through. Answered 401 `WWW-Authenticate: Bearer`.
    #[error("no verified grant")]
    MissingGrant,
    /// The token's claims do not have the shape the handler asked for. Answered 401
    /// `invalid_token`.
    #[error("token claims do not match the expected shape")]
    InvalidClaims,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let denial = match self {
            AuthRejection::MissingGrant => Denial::MissingToken,
            AuthRejection::InvalidClaims => Denial::InvalidClaim("custom claims"),
        };
        denial_response(&denial, None).map(Body::from)
    }
}

fn grant_of(parts: &Parts) -> Result<Grant, AuthRejection> {
    parts.extensions.get::<Grant>().cloned().ok_or_else(|| {
        tracing::debug!(target: "zsp::axum", "no Grant in request extensions; is the verify layer installed?");
        AuthRejection::MissingGrant
    })
}

/// The verified [`Grant`] of the request.
///
/// Use `Option<Auth>` on routes the layer serves anonymously
/// ([`VerifyLayer::allow_anonymous`]): `None` means no credentials were sent.
#[derive(Debug, Clone)]
pub struct Auth(pub Grant);

impl std::ops::Deref for Auth {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        grant_of(parts).map(Auth)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Auth {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Grant>().cloned().map(Auth))
    }
}

/// Custom claims of the verified token, deserialised into `T`
/// (through [`Grant::claims`]). A token whose claims do not fit `T` is answered 401
/// `invalid_token` with a problem body that does not reveal the mismatch.
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let grant = grant_of(parts)?;
        grant.claims::<T>().map(Claims).map_err(|e| {
            tracing::debug!(target: "zsp::axum", error = %e, jti = ?grant.jti(), "custom claims rejected");
            AuthRejection::InvalidClaims
        })
    }
}

/// Requires every one of `scopes` on the routes it is applied to, on top of the policy's route
/// table. Use with `route_layer` after the verify layer:
/// `post(handler).route_layer(require_scopes(["orders:approve"]))`.
///
/// Requests without a verified `Grant` get 401 `Bearer`; grants lacking a scope get 403
/// `insufficient_scope` with `scope="…"` (RFC 6750 §3.1).
pub fn require_scopes<I, T>(scopes: I) -> RequireScopesLayer
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
    RequireScopesLayer {
        required: Arc::from(scopes.join(" ")),
        scopes: Arc::from(scopes),
    }
}

/// The layer returned by [`require_scopes`].
#[derive(Debug, Clone)]
pub struct RequireScopesLayer {
    scopes: Arc<[String]>,
    required: Arc<str>,
}

impl<S> tower_layer::Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequireScopesLayer`].
#[derive(Debug, Clone)]
pub struct RequireScopes<S> {
    inner: S,
    layer: RequireScopesLayer,
}

impl RequireScopesLayer {
    /// `None` when the request may proceed, else the refusal.
    fn check(&self, grant: Option<&Grant>, method: &http::Method) -> Option<Response> {
        let Some(grant) = grant else {
            return Some(AuthRejection::MissingGrant.into_response());
        };
        if self.scopes.iter().all(|s| grant.scopes().contains(s)) {
            return None;
        }
        let denial = Denial::InsufficientScope {
            required: self.required.to_string(),
        };
        let scopes = grant.scopes().to_string();
        AuditEvent {
            decision: AuditDecision::Deny,
            reason: denial.reason(),
            iss: Some(grant.issuer()),
            sub: grant.subject(),
            client_id: grant.client_id(),
            jti: grant.jti(),
            method: method.as_str(),
            route: grant.route(),
            scopes: Some(&scopes),
            elapsed_us: 0,
        }
        .emit();
        Some(denial_response(&denial, None).map(Body::from))
    }
}

/// Response future of [`RequireScopes`].
pub type RequireScopesFuture<F, E> = Either<Ready<Result<Response, E>>, F>;

impl<S, B> tower_service::Service<Request<B>> for RequireScopes<S>
where
    S: tower_service::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequireScopesFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.layer.check(req.extensions().get::<Grant>(), req.method()) {
            None => Either::Right(self.inner.call(req)),
            Some(resp) => Either::Left(ready(Ok(resp))),
        }
    }
}
