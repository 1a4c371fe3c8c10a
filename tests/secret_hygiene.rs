//! Secret hygiene (DESIGN.md invariant 6): a full quickstart-like run — broker, API and client
//! over real sockets on 127.0.0.1, with an allow, a scope denial, a revocation, a replay and a
//! private_key_jwt client — with ALL tracing output captured at TRACE level, every target. No
//! token, client secret or private key material may appear in it.
//!
//! The capture is the test's default subscriber (`set_default`), not a global one, so it cannot
//! clash with other test binaries' subscribers. This file holds exactly one test and runs it on
//! a current-thread runtime, so every task (servers, client connections, background refreshes)
//! runs on the thread that owns the subscriber and nothing escapes the capture.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use axum::Router;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tower::{ServiceBuilder, ServiceExt};
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::axum::extract::{Auth, verify_layer};
use zsp::core::jwks::RemoteJwks;
use zsp::core::{
    Algorithm, KeySet, MemoryReplayGuard, MemoryRevocation, Policy, Revocation, RouteRule, SigningKey,
    Verifier,
};
use zsp::tower::outbound::{
    AttachLayer, CachedTokenSource, ClientCredentials, ReqwestService, TokenEndpoint, TokenRequest,
    TokenSource,
};

const FRONTEND_SECRET: &str = "frontend-hygiene-secret-0123456789abcdef0123456789abcdef";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Key material in every form it could leak in: the PKCS#8 DER as a PEM body (and each PEM
/// line), and the private scalar as a JWK `d` (base64url) and as hex.
fn key_material(der: &[u8], scalar: &[u8]) -> Vec<String> {
    let pem_body = STANDARD.encode(der);
    let mut out: Vec<String> = pem_body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .filter(|l| l.len() >= 16)
        .collect();
    out.push(pem_body);
    out.push(URL_SAFE_NO_PAD.encode(scalar));
    out.push(scalar.iter().map(|b| format!("{b:02x}")).collect());
    out
}

/// The 32-byte private scalar inside a PKCS#8 document: the OCTET STRING that follows
/// `version 0|1` (Ed25519: `04 20` after the algorithm; P-256: inside ECPrivateKey `02 01 01 04 20`).
fn scalar_after(der: &[u8], marker: &[u8]) -> Vec<u8> {
    let at = der
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in PKCS#8")
        + marker.len();
    der[at..at + 32].to_vec()
}

