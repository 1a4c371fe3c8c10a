//! End-to-end tests of the inbound layer: real axum (and plain tower) servers on 127.0.0.1:0,
//! real HTTP calls with reqwest.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderName, StatusCode};
use http_body_util::Full;
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use zsp::axum::extract::{Auth, Claims, require_scopes, verify_layer};
use zsp::core::testing::TestIssuer;
use zsp::core::{Grant, MemoryRevocation, Policy, Revocation, RouteRule, Verifier};
use zsp::tower::verify::{VerifyLayer, denial_response};

const ISS: &str = "https://broker.test";
const AUD: &str = "orders-api";

fn policy() -> Policy {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
        .route(RouteRule::post("/approve").all_of(["orders:write"]))
        .route(RouteRule::get("/tenant"))
        .route(RouteRule::get("/local").from_cidrs(["127.0.0.0/8", "::1/128"]))
        .route(RouteRule::get("/ten-net").from_cidrs(["10.0.0.0/8"]))
        .client_from_cidrs("far-away-client", ["10.0.0.0/8"])
        .default_route(RouteRule::any("/{*rest}"))
        .build()
        .unwrap()
}

struct Env {
    issuer: TestIssuer,
    verifier: Verifier,
    revocation: Arc<MemoryRevocation>,
    http: reqwest::Client,
}

