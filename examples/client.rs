//! Calls a URL through the outbound layer: a short-lived token fetched from the broker (or any
//! OAuth 2.0 token endpoint), cached for seconds, attached to each request.
//!
//! ```sh
//! ZSP_ISSUER=http://127.0.0.1:9000 ZSP_CLIENT_ID=frontend \
//! ZSP_CLIENT_SECRET=frontend-demo-secret-0123456789abcdef0123456789 \
//! ZSP_AUDIENCE=orders-api ZSP_SCOPE=orders:read \
//!   cargo run --example client -- GET http://127.0.0.1:8080/orders 5
//! ```
//!
//! Environment (a public contract; names are stable):
//!
//! | variable | meaning |
//! |---|---|
//! | `ZSP_ISSUER` | issuer; the token endpoint is discovered (RFC 8414, then OIDC) |
//! | `ZSP_TOKEN_URL` | the token endpoint, instead of discovery |
//! | `ZSP_CLIENT_ID` | client id (required) |
//! | `ZSP_CLIENT_SECRET` | client secret (`client_secret_basic`) |
//! | `ZSP_CLIENT_KEY` | a PEM or private JWK file for `private_key_jwt`, instead of a secret |
//! | `ZSP_AUDIENCE` | the API's audience, sent as `resource` |
//! | `ZSP_SCOPE` | space-separated scopes to request |
//! | `ZSP_DPOP` | `1`: DPoP-bound tokens (RFC 9449) with a per-process key and a proof per request |
//!
//! Arguments: `METHOD URL [COUNT]` (COUNT defaults to 1). Prints one line per response on
//! stdout, beginning with its status (e.g. `200 OK`), then `token fetches: N`. Logs go to
//! stderr.

use std::time::Duration;

use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder, ServiceExt};
use zsp::core::SigningKey;
use zsp::tower::outbound::{
    AttachLayer, CachedTokenSource, ClientCredentials, ReqwestService, TokenEndpoint, TokenRequest,
};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    match run().await {
        Ok(all_ok) => std::process::exit(if all_ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(2);
        }
    }
}

async fn run() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (method, url, count) = match args.as_slice() {
        [m, u] => (m.clone(), u.clone(), 1),
        [m, u, c] => (
            m.clone(),
            u.clone(),
            c.parse::<usize>()
                .map_err(|_| format!("COUNT: not a number: {c}"))?,
        ),
        _ => return Err("usage: client METHOD URL [COUNT]".into()),
    };
    let method =
        http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())?;

    let mut endpoint =
        TokenEndpoint::builder().client_id(env("ZSP_CLIENT_ID").ok_or("ZSP_CLIENT_ID is required")?);
    endpoint = match (env("ZSP_TOKEN_URL"), env("ZSP_ISSUER")) {
        (Some(url), issuer) => {
            let e = endpoint.token_endpoint(url);
            match issuer {
                Some(i) => e.issuer(i),
                None => e,
            }
        }
        (None, Some(issuer)) => endpoint.issuer(issuer),
        (None, None) => return Err("ZSP_ISSUER or ZSP_TOKEN_URL is required".into()),
    };
    endpoint = match (env("ZSP_CLIENT_SECRET"), env("ZSP_CLIENT_KEY")) {
        (Some(secret), None) => endpoint.client_secret_basic(secret),
        (None, Some(path)) => {
            let bytes = std::fs::read(&path).map_err(|e| format!("ZSP_CLIENT_KEY {path}: {e}"))?;
            endpoint.private_key_jwt(
                SigningKey::from_pem_or_jwk(&bytes).map_err(|e| format!("ZSP_CLIENT_KEY: {e}"))?,
            )
        }
        _ => return Err("exactly one of ZSP_CLIENT_SECRET or ZSP_CLIENT_KEY is required".into()),
    };
    let endpoint = endpoint.build().map_err(|e| format!("token endpoint: {e}"))?;
    let tokens = CachedTokenSource::new(ClientCredentials::new(endpoint));

    let mut request = match env("ZSP_AUDIENCE") {
        Some(aud) => TokenRequest::new(aud),
        None => TokenRequest::without_audience(),
    };
    if let Some(scope) = env("ZSP_SCOPE") {
        request = request.scopes(scope.split(' ').filter(|s| !s.is_empty()));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut layer = AttachLayer::new(tokens.clone(), request);
    if matches!(env("ZSP_DPOP").as_deref(), Some("1" | "true" | "yes")) {
        layer = layer.dpop_generated().map_err(|e| format!("DPoP key: {e}"))?;
    }
    let mut client = ServiceBuilder::new()
        .layer(layer)
        .service(ReqwestService::new(http));

    let mut all_ok = true;
    for _ in 0..count {
        let req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(reqwest::Body::from(Vec::new()))
            .map_err(|e| e.to_string())?;
        let svc = ServiceExt::<http::Request<reqwest::Body>>::ready(&mut client)
            .await
            .map_err(|e| e.to_string())?;
        match svc.call(req).await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&body);
                println!(
                    "{} {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    text.trim()
                );
                all_ok &= status.is_success();
            }
            Err(e) => {
                println!("ERR {e}");
                all_ok = false;
            }
        }
    }
    println!("token fetches: {}", tokens.stats().fetches);
    Ok(all_ok)
}
