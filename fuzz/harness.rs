//! The fuzz harness, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus regression test (`tests/fuzz_corpus.rs`), so both feed bytes to exactly the same code.
//!
//! Every entry point takes arbitrary bytes and must not panic; where a stronger property holds
//! for all inputs (nothing the fuzzer cannot sign ever verifies; a signed token that verifies
//! kept the trusted algorithm), the harness asserts it, so a violation is a crash too.
//!
//! Structure-aware modes: a JWS is three base64url segments around JSON, which a byte-level
//! fuzzer reaches slowly. The first input byte therefore picks a mode: raw text, three raw
//! segments that the harness base64url-encodes, or header and payload JSON that the harness
//! signs with the trusted key, which takes the fuzzer past the signature into claim checks.
//! Segments are separated by 0xFF, a byte that never occurs in UTF-8 text. Layout of a JWS
//! input: mode byte (low 7 bits mod 3 pick the mode, the top bit the key), selector byte
//! (request or verifier flags), then the token material.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use http::Method;
use serde_json::Value;
use zsp_core::dpop::{DpopVerifier, NonceIssuer};
use zsp_core::mint::SigningKey;
use zsp_core::testing::{TestIssuer, sign_raw_with};
use zsp_core::{
    Algorithm, DpopKey, KeySet, ManualClock, MemoryReplayGuard, MemoryRevocation, Policy, PolicyConfig,
    RequestFacts, RouteRule, Verifier,
};

/// The fixed "now" of every harness clock, so seeds with literal `iat`/`exp` stay meaningful.
pub const NOW: u64 = 1_700_000_000;
/// The issuer every harness verifier trusts.
pub const ISSUER: &str = "https://fuzz.test";
/// The audience every harness verifier expects.
pub const AUDIENCE: &str = "api";
/// The request URI DPoP proofs are checked against.
pub const HTU: &str = "https://api.test/r";
/// The access token DPoP proofs may be bound to (`ath`).
pub const ACCESS_TOKEN: &str = "fuzz-access-token";
/// In the authorization target, replaced by a valid token for `GET /r`.
pub const TOKEN_PLACEHOLDER: &str = "$TOKEN";

const SEP: u8 = 0xFF;

struct Jws {
    es256: TestIssuer,
    ed25519: TestIssuer,
    keys: Arc<KeySet>,
    policy: Policy,
    rt: tokio::runtime::Runtime,
}

impl Jws {
    /// A verifier with fresh stores: an input's outcome must not depend on the inputs before
    /// it, or crashes would not reproduce.
    fn verifier(&self) -> Verifier {
        Verifier::builder(self.policy.clone(), self.keys.clone())
            .clock(ManualClock::new(NOW))
            .replay_guard(Arc::new(MemoryReplayGuard::new(16)))
            .revocation(Arc::new(MemoryRevocation::default()))
            .audit(false)
            .build()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // A harness without a runtime cannot run at all: failing loudly here is the right outcome.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

fn policy() -> Policy {
    Policy::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .route(RouteRule::get("/r").all_of(["read"]))
        .route(RouteRule::post("/once").all_of(["write"]).single_use())
        .route(RouteRule::any("/any/{*rest}").any_of(["read", "write"]))
        .build()
        .unwrap_or_else(|e| panic!("harness policy: {e}"))
}

fn jws_state() -> &'static Jws {
    static S: OnceLock<Jws> = OnceLock::new();
    S.get_or_init(|| {
        let clock = ManualClock::new(NOW);
        let es256 = TestIssuer::es256(ISSUER).with_clock(clock.clone());
        let ed25519 = TestIssuer::ed25519(ISSUER).with_clock(clock.clone());
        let mut keys = es256.key_set();
        for k in ed25519.key_set().iter() {
            keys.push(k.clone());
        }
        Jws {
            es256,
            ed25519,
            keys: Arc::new(keys),
            policy: policy(),
            rt: runtime(),
        }
    })
}

fn split3(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut it = data.splitn(3, |b| *b == SEP);
    Some((it.next()?, it.next()?, it.next().unwrap_or_default()))
}

/// Builds a compact JWS from a mode byte and the rest of the input; `sign` signs header and
/// payload JSON with a trusted key.
fn build_jws(data: &[u8], mut sign: impl FnMut(u8, &Value, &Value) -> String) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    // The second byte selects the request (or flags); the token starts at the third.
    let rest = rest.get(1..)?;
    match (mode & 0x7F) % 3 {
        0 => Some(String::from_utf8_lossy(rest).into_owned()),
        1 => {
            let (h, p, s) = split3(rest)?;
            Some(format!(
                "{}.{}.{}",
                zsp_core::b64::encode(h),
                zsp_core::b64::encode(p),
                zsp_core::b64::encode(s)
            ))
        }
        _ => {
            let (h, p, _) = split3(rest)?;
            let h: Value = serde_json::from_slice(h).ok()?;
            let p: Value = serde_json::from_slice(p).ok()?;
            Some(sign(mode, &h, &p))
        }
    }
}

