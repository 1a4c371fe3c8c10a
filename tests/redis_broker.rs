//! The broker's `/revoke` writes to the Redis store every replica reads: a token revoked at the
//! broker is refused by another replica on its next request.
//!
//! Needs `ZSP_REDIS_URL` (and `--features redis`); without it the test says it was skipped.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::core::redis::RedisStore;
use zsp::core::{Denial, KeySet, Policy, RequestFacts, RouteRule, Verifier};

const SECRET: &str = "frontend-secret-0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_token_revoked_at_the_broker_is_refused_by_a_replica_sharing_redis() {
    let url = match std::env::var("ZSP_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            // Straight to stderr, past the test harness's capture, so the skip is visible.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipped: ZSP_REDIS_URL not set\n");
            return;
        }
    };
    let prefix = format!("zsp-test:{}:", zsp::core::crypto::random_id::<9>().unwrap());
    // Revocation semantics, not latency: a budget a loaded CI machine cannot exceed by accident.
    let store = |url: &str| {
        RedisStore::builder(url)
            .prefix(&prefix)
            .budget(Duration::from_secs(2))
            .build()
            .unwrap()
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let policy = BrokerPolicy::builder(&base)
        .max_ttl(Duration::from_secs(60))
        .client(
            ClientPolicy::with_secret("frontend", SECRET)
                .audience("orders-api")
                .scopes(&["orders:read"]),
        )
        .build()
        .unwrap();
    let broker = Broker::builder(policy)
        .revocation(Arc::new(store(&url).revocation()))
        .build()
        .unwrap();
    let router = broker.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let form = [
        ("grant_type", "client_credentials"),
        ("resource", "orders-api"),
        ("scope", "orders:read"),
    ];
    let resp = http
        .post(format!("{base}/token"))
        .basic_auth("frontend", Some(SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();

    let jwks = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let replica_policy = Policy::builder()
        .issuer(base.clone())
        .audience("orders-api")
        .default_route(RouteRule::any("/{*p}"))
        .build()
        .unwrap();
    // A replica with its own connection to the same Redis and prefix.
    let replica = Verifier::builder(replica_policy, KeySet::from_jwks(&jwks, None).unwrap())
        .revocation(Arc::new(store(&url).revocation()))
        .audit(false)
        .build();
    let get = http::Method::GET;
    let facts = RequestFacts::new(&get, "/orders/1");
    replica.verify(&token, &facts).await.unwrap();

    let resp = http
        .post(format!("{base}/revoke"))
        .basic_auth("frontend", Some(SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(replica.verify(&token, &facts).await.unwrap_err(), Denial::Revoked);
}
