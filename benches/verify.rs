//! Criterion benches for the verify hot path (issue "Benchmarks"):
//! (a) zsp `Verifier::verify` vs `jsonwebtoken::decode` vs the raw aws-lc-rs signature check on
//!     a pre-parsed key, same token, for ES256, EdDSA, RS256 and HS256;
//! (b) the cost of each denial path;
//! (c) `MemoryReplayGuard` first use at 1 and 2 threads;
//! (e) broker-style issuance (mint) for ES256 and EdDSA;
//! and one DPoP proof verified (a fresh proof each time), ES256 and EdDSA.
//!
//! `cargo bench --bench verify` (add `-- --warm-up-time 1 --measurement-time 3` for a quick run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self as sig, KeyPair as _, ParsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::Method;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use zsp::core::testing::TestIssuer;
use zsp::core::{
    KeySet, MemoryReplayGuard, MintRequest, Minter, Policy, RequestFacts, RouteRule, SigningKey, Verifier,
    VerifyingKey,
};

const ISS: &str = "https://bench.issuer";
const AUD: &str = "bench-api";

fn b64(b: &[u8]) -> String {
    zsp::core::b64::encode(b)
}

fn policy(alg: Algorithm) -> Policy {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([alg])
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .route(RouteRule::post("/orders").all_of(["orders:read"]).single_use())
        .build()
        .unwrap()
}

struct Case {
    name: &'static str,
    token: String,
    verifier: Verifier,
    keys: KeySet,
    jwt_key: DecodingKey,
    raw_key: Option<ParsedPublicKey>,
    hmac_key: Option<aws_lc_rs::hmac::Key>,
    alg: Algorithm,
}

fn claims(now: u64) -> serde_json::Value {
    json!({"iss": ISS, "aud": AUD, "sub": "svc-bench", "client_id": "bench", "iat": now, "exp": now + 120,
           "jti": "bench-jti-0001", "scope": "orders:read orders:list"})
}

fn now() -> u64 {
    zsp::core::Clock::now(&zsp::core::SystemClock)
}

fn ec_case(name: &'static str, issuer: TestIssuer, alg: Algorithm) -> Case {
    let token = issuer
        .token(AUD, &["orders:read", "orders:list"])
        .ttl_secs(120)
        .mint()
        .unwrap();
    let jwk = issuer.key().public_jwk().clone();
    let (jwt_key, raw_key) = if alg == Algorithm::ES256 {
        let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
        let mut point = vec![4u8];
        point.extend(zsp::core::b64::decode(x).unwrap());
        point.extend(zsp::core::b64::decode(y).unwrap());
        (
            DecodingKey::from_ec_components(x, y).unwrap(),
            ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).unwrap(),
        )
    } else {
        let x = jwk["x"].as_str().unwrap();
        (
            DecodingKey::from_ed_components(x).unwrap(),
            ParsedPublicKey::new(&sig::ED25519, zsp::core::b64::decode(x).unwrap()).unwrap(),
        )
    };
    let verifier = Verifier::builder(policy(alg), issuer.key_set())
        .signature_cache(0)
        .build();
    Case {
        name,
        token,
        verifier,
        keys: issuer.key_set(),
        jwt_key,
        raw_key: Some(raw_key),
        hmac_key: None,
        alg,
    }
}

