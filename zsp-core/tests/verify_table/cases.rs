// The cases of verify_table.rs and verify_table_now.rs, which set `VIA_VERIFY_NOW`.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use zsp_core::testing::{TestIssuer, sign_raw_with};
use zsp_core::{
    Algorithm, Denial, KeySet, ManualClock, MemoryRevocation, Policy, RequestFacts, Revocation, RouteRule,
    SigningKey, Verifier, VerifyingKey,
};

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://issuer.test";
const AUD: &str = "orders-api";

struct Fixture {
    issuer: TestIssuer,
    clock: ManualClock,
    revocation: Arc<MemoryRevocation>,
    verifier: Verifier,
}

fn policy() -> zsp_core::PolicyBuilder {
    Policy::builder()
        .issuer(ISS)
        .audience(AUD)
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .route(RouteRule::get("/orders").all_of(["orders:read"]))
        .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
        .route(RouteRule::delete("/orders/{id}").any_of(["orders:admin", "root"]))
        .route(RouteRule::get("/internal").from_cidrs(["10.0.0.0/8"]))
        .route(RouteRule::get("/bound").sender_constrained())
}

fn fixture_with(p: zsp_core::PolicyBuilder) -> Fixture {
    let clock = ManualClock::new(NOW);
    let issuer = TestIssuer::es256(ISS).with_clock(clock.clone());
    let revocation = Arc::new(MemoryRevocation::default());
    let verifier = Verifier::builder(p.build().unwrap(), issuer.key_set())
        .clock(clock.clone())
        .revocation(revocation.clone())
        .build();
    Fixture {
        issuer,
        clock,
        revocation,
        verifier,
    }
}

fn fixture() -> Fixture {
    fixture_with(policy())
}

impl Fixture {
    async fn get(&self, token: &str) -> Result<zsp_core::Grant, Denial> {
        self.req(token, Method::GET, "/orders/7").await
    }
    async fn req(&self, token: &str, m: Method, path: &str) -> Result<zsp_core::Grant, Denial> {
        let facts = RequestFacts::new(&m, path);
        if VIA_VERIFY_NOW {
            match self.verifier.verify_now(token, &facts, |_| Ok(())) {
                Ok(decision) => decision,
                Err(unfinished) => self.verifier.finish(unfinished, &facts, |_| Ok(())).await,
            }
        } else {
            self.verifier.verify(token, &facts).await
        }
    }
    fn read_token(&self) -> String {
        self.issuer.token(AUD, &["orders:read"]).mint().unwrap()
    }
    fn header(&self) -> Value {
        json!({"alg": "ES256", "kid": "test-es256", "typ": "at+jwt"})
    }
    fn claims(&self) -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "svc", "iat": NOW, "exp": NOW + 60,
               "jti": "j1", "scope": "orders:read"})
    }
    fn raw(&self, header: Value, claims: Value) -> String {
        self.issuer.sign_raw(&header, &claims)
    }
}

fn b64(v: &[u8]) -> String {
    zsp_core::b64::encode(v)
}

fn unsigned(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        sig
    )
}

#[tokio::test]
async fn valid_token_is_accepted_with_its_grant() {
    let f = fixture();
    let g = f.get(&f.read_token()).await.unwrap();
    assert_eq!(g.subject(), Some("test-subject"));
    assert_eq!(g.issuer(), ISS);
    assert!(g.scopes().contains("orders:read"));
    assert_eq!(g.route(), Some("/orders/{id}"));
    assert_eq!(g.expires_at(), NOW + 60);
}

#[tokio::test]
async fn rfc8725_3_1_alg_none_is_denied() {
    let f = fixture();
    let h = json!({"alg": "none", "kid": "test-es256"});
    assert_eq!(
        f.get(&unsigned(&h, &f.claims(), "")).await.unwrap_err(),
        Denial::UnsupportedAlgorithm
    );
    let h = json!({"alg": "None"});
    assert_eq!(
        f.get(&unsigned(&h, &f.claims(), "")).await.unwrap_err(),
        Denial::UnsupportedAlgorithm
    );
}

#[tokio::test]
async fn empty_signature_is_denied() {
    let f = fixture();
    let t = unsigned(&f.header(), &f.claims(), "");
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::InvalidSignature);
}

