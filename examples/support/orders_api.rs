//! The orders API shared by the `api` and `quickstart` examples: its policy and its routes.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tower::Layer;
use zsp::axum::extract::Auth;
use zsp::core::{Algorithm, Policy, PolicyError, RouteRule};
use zsp::tower::VerifyLayer;

/// The settings of the orders API (the `api` example reads them from `ZSP_*` variables).
pub struct ApiSettings {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    pub max_lifetime: Duration,
    pub leeway: Duration,
    pub require_at_jwt: bool,
    pub all_single_use: bool,
}

impl ApiSettings {
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA],
            max_lifetime: Duration::from_secs(300),
            leeway: Duration::from_secs(10),
            require_at_jwt: false,
            all_single_use: false,
        }
    }

    /// Reads scopes per route; writes are single-use, reads too when `all_single_use`.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let reads_once = self.all_single_use;
        Policy::builder()
            .issuer(self.issuer.clone())
            .audience(self.audience.clone())
            .algorithms(self.algorithms.clone())
            .max_lifetime(self.max_lifetime)
            .leeway(self.leeway)
            .require_at_jwt(self.require_at_jwt)
            .realm(self.audience.clone())
            .route(
                RouteRule::get("/orders")
                    .all_of(["orders:read"])
                    .with_single_use(reads_once),
            )
            .route(
                RouteRule::get("/orders/{id}")
                    .all_of(["orders:read"])
                    .with_single_use(reads_once),
            )
            .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
            .route(
                RouteRule::delete("/orders/{id}")
                    .all_of(["orders:admin"])
                    .single_use(),
            )
            .build()
    }
}

async fn list(Auth(grant): Auth) -> impl IntoResponse {
    axum::Json(json!({ "sub": grant.subject(), "orders": [{"id": "1"}, {"id": "2"}] }))
}

async fn one(Auth(grant): Auth, Path(id): Path<String>) -> impl IntoResponse {
    axum::Json(json!({ "sub": grant.subject(), "order": { "id": id } }))
}

async fn create(Auth(grant): Auth) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        axum::Json(json!({ "sub": grant.subject(), "created": true })),
    )
}

async fn delete(Auth(_grant): Auth, Path(_id): Path<String>) -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `/health` is open; everything else goes through the verify layer, which wraps the whole
/// orders router (its 404/405 answers included), so a request without a valid token is
/// refused before routing. Build the layer with `zsp::axum::extract::verify_layer`, so it sees
/// the client's address.
pub fn app(layer: VerifyLayer) -> Router {
    let orders = Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(one).delete(delete));
    let protected = layer.layer(orders);
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback_service(protected)
}
