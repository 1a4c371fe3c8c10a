//! End-to-end tests of the outbound side (issue 5) over real sockets on 127.0.0.1: a token
//! endpoint that mints real tokens with `zsp_core::Minter` and counts its calls, and an API
//! that verifies them with `zsp_core::Verifier`. Time is a shared `ManualClock`, so expiry and
//! refresh are driven by the test, never by sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};
use zsp::core::testing::TestIssuer;
use zsp::core::{
    Actor, Grant, ManualClock, MintRequest, Policy, RequestFacts, RouteRule, SigningKey, Verifier,
};
use zsp::tower::outbound::{
    AttachError, AttachLayer, CachedTokenSource, ClientCredentials, FetchError, OAuthErrorCode, PerRequest,
    ReqwestService, SubjectToken, TokenEndpoint, TokenExchange, TokenRequest, TokenSource,
};

const START: u64 = 1_700_000_000;
const BASIC_ID: &str = "svc-basic";
const BASIC_SECRET: &str = "b4sic-s3cret:with%odd +chars";
const POST_ID: &str = "svc-post";
const POST_SECRET: &str = "p0st-s3cret-value";
const JWT_ID: &str = "svc-jwt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Unavailable,
    Garbage,
    Oversized,
    OversizedStream,
    Stall,
    /// Holds every request until the mode changes (a broker slower than any caller waits).
    Hold,
    OAuthError(&'static str),
}

struct Broker {
    url: String,
    clock: ManualClock,
    issuer: TestIssuer,
    calls: AtomicUsize,
    mode: Mutex<Mode>,
    ttl: AtomicU64,
    assertions: Verifier,
    subjects: Verifier,
    last_assertion: Mutex<Option<String>>,
}

impl Broker {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": "refused by the test broker"})),
    )
        .into_response()
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Authenticates the client per RFC 6749 §2.3.1 / RFC 7523, or says why not.
async fn authenticate(
    b: &Broker,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, Response> {
    let invalid = || oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    if let Some(v) = headers.get("authorization") {
        let v = v.to_str().map_err(|_| invalid())?;
        let b64 = v.strip_prefix("Basic ").ok_or_else(invalid)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let (id, secret) = raw.split_once(':').ok_or_else(invalid)?;
        let (id, secret) = (form_decode(id), form_decode(secret));
        return if id == BASIC_ID && secret == BASIC_SECRET {
            Ok(id)
        } else {
            Err(invalid())
        };
    }
    if form.get("client_assertion_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        let assertion = form.get("client_assertion").ok_or_else(invalid)?;
        *b.last_assertion.lock().unwrap() = Some(assertion.clone());
        // Signature with the registered key, iss, aud = our issuer, exp, lifetime <= 60 s
        // and jti single use: all checked by zsp's own Verifier.
        let grant = b
            .assertions
            .verify(assertion, &RequestFacts::new(&http::Method::POST, "/token"))
            .await
            .map_err(|_| invalid())?;
        if grant.subject() != Some(JWT_ID) || form.get("client_id").map(String::as_str) != Some(JWT_ID) {
            return Err(invalid());
        }
        return Ok(JWT_ID.into());
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) if id == POST_ID && secret == POST_SECRET => Ok(id.clone()),
        _ => Err(invalid()),
    }
}

