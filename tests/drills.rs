//! Failure drills: peers that hang, clocks at the leeway edges, floods of garbage. Every peer is
//! a real server on 127.0.0.1 that the test controls. Timing assertions are generous upper
//! bounds ("finishes within the configured timeout plus slack"), never lower bounds, so a slow
//! CI machine cannot fail them; each wait is itself bounded, so a regression fails instead of
//! hanging the suite.
//!
//! The Redis drill needs feature `redis` (`cargo test --all-features`); it needs no Redis: the
//! "Redis" is a TCP peer that accepts connections and never answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::Method;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use zsp::core::dpop::DpopVerifier;
use zsp::core::jwks::RemoteJwks;
use zsp::core::testing::TestIssuer;
use zsp::core::{
    Clock, Denial, DpopKey, ManualClock, MemoryReplayGuard, MemoryRevocation, Policy, RequestFacts,
    RouteRule, SigningKey, SystemClock, Verifier,
};
use zsp::tower::outbound::{
    AttachLayer, CachedTokenSource, ClientCredentials, FetchError, ReqwestService, TokenEndpoint,
    TokenRequest, TokenSource,
};

const ISS: &str = "https://broker.drill";
const AUD: &str = "orders-api";
/// RemoteJwks's fixed total timeout per fetch (zsp-core jwks.rs, TOTAL_TIMEOUT).
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Scheduling slack on a loaded 2-core machine: an upper bound, never a lower one.
const SLACK: Duration = Duration::from_secs(3);