fn ed25519_key(kid: &str) -> (SigningKey, Vec<String>) {
    // PKCS#8 v1, the form SigningKey (jsonwebtoken) reads.
    let der = Ed25519KeyPair::generate()
        .unwrap()
        .to_pkcs8v1()
        .unwrap()
        .as_ref()
        .to_vec();
    // OID 1.3.101.112, then OCTET STRING(34) { OCTET STRING(32) seed }.
    let seed = scalar_after(&der, &[0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
    let key = SigningKey::from_der(kid, Algorithm::EdDSA, &der).unwrap();
    (key, key_material(&der, &seed))
}

fn es256_key(kid: &str) -> (SigningKey, Vec<String>) {
    let der = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .unwrap()
        .to_pkcs8v1()
        .unwrap()
        .as_ref()
        .to_vec();
    let d = scalar_after(&der, &[0x02, 0x01, 0x01, 0x04, 0x20]);
    let key = SigningKey::from_der(kid, Algorithm::ES256, &der).unwrap();
    (key, key_material(&der, &d))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_run_logs_no_token_secret_or_key_material() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let mut secrets: Vec<String> = vec![
        FRONTEND_SECRET.to_owned(),
        STANDARD.encode(format!("frontend:{FRONTEND_SECRET}")),
    ];

    // Broker: a secret client and a private_key_jwt client, a known signing key, and the
    // revocation store it shares with the API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_url = format!("http://{}", listener.local_addr().unwrap());
    let (broker_key, broker_material) = es256_key("broker-1");
    secrets.extend(broker_material);
    let (client_key, client_material) = ed25519_key("orders-svc-1");
    secrets.extend(client_material);
    let policy = BrokerPolicy::builder(&broker_url)
        .max_ttl(Duration::from_secs(60))
        .client(
            ClientPolicy::with_secret("frontend", FRONTEND_SECRET)
                .audience("orders-api")
                .scopes(&["orders:read", "orders:write"]),
        )
        .client(
            ClientPolicy::with_keys(
                "orders-svc",
                KeySet::from_keys([client_key.verifying_key().unwrap()]),
            )
            .audience("orders-api")
            .scopes(&["orders:read"]),
        )
        .build()
        .unwrap();
    let revocation = Arc::new(MemoryRevocation::default());
    let broker = Broker::builder(policy)
        .signing_key(broker_key)
        .revocation(revocation.clone())
        .build()
        .unwrap();
    let router = broker.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    // API: keys from the broker's JWKS, the shared revocation store, a single-use route.
    let api_policy = Policy::builder()
        .issuer(broker_url.clone())
        .audience("orders-api")
        .require_at_jwt(true)
        .route(RouteRule::get("/orders").all_of(["orders:read"]))
        .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
        .build()
        .unwrap();
    let jwks = RemoteJwks::builder()
        .jwks_uri(format!("{broker_url}/.well-known/jwks.json"))
        .build()
        .unwrap();
    let verifier = Verifier::builder(api_policy, Arc::new(jwks))
        .revocation(revocation.clone() as Arc<dyn Revocation>)
        .replay_guard(Arc::new(MemoryReplayGuard::new(1000)))
        .build();
    let api = serve(
        Router::new()
            .route(
                "/orders",
                get(|Auth(g): Auth| async move { format!("hello {}", g.subject().unwrap_or("-")) }),
            )
            .route("/orders", post(|Auth(_): Auth| async { "created" }))
            .layer(verify_layer(verifier)),
    )
    .await;

    // Client: client_secret_basic, cached, attached to every request.
    let frontend = ClientCredentials::new(
        TokenEndpoint::builder()
            .token_endpoint(format!("{broker_url}/token"))
            .client_id("frontend")
            .client_secret_basic(FRONTEND_SECRET)
            .allow_insecure_http(true)
            .build()
            .unwrap(),
    );
    let read = TokenRequest::new("orders-api").scopes(["orders:read"]);
    let cache = CachedTokenSource::builder(frontend.clone()).build();
    let svc = ServiceBuilder::new()
        .layer(AttachLayer::new(cache.clone(), read.clone()))
        .service(ReqwestService::new(reqwest::Client::new()));
    let req = |method: http::Method| {
        http::Request::builder()
            .method(method)
            .uri(format!("{api}/orders"))
            .body(reqwest::Body::from(""))
            .unwrap()
    };

    // Allow.
    let resp = svc.clone().oneshot(req(http::Method::GET)).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Denial: a read token on the write route.
    let resp = svc.clone().oneshot(req(http::Method::POST)).await.unwrap();
    assert_eq!(resp.status(), 403);
    let read_token = cache.token(&read).await.unwrap();
    secrets.push(read_token.secret().to_owned());

    // Single use: a write token accepted once, its replay refused.
    let write = frontend
        .token(&TokenRequest::new("orders-api").scopes(["orders:write"]))
        .await
        .unwrap();
    secrets.push(write.secret().to_owned());
    let http = reqwest::Client::new();
    let send = |token: &str, method: reqwest::Method| {
        http.request(method, format!("{api}/orders"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    assert_eq!(
        send(write.secret(), reqwest::Method::POST)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(write.secret(), reqwest::Method::POST)
            .await
            .unwrap()
            .status(),
        401
    );

    // Revocation through the broker's RFC 7009 endpoint, then the revoked token is refused.
    let revoke = http
        .post(format!("{broker_url}/revoke"))
        .basic_auth("frontend", Some(FRONTEND_SECRET))
        .form(&[("token", read_token.secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    assert_eq!(
        send(read_token.secret(), reqwest::Method::GET)
            .await
            .unwrap()
            .status(),
        401
    );
    // The client's cached token is now revoked: AttachLayer drops it on the 401 and retries.
    let resp = svc.clone().oneshot(req(http::Method::GET)).await.unwrap();
    assert_eq!(resp.status(), 200);
    secrets.push(cache.token(&read).await.unwrap().secret().to_owned());

    // private_key_jwt client.
    let orders_svc = ClientCredentials::new(
        TokenEndpoint::builder()
            .token_endpoint(format!("{broker_url}/token"))
            .client_id("orders-svc")
            .private_key_jwt(client_key)
            .allow_insecure_http(true)
            .build()
            .unwrap(),
    );
    let pkj = orders_svc.token(&read).await.unwrap();
    secrets.push(pkj.secret().to_owned());
    assert_eq!(
        send(pkj.secret(), reqwest::Method::GET).await.unwrap().status(),
        200
    );
    // A wrong secret is refused, and the refused secret is not logged either.
    let wrong = "wrong-secret-that-must-not-be-logged-0123456789abcdef";
    secrets.push(wrong.to_owned());
    let refused = ClientCredentials::new(
        TokenEndpoint::builder()
            .token_endpoint(format!("{broker_url}/token"))
            .client_id("frontend")
            .client_secret_post(wrong)
            .allow_insecure_http(true)
            .build()
            .unwrap(),
    );
    assert!(refused.token(&read).await.is_err());

    drop(_default);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture really saw the run: audit events for allows and denials, token fetches.
    assert!(logs.contains("zsp::audit"), "no audit events captured");
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "capture is not at TRACE"
    );
    assert!(logs.lines().count() > 20, "suspiciously little output:\n{logs}");

    assert!(secrets.len() >= 12);
    for s in &secrets {
        assert!(s.len() >= 16, "needle too short to be meaningful");
        assert!(
            !logs.contains(s.as_str()),
            "secret material in the logs: {}…",
            &s[..8]
        );
        // A JWT's signature alone identifies (and, with the rest public, reconstitutes) it.
        if let Some(sig) = s.rsplit('.').next().filter(|_| s.matches('.').count() == 2) {
            assert!(!logs.contains(sig), "a token signature reached the logs");
        }
    }
}
