//! Key rotation against a real JWKS server on 127.0.0.1 that counts its hits and can rotate
//! keys, fail, answer junk, stall or stop. Time is a `ManualClock`: nothing sleeps, nothing
//! depends on timing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use zsp::axum::extract::{Auth, verify_layer};
use zsp::core::jwks::{JwksError, RemoteJwks};
use zsp::core::testing::TestIssuer;
use zsp::core::{
    Clock, Denial, ManualClock, Policy, RequestFacts, RouteRule, SigningKey, SystemClock, Verifier,
};

const ISS: &str = "https://broker.test";
const AUD: &str = "orders-api";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Ok,
    Error500,
    Garbage,
    Huge,
    /// Over the limit with no Content-Length: only streaming with a running total stops it.
    HugeChunked,
    Stall,
}

#[derive(Clone)]
struct Jwks {
    base: String,
    hits: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    doc: Arc<Mutex<Value>>,
    /// The issuer the RFC 8414 document claims; `None` answers 404.
    as_issuer: Arc<Mutex<Option<String>>>,
    /// The issuer the OpenID configuration claims; `None` answers 404.
    oidc_issuer: Arc<Mutex<Option<String>>>,
    stall: Arc<tokio::sync::Notify>,
}

impl Jwks {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    fn publish(&self, issuers: &[&TestIssuer]) {
        let keys: Vec<Value> = issuers.iter().map(|i| i.key().public_jwk().clone()).collect();
        *self.doc.lock().unwrap() = json!({ "keys": keys });
    }
}

async fn jwks_doc(State(s): State<Jwks>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let mode = *s.mode.lock().unwrap();
    let doc = s.doc.lock().unwrap().to_string();
    match mode {
        Mode::Ok => (
            [
                (CACHE_CONTROL, "public, max-age=120"),
                (CONTENT_TYPE, "application/json"),
            ],
            doc,
        )
            .into_response(),
        Mode::Error500 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::Garbage => ([(CONTENT_TYPE, "application/json")], "{\"keys\": [ {\"kty\": ").into_response(),
        Mode::Huge => ([(CONTENT_TYPE, "application/json")], " ".repeat(300 * 1024)).into_response(),
        Mode::HugeChunked => {
            let chunks = futures_util::stream::iter(
                (0..300).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
            );
            axum::body::Body::from_stream(chunks).into_response()
        }
        Mode::Stall => {
            s.stall.notified().await;
            ([(CONTENT_TYPE, "application/json")], doc).into_response()
        }
    }
}

fn metadata(s: &Jwks, issuer: Option<String>) -> Response {
    match issuer {
        Some(iss) => {
            axum::Json(json!({ "issuer": iss, "jwks_uri": format!("{}/jwks", s.base) })).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

struct Server {
    state: Jwks,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = Jwks {
            base: format!("http://{addr}"),
            hits: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            doc: Arc::new(Mutex::new(json!({ "keys": [] }))),
            as_issuer: Arc::default(),
            oidc_issuer: Arc::default(),
            stall: Arc::default(),
        };
        let app = Router::new()
            .route("/jwks", get(jwks_doc))
            .route(
                "/.well-known/oauth-authorization-server",
                get(|State(s): State<Jwks>| async move {
                    let iss = s.as_issuer.lock().unwrap().clone();
                    metadata(&s, iss)
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<Jwks>| async move {
                    let iss = s.oidc_issuer.lock().unwrap().clone();
                    metadata(&s, iss)
                }),
            )
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Server {
            state,
            shutdown: Some(tx),
            task,
        }
    }

    fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.base)
    }

    /// Stops listening and closes every connection, pooled ones included.
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server shut down")
            .unwrap();
    }
}

fn issuer(kid: &str, clock: &ManualClock) -> TestIssuer {
    TestIssuer::from_key(ISS, SigningKey::generate_es256(kid).unwrap()).with_clock(clock.clone())
}

fn clock() -> ManualClock {
    ManualClock::new(SystemClock.now())
}