fn request_for(selector: u8) -> (Method, &'static str) {
    match selector % 4 {
        0 => (Method::GET, "/r"),
        1 => (Method::POST, "/once"),
        2 => (Method::DELETE, "/any/x/y"),
        _ => (Method::GET, "/unrouted"),
    }
}

/// Compact JWS parse + verify against a key set of one ES256 and one EdDSA key.
/// Returns whether the token verified.
pub fn jws(data: &[u8]) -> bool {
    let s = jws_state();
    let mut signed_alg = None;
    let Some(token) = build_jws(data, |mode, h, p| {
        let issuer = if mode & 0x80 == 0 { &s.es256 } else { &s.ed25519 };
        signed_alg = Some(issuer.key().algorithm());
        sign_raw_with(issuer.key(), h, p)
    }) else {
        return false;
    };
    let (method, path) = request_for(data.get(1).copied().unwrap_or(0));
    let verifier = s.verifier();
    let result =
        s.rt.block_on(verifier.verify(&token, &RequestFacts::new(&method, path)));
    let Ok(grant) = result else { return false };
    // Only the harness holds the private keys: anything that verifies was signed here.
    let Some(alg) = signed_alg else {
        panic!("unsigned input verified: {token:?}");
    };
    // The algorithm comes from the key: a verified token's header names that algorithm.
    let header = token.split('.').next().unwrap_or_default();
    let header: Value = zsp_core::b64::decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some(zsp_core::mint::alg_name(alg)),
        "verified with an algorithm other than the key's"
    );
    assert_eq!(grant.issuer(), ISSUER);
    let leeway = verifier.policy().leeway_secs();
    assert!(
        grant.expires_at().saturating_add(leeway) > NOW,
        "expired token verified"
    );
    assert!(
        grant.expires_at().saturating_sub(grant.issued_at()) <= verifier.policy().max_lifetime_secs(),
        "standing token verified"
    );
    true
}

/// JWKS documents: `KeySet::from_jwks` (with and without an RSA default) and RFC 7638
/// thumbprints of every member.
/// Returns whether a key set was accepted.
pub fn jwks(data: &[u8]) -> bool {
    let mut accepted = false;
    for rsa_default in [None, Some(Algorithm::RS256)] {
        if let Ok(set) = KeySet::from_jwks(data, rsa_default) {
            accepted = true;
            assert!(!set.is_empty(), "an empty key set was accepted");
            for k in set.iter() {
                // A garbage signature against a parsed key must be a clean `false`.
                assert!(!k.verify(b"a.b", &[0u8; 64]));
                let _ = set.get(k.kid());
            }
        }
    }
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        let _ = zsp_core::dpop::jwk_thumbprint(&doc);
        if let Some(keys) = doc.get("keys").and_then(Value::as_array) {
            for k in keys {
                let _ = zsp_core::dpop::jwk_thumbprint(k);
            }
        }
    }
    accepted
}

struct Dpop {
    key: SigningKey,
    public_jwk: Value,
    jkt: String,
    nonces: NonceIssuer,
    rt: tokio::runtime::Runtime,
}

impl Dpop {
    /// A verifier with a fresh replay guard, so outcomes do not depend on earlier inputs.
    fn verifier(&self, with_nonces: bool) -> DpopVerifier {
        let mut b = DpopVerifier::builder().replay_guard(Arc::new(MemoryReplayGuard::new(16)));
        if with_nonces {
            b = b.require_nonces(self.nonces.clone());
        }
        b.build().unwrap_or_else(|e| panic!("dpop verifier: {e}"))
    }
}

