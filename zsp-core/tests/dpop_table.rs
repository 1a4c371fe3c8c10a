//! The DPoP decision table: one denying case per check of RFC 9449 §4.3 (case names carry the
//! step number of the §4.3 list), plus §7.2, §8 and §11.1, and accepting cases. Each case asserts the exact `Denial` (including the internal reason) or
//! the returned thumbprint.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use zsp_core::dpop::{DpopKey, DpopVerifier, Jkt, NonceIssuer, access_token_hash, jwk_thumbprint};
use zsp_core::testing::sign_raw_with;
use zsp_core::{Algorithm, Denial, ReplayError, ReplayGuard, SigningKey, UnixTime};

const NOW: UnixTime = 1_700_000_000;
const HTU: &str = "https://api.example/orders/1";
const TOKEN: &str = "an.access.token";
const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// The public members of a signing key's JWK, as a proof header carries them.
fn public_jwk(key: &SigningKey) -> Value {
    let full = key.public_jwk();
    let mut out = serde_json::Map::new();
    for m in ["kty", "crv", "x", "y"] {
        if let Some(v) = full.get(m) {
            out.insert(m.into(), v.clone());
        }
    }
    Value::Object(out)
}

struct Fx {
    es: SigningKey,
    ed: SigningKey,
    other: SigningKey,
    nonces: NonceIssuer,
}

impl Fx {
    fn new() -> Self {
        Self {
            es: SigningKey::generate_es256("es").unwrap(),
            ed: SigningKey::generate_ed25519("ed").unwrap(),
            other: SigningKey::generate_es256("other").unwrap(),
            nonces: NonceIssuer::builder(SECRET).build().unwrap(),
        }
    }
    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&self.es)})
    }
    fn claims(&self) -> Value {
        json!({
            "jti": zsp_core::crypto::random_id::<16>().unwrap(),
            "htm": "POST",
            "htu": HTU,
            "iat": NOW,
            "ath": access_token_hash(TOKEN),
        })
    }
    /// A proof signed by the ES256 key after `edit` changed the default header and claims.
    fn proof(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        self.proof_by(&self.es, edit)
    }
    fn proof_by(&self, key: &SigningKey, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut h, mut c) = (self.header(), self.claims());
        if key.algorithm() == Algorithm::EdDSA {
            h = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public_jwk(key)});
        }
        edit(&mut h, &mut c);
        sign_raw_with(key, &h, &c)
    }
    fn jkt(&self, key: &SigningKey) -> Jkt {
        jwk_thumbprint(&public_jwk(key)).unwrap()
    }
}

/// One request as the inbound layer would present it.
struct Req {
    headers: Vec<String>,
    method: Method,
    htu: String,
    token: Option<String>,
    jkt: Option<String>,
    now: UnixTime,
    nonces: bool,
}

