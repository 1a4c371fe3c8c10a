//! End-to-end over real sockets: broker + API + client, token exchange across two services,
//! revocation reaching the API on the very next request, key rotation under continuous traffic,
//! and the `api` example process verifying tokens from an independent issuer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::axum::extract::{Auth, verify_layer};
use zsp::core::testing::TestIssuer;
use zsp::core::{MemoryRevocation, Policy, RemoteJwks, RouteRule, SigningKey, Verifier};
use zsp::tower::outbound::{
    AttachLayer, CachedTokenSource, ClientCredentials, PerRequest, ReqwestService, SubjectToken,
    TokenEndpoint, TokenExchange, TokenRequest, TokenSource,
};

const FRONT_SECRET: &str = "frontend-e2e-secret-0123456789abcdef0123456789";
const ORDERS_SECRET: &str = "orders-e2e-secret-0123456789abcdef0123456789ab";

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

struct World {
    issuer: String,
    broker: Broker,
    revocations: Arc<MemoryRevocation>,
}

async fn broker() -> World {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let policy = BrokerPolicy::builder(&issuer)
        .token_rate_per_sec(1000)
        .client(
            ClientPolicy::with_secret("frontend", FRONT_SECRET)
                .audience("orders-api")
                .scopes(&["orders:read", "orders:write"]),
        )
        .client(
            ClientPolicy::with_secret("orders-svc", ORDERS_SECRET)
                .audience("billing-api")
                .scopes(&["orders:read", "billing:read"])
                .exchange_audience("orders-api"),
        )
        .build()
        .unwrap();
    let revocations = Arc::new(MemoryRevocation::default());
    let broker = Broker::builder(policy)
        .revocation(revocations.clone())
        .build()
        .unwrap();
    let router = broker.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    World {
        issuer,
        broker,
        revocations,
    }
}

fn endpoint(issuer: &str, id: &str, secret: &str) -> TokenEndpoint {
    TokenEndpoint::builder()
        .issuer(issuer)
        .client_id(id)
        .client_secret_basic(secret.to_owned())
        .build()
        .unwrap()
}

fn verifier(w: &World, audience: &str, jwks: RemoteJwks) -> Verifier {
    let policy = Policy::builder()
        .issuer(w.issuer.clone())
        .audience(audience)
        .require_at_jwt(true)
        .route(RouteRule::post("/orders").all_of(["orders:write"]).single_use())
        .route(RouteRule::any("/{*rest}").all_of(["orders:read"]))
        .build()
        .unwrap();
    Verifier::builder(policy, Arc::new(jwks))
        .revocation(w.revocations.clone())
        .build()
}

async fn whoami(Auth(g): Auth) -> axum::Json<Value> {
    axum::Json(json!({"sub": g.subject(), "client_id": g.client_id(), "act": g.act(), "kid_ok": true}))
}