fn hs256(input: &str, key: &[u8]) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    b64(aws_lc_rs::hmac::sign(&k, input.as_bytes()).as_ref())
}

#[tokio::test]
async fn rfc8725_3_1_hs256_signed_with_public_key_bytes_is_denied() {
    let f = fixture();
    let public = f.issuer.key().public_jwk().to_string();
    let h = json!({"alg": "HS256", "kid": "test-es256"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(f.claims().to_string().as_bytes())
    );
    let t = format!("{input}.{}", hs256(&input, public.as_bytes()));
    // Default policy: HS256 is not even allowed.
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::AlgorithmNotAllowed);
    // Even a policy that allows HS256 refuses: the key is pinned to ES256.
    let f2 = Fixture {
        ..fixture_with(policy().algorithms([Algorithm::ES256, Algorithm::HS256]))
    };
    let public = f2.issuer.key().public_jwk().to_string();
    let t = format!("{input}.{}", hs256(&input, public.as_bytes()));
    assert_eq!(f2.get(&t).await.unwrap_err(), Denial::AlgorithmMismatch);
}

#[tokio::test]
async fn algorithm_not_in_policy_is_denied() {
    let f = fixture();
    let h = json!({"alg": "RS256", "kid": "test-es256"});
    assert_eq!(
        f.get(&unsigned(&h, &f.claims(), "AAAA")).await.unwrap_err(),
        Denial::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn rfc8725_3_1_alg_differs_from_keys_pinned_alg() {
    let f = fixture();
    let h = json!({"alg": "EdDSA", "kid": "test-es256"});
    assert_eq!(
        f.get(&unsigned(&h, &f.claims(), "AAAA")).await.unwrap_err(),
        Denial::AlgorithmMismatch
    );
}

#[tokio::test]
async fn unknown_kid_is_denied() {
    let f = fixture();
    let mut h = f.header();
    h["kid"] = json!("other");
    assert_eq!(
        f.get(&f.raw(h, f.claims())).await.unwrap_err(),
        Denial::UnknownKey
    );
    let mut h = f.header();
    h.as_object_mut().unwrap().remove("kid");
    // A kid-less token matches the single trusted key, and verifies.
    assert!(f.get(&f.raw(h, f.claims())).await.is_ok());
}

#[tokio::test]
async fn kid_with_path_and_sql_junk_is_unknown() {
    let f = fixture();
    for junk in [
        "../../../../etc/passwd",
        "' OR 1=1 --",
        "test-es256\u{0}",
        "test-es256 ",
        "%2e%2e",
    ] {
        let mut h = f.header();
        h["kid"] = json!(junk);
        assert_eq!(
            f.get(&f.raw(h, f.claims())).await.unwrap_err(),
            Denial::UnknownKey,
            "{junk:?}"
        );
    }
}

#[tokio::test]
async fn rfc8725_3_jku_header_is_never_fetched_or_trusted() {
    let f = fixture();
    let attacker = SigningKey::generate_es256("attacker").unwrap();
    let h = json!({"alg": "ES256", "kid": "attacker", "jku": "http://127.0.0.1:9/jwks.json"});
    let t = sign_raw_with(&attacker, &h, &f.claims());
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::UnknownKey);
    // Our kid, attacker's signature, attacker's jku: the trusted key decides.
    let h = json!({"alg": "ES256", "kid": "test-es256", "jku": "http://127.0.0.1:9/jwks.json"});
    let t = sign_raw_with(&attacker, &h, &f.claims());
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::InvalidSignature);
}

#[tokio::test]
async fn rfc8725_3_embedded_jwk_header_is_not_trusted() {
    let f = fixture();
    let attacker = SigningKey::generate_es256("test-es256").unwrap();
    let h = json!({"alg": "ES256", "kid": "test-es256", "jwk": attacker.public_jwk()});
    let t = sign_raw_with(&attacker, &h, &f.claims());
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::InvalidSignature);
}

#[tokio::test]
async fn x5u_and_x5c_headers_are_ignored_and_trusted_keys_decide() {
    let f = fixture();
    let attacker = SigningKey::generate_es256("test-es256").unwrap();
    let h = json!({"alg": "ES256", "kid": "test-es256", "x5u": "http://127.0.0.1:9/c.pem", "x5c": ["AAAA"]});
    assert_eq!(
        f.get(&sign_raw_with(&attacker, &h, &f.claims()))
            .await
            .unwrap_err(),
        Denial::InvalidSignature
    );
    // Signed by the trusted key, the same headers change nothing.
    assert!(f.get(&f.raw(h, f.claims())).await.is_ok());
}

