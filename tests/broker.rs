//! The broker over real sockets: client authentication, scope and audience policy, TTL caps,
//! token exchange, revocation and introspection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use zsp::axum::broker::{Broker, BrokerPolicy, ClientPolicy};
use zsp::core::{
    Denial, KeySet, MemoryRevocation, Policy, RequestFacts, Revocation, RouteRule, SigningKey, Verifier,
};

const SECRET: &str = "frontend-secret-0123456789abcdef0123456789abcdef";
const ORDERS_SECRET: &str = "orders-secret-0123456789abcdef0123456789abcdef";

struct Running {
    base: String,
    broker: Broker,
    http: reqwest::Client,
    orders_key: SigningKey,
    revocation: Arc<MemoryRevocation>,
}

async fn start() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let orders_key = SigningKey::generate_ed25519("orders-key-1").unwrap();
    let orders_jwks = KeySet::from_keys([orders_key.verifying_key().unwrap()]);
    let policy = BrokerPolicy::builder(&base)
        .max_ttl(Duration::from_secs(60))
        .token_rate_per_sec(20)
        .client(
            ClientPolicy::with_secret("frontend", SECRET)
                .audience("orders-api")
                .scopes(&["orders:read", "orders:write"])
                .max_ttl(Duration::from_secs(30)),
        )
        .client(
            ClientPolicy::with_keys("orders-svc", orders_jwks)
                .audience("billing-api")
                .scopes(&["billing:charge", "billing:read", "orders:read"])
                .exchange_audience("orders-api"),
        )
        .client(
            ClientPolicy::with_secret("orders-basic", ORDERS_SECRET)
                .audience("billing-api")
                .scopes(&["billing:read"]),
        )
        .build()
        .unwrap();
    let revocation = Arc::new(MemoryRevocation::default());
    let broker = Broker::builder(policy)
        .revocation(revocation.clone())
        .build()
        .unwrap();
    let router = broker.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Running {
        base,
        broker,
        http: reqwest::Client::new(),
        orders_key,
        revocation,
    }
}

impl Running {
    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some((u, p)) = basic {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn frontend_token(&self, scope: &str) -> (u16, Value) {
        let (s, v, _) = self
            .post(
                "/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", "orders-api"),
                    ("scope", scope),
                ],
                Some(("frontend", SECRET)),
            )
            .await;
        (s, v)
    }

    async fn keys(&self) -> KeySet {
        let doc = self
            .http
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        KeySet::from_jwks(&doc, None).unwrap()
    }

    async fn verifier(&self, audience: &str) -> Verifier {
        let p = Policy::builder()
            .issuer(self.base.clone())
            .audience(audience)
            .require_at_jwt(true)
            .default_route(RouteRule::any("/{*p}"))
            .build()
            .unwrap();
        Verifier::builder(p, self.keys().await)
            .revocation(self.revocation.clone())
            .build()
    }

    fn assertion(&self, aud: &str) -> String {
        let now = zsp::core::Clock::now(&zsp::core::SystemClock);
        let claims = json!({"iss": "orders-svc", "sub": "orders-svc", "aud": aud, "iat": now, "exp": now + 30,
            "jti": zsp::core::crypto::random_id::<16>().unwrap()});
        self.orders_key.sign("JWT", &claims).unwrap()
    }
}

fn get() -> http::Method {
    http::Method::GET
}

#[tokio::test]
async fn metadata_and_jwks_describe_the_broker() {
    let b = start().await;
    let meta: Value = b
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], b.base);
    assert_eq!(meta["token_endpoint"], format!("{}/token", b.base));
    assert_eq!(b.keys().await.len(), 1);
}

#[tokio::test]
async fn client_credentials_issues_a_verifiable_rfc9068_token() {
    let b = start().await;
    let (status, v) = b.frontend_token("orders:read").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "orders:read");
    assert_eq!(v["expires_in"], 30);
    let token = v["access_token"].as_str().unwrap();
    let m = get();
    let g = b
        .verifier("orders-api")
        .await
        .verify(token, &RequestFacts::new(&m, "/x"))
        .await
        .unwrap();
    assert_eq!(g.client_id(), Some("frontend"));
    assert_eq!(g.subject(), Some("frontend"));
    assert!(g.jti().unwrap().len() >= 22);
}

