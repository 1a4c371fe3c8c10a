//! The ratio figures of `benches/verify.rs`, measured interleaved: on a shared VM the speed of
//! the CPU drifts by tens of percent within seconds, so benchmarks run one after the other
//! (criterion's way) can put the floor and the verifier in different weather. Here every
//! variant of one algorithm runs a short batch in turn, for many rounds, and each variant's
//! figure is the median of its batches; ratios are taken per round and their median reported.
//!
//! `cargo bench --bench verify_interleaved` (`ZSP_IL_ROUNDS`, default 40; `ZSP_IL_BATCH_MS`,
//! default 25 ms per variant per round; `ZSP_IL_ALGS=RS256,ES256` for some algorithms only;
//! `ZSP_IL_REPLAY=0` without the replay rounds). It ends with the share of each part's time the
//! hypervisor stole from the guest's CPUs (`/proc/stat`): a part with much of it ran in a slow
//! spell.
//!
//! The same treatment for the memory replay guard at 1 and 2 threads: each round times a batch
//! of first-use checks on one thread and the same number split over two, alternating which goes
//! first; the figure is the median of the per-round ratios. Twice: on a fresh guard, whose
//! tables grow from nothing during the batch (allocation included), and on a guard in steady
//! state, whose tables already hold as many records, expired, as the batch will add: what a
//! long-running server's guard looks like.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self as sig, KeyPair as _, ParsedPublicKey, UnparsedPublicKey};
use futures_util::FutureExt;
use http::Method;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use zsp::core::testing::TestIssuer;
use zsp::core::{KeySet, MemoryReplayGuard, Policy, RequestFacts, RouteRule, Verifier, VerifyingKey};

const ISS: &str = "https://bench.issuer";
const AUD: &str = "bench-api";

fn b64(b: &[u8]) -> String {
    zsp::core::b64::encode(b)
}

fn now() -> u64 {
    zsp::core::Clock::now(&zsp::core::SystemClock)
}

fn policy(alg: Algorithm) -> Policy {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([alg])
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .build()
        .unwrap()
}

