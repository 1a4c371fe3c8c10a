//! Verify on a single-use route with the replay record in memory vs in Redis, side by side.
//!
//! `cargo bench -p zsp-core --features redis --bench replay_store`
//! (Redis from `ZSP_REDIS_URL`, default `redis://127.0.0.1:6379/`; without a Redis answering,
//! only the memory figures are measured.)
//!
//! * `replay_store/first_use`: the store alone, one new id per call.
//! * `verify_single_use/latency`: one full `Verifier::verify` (ES256) at a time on a
//!   current-thread runtime, with the replay record in memory or Redis, without and with a
//!   revocation store of the same kind.
//! * `verify_single_use/concurrent_64`: 64 verifications in flight on a 2-worker runtime, the
//!   throughput a replica sees under load (Redis requests share one multiplexed connection).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use zsp_core::redis::RedisStore;
use zsp_core::testing::TestIssuer;
use zsp_core::{
    MemoryReplayGuard, MemoryRevocation, Policy, ReplayGuard, RequestFacts, Revocation, RouteRule, Verifier,
};

const ISS: &str = "https://broker.bench";
const AUD: &str = "bench-api";
const CONCURRENCY: usize = 64;

fn policy() -> Policy {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .route(RouteRule::post("/pay").all_of(["pay"]).single_use())
        .build()
        .unwrap()
}

/// The stores and verifiers under test, bound to one runtime (a Redis connection's driver task
/// lives on the runtime that opened it).
struct Setup {
    guards: Vec<(&'static str, Arc<dyn ReplayGuard>)>,
    verifiers: Vec<(&'static str, Verifier)>,
}

fn setup(rt: &tokio::runtime::Runtime, url: &str, issuer: &TestIssuer) -> Setup {
    let prefix = format!("zsp-bench:{}:", zsp_core::crypto::random_id::<9>().unwrap());
    // A generous budget: a benchmark measures latency, it must not turn slow samples into errors.
    let redis = rt.block_on(async {
        RedisStore::builder(url)
            .prefix(prefix)
            .budget(Duration::from_secs(1))
            .connect()
            .await
    });
    let redis = match redis {
        Ok(store) => Some(store),
        Err(e) => {
            eprintln!("Redis at {url} not answering ({e}): measuring memory only");
            None
        }
    };
    let memory: Arc<dyn ReplayGuard> = Arc::new(MemoryReplayGuard::default());
    // Each store alone, then with a revocation store of the same kind: for Redis that is ONE
    // round trip (a Lua script checks revocation and records first use together).
    let build = |guard: &Arc<dyn ReplayGuard>, revocation: Option<Arc<dyn Revocation>>| {
        let b = Verifier::builder(policy(), issuer.key_set())
            .replay_guard(guard.clone())
            .audit(false);
        match revocation {
            Some(r) => b.revocation(r).build(),
            None => b.build(),
        }
    };
    let mut verifiers = vec![
        ("memory", build(&memory, None)),
        (
            "memory+revocation",
            build(&memory, Some(Arc::new(MemoryRevocation::default()))),
        ),
    ];
    let mut guards = vec![("memory", memory)];
    if let Some(store) = &redis {
        let guard: Arc<dyn ReplayGuard> = Arc::new(store.replay_guard());
        verifiers.push(("redis", build(&guard, None)));
        verifiers.push((
            "redis+revocation",
            build(&guard, Some(Arc::new(store.revocation()))),
        ));
        guards.push(("redis", guard));
    }
    Setup { guards, verifiers }
}

fn benches(c: &mut Criterion) {
    let url = std::env::var("ZSP_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let issuer = TestIssuer::es256(ISS);
    let mint = || issuer.token(AUD, &["pay"]).mint().unwrap();
    // Latency on a current-thread runtime: the request, the connection's driver and the wake-up
    // share one thread, so the figure is the work plus the round trip, not cross-thread
    // scheduling noise on a busy machine. Throughput on a 2-worker runtime.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let on_single = setup(&single, &url, &issuer);
    let on_multi = setup(&multi, &url, &issuer);

    // Every call is a first use, and no store grows without bound: ids cycle through a window
    // whose records (5 s) have expired by the time the window comes round again (`now` moves
    // 10 s per round for the memory guard; Redis takes far longer than 5 s per round).
    let counter = AtomicU64::new(0);
    let fresh_id = || {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        let now = 1_000 + (i / 500_000) * 10;
        (format!("bench-{}", i % 500_000), now)
    };
    let mut g = c.benchmark_group("replay_store");
    for (name, guard) in &on_single.guards {
        g.bench_function(format!("first_use/{name}"), |b| {
            b.iter_batched(
                fresh_id,
                |(id, now)| assert!(single.block_on(guard.first_use(&id, now, now + 5)).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("verify_single_use");
    // All variants measured back to back per scenario, so they see similar machine load.
    g.throughput(Throughput::Elements(1));
    for (name, v) in &on_single.verifiers {
        g.bench_function(format!("latency/{name}"), |b| {
            b.iter_batched(
                mint,
                |t| {
                    let facts = RequestFacts::new(&Method::POST, "/pay");
                    black_box(single.block_on(v.verify(&t, &facts)).unwrap());
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.throughput(Throughput::Elements(CONCURRENCY as u64));
    for (name, v) in &on_multi.verifiers {
        g.bench_function(format!("concurrent_{CONCURRENCY}/{name}"), |b| {
            b.iter_batched(
                || (0..CONCURRENCY).map(|_| mint()).collect::<Vec<_>>(),
                |tokens| {
                    multi.block_on(async {
                        let mut set = tokio::task::JoinSet::new();
                        for t in tokens {
                            let v = v.clone();
                            set.spawn(async move {
                                let facts = RequestFacts::new(&Method::POST, "/pay");
                                v.verify(&t, &facts).await.is_ok()
                            });
                        }
                        while let Some(ok) = set.join_next().await {
                            assert!(ok.unwrap());
                        }
                    })
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(replay, benches);
criterion_main!(replay);
