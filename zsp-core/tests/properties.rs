//! Property and concurrency tests: arbitrary input never panics and never verifies.

use std::sync::Arc;

use http::Method;
use proptest::prelude::*;
use zsp_core::testing::TestIssuer;
use zsp_core::{ManualClock, Policy, RequestFacts, RouteRule, Verifier};

const NOW: u64 = 1_700_000_000;

fn setup() -> (TestIssuer, Verifier) {
    let clock = ManualClock::new(NOW);
    let issuer = TestIssuer::es256("https://i.test").with_clock(clock.clone());
    let policy = Policy::builder()
        .issuer("https://i.test")
        .audience("api")
        .route(RouteRule::post("/once").all_of(["s"]).single_use())
        .route(RouteRule::any("/{*rest}").all_of(["s"]))
        .build()
        .unwrap();
    let v = Verifier::builder(policy, issuer.key_set())
        .clock(clock)
        .audit(false)
        .build();
    (issuer, v)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (_, v) = setup();
        let s = String::from_utf8_lossy(&bytes);
        let m = Method::GET;
        let r = rt().block_on(v.verify(&s, &RequestFacts::new(&m, "/x")));
        prop_assert!(r.is_err());
    }

    #[test]
    fn arbitrary_jws_shaped_strings_never_verify(h in "[A-Za-z0-9_-]{0,64}", p in "[A-Za-z0-9_-]{0,256}", s in "[A-Za-z0-9_-]{0,128}") {
        let (_, v) = setup();
        let m = Method::GET;
        let r = rt().block_on(v.verify(&format!("{h}.{p}.{s}"), &RequestFacts::new(&m, "/x")));
        prop_assert!(r.is_err());
    }

    #[test]
    fn any_single_byte_mutation_of_a_valid_token_never_verifies(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (issuer, v) = setup();
        let token = issuer.token("api", &["s"]).mint().unwrap();
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let m = Method::GET;
        let r = rt().block_on(v.verify(&mutated, &RequestFacts::new(&m, "/x")));
        // base64url has "don't care" low bits in the final character of a segment: a mutation
        // that decodes to the same bytes is the same token, not a forgery.
        let same = mutated.split('.').map(|s| zsp_core::b64::decode(s).ok()).collect::<Vec<_>>()
            == token.split('.').map(|s| zsp_core::b64::decode(s).ok()).collect::<Vec<_>>();
        prop_assert!(r.is_err() || same, "mutation at {} verified", i);
    }
}

#[test]
fn valid_token_still_verifies_in_the_property_setup() {
    let (issuer, v) = setup();
    let token = issuer.token("api", &["s"]).mint().unwrap();
    let m = Method::GET;
    assert!(
        rt().block_on(v.verify(&token, &RequestFacts::new(&m, "/x")))
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_of_one_single_use_token_accept_exactly_one() {
    let (issuer, v) = setup();
    let token: Arc<str> = issuer.token("api", &["s"]).mint().unwrap().into();
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (v, token, barrier) = (v.clone(), token.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let m = Method::POST;
            v.verify(&token, &RequestFacts::new(&m, "/once")).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(zsp_core::Denial::Replayed) => {}
            Err(e) => panic!("unexpected denial {e:?}"),
        }
    }
    assert_eq!(ok, 1);
}