async fn token_endpoint(
    State(b): State<Arc<Broker>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    b.calls.fetch_add(1, Ordering::SeqCst);
    while b.mode() == Mode::Hold {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match b.mode() {
        Mode::Normal | Mode::Hold => {}
        Mode::Unavailable => return (StatusCode::SERVICE_UNAVAILABLE, "<html>down</html>").into_response(),
        Mode::Garbage => return (StatusCode::OK, "<html>not json</html>").into_response(),
        Mode::Oversized => return (StatusCode::OK, vec![b'x'; 100 * 1024]).into_response(),
        Mode::OversizedStream => {
            let chunks = (0..200).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'{'; 1024])));
            return axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response();
        }
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::OK.into_response();
        }
        Mode::OAuthError(code) => return oauth_error(StatusCode::BAD_REQUEST, code),
    }
    let client_id = match authenticate(&b, &headers, &form).await {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let audience = form.get("resource").cloned().unwrap_or_default();
    if audience != "orders-api" {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_target");
    }
    let scopes: Vec<String> = form
        .get("scope")
        .map(|s| s.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut req = MintRequest::new(audience, &[], Duration::from_secs(b.ttl.load(Ordering::SeqCst)));
    req.scopes = scopes.clone();
    req.client_id = Some(client_id.clone());
    req.subject = Some(client_id.clone());
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => {
            let Some(subject) = form.get("subject_token") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            let Ok(grant) = b
                .subjects
                .verify(subject, &RequestFacts::new(&http::Method::GET, "/"))
                .await
            else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if !scopes.iter().all(|s| grant.scopes().contains(s)) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
            }
            req.subject = grant.subject().map(str::to_owned);
            req.act = Some(Actor {
                sub: Some(client_id),
                ..Actor::default()
            });
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let minted = b.issuer.minter().mint(&req).unwrap();
    Json(json!({
        "access_token": minted.token,
        "token_type": "Bearer",
        "expires_in": minted.expires_at - minted.issued_at,
        "scope": scopes.join(" "),
    }))
    .into_response()
}

async fn metadata(State(b): State<Arc<Broker>>) -> Response {
    Json(json!({"issuer": b.url, "token_endpoint": format!("{}/token", b.url)})).into_response()
}

async fn oidc_metadata(State(b): State<Arc<Broker>>) -> Response {
    Json(json!({"issuer": format!("{}/oidc", b.url), "token_endpoint": format!("{}/token", b.url)}))
        .into_response()
}

async fn evil_metadata(State(b): State<Arc<Broker>>) -> Response {
    Json(json!({"issuer": "https://attacker.example", "token_endpoint": format!("{}/token", b.url)}))
        .into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn clock() -> ManualClock {
    ManualClock::new(START)
}

async fn broker(clock: &ManualClock, client_key: &SigningKey) -> Arc<Broker> {
    logs();
    // Bind first: the broker must know its own URL (its issuer identifier).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client_keys = zsp::core::KeySet::from_keys([client_key.verifying_key().unwrap()]);
    let assertion_policy = Policy::builder()
        .issuer(JWT_ID)
        .audience(url.clone())
        .max_lifetime(Duration::from_secs(60))
        .route(RouteRule::post("/token").single_use())
        .build()
        .unwrap();
    let issuer = TestIssuer::es256(&url).with_clock(clock.clone());
    let subject_policy = Policy::builder()
        .issuer(url.clone())
        .audience("service-a")
        .default_route(RouteRule::any("/{*p}"))
        .build()
        .unwrap();
    let b = Arc::new(Broker {
        url: url.clone(),
        clock: clock.clone(),
        calls: AtomicUsize::new(0),
        mode: Mutex::new(Mode::Normal),
        ttl: AtomicU64::new(60),
        assertions: Verifier::builder(assertion_policy, client_keys)
            .clock(clock.clone())
            .build(),
        subjects: Verifier::builder(subject_policy, issuer.key_set())
            .clock(clock.clone())
            .build(),
        issuer,
        last_assertion: Mutex::new(None),
    });
    let router = Router::new()
        .route("/token", post(token_endpoint))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/oauth-authorization-server/evil", get(evil_metadata))
        .route("/oidc/.well-known/openid-configuration", get(oidc_metadata))
        .with_state(Arc::clone(&b));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    b
}

/// The protected API: verifies every token for audience `orders-api`; can be told to reject
/// the next N requests with 401 invalid_token (as after a revocation).
struct Api {
    verifier: Verifier,
    calls: AtomicUsize,
    reject_next: AtomicUsize,
    seen: Mutex<Vec<String>>,
}

async fn api_handler(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    api.calls.fetch_add(1, Ordering::SeqCst);
    let challenge = || {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
        )
            .into_response()
    };
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return challenge();
    };
    api.seen.lock().unwrap().push(token.to_owned());
    if api
        .reject_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return challenge();
    }
    match api
        .verifier
        .verify(token, &RequestFacts::new(&http::Method::GET, "/orders"))
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(_) => challenge(),
    }
}