fn rsa_case() -> Case {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pk = kp.public_key();
    let n = b64(pk.modulus().big_endian_without_leading_zero());
    let e = b64(pk.exponent().big_endian_without_leading_zero());
    let doc = json!({"keys": [{"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": n, "e": e}]});
    let keys = KeySet::from_jwks(doc.to_string().as_bytes(), None).unwrap();
    let h = json!({"alg": "RS256", "kid": "rsa", "typ": "at+jwt"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims(now()).to_string().as_bytes())
    );
    let mut s = vec![0; kp.public_modulus_len()];
    kp.sign(
        &sig::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut s,
    )
    .unwrap();
    let token = format!("{input}.{}", b64(&s));
    let raw = sig::RsaPublicKeyComponents {
        n: pk.modulus().big_endian_without_leading_zero(),
        e: pk.exponent().big_endian_without_leading_zero(),
    }
    .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
    .unwrap();
    Case {
        name: "RS256",
        token,
        verifier: Verifier::builder(policy(Algorithm::RS256), keys.clone())
            .signature_cache(0)
            .build(),
        keys,
        jwt_key: DecodingKey::from_rsa_components(&n, &e).unwrap(),
        raw_key: Some(raw),
        hmac_key: None,
        alg: Algorithm::RS256,
    }
}

