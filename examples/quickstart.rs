//! Quickstart: `cargo run --example quickstart`
//!
//! Mints ephemeral tokens with a fresh key and verifies them against a ZSP policy, printing
//! each decision and its reason. Nothing to install or configure.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use zsp::core::testing::TestIssuer;
use zsp::core::{Denial, Grant, MemoryReplayGuard, Policy, RequestFacts, RouteRule, Verifier};

const ISSUER: &str = "https://broker.quickstart.local";
const AUDIENCE: &str = "orders-api";

fn show(step: &str, result: &Result<Grant, Denial>) {
    match result {
        Ok(g) => println!(
            "ALLOW {step}: sub={} scopes=\"{}\"",
            g.subject().unwrap_or("-"),
            g.scopes()
        ),
        Err(d) => println!(
            "DENY  {step}: {} ({}, {})",
            d,
            d.status(),
            d.www_authenticate(None).unwrap_or_else(|| "no challenge".into())
        ),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = TestIssuer::es256(ISSUER);
    let policy = Policy::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .max_lifetime(Duration::from_secs(300))
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
        .build()?;
    let verifier = Verifier::builder(policy, issuer.key_set())
        .replay_guard(Arc::new(MemoryReplayGuard::new(10_000)))
        .build();
    let get = Method::GET;
    let post = Method::POST;
    let read = RequestFacts::new(&get, "/orders/42");
    let write = RequestFacts::new(&post, "/orders");

    let token = issuer
        .token(AUDIENCE, &["orders:read"])
        .subject("svc-frontend")
        .ttl_secs(60)
        .mint()?;
    show(
        "60 s token with orders:read, GET /orders/42",
        &verifier.verify(&token, &read).await,
    );

    show(
        "same token, POST /orders (needs orders:write)",
        &verifier.verify(&token, &write).await,
    );

    let single = issuer
        .token(AUDIENCE, &["orders:write"])
        .subject("svc-frontend")
        .ttl_secs(30)
        .mint()?;
    show(
        "single-use write token, POST /orders",
        &verifier.verify(&single, &write).await,
    );
    show(
        "the same write token replayed",
        &verifier.verify(&single, &write).await,
    );

    let standing = issuer.token(AUDIENCE, &["orders:read"]).ttl_secs(3600).mint()?;
    show(
        "1-hour \"standing\" token",
        &verifier.verify(&standing, &read).await,
    );

    let now = verifier.now();
    let expired = issuer
        .token(AUDIENCE, &["orders:read"])
        .issued_at(now - 120)
        .ttl_secs(60)
        .mint()?;
    show(
        "token that expired a minute ago",
        &verifier.verify(&expired, &read).await,
    );

    println!("done: every decision above was made by zsp-core's Verifier");
    Ok(())
}
