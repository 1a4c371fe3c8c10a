//! Properties across algorithms (ES256 and EdDSA): anything the issuer mints within a random
//! policy verifies and yields exactly the claims minted; no single-byte mutation of a valid
//! token verifies; a token signed by one algorithm's key never verifies under the other's.

use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use proptest::prelude::*;
use zsp_core::testing::TestIssuer;
use zsp_core::{Algorithm, KeySet, ManualClock, Policy, RequestFacts, RouteRule, Verifier};

const ISS: &str = "https://i.test";
const T0: u64 = 1_700_000_000;

/// One key per algorithm for the whole run: key generation is not what is under test.
fn issuers() -> &'static [TestIssuer; 2] {
    static I: OnceLock<[TestIssuer; 2]> = OnceLock::new();
    I.get_or_init(|| [TestIssuer::es256(ISS), TestIssuer::ed25519(ISS)])
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

fn alg_index() -> impl Strategy<Value = usize> {
    0usize..2
}

fn scope() -> impl Strategy<Value = String> {
    "[a-z]{1,8}(:[a-z]{1,8})?"
}

#[derive(Debug, Clone)]
struct Case {
    alg: usize,
    audience: String,
    extra_audience: Option<String>,
    scopes: Vec<String>,
    required: Vec<String>,
    any_of: bool,
    subject: String,
    max_lifetime: u64,
    ttl: u64,
    leeway: u64,
    /// Where "now" falls in the token's validity window [iat − leeway, exp + leeway).
    at: u64,
    require_at_jwt: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        alg_index(),
        "[a-z][a-z0-9-]{0,15}",
        proptest::option::of("[a-z][a-z0-9-]{0,15}"),
        proptest::collection::btree_set(scope(), 1..6),
        1u64..=3600,
        0u64..=60,
        any::<bool>(),
        "[a-zA-Z0-9_.@-]{1,24}",
        any::<bool>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(
            |(
                alg,
                audience,
                extra,
                scopes,
                max_lifetime,
                leeway,
                any_of,
                subject,
                typ,
                ttl_i,
                at_i,
                req_i,
            )| {
                let scopes: Vec<String> = scopes.into_iter().collect();
                let ttl = 1 + ttl_i.index(max_lifetime as usize) as u64;
                // Required scopes: a non-empty prefix of a rotation of the granted ones.
                let start = req_i.index(scopes.len());
                let n = 1 + req_i.index(scopes.len()).min(scopes.len() - 1);
                let required = scopes.iter().cycle().skip(start).take(n).cloned().collect();
                // now ∈ [iat − leeway, exp + leeway): every point must verify.
                let at = at_i.index((ttl + 2 * leeway) as usize) as u64;
                Case {
                    alg,
                    audience,
                    extra_audience: extra,
                    scopes,
                    required,
                    any_of,
                    subject,
                    max_lifetime,
                    ttl,
                    leeway,
                    at,
                    require_at_jwt: typ,
                }
            },
        )
}

fn verifier_for(c: &Case, keys: KeySet, clock: &ManualClock) -> Verifier {
    let rule = RouteRule::get("/r/{id}");
    let rule = if c.any_of {
        rule.any_of(c.required.clone())
    } else {
        rule.all_of(c.required.clone())
    };
    let policy = Policy::builder()
        .issuer(ISS)
        .audience(c.audience.clone())
        .algorithms([Algorithm::ES256, Algorithm::EdDSA])
        .max_lifetime(Duration::from_secs(c.max_lifetime))
        .leeway(Duration::from_secs(c.leeway))
        .require_at_jwt(c.require_at_jwt)
        .route(rule)
        .build()
        .unwrap();
    Verifier::builder(policy, keys)
        .clock(clock.clone())
        .audit(false)
        .build()
}

fn mint(c: &Case) -> String {
    let issuer = &issuers()[c.alg];
    let scopes: Vec<&str> = c.scopes.iter().map(String::as_str).collect();
    let mut b = issuer
        .token(&c.audience, &scopes)
        .subject(&c.subject)
        .issued_at(T0)
        .ttl_secs(c.ttl);
    if let Some(extra) = &c.extra_audience {
        b = b.also_audience(extra);
    }
    b.mint().unwrap()
}