async fn api(b: &Broker) -> (Arc<Api>, String) {
    let policy = Policy::builder()
        .issuer(b.url.clone())
        .audience("orders-api")
        .default_route(RouteRule::any("/{*p}"))
        .build()
        .unwrap();
    let api = Arc::new(Api {
        verifier: Verifier::builder(policy, b.issuer.key_set())
            .clock(b.clock.clone())
            .build(),
        calls: AtomicUsize::new(0),
        reject_next: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let url = serve(Router::new().fallback(api_handler).with_state(Arc::clone(&api))).await;
    (api, url)
}

fn endpoint(b: &Broker) -> zsp::tower::outbound::TokenEndpointBuilder {
    TokenEndpoint::builder()
        .token_endpoint(format!("{}/token", b.url))
        .clock(b.clock.clone())
}

fn basic(b: &Broker) -> ClientCredentials {
    ClientCredentials::new(
        endpoint(b)
            .client_id(BASIC_ID)
            .client_secret_basic(BASIC_SECRET)
            .build()
            .unwrap(),
    )
}

fn cached(b: &Broker) -> CachedTokenSource<ClientCredentials> {
    CachedTokenSource::builder(basic(b))
        .clock(b.clock.clone())
        .build()
}

fn orders() -> TokenRequest {
    TokenRequest::new("orders-api").scopes(["orders:read"])
}

fn get_req(url: &str) -> http::Request<reqwest::Body> {
    http::Request::get(format!("{url}/orders"))
        .body(reqwest::Body::from(""))
        .unwrap()
}

fn client_key() -> SigningKey {
    SigningKey::generate_es256("client-key").unwrap()
}

/// Waits until background refreshes are done, so the clock is never moved past a token's
/// expiry while its successor is still in flight (which a real clock would not do either:
/// the margin is many seconds, a fetch milliseconds).
async fn settle<S: TokenSource>(cache: &CachedTokenSource<S>) {
    while cache.refreshes_in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_1000_concurrent_requests_make_exactly_one_fetch() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let cache = cached(&b);
    let api = tower::service_fn(|req: http::Request<String>| async move {
        let ok = req.headers()["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ey");
        Ok::<_, std::convert::Infallible>(http::Response::new(ok))
    });
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), orders()))
        .service(api);
    let gate = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let svc = svc.clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.wait().await;
                svc.oneshot(http::Request::new(String::new()))
                    .await
                    .unwrap()
                    .into_body()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(
        b.calls(),
        1,
        "1,000 concurrent cold misses coalesce into one fetch"
    );
    assert_eq!(cache.stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_lifetimes_need_at_most_four_fetches_and_nobody_waits_on_a_refresh() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let (api, api_url) = api(&b).await;
    let cache = cached(&b);
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), orders()))
        .service(ReqwestService::new(reqwest::Client::new()));
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
    for t in 0..180 {
        clock.set(START + t);
        // The broker holds every call while this step's requests run: a request that waited
        // for a refresh would never finish (the timeout only turns that hang into a failure).
        b.set_mode(Mode::Hold);
        for _ in 0..3 {
            let resp = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(get_req(&api_url)))
                .await
                .unwrap_or_else(|_| panic!("a request waited on the broker at t+{t}"))
                .unwrap();
            assert_eq!(resp.status(), 200, "at t+{t}");
        }
        b.set_mode(Mode::Normal);
        settle(&cache).await;
    }
    let stats = cache.stats();
    assert!(b.calls() <= 4, "fetches: {}", b.calls());
    assert!(b.calls() >= 3, "tokens were refreshed: {}", b.calls());
    assert_eq!(
        stats.waited, 1,
        "only the cold start waited for a fetch: {stats:?}"
    );
    assert!(stats.refresh_window_hits > 0);
    assert_eq!(api.calls.load(Ordering::SeqCst), 541);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_serves_cached_token_until_expiry_then_fails_fast_with_bounded_attempts() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let (_api, api_url) = api(&b).await;
    let cache = cached(&b);
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), orders()))
        .service(ReqwestService::new(reqwest::Client::new()));
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
    b.set_mode(Mode::Unavailable);
    let before = b.calls();

    // The token lives 60 s: every request before then succeeds despite the outage.
    for t in 1..60 {
        clock.set(START + t);
        for _ in 0..5 {
            assert_eq!(
                svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
                200,
                "t+{t}"
            );
        }
        settle(&cache).await;
    }
    // After expiry: typed errors, and the broker sees only one attempt per backoff window.
    let (mut unavailable, mut upstream) = (0, 0);
    for t in 60..180 {
        clock.set(START + t);
        for _ in 0..5 {
            match svc.clone().oneshot(get_req(&api_url)).await {
                Err(AttachError::Token(FetchError::BrokerUnavailable { retry_after_secs, .. })) => {
                    assert!(retry_after_secs >= 1);
                    unavailable += 1
                }
                Err(AttachError::Token(FetchError::Status(503))) => upstream += 1,
                other => panic!("t+{t}: {other:?}"),
            }
        }
    }
    let attempts = b.calls() - before;
    // Refresh attempts from t+48 (margin 12 s), then backoff 1, 2, 4, 8, 16, 30, 30, 30 s:
    // 48, 49, 51, 55, 63, 79, 95, 125, 155 → 9 attempts in 132 s, against 895 requests.
    assert!(attempts <= 9, "broker attempts during the outage: {attempts}");
    assert_eq!(unavailable + upstream, 600);
    assert!(
        unavailable >= 600 - 9,
        "almost every call failed fast without the broker"
    );

    // Recovery: once the backoff window ends the next call fetches again.
    b.set_mode(Mode::Normal);
    clock.set(START + 240);
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6750_3_1_invalid_token_means_exactly_one_refetch_and_one_retry() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let (api, api_url) = api(&b).await;
    let cache = cached(&b);
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), orders()))
        .service(ReqwestService::new(reqwest::Client::new()));
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
    assert_eq!((b.calls(), api.calls.load(Ordering::SeqCst)), (1, 1));

    // The API rejects the (still unexpired) token once, as after a revocation.
    api.reject_next.store(1, Ordering::SeqCst);
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
    assert_eq!(b.calls(), 2, "exactly one refetch");
    assert_eq!(api.calls.load(Ordering::SeqCst), 3, "exactly one retry");
    let seen = api.seen.lock().unwrap().clone();
    assert_ne!(seen[1], seen[2], "the retry carried the new token");

    // Rejected twice: one retry, then the 401 is the answer. Never a loop.
    api.reject_next.store(5, Ordering::SeqCst);
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        401
    );
    assert_eq!(b.calls(), 3);
    assert_eq!(api.calls.load(Ordering::SeqCst), 5);
    api.reject_next.store(0, Ordering::SeqCst);

    // A 401 without invalid_token (here: none at all from a fake) is not retried, nor is a
    // body that cannot be replayed.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let rejecting = tower::service_fn(
        move |_req: http::Request<
            http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
        >| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(401)
                        .header("www-authenticate", "Bearer error=\"invalid_token\"")
                        .body(())
                        .unwrap(),
                )
            }
        },
    );
    let stream_svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), orders()))
        .service(rejecting);
    let body = http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::from_static(b"x")));
    let resp = stream_svc.oneshot(http::Request::new(body)).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a body that cannot be replayed is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_mode_fetches_one_token_per_request() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let (api, api_url) = api(&b).await;
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(PerRequest::new(basic(&b)), orders()))
        .service(ReqwestService::new(reqwest::Client::new()));
    for _ in 0..10 {
        assert_eq!(
            svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
            200
        );
    }
    assert_eq!(b.calls(), 10);
    let mut seen = api.seen.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10, "every request carried its own token");
}

