//! Many replicas, one truth: replay and revocation shared through a real Redis.
//!
//! These tests need Redis: `ZSP_REDIS_URL` (e.g. `redis://127.0.0.1:6379/`) and, for the
//! outage test, a `redis-server` binary on `PATH` (or in `ZSP_REDIS_SERVER`). Without
//! `ZSP_REDIS_URL` each test says it was skipped and passes. Every run uses its own random key
//! prefix, so runs sharing one Redis never see each other's records.
#![cfg(feature = "redis")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use zsp_core::redis::{RedisStore, RedisStoreError};
use zsp_core::testing::TestIssuer;
use zsp_core::{Denial, Policy, ReplayGuard, RequestFacts, RouteRule, Verifier};

const ISS: &str = "https://broker.test";
const AUD: &str = "payments-api";

fn redis_url() -> Option<String> {
    match std::env::var("ZSP_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr, past the test harness's capture, so the skip is visible.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipped: ZSP_REDIS_URL not set\n");
            None
        }
    }
}

fn unique_prefix() -> String {
    format!("zsp-test:{}:", zsp_core::crypto::random_id::<9>().unwrap())
}

fn policy() -> Policy {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .route(RouteRule::post("/payments").all_of(["pay"]).single_use())
        .route(RouteRule::get("/payments").all_of(["read"]))
        .build()
        .unwrap()
}

fn replica(issuer: &TestIssuer, store: &RedisStore, with_revocation: bool) -> Verifier {
    let b = Verifier::builder(policy(), issuer.key_set())
        .replay_guard(Arc::new(store.replay_guard()))
        .audit(false);
    if with_revocation {
        b.revocation(Arc::new(store.revocation())).build()
    } else {
        b.build()
    }
}

fn pay<'a>() -> RequestFacts<'a> {
    RequestFacts::new(&Method::POST, "/payments")
}

fn read<'a>() -> RequestFacts<'a> {
    RequestFacts::new(&Method::GET, "/payments")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_accept_a_single_use_token_exactly_once_across_200_concurrent_submissions() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    // Each replica has its own store and connection, as separate processes would. The budget
    // is generous because this test checks the decision, not latency: 200 signature checks on
    // a shared 2-core runner can delay a reply past 50 ms, which would turn a replay into a
    // (correct, fail-closed) 503 and blur what is being counted.
    let store = |url: &str| {
        RedisStore::builder(url)
            .prefix(&prefix)
            .budget(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (store_a, store_b) = (store(&url), store(&url));
    let issuer = TestIssuer::es256(ISS);
    // Replica A checks revocation too, so it decides both in one script; replica B only has
    // the replay guard (SET NX). Both paths must share one record.
    let a = replica(&issuer, &store_a, true);
    let b = replica(&issuer, &store_b, false);
    let token: Arc<str> = issuer.token(AUD, &["pay"]).mint().unwrap().into();

    let start = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::with_capacity(200);
    for i in 0..200 {
        let v = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (token, start) = (token.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            v.verify(&token, &pay()).await.map(|_| i % 2)
        }));
    }
    let (mut accepted, mut replayed, mut other) = (Vec::new(), 0, Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(replica) => accepted.push(replica),
            Err(Denial::Replayed) => replayed += 1,
            Err(d) => other.push(d),
        }
    }
    assert_eq!(
        accepted.len(),
        1,
        "accepted by replicas {accepted:?}; other denials {other:?}"
    );
    assert_eq!(replayed, 199, "other denials: {other:?}");

    // One record, under the prefix, keyed by a hash: the raw jti is nowhere in Redis's keys.
    let jti = single_jti(&token);
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, vec![store_a.replay_key(&jti)]);
    assert!(!keys[0].contains(&jti));
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    // Recorded until exp + leeway (60 s + 10 s), never without expiry.
    assert!(ttl_ms > 0 && ttl_ms <= 70_000, "{ttl_ms}");
}

