//! DPoP (RFC 9449) end to end over real sockets on 127.0.0.1: a zsp broker that binds tokens
//! to the client's key, APIs behind `VerifyLayer` with a `DpopVerifier`, and a client built
//! from `AttachLayer` + `ReqwestService`. Tokens and proofs are taken off the wire and
//! replayed the way an attacker would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Extension;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::axum::extract::verify_layer;
use zsp::core::dpop::{DPOP, DPOP_NONCE, DpopKey, DpopMode, DpopVerifier, NonceIssuer};
use zsp::core::{Grant, KeySet, Policy, RouteRule, Verifier};
use zsp::tower::outbound::{
    AttachLayer, AttachService, CachedTokenSource, ClientCredentials, ReqwestService, TokenEndpoint,
    TokenRequest, TokenType,
};
use zsp::tower::verify::VerifyLayer;

const SECRET: &str = "svc-secret-0123456789abcdef0123456789abcdef";
const NONCE_SECRET: &[u8] = b"api-replicas-share-this-nonce-secret-0123456789";

/// What the API handler saw on the last request it served: the wire credentials.
#[derive(Default)]
struct Seen {
    authorization: Option<String>,
    proof: Option<String>,
}

struct BrokerUnderTest {
    base: String,
    broker: Broker,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    (l, format!("http://{addr}"))
}

async fn start_broker(nonces: Option<NonceIssuer>) -> BrokerUnderTest {
    let (l, base) = listener().await;
    let policy = BrokerPolicy::builder(&base)
        .max_ttl(Duration::from_secs(60))
        .client(
            ClientPolicy::with_secret("svc", SECRET)
                .audience("orders-api")
                .scopes(&["orders:read", "orders:pay"]),
        )
        .client(
            ClientPolicy::with_secret("svc-dpop", SECRET)
                .audience("orders-api")
                .scopes(&["orders:read"])
                .dpop_required(true),
        )
        .build()
        .unwrap();
    let mut b = Broker::builder(policy);
    if let Some(n) = nonces {
        b = b.dpop_nonces(n);
    }
    let broker = b.build().unwrap();
    let router = broker.router();
    tokio::spawn(async move { axum::serve(l, router).await });
    BrokerUnderTest { base, broker }
}

fn api_verifier(b: &BrokerUnderTest) -> Verifier {
    let jwks = serde_json::to_vec(&b.broker.jwks()).unwrap();
    let policy = Policy::builder()
        .issuer(b.base.clone())
        .audience("orders-api")
        .route(RouteRule::get("/orders/{id}").all_of(["orders:read"]))
        .route(RouteRule::post("/pay").all_of(["orders:pay"]).single_use())
        .build()
        .unwrap();
    Verifier::builder(policy, KeySet::from_jwks(&jwks, None).unwrap()).build()
}

struct Api {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

async fn handler(
    Extension(grant): Extension<Grant>,
    Extension(seen): Extension<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
) -> Json<Value> {
    let text = |n: &http::HeaderName| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    *seen.lock().unwrap() = Seen {
        authorization: text(&http::header::AUTHORIZATION),
        proof: text(&DPOP),
    };
    Json(json!({
        "sub": grant.subject(),
        "jkt": grant.cnf().and_then(|c| c.jkt.clone()),
    }))
}

/// An API whose layer `configure` finishes (it gets the layer and the API's own base URL).
async fn start_api(verifier: Verifier, configure: impl FnOnce(VerifyLayer, &str) -> VerifyLayer) -> Api {
    let (l, base) = listener().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/orders/{id}", get(handler))
        .route("/pay", post(handler))
        .layer(configure(verify_layer(verifier), &base))
        .layer(Extension(seen.clone()));
    tokio::spawn(
        async move { axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await },
    );
    Api { base, seen }
}

fn endpoint(b: &BrokerUnderTest, client: &str) -> TokenEndpoint {
    TokenEndpoint::builder()
        .token_endpoint(format!("{}/token", b.base))
        .client_id(client)
        .client_secret_basic(SECRET)
        .build()
        .unwrap()
}

fn orders() -> TokenRequest {
    TokenRequest::new("orders-api").scopes(["orders:read", "orders:pay"])
}

/// The client stack of the examples: cached client credentials, DPoP, reqwest.
fn client(b: &BrokerUnderTest, key: Option<DpopKey>) -> AttachService<ReqwestService> {
    let source = CachedTokenSource::builder(ClientCredentials::new(endpoint(b, "svc"))).build();
    let mut layer = AttachLayer::new(source, orders());
    if let Some(k) = key {
        layer = layer.dpop(k);
    }
    ServiceBuilder::new()
        .layer(layer)
        .service(ReqwestService::new(reqwest::Client::new()))
}

/// One request through the client stack.
async fn call(
    c: &mut AttachService<ReqwestService>,
    r: http::Request<reqwest::Body>,
) -> http::Response<reqwest::Body> {
    ServiceExt::<http::Request<reqwest::Body>>::ready(c)
        .await
        .unwrap()
        .call(r)
        .await
        .unwrap()
}

fn req(method: Method, url: String) -> http::Request<reqwest::Body> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .body(reqwest::Body::from(""))
        .unwrap()
}