fn remote(uri: &str, clock: &ManualClock) -> RemoteJwks {
    RemoteJwks::builder()
        .jwks_uri(uri)
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn verifier(jwks: &RemoteJwks, clock: &ManualClock) -> Verifier {
    let policy = Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .default_route(RouteRule::any("/{*rest}"))
        .build()
        .unwrap();
    Verifier::builder(policy, Arc::new(jwks.clone()))
        .clock(clock.clone())
        .build()
}

async fn check(v: &Verifier, issuer: &TestIssuer) -> Result<(), Denial> {
    let token = issuer.token(AUD, &["orders:read"]).mint().unwrap();
    v.verify(&token, &RequestFacts::new(&Method::GET, "/orders"))
        .await
        .map(|_| ())
}

/// A JWKS server publishing the key `published`, a verifier on it, and issuers for that key
/// and for `unpublished`.
async fn rotation(
    published: &str,
    unpublished: &str,
) -> (Server, ManualClock, TestIssuer, TestIssuer, Verifier) {
    let server = Server::start().await;
    let clock = clock();
    let (a, b) = (issuer(published, &clock), issuer(unpublished, &clock));
    server.state.publish(&[&a]);
    let v = verifier(&remote(&server.jwks_uri(), &clock), &clock);
    (server, clock, a, b, v)
}

/// `app` served on 127.0.0.1.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn new_signing_key_is_accepted_after_exactly_one_refetch() {
    let (server, clock, old, new, v) = rotation("key-1", "key-2").await;

    assert_eq!(check(&v, &old).await, Ok(()));
    assert_eq!(server.state.hits(), 1);

    // The issuer publishes key-2 and signs with it one second later: the unknown-kid refetch
    // is still inside the 10 s cooldown, so the token is refused without a fetch.
    server.state.publish(&[&old, &new]);
    clock.advance(1);
    assert_eq!(check(&v, &new).await, Err(Denial::UnknownKey));
    assert_eq!(server.state.hits(), 1);

    clock.advance(10);
    assert_eq!(check(&v, &new).await, Ok(()));
    assert_eq!(server.state.hits(), 2, "exactly one refetch");
    // Both keys now verify without further fetches.
    assert_eq!(check(&v, &new).await, Ok(()));
    assert_eq!(check(&v, &old).await, Ok(()));
    assert_eq!(server.state.hits(), 2);
    server.stop().await;
}

#[tokio::test]
async fn through_the_layer_a_new_key_waits_for_its_refetch_and_reaches_the_handler() {
    let (server, clock, old, new, v) = rotation("key-1", "key-2").await;
    let app = Router::new()
        .route(
            "/orders",
            get(|Auth(grant): Auth| async move { grant.subject().unwrap_or("").to_owned() }),
        )
        .layer(verify_layer(v.clone()));
    let addr = serve(app).await;
    let get_orders = |issuer: &TestIssuer| {
        let token = issuer.token(AUD, &["orders:read"]).mint().unwrap();
        reqwest::Client::new()
            .get(format!("http://{addr}/orders"))
            .bearer_auth(token)
            .send()
    };

    // The first request finds no keys yet, the second a known kid: one fetch between them.
    assert_eq!(get_orders(&old).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get_orders(&old).await.unwrap().status(), StatusCode::OK);
    assert_eq!(server.state.hits(), 1);

    // key-2, past the cooldown: the layer waits for the refetch and the handler runs.
    server.state.publish(&[&old, &new]);
    clock.advance(11);
    let resp = get_orders(&new).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "test-subject");
    assert_eq!(server.state.hits(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_cause_at_most_one_fetch() {
    let (server, clock, known, stranger, v) = rotation("known", "stranger").await;
    assert_eq!(check(&v, &known).await, Ok(()));
    clock.advance(11);
    let before = server.state.hits();

    let token = stranger.token(AUD, &[]).mint().unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(500));
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (v, token, barrier) = (v.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                v.verify(&token, &RequestFacts::new(&Method::GET, "/x"))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err(Denial::UnknownKey));
    }
    let fetches = server.state.hits() - before;
    assert!(fetches <= 1, "{fetches} fetches for 500 concurrent unknown kids");
    assert_eq!(fetches, 1);
    server.stop().await;
}

#[tokio::test]
async fn readers_never_wait_for_a_fetch_in_flight() {
    let (server, clock, known, stranger, v) = rotation("known", "stranger").await;
    assert_eq!(check(&v, &known).await, Ok(()));
    clock.advance(11);

    server.state.set_mode(Mode::Stall);
    let pending = {
        let (v, stranger) = (v.clone(), stranger.clone());
        tokio::spawn(async move { check(&v, &stranger).await })
    };
    // Wait until the refetch has reached the server and is stalled there.
    for _ in 0..500 {
        if server.state.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.state.hits(), 2);
    // A known kid verifies while the fetch holds the fetch lock.
    let known_result = tokio::time::timeout(Duration::from_secs(10), check(&v, &known))
        .await
        .expect("a reader waited on the fetch");
    assert_eq!(known_result, Ok(()));
    assert!(!pending.is_finished());
    server.state.stall.notify_one();
    assert_eq!(pending.await.unwrap(), Err(Denial::UnknownKey));
    server.stop().await;
}

#[tokio::test]
async fn stale_if_error_keeps_known_kids_verifying() {
    let server = Server::start().await;
    let clock = clock();
    let known = issuer("known", &clock);
    let stranger = issuer("stranger", &clock);
    server.state.publish(&[&known]);
    let jwks = RemoteJwks::builder()
        .jwks_uri(server.jwks_uri())
        .clock(clock.clone())
        .max_staleness(Duration::from_secs(3600))
        .build()
        .unwrap();
    let v = verifier(&jwks, &clock);
    assert_eq!(check(&v, &known).await, Ok(()));

    for (mode, expect) in [
        (Mode::Error500, "status"),
        (Mode::Garbage, "keys"),
        (Mode::Huge, "too large"),
        (Mode::HugeChunked, "too large"),
    ] {
        server.state.set_mode(mode);
        // Past max-age (120 s): the keys are stale and a refresh is due.
        clock.advance(200);
        let err = jwks.refresh().await.unwrap_err();
        match (&err, expect) {
            (JwksError::Status { status: 500, .. }, "status")
            | (JwksError::Keys(_), "keys")
            | (JwksError::TooLarge(_), "too large") => {}
            _ => panic!("{mode:?}: unexpected {err:?}"),
        }
        assert_eq!(check(&v, &known).await, Ok(()), "{mode:?}");
        clock.advance(11);
        assert_eq!(check(&v, &stranger).await, Err(Denial::UnknownKey), "{mode:?}");
        assert_eq!(check(&v, &known).await, Ok(()), "{mode:?}");
    }

    // The server goes away entirely.
    let uri = server.jwks_uri();
    server.stop().await;
    clock.advance(200);
    assert!(matches!(jwks.refresh().await, Err(JwksError::Http { .. })));
    assert_eq!(check(&v, &known).await, Ok(()));
    assert_eq!(check(&v, &stranger).await, Err(Denial::UnknownKey));

    // Beyond max staleness the last good keys are no longer trusted: fail closed.
    clock.advance(3600);
    assert_eq!(check(&v, &known).await, Err(Denial::KeysUnavailable));
    let _ = uri;
}