fn both_keys() -> KeySet {
    let mut keys = issuers()[0].key_set();
    for k in issuers()[1].key_set().iter() {
        keys.push(k.clone());
    }
    keys
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mint_then_verify_round_trips_with_the_same_claims(c in case()) {
        let token = mint(&c);
        let clock = ManualClock::new(T0 - c.leeway + c.at);
        let v = verifier_for(&c, both_keys(), &clock);
        let m = Method::GET;
        let grant = rt()
            .block_on(v.verify(&token, &RequestFacts::new(&m, "/r/42")))
            .unwrap_or_else(|d| panic!("{c:?}: {d:?}"));
        prop_assert_eq!(grant.issuer(), ISS);
        prop_assert_eq!(grant.subject(), Some(c.subject.as_str()));
        prop_assert_eq!(grant.issued_at(), T0);
        prop_assert_eq!(grant.expires_at(), T0 + c.ttl);
        let granted: Vec<&str> = grant.scopes().iter().collect();
        let mut want: Vec<&str> = c.scopes.iter().map(String::as_str).collect();
        let mut got = granted.clone();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want);
        let aud = grant.audience().expect("aud");
        prop_assert!(aud.contains(&c.audience));
        if let Some(extra) = &c.extra_audience {
            prop_assert!(aud.contains(extra));
        }
        prop_assert!(grant.jti().is_some_and(|j| !j.is_empty()));
    }

    #[test]
    fn outside_the_window_or_over_the_cap_never_verifies(c in case(), past in 0u64..1000, over in 1u64..1000) {
        let token = mint(&c);
        let m = Method::GET;
        let facts = RequestFacts::new(&m, "/r/42");
        // Expired: now ≥ exp + leeway.
        let late = verifier_for(&c, both_keys(), &ManualClock::new(T0 + c.ttl + c.leeway + past));
        prop_assert!(rt().block_on(late.verify(&token, &facts)).is_err());
        // Not yet valid: now < iat − leeway.
        let early = verifier_for(&c, both_keys(), &ManualClock::new(T0 - c.leeway - 1 - past));
        prop_assert!(rt().block_on(early.verify(&token, &facts)).is_err());
        // A standing token: lifetime above the policy's cap.
        let mut long = c.clone();
        long.ttl = c.max_lifetime + over;
        let standing = mint(&long);
        let v = verifier_for(&c, both_keys(), &ManualClock::new(T0));
        prop_assert!(rt().block_on(v.verify(&standing, &facts)).is_err());
    }

    #[test]
    fn a_token_verifies_only_under_its_own_algorithms_key(c in case()) {
        let token = mint(&c);
        let clock = ManualClock::new(T0 - c.leeway + c.at);
        let other = issuers()[1 - c.alg].key_set();
        let v = verifier_for(&c, other, &clock);
        let m = Method::GET;
        prop_assert!(rt().block_on(v.verify(&token, &RequestFacts::new(&m, "/r/42"))).is_err());
    }

    #[test]
    fn any_single_byte_mutation_never_verifies_for_either_algorithm(
        alg in alg_index(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let c = Case {
            alg,
            audience: "api".into(),
            extra_audience: None,
            scopes: vec!["s".into()],
            required: vec!["s".into()],
            any_of: false,
            subject: "svc".into(),
            max_lifetime: 300,
            ttl: 60,
            leeway: 10,
            at: 10,
            require_at_jwt: false,
        };
        let token = mint(&c);
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let v = verifier_for(&c, both_keys(), &ManualClock::new(T0));
        let m = Method::GET;
        let r = rt().block_on(v.verify(&mutated, &RequestFacts::new(&m, "/r/1")));
        // base64url's final character of a segment has "don't care" low bits: a mutation that
        // decodes to the same bytes is the same token, not a forgery.
        let decoded = |t: &str| t.split('.').map(|s| zsp_core::b64::decode(s).ok()).collect::<Vec<_>>();
        prop_assert!(r.is_err() || decoded(&mutated) == decoded(&token), "mutation at {} verified", i);
    }
}