fn dpop_state() -> &'static Dpop {
    static S: OnceLock<Dpop> = OnceLock::new();
    S.get_or_init(|| {
        let key = SigningKey::generate_es256("dpop").unwrap_or_else(|e| panic!("dpop key: {e}"));
        let dk = DpopKey::from_signing_key(key.clone()).unwrap_or_else(|e| panic!("dpop key: {e}"));
        let nonces = NonceIssuer::builder(b"fuzz-nonce-secret-of-at-least-32-bytes!!")
            .build()
            .unwrap_or_else(|e| panic!("nonce issuer: {e}"));
        Dpop {
            public_jwk: dk.public_jwk().clone(),
            jkt: dk.thumbprint().as_str().to_owned(),
            key,
            nonces,
            rt: runtime(),
        }
    })
}

/// DPoP proofs: `DpopVerifier::verify` with and without nonces, bound and unbound.
/// Returns whether the proof verified.
pub fn dpop(data: &[u8]) -> bool {
    let s = dpop_state();
    let mut signed = false;
    let Some(proof) = build_jws(data, |_, h, p| {
        signed = true;
        let mut h = h.clone();
        // The proof carries its own key; supply the harness key unless the input brings one,
        // so signed inputs get past the signature to the claim checks.
        if let Some(obj) = h.as_object_mut() {
            obj.entry("jwk").or_insert_with(|| s.public_jwk.clone());
        }
        let mut p = p.clone();
        if let Some(obj) = p.as_object_mut() {
            if obj.get("nonce").and_then(Value::as_str) == Some("$NONCE") {
                obj.insert("nonce".into(), Value::String(s.nonces.current(NOW)));
            }
            if obj.get("ath").and_then(Value::as_str) == Some("$ATH") {
                obj.insert(
                    "ath".into(),
                    Value::String(zsp_core::dpop::access_token_hash(ACCESS_TOKEN)),
                );
            }
        }
        sign_raw_with(&s.key, &h, &p)
    }) else {
        return false;
    };
    let flags = data.get(1).copied().unwrap_or(0);
    let verifier = s.verifier(flags & 1 == 1);
    let (token, jkt) = if flags & 2 == 0 {
        (None, None)
    } else {
        (Some(ACCESS_TOKEN), Some(s.jkt.as_str()))
    };
    let method = if flags & 4 == 0 { Method::GET } else { Method::POST };
    let result =
        s.rt.block_on(verifier.verify(&[proof.as_str()], &method, HTU, token, jkt, NOW));
    if std::env::var_os("HARNESS_DEBUG").is_some() {
        eprintln!("dpop: {result:?}");
    }
    if let Ok(got) = result {
        assert!(signed, "an unsigned proof verified: {proof:?}");
        assert_eq!(
            got.as_str(),
            s.jkt,
            "a proof verified under a key the harness does not hold"
        );
        return true;
    }
    false
}

