//! Inbound verification: [`VerifyLayer`] and [`VerifyService`].
//!
//! Wrap any tower HTTP service (an axum `Router`, a hyper service, a `tower::service_fn`)
//! so that every request must carry a fresh, scoped, verified access token:
//!
//! 1. `Authorization` and `DPoP` headers are marked sensitive, so they never reach logs that
//!    honour [`http::HeaderValue::is_sensitive`].
//! 2. Credentials are extracted: `Authorization: Bearer <token>`, and `Authorization: DPoP
//!    <token>` when the layer has a [`DpopVerifier`](zsp_core::dpop::DpopVerifier)
//!    ([`VerifyLayer::dpop`]); schemes are case-insensitive. Two `Authorization` headers, an
//!    `access_token` query parameter (RFC 6750 §2.3: URLs end up in logs), an unknown scheme,
//!    or the `DPoP` scheme on a layer without DPoP are refused with 400 `invalid_request` —
//!    never downgraded to Bearer.
//! 3. The token goes to the [`zsp_core::Verifier`] with the method, path and client address.
//!    The DPoP rules run inside it, after revocation and before the replay guard
//!    ([`zsp_core::Verifier::verify_with`]), so a request with a bad proof never burns a
//!    single-use token: a bound token (`cnf.jkt`) needs the `DPoP` scheme and a valid proof
//!    for this method and URI (RFC 9449 §4.3, §7.1) — as `Bearer` it is refused (§7.2), with
//!    or without a DPoP verifier; [`DpopMode::Required`](zsp_core::dpop::DpopMode::Required)
//!    refuses unbound tokens. On success the [`zsp_core::Grant`] is inserted into the request
//!    extensions and the inner service is called; a `Grant` already present (inserted by
//!    anything else) is removed first.
//! 4. On denial the inner service is not called. The response carries the denial's status,
//!    the RFC 6750 `WWW-Authenticate` challenge (with the policy's realm; `scope=` on
//!    `insufficient_scope`; no `error` when no credentials were sent), `Cache-Control:
//!    no-store` and a small RFC 9457 `application/problem+json` body with `type`, `title` and
//!    `status` only. The exact reason goes to the audit event, never to the client.
//!    [`VerifyLayer::on_denial`] replaces that response.
//!
//! **When the check runs.** Without a DPoP verifier, a request that needs no store (no
//! revocation store, not single-use) and no key refresh is decided in `call` itself
//! ([`zsp_core::Verifier::verify_bytes_now`]), audit event included: the response future is
//! then the inner service's own, or the ready denial, and nothing is allocated for it. Anything
//! that waits (a store, a JWKS refresh, a DPoP proof) is checked in the response future
//! instead, in one boxed future with the inner call.
//!
//! Response bodies: any `ResBody: From<Bytes>` works (axum's `Body`, `http_body_util::Full`);
//! map other body types with `tower::ServiceBuilder::map_response`. CORS preflight requests
//! carry no credentials: put a CORS layer outside this one so it answers them first.
//!
//! **DPoP.** With [`VerifyLayer::dpop`], denials carry a `DPoP` challenge listing the
//! accepted `algs`; the error (`invalid_dpop_proof`, `use_dpop_nonce`, `invalid_token`…) goes on
//! the challenge of the scheme the client used, and in
//! [`DpopMode::Optional`](zsp_core::dpop::DpopMode::Optional) a second `WWW-Authenticate`
//! value offers `Bearer` (two header values, the one with the error first). With server nonces
//! ([`DpopVerifierBuilder::require_nonces`](zsp_core::dpop::DpopVerifierBuilder::require_nonces))
//! a proof without a current nonce gets 401 `use_dpop_nonce`, and every response — allowed or
//! denied — carries a fresh `DPoP-Nonce`. A custom [`VerifyLayer::on_denial`] response keeps
//! its own challenges; the `DPoP` one is appended when it has none. The URI a proof's `htu`
//! must match is [`VerifyLayer::public_url`] + path, or `http://` + `Host` + path when unset
//! (right only without a proxy or TLS terminator in front).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bytes::Bytes;
//! use http::{Method, Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use zsp_core::dpop::{DpopKey, DpopMode, DpopVerifier, NonceIssuer};
//! use zsp_core::{testing::TestIssuer, Policy, RouteRule, Verifier};
//! use zsp_tower::verify::VerifyLayer;
//!
//! let issuer = TestIssuer::es256("https://broker.example");
//! let policy = Policy::builder()
//!     .issuer("https://broker.example")
//!     .audience("orders-api")
//!     .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
//!     .build()
//!     .unwrap();
//! let verifier = Verifier::builder(policy, issuer.key_set()).build();
//! let dpop = DpopVerifier::builder()
//!     .mode(DpopMode::Required) // or Optional (the default): unbound bearer tokens still pass
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(verifier).dpop(dpop).public_url("https://api.example"))
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
//!     });
//!
//! let key = DpopKey::generate().unwrap();
//! let token = issuer
//!     .token("orders-api", &["orders:read"])
//!     .jkt(key.thumbprint().as_str())
//!     .mint()
//!     .unwrap();
//! let url = "https://api.example/orders/42";
//! let proof = key.proof(&Method::GET, url, Some(&token), None).unwrap();
//! let req = Request::get("/orders/42")
//!     .header("authorization", format!("DPoP {token}"))
//!     .header("dpop", proof)
//!     .body(Full::default())
//!     .unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
//!
//! // The same token as a bearer token: refused (RFC 9449 §7.2).
//! let req = Request::get("/orders/42")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Full::default())
//!     .unwrap();
//! let denied = svc.oneshot(req).await.unwrap();
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     denied.headers()["www-authenticate"],
//!     r#"DPoP error="invalid_token", algs="ES256 EdDSA""#
//! );
//! # }
//! ```
//!
//! **Anonymous mode.** [`VerifyLayer::allow_anonymous`] lets requests with *no* credentials
//! through without a `Grant`; bad credentials are still denied.
//!
//! **Client address** (for source CIDR rules, see [`zsp_core::policy`]): taken from the
//! connection — a `SocketAddr` in the request extensions by default, axum's `ConnectInfo`
//! through `zsp_axum::extract::verify_layer` or [`VerifyLayer::client_ip_from`] — or, only when
//! configured with [`VerifyLayer::trusted_proxy_header`], from the right-most entry of that
//! header. Tokens carry no address claim. The address is looked up only when the policy has a
//! source rule ([`zsp_core::Policy::uses_source_addresses`]); otherwise it decides nothing.
//!
//! **Audit.** Every decision emits one event on target `zsp::audit` (the verifier's, or one for
//! denials before a token exists, or an `anonymous` allow), inside a `zsp.verify` span per
//! request (target `zsp::verify`, level INFO, no fields: the event carries the method and
//! route). The span is opened only when tracing receives the audit events and `zsp::verify` is
//! enabled at INFO; leave that target out of the filter, or at WARN (which keeps the
//! verifier's warnings when a revocation or replay store fails), to keep the events without
//! the span: with a `fmt` subscriber it costs about as much per request as the formatted event
//! itself (BENCHMARKS.md, the `inbound` bench and load variant (16)). To send audit events to
//! their own sink, give them a dedicated layer with a target filter and keep them out of the
//! application log; enabling `zsp::verify` on that layer too keeps the request span as their
//! context:
//!
//! ```
//! use tracing_subscriber::{filter::Targets, fmt, prelude::*};
//!
//! let audit = fmt::layer()
//!     .with_writer(std::io::stderr) // e.g. a file or a socket to the audit store
//!     .with_filter(
//!         Targets::new()
//!             .with_target("zsp::audit", tracing::Level::INFO)
//!             .with_target("zsp::verify", tracing::Level::INFO),
//!     );
//! let app = fmt::layer().with_filter(
//!     Targets::new()
//!         .with_default(tracing::Level::INFO)
//!         .with_target("zsp::audit", tracing::level_filters::LevelFilter::OFF),
//! );
//! let _ = tracing_subscriber::registry().with(audit).with(app).try_init();
//! ```
//!
//! # Example
//!
//! A plain tower service (no axum) behind the layer:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use zsp_core::{testing::TestIssuer, Grant, Policy, RouteRule, Verifier};
//! use zsp_tower::verify::VerifyLayer;
//!
//! let issuer = TestIssuer::es256("https://broker.example");
//! let policy = Policy::builder()
//!     .issuer("https://broker.example")
//!     .audience("orders-api")
//!     .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
//!     .build()
//!     .unwrap();
//! let verifier = Verifier::builder(policy, issuer.key_set()).build();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(verifier))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         let grant = req.extensions().get::<Grant>().expect("the layer verified this request");
//!         let body = format!("hello {}", grant.subject().unwrap_or("?"));
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
//!     });
//!
//! let token = issuer.token("orders-api", &["orders:read"]).mint().unwrap();
//! let req = Request::get("/orders/42")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Full::default())
//!     .unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
//!
//! let req = Request::get("/orders/42").body(Full::default()).unwrap();
//! let denied = svc.oneshot(req).await.unwrap();
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(denied.headers()["www-authenticate"], "Bearer");
//! assert_eq!(denied.headers()["cache-control"], "no-store");
//! # }
//! ```
//!
//! A custom denial response:
//!
//! ```
//! use bytes::Bytes;
//! use zsp_core::{testing::TestIssuer, Policy, RouteRule, Verifier};
//! use zsp_tower::verify::{denial_response, VerifyLayer};
//!
//! # let issuer = TestIssuer::es256("https://i");
//! # let policy = Policy::builder().issuer("https://i").audience("a")
//! #     .default_route(RouteRule::any("/{*p}")).build().unwrap();
//! # let verifier = Verifier::builder(policy, issuer.key_set()).build();
//! let layer = VerifyLayer::new(verifier).on_denial(|denial| {
//!     // Keep the status and challenge, replace the body.
//!     let mut resp = denial_response(denial, None);
//!     *resp.body_mut() = Bytes::from_static(b"{\"message\":\"not allowed\"}");
//!     resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
//!     resp
//! });
//! # let _ = layer;
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{ClientIpFn, DenialHook, VerifyLayer};
pub use service::VerifyService;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use zsp_core::Denial;