#[tokio::test]
async fn rfc7515_4_1_11_unknown_crit_extension_is_denied() {
    let f = fixture();
    let mut h = f.header();
    h["crit"] = json!(["x-custom"]);
    h["x-custom"] = json!(true);
    assert_eq!(
        f.get(&f.raw(h, f.claims())).await.unwrap_err(),
        Denial::UnsupportedCritical
    );
}

#[tokio::test]
async fn tampered_payload_is_denied() {
    let f = fixture();
    let t = f.read_token();
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&zsp_core::b64::decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("orders:read orders:admin");
    let forged = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    assert_eq!(f.get(&forged).await.unwrap_err(), Denial::InvalidSignature);
}

#[tokio::test]
async fn rfc7519_4_1_4_expired_is_denied() {
    let f = fixture();
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .issued_at(NOW - 200)
        .ttl_secs(60)
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::Expired);
}

#[tokio::test]
async fn rfc7519_4_1_5_nbf_in_future_is_denied() {
    let f = fixture();
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .not_before(NOW + 30)
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::NotYetValid);
}

#[tokio::test]
async fn iat_in_future_beyond_leeway_is_denied() {
    let f = fixture();
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .issued_at(NOW + 11)
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::IssuedInFuture);
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .issued_at(NOW + 10)
        .mint()
        .unwrap();
    assert!(f.get(&t).await.is_ok());
}

#[tokio::test]
async fn design_3_missing_exp_is_denied() {
    let f = fixture();
    let mut c = f.claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        f.get(&f.raw(f.header(), c)).await.unwrap_err(),
        Denial::MissingClaim("exp")
    );
}

#[tokio::test]
async fn design_3_missing_iat_is_denied() {
    let f = fixture();
    let mut c = f.claims();
    c.as_object_mut().unwrap().remove("iat");
    assert_eq!(
        f.get(&f.raw(f.header(), c)).await.unwrap_err(),
        Denial::MissingClaim("iat")
    );
}

#[tokio::test]
async fn design_3_standing_token_above_max_lifetime_is_denied() {
    let f = fixture();
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .ttl_secs(3600)
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::LifetimeTooLong);
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .ttl_secs(300)
        .mint()
        .unwrap();
    assert!(f.get(&t).await.is_ok());
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .ttl_secs(301)
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::LifetimeTooLong);
}

#[tokio::test]
async fn exp_before_iat_is_denied() {
    let f = fixture();
    let mut c = f.claims();
    c["exp"] = json!(NOW + 5);
    c["iat"] = json!(NOW + 8);
    assert_eq!(
        f.get(&f.raw(f.header(), c)).await.unwrap_err(),
        Denial::InvalidClaim("exp before iat")
    );
}

#[tokio::test]
async fn wrong_issuer_is_denied() {
    let f = fixture();
    let mut c = f.claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        f.get(&f.raw(f.header(), c)).await.unwrap_err(),
        Denial::InvalidIssuer
    );
    let mut c = f.claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        f.get(&f.raw(f.header(), c)).await.unwrap_err(),
        Denial::MissingClaim("iss")
    );
}

#[tokio::test]
async fn wrong_audience_is_denied() {
    let f = fixture();
    let t = f.issuer.token("billing-api", &["orders:read"]).mint().unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::InvalidAudience);
    let mut c = f.claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        f.get(&f.raw(f.header(), c)).await.unwrap_err(),
        Denial::MissingClaim("aud")
    );
}

#[tokio::test]
async fn rfc7519_4_1_3_aud_array_containing_ours_is_accepted() {
    let f = fixture();
    let t = f
        .issuer
        .token("billing-api", &["orders:read"])
        .also_audience(AUD)
        .mint()
        .unwrap();
    assert!(f.get(&t).await.is_ok());
}

#[tokio::test]
async fn rfc6750_3_1_missing_scope_is_insufficient_scope() {
    let f = fixture();
    let t = f.issuer.token(AUD, &["orders:list"]).mint().unwrap();
    assert_eq!(
        f.get(&t).await.unwrap_err(),
        Denial::InsufficientScope {
            required: "orders:read".into()
        }
    );
}