/// Token endpoint responses: the parser `TokenEndpoint` applies to 2xx and error bodies.
/// Returns whether a token was parsed.
pub fn token_response(data: &[u8]) -> bool {
    let status = match data.first().copied().unwrap_or(0) % 4 {
        0 | 1 => 200,
        2 => 400,
        _ => 401,
    };
    let body = data.get(1..).unwrap_or_default();
    match zsp_tower::fuzzing::parse_token_response(status, body, NOW, 60) {
        Ok(tok) => {
            assert!(tok.expires_at() >= tok.issued_at());
            // Invariant 6: the token never reaches Debug output. Only long alphanumeric tokens
            // are checked, so a token that happens to spell a field name is not a finding.
            let secret = tok.secret();
            let debug = format!("{tok:?}");
            let scope_has_it = tok.scope().is_some_and(|s| s.iter().any(|x| x.contains(secret)));
            if secret.len() >= 24 && secret.bytes().all(|b| b.is_ascii_alphanumeric()) && !scope_has_it {
                assert!(!debug.contains(secret), "token in Debug output");
            }
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

struct Authz {
    layer: zsp_tower::VerifyLayer,
    token: String,
    rt: tokio::runtime::Runtime,
}

fn authz_state() -> &'static Authz {
    static S: OnceLock<Authz> = OnceLock::new();
    S.get_or_init(|| {
        let clock = ManualClock::new(NOW);
        let issuer = TestIssuer::es256(ISSUER).with_clock(clock.clone());
        let verifier = Verifier::builder(policy(), issuer.key_set())
            .clock(clock)
            .audit(false)
            .build();
        let token = issuer
            .token(AUDIENCE, &["read"])
            .mint()
            .unwrap_or_else(|e| panic!("harness token: {e}"));
        Authz {
            layer: zsp_tower::VerifyLayer::new(verifier),
            token,
            rt: runtime(),
        }
    })
}

/// Authorization header parsing, through `VerifyLayer` in front of a handler that always
/// answers 200. Input: Authorization values (newline separated, each one header) 0xFF query
/// string 0xFF DPoP header. `$TOKEN` stands for a valid token for `GET /r`.
/// Returns whether the request was let through.
pub fn authorization(data: &[u8]) -> bool {
    use tower::{Layer, ServiceExt};
    let s = authz_state();
    let mut parts = data.splitn(3, |b| *b == SEP);
    let authz = parts.next().unwrap_or_default();
    let query = parts.next();
    let dpop = parts.next();

    let uri = match query {
        Some(q) => format!("/r?{}", String::from_utf8_lossy(q)),
        None => "/r".to_owned(),
    };
    let Ok(mut req) = http::Request::get(uri.as_str()).body(http_body_util::Empty::<bytes::Bytes>::new())
    else {
        return false;
    };
    let mut values = 0usize;
    if !authz.is_empty() {
        for line in authz.split(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line).replace(TOKEN_PLACEHOLDER, &s.token);
            let Ok(v) = http::HeaderValue::from_bytes(line.as_bytes()) else {
                return false;
            };
            req.headers_mut().append(http::header::AUTHORIZATION, v);
            values += 1;
        }
    }
    if let Some(d) = dpop {
        let Ok(v) = http::HeaderValue::from_bytes(d) else {
            return false;
        };
        req.headers_mut().append("dpop", v);
    }
    let query_owned = req.uri().query().map(str::to_owned);
    let auth_value = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let svc = s.layer.layer(tower::service_fn(|_req: http::Request<_>| async {
        // The response body must be buildable from a denial's bytes.
        Ok::<_, std::convert::Infallible>(http::Response::new(
            http_body_util::Full::new(bytes::Bytes::new()),
        ))
    }));
    let resp = match s.rt.block_on(svc.oneshot(req)) {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if resp.status() == http::StatusCode::OK {
        // Allowed only with one Authorization header carrying the valid token, and never with
        // a token in the query string (RFC 6750 §2.3 is refused outright).
        assert_eq!(values, 1, "allowed with {values} Authorization headers");
        assert!(
            auth_value.is_some_and(|v| v.contains(&s.token)),
            "allowed without the valid token"
        );
        assert!(
            !query_owned.is_some_and(|q| query_names_access_token(&q)),
            "allowed with access_token in the query"
        );
        true
    } else {
        assert!(resp.status().is_client_error() || resp.status().is_server_error());
        false
    }
}

/// Whether any query parameter is named `access_token` once decoded the lenient way
/// application frameworks (form_urlencoded) decode it: `%XX` with two hex digits is a byte,
/// `+` a space, and anything else, stray `%` included, stays literal. An independent oracle
/// for the layer's own check, which must catch at least these.
fn query_names_access_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n).as_bytes();
        let mut out = Vec::with_capacity(name.len());
        let mut i = 0;
        while i < name.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match name[i] {
                b'%' => match (
                    name.get(i + 1).and_then(|b| hex(*b)),
                    name.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                },
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out == b"access_token"
    })
}

struct PolicyState {
    token: String,
    rt: tokio::runtime::Runtime,
    keys: KeySet,
}

fn policy_state() -> &'static PolicyState {
    static S: OnceLock<PolicyState> = OnceLock::new();
    S.get_or_init(|| {
        let issuer = TestIssuer::es256(ISSUER).with_clock(ManualClock::new(NOW));
        let token = issuer
            .token(AUDIENCE, &["read", "write"])
            .mint()
            .unwrap_or_else(|e| panic!("harness token: {e}"));
        PolicyState {
            token,
            rt: runtime(),
            keys: issuer.key_set(),
        }
    })
}