fn env() -> Env {
    let issuer = TestIssuer::es256(ISS);
    let revocation = Arc::new(MemoryRevocation::default());
    let verifier = Verifier::builder(policy(), issuer.key_set())
        .revocation(revocation.clone())
        .build();
    Env {
        issuer,
        verifier,
        revocation,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn token(&self, scopes: &[&str]) -> String {
        self.issuer.token(AUD, scopes).subject("svc-a").mint().unwrap()
    }
}

#[derive(serde::Deserialize)]
struct Tenant {
    tenant: String,
}

fn app(verify: VerifyLayer) -> Router {
    Router::new()
        .route(
            "/orders/{id}",
            get(|Auth(grant): Auth| async move {
                Json(json!({
                    "sub": grant.subject(),
                    "scopes": grant.scopes().to_string(),
                    "route": grant.route(),
                }))
            }),
        )
        .route("/orders", post(|_: Auth| async { StatusCode::CREATED }))
        .route(
            "/approve",
            post(|| async { StatusCode::OK }).route_layer(require_scopes(["orders:approve"])),
        )
        .route(
            "/tenant",
            get(|Claims(t): Claims<Tenant>| async move { t.tenant }),
        )
        .route("/local", get(|| async { "local" }))
        .route("/ten-net", get(|| async { "ten" }))
        .route(
            "/whoami",
            get(|auth: Option<Auth>| async move {
                auth.and_then(|a| a.subject().map(str::to_owned))
                    .unwrap_or_else(|| "anonymous".into())
            }),
        )
        .layer(verify)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// The RFC 9457 body: type, title, status and nothing else.
async fn assert_problem(resp: reqwest::Response, status: u16) {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(header(&resp, CONTENT_TYPE), "application/problem+json");
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
    let body: Value = resp.json().await.unwrap();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{body}");
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string());
}

fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&zsp::core::b64::decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn allowed_get_with_right_scope_reaches_handler_with_grant() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let resp = e
        .http
        .get(format!("{base}/orders/42"))
        .bearer_auth(e.token(&["orders:read"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["sub"], "svc-a");
    assert_eq!(body["scopes"], "orders:read");
    assert_eq!(body["route"], "/orders/{id}");
}

#[tokio::test]
async fn rfc6750_3_no_token_is_401_bearer_without_error() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let resp = e.http.get(format!("{base}/orders/42")).send().await.unwrap();
    assert_eq!(header(&resp, WWW_AUTHENTICATE), "Bearer");
    assert_problem(resp, 401).await;
}

#[tokio::test]
async fn rfc6750_3_1_bad_token_is_invalid_token() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let other = TestIssuer::es256(ISS)
        .token(AUD, &["orders:read"])
        .mint()
        .unwrap();
    for bad in ["not-a-jwt", "a.b.c", other.as_str()] {
        let resp = e
            .http
            .get(format!("{base}/orders/42"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, WWW_AUTHENTICATE), r#"Bearer error="invalid_token""#);
        assert_problem(resp, 401).await;
    }
    // Scheme is case-insensitive (RFC 7235 §2.1).
    let resp = e
        .http
        .get(format!("{base}/orders/42"))
        .header(AUTHORIZATION, format!("bearer {}", e.token(&["orders:read"])))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn rfc6750_3_1_insufficient_scope_is_403_with_scope() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let resp = e
        .http
        .get(format!("{base}/orders/42"))
        .bearer_auth(e.token(&["orders:write"]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, WWW_AUTHENTICATE),
        r#"Bearer error="insufficient_scope", scope="orders:read""#
    );
    assert_problem(resp, 403).await;

    // require_scopes on top of the policy table.
    let resp = e
        .http
        .post(format!("{base}/approve"))
        .bearer_auth(e.token(&["orders:write"]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, WWW_AUTHENTICATE),
        r#"Bearer error="insufficient_scope", scope="orders:approve""#
    );
    assert_problem(resp, 403).await;
    let resp = e
        .http
        .post(format!("{base}/approve"))
        .bearer_auth(e.token(&["orders:write", "orders:approve"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn single_use_post_replayed_is_401() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let token = e.token(&["orders:write"]);
    let first = e
        .http
        .post(format!("{base}/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let replay = e
        .http
        .post(format!("{base}/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&replay, WWW_AUTHENTICATE),
        r#"Bearer error="invalid_token""#
    );
    assert_problem(replay, 401).await;
}

#[tokio::test]
async fn revoked_token_is_401() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let token = e.token(&["orders:read"]);
    let ok = e
        .http
        .get(format!("{base}/orders/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    e.revocation
        .revoke_jti(&jti(&token), e.verifier.now() + 3600)
        .await
        .unwrap();
    let resp = e
        .http
        .get(format!("{base}/orders/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, WWW_AUTHENTICATE), r#"Bearer error="invalid_token""#);
    assert_problem(resp, 401).await;
}

#[tokio::test]
async fn rfc6750_2_two_authorization_headers_or_query_token_are_400() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let token = e.token(&["orders:read"]);
    let resp = e
        .http
        .get(format!("{base}/orders/1"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, WWW_AUTHENTICATE),
        r#"Bearer error="invalid_request""#
    );
    assert_problem(resp, 400).await;

    // RFC 6750 §2.3 is the one form we refuse, even alongside a valid header.
    for url in [
        format!("{base}/orders/1?access_token={token}"),
        format!("{base}/orders/1?x=1&access%5Ftoken={token}"),
    ] {
        let resp = e.http.get(url).bearer_auth(&token).send().await.unwrap();
        assert_problem(resp, 400).await;
    }

    // An unknown scheme, and the DPoP scheme on a layer without a DPoP verifier, are refused,
    // never downgraded to Bearer (tests/dpop_e2e.rs covers a layer that accepts DPoP).
    for value in ["Basic dXNlcjpwYXNz".to_owned(), format!("DPoP {token}")] {
        let resp = e
            .http
            .get(format!("{base}/orders/1"))
            .header(AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400).await;
    }
}

#[tokio::test]
async fn anonymous_mode_passes_no_credentials_but_denies_bad_ones() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()).allow_anonymous(true))).await;
    let resp = e.http.get(format!("{base}/whoami")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "anonymous");

    let resp = e
        .http
        .get(format!("{base}/whoami"))
        .bearer_auth(e.token(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "svc-a");

    let resp = e
        .http
        .get(format!("{base}/whoami"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401).await;

    // A handler that needs a Grant still refuses an anonymous request, with a challenge.
    let resp = e.http.get(format!("{base}/orders/7")).send().await.unwrap();
    assert_eq!(header(&resp, WWW_AUTHENTICATE), "Bearer");
    assert_problem(resp, 401).await;
}

#[tokio::test]
async fn extractors_without_the_layer_answer_401_not_panic() {
    let e = env();
    let app = Router::new()
        .route("/orders/{id}", get(|Auth(_g): Auth| async { "never" }))
        .route(
            "/tenant",
            get(|Claims(t): Claims<Tenant>| async move { t.tenant }),
        );
    let base = serve(app).await;
    for path in ["/orders/1", "/tenant"] {
        let resp = e
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(e.token(&["orders:read"]))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, WWW_AUTHENTICATE), "Bearer");
        assert_problem(resp, 401).await;
    }
}

#[tokio::test]
async fn typed_custom_claims() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let token = e.issuer.token(AUD, &[]).claim("tenant", "acme").mint().unwrap();
    let resp = e
        .http
        .get(format!("{base}/tenant"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "acme");
    // Missing claim: a clean 401, no serde message in the body.
    let resp = e
        .http
        .get(format!("{base}/tenant"))
        .bearer_auth(e.token(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, WWW_AUTHENTICATE), r#"Bearer error="invalid_token""#);
    assert_problem(resp, 401).await;
}

#[tokio::test]
async fn custom_denial_hook() {
    let e = env();
    let layer = verify_layer(e.verifier.clone()).on_denial(|denial| {
        let mut resp = denial_response(denial, Some("orders"));
        *resp.body_mut() = Bytes::from(format!(r#"{{"denied":{}}}"#, resp.status().as_u16()));
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
        resp.headers_mut().remove(http::header::CACHE_CONTROL);
        resp
    });
    let base = serve(app(layer)).await;
    let resp = e.http.get(format!("{base}/orders/1")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&resp, WWW_AUTHENTICATE), r#"Bearer realm="orders""#);
    // The layer puts no-store back when a hook forgets it.
    assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
    assert_eq!(resp.text().await.unwrap(), r#"{"denied":401}"#);
}

#[tokio::test]
async fn source_cidrs_from_connection_and_client_rule() {
    let e = env();
    let base = serve(app(verify_layer(e.verifier.clone()))).await;
    let get = |path: &str, token: String| e.http.get(format!("{base}{path}")).bearer_auth(token).send();
    assert_eq!(
        get("/local", e.token(&[])).await.unwrap().status(),
        StatusCode::OK
    );
    assert_problem(get("/ten-net", e.token(&[])).await.unwrap(), 403).await;
    // A client limited to 10/8 cannot call from 127.0.0.1, whatever its scopes.
    let far = e
        .issuer
        .token(AUD, &["orders:read"])
        .client_id("far-away-client")
        .mint()
        .unwrap();
    assert_problem(get("/orders/1", far).await.unwrap(), 403).await;
}

/// The client address is looked up only for a policy with a source rule: it decides nothing
/// otherwise, and the lookup would cost every request.
#[tokio::test]
async fn client_address_looked_up_only_with_source_rules() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let issuer = TestIssuer::es256(ISS);
    let open = Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    for (policy, fenced) in [(open, false), (policy(), true)] {
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = lookups.clone();
        let layer = VerifyLayer::new(Verifier::builder(policy, issuer.key_set()).build()).client_ip_from(
            move |ext: &http::Extensions| {
                counted.fetch_add(1, Ordering::SeqCst);
                ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            },
        );
        let base = serve(app(layer)).await;
        let token = issuer
            .token(AUD, &["orders:read"])
            .subject("svc-a")
            .mint()
            .unwrap();
        let resp = http
            .get(format!("{base}/orders/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            usize::from(fenced),
            "fenced: {fenced}"
        );
    }
}

#[tokio::test]
async fn trusted_proxy_header_rightmost_entry() {
    let e = env();
    let layer =
        verify_layer(e.verifier.clone()).trusted_proxy_header(HeaderName::from_static("x-forwarded-for"));
    let base = serve(app(layer)).await;
    let call = |xff: &'static str| {
        e.http
            .get(format!("{base}/ten-net"))
            .bearer_auth(e.token(&[]))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(
        call("203.0.113.9, 10.1.2.3").await.unwrap().status(),
        StatusCode::OK
    );
    // A client-supplied left-most entry is not trusted.
    assert_eq!(
        call("10.1.2.3, 203.0.113.9").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Configured header absent: the address is unknown, the CIDR route denies.
    let resp = e
        .http
        .get(format!("{base}/ten-net"))
        .bearer_auth(e.token(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

fn plain_service(
    verifier: Verifier,
) -> impl tower::Service<
    http::Request<axum::body::Body>,
    Response = http::Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync {
    tower::ServiceBuilder::new()
        .layer(VerifyLayer::new(verifier))
        .service(tower::service_fn(
            |req: http::Request<axum::body::Body>| async move {
                let sub = req
                    .extensions()
                    .get::<Grant>()
                    .and_then(|g| g.subject().map(str::to_owned))
                    .unwrap_or_default();
                // The layer marked the credential sensitive before anything else saw it.
                if let Some(v) = req.headers().get(http::header::AUTHORIZATION) {
                    assert!(v.is_sensitive());
                }
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(sub))))
            },
        ))
}

#[tokio::test]
async fn plain_tower_service_wrapped_by_the_layer() {
    use tower::ServiceExt;
    let e = env();
    let svc = plain_service(e.verifier.clone());

    // Called directly, no server.
    let req = http::Request::get("/orders/1")
        .header("authorization", format!("Bearer {}", e.token(&["orders:read"])))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let req = http::Request::get("/orders/1")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");

    // Served over a real socket by hyper (through axum::serve, no axum routing or extractors).
    let svc = tower::ServiceBuilder::new()
        .map_response(|r: http::Response<Full<Bytes>>| r.map(axum::body::Body::new))
        .service(svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(svc);
        axum::serve(listener, make).await.unwrap();
    });
    let resp = e
        .http
        .get(format!("http://{addr}/orders/9"))
        .bearer_auth(e.token(&["orders:read"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "svc-a");
    let resp = e
        .http
        .get(format!("http://{addr}/orders/9"))
        .bearer_auth(e.token(&["orders:write"]))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403).await;
}

/// A writer the test can read back.
#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn json_lines_audit_sink_records_every_decision_without_the_token() {
    let issuer = TestIssuer::es256(ISS);
    let out = SharedBuf::default();
    let audit = Arc::new(zsp::core::JsonLinesAudit::new(out.clone()));
    let verifier = Verifier::builder(policy(), issuer.key_set())
        .audit_sink(audit.clone())
        .build();
    let base = serve(app(verify_layer(verifier))).await;
    let http = reqwest::Client::new();
    let good = issuer
        .token(AUD, &["orders:read"])
        .subject("svc-a")
        .mint()
        .unwrap();
    let weak = issuer.token(AUD, &["nothing"]).mint().unwrap();
    for (token, status) in [
        (Some(&good), 200),
        (None, 401),
        (Some(&weak), 403),
        (Some(&good), 200),
    ] {
        let mut req = http.get(format!("{base}/orders/7"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), status);
    }
    audit.flush().unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(
        !text.contains(&good) && !text.contains(&weak),
        "a token reached the audit log"
    );
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary: Vec<(&str, &str)> = lines
        .iter()
        .map(|v| (v["decision"].as_str().unwrap(), v["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("allow", "ok"),
            ("deny", "missing_token"),
            ("deny", "insufficient_scope"),
            ("allow", "ok"),
        ]
    );
    assert_eq!(lines[0]["sub"], "svc-a");
    assert_eq!(lines[0]["route"], "/orders/{id}");
    assert_eq!(lines[0]["scopes"], "orders:read");
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["iss"], ISS);
    assert!(lines[0]["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
    // The second use of `good` came from the signature cache, its fields from the copy the
    // sink escaped once for the token: the same line but for the times.
    for key in [
        "iss",
        "sub",
        "client_id",
        "jti",
        "scopes",
        "route",
        "method",
        "decision",
    ] {
        assert_eq!(lines[3][key], lines[0][key], "{key}");
    }
    assert_eq!(
        lines[3].as_object().unwrap().len(),
        lines[0].as_object().unwrap().len()
    );
}

#[tokio::test]
async fn a_grant_put_in_by_anything_else_never_reaches_the_handler() {
    use tower::ServiceExt;
    let e = env();
    // A genuine grant for another subject, put in by something outside the layer (a buggy or
    // hostile middleware): the handler must only ever see the layer's own decision.
    let planted_token = e.issuer.token(AUD, &[]).subject("planted").mint().unwrap();
    let planted = e
        .verifier
        .verify(
            &planted_token,
            &zsp::core::RequestFacts::new(&http::Method::GET, "/whoami"),
        )
        .await
        .unwrap();
    // With a revocation store (the request waits for it) and without (decided in `call`).
    let plain = Verifier::builder(policy(), e.issuer.key_set()).build();
    for verifier in [e.verifier.clone(), plain] {
        let app = app(verify_layer(verifier).allow_anonymous(true));
        for (token, expected) in [(None, "anonymous"), (Some(e.token(&[])), "svc-a")] {
            let mut req = http::Request::get("/whoami");
            if let Some(token) = token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let mut req = req.body(axum::body::Body::empty()).unwrap();
            req.extensions_mut().insert(planted.clone());
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
            assert_eq!(body.to_bytes(), expected.as_bytes());
        }
    }
}
