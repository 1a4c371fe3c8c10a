//! The protected orders API: every route under `/orders` requires a fresh, scoped token.
//!
//! ```sh
//! ZSP_ISSUER=http://127.0.0.1:9000 ZSP_AUDIENCE=orders-api cargo run --example api
//! ```
//!
//! Configured by environment only (a public contract; names and defaults are stable):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ZSP_LISTEN` | listen address | `127.0.0.1:8080` |
//! | `ZSP_ISSUER` | the exact `iss` accepted (required) | |
//! | `ZSP_AUDIENCE` | this API's audience (required) | |
//! | `ZSP_JWKS_URL` | JWKS location | discovered from `ZSP_ISSUER` (RFC 8414, then OIDC) |
//! | `ZSP_ALGORITHMS` | accepted algorithms | `ES256,EdDSA` (RS256, PS256 may be added) |
//! | `ZSP_MAX_LIFETIME_SECS` | max `exp − iat` | `300` |
//! | `ZSP_LEEWAY_SECS` | clock-skew leeway | `10` |
//! | `ZSP_REQUIRE_TYP` | `at+jwt` to require RFC 9068 typed tokens | unset: `at+jwt`, `application/at+jwt`, `JWT` |
//! | `ZSP_SINGLE_USE` | `writes`: POST and DELETE tokens are single-use; `all`: every token | `writes` |
//! | `ZSP_PUBLIC_URL` | externally visible base URL (DPoP `htu`) | `http://` + listen address |
//!
//! Routes: `GET /health` (no auth); `GET /orders`, `GET /orders/{id}` (scope `orders:read`);
//! `POST /orders` (scope `orders:write`, single use, 201); `DELETE /orders/{id}` (scope
//! `orders:admin`, 204). The verify layer wraps everything but `/health`, so a request without
//! a valid token gets 401 before routing, never a 404 or 405.
//!
//! Prints `listening on ADDR` on stdout once ready; logs and audit events go to stderr. It
//! starts even when the issuer is unreachable, and fetches keys when first needed.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tower::Layer;
use zsp::axum::extract::{Auth, verify_layer};
use zsp::core::{Algorithm, Policy, RemoteJwks, RouteRule, Verifier};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String, String> {
    env(name).ok_or_else(|| format!("{name} is required"))
}

fn secs(name: &str, default: u64) -> Result<Duration, String> {
    match env(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v.trim().parse().map(Duration::from_secs).map_err(|_| format!("{name}: not a number of seconds: {v}")),
    }
}

fn algorithms() -> Result<Vec<Algorithm>, String> {
    let list = env("ZSP_ALGORITHMS").unwrap_or_else(|| "ES256,EdDSA".into());
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| zsp::core::keys::parse_alg(a).ok_or_else(|| format!("ZSP_ALGORITHMS: unknown algorithm {a}")))
        .collect()
}

fn policy(issuer: &str, audience: &str) -> Result<Policy, String> {
    let all_single_use = match env("ZSP_SINGLE_USE").as_deref() {
        None | Some("writes") => false,
        Some("all") => true,
        Some(other) => return Err(format!("ZSP_SINGLE_USE must be writes or all, not {other}")),
    };
    let require_at_jwt = match env("ZSP_REQUIRE_TYP").as_deref() {
        None => false,
        Some(t) if t.eq_ignore_ascii_case("at+jwt") => true,
        Some(other) => return Err(format!("ZSP_REQUIRE_TYP must be at+jwt, not {other}")),
    };
    Policy::builder()
        .issuer(issuer)
        .audience(audience)
        .algorithms(algorithms()?)
        .max_lifetime(secs("ZSP_MAX_LIFETIME_SECS", 300)?)
        .leeway(secs("ZSP_LEEWAY_SECS", 10)?)
        .require_at_jwt(require_at_jwt)
        .realm(audience)
        .route(RouteRule::get("/orders").all_of(["orders:read"]).with_single_use(all_single_use))
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]).with_single_use(all_single_use))
        .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
        .route(RouteRule::delete("/orders/{id}").all_of(["orders:admin"]).single_use())
        .build()
        .map_err(|e| format!("policy: {e}"))
}

async fn list(Auth(grant): Auth) -> impl IntoResponse {
    axum::Json(json!({ "sub": grant.subject(), "orders": [{"id": "1"}, {"id": "2"}] }))
}

async fn one(Auth(grant): Auth, Path(id): Path<String>) -> impl IntoResponse {
    axum::Json(json!({ "sub": grant.subject(), "order": { "id": id } }))
}

async fn create(Auth(grant): Auth) -> impl IntoResponse {
    (StatusCode::CREATED, axum::Json(json!({ "sub": grant.subject(), "created": true })))
}

async fn delete(Auth(_grant): Auth, Path(_id): Path<String>) -> StatusCode {
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    if let Err(e) = run().await {
        eprintln!("api: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let listen: SocketAddr = env("ZSP_LISTEN")
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| format!("ZSP_LISTEN: {e}"))?;
    let issuer = required("ZSP_ISSUER")?;
    let audience = required("ZSP_AUDIENCE")?;
    let policy = policy(&issuer, &audience)?;
    let jwks = match env("ZSP_JWKS_URL") {
        Some(url) => RemoteJwks::builder().jwks_uri(url),
        None => RemoteJwks::builder().issuer(issuer.clone()),
    }
    .rsa_default(policy.rsa_default())
    .build()
    .map_err(|e| format!("JWKS: {e}"))?;
    let verifier = Verifier::builder(policy, std::sync::Arc::new(jwks)).build();

    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let _public_url = env("ZSP_PUBLIC_URL").unwrap_or_else(|| format!("http://{addr}"));

    let orders = Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(one).delete(delete));
    // The layer wraps the whole orders router, its 404/405 answers included.
    let protected = verify_layer(verifier).layer(orders);
    let app = Router::new().route("/health", get(|| async { "ok" })).fallback_service(protected);

    println!("listening on {addr}");
    tracing::info!(%addr, %issuer, %audience, "api ready");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| e.to_string())
}