#[tokio::test]
async fn rfc7523_private_key_jwt_is_verified_by_the_endpoint_and_replay_is_refused() {
    let clock = clock();
    let key = client_key();
    let b = broker(&clock, &key).await;
    // Discovery (RFC 8414) gives the token endpoint and the issuer, which is the default
    // assertion audience; the endpoint's Verifier checks signature, iss, aud, exp, lifetime
    // <= 60 s and single-use jti.
    let source = ClientCredentials::new(
        TokenEndpoint::builder()
            .issuer(b.url.clone())
            .client_id(JWT_ID)
            .private_key_jwt(key.clone())
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let t1 = source.token(&orders()).await.unwrap();
    let first_assertion = b.last_assertion.lock().unwrap().clone().unwrap();
    let t2 = source.token(&orders()).await.unwrap();
    assert!(!t1.same_value(&t2));
    let second_assertion = b.last_assertion.lock().unwrap().clone().unwrap();
    assert_ne!(first_assertion, second_assertion, "a fresh assertion per fetch");

    // Replaying a used assertion is refused by the endpoint.
    let resp = reqwest::Client::new()
        .post(format!("{}/token", b.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "orders-api"),
            ("client_id", JWT_ID),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &first_assertion),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );

    // A key the endpoint does not know → invalid_client, typed.
    let stranger = ClientCredentials::new(
        endpoint(&b)
            .issuer(b.url.clone())
            .client_id(JWT_ID)
            .private_key_jwt(client_key())
            .build()
            .unwrap(),
    );
    assert!(matches!(
        stranger.token(&orders()).await,
        Err(FetchError::OAuth {
            code: OAuthErrorCode::InvalidClient,
            ..
        })
    ));

    // Discovery refuses metadata that names another issuer (RFC 8414 §3.3).
    let evil = ClientCredentials::new(
        TokenEndpoint::builder()
            .issuer(format!("{}/evil", b.url))
            .client_id(JWT_ID)
            .private_key_jwt(key)
            .build()
            .unwrap(),
    );
    let calls = b.calls();
    assert!(matches!(
        evil.token(&orders()).await,
        Err(FetchError::Discovery(_))
    ));
    assert_eq!(b.calls(), calls, "no credentials were sent anywhere");
}

