//! Verify on a single-use route with the replay record in memory vs in Redis, side by side.
//!
//! `cargo bench -p zsp-core --features redis --bench replay_store`
//! (Redis from `ZSP_REDIS_URL`, default `redis://127.0.0.1:6379/`; without a Redis answering,
//! only the memory figures are measured.)
//!
//! * `replay_store/first_use`: the store alone, one new id per call.
//! * `verify_single_use/latency`: one full `Verifier::verify` (ES256) at a time.
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
use zsp_core::{MemoryReplayGuard, Policy, ReplayGuard, RequestFacts, RouteRule, Verifier};

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

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = std::env::var("ZSP_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let prefix = format!("zsp-bench:{}:", zsp_core::crypto::random_id::<9>().unwrap());
    // A generous budget: a benchmark measures latency, it must not turn slow samples into errors.
    let redis = rt.block_on(async {
        RedisStore::builder(&url)
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

    let mut guards: Vec<(&str, Arc<dyn ReplayGuard>)> =
        vec![("memory", Arc::new(MemoryReplayGuard::default()))];
    if let Some(store) = &redis {
        guards.push(("redis", Arc::new(store.replay_guard())));
    }

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
    for (name, guard) in &guards {
        g.bench_function(format!("first_use/{name}"), |b| {
            b.iter_batched(
                fresh_id,
                |(id, now)| assert!(rt.block_on(guard.first_use(&id, now, now + 5)).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let issuer = TestIssuer::es256(ISS);
    let verifiers: Vec<(&str, Verifier)> = guards
        .iter()
        .map(|(name, guard)| {
            let v = Verifier::builder(policy(), issuer.key_set())
                .replay_guard(guard.clone())
                .audit(false)
                .build();
            (*name, v)
        })
        .collect();
    let mint = || issuer.token(AUD, &["pay"]).mint().unwrap();

    let mut g = c.benchmark_group("verify_single_use");
    // Memory and Redis measured back to back per scenario, so both see the same machine load.
    g.throughput(Throughput::Elements(1));
    for (name, v) in &verifiers {
        g.bench_function(format!("latency/{name}"), |b| {
            b.iter_batched(
                mint,
                |t| {
                    let facts = RequestFacts::new(&Method::POST, "/pay");
                    black_box(rt.block_on(v.verify(&t, &facts)).unwrap());
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.throughput(Throughput::Elements(CONCURRENCY as u64));
    for (name, v) in &verifiers {
        g.bench_function(format!("concurrent_{CONCURRENCY}/{name}"), |b| {
            b.iter_batched(
                || (0..CONCURRENCY).map(|_| mint()).collect::<Vec<_>>(),
                |tokens| {
                    rt.block_on(async {
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