#[tokio::test]
async fn scope_present_among_others_is_accepted() {
    let f = fixture();
    let t = f.issuer.token(AUD, &["a", "orders:read", "z"]).mint().unwrap();
    assert!(f.get(&t).await.is_ok());
}

#[tokio::test]
async fn scp_array_is_accepted() {
    let f = fixture();
    let mut c = f.claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["orders:read"]);
    let g = f.get(&f.raw(f.header(), c)).await.unwrap();
    assert!(g.scopes().contains("orders:read"));
}

#[tokio::test]
async fn any_of_scopes() {
    let f = fixture();
    let t = f.issuer.token(AUD, &["root"]).mint().unwrap();
    assert!(f.req(&t, Method::DELETE, "/orders/1").await.is_ok());
    let t = f.issuer.token(AUD, &["orders:read"]).mint().unwrap();
    assert_eq!(
        f.req(&t, Method::DELETE, "/orders/1").await.unwrap_err(),
        Denial::InsufficientScope {
            required: "orders:admin root".into()
        }
    );
}

#[tokio::test]
async fn rfc9068_single_use_replay_is_denied() {
    let f = fixture();
    let t = f.issuer.token(AUD, &["orders:write"]).mint().unwrap();
    assert!(f.req(&t, Method::POST, "/orders").await.is_ok());
    assert_eq!(
        f.req(&t, Method::POST, "/orders").await.unwrap_err(),
        Denial::Replayed
    );
}

#[tokio::test]
async fn denied_request_does_not_burn_single_use_jti() {
    let f = fixture();
    f.revocation
        .revoke_subject_before("test-subject", NOW - 100)
        .await
        .unwrap();
    let t = f.issuer.token(AUD, &["orders:read"]).mint().unwrap();
    // Wrong scope for POST: denied before the replay guard.
    assert!(matches!(
        f.req(&t, Method::POST, "/orders").await,
        Err(Denial::InsufficientScope { .. })
    ));
    let t = f.issuer.token(AUD, &["orders:write"]).mint().unwrap();
    assert!(f.req(&t, Method::POST, "/orders").await.is_ok());
}

#[tokio::test]
async fn revoked_jti_is_denied() {
    let f = fixture();
    let t = f.read_token();
    let g = f.get(&t).await.unwrap();
    f.revocation.revoke_jti(g.jti().unwrap(), NOW + 70).await.unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::Revoked);
}

#[tokio::test]
async fn revoked_subject_is_denied_until_new_tokens() {
    let f = fixture();
    let t = f.read_token();
    f.revocation
        .revoke_subject_before("test-subject", NOW)
        .await
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::Revoked);
    f.clock.advance(1);
    assert!(f.get(&f.read_token()).await.is_ok());
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .client_id("c1")
        .mint()
        .unwrap();
    f.revocation.revoke_client_before("c1", NOW + 1).await.unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::Revoked);
}

#[tokio::test]
async fn design_5_oversized_token_is_denied_before_parsing() {
    let f = fixture();
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .claim("pad", "x".repeat(9000))
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::TokenTooLarge);
    assert_eq!(
        f.get(&"a".repeat(100_000)).await.unwrap_err(),
        Denial::TokenTooLarge
    );
}

#[tokio::test]
async fn malformed_base64_json_and_utf8_are_denied() {
    let f = fixture();
    let good = f.read_token();
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"{not json"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"[1,2"), parts[2]),
        format!("{}.{}.{}", parts[0], b64(&[0xff, 0xfe, 0x7b]), parts[2]),
        format!("{}.{}.{}", b64(&[0xc3, 0x28]), parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        "..".to_string(),
        "...".to_string(),
        "a".to_string(),
    ];
    for c in cases {
        assert!(
            matches!(f.get(&c).await.unwrap_err(), Denial::Malformed(_)),
            "{c}"
        );
    }
    assert_eq!(f.get("").await.unwrap_err(), Denial::MissingToken);
}