fn single_jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&zsp_core::b64::decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_revoked_through_replica_a_is_refused_by_replica_b() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    // Revocation semantics, not latency: a budget a loaded CI machine cannot exceed by accident.
    let connect = |url: &str| {
        RedisStore::builder(url)
            .prefix(&prefix)
            .budget(Duration::from_secs(2))
            .connect()
    };
    let store_a = connect(&url).await.unwrap();
    let store_b = connect(&url).await.unwrap();
    let issuer = TestIssuer::es256(ISS);
    let a = replica(&issuer, &store_a, true);
    let b = replica(&issuer, &store_b, true);
    let revoke_via_a = a.revocation().unwrap().clone();

    // One jti.
    let token = issuer.token(AUD, &["read"]).subject("svc-1").mint().unwrap();
    let grant = b.verify(&token, &read()).await.unwrap();
    let (jti, exp) = (grant.jti().unwrap().to_owned(), grant.expires_at());
    revoke_via_a.revoke_jti(&jti, exp + 10).await.unwrap();
    assert_eq!(b.verify(&token, &read()).await.unwrap_err(), Denial::Revoked);
    assert_eq!(a.verify(&token, &read()).await.unwrap_err(), Denial::Revoked);
    // Another token of the same subject is untouched.
    let sibling = issuer.token(AUD, &["read"]).subject("svc-1").mint().unwrap();
    b.verify(&sibling, &read()).await.unwrap();

    // A subject: every token issued at or before the cut-off, on every replica.
    let now = a.now();
    let old = issuer
        .token(AUD, &["read"])
        .subject("svc-2")
        .issued_at(now - 5)
        .mint()
        .unwrap();
    let other_subject = issuer
        .token(AUD, &["read"])
        .subject("svc-3")
        .issued_at(now - 5)
        .mint()
        .unwrap();
    b.verify(&old, &read()).await.unwrap();
    revoke_via_a.revoke_subject_before("svc-2", now).await.unwrap();
    assert_eq!(b.verify(&old, &read()).await.unwrap_err(), Denial::Revoked);
    b.verify(&other_subject, &read()).await.unwrap();
    // An earlier cut-off written later never shortens the revocation.
    revoke_via_a
        .revoke_subject_before("svc-2", now - 100)
        .await
        .unwrap();
    assert_eq!(b.verify(&old, &read()).await.unwrap_err(), Denial::Revoked);
    // A token issued after the cut-off is accepted.
    let fresh = issuer
        .token(AUD, &["read"])
        .subject("svc-2")
        .issued_at(now + 1)
        .mint()
        .unwrap();
    b.verify(&fresh, &read()).await.unwrap();

    // A client, the same way.
    let client_token = issuer
        .token(AUD, &["pay"])
        .client_id("client-7")
        .issued_at(now - 5)
        .mint()
        .unwrap();
    revoke_via_a.revoke_client_before("client-7", now).await.unwrap();
    assert_eq!(
        b.verify(&client_token, &pay()).await.unwrap_err(),
        Denial::Revoked
    );

    // Single-use routes decide revocation and replay in one script: a revoked single-use token
    // is refused as revoked, and the refusal does not burn its jti.
    let single = issuer.token(AUD, &["pay"]).subject("svc-4").mint().unwrap();
    let jti = single_jti(&single);
    revoke_via_a.revoke_jti(&jti, now + 100).await.unwrap();
    assert_eq!(b.verify(&single, &pay()).await.unwrap_err(), Denial::Revoked);
    assert_eq!(
        store_b.replay_guard().first_use(&jti, now, now + 100).await,
        Ok(true)
    );
    let single = issuer.token(AUD, &["pay"]).subject("svc-4").mint().unwrap();
    b.verify(&single, &pay()).await.unwrap();
    assert_eq!(a.verify(&single, &pay()).await.unwrap_err(), Denial::Replayed);
}