impl Req {
    fn new(proof: String) -> Self {
        Self {
            headers: vec![proof],
            method: Method::POST,
            htu: HTU.into(),
            token: Some(TOKEN.into()),
            jkt: None,
            now: NOW,
            nonces: false,
        }
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn htu(mut self, htu: &str) -> Self {
        self.htu = htu.into();
        self
    }
    fn token(mut self, t: Option<&str>) -> Self {
        self.token = t.map(Into::into);
        self
    }
    fn jkt(mut self, j: &Jkt) -> Self {
        self.jkt = Some(j.as_str().into());
        self
    }
    fn now(mut self, now: UnixTime) -> Self {
        self.now = now;
        self
    }
    fn with_nonces(mut self) -> Self {
        self.nonces = true;
        self
    }
    fn headers(mut self, h: Vec<String>) -> Self {
        self.headers = h;
        self
    }
}

fn verifier(fx: &Fx, nonces: bool) -> DpopVerifier {
    let b = DpopVerifier::builder();
    let b = if nonces {
        b.require_nonces(fx.nonces.clone())
    } else {
        b
    };
    b.build().unwrap()
}

async fn run(v: &DpopVerifier, r: &Req) -> Result<Jkt, Denial> {
    let headers: Vec<&str> = r.headers.iter().map(String::as_str).collect();
    v.verify(
        &headers,
        &r.method,
        &r.htu,
        r.token.as_deref(),
        r.jkt.as_deref(),
        r.now,
    )
    .await
}

async fn check(fx: &Fx, r: Req) -> Result<Jkt, Denial> {
    run(&verifier(fx, r.nonces), &r).await
}

fn deny(why: &'static str) -> Result<(), Denial> {
    Err(Denial::InvalidDpopProof(why))
}

#[tokio::test]
async fn rfc9449_4_3_denying_table() {
    let fx = Fx::new();
    let nonce_now = fx.nonces.current(NOW);
    let nonce_stale = fx.nonces.current(NOW - 3 * 60);
    let forged = NonceIssuer::builder(&[9u8; 32]).build().unwrap().current(NOW);
    let es_jkt = fx.jkt(&fx.es);
    let other_jkt = fx.jkt(&fx.other);

    let cases: Vec<(&str, Req, Result<(), Denial>)> = vec![
        // Step 1: exactly one DPoP header.
        (
            "rfc9449_4_3_1_no_dpop_header",
            Req::new(String::new()).headers(vec![]),
            deny("missing DPoP header"),
        ),
        (
            "rfc9449_4_3_1_two_dpop_headers",
            Req::new(fx.proof(|_, _| {})).headers(vec![fx.proof(|_, _| {}), fx.proof(|_, _| {})]),
            deny("multiple DPoP headers"),
        ),
        // Step 2: one well-formed JWT.
        (
            "rfc9449_4_3_2_malformed_two_segments",
            Req::new("eyJhIjoxfQ.eyJhIjoxfQ".into()),
            deny("not a compact JWS"),
        ),
        (
            "rfc9449_4_3_2_malformed_four_segments",
            Req::new(format!("{}.x", fx.proof(|_, _| {}))),
            deny("not a compact JWS"),
        ),
        (
            "rfc9449_4_3_2_malformed_header_base64",
            Req::new("!!!.eyJhIjoxfQ.c2ln".into()),
            deny("header base64"),
        ),
        (
            "rfc9449_4_3_2_malformed_header_json",
            Req::new("bm90IGpzb24.eyJhIjoxfQ.c2ln".into()),
            deny("header JSON"),
        ),
        (
            "rfc9449_4_3_2_too_large",
            Req::new("a".repeat(9000)),
            deny("proof too large"),
        ),
        (
            "rfc9449_4_3_2_payload_not_json",
            Req::new({
                let p = fx.proof(|_, _| {});
                let mut parts: Vec<&str> = p.split('.').collect();
                parts[1] = "bm90IGpzb24";
                parts.join(".")
            }),
            deny("payload JSON"),
        ),
        // Step 4: typ.
        (
            "rfc9449_4_3_4_wrong_typ",
            Req::new(fx.proof(|h, _| h["typ"] = json!("JWT"))),
            deny("typ is not dpop+jwt"),
        ),
        (
            "rfc9449_4_3_4_access_token_typ",
            Req::new(fx.proof(|h, _| h["typ"] = json!("at+jwt"))),
            deny("typ is not dpop+jwt"),
        ),
        (
            "rfc9449_4_3_4_missing_typ",
            Req::new(fx.proof(|h, _| {
                h.as_object_mut().unwrap().remove("typ");
            })),
            deny("typ is not dpop+jwt"),
        ),
        (
            "rfc7515_4_1_11_unknown_crit",
            Req::new(fx.proof(|h, _| h["crit"] = json!(["x"]))),
            deny("unsupported crit"),
        ),
        // Step 5: asymmetric, allowed algorithm.
        (
            "rfc9449_4_3_5_alg_none",
            Req::new(fx.proof(|h, _| h["alg"] = json!("none"))),
            deny("unsupported alg"),
        ),
        (
            "rfc9449_4_3_5_alg_none_unsigned",
            Req::new({
                let p = fx.proof(|h, _| h["alg"] = json!("none"));
                let (hp, _) = p.rsplit_once('.').unwrap();
                format!("{hp}.")
            }),
            deny("not a compact JWS"),
        ),
        (
            "rfc9449_4_3_5_symmetric_hs256",
            Req::new(fx.proof(|h, _| h["alg"] = json!("HS256"))),
            deny("symmetric alg"),
        ),
        (
            "rfc9449_4_3_5_missing_alg",
            Req::new(fx.proof(|h, _| {
                h.as_object_mut().unwrap().remove("alg");
            })),
            deny("unsupported alg"),
        ),
        (
            "rfc9449_4_3_5_alg_not_allowed",
            Req::new(fx.proof(|h, _| h["alg"] = json!("ES384"))),
            deny("alg not allowed"),
        ),
        (
            "rfc9449_4_3_5_rs256_not_opted_in",
            Req::new(fx.proof(|h, _| h["alg"] = json!("RS256"))),
            deny("alg not allowed"),
        ),
        (
            "rfc8725_3_1_alg_does_not_match_jwk",
            Req::new(fx.proof(|h, _| h["alg"] = json!("EdDSA"))),
            deny("alg does not match jwk"),
        ),
        // Steps 6 and 7: a usable public jwk, and the signature by it.
        (
            "rfc9449_4_3_7_private_key_in_jwk",
            Req::new(fx.proof(|h, _| h["jwk"]["d"] = json!("AAAA"))),
            deny("private key in jwk"),
        ),
        (
            "rfc9449_4_3_7_symmetric_jwk",
            Req::new(fx.proof(|h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"}))),
            deny("private key in jwk"),
        ),
        (
            "rfc9449_4_3_6_missing_jwk",
            Req::new(fx.proof(|h, _| {
                h.as_object_mut().unwrap().remove("jwk");
            })),
            deny("missing jwk"),
        ),
        (
            "rfc9449_4_3_6_jwk_not_object",
            Req::new(fx.proof(|h, _| h["jwk"] = json!("key"))),
            deny("jwk is not an object"),
        ),
        (
            "rfc9449_4_3_6_jwk_off_curve",
            Req::new(fx.proof(|h, _| h["jwk"]["y"] = h["jwk"]["x"].clone())),
            deny("unusable jwk"),
        ),
        (
            "rfc9449_4_3_6_signed_by_other_key",
            Req::new(fx.proof_by(&fx.other, |h, _| *h = fx.header())),
            deny("bad signature"),
        ),
        (
            "rfc9449_4_3_6_signature_truncated",
            Req::new({
                let mut p = fx.proof(|_, _| {});
                p.truncate(p.len() - 4);
                p
            }),
            deny("bad signature"),
        ),
        (
            "rfc9449_4_3_6_claims_tampered",
            Req::new({
                let p = fx.proof(|_, _| {});
                let mut parts: Vec<String> = p.split('.').map(String::from).collect();
                let mut claims: Value =
                    serde_json::from_slice(&zsp_core::b64::decode(&parts[1]).unwrap()).unwrap();
                claims["jti"] = json!("forged");
                parts[1] = zsp_core::b64::encode(serde_json::to_vec(&claims).unwrap());
                parts.join(".")
            }),
            deny("bad signature"),
        ),
        // Step 8: htm.
        (
            "rfc9449_4_3_8_htm_mismatch",
            Req::new(fx.proof(|_, _| {})).method(Method::GET),
            deny("htm mismatch"),
        ),
        (
            "rfc9449_4_3_8_htm_case_matters",
            Req::new(fx.proof(|_, c| c["htm"] = json!("post"))),
            deny("htm mismatch"),
        ),
        (
            "rfc9449_4_3_3_missing_htm",
            Req::new(fx.proof(|_, c| {
                c.as_object_mut().unwrap().remove("htm");
            })),
            deny("missing htm"),
        ),
        // Step 9: htu.
        (
            "rfc9449_4_3_9_htu_other_path",
            Req::new(fx.proof(|_, _| {})).htu("https://api.example/orders/2"),
            deny("htu mismatch"),
        ),
        (
            "rfc9449_4_3_9_htu_other_host",
            Req::new(fx.proof(|_, _| {})).htu("https://evil.example/orders/1"),
            deny("htu mismatch"),
        ),
        (
            "rfc9449_4_3_9_htu_other_scheme",
            Req::new(fx.proof(|_, _| {})).htu("http://api.example/orders/1"),
            deny("htu mismatch"),
        ),
        (
            "rfc9449_4_3_9_htu_other_port",
            Req::new(fx.proof(|_, _| {})).htu("https://api.example:8443/orders/1"),
            deny("htu mismatch"),
        ),
        (
            "rfc9449_4_3_9_proof_htu_with_query",
            Req::new(fx.proof(|_, c| c["htu"] = json!(format!("{HTU}?a=1")))).htu(&format!("{HTU}?a=1")),
            deny("htu has query or fragment"),
        ),
        (
            "rfc9449_4_3_9_proof_htu_with_fragment",
            Req::new(fx.proof(|_, c| c["htu"] = json!(format!("{HTU}#f")))),
            deny("htu has query or fragment"),
        ),
        (
            "rfc9449_4_3_9_htu_not_http",
            Req::new(fx.proof(|_, c| c["htu"] = json!("urn:x:y"))),
            deny("invalid htu"),
        ),
        (
            "rfc9449_4_3_3_missing_htu",
            Req::new(fx.proof(|_, c| {
                c.as_object_mut().unwrap().remove("htu");
            })),
            deny("missing htu"),
        ),
        // Step 11: iat within the window.
        (
            "rfc9449_4_3_11_stale_iat",
            Req::new(fx.proof(|_, _| {})).now(NOW + 61),
            deny("stale iat"),
        ),
        (
            "rfc9449_4_3_11_future_iat",
            Req::new(fx.proof(|_, _| {})).now(NOW - 61),
            deny("iat in the future"),
        ),
        (
            "rfc9449_4_3_11_iat_not_a_number",
            Req::new(fx.proof(|_, c| c["iat"] = json!("1700000000"))),
            deny("invalid iat"),
        ),
        (
            "rfc9449_4_3_11_negative_iat",
            Req::new(fx.proof(|_, c| c["iat"] = json!(-1))),
            deny("invalid iat"),
        ),
        (
            "rfc9449_4_3_3_missing_iat",
            Req::new(fx.proof(|_, c| {
                c.as_object_mut().unwrap().remove("iat");
            })),
            deny("missing iat"),
        ),
        (
            "rfc9449_4_3_3_missing_jti",
            Req::new(fx.proof(|_, c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
            deny("missing jti"),
        ),
        (
            "rfc9449_4_3_3_empty_jti",
            Req::new(fx.proof(|_, c| c["jti"] = json!(""))),
            deny("missing jti"),
        ),
        // Step 12: ath.
        (
            "rfc9449_4_3_12_missing_ath",
            Req::new(fx.proof(|_, c| {
                c.as_object_mut().unwrap().remove("ath");
            })),
            deny("missing ath"),
        ),
        (
            "rfc9449_4_3_12_wrong_ath",
            Req::new(fx.proof(|_, _| {})).token(Some("another.access.token")),
            deny("ath mismatch"),
        ),
        // Step 12: the key bound to the token.
        (
            "rfc9449_4_3_12_key_not_cnf_jkt",
            Req::new(fx.proof(|_, _| {})).jkt(&other_jkt),
            deny("key does not match cnf.jkt"),
        ),
        // Step 10 (§8): nonces.
        (
            "rfc9449_4_3_10_missing_nonce_when_required",
            Req::new(fx.proof(|_, _| {})).with_nonces(),
            Err(Denial::UseDpopNonce),
        ),
        (
            "rfc9449_4_3_10_stale_nonce",
            Req::new(fx.proof(|_, c| c["nonce"] = json!(nonce_stale))).with_nonces(),
            Err(Denial::UseDpopNonce),
        ),
        (
            "rfc9449_4_3_10_forged_nonce",
            Req::new(fx.proof(|_, c| c["nonce"] = json!(forged))).with_nonces(),
            Err(Denial::UseDpopNonce),
        ),
        (
            "rfc9449_4_3_10_garbage_nonce",
            Req::new(fx.proof(|_, c| c["nonce"] = json!("not-a-nonce"))).with_nonces(),
            Err(Denial::UseDpopNonce),
        ),
        (
            "rfc9449_4_3_10_nonce_checked_only_after_the_signature",
            Req::new(fx.proof_by(&fx.other, |h, c| {
                *h = fx.header();
                c["nonce"] = json!(nonce_now);
            }))
            .with_nonces(),
            deny("bad signature"),
        ),
    ];

    let mut failures = Vec::new();
    for (name, req, want) in cases {
        let req = if name.contains("cnf_jkt") || name.contains("nonce") {
            req
        } else {
            req.jkt(&es_jkt)
        };
        let got = check(&fx, req).await.map(|_| ());
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn accepting_table() {
    let fx = Fx::new();
    let nonce = fx.nonces.current(NOW);
    let es = DpopKey::from_signing_key(fx.es.clone()).unwrap();
    let ed = DpopKey::from_signing_key(fx.ed.clone()).unwrap();
    let url = "https://api.example/orders/1?page=2";
    let cases: Vec<(&str, Req, &Jkt)> = vec![
        (
            "es256_bound_token",
            Req::new(es.proof_at(&Method::POST, url, Some(TOKEN), None, NOW).unwrap()).jkt(es.thumbprint()),
            es.thumbprint(),
        ),
        (
            "eddsa_bound_token",
            Req::new(ed.proof_at(&Method::POST, url, Some(TOKEN), None, NOW).unwrap()).jkt(ed.thumbprint()),
            ed.thumbprint(),
        ),
        (
            "es256_with_nonce",
            Req::new(
                es.proof_at(&Method::POST, HTU, Some(TOKEN), Some(&nonce), NOW)
                    .unwrap(),
            )
            .with_nonces(),
            es.thumbprint(),
        ),
        (
            "eddsa_with_nonce_two_steps_later",
            Req::new(
                ed.proof_at(&Method::POST, HTU, Some(TOKEN), Some(&nonce), NOW + 120)
                    .unwrap(),
            )
            .now(NOW + 120)
            .with_nonces(),
            ed.thumbprint(),
        ),
        (
            "token_request_without_access_token",
            Req::new(
                es.proof_at(&Method::POST, "https://broker.example/token", None, None, NOW)
                    .unwrap(),
            )
            .htu("https://broker.example/token")
            .token(None),
            es.thumbprint(),
        ),
        (
            "iat_at_the_past_edge",
            Req::new(fx.proof(|_, _| {})).now(NOW + 60),
            es.thumbprint(),
        ),
        (
            "iat_at_the_future_edge",
            Req::new(fx.proof(|_, _| {})).now(NOW - 60),
            es.thumbprint(),
        ),
        (
            "fractional_iat",
            Req::new(fx.proof(|_, c| c["iat"] = json!(NOW as f64 + 0.5))),
            es.thumbprint(),
        ),
        (
            "rfc3986_6_2_htu_case_port_dot_segments",
            Req::new(fx.proof(|_, c| c["htu"] = json!("HTTPS://Example.COM:443/a/./b")))
                .htu("https://example.com/a/b"),
            es.thumbprint(),
        ),
        (
            "rfc3986_6_2_request_uri_unnormalised",
            Req::new(fx.proof(|_, c| c["htu"] = json!("https://example.com/a/b")))
                .htu("HTTPS://Example.COM:443/a/x/../b?q#f"),
            es.thumbprint(),
        ),
        (
            "rfc3986_6_2_2_percent_encoding",
            Req::new(fx.proof(|_, c| c["htu"] = json!("https://example.com/%7Euser/a%2fb")))
                .htu("https://example.com/~user/a%2Fb"),
            es.thumbprint(),
        ),
        (
            "rfc3986_6_2_3_empty_path_and_http_default_port",
            Req::new(fx.proof(|_, c| c["htu"] = json!("http://example.com"))).htu("http://EXAMPLE.com:80/"),
            es.thumbprint(),
        ),
        (
            "unknown_header_members_ignored",
            Req::new(fx.proof(|h, _| h["kid"] = json!("ignored"))),
            es.thumbprint(),
        ),
        (
            "typ_case_insensitive",
            Req::new(fx.proof(|h, _| h["typ"] = json!("DPoP+JWT"))),
            es.thumbprint(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, req, want) in cases {
        match check(&fx, req).await {
            Ok(jkt) if &jkt == want => {}
            other => failures.push(format!("{name}: got {other:?}, want Ok({want})")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn rfc9449_11_1_reused_proof_jti_is_denied() {
    let fx = Fx::new();
    let v = verifier(&fx, false);
    let req = Req::new(fx.proof(|_, _| {}));
    assert!(run(&v, &req).await.is_ok());
    assert_eq!(
        run(&v, &req).await,
        Err(Denial::InvalidDpopProof("proof replayed"))
    );
    // Still refused at the end of the window (the record outlives the iat check).
    assert_eq!(
        run(&v, &Req::new(req.headers[0].clone()).now(NOW + 60)).await,
        Err(Denial::InvalidDpopProof("proof replayed"))
    );
}

#[tokio::test]
async fn a_denied_proof_does_not_burn_its_jti() {
    let fx = Fx::new();
    let v = verifier(&fx, false);
    let proof = fx.proof(|_, _| {});
    let wrong_key = fx.jkt(&fx.other);
    let denied = run(&v, &Req::new(proof.clone()).jkt(&wrong_key)).await;
    assert_eq!(
        denied,
        Err(Denial::InvalidDpopProof("key does not match cnf.jkt"))
    );
    assert!(run(&v, &Req::new(proof).jkt(&fx.jkt(&fx.es))).await.is_ok());
}

#[tokio::test]
async fn same_jti_at_another_uri_is_a_different_record() {
    let fx = Fx::new();
    let v = verifier(&fx, false);
    let a = fx.proof(|_, c| c["jti"] = json!("same"));
    let b = fx.proof(|_, c| {
        c["jti"] = json!("same");
        c["htu"] = json!("https://api.example/orders/2");
    });
    assert!(run(&v, &Req::new(a)).await.is_ok());
    assert!(
        run(&v, &Req::new(b).htu("https://api.example/orders/2"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn rfc9449_8_nonce_from_replica_a_is_accepted_by_replica_b() {
    let replica_a = NonceIssuer::builder(SECRET).build().unwrap();
    let replica_b = NonceIssuer::builder(SECRET).build().unwrap();
    let verifier_b = DpopVerifier::builder().require_nonces(replica_b).build().unwrap();
    let client = DpopKey::generate_es256().unwrap();

    // Replica B answers use_dpop_nonce first, as a client without a nonce would see.
    let first = client
        .proof_at(&Method::GET, HTU, Some(TOKEN), None, NOW)
        .unwrap();
    let denied = verifier_b
        .verify(&[&first], &Method::GET, HTU, Some(TOKEN), None, NOW)
        .await
        .unwrap_err();
    assert_eq!(denied, Denial::UseDpopNonce);
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        verifier_b.challenge(&denied, None).unwrap(),
        r#"DPoP error="use_dpop_nonce", algs="ES256 EdDSA""#
    );
    assert!(verifier_b.fresh_nonce(NOW).is_some());

    // A nonce replica A handed out is good at replica B, with no shared storage.
    let nonce = replica_a.current(NOW);
    let proof = client
        .proof_at(&Method::GET, HTU, Some(TOKEN), Some(&nonce), NOW + 5)
        .unwrap();
    let jkt = verifier_b
        .verify(&[&proof], &Method::GET, HTU, Some(TOKEN), None, NOW + 5)
        .await
        .unwrap();
    assert_eq!(&jkt, client.thumbprint());
}

#[tokio::test]
async fn rfc9449_7_1_denials_map_to_dpop_challenges() {
    let d = Denial::InvalidDpopProof("htm mismatch");
    assert_eq!(d.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(d.error_code(), Some("invalid_dpop_proof"));
    assert_eq!(d.reason(), "invalid_dpop_proof");
    assert_eq!(
        d.dpop_challenge(Some("api"), &[Algorithm::ES256]).unwrap(),
        r#"DPoP realm="api", error="invalid_dpop_proof", algs="ES256""#
    );
    assert_eq!(Denial::UseDpopNonce.error_code(), Some("use_dpop_nonce"));
    assert_eq!(Denial::UseDpopNonce.reason(), "use_dpop_nonce");
}

#[test]
fn rfc9449_7_2_bound_token_as_bearer_is_invalid_token() {
    let d = Denial::DpopBoundTokenAsBearer;
    assert_eq!(d.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(d.error_code(), Some("invalid_token"));
    assert_eq!(d.reason(), "dpop_bound_token_as_bearer");
    assert_eq!(
        d.www_authenticate(None).unwrap(),
        r#"Bearer error="invalid_token""#
    );
}

#[derive(Debug)]
struct DownStore;

#[async_trait::async_trait]
impl ReplayGuard for DownStore {
    async fn first_use(&self, _: &str, _: UnixTime, _: UnixTime) -> Result<bool, ReplayError> {
        Err(ReplayError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn replay_store_down_denies_with_503() {
    let fx = Fx::new();
    let v = DpopVerifier::builder()
        .replay_guard(Arc::new(DownStore))
        .build()
        .unwrap();
    let got = run(&v, &Req::new(fx.proof(|_, _| {}))).await.unwrap_err();
    assert_eq!(got, Denial::StoreUnavailable("replay"));
    assert_eq!(got.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn iat_window_is_configurable() {
    let fx = Fx::new();
    let v = DpopVerifier::builder()
        .iat_window(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = run(&v, &Req::new(fx.proof(|_, _| {})).now(NOW + 6)).await;
    assert_eq!(r, Err(Denial::InvalidDpopProof("stale iat")));
    assert!(run(&v, &Req::new(fx.proof(|_, _| {})).now(NOW + 5)).await.is_ok());
}

#[test]
fn rfc7638_3_1_published_thumbprint() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(&jwk).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

mod presentation {
    //! The scheme and binding rules around a verified token (RFC 9449 §7.1, §7.2), as the
    //! inbound layer applies them through `DpopVerifier::verify_presentation`.

    use super::*;
    use http::HeaderMap;
    use zsp_core::dpop::{DPOP, DpopMode, TokenScheme};
    use zsp_core::testing::TestIssuer;
    use zsp_core::{Grant, ManualClock, Policy, RequestFacts, RouteRule, Verifier};

    const URL: &str = "https://api.example/r";

    struct Setup {
        issuer: TestIssuer,
        verifier: Verifier,
        client: DpopKey,
    }

    fn setup() -> Setup {
        let clock = ManualClock::new(NOW);
        let issuer = TestIssuer::es256("https://broker.example").with_clock(clock.clone());
        let policy = Policy::builder()
            .issuer("https://broker.example")
            .audience("api")
            .route(RouteRule::get("/r").all_of(["s"]))
            .build()
            .unwrap();
        let verifier = Verifier::builder(policy, issuer.key_set())
            .clock(clock)
            .audit(false)
            .build();
        Setup {
            issuer,
            verifier,
            client: DpopKey::generate_es256().unwrap(),
        }
    }

    async fn grant(s: &Setup, bound_to: Option<&DpopKey>) -> Grant {
        let b = s.issuer.token("api", &["s"]);
        let b = match bound_to {
            Some(k) => b.jkt(k.thumbprint().as_str()),
            None => b,
        };
        let token = b.mint().unwrap();
        s.verifier
            .verify(&token, &RequestFacts::new(&Method::GET, "/r"))
            .await
            .unwrap()
    }

    fn headers(proof: Option<String>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(p) = proof {
            h.insert(DPOP, p.parse().unwrap());
        }
        h
    }

    async fn present(
        mode: DpopMode,
        scheme: TokenScheme,
        grant: &Grant,
        h: &HeaderMap,
    ) -> Result<Option<Jkt>, Denial> {
        let v = DpopVerifier::builder().mode(mode).build().unwrap();
        v.verify_presentation(scheme, grant, h, &Method::GET, URL, NOW)
            .await
    }

    #[tokio::test]
    async fn rfc9449_7_1_bound_token_with_its_proof_is_accepted() {
        let s = setup();
        let g = grant(&s, Some(&s.client)).await;
        let proof = s
            .client
            .proof_at(&Method::GET, URL, Some(g.token()), None, NOW)
            .unwrap();
        let got = present(DpopMode::Required, TokenScheme::Dpop, &g, &headers(Some(proof))).await;
        assert_eq!(got.unwrap().as_ref(), Some(s.client.thumbprint()));
    }

    #[tokio::test]
    async fn rfc9449_7_2_bound_token_sent_as_bearer_is_denied() {
        let s = setup();
        let g = grant(&s, Some(&s.client)).await;
        let proof = s
            .client
            .proof_at(&Method::GET, URL, Some(g.token()), None, NOW)
            .unwrap();
        for h in [headers(None), headers(Some(proof))] {
            let got = present(DpopMode::Optional, TokenScheme::Bearer, &g, &h).await;
            assert_eq!(got, Err(Denial::DpopBoundTokenAsBearer));
        }
    }

    #[tokio::test]
    async fn stolen_bound_token_without_the_key_is_denied() {
        let s = setup();
        let g = grant(&s, Some(&s.client)).await;
        // No proof at all.
        let got = present(DpopMode::Optional, TokenScheme::Dpop, &g, &headers(None)).await;
        assert_eq!(got, Err(Denial::InvalidDpopProof("missing DPoP header")));
        // A proof from the thief's own key.
        let thief = DpopKey::generate_es256().unwrap();
        let proof = thief
            .proof_at(&Method::GET, URL, Some(g.token()), None, NOW)
            .unwrap();
        let got = present(DpopMode::Optional, TokenScheme::Dpop, &g, &headers(Some(proof))).await;
        assert_eq!(got, Err(Denial::InvalidDpopProof("key does not match cnf.jkt")));
        // The right key's proof for another token (ath).
        let other = grant(&s, Some(&s.client)).await;
        let proof = s
            .client
            .proof_at(&Method::GET, URL, Some(other.token()), None, NOW)
            .unwrap();
        let got = present(DpopMode::Optional, TokenScheme::Dpop, &g, &headers(Some(proof))).await;
        assert_eq!(got, Err(Denial::InvalidDpopProof("ath mismatch")));
    }

    #[tokio::test]
    async fn unbound_tokens_follow_the_mode() {
        let s = setup();
        let g = grant(&s, None).await;
        assert_eq!(
            present(DpopMode::Optional, TokenScheme::Bearer, &g, &headers(None)).await,
            Ok(None)
        );
        assert_eq!(
            present(DpopMode::Required, TokenScheme::Bearer, &g, &headers(None)).await,
            Err(Denial::SenderConstraintRequired)
        );
        let proof = s
            .client
            .proof_at(&Method::GET, URL, Some(g.token()), None, NOW)
            .unwrap();
        let got = present(DpopMode::Optional, TokenScheme::Dpop, &g, &headers(Some(proof))).await;
        assert_eq!(got, Err(Denial::InvalidClaim("cnf")));
        assert_eq!(got.unwrap_err().error_code(), Some("invalid_token"));
    }

    #[test]
    fn authorization_schemes_parse_strictly() {
        assert_eq!(
            TokenScheme::parse("DPoP a.b.c"),
            Some((TokenScheme::Dpop, "a.b.c"))
        );
        assert_eq!(
            TokenScheme::parse("dpop a.b.c"),
            Some((TokenScheme::Dpop, "a.b.c"))
        );
        assert_eq!(
            TokenScheme::parse("Bearer a.b.c"),
            Some((TokenScheme::Bearer, "a.b.c"))
        );
        for bad in [
            "DPoP",
            "DPoP ",
            "DPoP  a",
            "DPoP a b",
            "Basic a",
            "DPoPa.b.c",
            "Bearer a\"b",
            "Bearer =",
        ] {
            assert_eq!(TokenScheme::parse(bad), None, "{bad:?}");
        }
    }
}