async fn body_json(resp: http::Response<reqwest::Body>) -> Value {
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn challenges(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn dpop_verifier() -> DpopVerifier {
    DpopVerifier::builder().build().unwrap()
}

#[tokio::test]
async fn rfc9449_client_broker_api_with_a_bound_token_and_stolen_tokens_and_proofs_are_refused() {
    let b = start_broker(None).await;
    let api = start_api(api_verifier(&b), |l, _| l.dpop(dpop_verifier())).await;
    let key = DpopKey::generate().unwrap();
    let mut client = client(&b, Some(key.clone()));

    let url = format!("{}/orders/1", api.base);
    let resp = call(&mut client, req(Method::GET, url.clone())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_json(resp).await;
    assert_eq!(body["sub"], "svc");
    assert_eq!(
        body["jkt"],
        key.thumbprint().as_str(),
        "the token is bound to the client key"
    );

    // What an eavesdropper (or a log) captured.
    let (authorization, proof) = {
        let seen = api.seen.lock().unwrap();
        (seen.authorization.clone().unwrap(), seen.proof.clone().unwrap())
    };
    let token = authorization
        .strip_prefix("DPoP ")
        .expect("sent with the DPoP scheme")
        .to_owned();
    let http = reqwest::Client::new();

    // §7.2: the bound token as a bearer token.
    let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        challenges(resp.headers())
            .iter()
            .any(|c| c.starts_with("DPoP ") && c.contains("invalid_token"))
    );

    // The token with a proof made by another key.
    let thief = DpopKey::generate().unwrap();
    let forged = thief.proof(&Method::GET, &url, Some(&token), None).unwrap();
    let resp = http
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(challenges(resp.headers())[0].contains(r#"error="invalid_dpop_proof""#));

    // The token with no proof at all.
    let resp = http
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The captured proof replayed verbatim with its token.
    let resp = http
        .get(&url)
        .header("authorization", &authorization)
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(challenges(resp.headers())[0].contains(r#"error="invalid_dpop_proof""#));

    // The captured proof on another URL (htu) is refused too.
    let other = format!("{}/orders/2", api.base);
    let resp = http
        .get(&other)
        .header("authorization", &authorization)
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The legitimate client keeps working: a fresh proof per request.
    for _ in 0..3 {
        let resp = call(&mut client, req(Method::GET, other.clone())).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn rfc9449_7_1_denials_offer_both_schemes_with_algs() {
    let b = start_broker(None).await;
    let api = start_api(api_verifier(&b), |l, _| l.dpop(dpop_verifier())).await;
    let resp = reqwest::get(format!("{}/orders/1", api.base)).await.unwrap();
    assert_eq!(resp.status(), 401);
    let c = challenges(resp.headers());
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.contains(&"Bearer".to_owned()), "{c:?}");
    assert!(c.contains(&r#"DPoP algs="ES256 EdDSA""#.to_owned()), "{c:?}");

    // Required mode offers DPoP only.
    let api = start_api(api_verifier(&b), |l, _| {
        l.dpop(DpopVerifier::builder().mode(DpopMode::Required).build().unwrap())
    })
    .await;
    let resp = reqwest::get(format!("{}/orders/1", api.base)).await.unwrap();
    assert_eq!(challenges(resp.headers()), [r#"DPoP algs="ES256 EdDSA""#]);
}

#[tokio::test]
async fn rfc9449_dpop_mode_required_refuses_unbound_bearer_tokens() {
    let b = start_broker(None).await;
    let required = start_api(api_verifier(&b), |l, _| {
        l.dpop(DpopVerifier::builder().mode(DpopMode::Required).build().unwrap())
    })
    .await;
    let optional = start_api(api_verifier(&b), |l, _| l.dpop(dpop_verifier())).await;

    // A client without DPoP gets an unbound bearer token.
    let mut bearer_client = client(&b, None);
    let resp = call(
        &mut bearer_client,
        req(Method::GET, format!("{}/orders/1", optional.base)),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "optional mode accepts unbound bearer tokens"
    );
    let resp = call(
        &mut bearer_client,
        req(Method::GET, format!("{}/orders/1", required.base)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let c = challenges(resp.headers());
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("DPoP ") && c[0].contains("algs="), "{c:?}");

    // The same API serves a DPoP client.
    let mut dpop_client = client(&b, Some(DpopKey::generate().unwrap()));
    let resp = call(
        &mut dpop_client,
        req(Method::GET, format!("{}/orders/1", required.base)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn rfc9449_8_client_recovers_from_use_dpop_nonce_and_replicas_accept_each_others_nonces() {
    let b = start_broker(None).await;
    let nonces = || NonceIssuer::builder(NONCE_SECRET).build().unwrap();
    let with_nonces = |l: VerifyLayer, base: &str| {
        l.dpop(DpopVerifier::builder().require_nonces(nonces()).build().unwrap())
            .public_url(base)
    };
    let a = start_api(api_verifier(&b), with_nonces).await;
    let replica_b = start_api(api_verifier(&b), with_nonces).await;

    let key = DpopKey::generate().unwrap();
    let mut client = client(&b, Some(key.clone()));
    // No nonce yet: the API answers use_dpop_nonce, the client retries once, transparently.
    let resp = call(&mut client, req(Method::GET, format!("{}/orders/1", a.base))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let nonce_from_a = resp.headers()[DPOP_NONCE].to_str().unwrap().to_owned();
    let token = {
        let seen = a.seen.lock().unwrap();
        let proof = seen.proof.clone().unwrap();
        // The proof that got through carried a nonce.
        let payload = proof.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&zsp::core::b64::decode(payload).unwrap()).unwrap();
        assert!(claims["nonce"].is_string());
        seen.authorization.clone().unwrap()["DPoP ".len()..].to_owned()
    };

    // A nonce issued by replica A is accepted by replica B.
    let url_b = format!("{}/orders/1", replica_b.base);
    let http = reqwest::Client::new();
    let proof = key
        .proof(&Method::GET, &url_b, Some(&token), Some(&nonce_from_a))
        .unwrap();
    let resp = http
        .get(&url_b)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().contains_key("dpop-nonce"),
        "successful responses carry a fresh nonce"
    );

    // A proof without a nonce, or with a made-up one: 401 use_dpop_nonce + DPoP-Nonce.
    for nonce in [None, Some("made-up-nonce")] {
        let proof = key.proof(&Method::GET, &url_b, Some(&token), nonce).unwrap();
        let resp = http
            .get(&url_b)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(challenges(resp.headers())[0].contains(r#"error="use_dpop_nonce""#));
        assert!(resp.headers().contains_key("dpop-nonce"));
    }

    // The client, having learnt B's nonce only now, recovers there too.
    let resp = call(&mut client, req(Method::GET, url_b)).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_proof_never_burns_a_single_use_token() {
    let b = start_broker(None).await;
    let api = start_api(api_verifier(&b), |l, _| l.dpop(dpop_verifier())).await;
    let key = DpopKey::generate().unwrap();
    let source = ClientCredentials::new(endpoint(&b, "svc"));
    let token = zsp::tower::outbound::TokenSource::token(&source, &orders().dpop_key(key.clone()))
        .await
        .unwrap();
    assert_eq!(*token.token_type(), TokenType::DPoP);
    let url = format!("{}/pay", api.base);
    let http = reqwest::Client::new();
    let send = |proof: String| {
        http.post(&url)
            .header("authorization", format!("DPoP {}", token.secret()))
            .header("dpop", proof)
            .send()
    };
    let wrong_method = key.proof(&Method::GET, &url, Some(token.secret()), None).unwrap();
    assert_eq!(send(wrong_method).await.unwrap().status(), 401);
    let good = key
        .proof(&Method::POST, &url, Some(token.secret()), None)
        .unwrap();
    assert_eq!(
        send(good).await.unwrap().status(),
        200,
        "the denied request did not use the jti"
    );
    let again = key
        .proof(&Method::POST, &url, Some(token.secret()), None)
        .unwrap();
    assert_eq!(
        send(again).await.unwrap().status(),
        401,
        "single use holds for bound tokens"
    );
}

#[tokio::test]
async fn rfc9449_5_broker_binds_tokens_requires_proofs_where_policy_says_and_uses_nonces() {
    let b = start_broker(None).await;
    let http = reqwest::Client::new();
    let token_url = format!("{}/token", b.base);
    let form = [("grant_type", "client_credentials"), ("scope", "orders:read")];

    let meta: Value = http
        .get(format!("{}/.well-known/oauth-authorization-server", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );

    // A dpop_required client without a proof is refused.
    let resp = http
        .post(&token_url)
        .basic_auth("svc-dpop", Some(SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof");

    // …and with a proof for another URI.
    let key = DpopKey::generate().unwrap();
    let wrong = key
        .proof(&Method::POST, &format!("{}/revoke", b.base), None, None)
        .unwrap();
    let resp = http
        .post(&token_url)
        .basic_auth("svc-dpop", Some(SECRET))
        .header("dpop", wrong)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // With a valid proof it gets a DPoP token bound to the key.
    let proof = key.proof(&Method::POST, &token_url, None, None).unwrap();
    let resp = http
        .post(&token_url)
        .basic_auth("svc-dpop", Some(SECRET))
        .header("dpop", &proof)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let grant = api_verifier(&b)
        .verify(
            body["access_token"].as_str().unwrap(),
            &zsp::core::RequestFacts::new(&Method::GET, "/orders/1"),
        )
        .await
        .unwrap();
    assert_eq!(
        grant.cnf().and_then(|c| c.jkt.as_deref()),
        Some(key.thumbprint().as_str())
    );

    // The same proof again is a replay.
    let resp = http
        .post(&token_url)
        .basic_auth("svc-dpop", Some(SECRET))
        .header("dpop", &proof)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A broker with nonces: a proof without one gets 400 use_dpop_nonce + DPoP-Nonce, and the
    // token endpoint client recovers by itself.
    let nb = start_broker(Some(NonceIssuer::builder(NONCE_SECRET).build().unwrap())).await;
    let token_url = format!("{}/token", nb.base);
    let proof = key.proof(&Method::POST, &token_url, None, None).unwrap();
    let resp = http
        .post(&token_url)
        .basic_auth("svc-dpop", Some(SECRET))
        .header("dpop", proof)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().contains_key("dpop-nonce"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "use_dpop_nonce");

    let source = ClientCredentials::new(endpoint(&nb, "svc-dpop"));
    let req = TokenRequest::new("orders-api")
        .scopes(["orders:read"])
        .dpop_key(key.clone());
    let token = zsp::tower::outbound::TokenSource::token(&source, &req)
        .await
        .unwrap();
    assert_eq!(*token.token_type(), TokenType::DPoP);
    // The endpoint remembered the nonce: the next request needs no second round trip (a
    // fresh proof with the remembered nonce passes at once).
    let token2 = zsp::tower::outbound::TokenSource::token(&source, &req)
        .await
        .unwrap();
    assert!(!token.same_value(&token2));
}

#[tokio::test]
async fn without_a_dpop_verifier_bound_tokens_are_never_bearer_tokens() {
    let b = start_broker(None).await;
    let api = start_api(api_verifier(&b), |l, _| l).await;
    let key = DpopKey::generate().unwrap();
    let source = ClientCredentials::new(endpoint(&b, "svc"));
    let token = zsp::tower::outbound::TokenSource::token(&source, &orders().dpop_key(key.clone()))
        .await
        .unwrap();
    let url = format!("{}/orders/1", api.base);
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let proof = key.proof(&Method::GET, &url, Some(token.secret()), None).unwrap();
    let resp = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("DPoP {}", token.secret()))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "the DPoP scheme is refused, never downgraded");
}

#[tokio::test]
async fn htu_comes_from_public_url_when_set_and_custom_denials_keep_the_dpop_challenge() {
    let b = start_broker(None).await;
    // Behind a proxy that clients know as https://api.example: proofs for the socket
    // address the client happened to reach are not for this API.
    let proxied = start_api(api_verifier(&b), |l, _| {
        l.dpop(dpop_verifier())
            .public_url("https://api.example/")
            .on_denial(|d| {
                let mut r = http::Response::new(bytes::Bytes::from_static(b"{}"));
                *r.status_mut() = d.status();
                r
            })
    })
    .await;
    let key = DpopKey::generate().unwrap();
    let source = ClientCredentials::new(endpoint(&b, "svc"));
    let token = zsp::tower::outbound::TokenSource::token(&source, &orders().dpop_key(key.clone()))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let direct = format!("{}/orders/1", proxied.base);
    let send = |proof: String| {
        http.get(&direct)
            .header("authorization", format!("DPoP {}", token.secret()))
            .header("dpop", proof)
            .send()
    };
    let resp = send(
        key.proof(&Method::GET, &direct, Some(token.secret()), None)
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    // The custom response has no challenge of its own; the DPoP one is added.
    assert_eq!(
        challenges(resp.headers()),
        [r#"DPoP error="invalid_dpop_proof", algs="ES256 EdDSA""#]
    );
    let public = "https://api.example/orders/1";
    let resp = send(
        key.proof(&Method::GET, public, Some(token.secret()), None)
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
}