fn claims() -> serde_json::Value {
    let t = now();
    json!({"iss": ISS, "aud": AUD, "sub": "svc-bench", "client_id": "bench", "iat": t, "exp": t + 290,
           "jti": "bench-jti-0001", "scope": "orders:read orders:list"})
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

type Op = Box<dyn Fn()>;

struct Case {
    alg: &'static str,
    ops: Vec<(&'static str, Op)>,
}

fn common(alg: Algorithm, token: String, keys: KeySet, jwt_key: DecodingKey) -> Vec<(&'static str, Op)> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let verifier = Verifier::builder(policy(alg), keys.clone())
        .signature_cache(0)
        .build();
    let cached = Verifier::builder(policy(alg), keys)
        .signature_cache(10_000)
        .build();
    let (t1, t2, t3) = (token.clone(), token.clone(), token);
    let facts = |v: &Verifier, t: &str| {
        let m = Method::GET;
        let f = RequestFacts::new(&m, "/orders/42");
        v.verify(black_box(t), &f).now_or_never().unwrap().unwrap();
    };
    vec![
        (
            "jsonwebtoken_decode",
            Box::new(move || {
                jsonwebtoken::decode::<JwtClaims>(black_box(&t1), &jwt_key, &validation).unwrap();
            }),
        ),
        ("zsp_verify", Box::new(move || facts(&verifier, &t2))),
        (
            "zsp_verify_signature_cached",
            Box::new(move || facts(&cached, &t3)),
        ),
    ]
}

fn ec_case(alg_name: &'static str, issuer: TestIssuer, alg: Algorithm) -> Case {
    let token = issuer
        .token(AUD, &["orders:read", "orders:list"])
        .ttl_secs(290)
        .mint()
        .unwrap();
    let (input, s) = token.rsplit_once('.').unwrap();
    let (input, signature) = (input.as_bytes().to_vec(), zsp::core::b64::decode(s).unwrap());
    let jwk = issuer.key().public_jwk().clone();
    let mut ops: Vec<(&'static str, Op)> = Vec::new();
    let jwt_key = if alg == Algorithm::ES256 {
        let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
        let mut point = vec![4u8];
        point.extend(zsp::core::b64::decode(x).unwrap());
        point.extend(zsp::core::b64::decode(y).unwrap());
        let k = ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).unwrap();
        ops.push((
            "raw_signature",
            Box::new(move || k.verify_sig(black_box(&input), black_box(&signature)).unwrap()),
        ));
        DecodingKey::from_ec_components(x, y).unwrap()
    } else {
        let x = jwk["x"].as_str().unwrap();
        let raw = zsp::core::b64::decode(x).unwrap();
        let k = ParsedPublicKey::new(&sig::ED25519, raw.clone()).unwrap();
        let (i2, s2) = (input.clone(), signature.clone());
        ops.push((
            "raw_signature",
            Box::new(move || k.verify_sig(black_box(&input), black_box(&signature)).unwrap()),
        ));
        ops.push((
            "raw_signature_unparsed",
            Box::new(move || {
                UnparsedPublicKey::new(&sig::ED25519, &raw)
                    .verify(black_box(&i2), black_box(&s2))
                    .unwrap()
            }),
        ));
        DecodingKey::from_ed_components(x).unwrap()
    };
    ops.extend(common(alg, token, issuer.key_set(), jwt_key));
    Case { alg: alg_name, ops }
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
        b64(claims().to_string().as_bytes())
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
    let mut ops: Vec<(&'static str, Op)> = vec![(
        "raw_signature",
        Box::new(move || {
            raw.verify_sig(black_box(input.as_bytes()), black_box(&s))
                .unwrap()
        }),
    )];
    let jwt_key = DecodingKey::from_rsa_components(&n, &e).unwrap();
    ops.extend(common(Algorithm::RS256, token, keys, jwt_key));
    Case { alg: "RS256", ops }
}

fn hmac_case() -> Case {
    let secret = [42u8; 32];
    let keys = KeySet::from_keys([VerifyingKey::hmac(Some("h"), Algorithm::HS256, &secret).unwrap()]);
    let h = json!({"alg": "HS256", "kid": "h", "typ": "at+jwt"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", b64(tag.as_ref()));
    let tag = tag.as_ref().to_vec();
    let mut ops: Vec<(&'static str, Op)> = vec![(
        "raw_signature",
        Box::new(move || {
            aws_lc_rs::hmac::verify(&key, black_box(input.as_bytes()), black_box(&tag)).unwrap()
        }),
    )];
    ops.extend(common(
        Algorithm::HS256,
        token,
        keys,
        DecodingKey::from_secret(&secret),
    ));
    Case { alg: "HS256", ops }
}

/// Runs `op` for about `budget`, returns ns per call.
fn batch(op: &Op, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            op();
        }
        n += 16;
        let el = start.elapsed();
        if el >= budget {
            return el.as_nanos() as f64 / n as f64;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Wall time per first-use check of `ids`, split over `threads` threads, on a fresh guard or
/// (`steady`) one whose tables already held as many records, now expired.
fn replay_batch(ids: &[String], threads: usize, steady: bool) -> f64 {
    let guard = Arc::new(MemoryReplayGuard::new(2 * ids.len()));
    let now = if steady {
        // Records that expire before the batch starts: they size the tables, and the first
        // check on each shard sweeps them out, as the guard's periodic sweep does.
        for id in ids {
            black_box(guard.check(&format!("old-{id}"), 1_000, 1_001).ok());
        }
        2_000
    } else {
        1_000
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let guard = guard.clone();
            s.spawn(move || {
                for id in ids.iter().skip(t).step_by(threads) {
                    black_box(guard.check(id, now, 2_000_000).ok());
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / ids.len() as f64
}

fn replay_rounds(rounds: usize) {
    let ids: Vec<String> = (0..200_000u32)
        .map(|i| format!("jti-{i:08}-abcdefghijklmnop"))
        .collect();
    println!();
    println!(
        "MemoryReplayGuard first use, {} ids per batch, {rounds} rounds:",
        ids.len()
    );
    println!();
    println!(
        "| guard | threads | median ns per check (wall) | 2 threads ÷ 1 thread (median of per-round ratios) |"
    );
    println!("|---|---|---:|---:|");
    for (steady, name) in [(false, "fresh"), (true, "steady state")] {
        replay_batch(&ids, 1, steady);
        replay_batch(&ids, 2, steady);
        let (mut one, mut two, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let (a, b) = if r % 2 == 0 {
                let a = replay_batch(&ids, 1, steady);
                (a, replay_batch(&ids, 2, steady))
            } else {
                let b = replay_batch(&ids, 2, steady);
                (replay_batch(&ids, 1, steady), b)
            };
            one.push(a);
            two.push(b);
            ratio.push(b / a);
        }
        println!("| {name} | 1 | {:.1} | |", median(one));
        println!("| {name} | 2 | {:.1} | {:.3}× |", median(two), median(ratio));
    }
}

/// Time the hypervisor takes from this guest's vCPUs (the `steal` column of `/proc/stat`): on a
/// shared host it is where slow spells come from, so each part of the run reports its share.
struct Steal {
    ticks: Option<u64>,
    start: Instant,
}

impl Steal {
    fn start() -> Self {
        Self {
            ticks: Self::read().map(|(t, _)| t),
            start: Instant::now(),
        }
    }

    /// Stolen ticks summed over all CPUs, and the number of CPUs.
    fn read() -> Option<(u64, usize)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        // "cpu  user nice system idle iowait irq softirq steal ..."
        let ticks = lines.next()?.split_whitespace().nth(8)?.parse().ok()?;
        let cpus = lines.filter(|l| l.starts_with("cpu")).count();
        Some((ticks, cpus))
    }

    /// Share of the wall time since `start` stolen, averaged over the CPUs.
    fn share(&self) -> Option<f64> {
        let (now, cpus) = Self::read()?;
        // /proc/stat counts in USER_HZ, 100 on Linux.
        let stolen = now.checked_sub(self.ticks?)? as f64 / 100.0;
        Some(stolen / (self.start.elapsed().as_secs_f64() * cpus.max(1) as f64))
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    zsp::core::crypto::ensure_provider();
    let rounds: usize = std::env::var("ZSP_IL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let budget = Duration::from_millis(
        std::env::var("ZSP_IL_BATCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(25),
    );
    let cases = [
        ec_case("ES256", TestIssuer::es256(ISS), Algorithm::ES256),
        ec_case("EdDSA", TestIssuer::ed25519(ISS), Algorithm::EdDSA),
        rsa_case(),
        hmac_case(),
    ];
    println!(
        "interleaved: {rounds} rounds × {} ms per variant; medians of batches, ns per verify",
        budget.as_millis()
    );
    println!();
    println!(
        "| alg | variant | median | min batch | max batch | ÷ raw (median of per-round ratios) | ÷ jsonwebtoken |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    // `ZSP_IL_ALGS=RS256,HS256` measures only those; `ZSP_IL_REPLAY=0` skips the replay rounds.
    let only = std::env::var("ZSP_IL_ALGS").ok();
    let wanted = |alg: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|a| a.trim().eq_ignore_ascii_case(alg)))
    };
    let mut stolen = Vec::new();
    for case in cases.iter().filter(|c| wanted(c.alg)) {
        let steal = Steal::start();
        for (_, op) in &case.ops {
            batch(op, budget); // warm-up
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); case.ops.len()];
        for r in 0..rounds {
            // Rotate the starting variant so that none is always first after a switch.
            for k in 0..case.ops.len() {
                let i = (k + r) % case.ops.len();
                times[i].push(batch(&case.ops[i].1, budget));
            }
        }
        let idx = |name: &str| case.ops.iter().position(|(n, _)| *n == name);
        let (raw, jwt) = (idx("raw_signature"), idx("jsonwebtoken_decode"));
        let per_round_ratio = |i: usize, base: Option<usize>| match base {
            Some(b) => format!(
                "{:.3}×",
                median(times[i].iter().zip(&times[b]).map(|(x, y)| x / y).collect())
            ),
            None => "–".into(),
        };
        for (i, (name, _)) in case.ops.iter().enumerate() {
            let t = &times[i];
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
                case.alg,
                name,
                median(t.clone()),
                t.iter().copied().fold(f64::INFINITY, f64::min),
                t.iter().copied().fold(0.0, f64::max),
                per_round_ratio(i, raw),
                per_round_ratio(i, jwt),
            );
        }
        stolen.push((case.alg, steal.share()));
    }
    if std::env::var("ZSP_IL_REPLAY").as_deref() != Ok("0") {
        let steal = Steal::start();
        replay_rounds(rounds);
        stolen.push(("replay", steal.share()));
    }
    let shares: Vec<String> = stolen
        .iter()
        .filter_map(|(name, share)| share.map(|x| format!("{name} {:.1} %", x * 100.0)))
        .collect();
    if !shares.is_empty() {
        println!();
        println!(
            "time stolen by the hypervisor from this guest's CPUs while each part ran (/proc/stat): {}",
            shares.join(", ")
        );
    }
}