fn hmac_case() -> Case {
    let secret = [42u8; 32];
    let keys = KeySet::from_keys([VerifyingKey::hmac(Some("h"), Algorithm::HS256, &secret).unwrap()]);
    let h = json!({"alg": "HS256", "kid": "h", "typ": "at+jwt"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims(now()).to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let token = format!(
        "{input}.{}",
        b64(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref())
    );
    Case {
        name: "HS256",
        token,
        verifier: Verifier::builder(policy(Algorithm::HS256), keys.clone())
            .signature_cache(0)
            .build(),
        keys,
        jwt_key: DecodingKey::from_secret(&secret),
        raw_key: None,
        hmac_key: Some(key),
        alg: Algorithm::HS256,
    }
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct JwtClaims {
    iss: String,
    aud: String,
    sub: String,
    exp: u64,
    iat: u64,
    scope: String,
}

fn verify_vs_floor(c: &mut Criterion) {
    zsp::core::crypto::ensure_provider();
    let cases = [
        ec_case("ES256", TestIssuer::es256(ISS), Algorithm::ES256),
        ec_case("EdDSA", TestIssuer::ed25519(ISS), Algorithm::EdDSA),
        rsa_case(),
        hmac_case(),
    ];
    let m = Method::GET;
    let facts = RequestFacts::new(&m, "/orders/42");
    let mut g = c.benchmark_group("verify");
    for case in &cases {
        let (input, s) = case.token.rsplit_once('.').unwrap();
        let signature = zsp::core::b64::decode(s).unwrap();
        if let Some(k) = &case.raw_key {
            g.bench_function(format!("{}/raw_signature", case.name), |b| {
                b.iter(|| {
                    k.verify_sig(black_box(input.as_bytes()), black_box(&signature))
                        .unwrap()
                })
            });
        }
        if let Some(k) = &case.hmac_key {
            g.bench_function(format!("{}/raw_signature", case.name), |b| {
                b.iter(|| {
                    aws_lc_rs::hmac::verify(k, black_box(input.as_bytes()), black_box(&signature)).unwrap()
                })
            });
        }
        let mut validation = Validation::new(case.alg);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        g.bench_function(format!("{}/jsonwebtoken_decode", case.name), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<JwtClaims>(black_box(&case.token), &case.jwt_key, &validation).unwrap()
            })
        });
        g.bench_function(format!("{}/zsp_verify", case.name), |b| {
            b.iter(|| {
                case.verifier
                    .verify(black_box(&case.token), &facts)
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
        });
        let cached = Verifier::builder(case.verifier.policy().clone(), case.keys.clone())
            .signature_cache(10_000)
            .build();
        g.bench_function(format!("{}/zsp_verify_signature_cached", case.name), |b| {
            b.iter(|| {
                cached
                    .verify(black_box(&case.token), &facts)
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn denials(c: &mut Criterion) {
    let issuer = TestIssuer::es256(ISS);
    let verifier = Verifier::builder(policy(Algorithm::ES256), issuer.key_set())
        .signature_cache(0)
        .build();
    let m = Method::GET;
    let facts = RequestFacts::new(&m, "/orders/42");
    let good = issuer.token(AUD, &["orders:read"]).mint().unwrap();
    let (input, _) = good.rsplit_once('.').unwrap();
    let t = now();
    let cases = [
        ("garbage", "not-a-token-at-all".to_string()),
        ("oversized", "a".repeat(9000)),
        (
            "bad_header",
            format!("eyJub3QganNvbg.{}", good.split('.').nth(1).unwrap()),
        ),
        (
            "unknown_kid",
            issuer.sign_raw(&json!({"alg": "ES256", "kid": "nope"}), &claims(t)),
        ),
        (
            "expired",
            issuer
                .token(AUD, &["orders:read"])
                .issued_at(t - 600)
                .ttl_secs(60)
                .mint()
                .unwrap(),
        ),
        (
            "wrong_audience",
            issuer.token("other-api", &["orders:read"]).mint().unwrap(),
        ),
        ("bad_signature", format!("{input}.{}", b64(&[7u8; 64]))),
        (
            "insufficient_scope",
            issuer.token(AUD, &["orders:list"]).mint().unwrap(),
        ),
    ];
    let mut g = c.benchmark_group("denial");
    for (name, token) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(token), &facts)
                    .now_or_never()
                    .unwrap()
                    .unwrap_err()
            })
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_memory_first_use");
    let ids: Vec<String> = (0..1_000_000u32)
        .map(|i| format!("jti-{i:08}-abcdefghijklmnop"))
        .collect();
    g.bench_function("1_thread", |b| {
        b.iter_custom(|iters| {
            let guard = MemoryReplayGuard::new(2_000_000);
            let start = Instant::now();
            for i in 0..iters {
                let id = &ids[(i as usize) % ids.len()];
                black_box(guard.check(id, 1_000 + i / 1_000_000, 2_000_000).ok());
            }
            start.elapsed()
        })
    });
    g.bench_function("2_threads_aggregate", |b| {
        b.iter_custom(|iters| {
            let guard = Arc::new(MemoryReplayGuard::new(2_000_000));
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (guard, ids) = (guard.clone(), &ids);
                    s.spawn(move || {
                        for i in (t..iters).step_by(2) {
                            let id = &ids[(i as usize) % ids.len()];
                            black_box(guard.check(id, 1_000, 2_000_000).ok());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn issuance(c: &mut Criterion) {
    let mut g = c.benchmark_group("mint");
    for (name, key) in [
        ("ES256", SigningKey::generate_es256("k").unwrap()),
        ("EdDSA", SigningKey::generate_ed25519("k").unwrap()),
    ] {
        let minter = Minter::new(ISS, key, Duration::from_secs(60));
        let req = MintRequest::new(AUD, &["orders:read", "orders:write"], Duration::from_secs(60));
        g.bench_function(name, |b| b.iter(|| minter.mint(black_box(&req)).unwrap()));
    }
    g.finish();
}

/// A DPoP proof (RFC 9449) for one request: every check, the signature and the proof's
/// replay record, on a proof never seen before (minted outside the timing). What requiring
/// DPoP adds to a request beyond the access token's own verification.
fn dpop(c: &mut Criterion) {
    use zsp::core::DpopKey;
    use zsp::core::dpop::DpopVerifier;
    let mut g = c.benchmark_group("dpop");
    let url = "https://api.example/orders/1";
    for (name, key) in [
        ("proof_verify_ES256", DpopKey::generate_es256().unwrap()),
        ("proof_verify_EdDSA", DpopKey::generate_ed25519().unwrap()),
    ] {
        let verifier = DpopVerifier::builder().build().unwrap();
        let token = "an-access-token";
        g.bench_function(name, |b| {
            b.iter_batched(
                || key.proof(&Method::GET, url, Some(token), None).unwrap(),
                |proof| {
                    verifier
                        .verify(&[&proof], &Method::GET, url, Some(token), None, now())
                        .now_or_never()
                        .unwrap()
                        .unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, verify_vs_floor, denials, replay, issuance, dpop);
criterion_main!(benches);