/// A `redis-server` this test owns, on its own port; killed when dropped, even on panic.
struct OwnedRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnedRedis {
    fn start(port: u16) -> Self {
        let bin = std::env::var("ZSP_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Self {
            child: Some(child),
            port,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Waits (bounded) until the server answers a PING.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match RedisStore::builder(self.url()).connect().await {
                Ok(_) => return,
                Err(RedisStoreError::Unreachable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("redis-server on {} never answered: {e}", self.port),
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnedRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A budget for the tests that run their own redis-server: large enough that a loaded CI
/// machine does not turn a healthy answer into a 503, small enough that the outage checks
/// (each of which waits out the budget) stay quick. The 50 ms default is exercised by the
/// unit tests in `src/redis.rs`.
const OUTAGE_TEST_BUDGET: Duration = Duration::from_millis(250);

/// Verifies fresh tokens until one is accepted (bounded): the first use of a lazily built
/// store, or the first after an outage, may still be waiting for its connection.
async fn until_accepted(v: &Verifier, mint: impl Fn() -> String, facts: &RequestFacts<'_>) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = mint();
        match v.verify(&t, facts).await {
            Ok(_) => return t,
            Err(Denial::StoreUnavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(d) => panic!("verifier did not accept a fresh token: {d:?}"),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_with_503_and_the_same_verifier_recovers_when_it_returns() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let mut server = OwnedRedis::start(port);
    server.wait_ready().await;

    // Built once, lazily; never rebuilt below.
    let store = RedisStore::builder(server.url())
        .prefix(unique_prefix())
        .budget(OUTAGE_TEST_BUDGET)
        .build()
        .unwrap();
    let issuer = TestIssuer::es256(ISS);
    let replay_only = replica(&issuer, &store, false);
    let with_revocation = replica(&issuer, &store, true);
    let single_use = || issuer.token(AUD, &["pay"]).mint().unwrap();
    let reader = || issuer.token(AUD, &["read"]).mint().unwrap();

    let t = until_accepted(&replay_only, single_use, &pay()).await;
    assert_eq!(
        replay_only.verify(&t, &pay()).await.unwrap_err(),
        Denial::Replayed
    );
    with_revocation.verify(&reader(), &read()).await.unwrap();

    server.kill();
    for _ in 0..3 {
        let d = replay_only.verify(&single_use(), &pay()).await.unwrap_err();
        assert_eq!(d, Denial::StoreUnavailable("replay"));
        assert_eq!(d.status(), StatusCode::SERVICE_UNAVAILABLE);
        let d = with_revocation.verify(&reader(), &read()).await.unwrap_err();
        assert_eq!(d, Denial::StoreUnavailable("revocation"));
        assert_eq!(d.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // Fail-open revocation is an explicit choice: then only the replay check denies.
    let fail_open = Verifier::builder(policy(), issuer.key_set())
        .replay_guard(Arc::new(store.replay_guard()))
        .revocation(Arc::new(store.revocation().fail_open(true)))
        .audit(false)
        .build();
    fail_open.verify(&reader(), &read()).await.unwrap();
    assert_eq!(
        fail_open.verify(&single_use(), &pay()).await.unwrap_err(),
        Denial::StoreUnavailable("replay")
    );

    let server = OwnedRedis::start(port);
    server.wait_ready().await;
    // The same verifiers recover once the connection manager has reconnected (backoff capped
    // at 1 s by default); bounded wait, fresh token per attempt.
    let recovered = until_accepted(&replay_only, single_use, &pay()).await;
    assert_eq!(
        replay_only.verify(&recovered, &pay()).await.unwrap_err(),
        Denial::Replayed
    );
    with_revocation.verify(&reader(), &read()).await.unwrap();
    drop(server);
}

fn signal(server: &OwnedRedis, sig: &str) {
    let pid = server.child.as_ref().map(Child::id).unwrap();
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slower_than_the_budget_answers_503_then_recovers_without_a_rebuild() {
    if redis_url().is_none() {
        return;
    }
    let server = OwnedRedis::start(free_port());
    server.wait_ready().await;
    let store = RedisStore::builder(server.url())
        .prefix(unique_prefix())
        .budget(OUTAGE_TEST_BUDGET)
        .build()
        .unwrap();
    let issuer = TestIssuer::es256(ISS);
    let v = replica(&issuer, &store, true);
    let single_use = || issuer.token(AUD, &["pay"]).mint().unwrap();
    until_accepted(&v, single_use, &pay()).await;

    // A stopped process keeps its socket open but never answers: the slow-Redis case, which
    // only the budget can catch.
    signal(&server, "-STOP");
    let stalled = single_use();
    for t in [&stalled, &single_use()] {
        assert_eq!(
            v.verify(t, &pay()).await.unwrap_err(),
            Denial::StoreUnavailable("revocation")
        );
    }
    let replay_only = replica(&issuer, &store, false);
    assert_eq!(
        replay_only.verify(&stalled, &pay()).await.unwrap_err(),
        Denial::StoreUnavailable("replay")
    );
    signal(&server, "-CONT");
    until_accepted(&v, single_use, &pay()).await;
}