#[tokio::test]
async fn client_secret_post_works_and_bad_secrets_are_refused() {
    let b = start().await;
    let (s, v, _) = b
        .post(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "frontend"),
                ("client_secret", SECRET),
            ],
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["scope"], "orders:read orders:write");
    let (s, v, h) = b
        .post(
            "/token",
            &[("grant_type", "client_credentials")],
            Some(("frontend", "wrong")),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(
        h.get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let (s, v, _) = b
        .post(
            "/token",
            &[("grant_type", "client_credentials")],
            Some(("nobody", SECRET)),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    let (s, v, _) = b
        .post(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "frontend"),
                ("client_secret", SECRET),
            ],
            Some(("frontend", SECRET)),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn scope_escalation_and_foreign_audiences_are_refused() {
    let b = start().await;
    let (s, v) = b.frontend_token("orders:read orders:admin").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")));
    let (s, v, _) = b
        .post(
            "/token",
            &[("grant_type", "client_credentials"), ("resource", "billing-api")],
            Some(("frontend", SECRET)),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_target")));
    let (s, v, _) = b
        .post(
            "/token",
            &[("grant_type", "password")],
            Some(("frontend", SECRET)),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unsupported_grant_type")));
}

#[tokio::test]
async fn no_token_is_issued_above_the_clients_ttl_cap() {
    let b = start().await;
    for _ in 0..10 {
        let (s, v) = b.frontend_token("orders:read").await;
        assert_eq!(s, 200);
        let t = v["access_token"].as_str().unwrap();
        let claims: Value =
            serde_json::from_slice(&zsp::core::b64::decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let life = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert!(life <= 30, "lifetime {life}");
    }
}

#[tokio::test]
async fn private_key_jwt_assertions_are_verified_and_single_use() {
    let b = start().await;
    let assertion = b.assertion(&b.base);
    let form = [
        ("grant_type", "client_credentials"),
        ("resource", "billing-api"),
        ("scope", "billing:read"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let (s, v, _) = b.post("/token", &form, None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = b.post("/token", &form, None).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "replayed assertion"
    );
    let wrong_aud = b.assertion("https://elsewhere");
    let form2 = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", wrong_aud.as_str()),
    ];
    let (s, _, _) = b.post("/token", &form2, None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn token_exchange_downscopes_and_records_act() {
    let b = start().await;
    // A token issued to frontend for orders-api is what orders-svc receives.
    let (_, v) = b.frontend_token("orders:read orders:write").await;
    let subject = v["access_token"].as_str().unwrap().to_owned();
    let assertion = b.assertion(&format!("{}/token", b.base));
    let (s, v, _) = b
        .post(
            "/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", subject.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("audience", "billing-api"),
                ("scope", "orders:read"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let m = get();
    let g = b
        .verifier("billing-api")
        .await
        .verify(v["access_token"].as_str().unwrap(), &RequestFacts::new(&m, "/x"))
        .await
        .unwrap();
    assert_eq!(g.subject(), Some("frontend"));
    assert_eq!(g.act().unwrap().sub.as_deref(), Some("orders-svc"));
    assert_eq!(g.scopes().to_string(), "orders:read");

    // Widening beyond the subject token is refused.
    let assertion = b.assertion(&b.base);
    let (s, v, _) = b
        .post(
            "/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", subject.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("audience", "billing-api"),
                ("scope", "billing:charge"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")));

    // A client without exchange rights cannot exchange.
    let (s, v, _) = b
        .post(
            "/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", subject.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ],
            Some(("orders-basic", ORDERS_SECRET)),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unauthorized_client")));
}

#[tokio::test]
async fn revocation_is_immediate_for_verifiers_sharing_the_store() {
    let b = start().await;
    let (_, v) = b.frontend_token("orders:read").await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    let verifier = b.verifier("orders-api").await;
    let m = get();
    assert!(
        verifier
            .verify(&token, &RequestFacts::new(&m, "/x"))
            .await
            .is_ok()
    );

    let (s, v, _) = b
        .post(
            "/introspect",
            &[("token", token.as_str())],
            Some(("frontend", SECRET)),
        )
        .await;
    assert_eq!((s, v["active"].as_bool()), (200, Some(true)), "{v}");
    // Another client may not revoke it.
    let (s, _, _) = b
        .post(
            "/revoke",
            &[("token", token.as_str())],
            Some(("orders-basic", ORDERS_SECRET)),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = b
        .post(
            "/revoke",
            &[("token", token.as_str())],
            Some(("frontend", SECRET)),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        verifier
            .verify(&token, &RequestFacts::new(&m, "/x"))
            .await
            .unwrap_err(),
        Denial::Revoked
    );
    let (_, v, _) = b
        .post(
            "/introspect",
            &[("token", token.as_str())],
            Some(("frontend", SECRET)),
        )
        .await;
    assert_eq!(v["active"], false);
    // Unauthenticated introspection is refused; garbage tokens are inactive.
    let (s, _, _) = b.post("/introspect", &[("token", token.as_str())], None).await;
    assert_eq!(s, 401);
    let (_, v, _) = b
        .post("/introspect", &[("token", "garbage")], Some(("frontend", SECRET)))
        .await;
    assert_eq!(v["active"], false);
    let (s, _, _) = b
        .post("/revoke", &[("token", "garbage")], Some(("frontend", SECRET)))
        .await;
    assert_eq!(s, 200);
    assert!(b.revocation.revoke_jti("x", 0).await.is_ok());
}

#[tokio::test]
async fn rotation_publishes_before_use() {
    let b = start().await;
    let old = b.broker.active_kid();
    b.broker
        .stage_key(SigningKey::generate_ed25519("next").unwrap())
        .unwrap();
    assert_eq!(b.keys().await.len(), 2);
    let (_, v) = b.frontend_token("orders:read").await;
    let header: Value = serde_json::from_slice(
        &zsp::core::b64::decode(v["access_token"].as_str().unwrap().split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], old.as_str());
    b.broker.activate_key("next").unwrap();
    let (_, v) = b.frontend_token("orders:read").await;
    let header: Value = serde_json::from_slice(
        &zsp::core::b64::decode(v["access_token"].as_str().unwrap().split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "next");
    assert_eq!(
        b.keys().await.len(),
        2,
        "old key stays published while its tokens live"
    );
}

#[tokio::test]
async fn token_endpoint_is_rate_limited_per_client() {
    let b = start().await;
    let mut limited = 0;
    for _ in 0..80 {
        let (s, v) = b.frontend_token("orders:read").await;
        if s == 429 {
            assert_eq!(v["error"], "temporarily_unavailable");
            limited += 1;
        }
    }
    assert!(limited > 0);
    // Other clients are unaffected.
    let (s, _, _) = b
        .post(
            "/token",
            &[("grant_type", "client_credentials")],
            Some(("orders-basic", ORDERS_SECRET)),
        )
        .await;
    assert_eq!(s, 200);
}