#[tokio::test]
async fn rfc9068_2_1_typ_mismatch_when_at_jwt_required() {
    let f = fixture_with(policy().require_at_jwt(true));
    let mut h = f.header();
    h["typ"] = json!("JWT");
    assert_eq!(
        f.get(&f.raw(h, f.claims())).await.unwrap_err(),
        Denial::TypMismatch
    );
    let mut h = f.header();
    h.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        f.get(&f.raw(h, f.claims())).await.unwrap_err(),
        Denial::TypMismatch
    );
    let mut h = f.header();
    h["typ"] = json!("application/at+jwt");
    assert!(f.get(&f.raw(h, f.claims())).await.is_ok());
}

#[tokio::test]
async fn other_jwt_types_are_never_access_tokens() {
    let f = fixture();
    let mut h = f.header();
    h["typ"] = json!("dpop+jwt");
    assert_eq!(
        f.get(&f.raw(h, f.claims())).await.unwrap_err(),
        Denial::TypMismatch
    );
    let mut h = f.header();
    h["typ"] = json!("JWT");
    assert!(f.get(&f.raw(h, f.claims())).await.is_ok());
}

#[tokio::test]
async fn leeway_boundary_on_exp() {
    let f = fixture();
    let t = f.read_token(); // exp = NOW + 60, leeway 10
    f.clock.set(NOW + 60 + 10 - 1);
    assert!(f.get(&t).await.is_ok());
    f.clock.set(NOW + 60 + 10);
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::Expired);
}

#[tokio::test]
async fn leeway_boundary_on_nbf() {
    let f = fixture();
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .not_before(NOW + 10)
        .mint()
        .unwrap();
    assert!(f.get(&t).await.is_ok()); // now == nbf - leeway
    let t = f
        .issuer
        .token(AUD, &["orders:read"])
        .not_before(NOW + 11)
        .mint()
        .unwrap();
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::NotYetValid);
}

#[tokio::test]
async fn unmatched_route_is_denied_without_default_rule() {
    let f = fixture();
    assert_eq!(
        f.req(&f.read_token(), Method::GET, "/admin").await.unwrap_err(),
        Denial::RouteNotAllowed
    );
    let f = fixture_with(policy().default_route(RouteRule::any("/{*rest}")));
    assert!(f.req(&f.read_token(), Method::GET, "/admin").await.is_ok());
}

#[tokio::test]
async fn source_cidr_context_rule() {
    let f = fixture();
    let t = f.read_token();
    let m = Method::GET;
    let inside = RequestFacts::new(&m, "/internal").client_ip(Some("10.1.2.3".parse().unwrap()));
    assert!(f.verifier.verify(&t, &inside).await.is_ok());
    let outside = RequestFacts::new(&m, "/internal").client_ip(Some("192.0.2.1".parse().unwrap()));
    assert_eq!(
        f.verifier.verify(&t, &outside).await.unwrap_err(),
        Denial::SourceNotAllowed
    );
    let unknown = RequestFacts::new(&m, "/internal");
    assert_eq!(
        f.verifier.verify(&t, &unknown).await.unwrap_err(),
        Denial::SourceNotAllowed
    );
}

#[tokio::test]
async fn rfc9449_sender_constrained_route_denies_unbound_token() {
    let f = fixture();
    assert_eq!(
        f.req(&f.read_token(), Method::GET, "/bound").await.unwrap_err(),
        Denial::SenderConstraintRequired
    );
}

#[tokio::test]
async fn eddsa_token_is_accepted() {
    let clock = ManualClock::new(NOW);
    let issuer = TestIssuer::ed25519(ISS).with_clock(clock.clone());
    let v = Verifier::builder(policy().build().unwrap(), issuer.key_set())
        .clock(clock)
        .build();
    let t = issuer.token(AUD, &["orders:read"]).mint().unwrap();
    let m = Method::GET;
    assert!(v.verify(&t, &RequestFacts::new(&m, "/orders/1")).await.is_ok());
}