#[tokio::test]
async fn broker_api_and_client_revocation_reaches_the_next_request() {
    let w = broker().await;
    let jwks = RemoteJwks::builder().issuer(w.issuer.clone()).build().unwrap();
    let api = serve(
        verify_layer(verifier(&w, "orders-api", jwks))
            .layer(Router::new().route("/orders", get(whoami)))
            .into_router(),
    )
    .await;

    let tokens = CachedTokenSource::new(ClientCredentials::new(endpoint(
        &w.issuer,
        "frontend",
        FRONT_SECRET,
    )));
    let req = TokenRequest::new("orders-api").scopes(["orders:read"]);
    let mut client = ServiceBuilder::new()
        .layer(AttachLayer::new(tokens.clone(), req.clone()))
        .service(ReqwestService::new(reqwest::Client::new()));
    for _ in 0..20 {
        let r = http::Request::get(format!("{api}/orders"))
            .body(reqwest::Body::from(Vec::new()))
            .unwrap();
        let resp = ServiceExt::<http::Request<reqwest::Body>>::ready(&mut client)
            .await
            .unwrap()
            .call(r)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(tokens.stats().fetches, 1);

    let token = tokens.token(&req).await.unwrap();
    let http = reqwest::Client::new();
    let revoke = http
        .post(format!("{}/revoke", w.issuer))
        .basic_auth("frontend", Some(FRONT_SECRET))
        .form(&[("token", token.secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let resp = http
        .get(format!("{api}/orders"))
        .bearer_auth(token.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "revoked token must fail on the very next request"
    );
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

/// Helper so an axum service (router wrapped by a layer) can be served as a Router.
trait IntoRouter {
    fn into_router(self) -> Router;
}
impl<S> IntoRouter for S
where
    S: Service<axum::extract::Request, Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    fn into_router(self) -> Router {
        Router::new().fallback_service(self)
    }
}

#[tokio::test]
async fn token_exchange_a_calls_b_with_a_downscoped_token_and_b_sees_act() {
    let w = broker().await;
    // Service B: billing, trusts the broker, shows what it saw.
    let b_jwks = RemoteJwks::builder().issuer(w.issuer.clone()).build().unwrap();
    let b_policy = Policy::builder()
        .issuer(w.issuer.clone())
        .audience("billing-api")
        .default_route(RouteRule::any("/{*rest}").all_of(["orders:read"]))
        .build()
        .unwrap();
    let b_verifier = Verifier::builder(b_policy, Arc::new(b_jwks)).build();
    let b = serve(
        verify_layer(b_verifier)
            .layer(Router::new().route("/invoices", get(whoami)))
            .into_router(),
    )
    .await;

    // Service A: orders; on each request it exchanges the caller's token for one to call B.
    let a_jwks = RemoteJwks::builder().issuer(w.issuer.clone()).build().unwrap();
    let exchange = TokenExchange::new(endpoint(&w.issuer, "orders-svc", ORDERS_SECRET));
    let b_url = b.clone();
    let a_handler = move |Auth(grant): Auth| {
        let exchange = exchange.clone();
        let b_url = b_url.clone();
        async move {
            let subject = SubjectToken::from_grant(&grant);
            let downscoped = exchange
                .exchange(
                    &subject,
                    None,
                    &TokenRequest::new("billing-api").scopes(["orders:read"]),
                )
                .await
                .map_err(|e| e.to_string())?;
            let widened = exchange
                .exchange(
                    &subject,
                    None,
                    &TokenRequest::new("billing-api").scopes(["orders:write", "billing:read"]),
                )
                .await;
            let seen: Value = reqwest::Client::new()
                .get(format!("{b_url}/invoices"))
                .bearer_auth(downscoped.secret())
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(axum::Json(
                json!({"b_saw": seen, "widening_refused": widened.is_err()}),
            ))
        }
    };
    let a = serve(
        verify_layer(verifier(&w, "orders-api", a_jwks))
            .layer(Router::new().route("/orders", get(a_handler)))
            .into_router(),
    )
    .await;

    let front = ClientCredentials::new(endpoint(&w.issuer, "frontend", FRONT_SECRET));
    let t = front
        .token(&TokenRequest::new("orders-api").scopes(["orders:read", "orders:write"]))
        .await
        .unwrap();
    let v: Value = reqwest::Client::new()
        .get(format!("{a}/orders"))
        .bearer_auth(t.secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["b_saw"]["sub"], "frontend", "{v}");
    assert_eq!(v["b_saw"]["client_id"], "orders-svc");
    assert_eq!(v["b_saw"]["act"]["sub"], "orders-svc");
    assert_eq!(v["widening_refused"], true);
}

#[tokio::test]
async fn key_rotation_under_continuous_traffic_fails_no_request() {
    let w = broker().await;
    let jwks = RemoteJwks::builder().issuer(w.issuer.clone()).build().unwrap();
    let api_jwks = jwks.clone();
    let api = serve(
        verify_layer(verifier(&w, "orders-api", jwks))
            .layer(Router::new().route("/orders", get(whoami)))
            .into_router(),
    )
    .await;

    // Every request carries a freshly minted token, so tokens signed by the new key show up
    // the moment it is activated.
    let source = Arc::new(PerRequest::new(ClientCredentials::new(endpoint(
        &w.issuer,
        "frontend",
        FRONT_SECRET,
    ))));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (source, stop, ok, failed, api) = (
            source.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            api.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut client = ServiceBuilder::new()
                .layer(AttachLayer::new(
                    source,
                    TokenRequest::new("orders-api").scopes(["orders:read"]),
                ))
                .service(ReqwestService::new(reqwest::Client::new()));
            while !stop.load(Ordering::Relaxed) {
                let r = http::Request::get(format!("{api}/orders"))
                    .body(reqwest::Body::from(Vec::new()))
                    .unwrap();
                let resp = ServiceExt::<http::Request<reqwest::Body>>::ready(&mut client)
                    .await
                    .unwrap()
                    .call(r)
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let wait_for = |n: u64| {
        let ok = ok.clone();
        async move {
            for _ in 0..500 {
                if ok.load(Ordering::Relaxed) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(50).await;
    // Publish before use: stage, let verifiers refresh (the periodic refresh within the JWKS
    // max-age; forced here instead of waiting a minute), then start signing with it.
    let old_kid = w.broker.active_kid();
    w.broker
        .stage_key(SigningKey::generate_ed25519("rotated-key").unwrap())
        .unwrap();
    api_jwks.refresh().await.unwrap();
    let before = ok.load(Ordering::Relaxed);
    w.broker.activate_key("rotated-key").unwrap();
    wait_for(before + 100).await;
    stop.store(true, Ordering::Relaxed);
    for wk in workers {
        wk.await.unwrap();
    }
    assert_ne!(old_kid, w.broker.active_kid());
    assert!(
        ok.load(Ordering::Relaxed) >= before + 100,
        "traffic continued after rotation"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during rotation"
    );
    let jwks = w.broker.jwks();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "old key still published for its live tokens"
    );
}

/// The `api` example as a separate process, against an issuer that is not ours: a test key,
/// a JWKS served here, tokens minted here.
#[tokio::test]
async fn api_example_verifies_tokens_from_an_independent_issuer() {
    let issuer = TestIssuer::ed25519("https://idp.independent.test");
    let Some((api_bin, jwks_url)) = api_example_for(&issuer).await else {
        return;
    };

    let (mut child, addr) = spawn_api(&api_bin, &jwks_url, &[]).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{base}/health")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/orders")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        http.get(format!("{base}/nowhere")).send().await.unwrap().status(),
        401,
        "401 before routing"
    );
    assert_eq!(
        http.put(format!("{base}/orders")).send().await.unwrap().status(),
        401,
        "never a 405"
    );

    let read = issuer
        .token("orders-api", &["orders:read"])
        .subject("svc-x")
        .mint()
        .unwrap();
    let resp = http
        .get(format!("{base}/orders/7"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["sub"], "svc-x");
    let resp = http
        .delete(format!("{base}/orders/7"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let write = issuer.token("orders-api", &["orders:write"]).mint().unwrap();
    assert_eq!(
        http.post(format!("{base}/orders"))
            .bearer_auth(&write)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        http.post(format!("{base}/orders"))
            .bearer_auth(&write)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let other = TestIssuer::ed25519("https://idp.independent.test")
        .token("orders-api", &["orders:read"])
        .mint()
        .unwrap();
    assert_eq!(
        http.get(format!("{base}/orders"))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    child.kill().await.ok();
}

/// The api example binary and `issuer`'s JWKS served on 127.0.0.1; `None` (said on stderr)
/// when the binary is not built, which under CI fails instead: a missing binary would leave
/// the example's contract untested.
async fn api_example_for(issuer: &TestIssuer) -> Option<(std::path::PathBuf, String)> {
    let Some(api_bin) = example_binary("api") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the api example binary was not built"
        );
        eprintln!("skipped: the api example binary is not built (cargo test builds it)");
        return None;
    };
    let jwks_doc = issuer.jwks();
    let jwks_url =
        serve(Router::new().route("/keys", get(move || async move { axum::Json(jwks_doc) }))).await;
    Some((api_bin, jwks_url))
}

async fn spawn_api(
    bin: &std::path::Path,
    jwks_url: &str,
    extra: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env("ZSP_LISTEN", "127.0.0.1:0")
        .env("ZSP_ISSUER", "https://idp.independent.test")
        .env("ZSP_AUDIENCE", "orders-api")
        .env("ZSP_JWKS_URL", format!("{jwks_url}/keys"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .expect("first stdout line is `listening on ADDR`")
        .to_owned();
    (child, addr)
}

/// `ZSP_AUDIT_FILE`: the api example appends one JSON line per decision, written at once.
#[tokio::test]
async fn api_example_writes_json_audit_lines_to_zsp_audit_file() {
    let issuer = TestIssuer::ed25519("https://idp.independent.test");
    let Some((api_bin, jwks_url)) = api_example_for(&issuer).await else {
        return;
    };
    let path = std::env::temp_dir().join(format!("zsp-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path_str = path.to_str().unwrap().to_owned();
    let (mut child, addr) = spawn_api(&api_bin, &jwks_url, &[("ZSP_AUDIT_FILE", &path_str)]).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let read = issuer
        .token("orders-api", &["orders:read"])
        .subject("svc-audit")
        .mint()
        .unwrap();
    let ok = http
        .get(format!("{base}/orders/7"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = http.get(format!("{base}/orders/7")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    // Unbuffered: both lines are in the file while the server still runs.
    let text = std::fs::read_to_string(&path).unwrap();
    child.kill().await.ok();
    let _ = std::fs::remove_file(&path);
    assert!(!text.contains(&read), "the token reached the audit file");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["sub"], "svc-audit");
    assert_eq!(lines[0]["route"], "/orders/{id}");
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["reason"], "missing_token");
}

/// `ZSP_DPOP=required`: only DPoP-bound tokens with a valid proof for this very request.
#[tokio::test]
async fn api_example_with_dpop_required_accepts_only_bound_tokens_with_proofs() {
    let issuer = TestIssuer::es256("https://idp.independent.test");
    let Some((api_bin, jwks_url)) = api_example_for(&issuer).await else {
        return;
    };
    let (mut child, addr) = spawn_api(&api_bin, &jwks_url, &[("ZSP_DPOP", "required")]).await;
    let url = format!("http://{addr}/orders");
    let http = reqwest::Client::new();

    let bearer = issuer.token("orders-api", &["orders:read"]).mint().unwrap();
    let resp = http.get(&url).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()
            .get_all("www-authenticate")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("DPoP"))
    );

    let key = zsp::core::dpop::DpopKey::generate().unwrap();
    let bound = issuer
        .token("orders-api", &["orders:read"])
        .jkt(key.thumbprint().as_str())
        .mint()
        .unwrap();
    let proof = key.proof(&http::Method::GET, &url, Some(&bound), None).unwrap();
    let resp = http
        .get(&url)
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The same proof again, or the bound token as Bearer: refused.
    let again = http
        .get(&url)
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    assert_eq!(
        http.get(&url).bearer_auth(&bound).send().await.unwrap().status(),
        401
    );
    child.kill().await.ok();
}

fn example_binary(name: &str) -> Option<std::path::PathBuf> {
    // Integration tests live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    path.exists().then_some(path)
}
