//! Criterion bench (issue "Benchmarks"): what the inbound layer adds to one request, in process.
//!
//! The same axum hello-world router as the load bench, called directly as a `tower::Service`
//! (no sockets, no HTTP parsing), so the figures are the layer's own cost without the kernel's
//! share that dominates the load bench. The token is reused and the verified-signature cache is
//! on, so no signature is checked: what is left is header parsing, the cache lookup, the claim
//! and policy checks, the grant in the extensions, and the audit record in its various forms.
//!
//! - `no_auth`: the router alone (the floor);
//! - `zsp_audit_off`: verify layer, audit off;
//! - `zsp_json_sink`: audit to `JsonLinesAudit` (written to `io::sink`);
//! - `zsp_audit_layer`: audit through tracing to `JsonAuditLayer` (with `--features audit-layer`);
//! - `zsp_fmt`: audit through tracing to a `fmt` layer (target `zsp::audit` only);
//! - `zsp_fmt_span`: the same with `zsp::verify` enabled too, so each request opens the span.
//!
//! `cargo bench --bench inbound --features audit-layer -- --warm-up-time 1 --measurement-time 3`.
//! The cost of zsp per request is each figure minus `no_auth`.

use std::hint::black_box;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, StatusCode};
use tower::Service;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use zsp::core::testing::TestIssuer;
use zsp::core::{Algorithm, JsonLinesAudit, Policy, RouteRule, Verifier};

const ISS: &str = "https://bench.issuer";
const AUD: &str = "bench-api";
const SCOPE: &str = "hello:read";

fn hello() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

fn verifier(issuer: &TestIssuer) -> zsp::core::VerifierBuilder {
    let policy = Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::ES256])
        .route(RouteRule::get("/hello").all_of([SCOPE]))
        .build()
        .expect("policy");
    Verifier::builder(policy, issuer.key_set()).signature_cache(10_000)
}

fn zsp(builder: zsp::core::VerifierBuilder) -> Router {
    hello().layer(zsp::axum::extract::verify_layer(builder.build()))
}

/// One request through the service; every path here completes without waiting.
fn call(app: &mut Router, token: Option<&str>) -> StatusCode {
    let mut req = Request::get("/hello");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Body::empty()).expect("request");
    let waker = std::task::Waker::noop();
    match Service::<Request<Body>>::poll_ready(app, &mut Context::from_waker(waker)) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("router not ready"),
    }
    let resp = app
        .call(req)
        .now_or_never()
        .expect("completes")
        .expect("infallible");
    resp.status()
}

fn bench(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut app: Router,
    token: Option<&str>,
) {
    assert_eq!(call(&mut app, token), StatusCode::OK, "{name}");
    g.bench_function(name, |b| b.iter(|| black_box(call(&mut app, black_box(token)))));
}

fn inbound(c: &mut Criterion) {
    zsp::core::crypto::ensure_provider();
    let issuer = TestIssuer::es256(ISS);
    let token = issuer.token(AUD, &[SCOPE]).ttl_secs(300).mint().expect("token");
    let token = Some(token.as_str());

    let mut g = c.benchmark_group("inbound");
    // The policy's default lifetime cap: the whole run takes well under five minutes.
    // Building the request (header value from a formatted string) is in every figure alike.
    bench(&mut g, "no_auth", hello(), token);
    bench(
        &mut g,
        "zsp_audit_off",
        zsp(verifier(&issuer).audit(false)),
        token,
    );
    let sink = std::sync::Arc::new(JsonLinesAudit::new(std::io::sink()));
    bench(
        &mut g,
        "zsp_json_sink",
        zsp(verifier(&issuer).audit_sink(sink)),
        token,
    );

    #[cfg(feature = "audit-layer")]
    {
        let layer = tracing_subscriber::registry().with(
            zsp::core::JsonAuditLayer::new(std::io::sink())
                .with_filter(Targets::new().with_target("zsp::audit", tracing::Level::INFO)),
        );
        tracing::subscriber::with_default(layer, || {
            bench(&mut g, "zsp_audit_layer", zsp(verifier(&issuer)), token);
        });
    }

    for (name, span) in [("zsp_fmt", false), ("zsp_fmt_span", true)] {
        let mut targets = Targets::new().with_target("zsp::audit", tracing::Level::INFO);
        if span {
            targets = targets.with_target("zsp::verify", tracing::Level::INFO);
        }
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::sink)
            .with_filter(targets);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(fmt), || {
            bench(&mut g, name, zsp(verifier(&issuer)), token);
        });
    }
    g.finish();
}

criterion_group!(benches, inbound);
criterion_main!(benches);