#[tokio::test]
async fn rs256_token_verifies_when_policy_opts_in() {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pk = kp.public_key();
    let jwk = json!({"kty": "RSA", "kid": "rsa1", "alg": "RS256",
        "n": b64(pk.modulus().big_endian_without_leading_zero()),
        "e": b64(pk.exponent().big_endian_without_leading_zero())});
    let keys = KeySet::from_jwks(json!({"keys": [jwk]}).to_string().as_bytes(), None).unwrap();
    let p = policy().algorithms([Algorithm::RS256]).build().unwrap();
    let v = Verifier::builder(p, keys).clock(ManualClock::new(NOW)).build();
    let h = json!({"alg": "RS256", "kid": "rsa1"});
    let c = json!({"iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 60, "scope": "orders:read"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(c.to_string().as_bytes())
    );
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let t = format!("{input}.{}", b64(&sig));
    let m = Method::GET;
    assert!(v.verify(&t, &RequestFacts::new(&m, "/orders/1")).await.is_ok());
    // PS256 header against an RS256-pinned key.
    let p = policy()
        .algorithms([Algorithm::RS256, Algorithm::PS256])
        .build()
        .unwrap();
    let keys = KeySet::from_jwks(
        json!({"keys": [{"kty": "RSA", "kid": "rsa1", "alg": "RS256",
        "n": b64(pk.modulus().big_endian_without_leading_zero()),
        "e": b64(pk.exponent().big_endian_without_leading_zero())}]})
        .to_string()
        .as_bytes(),
        None,
    )
    .unwrap();
    let v = Verifier::builder(p, keys).clock(ManualClock::new(NOW)).build();
    let h = json!({"alg": "PS256", "kid": "rsa1"});
    let forged = format!(
        "{}.{}.{}",
        b64(h.to_string().as_bytes()),
        b64(c.to_string().as_bytes()),
        b64(&sig)
    );
    assert_eq!(
        v.verify(&forged, &RequestFacts::new(&m, "/orders/1"))
            .await
            .unwrap_err(),
        Denial::AlgorithmMismatch
    );
}

#[tokio::test]
async fn hmac_only_with_explicit_secret() {
    let secret = [7u8; 32];
    let key = VerifyingKey::hmac(Some("h1"), Algorithm::HS256, &secret).unwrap();
    let p = policy().algorithms([Algorithm::HS256]).build().unwrap();
    let v = Verifier::builder(p, KeySet::from_keys([key]))
        .clock(ManualClock::new(NOW))
        .build();
    let h = json!({"alg": "HS256", "kid": "h1"});
    let c = json!({"iss": ISS, "aud": AUD, "iat": NOW, "exp": NOW + 60, "scope": "orders:read"});
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(c.to_string().as_bytes())
    );
    let m = Method::GET;
    let ok = format!("{input}.{}", hs256(&input, &secret));
    assert!(v.verify(&ok, &RequestFacts::new(&m, "/orders/1")).await.is_ok());
    let bad = format!("{input}.{}", hs256(&input, &[8u8; 32]));
    assert_eq!(
        v.verify(&bad, &RequestFacts::new(&m, "/orders/1"))
            .await
            .unwrap_err(),
        Denial::InvalidSignature
    );
}