#[tokio::test]
async fn rfc6749_2_3_1_client_secret_basic_and_post_work_and_wrong_secrets_are_invalid_client() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let t = basic(&b).token(&orders()).await.unwrap();
    assert_eq!(t.expires_at(), START + 60);
    assert_eq!(t.scope().unwrap().to_string(), "orders:read");
    let post = ClientCredentials::new(
        endpoint(&b)
            .client_id(POST_ID)
            .client_secret_post(POST_SECRET)
            .build()
            .unwrap(),
    );
    post.token(&orders()).await.unwrap();
    for wrong in [
        endpoint(&b).client_id(BASIC_ID).client_secret_basic("nope"),
        endpoint(&b).client_id(POST_ID).client_secret_post("nope"),
    ] {
        let err = ClientCredentials::new(wrong.build().unwrap())
            .token(&orders())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                FetchError::OAuth {
                    code: OAuthErrorCode::InvalidClient,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Discovery falls back to OpenID Connect Discovery when RFC 8414 metadata is missing.
    let discovered = ClientCredentials::new(
        TokenEndpoint::builder()
            .issuer(format!("{}/oidc", b.url))
            .client_id(BASIC_ID)
            .client_secret_basic(BASIC_SECRET)
            .build()
            .unwrap(),
    );
    discovered.token(&orders()).await.unwrap();
    // RFC 8707: an audience the broker does not serve.
    let err = basic(&b)
        .token(&TokenRequest::new("elsewhere"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FetchError::OAuth {
            code: OAuthErrorCode::InvalidTarget,
            ..
        }
    ));
}

#[tokio::test]
async fn rfc6749_5_2_errors_and_bad_responses_are_typed_never_panics() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let src = ClientCredentials::new(
        endpoint(&b)
            .client_id(BASIC_ID)
            .client_secret_basic(BASIC_SECRET)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    for (code, want) in [
        ("invalid_request", OAuthErrorCode::InvalidRequest),
        ("invalid_client", OAuthErrorCode::InvalidClient),
        ("invalid_grant", OAuthErrorCode::InvalidGrant),
        ("unauthorized_client", OAuthErrorCode::UnauthorizedClient),
        ("unsupported_grant_type", OAuthErrorCode::UnsupportedGrantType),
        ("invalid_scope", OAuthErrorCode::InvalidScope),
        ("invalid_target", OAuthErrorCode::InvalidTarget),
        ("slow_down", OAuthErrorCode::Other("slow_down".into())),
    ] {
        b.set_mode(Mode::OAuthError(code));
        match src.token(&orders()).await {
            Err(FetchError::OAuth { code, description }) => {
                assert_eq!(code, want);
                assert_eq!(description.as_deref(), Some("refused by the test broker"));
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    type Check = fn(&FetchError) -> bool;
    let cases: [(Mode, Check); 5] = [
        (Mode::Unavailable, |e| *e == FetchError::Status(503)),
        (Mode::Garbage, |e| matches!(e, FetchError::Malformed(_))),
        (Mode::Oversized, |e| {
            matches!(e, FetchError::TooLarge { limit: 65536 })
        }),
        (Mode::OversizedStream, |e| {
            matches!(e, FetchError::TooLarge { .. })
        }),
        (Mode::Stall, |e| *e == FetchError::Timeout),
    ];
    for (mode, check) in cases {
        b.set_mode(mode);
        let err = src.token(&orders()).await.unwrap_err();
        assert!(check(&err), "{mode:?}: {err:?}");
    }
    // Nothing listening.
    let dead = ClientCredentials::new(
        TokenEndpoint::builder()
            .token_endpoint("http://127.0.0.1:9/token")
            .client_id("x")
            .build()
            .unwrap(),
    );
    assert!(matches!(
        dead.token(&orders()).await,
        Err(FetchError::Transport(_) | FetchError::Timeout)
    ));
}

async fn inbound_grant(b: &Broker, scopes: &[&str]) -> Grant {
    let token = b
        .issuer
        .token("service-a", scopes)
        .subject("alice")
        .mint()
        .unwrap();
    b.subjects
        .verify(&token, &RequestFacts::new(&http::Method::GET, "/"))
        .await
        .unwrap()
}

#[tokio::test]
async fn rfc8693_exchange_downscopes_records_the_actor_and_never_widens() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let grant = inbound_grant(&b, &["orders:read", "orders:write"]).await;
    let exchange = TokenExchange::new(
        endpoint(&b)
            .client_id(POST_ID)
            .client_secret_post(POST_SECRET)
            .build()
            .unwrap(),
    );
    let token = exchange
        .exchange(&SubjectToken::from_grant(&grant), None, &orders())
        .await
        .unwrap();
    let (api, _) = api(&b).await;
    let next = api
        .verifier
        .verify(token.secret(), &RequestFacts::new(&http::Method::GET, "/orders"))
        .await
        .unwrap();
    assert_eq!(next.subject(), Some("alice"));
    assert_eq!(next.act().and_then(|a| a.sub.as_deref()), Some(POST_ID));
    assert_eq!(next.scopes().to_string(), "orders:read");

    // Asking for more than the subject has is refused before anything is sent.
    let calls = b.calls();
    let wider = TokenRequest::new("orders-api").scopes(["orders:read", "orders:admin"]);
    let err = exchange
        .source(SubjectToken::from_grant(&grant))
        .token(&wider)
        .await
        .unwrap_err();
    match err {
        FetchError::ScopeWidening { not_granted } => assert_eq!(not_granted.to_string(), "orders:admin"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.calls(), calls);
    // Without local knowledge of the scopes, the broker refuses it.
    let err = exchange
        .exchange(&SubjectToken::from_token(grant.token()), None, &wider)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FetchError::OAuth {
            code: OAuthErrorCode::InvalidScope,
            ..
        }
    ));
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

/// One global subscriber at TRACE writing into a buffer, installed before any test emits
/// anything. A per-test `set_default` would race with other test threads over tracing's
/// cached callsite interest and miss events.
fn logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Captured::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_secrets_never_reach_debug_output_or_logs() {
    let clock = clock();
    let b = broker(&clock, &client_key()).await;
    let (api, api_url) = api(&b).await;
    let post = ClientCredentials::new(
        endpoint(&b)
            .client_id(POST_ID)
            .client_secret_post(POST_SECRET)
            .build()
            .unwrap(),
    );
    let cache = CachedTokenSource::builder(post).clock(clock.clone()).build();
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), orders()))
        .service(ReqwestService::new(reqwest::Client::new()));
    let mut debug = String::new();
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
    api.reject_next.store(1, Ordering::SeqCst); // the retry path logs too
    assert_eq!(
        svc.clone().oneshot(get_req(&api_url)).await.unwrap().status(),
        200
    );
    let basic_src = CachedTokenSource::builder(basic(&b)).clock(clock.clone()).build();
    let token = basic_src.token(&orders()).await.unwrap();
    debug += &format!(
        "{token:?} {:?} {cache:?} {basic_src:?} {svc:?}",
        token.authorization()
    );
    debug += &format!("{:?}", basic(&b));
    b.set_mode(Mode::OAuthError("invalid_client"));
    clock.advance(61);
    debug += &format!("{:?}", cache.token(&orders()).await.unwrap_err());
    debug += &format!("{:?}", cache.token(&orders()).await.unwrap_err());

    // The capture holds every test's logs (all tests share one global subscriber), so the
    // client secrets are checked against the whole run's output.
    let logs = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("zsp.token_fetch"), "spans are captured: {logs}");
    assert!(logs.contains("orders-api") && logs.contains("latency_ms"));
    assert!(logs.contains("cache=\"miss\""), "{logs}");
    let mut secrets: Vec<String> = api.seen.lock().unwrap().clone();
    secrets.push(token.secret().to_owned());
    secrets.push(POST_SECRET.into());
    secrets.push(BASIC_SECRET.into());
    secrets.push(base64::engine::general_purpose::STANDARD.encode(BASIC_SECRET));
    assert!(secrets.len() >= 4);
    for s in &secrets {
        // The signature part alone is enough to identify a JWT.
        let needle = s.rsplit('.').next().unwrap();
        assert!(!logs.contains(needle), "a secret reached the logs");
        assert!(!debug.contains(needle), "a secret reached Debug output: {debug}");
    }
}