#[tokio::test]
async fn verifier_that_never_obtained_keys_answers_503() {
    let server = Server::start().await;
    server.state.set_mode(Mode::Error500);
    let clock = clock();
    let known = issuer("known", &clock);
    let jwks = remote(&server.jwks_uri(), &clock);
    let v = verifier(&jwks, &clock);
    assert_eq!(check(&v, &known).await, Err(Denial::KeysUnavailable));

    // Over HTTP: the API answers 503 without a challenge, with a problem body.
    let app = Router::new()
        .route("/orders", get(|_: Auth| async { "never" }))
        .layer(verify_layer(v.clone()));
    let addr = serve(app).await;
    let token = known.token(AUD, &[]).mint().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(resp.headers()["cache-control"], "no-store");

    // Nothing listening at all.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let jwks = remote(&format!("http://127.0.0.1:{port}/jwks"), &clock);
    assert_eq!(
        check(&verifier(&jwks, &clock), &known).await,
        Err(Denial::KeysUnavailable)
    );
    server.stop().await;
}

#[tokio::test]
async fn rfc8414_discovery_and_issuer_mismatch() {
    let server = Server::start().await;
    let clock = clock();
    let known = issuer("known", &clock);
    server.state.publish(&[&known]);
    let base = server.state.base.clone();
    let discovered = |clock: &ManualClock| {
        RemoteJwks::builder()
            .issuer(base.clone())
            .clock(clock.clone())
            .build()
            .unwrap()
    };

    // RFC 8414 metadata naming the configured issuer.
    *server.state.as_issuer.lock().unwrap() = Some(base.clone());
    let jwks = discovered(&clock);
    assert_eq!(check(&verifier(&jwks, &clock), &known).await, Ok(()));

    // Only OpenID Connect discovery available: the fallback finds the keys.
    *server.state.as_issuer.lock().unwrap() = None;
    *server.state.oidc_issuer.lock().unwrap() = Some(base.clone());
    let jwks = discovered(&clock);
    assert_eq!(check(&verifier(&jwks, &clock), &known).await, Ok(()));

    // RFC 8414 §3.3: a document for another issuer is refused, with no fallback.
    *server.state.as_issuer.lock().unwrap() = Some("https://evil.example".into());
    let jwks = discovered(&clock);
    let hits = server.state.hits();
    assert!(matches!(
        jwks.refresh().await,
        Err(JwksError::IssuerMismatch { found, .. }) if found == "https://evil.example"
    ));
    clock.advance(11);
    assert_eq!(
        check(&verifier(&jwks, &clock), &known).await,
        Err(Denial::KeysUnavailable)
    );
    assert_eq!(server.state.hits(), hits, "the JWKS was never fetched");
    server.stop().await;
}

#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background_per_max_age() {
    let server = Server::start().await;
    let clock = clock();
    let (old, new) = (issuer("key-1", &clock), issuer("key-2", &clock));
    server.state.publish(&[&old]);
    let jwks = remote(&server.jwks_uri(), &clock);
    let v = verifier(&jwks, &clock);
    assert_eq!(check(&v, &old).await, Ok(()));
    let first_fetch = jwks.fetched_at().unwrap();

    // The issuer rotates key-1 out. Within max-age (120 s) nothing is fetched.
    server.state.publish(&[&new]);
    clock.advance(119);
    assert_eq!(check(&v, &old).await, Ok(()));
    assert_eq!(server.state.hits(), 1);

    // Past max-age the read is served from the current keys at once and starts one
    // background refresh.
    clock.advance(2);
    assert_eq!(check(&v, &old).await, Ok(()));
    for _ in 0..1000 {
        if jwks.fetched_at() != Some(first_fetch) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(jwks.fetched_at(), Some(first_fetch + 121));
    assert_eq!(server.state.hits(), 2);
    // The new key verifies without an unknown-kid fetch; the retired one no longer does.
    assert_eq!(check(&v, &new).await, Ok(()));
    assert_eq!(check(&v, &old).await, Err(Denial::UnknownKey));
    assert_eq!(server.state.hits(), 2);
    server.stop().await;
}