/// A TCP peer that accepts every connection and then says nothing (or, with `preamble`, reads
/// the request, sends those bytes — a response head and the start of a body — and then says
/// nothing): the worst kind of hung server, since nothing on the peer's side will ever fire.
struct Blackhole {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    async fn start(preamble: &'static [u8]) -> Blackhole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                if !preamble.is_empty() {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 16 * 1024];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(preamble).await;
                }
                // Held open until the test ends: the client must give up on its own.
                held.push(sock);
            }
        });
        Blackhole { addr, accepted, task }
    }
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `fut`, failing the test if it outlives `budget` (and never waiting much longer than
/// that), and returns its output with the elapsed time.
async fn within<T>(budget: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = tokio::time::timeout(budget + Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: still running {budget:?} + 10 s later: hung"));
    let took = start.elapsed();
    assert!(took <= budget, "{what}: took {took:?}, budget {budget:?}");
    (out, took)
}

fn policy() -> Policy {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .route(RouteRule::post("/once").all_of(["orders:write"]).single_use())
        .route(RouteRule::get("/orders").all_of(["orders:read"]))
        .build()
        .unwrap()
}

fn issuer(kid: &str) -> TestIssuer {
    TestIssuer::from_key(ISS, SigningKey::generate_es256(kid).unwrap())
}

async fn verify(v: &Verifier, token: &str) -> Result<zsp::core::Grant, Denial> {
    let m = Method::GET;
    v.verify(token, &RequestFacts::new(&m, "/orders")).await
}

// ---------------------------------------------------------------------------------------------
// JWKS endpoint that hangs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_endpoint_that_hangs_denies_within_the_fetch_timeout_and_coalesces() {
    // Silent, and "sends headers and the start of a body, then stalls": side by side, so the
    // drill costs one fetch timeout, not two.
    let silent = tokio::spawn(jwks_hang_drill(b""));
    let stalled = tokio::spawn(jwks_hang_drill(
        b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n{\"keys\":[",
    ));
    silent.await.unwrap();
    stalled.await.unwrap();
}

async fn jwks_hang_drill(preamble: &'static [u8]) {
    let hole = Blackhole::start(preamble).await;
    let jwks = RemoteJwks::builder().jwks_uri(hole.url("/jwks")).build().unwrap();
    let v = Verifier::builder(policy(), Arc::new(jwks)).audit(false).build();
    let token = issuer("k1").token(AUD, &["orders:read"]).mint().unwrap();

    // 32 concurrent requests against a verifier that has never had keys: all of them wait
    // for the same fetch, and all of them are denied (fail closed) when it times out.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let v = v.clone();
            let t = token.clone();
            tokio::spawn(async move { verify(&v, &t).await })
        })
        .collect();
    let (results, _) = within(JWKS_TIMEOUT + SLACK, "requests behind a hung JWKS", async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
    .await;
    for r in results {
        let d = r.unwrap_err();
        assert!(
            matches!(d, Denial::KeysUnavailable | Denial::UnknownKey),
            "hung JWKS must deny, got {d:?}"
        );
        assert!(d.status().as_u16() >= 401);
    }
    assert!(
        hole.accepted() <= 1,
        "fetches not coalesced: {} connections",
        hole.accepted()
    );
}

#[derive(Clone)]
struct JwksPeer {
    doc: Arc<Mutex<Value>>,
    hang: Arc<AtomicBool>,
    hung_requests: Arc<AtomicUsize>,
}

async fn jwks_doc(State(p): State<JwksPeer>) -> Response {
    if p.hang.load(Ordering::SeqCst) {
        p.hung_requests.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    axum::Json(p.doc.lock().unwrap().clone()).into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_known_kids_never_wait_on_a_hung_refetch() {
    let known = issuer("known");
    let rotated = issuer("rotated-in");
    let peer = JwksPeer {
        doc: Arc::new(Mutex::new(json!({ "keys": [known.key().public_jwk()] }))),
        hang: Arc::default(),
        hung_requests: Arc::default(),
    };
    let base = serve(
        Router::new()
            .route("/jwks", get(jwks_doc))
            .with_state(peer.clone()),
    )
    .await;
    // The key source has its own clock, so the unknown-kid cooldown can be stepped past
    // without sleeping; tokens and the verifier use the system clock.
    let jwks_clock = ManualClock::new(SystemClock.now());
    let jwks = RemoteJwks::builder()
        .jwks_uri(format!("{base}/jwks"))
        .clock(jwks_clock.clone())
        .build()
        .unwrap();
    let v = Verifier::builder(policy(), Arc::new(jwks)).audit(false).build();
    let good = known.token(AUD, &["orders:read"]).mint().unwrap();
    verify(&v, &good).await.expect("keys fetched once");
    jwks_clock.advance(11);

    // The endpoint now hangs; a token with an unknown kid starts a refetch that cannot finish.
    peer.hang.store(true, Ordering::SeqCst);
    let unknown = rotated.token(AUD, &["orders:read"]).mint().unwrap();
    let stuck = {
        let v = v.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            (verify(&v, &unknown).await, start.elapsed())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.hung_requests.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the refetch never reached the JWKS endpoint"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // While that fetch hangs, requests whose kid is known are served from the current keys.
    for i in 0..200 {
        let t = known
            .token(AUD, &["orders:read"])
            .subject(&format!("s{i}"))
            .mint()
            .unwrap();
        let (r, _) = within(
            Duration::from_secs(1),
            "known-kid request during a hung refetch",
            verify(&v, &t),
        )
        .await;
        r.expect("known kid verifies while a refetch hangs");
    }
    assert!(!stuck.is_finished(), "the refetch should still be hanging");

    // The unknown-kid request itself is denied within the fetch timeout.
    let (r, took) = within(JWKS_TIMEOUT + SLACK, "unknown-kid request", async {
        stuck.await.unwrap()
    })
    .await;
    assert_eq!(r.0.unwrap_err(), Denial::UnknownKey);
    assert!(
        r.1 <= JWKS_TIMEOUT + SLACK,
        "unknown-kid request took {:?} ({took:?})",
        r.1
    );
}

// ---------------------------------------------------------------------------------------------
// Token endpoint that hangs.

const TOKEN_TIMEOUT: Duration = Duration::from_millis(500);

fn hung_endpoint(hole: &Blackhole) -> ClientCredentials {
    ClientCredentials::new(
        TokenEndpoint::builder()
            .token_endpoint(hole.url("/token"))
            .client_id("frontend")
            .client_secret_basic("frontend-secret-0123456789abcdef0123456789abcdef")
            .timeout(TOKEN_TIMEOUT)
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_that_hangs_times_out_within_the_configured_timeout() {
    for preamble in [&b""[..], b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 999\r\n\r\n{\"access_token\":\""] {
        let hole = Blackhole::start(preamble).await;
        let request = TokenRequest::new("orders-api").scopes(["orders:read"]);

        // The source on its own.
        let source = hung_endpoint(&hole);
        let (r, _) = within(TOKEN_TIMEOUT + SLACK, "ClientCredentials::token", source.token(&request)).await;
        assert_eq!(r.unwrap_err(), FetchError::Timeout);

        // Behind the cache: concurrent callers share the fetch and all get the timeout.
        let cache = CachedTokenSource::builder(hung_endpoint(&hole)).build();
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let c = cache.clone();
                let r = request.clone();
                tokio::spawn(async move { c.token(&r).await })
            })
            .collect();
        let (results, _) = within(TOKEN_TIMEOUT + SLACK, "CachedTokenSource under a hung broker", async {
            let mut out = Vec::new();
            for c in calls {
                out.push(c.await.unwrap());
            }
            out
        })
        .await;
        assert!(results.iter().all(Result::is_err), "a hung broker produced a token");

        // Through AttachLayer: the request fails with the fetch error, and the API never sees
        // a request without a token (fail closed, not "send it anonymously").
        let api_hits = Arc::new(AtomicUsize::new(0));
        let hits = api_hits.clone();
        let api = serve(Router::new().route(
            "/orders",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        ))
        .await;
        let svc = ServiceBuilder::new()
            .layer(AttachLayer::new(
                CachedTokenSource::builder(hung_endpoint(&hole)).build(),
                request.clone(),
            ))
            .service(ReqwestService::new(reqwest::Client::new()));
        let req = http::Request::get(format!("{api}/orders"))
            .body(reqwest::Body::from(""))
            .unwrap();
        let (r, _) = within(TOKEN_TIMEOUT + SLACK, "AttachLayer under a hung broker", svc.oneshot(req)).await;
        let err = r.expect_err("no token, no request");
        assert!(!format!("{err}").is_empty());
        assert_eq!(api_hits.load(Ordering::SeqCst), 0, "request sent without a token");
    }
}

// ---------------------------------------------------------------------------------------------
// Clock skew at the leeway edges.

#[tokio::test]
async fn clock_skew_at_the_leeway_edges_is_decided_exactly() {
    const T: u64 = 1_800_000_000;
    let clock = ManualClock::new(T);
    let iss = issuer("skew").with_clock(clock.clone());
    let v = Verifier::builder(policy(), iss.key_set())
        .clock(clock.clone())
        .audit(false)
        .build();
    let leeway = v.policy().leeway_secs();
    assert_eq!(leeway, 10, "default leeway");
    // One token, iat = T, exp = T + 60, nbf = T; the verifier's clock is what moves.
    let token = iss
        .token(AUD, &["orders:read"])
        .issued_at(T)
        .not_before(T)
        .ttl_secs(60)
        .mint()
        .unwrap();
    let cases: [(u64, Result<(), Denial>); 6] = [
        // Verifier clock behind the issuer's: iat and nbf may be up to `leeway` in the future.
        (T - leeway, Ok(())),
        (T - leeway - 1, Err(Denial::NotYetValid)),
        (T, Ok(())),
        // Verifier clock ahead: valid while now < exp + leeway.
        (T + 60 + leeway - 1, Ok(())),
        (T + 60 + leeway, Err(Denial::Expired)),
        (u64::MAX, Err(Denial::Expired)),
    ];
    for (now, want) in cases {
        clock.set(now);
        let got = verify(&v, &token).await.map(|_| ());
        match (&got, &want) {
            (Ok(()), Ok(())) => {}
            (Err(g), Err(w)) => {
                // nbf and iat both guard the future edge; either denial is the right answer.
                let future_edge = matches!(w, Denial::NotYetValid)
                    && matches!(g, Denial::NotYetValid | Denial::IssuedInFuture);
                assert!(
                    g == w || future_edge,
                    "now = T{:+}: got {g:?}, want {w:?}",
                    now as i128 - T as i128
                );
            }
            _ => panic!("now = T{:+}: got {got:?}, want {want:?}", now as i128 - T as i128),
        }
    }

    // Without nbf, iat alone decides the future edge.
    clock.set(T);
    let future = iss
        .token(AUD, &["orders:read"])
        .issued_at(T + leeway)
        .ttl_secs(60)
        .mint()
        .unwrap();
    assert!(
        verify(&v, &future).await.is_ok(),
        "iat = now + leeway is inside the leeway"
    );
    let too_far = iss
        .token(AUD, &["orders:read"])
        .issued_at(T + leeway + 1)
        .ttl_secs(60)
        .mint()
        .unwrap();
    assert_eq!(verify(&v, &too_far).await.unwrap_err(), Denial::IssuedInFuture);

    // A single-use token at its last valid second is accepted once, and its replay is refused
    // even though the clock has not moved (the record outlives exp + leeway).
    let guard = Arc::new(MemoryReplayGuard::new(100));
    let sv = Verifier::builder(policy(), iss.key_set())
        .clock(clock.clone())
        .replay_guard(guard.clone())
        .audit(false)
        .build();
    let once = iss
        .token(AUD, &["orders:write"])
        .issued_at(T)
        .ttl_secs(60)
        .mint()
        .unwrap();
    clock.set(T + 60 + leeway - 1);
    let m = Method::POST;
    let facts = RequestFacts::new(&m, "/once");
    sv.verify(&once, &facts).await.expect("last valid second");
    assert_eq!(sv.verify(&once, &facts).await.unwrap_err(), Denial::Replayed);
    assert_eq!(guard.len(), 1);
}

#[tokio::test]
async fn dpop_proof_iat_at_the_window_edges() {
    const T: u64 = 1_800_000_000;
    let window = 60;
    let dpop = DpopVerifier::builder()
        .iat_window(Duration::from_secs(window))
        .build()
        .unwrap();
    let key = DpopKey::generate().unwrap();
    let url = "https://api.drill/orders";
    for (iat, ok) in [
        (T - window, true),
        (T - window - 1, false),
        (T + window, true),
        (T + window + 1, false),
    ] {
        let proof = key.proof_at(&Method::GET, url, None, None, iat).unwrap();
        let r = dpop
            .verify(&[proof.as_str()], &Method::GET, url, None, None, T)
            .await;
        assert_eq!(r.is_ok(), ok, "proof iat = T{:+}: {r:?}", iat as i128 - T as i128);
    }
}

// ---------------------------------------------------------------------------------------------
// A burst of garbage.

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_distinct_garbage_tokens_record_nothing_and_fetch_at_most_once() {
    let clock = ManualClock::new(SystemClock.now());
    let trusted = issuer("trusted").with_clock(clock.clone());
    let peer = JwksPeer {
        doc: Arc::new(Mutex::new(json!({ "keys": [trusted.key().public_jwk()] }))),
        hang: Arc::default(),
        hung_requests: Arc::default(),
    };
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let router = Router::new()
        .route("/jwks", get(jwks_doc))
        .with_state(peer)
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { next.run(req).await }
            },
        ));
    let base = serve(router).await;
    let jwks = Arc::new(
        RemoteJwks::builder()
            .jwks_uri(format!("{base}/jwks"))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let guard = Arc::new(MemoryReplayGuard::new(1_000_000));
    let revocation = Arc::new(MemoryRevocation::default());
    let v = Verifier::builder(policy(), jwks.clone())
        .clock(clock.clone())
        .replay_guard(guard.clone())
        .revocation(revocation.clone())
        .audit(false)
        .build();
    // Keys fetched once, up front, with a valid single-use token on another route (GET /orders
    // is not single-use, so nothing is recorded).
    let ok = trusted.token(AUD, &["orders:read"]).mint().unwrap();
    verify(&v, &ok).await.unwrap();
    let fetches_before = fetches.load(Ordering::SeqCst);
    assert_eq!(fetches_before, 1);

    let untrusted = SigningKey::generate_es256("trusted").unwrap(); // same kid, other key
    let now = clock.now();
    let rss_before = rss_kib();
    let m = Method::POST;
    let facts = RequestFacts::new(&m, "/once");
    let mut denials = std::collections::HashMap::<String, usize>::new();
    for i in 0..10_000u32 {
        let jti = format!("garbage-{i}");
        let token = match i % 8 {
            // Random-looking bytes.
            0 => format!("{i:x}{}", "x".repeat((i % 300) as usize)),
            // JWS-shaped, undecodable.
            1 => format!("eyJ{i}.eyJ{i}.{i}"),
            // Valid shape, unknown kid (would trigger a refetch; the cooldown must hold).
            2 => zsp::core::testing::sign_raw_with(
                &SigningKey::generate_ed25519(&format!("kid-{i}")).unwrap(),
                &json!({"alg": "EdDSA", "kid": format!("kid-{i}")}),
                &json!({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 60, "jti": jti, "scope": "orders:write"}),
            ),
            // Known kid, wrong key: signature fails.
            3 => zsp::core::testing::sign_raw_with(
                &untrusted,
                &json!({"alg": "ES256", "kid": "trusted"}),
                &json!({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 60, "jti": jti, "scope": "orders:write"}),
            ),
            // Trusted signature, but expired / wrong audience / missing scope / standing.
            4 => trusted
                .token(AUD, &["orders:write"])
                .issued_at(now - 200)
                .ttl_secs(60)
                .mint()
                .unwrap(),
            5 => trusted.token("other-api", &["orders:write"]).mint().unwrap(),
            6 => trusted.token(AUD, &["orders:read"]).mint().unwrap(),
            _ => trusted
                .token(AUD, &["orders:write"])
                .ttl_secs(3600)
                .mint()
                .unwrap(),
        };
        let d = v
            .verify(&token, &facts)
            .await
            .expect_err("garbage must be denied");
        *denials.entry(format!("{d:?}")).or_default() += 1;
    }
    assert_eq!(guard.len(), 0, "rejected tokens recorded jtis: {denials:?}");
    assert!(guard.is_empty());
    // Distinct unknown kids share at most one refetch per cooldown (the clock does not move).
    let extra = fetches.load(Ordering::SeqCst) - fetches_before;
    assert!(extra <= 1, "{extra} JWKS refetches for 1,250 unknown kids");
    // Memory: nothing per-token is retained. RSS is process-wide and other tests run in
    // parallel, so the bound is generous; a per-token leak of even 10 KiB would exceed it.
    if let (Some(before), Some(after)) = (rss_before, rss_kib()) {
        let grown = after.saturating_sub(before);
        assert!(
            grown < 96 * 1024,
            "RSS grew by {grown} KiB over 10,000 rejected tokens"
        );
    }
    // The one legitimate single-use token after the flood is still accepted exactly once.
    let once = trusted.token(AUD, &["orders:write"]).mint().unwrap();
    v.verify(&once, &facts)
        .await
        .expect("flood left the verifier working");
    assert_eq!(guard.len(), 1);
    assert!(
        denials.len() >= 5,
        "the flood should exercise many denial paths: {denials:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Redis that hangs.

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_hangs_fails_closed_within_the_budget() {
    use zsp::core::redis::RedisStore;

    const BUDGET: Duration = Duration::from_millis(100);
    // Silent, and "answers half a reply then stalls" (a bulk string that never completes).
    for preamble in [&b""[..], b"$100\r\npartial"] {
        let hole = Blackhole::start(preamble).await;
        let store = RedisStore::builder(format!("redis://{}/", hole.addr))
            .prefix("drill:")
            .budget(BUDGET)
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let iss = issuer("redis-drill");
        let v = Verifier::builder(policy(), iss.key_set())
            .replay_guard(Arc::new(store.replay_guard()))
            .revocation(Arc::new(store.revocation()))
            .audit(false)
            .build();

        // 50 concurrent single-use requests and 50 ordinary ones (revocation check): every one
        // is denied 503 within the budget (plus slack), none is allowed.
        let mut tasks = Vec::new();
        for i in 0..100 {
            let v = v.clone();
            let (scope, method, path) = if i % 2 == 0 {
                ("orders:write", Method::POST, "/once")
            } else {
                ("orders:read", Method::GET, "/orders")
            };
            let t = iss.token(AUD, &[scope]).mint().unwrap();
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let r = v.verify(&t, &RequestFacts::new(&method, path)).await.map(|_| ());
                (r, start.elapsed())
            }));
        }
        let (results, _) = within(BUDGET + SLACK, "requests against a hung Redis", async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .await;
        for (r, took) in results {
            let d = r.expect_err("a hung Redis must never allow");
            assert!(matches!(d, Denial::StoreUnavailable(_)), "got {d:?}");
            assert_eq!(d.status().as_u16(), 503);
            assert!(took <= BUDGET + SLACK, "one request took {took:?}");
        }
    }
}