/// Policy files: `PolicyConfig` from JSON and TOML (and, when it builds, one verification under
/// it, so extreme limits meet real arithmetic), and the broker's `BrokerPolicy::from_toml`.
/// Returns whether any of the three readings built a policy.
pub fn policy_file(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut accepted = false;
    let s = policy_state();
    let json = serde_json::from_str::<PolicyConfig>(text).ok();
    let toml = toml::from_str::<PolicyConfig>(text).ok();
    for cfg in json.iter().chain(toml.iter()) {
        let Ok(policy) = cfg.build() else { continue };
        accepted = true;
        // No configuration turns tokens into standing credentials.
        assert!(policy.leeway_secs() <= 300, "unbounded leeway accepted");
        assert!((1..=86_400).contains(&policy.max_lifetime_secs()));
        for (m, p) in [
            (Method::GET, "/r"),
            (Method::POST, "/orders/1"),
            (Method::GET, "/files/a/b/c"),
            (Method::GET, ""),
        ] {
            let _ = policy.route_for(&m, p);
        }
        let verifier = Verifier::builder(policy, s.keys.clone())
            .clock(ManualClock::new(NOW))
            .audit(false)
            .build();
        let m = Method::GET;
        let _ =
            s.rt.block_on(verifier.verify(&s.token, &RequestFacts::new(&m, "/r")));
    }
    if let Ok(bp) = zsp_axum::broker::BrokerPolicy::from_toml(text) {
        assert!(!bp.issuer().is_empty());
        assert!(bp.max_ttl().as_secs() >= 1);
        accepted = true;
    }
    accepted
}

/// A harness entry point: bytes in, whether the input was accepted out.
pub type Target = fn(&[u8]) -> bool;

/// Every target by its directory name under `fuzz/corpus/`.
struct Es256 {
    signer: aws_lc_rs::signature::EcdsaKeyPair,
    key: zsp_core::VerifyingKey,
    aws: aws_lc_rs::signature::ParsedPublicKey,
}

fn es256_state() -> &'static Es256 {
    use aws_lc_rs::signature::{self as sig, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    static S: OnceLock<Es256> = OnceLock::new();
    S.get_or_init(|| {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = signer.public_key().as_ref().to_vec();
        let jwk: zsp_core::keys::Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": zsp_core::b64::encode(&public[1..33]),
            "y": zsp_core::b64::encode(&public[33..65]),
        }))
        .unwrap();
        let key = zsp_core::VerifyingKey::from_jwk(&jwk, None).unwrap();
        // Use the key until it has its precomputed table (zsp-core builds it after 32 uses),
        // so that what follows exercises the table, not aws-lc-rs.
        let msg = b"warm-up";
        let good = signer.sign(&rng, msg).unwrap();
        for _ in 0..64 {
            assert!(key.verify(msg, good.as_ref()));
        }
        let aws = sig::ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, public).unwrap();
        Es256 { signer, key, aws }
    })
}

/// ES256 through a key with its precomputed table (`p256_comb`) against aws-lc-rs on the same
/// key: the verdicts must agree for every input. Layout: mode byte, 64 signature bytes, the
/// message. Mode bit 0 set: the 64 bytes are XORed onto a real signature of the message, so
/// the fuzzer explores signatures near valid ones (all zeros give the valid signature itself);
/// clear: the bytes are the signature as they are. Returns the verdict.
pub fn es256_table(data: &[u8]) -> bool {
    let st = es256_state();
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    if rest.len() < 64 {
        return false;
    }
    let (bytes, msg) = rest.split_at(64);
    let signature: Vec<u8> = if mode & 1 == 1 {
        let real = st
            .signer
            .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
            .unwrap();
        real.as_ref().iter().zip(bytes).map(|(a, b)| a ^ b).collect()
    } else {
        bytes.to_vec()
    };
    let ours = st.key.verify(msg, &signature);
    let theirs = st.aws.verify_sig(msg, &signature).is_ok();
    assert_eq!(
        ours, theirs,
        "ES256 verdicts differ between the table and aws-lc-rs"
    );
    ours
}

pub const TARGETS: &[(&str, Target)] = &[
    ("jws", jws),
    ("jwks", jwks),
    ("dpop", dpop),
    ("token_response", token_response),
    ("authorization", authorization),
    ("policy", policy_file),
    ("es256_table", es256_table),
];
