//! Criterion benches (issue "Benchmarks"):
//! (d) the outbound `CachedTokenSource` hit path: `token()` on a warm key, the inner source a
//!     trivial in-memory `TokenSource` (the miss path is not measured: it is a broker round trip);
//! (e) broker issuance through its handler: `Broker::router()` driven in-process with
//!     `tower::ServiceExt::oneshot` on `POST /token` (client_credentials, HTTP Basic), ES256 and
//!     EdDSA signing keys; one iteration is one token minted, response body read.
//!
//! `cargo bench --bench outbound_broker` (add `-- --warm-up-time 1 --measurement-time 3` for a
//! quick run). Tokens/s = 1 / (time per iteration).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::core::{Algorithm, Clock, SystemClock};
use zsp::tower::outbound::{
    AccessToken, CachedTokenSource, FetchError, TokenRequest, TokenSource, TokenType,
};

/// A trivial in-memory source: one fixed token valid for 300 s, counting its calls.
struct Fixed {
    token: AccessToken,
    calls: AtomicU64,
}

#[async_trait::async_trait]
impl TokenSource for Fixed {
    async fn token(&self, _req: &TokenRequest) -> Result<AccessToken, FetchError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(self.token.clone())
    }
}

fn cache_hit(c: &mut Criterion) {
    let now = SystemClock.now();
    let token = AccessToken::new(
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl",
        TokenType::Bearer,
        now,
        now + 300,
        None,
    )
    .unwrap();
    let inner = Arc::new(Fixed {
        token,
        calls: AtomicU64::new(0),
    });
    let cache = CachedTokenSource::new(inner.clone());
    let req = TokenRequest::new("orders-api").scopes(["orders:read", "orders:write"]);
    // Warm the key.
    cache.token(&req).now_or_never().unwrap().unwrap();
    let mut g = c.benchmark_group("outbound");
    g.bench_function("cached_token_source_hit", |b| {
        b.iter(|| cache.token(black_box(&req)).now_or_never().unwrap().unwrap())
    });
    // The same hit as the attach layer takes it: without the boxed future of the async trait.
    g.bench_function("cached_token_source_hit_now", |b| {
        b.iter(|| cache.token_now(black_box(&req)).unwrap().unwrap())
    });
    g.finish();
    assert_eq!(
        inner.calls.load(Ordering::Relaxed),
        1,
        "every call after the first must be a cache hit"
    );
}

const SECRET: &str = "bench-secret-with-enough-entropy-0123456789";

fn broker(alg: Algorithm) -> axum::Router {
    let policy = BrokerPolicy::builder("https://broker.bench")
        .signing_algorithm(alg)
        // The per-client rate limit (default 50/s) would refuse nearly every bench request.
        .token_rate_per_sec(u32::MAX / 4)
        .client(
            ClientPolicy::with_secret("bench-client", SECRET)
                .audience("orders-api")
                .scopes(&["orders:read", "orders:write"])
                .max_ttl(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    Broker::builder(policy).build().unwrap().router()
}

fn token_request(basic: &str) -> Request<Body> {
    Request::post("/token")
        .header(http::header::AUTHORIZATION, basic)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "grant_type=client_credentials&resource=orders-api&scope=orders%3Aread",
        ))
        .unwrap()
}

fn broker_issuance(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bench-client:{SECRET}"))
    );
    let mut g = c.benchmark_group("broker_token_endpoint");
    for (name, alg) in [("ES256", Algorithm::ES256), ("EdDSA", Algorithm::EdDSA)] {
        let router = broker(alg);
        // One checked request first: the bench must measure issued tokens, not refusals.
        let resp = rt
            .block_on(router.clone().oneshot(token_request(&basic)))
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["access_token"].as_str().is_some(), "{v}");
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = router.clone().oneshot(token_request(&basic)).await.unwrap();
                    debug_assert_eq!(resp.status(), StatusCode::OK);
                    black_box(resp.into_body().collect().await.unwrap().to_bytes())
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cache_hit, broker_issuance);
criterion_main!(benches);
