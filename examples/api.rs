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
//! | `ZSP_DPOP` | `optional`: DPoP-bound tokens need a valid proof, unbound bearer tokens are accepted; `required`: only DPoP-bound tokens | `optional` |
//! | `ZSP_AUDIT_FILE` | append one JSON line per authorization decision to this file (`JsonLinesAudit`) instead of the `zsp::audit` tracing events | unset: tracing |
//!
//! Routes: `GET /health` (no auth); `GET /orders`, `GET /orders/{id}` (scope `orders:read`);
//! `POST /orders` (scope `orders:write`, single use, 201); `DELETE /orders/{id}` (scope
//! `orders:admin`, 204). The verify layer wraps everything but `/health`, so a request without
//! a valid token gets 401 before routing, never a 404 or 405.
//!
//! Prints `listening on ADDR` on stdout once ready; logs and audit events go to stderr. It
//! starts even when the issuer is unreachable, and fetches keys when first needed.

#[path = "support/orders_api.rs"]
mod orders_api;

use std::net::SocketAddr;
use std::time::Duration;

use orders_api::ApiSettings;
use zsp::core::dpop::{DpopMode, DpopVerifier};
use zsp::core::{Algorithm, RemoteJwks, Verifier};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String, String> {
    env(name).ok_or_else(|| format!("{name} is required"))
}

fn secs(name: &str, default: u64) -> Result<Duration, String> {
    match env(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{name}: not a number of seconds: {v}")),
    }
}

fn algorithms() -> Result<Vec<Algorithm>, String> {
    let list = env("ZSP_ALGORITHMS").unwrap_or_else(|| "ES256,EdDSA".into());
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            zsp::core::keys::parse_alg(a).ok_or_else(|| format!("ZSP_ALGORITHMS: unknown algorithm {a}"))
        })
        .collect()
}

fn settings() -> Result<ApiSettings, String> {
    let mut s = ApiSettings::new(&required("ZSP_ISSUER")?, &required("ZSP_AUDIENCE")?);
    s.algorithms = algorithms()?;
    s.max_lifetime = secs("ZSP_MAX_LIFETIME_SECS", 300)?;
    s.leeway = secs("ZSP_LEEWAY_SECS", 10)?;
    s.all_single_use = match env("ZSP_SINGLE_USE").as_deref() {
        None | Some("writes") => false,
        Some("all") => true,
        Some(other) => return Err(format!("ZSP_SINGLE_USE must be writes or all, not {other}")),
    };
    s.require_at_jwt = match env("ZSP_REQUIRE_TYP").as_deref() {
        None => false,
        Some(t) if t.eq_ignore_ascii_case("at+jwt") => true,
        Some(other) => return Err(format!("ZSP_REQUIRE_TYP must be at+jwt, not {other}")),
    };
    Ok(s)
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
    let settings = settings()?;
    let (issuer, audience) = (settings.issuer.clone(), settings.audience.clone());
    let policy = settings.policy().map_err(|e| format!("policy: {e}"))?;
    let jwks = match env("ZSP_JWKS_URL") {
        Some(url) => RemoteJwks::builder().jwks_uri(url),
        None => RemoteJwks::builder().issuer(issuer.clone()),
    }
    .rsa_default(policy.rsa_default())
    .build()
    .map_err(|e| format!("JWKS: {e}"))?;
    let mut verifier = Verifier::builder(policy, std::sync::Arc::new(jwks));
    if let Some(path) = env("ZSP_AUDIT_FILE") {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("ZSP_AUDIT_FILE {path}: {e}"))?;
        // Unbuffered: a killed server keeps every line it wrote.
        let audit = zsp::core::JsonLinesAudit::with_buffer(file, 0);
        verifier = verifier.audit_sink(std::sync::Arc::new(audit));
    }
    let verifier = verifier.build();

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mode = match env("ZSP_DPOP").as_deref() {
        None | Some("optional") => DpopMode::Optional,
        Some("required") => DpopMode::Required,
        Some(other) => return Err(format!("ZSP_DPOP must be optional or required, not {other}")),
    };
    let dpop = DpopVerifier::builder()
        .mode(mode)
        .build()
        .map_err(|e| format!("DPoP: {e}"))?;
    let mut layer = zsp::axum::extract::verify_layer(verifier).dpop(dpop);
    match env("ZSP_PUBLIC_URL") {
        Some(url) => layer = layer.public_url(&url),
        // A wildcard bind has no single address clients use; the Host header is the best
        // guess then.
        None if !addr.ip().is_unspecified() => layer = layer.public_url(&format!("http://{addr}")),
        None => {}
    }

    let app = orders_api::app(layer);

    println!("listening on {addr}");
    tracing::info!(%addr, %issuer, %audience, "api ready");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| e.to_string())
}