#[tokio::test]
async fn replay_store_full_denies_with_503() {
    let clock = ManualClock::new(NOW);
    let issuer = TestIssuer::es256(ISS).with_clock(clock.clone());
    let guard = Arc::new(zsp_core::MemoryReplayGuard::new(16));
    let v = Verifier::builder(policy().build().unwrap(), issuer.key_set())
        .clock(clock)
        .replay_guard(guard)
        .build();
    let m = Method::POST;
    let mut full = 0;
    for _ in 0..200 {
        let t = issuer.token(AUD, &["orders:write"]).mint().unwrap();
        match v.verify(&t, &RequestFacts::new(&m, "/orders")).await {
            Ok(_) => {}
            Err(Denial::ReplayStoreFull) => full += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(full > 0);
    assert_eq!(
        Denial::ReplayStoreFull.status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn grant_debug_never_contains_the_token() {
    let f = fixture();
    let t = f.read_token();
    let g = f.get(&t).await.unwrap();
    let dbg = format!("{g:?}");
    assert!(!dbg.contains(&t));
    assert!(!dbg.contains(t.split('.').nth(2).unwrap()));
    assert_eq!(g.fingerprint().len(), 16);
}

#[tokio::test]
async fn ttl_cap_is_enforced_by_the_minter() {
    let m = zsp_core::Minter::new(
        ISS,
        SigningKey::generate_es256("k").unwrap(),
        Duration::from_secs(60),
    );
    let err = m
        .mint(&zsp_core::MintRequest::new(AUD, &[], Duration::from_secs(61)))
        .unwrap_err();
    assert_eq!(
        err,
        zsp_core::MintError::LifetimeAboveCap {
            requested: 61,
            cap: 60
        }
    );
}

#[tokio::test]
async fn token_marked_single_use_is_single_use_on_any_route() {
    let f = fixture();
    let mut c = f.claims();
    c["single_use"] = json!(true);
    let t = f.raw(f.header(), c);
    assert!(f.get(&t).await.is_ok());
    assert_eq!(f.get(&t).await.unwrap_err(), Denial::Replayed);
}

#[tokio::test]
async fn audience_alias_is_accepted() {
    let f = fixture_with(policy().also_audience("https://orders.internal"));
    let t = f
        .issuer
        .token("https://orders.internal", &["orders:read"])
        .mint()
        .unwrap();
    assert!(f.get(&t).await.is_ok());
}

#[derive(Debug)]
struct SwappableKeys(std::sync::RwLock<Arc<KeySet>>);

#[async_trait::async_trait]
impl zsp_core::KeySource for SwappableKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        Some(self.0.read().unwrap().clone())
    }
}

#[tokio::test]
async fn signature_cache_skips_only_the_signature() {
    let clock = ManualClock::new(NOW);
    let issuer = TestIssuer::es256(ISS).with_clock(clock.clone());
    let keys = Arc::new(SwappableKeys(std::sync::RwLock::new(Arc::new(issuer.key_set()))));
    let revocation = Arc::new(MemoryRevocation::default());
    let v = Verifier::builder(policy().build().unwrap(), keys.clone())
        .clock(clock.clone())
        .revocation(revocation.clone())
        .signature_cache(1000)
        .build();
    let m = Method::GET;
    let facts = RequestFacts::new(&m, "/orders/1");
    let t = issuer.token(AUD, &["orders:read"]).mint().unwrap();
    assert!(v.verify(&t, &facts).await.is_ok());
    assert!(v.verify(&t, &facts).await.is_ok(), "cached");
    // Scopes are still checked per request.
    let del = Method::DELETE;
    assert!(matches!(
        v.verify(&t, &RequestFacts::new(&del, "/orders/1")).await,
        Err(Denial::InsufficientScope { .. })
    ));
    // A tampered copy hashes differently and fails its own signature check.
    let mut bad = t.clone().into_bytes();
    let i = bad.len() - 5;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        v.verify(std::str::from_utf8(&bad).unwrap(), &facts)
            .await
            .unwrap_err(),
        Denial::InvalidSignature
    );
    // Revocation still applies to a cached token.
    let g = v.verify(&t, &facts).await.unwrap();
    revocation.revoke_jti(g.jti().unwrap(), NOW + 100).await.unwrap();
    assert_eq!(v.verify(&t, &facts).await.unwrap_err(), Denial::Revoked);
    // Expiry still applies.
    let t2 = issuer.token(AUD, &["orders:read"]).ttl_secs(30).mint().unwrap();
    assert!(v.verify(&t2, &facts).await.is_ok());
    clock.advance(45);
    assert_eq!(v.verify(&t2, &facts).await.unwrap_err(), Denial::Expired);
    // The key behind a kid is replaced: entries made with the old key no longer count.
    let t3 = issuer.token(AUD, &["orders:read"]).mint().unwrap();
    assert!(v.verify(&t3, &facts).await.is_ok());
    let impostor = TestIssuer::es256(ISS); // same kid "test-es256", different key
    *keys.0.write().unwrap() = Arc::new(impostor.key_set());
    assert_eq!(v.verify(&t3, &facts).await.unwrap_err(), Denial::InvalidSignature);
}

#[tokio::test]
async fn signature_cache_is_never_used_for_single_use() {
    let f = fixture();
    let v = Verifier::builder(policy().build().unwrap(), f.issuer.key_set())
        .clock(f.clock.clone())
        .signature_cache(1000)
        .build();
    let m = Method::POST;
    let t = f.issuer.token(AUD, &["orders:write"]).mint().unwrap();
    assert!(v.verify(&t, &RequestFacts::new(&m, "/orders")).await.is_ok());
    assert_eq!(
        v.verify(&t, &RequestFacts::new(&m, "/orders")).await.unwrap_err(),
        Denial::Replayed
    );
}
