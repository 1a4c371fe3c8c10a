//! Every decision of the inbound layer emits one `zsp::audit` event inside its request span,
//! routed to its own sink by target, and never carries the token; with `zsp::verify` at WARN
//! the events come without the span.
//!
//! This test lives in its own binary on purpose: it installs a thread-scoped subscriber, and
//! tracing caches per-callsite interest process-wide, so a test running concurrently in the
//! same process could register the audit callsite while no subscriber wants it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use tower::ServiceExt;
use tracing_subscriber::{filter::Targets, fmt, prelude::*};
use zsp::core::testing::TestIssuer;
use zsp::core::{Grant, Policy, RouteRule, Verifier};
use zsp::tower::VerifyLayer;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// A `fmt` layer for the audit target only, plus `zsp::verify` at `verify_level`.
fn audit_subscriber(
    capture: &Capture,
    verify_level: tracing::Level,
) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(
        fmt::layer()
            .with_writer(capture.clone())
            .with_ansi(false)
            .with_filter(
                Targets::new()
                    .with_target("zsp::audit", tracing::Level::INFO)
                    .with_target("zsp::verify", verify_level),
            ),
    )
}

#[tokio::test]
async fn every_decision_is_audited_in_a_span_without_the_token() {
    let capture = Capture::default();
    // Audit events routed to their own sink by target, as the module docs describe.
    let guard = tracing::subscriber::set_default(audit_subscriber(&capture, tracing::Level::INFO));

    let issuer = TestIssuer::es256("https://broker.test");
    let policy = Policy::builder()
        .issuer("https://broker.test")
        .audience("orders-api")
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .build()
        .unwrap();
    let verifier = Verifier::builder(policy, issuer.key_set()).build();
    let svc = tower::ServiceBuilder::new()
        .layer(VerifyLayer::new(verifier))
        .service(tower::service_fn(
            |req: http::Request<axum::body::Body>| async move {
                let sub = req
                    .extensions()
                    .get::<Grant>()
                    .and_then(|g| g.subject().map(str::to_owned));
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                    sub.unwrap_or_default(),
                ))))
            },
        ));
    let token = issuer.token("orders-api", &["orders:read"]).mint().unwrap();
    let other = issuer.token("orders-api", &["nothing"]).mint().unwrap();
    let requests = [
        Some(format!("Bearer {token}")),
        None,
        Some("Bearer not-a-token".to_owned()),
        Some(format!("Bearer {other}")),
    ];
    for auth in requests {
        let mut req = http::Request::get("/orders/5");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        svc.clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
    }
    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, reason) in lines
        .iter()
        .zip(["ok", "missing_token", "malformed", "insufficient_scope"])
    {
        assert!(line.contains("zsp.verify"), "not in the request span: {line}");
        assert!(
            line.contains(&format!("reason=\"{reason}\"")) || line.contains(&format!("reason={reason}")),
            "{line}"
        );
    }
    assert!(lines[0].contains("allow"), "{}", lines[0]);
    assert!(lines[0].contains("/orders/{id}"), "{}", lines[0]);
    assert!(!out.contains(&token), "the token reached the audit log");
    drop(guard);

    // With `zsp::verify` at WARN (its store-failure warnings kept) the events come without the
    // span, as the layer's docs promise to those who would rather not pay for it.
    let warn = Capture::default();
    let _guard = tracing::subscriber::set_default(audit_subscriber(&warn, tracing::Level::WARN));
    let req = http::Request::get("/orders/5")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    svc.clone().oneshot(req).await.unwrap();
    let out = String::from_utf8(warn.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("reason=\"ok\"") || lines[0].contains("reason=ok"),
        "{}",
        lines[0]
    );
    assert!(
        !lines[0].contains("zsp.verify"),
        "a span opened with zsp::verify at WARN: {}",
        lines[0]
    );
}