/// The media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem body for `status`: `type` `about:blank`, the status phrase as `title`,
/// and `status`. Nothing else, so no internal detail can leak through it.
pub fn problem_body(status: StatusCode) -> Bytes {
    let title = status.canonical_reason().unwrap_or("Error");
    Bytes::from(format!(
        r#"{{"type":"about:blank","title":"{title}","status":{}}}"#,
        status.as_u16()
    ))
}

/// The default response for `denial`: its status, the `Bearer` challenge with `realm`,
/// `Cache-Control: no-store` and an RFC 9457 problem body.
///
/// ```
/// let resp = zsp_tower::verify::denial_response(
///     &zsp_core::Denial::InsufficientScope { required: "orders:write".into() },
///     Some("orders"),
/// );
/// assert_eq!(resp.status(), 403);
/// assert_eq!(
///     resp.headers()["www-authenticate"],
///     r#"Bearer realm="orders", error="insufficient_scope", scope="orders:write""#
/// );
/// assert_eq!(resp.headers()["content-type"], "application/problem+json");
/// ```
pub fn denial_response(denial: &Denial, realm: Option<&str>) -> Response<Bytes> {
    let status = denial.status();
    let mut resp = Response::new(problem_body(status));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = denial.www_authenticate(realm) {
        // Realm and scopes are sanitised by the challenge builder; if a value still cannot be
        // a header, a bare challenge is better than none.
        let value = HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer"));
        h.insert(WWW_AUTHENTICATE, value);
    }
    resp
}
